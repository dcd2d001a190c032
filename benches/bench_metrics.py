"""Compare recrl's AUC and grouped AUC with scikit-learn and a pandas groupby over scikit-learn.

Run: python benches/bench_metrics.py [--rows 10000000] [--groups 1000000] [--baseline-groups 20000]

The pandas baseline calls roc_auc_score once per group, which takes hours over a million groups.
It is therefore timed on the first ``--baseline-groups`` groups and extrapolated linearly.
The grouped values are compared on that subsample.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from recrl.evaluation import metrics


def best_time(function: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return min(times), result


def pandas_grouped_auc(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray) -> float:
    frame = pd.DataFrame({"label": labels, "score": scores, "group": groups})
    total, weight = 0.0, 0
    for _, group in frame.groupby("group", sort=False):
        if group["label"].nunique() < 2:
            continue
        total += len(group) * roc_auc_score(group["label"], group["score"])
        weight += len(group)
    return total / weight


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--groups", type=int, default=1_000_000)
    parser.add_argument("--baseline-groups", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args()

    rng = np.random.default_rng(arguments.seed)
    rows = arguments.rows
    labels = (rng.random(rows) < 0.3).astype(np.uint8)
    # Scores correlated with the labels, rounded so that ties occur as with real model outputs.
    scores64 = np.clip(rng.normal(0.4 + 0.2 * labels, 0.2), 0.0, 1.0).round(6)
    scores32 = scores64.astype(np.float32)
    groups = rng.integers(0, arguments.groups, rows, dtype=np.int64)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"rows {rows:,}, groups {arguments.groups:,}"
    )

    for name, scores in (("float64", scores64), ("float32", scores32)):
        ours, value = best_time(lambda s=scores: metrics.auc(labels, s), arguments.repeats)
        theirs, expected = best_time(lambda s=scores: roc_auc_score(labels, s), arguments.repeats)
        print(
            f"AUC {name}: recrl {ours:.3f} s, sklearn {theirs:.3f} s, "
            f"speed-up {theirs / ours:.1f}x, |difference| {abs(value - expected):.2e}"
        )
        assert abs(value - expected) <= 1e-9

    ours, result = best_time(
        lambda: metrics.grouped_auc(labels, scores64, groups), arguments.repeats
    )
    print(
        f"grouped AUC: recrl {ours:.3f} s ({result.groups_used:,} groups used, "
        f"{result.groups_skipped:,} skipped)"
    )

    subsample = groups < arguments.baseline_groups
    sub_groups = groups[subsample]
    start = time.perf_counter()
    expected = pandas_grouped_auc(labels[subsample], scores64[subsample], sub_groups)
    baseline = time.perf_counter() - start
    extrapolated = baseline * arguments.groups / arguments.baseline_groups
    value = metrics.grouped_auc(labels[subsample], scores64[subsample], sub_groups).value
    print(
        f"grouped AUC: pandas groupby + sklearn {baseline:.2f} s over "
        f"{arguments.baseline_groups:,} groups, "
        f"extrapolated {extrapolated:.0f} s over {arguments.groups:,}; "
        f"speed-up {extrapolated / ours:.0f}x (estimate), "
        f"|difference| on the subsample {abs(value - expected):.2e}"
    )
    assert abs(value - expected) <= 1e-9


if __name__ == "__main__":
    main()
