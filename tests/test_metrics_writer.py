"""MetricsWriter: long-format CSV flushed per call, truncation for resumed runs, TensorBoard."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from recrl.errors import InvalidArgumentError, RecrlIOError
from recrl.metrics_writer import METRICS_HEADER, MetricsWriter, read_metrics


def csv_rows(path: Path) -> list[list[str]]:
    with path.open(newline="") as handle:
        return list(csv.reader(handle))


def test_writes_long_format(tmp_path: Path) -> None:
    with MetricsWriter(tmp_path, tensorboard=False) as metrics:
        metrics.log("pretrain/esmm/seed0", 1, {"loss/pretrain": 0.5, "eval/auc": 0.75})
        metrics.log("pretrain/esmm/seed0", 2, {"loss/pretrain": float("nan")})
        assert metrics.rows == 3

    rows = csv_rows(tmp_path / "metrics.csv")
    assert tuple(rows[0]) == METRICS_HEADER
    assert [row[1:] for row in rows[1:]] == [
        ["pretrain/esmm/seed0", "1", "loss/pretrain", "0.5"],
        ["pretrain/esmm/seed0", "1", "eval/auc", "0.75"],
        ["pretrain/esmm/seed0", "2", "loss/pretrain", "nan"],
    ]
    assert float(rows[1][0]) > 1.6e9


def test_rows_visible_before_close(tmp_path: Path) -> None:
    metrics = MetricsWriter(tmp_path, tensorboard=False)
    metrics.log("train", 1, {"loss/actor": 1.25})
    # Another reader sees the row at once: each call is flushed.
    assert read_metrics(tmp_path)[0]["value"] == 1.25
    metrics.close()
    metrics.close()


def test_values_round_trip_exactly(tmp_path: Path) -> None:
    value = 0.1 + 0.2
    with MetricsWriter(tmp_path, tensorboard=False) as metrics:
        metrics.log("train", 3, {"loss/critic": value, "count": 7})
    rows = read_metrics(tmp_path)
    assert rows[0]["value"] == value
    assert rows[1]["value"] == 7.0
    assert rows[0]["step"] == 3


def test_new_writer_replaces_file(tmp_path: Path) -> None:
    with MetricsWriter(tmp_path, tensorboard=False) as metrics:
        metrics.log("train", 1, {"a": 1.0})
    with MetricsWriter(tmp_path, tensorboard=False) as metrics:
        assert metrics.rows == 0
    assert read_metrics(tmp_path) == []


def test_keep_rows_truncates_and_appends(tmp_path: Path) -> None:
    with MetricsWriter(tmp_path, tensorboard=False) as metrics:
        for step in range(1, 6):
            metrics.log("train", step, {"loss/actor": float(step)})
    with MetricsWriter(tmp_path, keep_rows=2, tensorboard=False) as metrics:
        assert metrics.rows == 2
        metrics.log("train", 3, {"loss/actor": 30.0})
        assert metrics.rows == 3
    rows = read_metrics(tmp_path)
    assert [row["step"] for row in rows] == [1, 2, 3]
    assert [row["value"] for row in rows] == [1.0, 2.0, 30.0]


def test_keep_rows_drops_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    path.write_text("time,phase,step,name,value\n1.0,train,1,a,1.0\n1.0,train,2,a,2.0\n1.0,tr")
    with MetricsWriter(tmp_path, keep_rows=2, tensorboard=False) as metrics:
        metrics.log("train", 3, {"a": 3.0})
    assert [row["step"] for row in read_metrics(tmp_path)] == [1, 2, 3]


def test_keep_rows_errors(tmp_path: Path) -> None:
    with pytest.raises(RecrlIOError, match="not found"):
        MetricsWriter(tmp_path / "missing", keep_rows=0)
    with MetricsWriter(tmp_path, tensorboard=False) as metrics:
        metrics.log("train", 1, {"a": 1.0})
    with pytest.raises(RecrlIOError, match="expected at least 5 data rows to keep, found 1"):
        MetricsWriter(tmp_path, keep_rows=5)
    with pytest.raises(InvalidArgumentError, match="keep_rows: expected a count >= 0, got -1"):
        MetricsWriter(tmp_path, keep_rows=-1)
    (tmp_path / "metrics.csv").write_text("step,value\n1,2\n")
    with pytest.raises(RecrlIOError, match="not a metrics file"):
        MetricsWriter(tmp_path, keep_rows=0)


def test_log_rejects_bad_input(tmp_path: Path) -> None:
    with MetricsWriter(tmp_path, tensorboard=False) as metrics:
        with pytest.raises(InvalidArgumentError, match="step: expected an integer >= 0, got -1"):
            metrics.log("train", -1, {"a": 1.0})
        with pytest.raises(InvalidArgumentError, match="phase"):
            metrics.log("", 1, {"a": 1.0})
        with pytest.raises(InvalidArgumentError, match=r"values\['a'\]: expected a number"):
            metrics.log("train", 1, {"a": "high"})  # type: ignore[dict-item]
        assert metrics.rows == 0
    with pytest.raises(RecrlIOError, match="closed"):
        metrics.log("train", 1, {"a": 1.0})


def test_tensorboard_events_when_installed(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard", reason="tensorboard is not installed (recrl[tensorboard])")
    with MetricsWriter(tmp_path) as metrics:
        assert metrics.tensorboard
        metrics.log("train", 1, {"loss/actor": 0.5, "eval/main": math.inf})
    events = list(tmp_path.glob("events.out.tfevents.*"))
    assert len(events) == 1
    assert events[0].stat().st_size > 0


def test_read_metrics_names_a_bad_line(tmp_path: Path) -> None:
    with MetricsWriter(tmp_path, tensorboard=False) as metrics:
        metrics.log("train", 1, {"loss/actor": 0.5})
    with (tmp_path / "metrics.csv").open("a") as handle:
        handle.write("1.0,train,two,loss/actor,0.4\n")
    with pytest.raises(RecrlIOError, match=r"metrics.csv, line 3: expected a number"):
        read_metrics(tmp_path)
