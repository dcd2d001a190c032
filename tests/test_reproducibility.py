"""One seed gives identical prepared datasets, identical TSCAC and RMTL metrics on CPU."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from recrl import data
from recrl.cli import main
from recrl.errors import InvalidArgumentError
from recrl.metrics_writer import read_metrics
from recrl.seeding import derive_seed, seed_everything, set_deterministic

TSCAC_SETTINGS = {
    "run": {
        "methods": ["behaviour_cloning", "rcpo", "tscac"],
        "behaviour_steps": 5,
        "lambda_sweep": [0.1, 0.01],
        "lambda_sweep_steps": 3,
    },
    "common": {
        "steps": 8,
        "evaluation_interval": 4,
        "candidates": 20,
        "batch_size": 32,
        "hidden_dims": [16],
        "embedding_dim": 4,
        "action_dim": 4,
    },
}

RMTL_SETTINGS = {
    "backbone": {"embedding_dim": 4, "bottom_dims": [8], "tower_dims": [8]},
    "pretrain": {"epochs": 2, "batch_size": 512},
    "critic": {"epochs": 1, "batch_size": 512, "embedding_dim": 4, "bottom_dims": [8]},
    "finetune": {"epochs": 1, "batch_size": 512},
}


@pytest.fixture
def deterministic_mode(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Let a test switch torch to deterministic algorithms and restore the setting after it."""
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    before = torch.are_deterministic_algorithms_enabled()
    yield
    set_deterministic(before)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("log")
    return data.write_synthetic_kuairand(data.SyntheticConfig(rows=3000, seed=2), folder)


@pytest.fixture(scope="module")
def prepared(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("prepared") / "dataset"
    data.prepare(data.read_kuairand(source), out)
    return out


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def metric_values(folder: Path) -> list[tuple[str, int, str, float]]:
    """Return every metrics row without its wall-clock time."""
    rows = read_metrics(folder)
    return [(row["phase"], row["step"], row["name"], row["value"]) for row in rows]


def without_time(rows: list[tuple[str, int, str, float]]) -> list[tuple[str, int, str, float]]:
    return [row for row in rows if not row[2].startswith("time/")]


def test_prepared_datasets_byte_identical(source: Path, tmp_path: Path) -> None:
    folders = [tmp_path / "a" / "dataset", tmp_path / "b" / "dataset"]
    for folder in folders:
        arguments = ["prepare", "kuairand", "--source", str(source), "--out", str(folder)]
        assert main(["--no-progress", *arguments, "--split", "user", "--seed", "7"]) == 0

    first, second = (folder_bytes(folder) for folder in folders)
    # run.json records when and how the run started; everything else is the dataset itself.
    assert set(first) == set(second)
    assert "manifest.json" in first
    assert "run.json" in first
    for name in sorted(set(first) - {"run.json"}):
        assert first[name] == second[name], name


def test_other_seed_gives_other_split(source: Path, tmp_path: Path) -> None:
    folders = []
    for seed in ("7", "8"):
        folder = tmp_path / seed
        arguments = ["prepare", "kuairand", "--source", str(source), "--out", str(folder)]
        assert main(["--no-progress", *arguments, "--split", "user", "--seed", seed]) == 0
        folders.append(folder)
    assert folder_bytes(folders[0])["split.npy"] != folder_bytes(folders[1])["split.npy"]


def test_tscac_metrics_identical(prepared: Path, tmp_path: Path, deterministic_mode: None) -> None:
    config = tmp_path / "tscac.yaml"
    config.write_text(yaml.safe_dump(TSCAC_SETTINGS))
    for name in ("first", "second"):
        arguments = ["tscac", "--data", str(prepared), "--out", str(tmp_path / name)]
        arguments += ["--config", str(config), "--seed", "3", "--deterministic"]
        assert main(["--no-progress", *arguments]) == 0
    first, second = (metric_values(tmp_path / name) for name in ("first", "second"))
    assert len(first) > 20
    assert first == second
    for name in ("table.csv", "table.md"):
        assert (tmp_path / "first" / name).read_text() == (tmp_path / "second" / name).read_text()


def test_tscac_other_seed_differs(prepared: Path, tmp_path: Path) -> None:
    config = tmp_path / "tscac.yaml"
    config.write_text(yaml.safe_dump(TSCAC_SETTINGS))
    for seed in ("3", "4"):
        arguments = ["tscac", "--data", str(prepared), "--out", str(tmp_path / seed)]
        assert main(["--no-progress", *arguments, "--config", str(config), "--seed", seed]) == 0
    assert metric_values(tmp_path / "3") != metric_values(tmp_path / "4")


def test_rmtl_metrics_identical(prepared: Path, tmp_path: Path, deterministic_mode: None) -> None:
    config = tmp_path / "rmtl.yaml"
    config.write_text(yaml.safe_dump(RMTL_SETTINGS))
    for name in ("first", "second"):
        arguments = ["rmtl", "--data", str(prepared), "--out", str(tmp_path / name)]
        arguments += ["--backbone", "esmm", "--config", str(config), "--no-plots"]
        assert main(["--no-progress", *arguments, "--seed", "5", "--deterministic"]) == 0
    first, second = (metric_values(tmp_path / name) for name in ("first", "second"))
    # Epoch durations (time/epoch_s) are wall-clock measurements, the only values that differ.
    assert any(row[2] == "time/epoch_s" for row in first)
    assert len(without_time(first)) > 20
    assert without_time(first) == without_time(second)
    assert (tmp_path / "first" / "table.csv").read_text() == (
        tmp_path / "second" / "table.csv"
    ).read_text()


def test_seed_everything_fans_out() -> None:
    draws = []
    for _ in range(2):
        derived = seed_everything(11, components=("replay", "shuffle"))
        draws.append((random.random(), np.random.random(), float(torch.rand(1)), derived))
    assert draws[0] == draws[1]
    assert draws[0][3]["replay"] != draws[0][3]["shuffle"]
    seed_everything(12)
    assert random.random() != draws[0][0]


def test_derive_seed_depends_on_seed_and_name() -> None:
    assert derive_seed(1, "replay") == derive_seed(1, "replay")
    assert derive_seed(1, "replay") != derive_seed(2, "replay")
    assert derive_seed(1, "replay") != derive_seed(1, "replay2")
    assert 0 <= derive_seed(2**63 - 1, "x") < 2**63


@pytest.mark.parametrize("seed", [-1, 2**63, 1.5, True])
def test_invalid_seed_rejected(seed: object) -> None:
    with pytest.raises(InvalidArgumentError, match="seed: expected an integer in"):
        seed_everything(seed)  # type: ignore[arg-type]


def test_deterministic_switch(deterministic_mode: None) -> None:
    seed_everything(0, deterministic=True)
    assert torch.are_deterministic_algorithms_enabled()
    assert not torch.backends.cudnn.benchmark
    set_deterministic(False)
    assert not torch.are_deterministic_algorithms_enabled()
