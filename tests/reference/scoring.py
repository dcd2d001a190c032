"""Reference scoring: fusion, top-k and categorical scores in float64 NumPy, one loop each."""

from __future__ import annotations

import math

import numpy as np


def fuse(predictions: np.ndarray, weights: np.ndarray, mode: str) -> np.ndarray:
    """Fused score of each row of predictions [C, K]."""
    scores = []
    for row in predictions.astype(np.float64):
        if mode == "sum":
            scores.append(sum(float(w) * float(p) for p, w in zip(row, weights)))
        else:
            product = 1.0
            for p, w in zip(row, weights):
                if w != 0:
                    # 0 ** w is +inf for w < 0, as exp(w * ln 0) in IEEE arithmetic.
                    product *= math.inf if p == 0 and w < 0 else float(p) ** float(w)
            scores.append(product)
    return np.asarray(scores, dtype=np.float64)


def top_k(scores: np.ndarray, k: int) -> list[int]:
    """Indices of the k best scores, ties by the lower index, NaN last."""

    def key(index: int) -> tuple[int, float, int]:
        score = float(scores[index])
        if math.isnan(score):
            return (1, 0.0, index)
        return (0, -score, index)

    return sorted(range(len(scores)), key=key)[: max(k, 0)]


def categorical_scores(
    preference: np.ndarray,
    item_embeddings: np.ndarray,
    item_vocabulary: np.ndarray,
    candidates: np.ndarray,
) -> tuple[np.ndarray, int]:
    """Scores <preference, phi(index of id)> and the number of unknown ids (index 0)."""
    index_of = {int(raw): k + 1 for k, raw in enumerate(item_vocabulary)}
    scores = []
    unknown = 0
    for raw in candidates:
        index = index_of.get(int(raw), 0)
        unknown += index == 0
        scores.append(float(np.dot(preference.astype(np.float64), item_embeddings[index])))
    return np.asarray(scores), unknown
