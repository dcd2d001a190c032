"""Train TSCAC and its baselines on a prepared dataset, evaluate them and write a report.

The run directory receives ``config.yaml`` (the resolved configuration, written before the
first step), ``metrics.csv`` (every curve point, see :mod:`recrl.metrics_writer`), one
``models/seed<k>/<method>.safetensors`` + ``.json`` per method and seed, the offline table as
``table.md`` and ``table.csv``, the training curves ``curves.png`` and the lambda sweep
``lambda_sweep.png``. Checkpoints are selected on the validation split; the test
split is evaluated once per method and seed, after selection.

Under ``torchrun`` every rank trains on its part of each minibatch (see
:mod:`recrl.distributed`), and rank 0 alone evaluates and writes the run directory.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import yaml

from recrl import distributed
from recrl.checkpoint import (
    Phase,
    RunCheckpoints,
    TrainingState,
    differing_keys,
    metrics_rows_at_checkpoint,
    optimizers_of,
)
from recrl.data import PreparedDataset
from recrl.errors import InvalidArgumentError, RecrlIOError
from recrl.metrics_writer import MetricsWriter
from recrl.nets import CategoricalActor
from recrl.progress import progress_bar
from recrl.tscac.agents import METHODS, InteractionActorCritic, Method, Tscac, build_method
from recrl.tscac.config import (
    CONFIG_CLASSES,
    BehaviourCloningConfig,
    CommonConfig,
    InteractionActorCriticConfig,
    TscacConfig,
    config_from_dict,
)
from recrl.tscac.data import ProblemSpec, Transitions
from recrl.tscac.evaluate import Evaluator, selection_score
from recrl.tscac.io import (
    config_to_dict,
    save_actor_for_serving,
    save_method,
    write_text_atomically,
)
from recrl.tscac.report import plot_curves, plot_lambda_sweep, write_tables

__all__ = ["RunConfig", "load_run_configuration", "run"]

logger = logging.getLogger(__name__)

DEFAULT_METHODS = (
    "behaviour_cloning",
    "wide_deep",
    "deepfm",
    "rcpo",
    "rcpo_multiple_critics",
    "pareto",
    "interaction_ac",
    "tscac",
)


@dataclass(frozen=True)
class RunConfig:
    """Settings of a comparison run (what to train and how to evaluate it)."""

    methods: tuple[str, ...] = DEFAULT_METHODS
    """Methods to train, keys of ``recrl.tscac.agents.METHODS``."""
    behaviour_steps: int = 2000
    """Gradient steps of the behaviour-cloning actor that serves as pi_beta in evaluation."""
    cap: float = 10.0
    """Weight cap (> 0) of the capped estimators (10 in Cai et al.)."""
    evaluation_discount: float = 0.9
    """gamma in (0, 1] of the per-decision per-trajectory estimate."""
    lambda_sweep: tuple[float, ...] = (1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5)
    """Shared lambda values of the stage-two sweep, run on the first seed and evaluated on
    validation; empty to skip."""
    select_lambda: bool = True
    """Train TSCAC's final stage two, for every seed, with the sweep's lambda of best validation
    score; false keeps the configured lambdas."""
    lambda_sweep_steps: int = 500
    """Stage-two steps of each sweep point, starting from the trained stage one."""
    selection_penalty: float = 10.0
    """Weight of relative constraint violations in the validation selection score."""

    def validate(self) -> None:
        """Raise ``InvalidArgumentError`` for unknown methods or values out of range."""
        unknown = sorted(set(self.methods) - set(METHODS))
        if unknown or not self.methods:
            raise InvalidArgumentError(
                f"methods: expected a non-empty subset of {sorted(METHODS)}, got {self.methods}"
            )
        checks = {
            "behaviour_steps": (self.behaviour_steps >= 1, "an integer >= 1"),
            "cap": (self.cap > 0, "a number > 0"),
            "evaluation_discount": (0 < self.evaluation_discount <= 1, "a number in (0, 1]"),
            "lambda_sweep": (all(value > 0 for value in self.lambda_sweep), "values > 0"),
            "lambda_sweep_steps": (self.lambda_sweep_steps >= 1, "an integer >= 1"),
            "selection_penalty": (self.selection_penalty >= 0, "a number >= 0"),
        }
        for name, (valid, expected) in checks.items():
            if not valid:
                raise InvalidArgumentError(
                    f"{name}: expected {expected}, got {getattr(self, name)!r}"
                )


def load_run_configuration(
    values: dict[str, Any] | None,
) -> tuple[RunConfig, dict[str, CommonConfig]]:
    """Resolve a configuration mapping into the run settings and one config per method.

    The mapping has up to three keys: ``run`` (fields of ``RunConfig``), ``common`` (fields
    given to every method whose config has them) and ``methods`` (a mapping from method name
    to its own fields, which override ``common``).
    """
    values = dict(values or {})
    unknown = sorted(set(values) - {"run", "common", "methods"})
    if unknown:
        raise InvalidArgumentError(
            f"configuration: unknown sections {unknown}; expected run, common, methods"
        )
    run_config = config_from_dict(RunConfig, values.get("run") or {})  # type: ignore[arg-type]
    common = values.get("common") or {}
    per_method = values.get("methods") or {}
    known = {f.name for cls in CONFIG_CLASSES.values() for f in dataclasses.fields(cls)}
    unknown = sorted(set(common) - known)
    if unknown:
        raise InvalidArgumentError(
            f"common: unknown fields {unknown}; expected fields of the method configs"
        )
    unknown = sorted(set(per_method) - set(METHODS))
    if unknown:
        raise InvalidArgumentError(
            f"methods: unknown methods {unknown}; expected some of {sorted(METHODS)}"
        )
    configs: dict[str, CommonConfig] = {}
    names = set(run_config.methods) | {"behaviour_cloning"}
    for name in sorted(names):
        cls = CONFIG_CLASSES[name]
        fields = {f.name for f in dataclasses.fields(cls)}
        merged = {k: v for k, v in common.items() if k in fields}
        merged.update(per_method.get(name) or {})
        configs[name] = config_from_dict(cls, merged)
    return run_config, configs


class _Trainer:
    """Training loops with validation checkpoints for one seed."""

    def __init__(
        self,
        transitions: Transitions,
        evaluator: Evaluator,
        run_config: RunConfig,
        seed: int,
        device: torch.device,
        checkpoints: RunCheckpoints | None = None,
        metrics: MetricsWriter | None = None,
    ) -> None:
        self.transitions = transitions
        self.checkpoints = checkpoints if checkpoints is not None else RunCheckpoints(None)
        self.seed = seed
        self.metrics = metrics
        self.evaluator = evaluator
        self.run_config = run_config
        self.device = device
        self.train_rows = transitions.split_rows("train")
        self.generator = np.random.default_rng(seed)
        self.logged_validation = estimate_logged(transitions, "validation")

    def sample(self, batch_size: int) -> Any:
        """Draw a minibatch of training rows uniformly with replacement.

        Under torchrun every rank draws the same global minibatch and keeps its part.
        """
        distributed.check_batch_size("batch_size", batch_size)
        index = self.generator.integers(0, len(self.train_rows), size=batch_size)
        return self.transitions.batch(distributed.split_batch(self.train_rows[index]).rows)

    def update(self, method: Method, batch_size: int) -> dict[str, float]:
        """Take one step of ``method`` on a sampled minibatch; return the global diagnostics."""
        return distributed.mean_over_ranks(method.update(self.sample(batch_size)))

    def estimate(self, method: Method, split: str) -> dict[str, Any]:
        """Return the off-policy estimates of ``method`` on ``split``, computed on rank 0."""
        return distributed.broadcast_from_main(
            lambda: self.evaluator.estimate(method.policy_log_probabilities, split)
        )

    def train_stage(
        self,
        method: Method,
        stage: str,
        steps: int,
        select: bool,
        curve: list[dict[str, Any]],
        phase_name: str,
    ) -> float:
        """Run ``steps`` updates of ``stage``; with ``select``, keep the best validation state.

        ``phase_name`` names the stage's checkpoints and its rows of the run's metrics: a
        resumed run loads the final state of a finished phase instead of training it, and
        continues an interrupted one from its last periodic checkpoint. Each evaluation point
        is appended to ``curve``.

        Returns:
            The best validation score (or the last one without ``select``).
        """
        method.set_stage(stage)
        method.train()
        config = method.config
        state = TrainingState(
            modules={"method": method},
            optimizers=optimizers_of(method),
            generators={"trainer": self.generator},
        )
        phase = self.checkpoints.phase(phase_name, state)
        if phase.completed:
            record = phase.restore_completed()
            curve.extend(record["curve"])
            method.eval()
            return float(record["score"])

        best_score, best_state = -np.inf, None
        sums: dict[str, float] = {}
        phase_curve: list[dict[str, Any]] = []
        first = 1
        resumed = phase.resume()
        if resumed is not None:
            best_score, sums = resumed.metadata["best_score"], resumed.metadata["sums"]
            phase_curve = resumed.metadata["curve"]
            curve.extend(phase_curve)
            first = resumed.metadata["step"] + 1
            best_state = _unprefixed(resumed.tensors, "best/") or None
        description = f"{method.method_name} {stage} seed {self.seed}"
        for step in progress_bar(
            range(first, steps + 1), description=description, unit="step", total=steps - first + 1
        ):
            for key, value in self.update(method, config.batch_size).items():
                sums[key] = sums.get(key, 0.0) + value
            if step % config.evaluation_interval and step != steps:
                if phase.due(step):
                    self._save_phase(phase, step, best_score, best_state, sums, phase_curve)
                continue
            count = (
                config.evaluation_interval
                if step % config.evaluation_interval == 0
                else (step % config.evaluation_interval)
            )
            point: dict[str, Any] = {"stage": stage, "step": step}
            if not method.evaluates(stage):
                # The final policy does not change here: log the training diagnostics only.
                point.update({k: v / count for k, v in sums.items()})
                curve.append(point)
                phase_curve.append(point)
                if self.metrics is not None:
                    self.metrics.log(phase_name, step, {k: point[k] for k in sums})
                sums = {}
                if phase.due(step) and step != steps:
                    self._save_phase(phase, step, best_score, best_state, sums, phase_curve)
                continue
            method.eval()
            estimates = self.estimate(method, "validation")
            method.train()
            score = selection_score(
                estimates["ncis"],
                self.logged_validation,
                method.main,
                method.signs_by_response,
                self.run_config.selection_penalty,
            )
            point["validation_score"] = score
            point.update({k: v / count for k, v in sums.items()})
            point.update(
                {
                    f"eval/{name}": float(value)
                    for name, value in zip(method.spec.reward_names, estimates["ncis"])
                }
            )
            point["eval/main"] = float(estimates["ncis"][method.main])
            curve.append(point)
            phase_curve.append(point)
            if self.metrics is not None:
                self.metrics.log(
                    phase_name,
                    step,
                    {k: v for k, v in point.items() if k not in ("stage", "step")},
                )
            sums = {}
            logger.info(
                "%s %s step %d: validation score %.4f, main response %.4f",
                method.method_name,
                stage,
                step,
                score,
                estimates["ncis"][method.main],
            )
            if select and score > best_score:
                best_score = score
                best_state = {k: v.detach().clone() for k, v in method.state_dict().items()}
                phase.save_best(step, score, method)
            if phase.due(step) and step != steps:
                self._save_phase(phase, step, best_score, best_state, sums, phase_curve)
        if select and best_state is not None:
            method.load_state_dict(best_state)
        method.eval()
        phase.complete({"score": best_score, "curve": phase_curve})
        return best_score

    @staticmethod
    def _save_phase(
        phase: Phase,
        step: int,
        best_score: float,
        best_state: dict[str, torch.Tensor] | None,
        sums: dict[str, float],
        curve: list[dict[str, Any]],
    ) -> None:
        best = {f"best/{key}": value for key, value in (best_state or {}).items()}
        metadata = {"best_score": best_score, "sums": sums, "curve": curve}
        phase.save(step, tensors=best, metadata=metadata)


def _unprefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {key[len(prefix) :]: value for key, value in tensors.items() if key.startswith(prefix)}


def candidate_coverage(transitions: Transitions) -> dict[str, float]:
    """Return, per split, the fraction of rows whose logged item is among the N candidates."""
    count = len(transitions.spec.candidate_items)
    coverage = {}
    for split in ("train", "validation", "test"):
        rows = torch.as_tensor(transitions.split_rows(split), device=transitions.device)
        positions = transitions.candidate_position[transitions.items[rows]]
        coverage[split] = float((positions < count).double().mean()) if len(rows) else 0.0
    return coverage


def estimate_logged(transitions: Transitions, split: str) -> np.ndarray:
    """Return the mean raw reward [K] of ``split``."""
    rows = torch.as_tensor(transitions.split_rows(split), device=transitions.device)
    return transitions.raw_rewards[rows].double().mean(0).cpu().numpy()


def _behaviour_policy(
    dataset: PreparedDataset,
    transitions: Transitions,
    config: BehaviourCloningConfig,
    steps: int,
    seed: int,
    device: torch.device,
    checkpoints: RunCheckpoints,
) -> Method | None:
    """Return the learned behaviour policy, or None where every row is a random exposure."""
    if "context_is_rand" in dataset.manifest["arrays"] and bool(
        np.all(np.asarray(dataset["context_is_rand"]) == 1)
    ):
        logger.info("every row is a random exposure: the behaviour policy is uniform")
        return None
    torch.manual_seed(seed)
    behaviour = build_method("behaviour_cloning", transitions.spec, config).to(device)
    generator = np.random.default_rng(seed + 10_000)
    rows = transitions.split_rows("train")
    distributed.check_batch_size("behaviour_cloning batch_size", config.batch_size)
    state = TrainingState(
        modules={"method": behaviour},
        optimizers=optimizers_of(behaviour),
        generators={"behaviour": generator},
    )
    phase = checkpoints.phase(f"seed{seed}/behaviour", state)
    if phase.completed:
        phase.restore_completed()
        behaviour.eval()
        return behaviour
    resumed = phase.resume()
    first = 1 if resumed is None else resumed.metadata["step"] + 1
    for step in progress_bar(range(first, steps + 1), description="behaviour policy", unit="step"):
        batch_rows = rows[generator.integers(0, len(rows), config.batch_size)]
        behaviour.update(transitions.batch(distributed.split_batch(batch_rows).rows))
        if phase.due(step) and step != steps:
            phase.save(step)
    behaviour.eval()
    phase.complete()
    return behaviour


def run(
    dataset: PreparedDataset,
    out: str | Path,
    configuration: dict[str, Any] | None = None,
    *,
    seeds: tuple[int, ...] = (0,),
    device: str | torch.device = "cpu",
    resume: bool = False,
    checkpoint_every: int = 0,
    metrics: MetricsWriter | None = None,
) -> dict[str, Any]:
    """Train, select on validation and evaluate on test every configured method and seed.

    Every training stage is a checkpointed phase (see ``recrl.checkpoint.RunCheckpoints``):
    the run directory's ``checkpoints`` folder keeps the final state of each finished stage and
    the latest periodic checkpoint of the running one.

    Args:
        dataset: the prepared dataset.
        out: the run directory (created).
        configuration: mapping with ``run``, ``common`` and ``methods`` sections.
        seeds: one full run per seed; the table reports the mean and spread over seeds.
        device: torch device of models and tensors.
        resume: continue the run in ``out`` from its checkpoints; the resolved configuration
            must equal the one stored in ``out/config.yaml``.
        checkpoint_every: gradient steps between periodic checkpoints of a stage; 0 writes
            only the checkpoint at the end of each stage.
        metrics: writer of the training curves; None writes ``metrics.csv`` in ``out`` with a
            writer of the run's own (on rank 0; other ranks write none).

    Raises:
        InvalidArgumentError: ``resume`` with a configuration that differs from the stored one.
        RecrlIOError: ``resume`` without a ``config.yaml`` in ``out``.

    Returns:
        ``results`` (per seed, per method: test estimates), ``sweep`` and ``curves``.
    """
    out = Path(out)
    device = torch.device(device)
    run_config, configs = load_run_configuration(configuration)
    _warn_if_lambdas_replaced(run_config, configs)
    for name, config in configs.items():
        distributed.check_batch_size(f"{name} batch_size", config.batch_size)
    candidates = {config.candidates for config in configs.values()}
    if len(candidates) != 1:
        raise InvalidArgumentError(
            f"candidates: every method must use one candidate count, got {sorted(candidates)}"
        )
    spec = Transitions.build_spec(dataset, candidates.pop())
    resolved = {
        "dataset": str(dataset.path),
        "seeds": list(seeds),
        "device": str(device),
        "world_size": distributed.world_size(),
        "run": config_to_dict(run_config),
        "methods": {name: config_to_dict(config) for name, config in configs.items()},
    }
    if resume:
        _check_resumable(out / "config.yaml", resolved)
    elif distributed.is_main():
        write_text_atomically(out / "config.yaml", yaml.safe_dump(resolved, sort_keys=False))
    own_metrics = metrics is None and distributed.is_main()
    if metrics is None and distributed.is_main():
        keep_rows = metrics_rows_at_checkpoint(out / "checkpoints") if resume else None
        metrics = MetricsWriter(out, keep_rows=keep_rows)
    writer = metrics
    checkpoints = RunCheckpoints(
        out / "checkpoints",
        every=checkpoint_every,
        resume=resume,
        metrics_rows=None if writer is None else (lambda: writer.rows),
    )
    transitions = Transitions(dataset, spec, device)
    coverage = candidate_coverage(transitions)
    for split, fraction in coverage.items():
        level = logging.WARNING if fraction < 0.2 else logging.INFO
        logger.log(
            level,
            "the candidate set contains the logged item of %.1f%% of %s rows; the other rows "
            "put it in the extra slot, where unseen items share one embedding",
            100 * fraction,
            split,
        )

    results: dict[int, dict[str, dict[str, np.ndarray]]] = {}
    curves: dict[str, list[dict[str, Any]]] = {}
    sweep: list[dict[str, Any]] = []
    logged_test = estimate_logged(transitions, "test")
    chosen: dict[str, float] = {}
    for seed in seeds:
        started = time.perf_counter()
        behaviour = _behaviour_policy(
            dataset,
            transitions,
            cast(BehaviourCloningConfig, configs["behaviour_cloning"]),
            run_config.behaviour_steps,
            seed,
            device,
            checkpoints,
        )
        evaluator = Evaluator(
            transitions,
            None if behaviour is None else behaviour.policy_log_probabilities,
            cap=run_config.cap,
            discount=run_config.evaluation_discount,
        )
        trainer = _Trainer(transitions, evaluator, run_config, seed, device, checkpoints, metrics)
        models = out / "models" / f"seed{seed}"
        if behaviour is not None and distributed.is_main():
            save_method(behaviour, models, "behaviour")
        sweep_here = sweep if seed == seeds[0] else None
        trained = _train_all(
            trainer, spec, configs, run_config, seed, device, curves, sweep_here, chosen
        )
        results[seed] = {}
        for name, method in trained.items():
            if distributed.is_main():
                save_method(method, models, name)
            results[seed][name] = trainer.estimate(method, "test")
        tscac = trained.get("tscac")
        if seed == seeds[0] and isinstance(tscac, Tscac) and distributed.is_main():
            # The first seed's TSCAC actor, in the layout `recrl export RUN_DIR` reads; the
            # serving export covers categorical actors only.
            if isinstance(tscac.actor, CategoricalActor):
                save_actor_for_serving(tscac.actor, out, dataset.path)
            else:
                logger.info("the Gaussian TSCAC actor is saved with the models, not exported")
        logger.info("seed %d finished in %.1f s", seed, time.perf_counter() - started)

    notes = [
        "Rows whose logged item is among the candidates: "
        + ", ".join(f"{split} {100 * fraction:.1f}%" for split, fraction in coverage.items())
        + "."
    ]
    if "lambda" in chosen:
        notes.append(f"TSCAC lambda (shared, selected on validation): {chosen['lambda']:g}")
    if own_metrics and metrics is not None:
        metrics.close()
    if distributed.is_main():
        write_tables(out, spec, results, logged_test, configs, notes, cap=run_config.cap)
        plot_curves(out / "curves.png", curves)
    if sweep and distributed.is_main():
        plot_lambda_sweep(
            out / "lambda_sweep.png", sweep, spec, estimate_logged(transitions, "validation")
        )
    return {
        "results": results,
        "sweep": sweep,
        "curves": curves,
        "logged": logged_test,
        "selected_lambda": chosen.get("lambda"),
    }


def _check_resumable(path: Path, resolved: dict[str, Any]) -> None:
    """Raise unless ``path`` contains the configuration ``resolved`` (to resume that run)."""
    if not path.is_file():
        raise RecrlIOError(f"{path}: not found; --resume continues a run started in that folder")
    stored = yaml.safe_load(path.read_text())
    differing = differing_keys(stored, resolved)
    if differing:
        raise InvalidArgumentError(
            f"--resume: the configuration differs from the one stored in {path} at "
            f"{', '.join(differing)}; use the original settings or start a new run folder"
        )


def _warn_if_lambdas_replaced(run_config: RunConfig, configs: dict[str, CommonConfig]) -> None:
    """Warn when configured TSCAC lambdas will give way to the lambda sweep's choice."""
    tscac = configs.get("tscac")
    if not isinstance(tscac, TscacConfig) or not (
        run_config.select_lambda and run_config.lambda_sweep
    ):
        return
    if tscac.lambdas != TscacConfig().lambdas:
        logger.warning(
            "methods.tscac.lambdas is %s, but run.select_lambda is true: the final stage two "
            "uses the lambda of best validation score from run.lambda_sweep instead; set "
            "run.select_lambda=false to train with the configured lambdas",
            tscac.lambdas,
        )


def _train_all(
    trainer: _Trainer,
    spec: ProblemSpec,
    configs: dict[str, CommonConfig],
    run_config: RunConfig,
    seed: int,
    device: torch.device,
    curves: dict[str, list[dict[str, Any]]],
    sweep: list[dict[str, Any]] | None,
    chosen: dict[str, float],
) -> dict[str, Method]:
    trained: dict[str, Method] = {}
    for name in run_config.methods:
        if name == "interaction_ac" and "tscac" in run_config.methods:
            continue
        torch.manual_seed(seed)
        method = build_method(name, spec, configs[name]).to(device)
        curve = curves.setdefault(f"{name}/seed{seed}", [])
        steps = configs[name].steps
        if isinstance(method, Tscac) and not isinstance(method, InteractionActorCritic):
            method = _train_tscac(
                trainer, method, configs, run_config, chosen, curve, sweep, trained, seed
            )
        else:
            for stage in method.stages:
                last = stage == method.stages[-1]
                phase = f"seed{seed}/{name}/{stage}"
                trainer.train_stage(
                    method, stage, steps, select=last, curve=curve, phase_name=phase
                )
        trained[name] = method
    return trained


def _train_tscac(
    trainer: _Trainer,
    method: Tscac,
    configs: dict[str, CommonConfig],
    run_config: RunConfig,
    chosen: dict[str, float],
    curve: list[dict[str, Any]],
    sweep: list[dict[str, Any]] | None,
    trained: dict[str, Method],
    seed: int,
) -> Tscac:
    """Train stage one, derive Interaction-AC, sweep lambda, then train the final stage two."""
    steps = method.config.steps
    phase = f"seed{seed}/tscac/stage_one"
    trainer.train_stage(method, "stage_one", steps, select=False, curve=curve, phase_name=phase)
    stage_one = {k: v.detach().clone() for k, v in method.state_dict().items()}
    if "interaction_ac" in run_config.methods:
        trained["interaction_ac"] = _interaction_ac_from(stage_one, method, configs)
    if run_config.lambda_sweep and sweep is not None:
        points = _lambda_sweep(trainer, method, stage_one, run_config, seed)
        sweep.extend(points)
        if run_config.select_lambda:
            best = max(points, key=lambda point: point["validation_score"])
            chosen["lambda"] = best["lambda"]
            logger.info("selected lambda %.0e on validation", best["lambda"])
    if "lambda" in chosen:
        config = dataclasses.replace(method.tscac_config, lambdas=chosen["lambda"])
        method = cast(Tscac, build_method("tscac", method.spec, config).to(trainer.device))
        method.load_state_dict(stage_one)
        method.lambdas.fill_(chosen["lambda"])
    phase = f"seed{seed}/tscac/stage_two"
    trainer.train_stage(method, "stage_two", steps, select=True, curve=curve, phase_name=phase)
    return method


def _interaction_ac_from(
    stage_one: dict[str, torch.Tensor], tscac: Tscac, configs: dict[str, CommonConfig]
) -> Method:
    """Build Interaction-AC from the stage-one weights of a TSCAC run (same networks)."""
    selected = configs["interaction_ac"]
    config = InteractionActorCriticConfig(
        **dataclasses.asdict(tscac.tscac_config),
        response=getattr(selected, "response", "is_click"),
    )
    method = build_method("interaction_ac", tscac.spec, config).to(tscac.lambdas.device)
    method.load_state_dict(stage_one)
    method.eval()
    return method


def _lambda_sweep(
    trainer: _Trainer,
    method: Tscac,
    stage_one: dict[str, torch.Tensor],
    run_config: RunConfig,
    seed: int,
) -> list[dict[str, Any]]:
    """Retrain stage two from ``stage_one`` for each shared lambda; evaluate on validation."""
    points = []
    for value in run_config.lambda_sweep:
        config = dataclasses.replace(method.tscac_config, lambdas=value)
        swept = cast(Tscac, build_method("tscac", method.spec, config).to(trainer.device))
        swept.load_state_dict(stage_one)
        swept.lambdas.fill_(value)
        trainer.train_stage(
            swept,
            "stage_two",
            run_config.lambda_sweep_steps,
            select=False,
            curve=[],
            phase_name=f"seed{seed}/tscac/lambda_{value:g}",
        )
        estimates = trainer.estimate(swept, "validation")
        score = selection_score(
            estimates["ncis"],
            trainer.logged_validation,
            swept.main,
            swept.signs_by_response,
            run_config.selection_penalty,
        )
        points.append(
            {"lambda": value, "ncis": estimates["ncis"].tolist(), "validation_score": score}
        )
        if trainer.metrics is not None:
            values = {f"eval/{n}": v for n, v in zip(swept.spec.reward_names, estimates["ncis"])}
            values.update({"lambda": value, "validation_score": score})
            phase = f"seed{trainer.seed}/tscac/lambda_sweep"
            trainer.metrics.log(phase, len(points), values)
        logger.info("lambda %.0e: validation watch time %.4f", value, estimates["ncis"][swept.main])
    return points
