"""Command-line guards that keep a finished run from being lost and reject bad options early."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from recrl import data
from recrl.cli import main

SMALL = {
    "run": {"methods": ["behaviour_cloning"], "behaviour_steps": 2, "lambda_sweep": []},
    "common": {
        "candidates": 10,
        "hidden_dims": [4],
        "embedding_dim": 4,
        "action_dim": 4,
        "batch_size": 8,
        "steps": 2,
        "evaluation_interval": 2,
    },
}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("guards")
    source = data.write_synthetic_kuairand(
        data.SyntheticConfig(rows=2000, users=20, videos=200, seed=3), root / "log"
    )
    return data.prepare(data.read_kuairand(source), root / "prepared").path


def tscac(prepared: Path, tmp_path: Path, out: Path, *extra: str) -> int:
    config = tmp_path / "tscac.yaml"
    config.write_text(yaml.safe_dump(SMALL))
    arguments = ["--no-progress", "tscac", "--data", str(prepared), "--config", str(config)]
    return main([*arguments, "--out", str(out), *extra])


def test_finished_run_is_kept_unless_overwrite(
    prepared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert tscac(prepared, tmp_path, out) == 0
    table = (out / "table.csv").read_text()
    capsys.readouterr()
    assert tscac(prepared, tmp_path, out) == 2
    assert "contains a run already; pass --resume to continue it, --overwrite" in (
        capsys.readouterr().err
    )
    assert (out / "table.csv").read_text() == table
    assert tscac(prepared, tmp_path, out, "--overwrite") == 0
    assert tscac(prepared, tmp_path, out, "--overwrite", "--resume") == 2
    assert "pass one of them, not both" in capsys.readouterr().err


def test_resume_of_missing_folder_writes_nothing(
    prepared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "never-started"
    assert tscac(prepared, tmp_path, out, "--resume") == 2
    assert "--resume continues a run started in that folder" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("threads", ["0", "-2"])
def test_threads_below_one_are_rejected(
    prepared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], threads: str
) -> None:
    assert tscac(prepared, tmp_path, tmp_path / "run", "--threads", threads) == 2
    assert f"--threads: expected a count >= 1, got {threads}" in capsys.readouterr().err


def test_rmtl_rejects_unknown_device(
    prepared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    arguments = ["rmtl", "--data", str(prepared), "--backbone", "esmm"]
    assert main([*arguments, "--out", str(tmp_path / "run"), "--device", "tpu"]) == 2
    assert "--device: expected cpu, cuda, cuda:N or auto, got 'tpu'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
