"""One writer for the training metrics of every recrl loop: CSV always, TensorBoard when installed.

``metrics.csv`` is in long format, one row per value::

    time,phase,step,name,value
    1733353200.125,seed0/tscac/stage_one,500,loss/critic,0.0412

``time`` is the wall-clock time in seconds since the Unix epoch. ``phase`` names a training
loop, such as a method's stage or an RMTL stage of one backbone and seed. ``step`` counts that
loop's steps or epochs, and ``name`` follows the tag families ``loss/``, ``eval/``, ``time/``
and ``perf/``. Each
:meth:`MetricsWriter.log` call writes its rows in one write and flushes them, so a crash loses at
most the rows of the call in progress. TensorBoard event files go into the same folder when
``torch.utils.tensorboard`` imports (``pip install recrl[tensorboard]``), with the tag
``<phase>/<name>``.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from recrl import _files
from recrl.errors import InvalidArgumentError, RecrlIOError

__all__ = ["METRICS_FILE", "METRICS_HEADER", "MetricsWriter", "read_metrics"]

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.csv"
METRICS_HEADER = ("time", "phase", "step", "name", "value")


def _tensorboard_writer(directory: Path) -> Any:
    """Return a TensorBoard ``SummaryWriter`` on ``directory``, or None when it does not import."""
    try:
        # TensorBoard and its protobuf dependency warn about deprecated APIs on import; those
        # warnings concern their code, not the caller's.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(log_dir=str(directory))


class MetricsWriter:
    """Writes training metrics of one run directory to ``metrics.csv`` and TensorBoard.

    Use it as a context manager or call :meth:`close`::

        with MetricsWriter(run_directory) as metrics:
            metrics.log("pretrain", 1, {"loss/pretrain": 0.51, "eval/validation_mean_auc": 0.7})

    Args:
        directory: the run directory (created if missing).
        keep_rows: None starts a new ``metrics.csv`` and replaces any previous one. A count n
            keeps the first n data rows of the existing file and appends after them, as a
            resumed run needs. The file must then exist and have at least n rows.
        tensorboard: also write TensorBoard event files when ``torch.utils.tensorboard``
            imports.

    Raises:
        InvalidArgumentError: ``keep_rows`` is negative.
        RecrlIOError: ``keep_rows`` is given and ``metrics.csv`` is missing, has another header
            or has fewer than ``keep_rows`` data rows.
    """

    def __init__(
        self, directory: str | Path, *, keep_rows: int | None = None, tensorboard: bool = True
    ) -> None:
        self.directory = Path(directory)
        self.path = self.directory / METRICS_FILE
        self.directory.mkdir(parents=True, exist_ok=True)
        if keep_rows is None:
            _files.write_text(self.path, ",".join(METRICS_HEADER) + "\n")
            self._rows = 0
        else:
            self._rows = _truncate(self.path, keep_rows)
        self._handle: IO[str] | None = self.path.open("a", encoding="utf-8", newline="")
        # NOTE: a resumed run appends to the TensorBoard files too; TensorBoard shows the steps
        # written before the interruption twice, while metrics.csv keeps them once.
        self._tensorboard = _tensorboard_writer(self.directory) if tensorboard else None

    @property
    def rows(self) -> int:
        """Data rows in ``metrics.csv`` so far, kept rows included."""
        return self._rows

    @property
    def tensorboard(self) -> bool:
        """Whether TensorBoard event files are written."""
        return self._tensorboard is not None

    def log(self, phase: str, step: int, values: Mapping[str, float]) -> None:
        """Append one row per value of ``values`` at ``step`` of ``phase`` and flush the file.

        Args:
            phase: name of the training loop, such as ``seed0/tscac/stage_one``.
            step: step or epoch of that loop, an integer >= 0.
            values: metric name -> value; every value must convert to float (NaN allowed).

        Raises:
            InvalidArgumentError: an empty ``phase``, a negative ``step`` or a value that is
                not a number.
            RecrlIOError: the writer is closed.
        """
        if self._handle is None:
            raise RecrlIOError(f"{self.path}: the metrics writer is closed")
        if not phase:
            raise InvalidArgumentError("phase: expected a non-empty name, got ''")
        if int(step) != step or step < 0:
            raise InvalidArgumentError(f"step: expected an integer >= 0, got {step!r}")
        numbers = {}
        for name, value in values.items():
            try:
                numbers[name] = float(value)
            except (TypeError, ValueError) as error:
                raise InvalidArgumentError(
                    f"values[{name!r}]: expected a number, got {value!r}"
                ) from error
        if not numbers:
            return

        now = f"{time.time():.3f}"
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        for name, number in numbers.items():
            writer.writerow([now, phase, int(step), name, repr(number)])
        self._handle.write(buffer.getvalue())
        self._handle.flush()
        self._rows += len(numbers)

        if self._tensorboard is not None:
            for name, number in numbers.items():
                if math.isfinite(number):
                    self._tensorboard.add_scalar(f"{phase}/{name}", number, int(step))

    def close(self) -> None:
        """Flush and close ``metrics.csv`` and the TensorBoard files; later calls do nothing."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        if self._tensorboard is not None:
            self._tensorboard.close()
            self._tensorboard = None

    def __enter__(self) -> MetricsWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _truncate(path: Path, keep_rows: int) -> int:
    """Cut ``path`` to its header and first ``keep_rows`` data rows; return ``keep_rows``."""
    if keep_rows < 0:
        raise InvalidArgumentError(f"keep_rows: expected a count >= 0, got {keep_rows}")
    if not path.is_file():
        raise RecrlIOError(f"{path}: not found; keep_rows={keep_rows} needs an existing file")
    with path.open(encoding="utf-8", newline="") as handle:
        lines = handle.readlines()
    header = ",".join(METRICS_HEADER) + "\n"
    if not lines or lines[0] != header:
        raise RecrlIOError(f"{path}: not a metrics file; expected the header {header.strip()!r}")
    # A line without its newline is the torn last row of a crash: it is not a complete row.
    complete = [line for line in lines[1:] if line.endswith("\n")]
    if len(complete) < keep_rows:
        raise RecrlIOError(
            f"{path}: expected at least {keep_rows} data rows to keep, found {len(complete)}"
        )
    _files.write_text(path, header + "".join(complete[:keep_rows]))
    return keep_rows


def read_metrics(directory: str | Path) -> list[dict[str, Any]]:
    """Read ``metrics.csv`` of a run directory into rows with ``step`` int and ``value`` float.

    Raises:
        RecrlIOError: the file is missing, its header is not the metrics header, or a row's
            time, step or value is not a number.
    """
    path = Path(directory) / METRICS_FILE
    if not path.is_file():
        raise RecrlIOError(f"{path}: not found; is {directory} a run directory?")
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != METRICS_HEADER:
            raise RecrlIOError(
                f"{path}: expected the columns {list(METRICS_HEADER)}, got {reader.fieldnames}"
            )
        rows = []
        for row in reader:
            if row["value"] is None:
                continue
            try:
                rows.append(
                    {
                        "time": float(row["time"]),
                        "phase": row["phase"],
                        "step": int(row["step"]),
                        "name": row["name"],
                        "value": float(row["value"]),
                    }
                )
            except (TypeError, ValueError) as error:
                raise RecrlIOError(
                    f"{path}, line {reader.line_num}: expected a number in time, step and "
                    f"value, got {error}; fix or delete that line"
                ) from error
        return rows
