"""Two gloo ranks on CPU train like one process on the same global batches.

Each test launches ``torch.distributed.run`` with two processes on the loopback interface and
compares what the ranks report with a single-process run in the test process.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from recrl import data, distributed
from recrl.errors import InvalidArgumentError

from . import distributed_worker

if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
    pytest.skip(
        "torch.distributed with the gloo backend is not available in this torch build",
        allow_module_level=True,
    )

WORKER = Path(distributed_worker.__file__)
RANKS = 2
MODES = ("rmtl", "tscac")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        port: int = listener.getsockname()[1]
        return port


def _launch(arguments: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        str(RANKS),
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_loopback_port()),
        *arguments,
    ]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    # 3,005 rows give an odd training split of 1,803 rows, so the last batch of every RMTL
    # epoch splits into parts of different sizes.
    root = tmp_path_factory.mktemp("distributed")
    source = data.write_synthetic_kuairand(
        data.SyntheticConfig(rows=3005, users=30, videos=300, seed=1), root / "log"
    )
    return data.prepare(data.read_kuairand(source), root / "prepared")


@pytest.fixture(scope="module")
def ranks_output(prepared, tmp_path_factory):
    out = tmp_path_factory.mktemp("ranks")
    finished = _launch([str(WORKER), ",".join(MODES), str(prepared.path), str(out)], out)
    assert finished.returncode == 0, finished.stderr[-4000:]
    return out


def _rank_results(out: Path, mode: str) -> list[tuple[dict, dict[str, np.ndarray]]]:
    results = []
    for rank in range(RANKS):
        summary = json.loads((out / f"{mode}_rank{rank}.json").read_text())
        with np.load(out / f"{mode}_rank{rank}.npz") as arrays:
            results.append((summary, dict(arrays)))
    return results


def _assert_ranks_equal(results: list[tuple[dict, dict[str, np.ndarray]]]) -> None:
    first = results[0][1]
    for _, parameters in results[1:]:
        assert parameters.keys() == first.keys()
        for name, value in parameters.items():
            np.testing.assert_array_equal(value, first[name], err_msg=name)


def _assert_parameters_close(actual: dict, expected: dict) -> None:
    assert actual.keys() == expected.keys()
    for name, value in expected.items():
        np.testing.assert_allclose(actual[name], value, rtol=1e-4, atol=1e-5, err_msg=name)


def test_rmtl_steps_match_single_process(prepared, ranks_output):
    expected, expected_parameters = distributed_worker.run_rmtl(str(prepared.path))
    results = _rank_results(ranks_output, "rmtl")
    _assert_ranks_equal(results)
    summary, parameters = results[0]
    assert summary["world_size"] == RANKS
    assert set(summary["steps"]) == {"pretrain", "finetune_rmtl"}
    for stage, losses in expected["steps"].items():
        assert len(losses) > 1, stage
        np.testing.assert_allclose(summary["steps"][stage], losses, rtol=1e-5, err_msg=stage)
    for stage, records in expected["epochs"].items():
        assert len(summary["epochs"][stage]) == len(records), stage
        for record, expected_record in zip(summary["epochs"][stage], records):
            assert record.keys() == expected_record.keys()
            for key, value in expected_record.items():
                assert record[key] == pytest.approx(value, rel=1e-5, abs=1e-6), (stage, key)
    _assert_parameters_close(parameters, expected_parameters)


def test_tscac_stage_one_matches_single_process(prepared, ranks_output):
    expected, expected_parameters = distributed_worker.run_method(str(prepared.path), "tscac")
    results = _rank_results(ranks_output, "tscac")
    _assert_ranks_equal(results)
    summary, parameters = results[0]
    assert len(summary["steps"]) == distributed_worker.TSCAC_STEPS
    for step, (diagnostics, expected_diagnostics) in enumerate(
        zip(summary["steps"], expected["steps"])
    ):
        assert diagnostics.keys() == expected_diagnostics.keys()
        for key, value in expected_diagnostics.items():
            assert diagnostics[key] == pytest.approx(value, rel=1e-5, abs=1e-6), (step, key)
    _assert_parameters_close(parameters, expected_parameters)


def test_ranks_split_batches_and_reject_sizes(ranks_output):
    summaries = [summary for summary, _ in _rank_results(ranks_output, "tscac")]
    parts = [summary["part"] for summary in summaries]
    assert parts == [[0, 1, 2], [3, 4, 5, 6]]
    for summary in summaries:
        assert summary["batch_size_error"] == (
            "batch_size: expected a global batch size divisible by the 2 ranks, got 5; "
            "pick a multiple of 2 or change --nproc_per_node"
        )


def test_tscac_command_under_torchrun(prepared, tmp_path):
    configuration = {
        "run": {
            "methods": ["tscac"],
            "behaviour_steps": 2,
            "lambda_sweep": [0.1],
            "lambda_sweep_steps": 2,
        },
        "common": {
            "candidates": 20,
            "hidden_dims": [8],
            "embedding_dim": 4,
            "action_dim": 4,
            "batch_size": 16,
            "steps": 2,
            "evaluation_interval": 1,
        },
    }
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(configuration))
    out = tmp_path / "run"
    arguments = ["-m", "recrl.cli", "tscac", "--data", str(prepared.path)]
    finished = _launch([*arguments, "--config", str(config_path), "--out", str(out)], tmp_path)
    assert finished.returncode == 0, finished.stderr[-4000:]
    assert finished.stdout.count("tscac run written to") == 1
    for name in ("config.yaml", "table.md", "table.csv", "curves.png", "actor.safetensors"):
        assert (out / name).is_file(), name
    assert yaml.safe_load((out / "config.yaml").read_text())["world_size"] == RANKS


def test_single_process_is_identity(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert not distributed.launched_by_torchrun()
    assert distributed.setup("cpu") == "cpu"
    assert not distributed.is_active()
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)
    part = distributed.split_batch(torch.arange(5))
    assert part.rows.tolist() == [0, 1, 2, 3, 4]
    assert part.loss_scale == 1.0
    assert part.global_mean(0.25) == 0.25
    distributed.check_batch_size("batch_size", 7)
    assert distributed.mean_over_ranks({"loss": 1.5}) == {"loss": 1.5}
    assert float(distributed.loss_denominator(torch.tensor(0.0))) == 1.0
    model = torch.nn.Linear(2, 1)
    assert distributed.wrap(model) is model
    assert distributed.broadcast_from_main(lambda: {"auc": 0.5}) == {"auc": 0.5}


def test_setup_rejects_indexed_cuda_device(monkeypatch):
    for name, value in (("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0")):
        monkeypatch.setenv(name, value)
    with pytest.raises(InvalidArgumentError, match="expected cpu or cuda under torchrun"):
        distributed.setup("cuda:1")
    assert not distributed.is_active()


def test_setup_joins_and_leaves_gloo_group(monkeypatch):
    environment = {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"}
    environment.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_loopback_port()))
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    try:
        assert distributed.setup("cpu") == "cpu"
        assert distributed.is_active()
        assert torch.distributed.get_backend() == "gloo"
        assert (distributed.rank(), distributed.world_size()) == (0, 1)
        assert float(distributed.sum_over_ranks(torch.tensor(2.5))) == 2.5
        model = torch.nn.Linear(2, 1)
        assert isinstance(distributed.wrap(model), torch.nn.parallel.DistributedDataParallel)
        assert distributed.unwrap(distributed.wrap(model)) is model
    finally:
        distributed.shutdown()
    assert not distributed.is_active()
