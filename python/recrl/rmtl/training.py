"""The three RMTL training stages: pretraining, critic training and critic-weighted fine-tuning.

Each stage returns its per-epoch history, a list of flat dicts with tags ``loss/...`` and
``eval/...``, so the pipeline can write curves and plots from it.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from recrl import distributed
from recrl.checkpoint import Phase, RunCheckpoints, TrainingState
from recrl.evaluation.metrics import task_metrics
from recrl.nets.mtl import MultiTaskBackbone
from recrl.progress import progress_bar
from recrl.rmtl.config import CriticConfig, FinetuneConfig, PretrainConfig
from recrl.rmtl.critics import CriticTrainer
from recrl.rmtl.data import TaskData
from recrl.rmtl.losses import task_rewards, task_weights, weighted_task_loss

__all__ = ["evaluate", "finetune", "predict", "pretrain", "train_critics"]

logger = logging.getLogger(__name__)

History = list[dict[str, float]]
EpochCallback = Callable[[dict[str, float]], None]
"""Receives each epoch's record as soon as the epoch ends (to write it to the run's metrics)."""


@torch.no_grad()
def predict(
    model: MultiTaskBackbone, data: TaskData, rows: torch.Tensor, batch_size: int = 8192
) -> torch.Tensor:
    """Return the model's task probabilities float [n, K] for ``rows`` [n], in evaluation mode."""
    was_training = model.training
    model.eval()
    starts = range(0, len(rows), batch_size)
    outputs = [
        model(data.batch(rows[start : start + batch_size]))
        for start in progress_bar(starts, description="predict", unit="batch", leave=False)
    ]
    model.train(was_training)
    if not outputs:
        return torch.zeros((0, len(model.tasks)), device=rows.device)
    return torch.cat(outputs)


def evaluate(
    model: MultiTaskBackbone, data: TaskData, split: str, batch_size: int = 8192
) -> dict[str, dict[str, float]]:
    """Return AUC, logloss, session logloss and grouped AUC of each task on ``split``.

    The metrics come from :func:`recrl.evaluation.metrics.task_metrics`, computed in Rust; its
    size-weighted ``session_auc`` is reported as ``grouped_auc``.
    """
    rows = data.splits[split]
    scores = predict(model, data, rows, batch_size)
    metrics = task_metrics(
        data.labels[rows].cpu().numpy(),
        scores.cpu().numpy(),
        data.sessions[rows].cpu().numpy().astype(np.int64),
        model.tasks,
    )
    return {
        task: {
            "auc": values["auc"],
            "logloss": values["logloss"],
            "session_logloss": values["session_logloss"],
            "grouped_auc": values["session_auc"],
        }
        for task, values in metrics.items()
    }


def mean_auc(metrics: dict[str, dict[str, float]]) -> float:
    """Return the mean AUC over tasks, the early-stopping criterion; NaN AUCs are skipped."""
    values = [m["auc"] for m in metrics.values() if np.isfinite(m["auc"])]
    return float(np.mean(values)) if values else float("nan")


def _flatten(prefix: str, metrics: dict[str, dict[str, float]]) -> dict[str, float]:
    return {
        f"{prefix}/{task}/{name}": v
        for task, values in metrics.items()
        for name, v in values.items()
    }


_NO_CHECKPOINTS = RunCheckpoints(None)


@dataclass
class _EpochLoop:
    """Position of an epochs-of-shuffled-batches loop and what it has gathered, resumable.

    A periodic checkpoint stores the current epoch's shuffled order and the number of its
    batches already taken, so a resumed loop continues at the next batch of the same order.
    """

    phase: Phase
    epoch: int = 1
    batches_done: int = 0
    steps: int = 0
    order: torch.Tensor | None = None
    losses: list[float] = field(default_factory=list)
    history: History = field(default_factory=list)
    best_score: float = -float("inf")
    stale: int = 0
    best_state: dict[str, torch.Tensor] | None = None

    @classmethod
    def start(cls, phase: Phase, device: torch.device) -> _EpochLoop:
        """Return a fresh loop, or the loop of ``phase``'s periodic checkpoint (restored)."""
        loop = cls(phase)
        checkpoint = phase.resume()
        if checkpoint is None:
            return loop
        values = checkpoint.metadata
        loop.epoch, loop.batches_done = values["epoch"], values["batches_done"]
        loop.steps, loop.losses, loop.history = values["step"], values["losses"], values["history"]
        loop.best_score, loop.stale = values["best_score"], values["stale"]
        loop.order = checkpoint.tensors["order"].to(device)
        best = {
            key.removeprefix("best/"): value
            for key, value in checkpoint.tensors.items()
            if key.startswith("best/")
        }
        loop.best_state = {key: value.to(device) for key, value in best.items()} or None
        return loop

    def batches(
        self, rows: torch.Tensor, batch_size: int, generator: torch.Generator
    ) -> Iterator[torch.Tensor]:
        """Yield the remaining batches of the current epoch, shuffling at its start."""
        if self.order is None:
            self.order = rows[torch.randperm(len(rows), generator=generator).to(rows.device)]
        yield from torch.split(self.order, batch_size)[self.batches_done :]

    def finish_batch(self, loss: float) -> None:
        """Count a finished batch and write a periodic checkpoint when one is due."""
        self.losses.append(loss)
        self.batches_done += 1
        self.steps += 1
        if not self.phase.due(self.steps):
            return
        tensors = {f"best/{key}": value for key, value in (self.best_state or {}).items()}
        if self.order is not None:
            tensors["order"] = self.order
        metadata = {
            "epoch": self.epoch,
            "batches_done": self.batches_done,
            "losses": self.losses,
            "history": self.history,
            "best_score": self.best_score,
            "stale": self.stale,
        }
        self.phase.save(self.steps, tensors=tensors, metadata=metadata)

    def finish_epoch(self) -> None:
        """Move to the next epoch."""
        self.epoch += 1
        self.batches_done = 0
        self.order = None
        self.losses = []


def _fit_with_early_stopping(
    model: MultiTaskBackbone,
    data: TaskData,
    epochs: int,
    patience: int,
    optimizer: torch.optim.Optimizer,
    step: Any,
    batch_size: int,
    generator: torch.Generator,
    stage: str,
    evaluation_batch_size: int,
    phase: Phase,
    on_epoch: EpochCallback | None = None,
) -> History:
    """Run epochs of ``step(rows) -> loss`` and keep the weights of the best validation AUC.

    A finished ``phase`` is loaded instead of trained; an interrupted one continues from its
    last periodic checkpoint. ``on_epoch`` receives each epoch's record.
    """
    distributed.check_batch_size(f"{stage} batch_size", batch_size)
    if phase.completed:
        history: History = phase.restore_completed()["history"]
        model.eval()
        return history
    loop = _EpochLoop.start(phase, data.labels.device)
    if loop.best_state is None:
        loop.best_state = copy.deepcopy(model.state_dict())
    best_state = loop.best_state
    while loop.epoch <= epochs:
        epoch = loop.epoch
        started = time.perf_counter()
        model.train()
        batches = loop.batches(data.splits["train"], batch_size, generator)
        for rows in progress_bar(batches, description=f"{stage} epoch {epoch}", leave=False):
            # Under torchrun each rank trains on its part of the same global batch.
            part = distributed.split_batch(rows)
            loss = step(part.rows)
            optimizer.zero_grad(set_to_none=True)
            (loss * part.loss_scale).backward()
            optimizer.step()
            loop.finish_batch(part.global_mean(float(loss.detach())))
            logger.debug("%s step %d: loss %.9g", stage, loop.steps, loop.losses[-1])

        # Rank 0 evaluates, and every rank receives the metrics for early stopping.
        validation = distributed.broadcast_from_main(
            lambda: evaluate(model, data, "validation", evaluation_batch_size)
        )
        score = mean_auc(validation)
        record = {
            "epoch": float(epoch),
            f"loss/{stage}": float(np.mean(loop.losses)),
            "eval/validation_mean_auc": score,
            "time/epoch_s": time.perf_counter() - started,
            **_flatten("eval/validation", validation),
        }
        loop.history.append(record)
        if on_epoch is not None:
            on_epoch(record)
        logger.info(
            "%s epoch %d: loss %.5f, validation mean AUC %.4f",
            stage,
            epoch,
            record[f"loss/{stage}"],
            score,
        )
        loop.finish_epoch()
        if score > loop.best_score:
            loop.best_score, loop.stale = score, 0
            best_state = copy.deepcopy(model.state_dict())
            loop.best_state = best_state
            phase.save_best(loop.steps, score, model)
        else:
            loop.stale += 1
            if loop.stale >= patience:
                logger.info("%s stopped early after epoch %d", stage, epoch)
                break
    model.load_state_dict(best_state)
    model.eval()
    phase.complete({"history": loop.history})
    return loop.history


def _state(
    modules: dict[str, torch.nn.Module],
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
) -> TrainingState:
    return TrainingState(
        modules=modules,
        optimizers={"optimizer": optimizer},
        torch_generators={"shuffle": generator},
    )


def pretrain(
    model: MultiTaskBackbone,
    data: TaskData,
    config: PretrainConfig,
    generator: torch.Generator,
    evaluation_batch_size: int = 8192,
    on_epoch: EpochCallback | None = None,
    *,
    checkpoints: RunCheckpoints = _NO_CHECKPOINTS,
    phase: str = "pretrain",
) -> History:
    """Train ``model`` on the unweighted mean of the task BCE losses, in place.

    ``checkpoints`` and ``phase`` name where the stage's checkpoints go (see
    ``recrl.checkpoint.RunCheckpoints``); by default none are written.
    """
    optimizer = torch.optim.Adam(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    trained = distributed.wrap(model)

    def step(rows: torch.Tensor) -> torch.Tensor:
        probabilities = trained(data.batch(rows))
        labels = data.labels[rows]
        return weighted_task_loss(probabilities, labels, torch.ones_like(labels))

    return _fit_with_early_stopping(
        model,
        data,
        config.epochs,
        config.patience,
        optimizer,
        step,
        config.batch_size,
        generator,
        "pretrain",
        evaluation_batch_size,
        checkpoints.phase(phase, _state({"model": model}, optimizer, generator)),
        on_epoch,
    )


def train_critics(
    model: MultiTaskBackbone,
    data: TaskData,
    config: CriticConfig,
    generator: torch.Generator,
    evaluation_batch_size: int = 8192,
    on_epoch: EpochCallback | None = None,
    *,
    checkpoints: RunCheckpoints = _NO_CHECKPOINTS,
    phase: str = "critics",
) -> tuple[CriticTrainer, History]:
    """Train one critic per task against the frozen ``model`` on the training sessions.

    The backbone's predictions at every row are computed once. A transition's next state is
    the next logged step of its session (``next_index``), and the backbone's noiseless
    prediction there is the next action. ``checkpoints`` and ``phase`` as in :func:`pretrain`.
    """
    distributed.check_batch_size("critic batch_size", config.batch_size)
    trainer = CriticTrainer(data.spec, len(model.tasks), config, generator).to(data.labels.device)
    trainer.trained_critics = nn.ModuleList(distributed.wrap(c) for c in trainer.critics)
    modules: dict[str, torch.nn.Module] = {
        "critics": trainer.critics,
        "target_critics": trainer.target_critics,
    }
    stage = checkpoints.phase(phase, _state(modules, trainer.optimizer, generator))
    if stage.completed:
        trainer.trained_critics = trainer.critics
        return trainer, stage.restore_completed()["history"]
    everything = torch.arange(len(data.labels), device=data.labels.device)
    predictions = predict(model, data, everything, evaluation_batch_size)
    loop = _EpochLoop.start(stage, data.labels.device)
    while loop.epoch <= config.epochs:
        epoch = loop.epoch
        started = time.perf_counter()
        batches = loop.batches(data.splits["train"], config.batch_size, generator)
        for batch_rows in progress_bar(batches, description=f"critic epoch {epoch}", leave=False):
            part = distributed.split_batch(batch_rows)
            rows = part.rows
            next_rows = data.next_index[rows]
            has_next = next_rows >= 0
            next_rows = torch.where(has_next, next_rows, rows)
            result = trainer.update(
                data.batch(rows),
                predictions[rows],
                data.labels[rows],
                data.batch(next_rows),
                predictions[next_rows],
                has_next,
                part,
            )
            loop.finish_batch(result["loss/critic"])
        validation_loss = distributed.broadcast_from_main(
            lambda: critic_td_error(trainer, data, predictions, "validation")
        )
        loop.history.append(
            {
                "epoch": float(epoch),
                "loss/critic": float(np.mean(loop.losses)),
                "eval/validation_td_error": validation_loss,
                "time/epoch_s": time.perf_counter() - started,
            }
        )
        if on_epoch is not None:
            on_epoch(loop.history[-1])
        logger.info(
            "critic epoch %d: TD loss %.5f, validation TD error %.5f",
            epoch,
            loop.history[-1]["loss/critic"],
            validation_loss,
        )
        loop.finish_epoch()
    stage.complete({"history": loop.history})
    trainer.trained_critics = trainer.critics
    return trainer, loop.history


@torch.no_grad()
def critic_td_error(
    trainer: CriticTrainer, data: TaskData, predictions: torch.Tensor, split: str
) -> float:
    """Return the mean squared TD error of the critics on ``split`` with noiseless actions."""
    rows = data.splits[split]
    if len(rows) == 0:
        return float("nan")
    next_rows = data.next_index[rows]
    has_next = next_rows >= 0
    next_rows = torch.where(has_next, next_rows, rows)
    actions = predictions[rows]
    rewards = task_rewards(actions, data.labels[rows])
    targets = trainer.compute_target(
        rewards, data.batch(next_rows), predictions[next_rows], has_next
    )
    values = trainer.values(data.batch(rows), actions)
    return float(((values - targets) ** 2).mean())


def finetune(
    model: MultiTaskBackbone,
    critics: CriticTrainer,
    data: TaskData,
    config: FinetuneConfig,
    generator: torch.Generator,
    evaluation_batch_size: int = 8192,
    on_epoch: EpochCallback | None = None,
    *,
    checkpoints: RunCheckpoints = _NO_CHECKPOINTS,
    phase: str = "finetune",
) -> History:
    """Fine-tune ``model`` in place with critic-weighted task losses; critics stay fixed.

    Each batch's weights omega [B, K] come from the critics evaluated at the model's current
    predictions, detached (see :func:`recrl.rmtl.losses.task_weights`). ``checkpoints`` and
    ``phase`` as in :func:`pretrain`.
    """
    optimizer = torch.optim.Adam(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    critics.critics.eval()
    trained = distributed.wrap(model)

    def step(rows: torch.Tensor) -> torch.Tensor:
        features = data.batch(rows)
        probabilities = trained(features)
        labels = data.labels[rows]
        q_values = critics.values(features, probabilities.detach())
        weights = task_weights(q_values, labels, config.weight_scale, config.weighting)
        return weighted_task_loss(probabilities, labels, weights)

    return _fit_with_early_stopping(
        model,
        data,
        config.epochs,
        config.patience,
        optimizer,
        step,
        config.batch_size,
        generator,
        f"finetune_{config.weighting}",
        evaluation_batch_size,
        checkpoints.phase(phase, _state({"model": model}, optimizer, generator)),
        on_epoch,
    )
