"""Per-task evaluation metrics of multi-task CTR/CTCVR models, in NumPy.

Metrics are computed for each task separately and never pooled across tasks:

- AUC: the probability that a random positive scores above a random negative, ties counting
  one half (the Mann-Whitney U statistic over average ranks).
- logloss: the mean binary cross-entropy.
- session logloss: the mean over sessions of the within-session mean BCE, so long sessions
  weigh as much as short ones (the metric of the RMTL paper's main table).
- grouped AUC: the AUC of each session that has both a positive and a negative, averaged with
  weights equal to the session's row count. Sessions with one class are left out.

NOTE: :func:`task_metrics` is the single entry point the RMTL pipeline uses, so it can be
replaced by a compiled implementation with the same signature.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from recrl.errors import ShapeError

__all__ = ["auc", "grouped_auc", "logloss", "session_logloss", "task_metrics"]

_EPSILON = 1e-7


def _average_ranks(scores: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Return ranks 1..N with ties sharing the mean of their positions."""
    order = np.argsort(scores, kind="mergesort")
    ordered = scores[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], len(ordered)]
    mean_rank = (starts + ends + 1) / 2.0  # positions start..end-1 hold ranks start+1..end
    ranks = np.empty(len(scores), dtype=np.float64)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def auc(labels: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """Return the ROC AUC of scores [N] against binary labels [N]; NaN with one class only."""
    y = np.asarray(labels, dtype=np.float64) > 0.5
    s = np.asarray(scores, dtype=np.float64)
    positives = int(y.sum())
    negatives = len(y) - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    rank_sum = float(_average_ranks(s)[y].sum())
    return (rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives)


def _bce(labels: npt.NDArray[np.float64], scores: npt.NDArray[np.float64]) -> np.ndarray:
    p = np.clip(scores, _EPSILON, 1.0 - _EPSILON)
    return -(labels * np.log(p) + (1.0 - labels) * np.log1p(-p))


def logloss(labels: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """Return the mean BCE of probabilities [N] against labels [N]."""
    y = np.asarray(labels, dtype=np.float64)
    return float(_bce(y, np.asarray(scores, dtype=np.float64)).mean())


def _group_bounds(sessions: npt.NDArray[np.int64]) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(sessions, kind="stable")
    ordered = sessions[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    return order, np.r_[starts, len(ordered)]


def session_logloss(labels: npt.ArrayLike, scores: npt.ArrayLike, sessions: npt.ArrayLike) -> float:
    """Return the mean over sessions of the within-session mean BCE.

    Args:
        labels: [N] binary labels.
        scores: [N] probabilities.
        sessions: int [N] session id of each row, in any order.
    """
    y = np.asarray(labels, dtype=np.float64)
    losses = _bce(y, np.asarray(scores, dtype=np.float64))
    _, inverse, counts = np.unique(np.asarray(sessions), return_inverse=True, return_counts=True)
    sums = np.bincount(inverse.reshape(-1), weights=losses, minlength=len(counts))
    return float((sums / counts).mean())


def grouped_auc(labels: npt.ArrayLike, scores: npt.ArrayLike, sessions: npt.ArrayLike) -> float:
    """Return the row-weighted mean AUC over sessions with both classes; NaN if none has."""
    y = np.asarray(labels, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    order, bounds = _group_bounds(np.asarray(sessions, dtype=np.int64))
    total = 0.0
    weight = 0
    for start, end in zip(bounds[:-1], bounds[1:]):
        rows = order[start:end]
        group_labels = y[rows]
        positives = int((group_labels > 0.5).sum())
        if positives == 0 or positives == len(rows):
            continue
        total += auc(group_labels, s[rows]) * len(rows)
        weight += len(rows)
    return total / weight if weight else float("nan")


def task_metrics(
    labels: npt.ArrayLike,
    scores: npt.ArrayLike,
    sessions: npt.ArrayLike,
    task_names: Sequence[str],
) -> dict[str, dict[str, float]]:
    """Compute AUC, logloss, session logloss and grouped AUC of each task.

    Args:
        labels: [N, K] binary labels.
        scores: [N, K] predicted probabilities.
        sessions: int [N] session id of each row.
        task_names: K names, the keys of the result.

    Returns:
        ``{task: {"auc", "logloss", "session_logloss", "grouped_auc"}}``.
    """
    y = np.asarray(labels, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    groups = np.asarray(sessions)
    if y.ndim != 2 or y.shape[1] != len(task_names):
        raise ShapeError(f"labels: expected shape (n, {len(task_names)}), got {y.shape}")
    if s.shape != y.shape:
        raise ShapeError(f"scores: expected shape {y.shape}, got {s.shape}")
    if groups.shape != (len(y),):
        raise ShapeError(f"sessions: expected shape ({len(y)},), got {groups.shape}")
    return {
        name: {
            "auc": auc(y[:, k], s[:, k]),
            "logloss": logloss(y[:, k], s[:, k]),
            "session_logloss": session_logloss(y[:, k], s[:, k], groups),
            "grouped_auc": grouped_auc(y[:, k], s[:, k], groups),
        }
        for k, name in enumerate(task_names)
    }
