"""PNG plots of a run directory: training curves from ``metrics.csv`` and the evaluation table.

:func:`plot_run` serves ``recrl plot RUN_DIR``. It writes one figure per phase of
``metrics.csv``, with one panel per metric family: the part of a metric name before the first
``/``, such as ``loss``, ``eval`` or ``time``. It also draws bar charts of ``table.csv``, one
figure per estimator and one panel per response for a TSCAC run, and one panel per task and
metric for an RMTL run. Matplotlib draws with the Agg back end, so no display is needed. The
TSCAC and RMTL reports draw their own figures through :func:`pyplot` and :func:`save_figure`
too.
"""

from __future__ import annotations

import csv
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from recrl.errors import RecrlIOError
from recrl.metrics_writer import METRICS_FILE, read_metrics

__all__ = ["plot_metrics", "plot_run", "plot_table", "pyplot", "save_figure"]

logger = logging.getLogger(__name__)

TABLE_FILE = "table.csv"


def pyplot() -> Any:
    """Return ``matplotlib.pyplot`` with the Agg back end selected (PNG files, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure: Any, path: Path, dpi: int = 100) -> Path:
    """Save ``figure`` as the PNG ``path`` through a temporary file and a rename, then close it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp.png")
    try:
        figure.savefig(temporary, dpi=dpi)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
        pyplot().close(figure)
    return path


def _file_name(text: str) -> str:
    """Return ``text`` with every character outside letters, digits, '.', '-' and '_' as '_'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "run"


def _family(name: str) -> str:
    return name.split("/", 1)[0] if "/" in name else "other"


def plot_metrics(rows: Sequence[dict[str, Any]], out: Path) -> list[Path]:
    """Write ``curves_<phase>.png`` into ``out`` for every phase of ``rows``.

    Args:
        rows: rows of ``metrics.csv`` as :func:`recrl.metrics_writer.read_metrics` returns them.
        out: folder of the PNG files (created).

    Returns:
        The written paths, in order of first appearance of each phase.
    """
    phases: dict[str, dict[str, dict[str, list[tuple[int, float]]]]] = {}
    for row in rows:
        families = phases.setdefault(row["phase"], {})
        series = families.setdefault(_family(row["name"]), {})
        series.setdefault(row["name"], []).append((row["step"], row["value"]))

    written = []
    for phase, families in phases.items():
        figure, axes = _panels(len(families), 4.5, 3.6)
        for axis, (family, series) in zip(axes, sorted(families.items())):
            for name, points in series.items():
                points.sort()
                steps = [step for step, _ in points]
                values = [value for _, value in points]
                axis.plot(steps, values, marker="." if len(points) < 50 else None, label=name)
            axis.set_title(family)
            axis.set_xlabel("step or epoch")
            axis.legend(fontsize=6)
        figure.suptitle(phase)
        figure.tight_layout()
        written.append(save_figure(figure, out / f"curves_{_file_name(phase)}.png"))
    return written


def _panels(count: int, width: float, height: float) -> tuple[Any, list[Any]]:
    """Return a figure with ``count`` panels, four to a line, and the panels in order."""
    columns = max(1, min(4, count))
    lines = -(-count // columns)
    figure, axes = pyplot().subplots(
        lines, columns, figsize=(width * columns, height * lines), squeeze=False
    )
    panels = list(axes.flat)
    for axis in panels[count:]:
        axis.set_visible(False)
    return figure, panels[:count]


def _read_table(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def _bars(axis: Any, labels: list[str], means: list[float], spreads: list[float]) -> None:
    positions = range(len(labels))
    axis.bar(positions, means, yerr=spreads, capsize=3, color="tab:blue", alpha=0.8)
    axis.set_xticks(list(positions))
    axis.set_xticklabels(labels, rotation=45, ha="right", fontsize=7)


def _plot_tscac_table(rows: list[dict[str, str]], out: Path) -> list[Path]:
    """One figure per estimator, one panel per response, one bar per method."""
    written = []
    for estimator in dict.fromkeys(row["estimator"] for row in rows):
        selected = [row for row in rows if row["estimator"] == estimator]
        responses = list(dict.fromkeys(row["response"] for row in selected))
        figure, axes = _panels(len(responses), 3.6, 3.8)
        for axis, response in zip(axes, responses):
            cells = [row for row in selected if row["response"] == response]
            _bars(
                axis,
                [row["method"] for row in cells],
                [float(row["mean"]) for row in cells],
                [float(row["std"]) for row in cells],
            )
            axis.axhline(float(cells[0]["logged"]), color="grey", linestyle="--", linewidth=0.8)
            axis.set_title(response, fontsize=9)
        figure.suptitle(f"test split, {estimator}; dashed: logged behaviour")
        figure.tight_layout()
        written.append(save_figure(figure, out / f"table_{_file_name(estimator)}.png"))
    return written


def _plot_rmtl_table(rows: list[dict[str, str]], out: Path) -> list[Path]:
    """One panel per task and metric, one bar per method."""
    metrics = [column[: -len("/mean")] for column in rows[0] if column.endswith("/mean")]
    figure, axes = _panels(len(metrics), 3.8, 3.6)
    for axis, metric in zip(axes, metrics):
        _bars(
            axis,
            [row["method"] for row in rows],
            [float(row[f"{metric}/mean"]) for row in rows],
            [float(row[f"{metric}/std"]) for row in rows],
        )
        axis.set_title(metric, fontsize=9)
    figure.suptitle("test split, mean and standard deviation over seeds")
    figure.tight_layout()
    return [save_figure(figure, out / "table.png")]


def plot_table(path: Path, out: Path) -> list[Path]:
    """Write bar charts of a TSCAC or RMTL ``table.csv`` into ``out``.

    Raises:
        RecrlIOError: the file has the columns of neither table.
    """
    rows = _read_table(path)
    if not rows:
        return []
    columns = set(rows[0])
    if {"method", "estimator", "response", "mean", "std", "logged"} <= columns:
        return _plot_tscac_table(rows, out)
    if "method" in columns and any(column.endswith("/mean") for column in columns):
        return _plot_rmtl_table(rows, out)
    raise RecrlIOError(
        f"{path}: expected the table.csv of a tscac or rmtl run, got the columns {sorted(columns)}"
    )


def _is_run_directory(path: Path) -> bool:
    return (path / METRICS_FILE).is_file() or (path / TABLE_FILE).is_file()


def plot_run(run_directory: str | Path, out: str | Path | None = None) -> list[Path]:
    """Write the PNG plots of a run directory and return their paths.

    A folder that contains run directories instead (a ``recrl demo --out`` folder) gets the plots
    of each in a subfolder of ``out`` named after it.

    Args:
        run_directory: folder of a tscac, rmtl or demo run.
        out: folder of the PNG files; default ``<run_directory>/plots``.

    Raises:
        RecrlIOError: ``run_directory`` is missing, not a folder, or contains neither
            ``metrics.csv`` nor ``table.csv`` (nor run directories with them).
    """
    run_directory = Path(run_directory)
    out = run_directory / "plots" if out is None else Path(out)
    if not run_directory.is_dir():
        raise RecrlIOError(f"{run_directory}: not found or not a folder; expected a run directory")
    if not _is_run_directory(run_directory):
        children = sorted(
            child
            for child in run_directory.iterdir()
            if child.is_dir() and _is_run_directory(child)
        )
        if not children:
            raise RecrlIOError(
                f"{run_directory}: not a run directory (no {METRICS_FILE} or {TABLE_FILE}); "
                "expected the --out folder of recrl tscac, rmtl or demo"
            )
        return [path for child in children for path in plot_run(child, out / child.name)]

    written: list[Path] = []
    if (run_directory / METRICS_FILE).is_file():
        written.extend(plot_metrics(read_metrics(run_directory), out))
    if (run_directory / TABLE_FILE).is_file():
        written.extend(plot_table(run_directory / TABLE_FILE, out))
    logger.info("wrote %d plots of %s into %s", len(written), run_directory, out)
    return written
