"""Classification metrics for multi-task recommendation models, computed in Rust.

AUC is the Mann-Whitney statistic: the share of (positive, negative) pairs in which the positive
row scores higher, a tied pair counting 1/2. It equals ``sklearn.metrics.roc_auc_score`` for
binary labels.

Grouped AUC (GAUC, per user or per session) averages the AUC of each group that contains both
classes, weighted by the group's number of rows by default (``weighting="uniform"`` weighs every
group equally). Groups with a single class have no AUC; they are left out and counted.

Logloss is the mean binary cross-entropy with probabilities clipped to ``[eps, 1 - eps]``,
``eps = 1e-7`` by default, so a prediction of exactly 0 or 1 for the wrong class costs
``-log(1e-7) = 16.1`` instead of infinity. Session logloss is the mean over sessions of the mean
cross-entropy within each session, so every session weighs the same whatever its length.

Metrics are always computed per task. :func:`task_metrics` takes [N, K] arrays and never pools
rows of different tasks.

Labels are uint8, bool, float32 or float64 arrays holding exactly 0 or 1; scores are float32 or
float64 arrays without NaN (probabilities in [0, 1] for the logloss family). A bad row raises
:class:`recrl.errors.InvalidDataError` naming the row; empty input raises
:class:`recrl.errors.InvalidArgumentError`.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Union, cast

import numpy as np
import numpy.typing as npt

from recrl import _core
from recrl.errors import InvalidArgumentError, InvalidDataError, ShapeError

__all__ = [
    "DEFAULT_EPS",
    "GroupedAuc",
    "UndefinedMetricWarning",
    "auc",
    "grouped_auc",
    "logloss",
    "session_logloss",
    "task_metrics",
]

logger = logging.getLogger(__name__)

DEFAULT_EPS = 1e-7
"""Probability clip of the logloss family: predictions are clipped to [eps, 1 - eps]."""


_LabelArray = Union[npt.NDArray[np.uint8], npt.NDArray[np.float32], npt.NDArray[np.float64]]


class UndefinedMetricWarning(RuntimeWarning):
    """A metric that is undefined for the input, such as AUC when only one class is present."""


@dataclass(frozen=True)
class GroupedAuc:
    """Grouped AUC and how many groups entered it."""

    value: float
    """Weighted mean of the per-group AUCs; NaN when no group contains both classes."""
    groups_used: int
    """Groups containing both classes."""
    groups_skipped: int
    """Groups with a single class, left out of the mean."""


def _labels_array(labels: npt.ArrayLike, argument: str = "labels") -> _LabelArray:
    array = np.asarray(labels)
    if array.ndim != 1:
        raise ShapeError(f"{argument}: expected a 1-D array [N], got shape {array.shape}")
    if array.dtype == np.bool_:
        return np.ascontiguousarray(array).view(np.uint8)
    if array.dtype in (np.uint8, np.float32, np.float64):
        return cast(_LabelArray, np.ascontiguousarray(array))
    if np.issubdtype(array.dtype, np.integer):
        bad = np.flatnonzero((array != 0) & (array != 1))
        if bad.size:
            row = int(bad[0])
            raise InvalidDataError(
                f"column {argument}, row {row}: expected 0 or 1, got {array[row]}"
            )
        return array.astype(np.uint8)
    raise InvalidArgumentError(
        f"{argument}: expected dtype uint8, bool, integer, float32 or float64, got {array.dtype}"
    )


def _scores_array(scores: npt.ArrayLike, argument: str = "scores") -> npt.NDArray[np.floating]:
    array = np.asarray(scores)
    if array.ndim != 1:
        raise ShapeError(f"{argument}: expected a 1-D array [N], got shape {array.shape}")
    if array.dtype in (np.float32, np.float64):
        return np.ascontiguousarray(array)
    if np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_:
        return np.ascontiguousarray(array, dtype=np.float64)
    raise InvalidArgumentError(f"{argument}: expected a float array, got dtype {array.dtype}")


def _groups_array(groups: npt.ArrayLike, argument: str) -> npt.NDArray[np.int64]:
    array = np.asarray(groups)
    if array.ndim != 1:
        raise ShapeError(f"{argument}: expected a 1-D array [N], got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.integer):
        raise InvalidArgumentError(f"{argument}: expected int64 ids, got dtype {array.dtype}")
    return np.ascontiguousarray(array, dtype=np.int64)


def _warn_undefined(problem: str, task: str | None) -> None:
    where = f" for task {task!r}" if task is not None else ""
    message = f"{problem}{where}; returning NaN"
    warnings.warn(message, UndefinedMetricWarning, stacklevel=3)


def auc(labels: npt.ArrayLike, scores: npt.ArrayLike, *, task: str | None = None) -> float:
    """Compute the area under the ROC curve, tied scores counting as half a correct pair.

    Args:
        labels: uint8, bool or float [N], each 0 or 1.
        scores: float32 or float64 [N], any real values (no NaN).
        task: Name of the task, used in the warning when the AUC is undefined.

    Returns:
        The AUC in [0, 1], or NaN with an :class:`UndefinedMetricWarning` when all labels are
        equal.

    Raises:
        InvalidArgumentError: The input is empty.
        ShapeError: ``labels`` and ``scores`` differ in length.
        InvalidDataError: A label is not 0 or 1, or a score is NaN; the message names the row.
    """
    value, positives, negatives = _core.auc(_labels_array(labels), _scores_array(scores))
    if positives == 0 or negatives == 0:
        _warn_undefined(
            f"AUC is undefined with {positives} positive and {negatives} negative rows", task
        )
    return float(value)


def grouped_auc(
    labels: npt.ArrayLike,
    scores: npt.ArrayLike,
    groups: npt.ArrayLike,
    *,
    weighting: Literal["size", "uniform"] = "size",
    task: str | None = None,
) -> GroupedAuc:
    """Compute the mean AUC within groups (users or sessions).

    ``GAUC = sum_g w_g AUC_g / sum_g w_g`` over the groups g containing both classes, with
    ``w_g`` the number of rows of g (``weighting="size"``) or 1 (``weighting="uniform"``).

    Args:
        labels: uint8, bool or float [N], each 0 or 1.
        scores: float32 or float64 [N], no NaN.
        groups: int64 [N] group id of each row; rows of a group need not be contiguous.
        weighting: ``"size"`` or ``"uniform"``.
        task: Name of the task, used in the warning when no group has both classes.

    Returns:
        The grouped AUC with the numbers of used and skipped groups. The value is NaN, with an
        :class:`UndefinedMetricWarning`, when every group has a single class.

    Raises:
        InvalidArgumentError: The input is empty or ``weighting`` is unknown.
        ShapeError: The arrays differ in length.
        InvalidDataError: A label is not 0 or 1, or a score is NaN; the message names the row.
    """
    value, used, skipped = _core.grouped_auc(
        _labels_array(labels),
        _scores_array(scores),
        _groups_array(groups, "groups"),
        weighting=weighting,
    )
    if used == 0:
        _warn_undefined(
            f"grouped AUC is undefined: none of {skipped} groups has both classes", task
        )
    return GroupedAuc(value=float(value), groups_used=int(used), groups_skipped=int(skipped))


def logloss(labels: npt.ArrayLike, scores: npt.ArrayLike, *, eps: float = DEFAULT_EPS) -> float:
    """Compute the mean binary cross-entropy, probabilities clipped to ``[eps, 1 - eps]``.

    Args:
        labels: uint8, bool or float [N], each 0 or 1.
        scores: float32 or float64 [N], predicted probabilities in [0, 1].
        eps: Clip in [0, 0.5).

    Returns:
        ``-mean(y log p + (1 - y) log(1 - p))``.

    Raises:
        InvalidArgumentError: The input is empty or ``eps`` is outside [0, 0.5).
        ShapeError: ``labels`` and ``scores`` differ in length.
        InvalidDataError: A label is not 0 or 1, or a score is NaN or outside [0, 1]; the
            message names the row.
    """
    return float(_core.logloss(_labels_array(labels), _scores_array(scores), eps=eps))


def session_logloss(
    labels: npt.ArrayLike,
    scores: npt.ArrayLike,
    sessions: npt.ArrayLike,
    *,
    eps: float = DEFAULT_EPS,
) -> float:
    """Compute the mean over sessions of the mean binary cross-entropy within each session.

    Args:
        labels: uint8, bool or float [N], each 0 or 1.
        scores: float32 or float64 [N], predicted probabilities in [0, 1].
        sessions: int64 [N] session id of each row; rows of a session need not be contiguous.
        eps: Clip in [0, 0.5).

    Returns:
        ``mean_s mean_{i in s} BCE_i``.

    Raises:
        InvalidArgumentError: The input is empty or ``eps`` is outside [0, 0.5).
        ShapeError: The arrays differ in length.
        InvalidDataError: A label is not 0 or 1, or a score is NaN or outside [0, 1]; the
            message names the row.
    """
    value, _ = _core.session_logloss(
        _labels_array(labels),
        _scores_array(scores),
        _groups_array(sessions, "sessions"),
        eps=eps,
    )
    return float(value)


def task_metrics(
    labels: npt.ArrayLike,
    scores: npt.ArrayLike,
    sessions: npt.ArrayLike,
    task_names: Sequence[str],
    *,
    eps: float = DEFAULT_EPS,
) -> dict[str, dict[str, float]]:
    """Compute AUC, session AUC, logloss and session logloss for each task separately.

    Args:
        labels: uint8, bool or float [N, K], each 0 or 1; column k belongs to task k.
        scores: float32 or float64 [N, K], predicted probabilities in [0, 1].
        sessions: int64 [N] session id of each row.
        task_names: K names, one per column.
        eps: Probability clip of the logloss family.

    Returns:
        ``{task: {"auc", "session_auc", "sessions_skipped", "logloss", "session_logloss"}}``.
        ``session_auc`` is the session-size-weighted grouped AUC; ``sessions_skipped`` counts the
        sessions with a single class left out of it. An undefined AUC is NaN and raises an
        :class:`UndefinedMetricWarning` naming the task; the other tasks are still computed.

    Raises:
        ShapeError: ``labels`` and ``scores`` are not both [N, K] with K names, or ``sessions``
            is not [N].
        InvalidDataError: A bad label or score, naming the task and the row.
    """
    label_matrix = np.asarray(labels)
    score_matrix = np.asarray(scores)
    names = list(task_names)
    if label_matrix.ndim != 2:
        raise ShapeError(f"labels: expected shape (N, K), got {label_matrix.shape}")
    if score_matrix.shape != label_matrix.shape:
        raise ShapeError(f"scores: expected shape {label_matrix.shape}, got {score_matrix.shape}")
    if len(names) != label_matrix.shape[1]:
        raise ShapeError(
            f"task_names: expected {label_matrix.shape[1]} names, one per column, got {len(names)}"
        )
    session_ids = _groups_array(sessions, "sessions")

    results: dict[str, dict[str, float]] = {}
    for column, name in enumerate(names):
        task_labels = _labels_array(label_matrix[:, column], f"labels[:, {column}]")
        task_scores = _scores_array(score_matrix[:, column], f"scores[:, {column}]")
        try:
            session_auc = grouped_auc(task_labels, task_scores, session_ids, task=name)
            results[name] = {
                "auc": auc(task_labels, task_scores, task=name),
                "session_auc": session_auc.value,
                "sessions_skipped": float(session_auc.groups_skipped),
                "logloss": logloss(task_labels, task_scores, eps=eps),
                "session_logloss": session_logloss(task_labels, task_scores, session_ids, eps=eps),
            }
        except ValueError as error:
            raise type(error)(f"task {name!r}: {error}") from error
        logger.debug("task %s: %s", name, results[name])
    return results
