"""Offline tables (Markdown and CSV) and PNG plots of a TSCAC comparison run."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np

from recrl.plotting import pyplot as _pyplot
from recrl.plotting import save_figure
from recrl.tscac.config import CommonConfig
from recrl.tscac.data import ProblemSpec
from recrl.tscac.io import write_text_atomically
from recrl.tscac.off_policy import ESTIMATORS

__all__ = ["plot_curves", "plot_lambda_sweep", "summarise", "write_tables"]

LABELS = {
    "behaviour_cloning": "BC",
    "wide_deep": "Wide&Deep",
    "deepfm": "DeepFM",
    "rcpo": "RCPO",
    "rcpo_multiple_critics": "RCPO-Multi-Critic",
    "pareto": "Pareto",
    "interaction_ac": "Interaction-AC",
    "tscac": "TSCAC",
}


def summarise(
    results: dict[int, dict[str, dict[str, np.ndarray]]], estimator: str
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Return per method the mean and standard deviation [K] of ``estimator`` over seeds."""
    methods = list(next(iter(results.values())))
    summary = {}
    for name in methods:
        values = np.stack([results[seed][name][estimator] for seed in results])
        spread = values.std(axis=0, ddof=1) if len(values) > 1 else np.zeros(values.shape[1])
        summary[name] = (values.mean(axis=0), spread)
    return summary


def _constraints(
    mean: np.ndarray, logged: np.ndarray, spec: ProblemSpec, config: CommonConfig
) -> list[str]:
    """Return the names of the interaction constraints ``mean`` violates."""
    violated = []
    for k, name in enumerate(spec.reward_names):
        if name == config.main_response:
            continue
        sign = -1.0 if name in config.lower_is_better else 1.0
        if sign * (mean[k] - logged[k]) < 0:
            violated.append(name)
    return violated


def write_tables(
    out: Path,
    spec: ProblemSpec,
    results: dict[int, dict[str, dict[str, np.ndarray]]],
    logged: np.ndarray,
    configs: dict[str, CommonConfig],
    notes: list[str] | None = None,
    cap: float | None = None,
) -> None:
    """Write ``table.md`` (NCIS, the paper's layout) and ``table.csv`` (every estimator).

    ``notes`` are appended to the Markdown table as lines of text; ``cap`` is the importance
    weight cap named in the heading.
    """
    summary = summarise(results, "ncis")
    seeds = len(results)
    header = ["method", *spec.reward_names, "constraints hold"]
    lines = [
        "Test split, normalised capped importance sampling "
        f"({'cap as configured' if cap is None else f'cap {cap:g}'}), mean "
        f"{'± standard deviation ' if seeds > 1 else ''}over {seeds} seed(s); in brackets the "
        "change against the logged behaviour.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        "| logged behaviour | " + " | ".join(f"{v:.4g}" for v in logged) + " | - |",
    ]
    for name, (mean, spread) in summary.items():
        cells = []
        for k in range(len(spec.reward_names)):
            change = 100.0 * (mean[k] - logged[k]) / max(abs(logged[k]), 1e-12)
            value = f"{mean[k]:.4g}" + (f" ± {spread[k]:.2g}" if seeds > 1 else "")
            cells.append(f"{value} ({change:+.2f}%)")
        violated = _constraints(mean, logged, spec, configs.get(name, configs["behaviour_cloning"]))
        verdict = "yes" if not violated else "no: " + ", ".join(violated)
        lines.append(f"| {LABELS.get(name, name)} | " + " | ".join(cells) + f" | {verdict} |")
    lines.extend(["", *(notes or [])])
    write_text_atomically(out / "table.md", "\n".join(lines) + "\n")

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(
        ["method", "estimator", "response", "mean", "std", "logged", "change_percent", "seeds"]
    )
    for estimator in ESTIMATORS:
        for name, (mean, spread) in summarise(results, estimator).items():
            for k, response in enumerate(spec.reward_names):
                change = 100.0 * (mean[k] - logged[k]) / max(abs(logged[k]), 1e-12)
                writer.writerow(
                    [
                        name,
                        estimator,
                        response,
                        f"{mean[k]:.6g}",
                        f"{spread[k]:.6g}",
                        f"{logged[k]:.6g}",
                        f"{change:.4f}",
                        seeds,
                    ]
                )
    write_text_atomically(out / "table.csv", buffer.getvalue())


def plot_curves(path: Path, curves: dict[str, list[dict[str, Any]]]) -> None:
    """Plot the actor loss and the validation watch-time estimate of every method."""
    plt = _pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for key, points in curves.items():
        if not points:
            continue
        positions = np.arange(1, len(points) + 1)
        actor = [point.get("loss/actor", np.nan) for point in points]
        main = [point.get("eval/main", np.nan) for point in points]
        axes[0].plot(positions, actor, marker=".", label=key)
        axes[1].plot(positions, main, marker=".", label=key)
    axes[0].set_title("actor loss (mean over each evaluation interval)")
    axes[1].set_title("validation estimate of the main response (NCIS)")
    for axis in axes:
        axis.set_xlabel("evaluation point (stages in order)")
    axes[1].legend(fontsize=6)
    figure.tight_layout()
    save_figure(figure, path)


def plot_lambda_sweep(
    path: Path, sweep: list[dict[str, Any]], spec: ProblemSpec, logged: np.ndarray
) -> None:
    """Plot the main response against each interaction across the shared lambda values."""
    plt = _pyplot()
    main = 0
    others = [k for k in range(len(spec.reward_names)) if k != main]
    figure, axes = plt.subplots(1, len(others), figsize=(3.2 * len(others), 3.4))
    axes = np.atleast_1d(axes)
    for axis, k in zip(axes, others):
        xs = [point["ncis"][k] for point in sweep]
        ys = [point["ncis"][main] for point in sweep]
        axis.plot(xs, ys, marker="o")
        for point, x, y in zip(sweep, xs, ys):
            axis.annotate(f"{point['lambda']:.0e}", (x, y), fontsize=7)
        axis.axvline(logged[k], color="grey", linestyle="--", linewidth=0.8)
        axis.axhline(logged[main], color="grey", linestyle="--", linewidth=0.8)
        axis.set_xlabel(spec.reward_names[k])
    axes[0].set_ylabel(f"{spec.reward_names[main]} (validation NCIS)")
    figure.suptitle("stage-two lambda sweep; dashed: logged behaviour")
    figure.tight_layout()
    save_figure(figure, path)
