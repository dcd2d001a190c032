"""Tables and plots of RMTL runs.

The main table follows the layout of the main table of Liu et al. (WWW 2023). It has one row
per method: each backbone, then its RMTL version and any ablation or transfer. Its columns
are CTR and CTCVR times AUC, logloss and session logloss. Each cell contains the mean and the
standard deviation over seeds.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from recrl.rmtl.io import write_text

__all__ = ["METRICS", "format_table", "plot_history", "summarise", "write_tables"]

METRICS = ("auc", "logloss", "session_logloss", "grouped_auc")
TABLE_METRICS = ("auc", "logloss", "session_logloss")
_METRIC_TITLES = {
    "auc": "AUC",
    "logloss": "Logloss",
    "session_logloss": "s-Logloss",
    "grouped_auc": "GAUC",
}


def summarise(results: Sequence[dict[str, Any]], tasks: Sequence[str]) -> list[dict[str, Any]]:
    """Aggregate per-seed test results into one row per method, in first-seen order.

    Args:
        results: dicts with ``method``, ``seed`` and ``test`` (``{task: {metric: value}}``).
        tasks: task names, in column order.

    Returns:
        Rows with ``method``, ``seeds`` and ``<task>/<metric>/mean`` and ``.../std`` (sample
        standard deviation, 0 for one seed).
    """
    methods: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        methods.setdefault(result["method"], []).append(result)
    rows = []
    for method, runs in methods.items():
        row: dict[str, Any] = {"method": method, "seeds": len(runs)}
        for task in tasks:
            for metric in METRICS:
                values = np.array([run["test"][task][metric] for run in runs], dtype=np.float64)
                row[f"{task}/{metric}/mean"] = float(values.mean())
                row[f"{task}/{metric}/std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        rows.append(row)
    return rows


def _cell(row: dict[str, Any], task: str, metric: str) -> str:
    mean = row[f"{task}/{metric}/mean"]
    std = row[f"{task}/{metric}/std"]
    if not math.isfinite(mean):
        return "n/a"
    return f"{mean:.4f} ± {std:.4f}" if row["seeds"] > 1 else f"{mean:.4f}"


def format_table(
    rows: Sequence[dict[str, Any]],
    tasks: Sequence[str],
    metrics: Sequence[str] = TABLE_METRICS,
) -> str:
    """Render summary rows as a Markdown table: methods down, task x metric across."""
    header = ["Method"] + [
        f"{task.upper()} {_METRIC_TITLES[metric]}" for task in tasks for metric in metrics
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row["method"]] + [_cell(row, task, metric) for task in tasks for metric in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_tables(out: Path, rows: Sequence[dict[str, Any]], tasks: Sequence[str]) -> None:
    """Write ``table.md`` (the paper's layout plus a grouped-AUC table) and ``table.csv``."""
    seeds = sorted({int(row["seeds"]) for row in rows})
    text = (
        f"Test metrics, mean ± standard deviation over {'/'.join(map(str, seeds))} seed(s).\n\n"
        + format_table(rows, tasks)
        + "\nGrouped AUC (per session, row-weighted):\n\n"
        + format_table(rows, tasks, ("grouped_auc",))
    )
    write_text(out / "table.md", text)
    buffer = io.StringIO()
    fields = list(rows[0]) if rows else ["method", "seeds"]
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(out / "table.csv", buffer.getvalue())


def plot_history(path: Path, title: str, histories: dict[str, list[dict[str, float]]]) -> None:
    """Plot training losses, validation mean AUC and critic TD errors into one PNG.

    Fine-tuning curves start at the pretraining epoch with the best validation AUC, the
    weights they start from.

    Args:
        path: the PNG file to write.
        title: figure title.
        histories: stage name -> per-epoch records: ``pretrain`` and ``finetune_<weighting>``
            with ``loss/<stage>`` and ``eval/validation_mean_auc``, ``critic`` with
            ``loss/critic`` and ``eval/validation_td_error``.
    """
    from recrl.plotting import pyplot, save_figure

    plt = pyplot()
    figure, (losses, scores, critic) = plt.subplots(1, 3, figsize=(15, 4))
    start = 0.0
    pretraining = histories.get("pretrain") or []
    if pretraining:
        best = max(pretraining, key=lambda record: record["eval/validation_mean_auc"])
        start = best["epoch"]
    for stage, history in histories.items():
        if not history or stage == "critic":
            continue
        offset = start if stage.startswith("finetune") else 0.0
        epochs = [record["epoch"] + offset for record in history]
        losses.plot(
            epochs, [record[f"loss/{stage}"] for record in history], marker="o", label=stage
        )
        values = [record["eval/validation_mean_auc"] for record in history]
        scores.plot(epochs, values, marker="o", label=stage)
    for record_key, label in (
        ("loss/critic", "training"),
        ("eval/validation_td_error", "validation"),
    ):
        critic_history = histories.get("critic") or []
        epochs = [record["epoch"] for record in critic_history]
        critic.plot(
            epochs, [record[record_key] for record in critic_history], marker="o", label=label
        )
    losses.set(xlabel="epoch", ylabel="training loss", title="training loss", yscale="log")
    scores.set(xlabel="epoch", ylabel="mean AUC over tasks", title="validation AUC")
    critic.set(xlabel="critic epoch", ylabel="mean squared TD error", title="critics")
    for axes in (losses, scores, critic):
        axes.legend()
    figure.suptitle(title)
    figure.tight_layout()
    save_figure(figure, path)
