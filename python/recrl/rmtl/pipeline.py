"""The RMTL pipeline: pretrain, train critics, fine-tune, test once, report.

For each seed and backbone, :func:`run_rmtl`

1. pretrains the backbone on the training split, keeping the epoch with the best validation
   AUC (mean over tasks);
2. trains one critic per task offline against the frozen pretrained backbone;
3. fine-tunes a copy of the pretrained backbone with the RMTL weights and, for the backbones
   named in ``ablations``, with the ablated weightings ``cw``, ``wl`` and ``nlc``, again with
   early stopping on validation AUC;
4. fine-tunes the target backbone of each transfer pair with the critics trained against the
   source backbone;
5. evaluates every model once on the test split.

Run folder layout::

    config.json                      the resolved settings, written before training starts
    metrics.csv                      every epoch record, see recrl.metrics_writer
    seed<S>/<backbone>/pretrained.{safetensors,json}
    seed<S>/<backbone>/critics.{safetensors,json}
    seed<S>/<backbone>/finetuned_<weighting>.{safetensors,json}
    seed<S>/<backbone>/history.json  per-epoch records of every stage
    plots/seed<S>_<backbone>.png     training loss, validation AUC and critic TD error curves
    results.json                     test metrics of every model and seed
    table.md, table.csv              mean and spread over seeds, in the paper's layout

Under ``torchrun`` every rank trains on its part of each batch (see :mod:`recrl.distributed`),
and rank 0 alone evaluates and writes the run folder.
"""

from __future__ import annotations

import copy
import json
import logging
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

import recrl
from recrl import distributed
from recrl.checkpoint import RunCheckpoints, differing_keys, metrics_rows_at_checkpoint
from recrl.data import load_prepared
from recrl.errors import InvalidArgumentError, RecrlIOError
from recrl.metrics_writer import MetricsWriter
from recrl.nets.mtl import BACKBONE_TITLES, BACKBONES, build_backbone
from recrl.rmtl.config import WEIGHTINGS, RMTLConfig
from recrl.rmtl.data import TASK_NAMES, TaskData
from recrl.rmtl.io import (
    load_backbone,
    load_critics,
    save_backbone,
    save_critics,
    write_json,
)
from recrl.rmtl.report import plot_history, summarise, write_tables
from recrl.rmtl.training import EpochCallback, evaluate, finetune, pretrain, train_critics

__all__ = ["RunPlan", "check_tasks", "method_name", "run_rmtl"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunPlan:
    """The backbones, seeds, ablations and transfers of one call of :func:`run_rmtl`.

    Attributes:
        backbones: backbone kinds, each pretrained, given critics and fine-tuned.
        seeds: random seeds; every backbone is trained once per seed.
        ablations: backbones that are also fine-tuned with the ablated weightings ``cw``,
            ``wl`` and ``nlc``, beside ``rmtl``.
        transfers: (source, target) pairs: fine-tune ``target`` with the critics trained
            against ``source``; both must be in ``backbones``.
        plots: write a PNG of the curves of each seed and backbone.
    """

    backbones: tuple[str, ...]
    seeds: tuple[int, ...] = (0,)
    ablations: tuple[str, ...] = ()
    transfers: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    plots: bool = True

    def __post_init__(self) -> None:
        unknown = [kind for kind in self.backbones if kind not in BACKBONES]
        if not self.backbones or unknown:
            raise InvalidArgumentError(
                f"backbones: expected one or more of {sorted(BACKBONES)}, got "
                f"{list(self.backbones)}"
            )
        if any(kind not in self.backbones for kind in self.ablations):
            raise InvalidArgumentError(
                f"ablations: expected backbones among {list(self.backbones)}, got "
                f"{list(self.ablations)}"
            )
        if len(set(self.seeds)) != len(self.seeds):
            raise InvalidArgumentError(f"seeds: expected distinct seeds, got {list(self.seeds)}")
        if not self.seeds:
            raise InvalidArgumentError("seeds: expected at least one seed, got none")
        for source, target in self.transfers:
            if source not in self.backbones or target not in self.backbones:
                raise InvalidArgumentError(
                    f"transfers: both backbones of ({source}, {target}) must be in "
                    f"backbones {list(self.backbones)}"
                )

    def weightings(self, backbone: str) -> tuple[str, ...]:
        """Return the fine-tuning weightings of ``backbone``: ``rmtl``, then any ablations."""
        return WEIGHTINGS if backbone in self.ablations else ("rmtl",)


def method_name(backbone: str, weighting: str | None = None, critics_of: str | None = None) -> str:
    """Return the table row name: ``ESMM``, ``RMTL-ESMM``, ``RMTL-ESMM (CW)``, ..."""
    title = BACKBONE_TITLES[backbone]
    if weighting is None:
        return title
    name = f"RMTL-{title}"
    if weighting != "rmtl":
        name += f" ({weighting.upper()})"
    if critics_of is not None:
        name += f" (critics of {BACKBONE_TITLES[critics_of]})"
    return name


def _seeded(seed: int) -> torch.Generator:
    torch.manual_seed(seed)
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def _epoch_logger(metrics: MetricsWriter | None, phase: str) -> EpochCallback | None:
    """Return a callback that writes an epoch record to ``metrics`` under ``phase``."""
    if metrics is None:
        return None

    def log(record: dict[str, float]) -> None:
        values = {name: value for name, value in record.items() if name != "epoch"}
        metrics.log(phase, int(record["epoch"]), values)

    return log


def run_rmtl(
    data_path: str | Path,
    out: str | Path,
    config: RMTLConfig,
    plan: RunPlan,
    device: str = "cpu",
    *,
    resume: bool = False,
    checkpoint_every: int = 0,
    metrics: MetricsWriter | None = None,
) -> list[dict[str, Any]]:
    """Run the whole pipeline and write models, histories, plots and tables into ``out``.

    Each stage (pretraining, critics, each fine-tuning) is a checkpointed phase of
    ``out/checkpoints`` (see ``recrl.checkpoint.RunCheckpoints``).

    Args:
        data_path: the prepared dataset folder.
        out: the run folder.
        config: the RMTL settings.
        plan: backbones, seeds, ablations and transfers.
        device: torch device.
        resume: continue the run in ``out``: finished stages are loaded, the interrupted one
            continues from its last checkpoint. The data, device, plan and config must equal
            those stored in ``out/config.json``.
        checkpoint_every: batches (optimizer steps) between periodic checkpoints of a stage;
            0 writes only the checkpoint at the end of each stage.
        metrics: receives every epoch record under the phase ``<stage>/<backbone>/seed<S>``;
            None writes ``metrics.csv`` in ``out`` with a writer of the run's own (on rank 0;
            other ranks write none).

    Raises:
        InvalidArgumentError: ``config.backbone.tasks`` other than ``TASK_NAMES``, or
            ``resume`` with settings that differ from the stored ones.
        RecrlIOError: ``resume`` without a ``config.json`` in ``out``.

    Returns:
        One dict per trained model: ``method``, ``backbone``, ``weighting``, ``seed`` and
        ``test`` (``{task: {metric: value}}``).
    """
    out = Path(out)
    check_tasks(config)
    for stage in ("pretrain", "critic", "finetune"):
        distributed.check_batch_size(f"{stage} batch_size", getattr(config, stage).batch_size)
    dataset = load_prepared(data_path)
    resolved = {
        "recrl_version": recrl.__version__,
        "data": str(Path(data_path).resolve()),
        "device": device,
        "world_size": distributed.world_size(),
        "torch_version": torch.__version__,
        "platform": platform.platform(),
        "plan": {
            "backbones": list(plan.backbones),
            "seeds": list(plan.seeds),
            "ablations": list(plan.ablations),
            "transfers": [list(pair) for pair in plan.transfers],
        },
        "config": config.to_dict(),
    }
    if resume:
        _check_resumable(out / "config.json", resolved)
    elif distributed.is_main():
        write_json(out / "config.json", resolved)
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
    data = TaskData.load(dataset, device)
    logger.info(
        "loaded %s: %d rows, splits %s",
        data_path,
        len(data.labels),
        {name: len(rows) for name, rows in data.splits.items()},
    )

    results: list[dict[str, Any]] = []
    for seed in plan.seeds:
        for backbone in plan.backbones:
            results.extend(
                _run_backbone(data, out, config, plan, backbone, seed, device, checkpoints, metrics)
            )
            _write_on_main(write_json, out / "results.json", results)
        for source, target in plan.transfers:
            results.append(
                _run_transfer(data, out, config, source, target, seed, device, checkpoints, metrics)
            )
            _write_on_main(write_json, out / "results.json", results)
    if own_metrics and metrics is not None:
        metrics.close()

    order = _method_order(plan)
    results_sorted = sorted(results, key=lambda r: order.index(r["method"]))
    _write_on_main(write_tables, out, summarise(results_sorted, TASK_NAMES), TASK_NAMES)
    return results


def check_tasks(config: RMTLConfig) -> None:
    """Raise ``InvalidArgumentError`` unless the backbone's tasks are ``TASK_NAMES``."""
    # TaskData.load derives exactly these label columns, in this order, from every dataset.
    if tuple(config.backbone.tasks) != TASK_NAMES:
        raise InvalidArgumentError(
            f"backbone.tasks: expected [{', '.join(TASK_NAMES)}], the task labels RMTL derives "
            f"from the dataset in that order, got {list(config.backbone.tasks)}"
        )


def _write_on_main(write: Any, *args: Any) -> None:
    """Call ``write(*args)`` on rank 0 only, because every rank has the same models and results."""
    if distributed.is_main():
        write(*args)


def _check_resumable(path: Path, resolved: dict[str, Any]) -> None:
    """Raise unless ``path`` contains the settings of ``resolved`` (to resume that run).

    Versions and the platform are compared with a warning only, so a run can continue after
    an upgrade. Its results may then differ from an uninterrupted run.
    """
    if not path.is_file():
        raise RecrlIOError(f"{path}: not found; --resume continues a run started in that folder")
    stored = json.loads(path.read_text())
    environment = ("recrl_version", "torch_version", "platform")
    for key in environment:
        if stored.get(key) != resolved[key]:
            logger.warning("resume: %s was %s, is now %s", key, stored.get(key), resolved[key])
    differing = differing_keys(
        {k: v for k, v in stored.items() if k not in environment},
        {k: v for k, v in resolved.items() if k not in environment},
    )
    if differing:
        raise InvalidArgumentError(
            f"--resume: the settings differ from those stored in {path} at "
            f"{', '.join(differing)}; use the original settings or start a new run folder"
        )


def _method_order(plan: RunPlan) -> list[str]:
    names = []
    for backbone in plan.backbones:
        names.append(method_name(backbone))
        names.extend(method_name(backbone, w) for w in plan.weightings(backbone))
        names.extend(
            method_name(target, "rmtl", source)
            for source, target in plan.transfers
            if target == backbone
        )
    return names


def _run_backbone(
    data: TaskData,
    out: Path,
    config: RMTLConfig,
    plan: RunPlan,
    backbone: str,
    seed: int,
    device: str,
    checkpoints: RunCheckpoints,
    metrics: MetricsWriter | None,
) -> list[dict[str, Any]]:
    folder = out / f"seed{seed}" / backbone
    phase = f"seed{seed}/{backbone}"
    run_config = config.with_backbone(backbone)
    generator = _seeded(seed)
    started = time.perf_counter()
    histories: dict[str, Any] = {}

    # Step 1: pretrain the backbone.
    model = build_backbone(data.spec, run_config.backbone).to(device)
    batch = config.evaluation_batch_size
    on_epoch = _epoch_logger(metrics, f"pretrain/{backbone}/seed{seed}")
    histories["pretrain"] = pretrain(
        model,
        data,
        config.pretrain,
        generator,
        batch,
        on_epoch,
        checkpoints=checkpoints,
        phase=f"{phase}/pretrain",
    )
    _write_on_main(save_backbone, folder / "pretrained", model)
    results = [_result(method_name(backbone), backbone, None, seed, model, data, batch)]

    # Step 2: critics against the frozen pretrained backbone.
    on_epoch = _epoch_logger(metrics, f"critic/{backbone}/seed{seed}")
    critics, histories["critic"] = train_critics(
        model,
        data,
        config.critic,
        generator,
        batch,
        on_epoch,
        checkpoints=checkpoints,
        phase=f"{phase}/critics",
    )
    _write_on_main(save_critics, folder / "critics", critics, data.spec, len(model.tasks))

    # Step 3: fine-tune a copy per weighting, then test it once.
    for weighting in plan.weightings(backbone):
        tuned = copy.deepcopy(model)
        finetune_config = run_config.with_weighting(weighting).finetune
        on_epoch = _epoch_logger(metrics, f"finetune_{weighting}/{backbone}/seed{seed}")
        histories[f"finetune_{weighting}"] = finetune(
            tuned,
            critics,
            data,
            finetune_config,
            generator,
            batch,
            on_epoch,
            checkpoints=checkpoints,
            phase=f"{phase}/finetune_{weighting}",
        )
        _write_on_main(save_backbone, folder / f"finetuned_{weighting}", tuned)
        name = method_name(backbone, weighting)
        results.append(_result(name, backbone, weighting, seed, tuned, data, batch))

    _write_on_main(write_json, folder / "history.json", histories)
    if plan.plots and distributed.is_main():
        plot_history(
            out / "plots" / f"seed{seed}_{backbone}.png",
            f"{BACKBONE_TITLES[backbone]}, seed {seed}",
            histories,
        )
    logger.info("%s seed %d finished in %.1f s", backbone, seed, time.perf_counter() - started)
    return results


def _run_transfer(
    data: TaskData,
    out: Path,
    config: RMTLConfig,
    source: str,
    target: str,
    seed: int,
    device: str,
    checkpoints: RunCheckpoints,
    metrics: MetricsWriter | None,
) -> dict[str, Any]:
    generator = _seeded(seed)
    # NOTE: every rank reads rank 0's files here, so a run on several machines needs a run
    # folder that all of them share.
    distributed.barrier()
    model = load_backbone(out / f"seed{seed}" / target / "pretrained", device)
    critics = load_critics(out / f"seed{seed}" / source / "critics", device)
    finetune_config = config.with_weighting("rmtl").finetune
    on_epoch = _epoch_logger(metrics, f"finetune_rmtl/{target}_critics_of_{source}/seed{seed}")
    history = finetune(
        model,
        critics,
        data,
        finetune_config,
        generator,
        config.evaluation_batch_size,
        on_epoch,
        checkpoints=checkpoints,
        phase=f"seed{seed}/{target}/finetune_rmtl_critics_of_{source}",
    )
    folder = out / f"seed{seed}" / target
    _write_on_main(save_backbone, folder / f"finetuned_rmtl_critics_of_{source}", model)
    _write_on_main(write_json, folder / f"history_transfer_from_{source}.json", history)
    name = method_name(target, "rmtl", source)
    return _result(name, target, "rmtl", seed, model, data, config.evaluation_batch_size)


def _result(
    method: str,
    backbone: str,
    weighting: str | None,
    seed: int,
    model: Any,
    data: TaskData,
    batch_size: int,
) -> dict[str, Any]:
    test = distributed.broadcast_from_main(lambda: evaluate(model, data, "test", batch_size))
    logger.info("%s seed %d test: %s", method, seed, json.dumps(test))
    return {
        "method": method,
        "backbone": backbone,
        "weighting": weighting,
        "seed": seed,
        "test": test,
    }
