"""The three RMTL training stages: pretraining, critic training and critic-weighted fine-tuning.

Each stage returns its per-epoch history, a list of flat dicts with tags ``loss/...`` and
``eval/...``, so the pipeline can write curves and plots from it.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

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


def _shuffled_batches(
    rows: torch.Tensor, batch_size: int, generator: torch.Generator
) -> list[torch.Tensor]:
    order = rows[torch.randperm(len(rows), generator=generator).to(rows.device)]
    return list(torch.split(order, batch_size))


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
    on_epoch: EpochCallback | None = None,
) -> History:
    """Run epochs of ``step(rows) -> loss`` and keep the weights of the best validation AUC."""
    history: History = []
    best_score = -float("inf")
    best_state = copy.deepcopy(model.state_dict())
    stale = 0
    for epoch in progress_bar(range(1, epochs + 1), description=stage, unit="epoch"):
        started = time.perf_counter()
        model.train()
        losses = []
        batches = _shuffled_batches(data.splits["train"], batch_size, generator)
        for rows in progress_bar(batches, description=f"{stage} epoch {epoch}", leave=False):
            loss = step(rows)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))

        validation = evaluate(model, data, "validation", evaluation_batch_size)
        score = mean_auc(validation)
        record = {
            "epoch": float(epoch),
            f"loss/{stage}": float(np.mean(losses)),
            "eval/validation_mean_auc": score,
            "time/epoch_s": time.perf_counter() - started,
            **_flatten("eval/validation", validation),
        }
        history.append(record)
        if on_epoch is not None:
            on_epoch(record)
        logger.info(
            "%s epoch %d: loss %.5f, validation mean AUC %.4f",
            stage,
            epoch,
            record[f"loss/{stage}"],
            score,
        )
        if score > best_score:
            best_score, best_state, stale = score, copy.deepcopy(model.state_dict()), 0
        else:
            stale += 1
            if stale >= patience:
                logger.info("%s stopped early after epoch %d", stage, epoch)
                break
    model.load_state_dict(best_state)
    model.eval()
    return history


def pretrain(
    model: MultiTaskBackbone,
    data: TaskData,
    config: PretrainConfig,
    generator: torch.Generator,
    evaluation_batch_size: int = 8192,
    on_epoch: EpochCallback | None = None,
) -> History:
    """Train ``model`` on the unweighted mean of the task BCE losses, in place."""
    optimizer = torch.optim.Adam(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )

    def step(rows: torch.Tensor) -> torch.Tensor:
        probabilities = model(data.batch(rows))
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
        on_epoch,
    )


def train_critics(
    model: MultiTaskBackbone,
    data: TaskData,
    config: CriticConfig,
    generator: torch.Generator,
    evaluation_batch_size: int = 8192,
    on_epoch: EpochCallback | None = None,
) -> tuple[CriticTrainer, History]:
    """Train one critic per task against the frozen ``model`` on the training sessions.

    The backbone's predictions at every row are computed once. A transition's next state is
    the next logged step of its session (``next_index``), and the backbone's noiseless
    prediction there is the next action.
    """
    trainer = CriticTrainer(data.spec, len(model.tasks), config, generator).to(data.labels.device)
    everything = torch.arange(len(data.labels), device=data.labels.device)
    predictions = predict(model, data, everything, evaluation_batch_size)
    history: History = []
    for epoch in progress_bar(range(1, config.epochs + 1), description="critic", unit="epoch"):
        started = time.perf_counter()
        losses = []
        batches = _shuffled_batches(data.splits["train"], config.batch_size, generator)
        for rows in progress_bar(batches, description=f"critic epoch {epoch}", leave=False):
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
            )
            losses.append(result["loss/critic"])
        validation_loss = critic_td_error(trainer, data, predictions, "validation")
        history.append(
            {
                "epoch": float(epoch),
                "loss/critic": float(np.mean(losses)),
                "eval/validation_td_error": validation_loss,
                "time/epoch_s": time.perf_counter() - started,
            }
        )
        if on_epoch is not None:
            on_epoch(history[-1])
        logger.info(
            "critic epoch %d: TD loss %.5f, validation TD error %.5f",
            epoch,
            history[-1]["loss/critic"],
            validation_loss,
        )
    return trainer, history


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
) -> History:
    """Fine-tune ``model`` in place with critic-weighted task losses; critics stay fixed.

    Each batch's weights omega [B, K] come from the critics evaluated at the model's current
    predictions, detached (see :func:`recrl.rmtl.losses.task_weights`).
    """
    optimizer = torch.optim.Adam(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    critics.critics.eval()

    def step(rows: torch.Tensor) -> torch.Tensor:
        features = data.batch(rows)
        probabilities = model(features)
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
        on_epoch,
    )
