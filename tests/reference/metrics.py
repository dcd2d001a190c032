"""Reference metrics by direct counting, quadratic in the number of rows."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence


def auc(labels: Sequence[float], scores: Sequence[float]) -> float:
    """Share of (positive, negative) pairs in order, a tie counting 1/2; NaN for one class."""
    positives = [s for label, s in zip(labels, scores) if label == 1]
    negatives = [s for label, s in zip(labels, scores) if label == 0]
    if not positives or not negatives:
        return math.nan
    wins = 0.0
    for p in positives:
        for n in negatives:
            if p > n:
                wins += 1.0
            elif p == n:
                wins += 0.5
    return wins / (len(positives) * len(negatives))


def grouped_auc(
    labels: Sequence[float],
    scores: Sequence[float],
    groups: Sequence[int],
    weighting: str = "size",
) -> tuple[float, int, int]:
    """Weighted mean of per-group AUCs over groups with both classes: (value, used, skipped)."""
    rows_of: dict[int, list[int]] = defaultdict(list)
    for row, group in enumerate(groups):
        rows_of[group].append(row)
    total, weights, used, skipped = 0.0, 0.0, 0, 0
    for rows in rows_of.values():
        value = auc([labels[r] for r in rows], [scores[r] for r in rows])
        if math.isnan(value):
            skipped += 1
            continue
        weight = float(len(rows)) if weighting == "size" else 1.0
        total += weight * value
        weights += weight
        used += 1
    return (total / weights if used else math.nan), used, skipped


def cross_entropy(label: float, probability: float, eps: float = 1e-7) -> float:
    """Binary cross-entropy of one row with the probability clipped to [eps, 1 - eps]."""
    p = min(max(probability, eps), 1.0 - eps)
    return -math.log(p) if label == 1 else -math.log(1.0 - p)


def logloss(labels: Sequence[float], scores: Sequence[float], eps: float = 1e-7) -> float:
    """Mean clipped binary cross-entropy."""
    return sum(cross_entropy(y, p, eps) for y, p in zip(labels, scores)) / len(labels)


def session_logloss(
    labels: Sequence[float], scores: Sequence[float], sessions: Sequence[int], eps: float = 1e-7
) -> float:
    """Mean over sessions of the mean clipped cross-entropy within each session."""
    losses: dict[int, list[float]] = defaultdict(list)
    for y, p, session in zip(labels, scores, sessions):
        losses[session].append(cross_entropy(y, p, eps))
    return sum(sum(v) / len(v) for v in losses.values()) / len(losses)
