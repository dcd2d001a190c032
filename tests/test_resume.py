"""Runs killed with SIGKILL and resumed with --resume end with the uninterrupted run's tables."""

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from recrl import data
from recrl.cli import main

TSCAC_CONFIGURATION = {
    "run": {
        "methods": ["rcpo", "interaction_ac", "tscac"],
        "behaviour_steps": 10,
        "lambda_sweep": [0.1, 0.001],
        "lambda_sweep_steps": 4,
    },
    "common": {
        "candidates": 20,
        "hidden_dims": [8],
        "embedding_dim": 4,
        "action_dim": 4,
        "batch_size": 16,
        "steps": 12,
        "evaluation_interval": 4,
    },
}
RMTL_CONFIGURATION = {
    "backbone": {"embedding_dim": 4, "bottom_dims": [16], "tower_dims": [8]},
    "pretrain": {"epochs": 2, "batch_size": 128, "patience": 2},
    "critic": {"epochs": 2, "batch_size": 128, "embedding_dim": 4, "bottom_dims": [8]},
    "finetune": {"epochs": 3, "batch_size": 128, "patience": 2},
}


@pytest.fixture(autouse=True)
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    source = data.write_synthetic_kuairand(
        data.SyntheticConfig(rows=3000, users=30, videos=300, seed=1), root / "log"
    )
    return data.prepare(data.read_kuairand(source), root / "prepared")


def current_phase(out: Path) -> str:
    """Return the phase of the run's periodic checkpoint, or "" while there is none."""
    try:
        document = json.loads((out / "checkpoints" / "current" / "state.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return ""
    return str(document["metadata"]["phase"])


def without_timings(value):
    """Drop the ``time/...`` entries, which differ between any two runs."""
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if not k.startswith("time/")}
    if isinstance(value, list):
        return [without_timings(item) for item in value]
    return value


def metric_rows(run: Path) -> list[tuple[str, ...]]:
    """Return the sorted rows of ``run/metrics.csv`` without wall-clock times and ``time/`` values.

    Sorted, because a resumed step may list its values in another order.
    """
    with (run / "metrics.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return sorted(
        (row["phase"], row["step"], row["name"], row["value"])
        for row in rows
        if not row["name"].startswith("time/")
    )


def kill_when(arguments: list[str], out: Path, phase_prefix: str) -> None:
    """Run ``recrl ARGUMENTS`` and SIGKILL it once a checkpoint of a matching phase exists."""
    command = [sys.executable, "-m", "recrl.cli", *arguments]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not current_phase(out).startswith(phase_prefix):
            assert process.poll() is None, process.stderr.read().decode()  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "no checkpoint appeared within 120 s"
            time.sleep(0.01)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
        process.stderr.close()  # type: ignore[union-attr]
    assert process.returncode == -signal.SIGKILL
    assert not (out / "table.csv").exists()


def test_tscac_killed_and_resumed_matches(prepared, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(TSCAC_CONFIGURATION))
    arguments = ["tscac", "--data", str(prepared.path), "--config", str(config), "--seed", "0"]
    assert main([*arguments, "--out", str(tmp_path / "uninterrupted")]) == 0

    out = tmp_path / "interrupted"
    resumable = [*arguments, "--out", str(out), "--checkpoint-every", "2"]
    kill_when(resumable, out, "seed0/tscac/stage_one")
    finished = sorted(path.name for path in (out / "checkpoints" / "phases").iterdir())
    assert finished == ["seed0--behaviour", "seed0--rcpo--train"]

    assert main([*resumable, "--resume"]) == 0
    expected = (tmp_path / "uninterrupted" / "table.csv").read_text()
    assert (out / "table.csv").read_text() == expected
    assert metric_rows(out) == metric_rows(tmp_path / "uninterrupted")


def test_rmtl_killed_and_resumed_matches(prepared, tmp_path):
    config = tmp_path / "rmtl.yaml"
    config.write_text(yaml.safe_dump(RMTL_CONFIGURATION))
    arguments = ["rmtl", "--data", str(prepared.path), "--backbone", "esmm", "mmoe"]
    arguments += ["--config", str(config), "--no-plots", "--threads", "1"]
    assert main([*arguments, "--out", str(tmp_path / "uninterrupted")]) == 0

    out = tmp_path / "interrupted"
    resumable = [*arguments, "--out", str(out), "--checkpoint-every", "3"]
    kill_when(resumable, out, "seed0/esmm/finetune_rmtl")

    assert main([*resumable, "--resume"]) == 0
    expected = (tmp_path / "uninterrupted" / "table.csv").read_text()
    assert (out / "table.csv").read_text() == expected
    assert metric_rows(out) == metric_rows(tmp_path / "uninterrupted")
    results = json.loads((out / "results.json").read_text())
    assert results == json.loads((tmp_path / "uninterrupted" / "results.json").read_text())
    for backbone in ("esmm", "mmoe"):
        history = json.loads((out / "seed0" / backbone / "history.json").read_text())
        path = tmp_path / "uninterrupted" / "seed0" / backbone / "history.json"
        assert without_timings(history) == without_timings(json.loads(path.read_text()))


def test_resume_rejects_changed_settings(prepared, tmp_path, capsys):
    configuration = {
        "run": {"methods": ["rcpo"], "behaviour_steps": 2, "lambda_sweep": []},
        "common": {**TSCAC_CONFIGURATION["common"], "steps": 2, "evaluation_interval": 1},
    }
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(configuration))
    out = tmp_path / "run"
    arguments = ["tscac", "--data", str(prepared.path), "--config", str(config)]
    arguments += ["--out", str(out)]
    assert main(arguments) == 0

    configuration["common"]["steps"] = 3
    config.write_text(yaml.safe_dump(configuration))
    assert main([*arguments, "--resume", "--seed", "1"]) == 2
    error = capsys.readouterr().err
    assert "methods.rcpo.steps" in error
    assert "seeds" in error
    assert "behaviour_cloning.steps" in error


def test_resume_needs_a_started_run(prepared, tmp_path, capsys):
    out = tmp_path / "empty"
    arguments = ["tscac", "--data", str(prepared.path), "--out", str(out), "--resume"]
    assert main(arguments) == 2
    assert "--resume continues a run started in that folder" in capsys.readouterr().err
    arguments = ["rmtl", "--data", str(prepared.path), "--backbone", "esmm", "--out", str(out)]
    assert main([*arguments, "--resume"]) == 2
    assert "--resume continues a run started in that folder" in capsys.readouterr().err
    assert main([*arguments, "--checkpoint-every", "-1"]) == 2
    assert "--checkpoint-every: expected N >= 0, got -1" in capsys.readouterr().err
