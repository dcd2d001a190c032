"""Settings resolution (defaults < --config < options < --set) and the run records."""

from __future__ import annotations

import csv
import json
import multiprocessing
from pathlib import Path
from typing import Any

import pytest
import yaml

from recrl import data, runs, settings
from recrl.cli import main
from recrl.errors import InvalidArgumentError
from recrl.metrics_writer import MetricsWriter

TSCAC_SETTINGS = {
    "run": {
        "methods": ["behaviour_cloning", "tscac"],
        "behaviour_steps": 5,
        "lambda_sweep": [],
    },
    "common": {
        "steps": 6,
        "evaluation_interval": 3,
        "candidates": 20,
        "batch_size": 32,
        "hidden_dims": [16],
        "embedding_dim": 4,
        "action_dim": 4,
    },
}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("prepared")
    source = data.write_synthetic_kuairand(data.SyntheticConfig(rows=3000, seed=1), folder / "raw")
    data.prepare(data.read_kuairand(source), folder / "dataset")
    return folder / "dataset"


def write_yaml(path: Path, values: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(values))
    return path


def read_runs(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_set_overrides_option_and_file(tmp_path: Path, prepared: Path) -> None:
    config = write_yaml(tmp_path / "c.yaml", {"seed": [3], "threads": 1, **TSCAC_SETTINGS})
    out = tmp_path / "runs" / "t"
    arguments = ["--no-progress", "tscac", "--data", str(prepared), "--out", str(out)]
    arguments += ["--config", str(config), "--seed", "4", "--set", "common.steps=4"]
    assert main([*arguments, "--set", "run.cap=5.5", "--set", "seed=[5]"]) == 0

    record = json.loads((out / "run.json").read_text())
    settings = record["config"]
    assert settings["seed"] == [5]
    assert record["seed"] == [5]
    assert settings["common"]["steps"] == 4
    assert settings["common"]["batch_size"] == 32
    assert settings["run"]["cap"] == 5.5
    assert settings["threads"] == 1
    assert settings["device"] == "cpu"
    assert record["resolved"]["methods"]["tscac"]["steps"] == 4
    assert record["resolved"]["run"]["cap"] == 5.5


def test_option_overrides_file(tmp_path: Path) -> None:
    config = write_yaml(tmp_path / "c.yaml", {"rows": 500, "seed": 9})
    out = tmp_path / "raw"
    assert main(["synth", "--config", str(config), "--rows", "300", "--out", str(out)]) == 0
    assert len(data.read_kuairand(out)) == 300


def test_file_supplies_required_option(tmp_path: Path) -> None:
    out = tmp_path / "raw"
    config = write_yaml(tmp_path / "c.yaml", {"rows": 200, "out": str(out)})
    assert main(["synth", "--config", str(config)]) == 0
    assert any(out.iterdir())


def test_missing_required_option_names_flag(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["synth", "--out", str(tmp_path / "raw")]) == 2
    error = capsys.readouterr().err
    assert "--rows: missing" in error
    assert "--set rows=VALUE" in error


@pytest.mark.parametrize(
    ("assignment", "expected"),
    [
        ("common.stepz=4", "unknown key 'common.stepz'; valid keys under common: action_dim"),
        ("colour=red", "unknown key 'colour'; valid keys: config_sections"),
        ("run=3", "'run' is a section"),
        ("methods.tscac.lambdaz=1", "valid keys under methods.tscac:"),
        ("seed", "expected KEY=VALUE"),
        ("common.steps={a: 1}", "expected a scalar or a list"),
    ],
)
def test_set_errors_name_key(
    capsys: pytest.CaptureFixture[str], assignment: str, expected: str
) -> None:
    expected = expected.replace("config_sections", "checkpoint_every, common, data, deterministic")
    assert main(["tscac", "--data", "somewhere", "--set", assignment]) == 2
    assert expected in capsys.readouterr().err


def test_unknown_file_key_lists_valid_keys(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = write_yaml(tmp_path / "c.yaml", {"pretrain": {"epoch": 2}})
    assert main(["rmtl", "--data", "x", "--backbone", "esmm", "--config", str(config)]) == 2
    error = capsys.readouterr().err
    assert "unknown key 'pretrain.epoch'" in error
    assert "batch_size, epochs, learning_rate, patience, weight_decay" in error


def test_set_choice_checked(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prepare", "kuairand", "--source", "x", "--out", "y", "--set", "split=days"]) == 2
    assert "split: expected one of ['time', 'user'], got 'days'" in capsys.readouterr().err


def test_set_values_are_typed() -> None:
    nested = settings.parse_set_options(
        ["a.b=3", "a.c=1e-3", "d=[1, 2]", "e=true", "f=text", "a.b=4"]
    )
    assert nested == {"a": {"b": 4, "c": 1e-3}, "d": [1, 2], "e": True, "f": "text"}
    with pytest.raises(InvalidArgumentError, match="expected KEY=VALUE"):
        settings.parse_set_options(["a.=1"])


def test_scientific_notation_is_float(tmp_path: Path) -> None:
    # PyYAML reads 1e-3 (no dot) as a string; settings read it as the number it means.
    assert settings.parse_set_options(["a=1e-3", "b=[1e-1, 2]", "c=nan"]) == {
        "a": 1e-3,
        "b": [0.1, 2],
        "c": "nan",
    }
    path = tmp_path / "c.yaml"
    path.write_text("run:\n  lambda_sweep: [1e-1, 1e-2]\n  cap: 5\n")
    assert settings.load_config_file(path) == {"run": {"lambda_sweep": [0.1, 0.01], "cap": 5}}


def test_config_file_must_be_mapping(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(InvalidArgumentError, match="expected a mapping of settings"):
        settings.load_config_file(path)
    path.write_text("a: [1\n")
    with pytest.raises(InvalidArgumentError, match="invalid YAML"):
        settings.load_config_file(path)
    path.write_text("")
    assert settings.load_config_file(path) == {}


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("rows=2.5", "expected an integer"),
        ("rows=true", "expected an integer"),
        ("rows=[1,2]", "one value"),
    ],
)
def test_set_value_type_errors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, assignment: str, message: str
) -> None:
    assert main(["synth", "--out", str(tmp_path / "raw"), "--set", assignment]) == 2
    assert message in capsys.readouterr().err


def test_run_json_written_before_first_metrics_row(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, prepared: Path
) -> None:
    out = tmp_path / "runs" / "t"
    seen: list[bool] = []
    original = MetricsWriter.log

    def log(self: MetricsWriter, phase: str, step: int, values: dict[str, float]) -> None:
        seen.append((out / "run.json").is_file())
        original(self, phase, step, values)

    monkeypatch.setattr(MetricsWriter, "log", log)
    config = write_yaml(tmp_path / "c.yaml", TSCAC_SETTINGS)
    arguments = ["tscac", "--data", str(prepared), "--out", str(out), "--config", str(config)]
    assert main(["--no-progress", *arguments]) == 0
    assert seen
    assert all(seen)

    record = json.loads((out / "run.json").read_text())
    assert record["command"] == "tscac"
    assert record["command_line"].startswith("recrl --no-progress tscac --data ")
    assert record["seed"] == [0]
    assert set(record["versions"]) == {"recrl", "torch", "numpy", "python"}
    assert record["started"].endswith("+00:00")
    assert record["config"]["data"] == str(prepared)


def test_runs_csv_two_appends(tmp_path: Path, prepared: Path) -> None:
    config = write_yaml(tmp_path / "c.yaml", TSCAC_SETTINGS)
    for name in ("first", "second"):
        out = tmp_path / "runs" / name
        arguments = ["tscac", "--data", str(prepared), "--out", str(out), "--config", str(config)]
        assert main(["--no-progress", *arguments]) == 0

    rows = read_runs(tmp_path / "runs" / "runs.csv")
    assert [row["run_directory"] for row in rows] == [
        str((tmp_path / "runs" / name).resolve()) for name in ("first", "second")
    ]
    assert (tmp_path / "runs" / "runs.csv").read_text().count("time,command") == 1
    for row in rows:
        assert row["command"] == "tscac"
        assert row["data"] == str(prepared.resolve())
        assert "tscac/watch_time" in json.loads(row["metrics"])
        assert float(row["wall_time_s"]) > 0


def _append_many(path: str, worker: int) -> None:
    for index in range(50):
        row = {column: f"{worker}-{index}" for column in runs.RUNS_HEADER}
        runs.append_runs_line(Path(path), row)


def test_runs_csv_concurrent_appends(tmp_path: Path) -> None:
    path = tmp_path / "runs.csv"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_append_many, args=(str(path), w)) for w in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    rows = read_runs(path)
    assert len(rows) == 150
    assert path.read_text().count("time,command") == 1
    assert {row["time"] for row in rows} == {f"{w}-{i}" for w in range(3) for i in range(50)}


def test_prepare_records_run(tmp_path: Path) -> None:
    source = data.write_synthetic_kuairand(data.SyntheticConfig(rows=2000), tmp_path / "raw")
    out = tmp_path / "datasets" / "small"
    assert main(["prepare", "kuairand", "--source", str(source), "--out", str(out)]) == 0
    record = json.loads((out / "run.json").read_text())
    assert record["command"] == "prepare"
    assert record["config"]["history_length"] == 10
    rows = read_runs(tmp_path / "datasets" / "runs.csv")
    assert json.loads(rows[0]["metrics"])["rows"] == 2000


def test_no_progress_prints_no_bar(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, prepared: Path
) -> None:
    class Terminal:
        """A stderr that claims to be a terminal, so tqdm shows its bars by default."""

        def __init__(self) -> None:
            self.text: list[str] = []

        def write(self, text: str) -> int:
            self.text.append(text)
            return len(text)

        def flush(self) -> None:
            pass

        def isatty(self) -> bool:
            return True

    config = write_yaml(tmp_path / "c.yaml", TSCAC_SETTINGS)
    outputs = {}
    for switch in ([], ["--no-progress"]):
        terminal = Terminal()
        monkeypatch.setattr("sys.stderr", terminal)
        out = tmp_path / f"run{len(switch)}"
        arguments = ["tscac", "--data", str(prepared), "--out", str(out), "--config", str(config)]
        assert main([*switch, *arguments]) == 0
        outputs[bool(switch)] = "".join(terminal.text)
    assert "step/s" in outputs[False] or "s/step" in outputs[False]
    assert "|" in outputs[False]
    assert "step/s" not in outputs[True]
    assert "s/step" not in outputs[True]
    assert "it/s" not in outputs[True]


def test_run_json_config_repeats_run(tmp_path: Path, prepared: Path) -> None:
    config = write_yaml(tmp_path / "c.yaml", TSCAC_SETTINGS)
    first = tmp_path / "runs" / "first"
    arguments = ["tscac", "--data", str(prepared), "--out", str(first), "--config", str(config)]
    assert main(["--no-progress", *arguments, "--seed", "2"]) == 0

    recorded = json.loads((first / "run.json").read_text())["config"]
    again = write_yaml(tmp_path / "again.yaml", recorded)
    second = tmp_path / "runs" / "second"
    assert main(["--no-progress", "tscac", "--config", str(again), "--set", f"out={second}"]) == 0

    record = json.loads((second / "run.json").read_text())
    assert record["config"] == {**recorded, "out": str(second)}
    assert (first / "table.csv").read_text() == (second / "table.csv").read_text()
