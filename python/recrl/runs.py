"""Records of each run: ``run.json`` in the run directory and a summary line in ``runs.csv``.

:func:`start_run` writes ``run.json`` into the run directory before training starts: the
resolved settings, the recrl, torch, NumPy and Python versions, the command line, the seed and
the start time. :func:`finish_run` appends one summary line to ``runs.csv`` in the folder that
contains the run directory, so sibling runs share one table.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import os
import platform
import shlex
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from recrl import _files
from recrl.errors import InvalidArgumentError

__all__ = [
    "RUNS_FILE",
    "RUNS_HEADER",
    "RUN_FILE",
    "RunRecord",
    "append_runs_line",
    "finish_run",
    "rmtl_summary",
    "start_run",
    "to_plain",
    "tscac_summary",
    "write_run_file",
]

logger = logging.getLogger(__name__)

RUN_FILE = "run.json"
RUNS_FILE = "runs.csv"
RUNS_HEADER = ("time", "command", "data", "run_directory", "metrics", "wall_time_s")


def to_plain(value: Any) -> Any:
    """Return ``value`` as JSON-ready data with paths as strings and tuples as lists.

    Dataclasses become dicts of their fields.
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_plain(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(key): to_plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(item) for item in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def tscac_summary(
    result: Mapping[str, Any], reward_names: Sequence[str], configs: Mapping[str, Any]
) -> dict[str, float]:
    """Return the key results of a TSCAC run for ``runs.csv``.

    Args:
        result: the mapping :func:`recrl.tscac.runner.run` returns.
        reward_names: the dataset's response names, in reward column order.
        configs: method name -> config, as :func:`recrl.tscac.runner.load_run_configuration`
            returns them.

    Returns:
        ``<method>/<main response>``: the test NCIS estimate, mean over seeds, and
        ``tscac/lambda`` when the run selected a lambda.
    """
    import numpy as np

    names = list(reward_names)
    summary = {}
    per_seed = list(result["results"].values())
    for method in per_seed[0]:
        main = configs.get(method, configs["behaviour_cloning"]).main_response
        if main not in names:
            continue
        values = [float(estimates[method]["ncis"][names.index(main)]) for estimates in per_seed]
        summary[f"{method}/{main}"] = float(np.mean(values))
    if result.get("selected_lambda") is not None:
        summary["tscac/lambda"] = float(result["selected_lambda"])
    return summary


def rmtl_summary(results: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Return ``<method>/<task>_auc``, the test AUC mean over seeds, of an RMTL run."""
    values: dict[str, list[float]] = {}
    for result in results:
        for task, metrics in result["test"].items():
            values.setdefault(f"{result['method']}/{task}_auc", []).append(metrics["auc"])
    return {name: sum(numbers) / len(numbers) for name, numbers in values.items()}


# -- run records -------------------------------------------------------------------------------


@dataclass
class RunRecord:
    """A run in progress: where it writes and what :func:`finish_run` needs.

    Attributes:
        directory: the run directory.
        command: the ``recrl`` command, such as ``tscac``.
        started: wall-clock start, seconds since the Unix epoch.
        started_monotonic: ``time.perf_counter()`` at the start, for the wall time.
        values: the content of ``run.json``.
    """

    directory: Path
    command: str
    started: float
    started_monotonic: float
    values: dict[str, Any] = dataclasses.field(default_factory=dict)


def _versions() -> dict[str, str]:
    import numpy
    import torch

    import recrl

    return {
        "recrl": recrl.__version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
    }


def _timestamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=timezone.utc).isoformat(timespec="seconds")


def start_run(
    directory: str | Path,
    *,
    command: str,
    config: Mapping[str, Any],
    seed: int | Sequence[int] | None,
    argv: Sequence[str] | None = None,
    write: bool = True,
) -> RunRecord:
    """Write ``run.json`` into ``directory`` (created) and return the record of the run.

    ``run.json`` contains ``command``, ``command_line`` (shell-quoted) and ``argv``, ``config``
    (the resolved settings, usable again as a ``--config`` file after conversion to YAML),
    ``seed``, ``started`` (UTC, ISO 8601), ``versions`` (recrl, torch, NumPy, Python) and
    ``platform``. It is written atomically.

    Args:
        directory: the run directory.
        command: the ``recrl`` command.
        config: the resolved settings.
        seed: the run's seed or seeds.
        argv: the full command line; default ``sys.argv``.
        write: False only creates the record, for a directory that must not exist yet, such
            as a prepared dataset, which appears when a finished folder is renamed into place.
            Call :func:`write_run_file` once the directory exists.
    """
    started = time.time()
    record = RunRecord(Path(directory), command, started, time.perf_counter())
    record.values = {
        "command": command,
        "command_line": shlex.join(list(argv if argv is not None else sys.argv)),
        "argv": list(argv if argv is not None else sys.argv),
        "config": to_plain(config),
        "seed": to_plain(seed),
        "started": _timestamp(started),
        "versions": _versions(),
        "platform": platform.platform(),
    }
    if write:
        write_run_file(record)
    return record


def write_run_file(record: RunRecord, **extra: Any) -> Path:
    """Write (or rewrite) ``run.json`` of ``record`` with any ``extra`` top-level values."""
    values = {**record.values, **to_plain(extra)}
    path = record.directory / RUN_FILE
    _files.write_text(path, json.dumps(values, indent=2, sort_keys=False) + "\n")
    logger.debug("wrote %s", path)
    return path


def finish_run(record: RunRecord, *, data: str | Path | None, metrics: Mapping[str, float]) -> Path:
    """Append the summary line of a finished run to ``runs.csv`` beside its directory.

    Args:
        record: the record :func:`start_run` returned.
        data: the dataset or log the run read, if any.
        metrics: the run's key results, name -> value.

    Returns:
        The path of ``runs.csv``.
    """
    wall = time.perf_counter() - record.started_monotonic
    row = {
        "time": _timestamp(time.time()),
        "command": record.command,
        "data": "" if data is None else os.fspath(Path(data).resolve()),
        "run_directory": os.fspath(record.directory.resolve()),
        "metrics": json.dumps({k: float(v) for k, v in metrics.items()}, sort_keys=True),
        "wall_time_s": f"{wall:.1f}",
    }
    return append_runs_line(record.directory.resolve().parent / RUNS_FILE, row)


def append_runs_line(path: Path, row: Mapping[str, str]) -> Path:
    """Append ``row`` to the CSV ``path``, writing the header first if the file is new or empty.

    Concurrent runs may finish at once: the file is opened with ``O_APPEND`` and locked with
    ``flock`` while the header check and the single write of the line happen, so lines never
    interleave and the header is written once.

    Raises:
        InvalidArgumentError: ``row`` lacks a column of :data:`RUNS_HEADER`.
    """
    missing = [column for column in RUNS_HEADER if column not in row]
    if missing:
        raise InvalidArgumentError(f"row: missing columns {missing}; expected {list(RUNS_HEADER)}")
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow([row[column] for column in RUNS_HEADER])
    line = buffer.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        _lock(descriptor)
        text = line
        if os.fstat(descriptor).st_size == 0:
            text = ",".join(RUNS_HEADER) + "\n" + line
        os.write(descriptor, text.encode("utf-8"))
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    logger.info("appended the run summary to %s", path)
    return path


def _lock(descriptor: int) -> None:
    """Take an exclusive ``flock`` on ``descriptor``, released when it is closed."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        # NOTE: without fcntl (Windows) only O_APPEND protects the line itself; two runs that
        # create runs.csv at the same moment may both write the header.
        return
    fcntl.flock(descriptor, fcntl.LOCK_EX)
