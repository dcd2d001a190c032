"""Checkpoints restore training exactly, round-trip every state and survive interrupted writes."""

import json
import logging
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from recrl import data
from recrl.checkpoint import (
    RunCheckpoints,
    TrainingState,
    checkpoint_path,
    differing_keys,
    load_checkpoint,
    metrics_rows_at_checkpoint,
    optimizers_of,
    save_checkpoint,
)
from recrl.cli import main
from recrl.errors import InvalidArgumentError, RecrlIOError
from recrl.nets.mtl import build_backbone
from recrl.replay import ReplayBuffer
from recrl.rmtl.config import RMTLConfig
from recrl.rmtl.data import TaskData
from recrl.rmtl.losses import weighted_task_loss
from recrl.tscac.agents import build_method
from recrl.tscac.config import TscacConfig
from recrl.tscac.data import Transitions

SMALL_TSCAC = {
    "candidates": 20,
    "hidden_dims": (8,),
    "embedding_dim": 4,
    "action_dim": 4,
    "batch_size": 16,
}
SMALL_BACKBONE = {
    "backbone": {"embedding_dim": 4, "bottom_dims": [16, 8], "tower_dims": [8], "dropout": 0.2}
}


@pytest.fixture(autouse=True)
def deterministic():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(False)
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("checkpoint")
    source = data.write_synthetic_kuairand(
        data.SyntheticConfig(rows=3000, users=30, videos=300, seed=1), root / "log"
    )
    return data.prepare(data.read_kuairand(source), root / "prepared")


def assert_same_tensors(actual: dict, expected: dict) -> None:
    assert actual.keys() == expected.keys()
    for key in expected:
        assert torch.equal(actual[key], expected[key]), key


def assert_same_optimizer(actual: torch.optim.Optimizer, expected: torch.optim.Optimizer) -> None:
    saved, wanted = actual.state_dict(), expected.state_dict()
    assert saved["param_groups"] == wanted["param_groups"]
    assert saved["state"].keys() == wanted["state"].keys()
    for index, values in wanted["state"].items():
        assert_same_tensors(saved["state"][index], values)


# Contract: 10 steps, checkpoint, 1 step in a fresh object == 11 uninterrupted steps.


class TscacRun:
    """A TSCAC method trained on uniformly drawn training rows."""

    def __init__(self, prepared, stage: str, seed: int) -> None:
        spec = Transitions.build_spec(prepared, SMALL_TSCAC["candidates"])
        self.transitions = Transitions(prepared, spec)
        self.rows = self.transitions.split_rows("train")
        torch.manual_seed(seed)
        self.method = build_method("tscac", spec, TscacConfig(**SMALL_TSCAC))
        self.method.set_stage(stage)
        self.generator = np.random.default_rng(seed)

    def step(self) -> None:
        index = self.generator.integers(0, len(self.rows), size=16)
        self.method.update(self.transitions.batch(self.rows[index]))

    def state(self) -> TrainingState:
        return TrainingState(
            modules={"method": self.method},
            optimizers=optimizers_of(self.method),
            generators={"rows": self.generator},
        )


class BackboneRun:
    """An RMTL backbone (with dropout) trained on batches of a torch-shuffled order."""

    def __init__(self, task_data: TaskData, kind: str, seed: int) -> None:
        self.data = task_data
        torch.manual_seed(seed)
        config = RMTLConfig.from_dict(SMALL_BACKBONE).with_backbone(kind)
        self.model = build_backbone(task_data.spec, config.backbone)
        self.model.train()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-2)
        self.generator = torch.Generator().manual_seed(seed)

    def step(self) -> None:
        train = self.data.splits["train"]
        rows = train[torch.randperm(len(train), generator=self.generator)[:64]]
        probabilities = self.model(self.data.batch(rows))
        labels = self.data.labels[rows]
        loss = weighted_task_loss(probabilities, labels, torch.ones_like(labels))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    def state(self) -> TrainingState:
        return TrainingState(
            modules={"model": self.model},
            optimizers={"adam": self.optimizer},
            torch_generators={"shuffle": self.generator},
        )


def test_tscac_stages_resume_bit_identical(prepared, tmp_path):
    for stage in ("stage_one", "stage_two"):
        uninterrupted = TscacRun(prepared, stage, seed=0)
        for _ in range(11):
            uninterrupted.step()

        interrupted = TscacRun(prepared, stage, seed=0)
        for _ in range(10):
            interrupted.step()
        save_checkpoint(tmp_path / stage, interrupted.state())
        del interrupted

        resumed = TscacRun(prepared, stage, seed=123)
        load_checkpoint(tmp_path / stage, resumed.state())
        resumed.step()
        assert_same_tensors(resumed.method.state_dict(), uninterrupted.method.state_dict())
        for name, optimizer in optimizers_of(uninterrupted.method).items():
            assert_same_optimizer(optimizers_of(resumed.method)[name], optimizer)


@pytest.mark.parametrize("kind", ["esmm", "mmoe"])
def test_backbone_resumes_bit_identical(prepared, tmp_path, kind):
    task_data = TaskData.load(prepared)
    uninterrupted = BackboneRun(task_data, kind, seed=0)
    for _ in range(11):
        uninterrupted.step()

    interrupted = BackboneRun(task_data, kind, seed=0)
    for _ in range(10):
        interrupted.step()
    save_checkpoint(tmp_path / "state", interrupted.state())
    torch.manual_seed(99)  # Dropout draws from the global generator, which the load restores.

    resumed = BackboneRun(task_data, kind, seed=7)
    load_checkpoint(tmp_path / "state", resumed.state())
    resumed.step()
    assert_same_tensors(resumed.model.state_dict(), uninterrupted.model.state_dict())
    assert_same_optimizer(resumed.optimizer, uninterrupted.optimizer)


# Round trips of single kinds of state.


def test_adam_moments_and_step_round_trip(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01, betas=(0.8, 0.9))
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    for _ in range(3):
        model(torch.randn(4, 3)).square().sum().backward()
        optimizer.step()
        scheduler.step()
    save_checkpoint(
        tmp_path / "adam",
        TrainingState(
            modules={"model": model}, optimizers={"adam": optimizer}, schedulers={"lr": scheduler}
        ),
    )

    fresh_model = torch.nn.Linear(3, 2)
    fresh = torch.optim.Adam(fresh_model.parameters(), lr=0.5)
    fresh_scheduler = torch.optim.lr_scheduler.StepLR(fresh, step_size=9, gamma=0.1)
    state = TrainingState(
        modules={"model": fresh_model},
        optimizers={"adam": fresh},
        schedulers={"lr": fresh_scheduler},
    )
    load_checkpoint(tmp_path / "adam", state)
    assert_same_optimizer(fresh, optimizer)
    assert fresh.state_dict()["state"][0]["step"] == torch.tensor(3.0)
    assert fresh.param_groups[0]["betas"] == (0.8, 0.9)
    assert fresh.param_groups[0]["lr"] == optimizer.param_groups[0]["lr"]
    assert fresh_scheduler.state_dict() == scheduler.state_dict()
    assert_same_tensors(fresh_model.state_dict(), model.state_dict())


def test_every_generator_round_trips(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    numpy_generator = np.random.default_rng(4)
    torch_generator = torch.Generator().manual_seed(5)
    for _ in range(3):
        random.random(), np.random.rand(), torch.rand(1)
        numpy_generator.random(), torch.rand(1, generator=torch_generator)
    state = TrainingState(
        generators={"rows": numpy_generator}, torch_generators={"shuffle": torch_generator}
    )
    save_checkpoint(tmp_path / "rng", state)

    def draw():
        return (
            random.random(),
            np.random.rand(3).tolist(),
            np.random.standard_normal(),
            torch.rand(3).tolist(),
            numpy_generator.random(3).tolist(),
            torch.rand(3, generator=torch_generator).tolist(),
        )

    expected = draw()
    random.seed(10)
    np.random.seed(20)
    torch.manual_seed(30)
    numpy_generator = np.random.default_rng(40)
    torch_generator = torch.Generator().manual_seed(50)
    state = TrainingState(
        generators={"rows": numpy_generator}, torch_generators={"shuffle": torch_generator}
    )
    load_checkpoint(tmp_path / "rng", state)
    assert draw() == expected


def test_replay_priorities_and_position_round_trip(tmp_path):
    buffer = ReplayBuffer(16, observation_dim=2, reward_dim=1, seed=3)
    generator = np.random.default_rng(0)
    for _ in range(3):
        observations = generator.random((7, 2), dtype=np.float32)
        terminals = np.zeros(7, dtype=bool)
        terminals[-1] = True
        buffer.extend(observations, np.zeros(7), np.ones(7), observations, terminals=terminals)
    batch = buffer.sample_prioritized(5)
    buffer.update_priorities(batch.indices, np.arange(1, 6, dtype=np.float64), batch.stamps)
    save_checkpoint(tmp_path / "replay", TrainingState(replay_buffers={"main": buffer}))

    loaded = load_checkpoint(tmp_path / "replay").replay_buffers["main"]
    assert loaded.position == buffer.position
    assert len(loaded) == len(buffer)
    np.testing.assert_array_equal(loaded.priorities(), buffer.priorities())
    expected, actual = buffer.sample_prioritized(6), loaded.sample_prioritized(6)
    np.testing.assert_array_equal(actual.indices.numpy(), expected.indices.numpy())
    np.testing.assert_array_equal(actual.observations.numpy(), expected.observations.numpy())


def test_metadata_and_tensors_round_trip(tmp_path):
    metadata = {"step": 7, "best": -float("inf"), "pair": (1, "a"), "curve": [{"x": 0.5}]}
    tensors = {"order": torch.tensor([3, 1, 2]), "best/weight": torch.ones(2, 2)}
    save_checkpoint(tmp_path / "extra", TrainingState(), tensors=tensors, metadata=metadata)
    checkpoint = load_checkpoint(tmp_path / "extra")
    assert checkpoint.metadata == metadata
    assert_same_tensors(checkpoint.tensors, tensors)


def test_rejections_name_the_problem(tmp_path):
    with pytest.raises(InvalidArgumentError, match="expected JSON values"):
        save_checkpoint(tmp_path / "bad", TrainingState(), metadata={"x": torch.ones(1)})
    with pytest.raises(RecrlIOError, match="no checkpoint found"):
        load_checkpoint(tmp_path / "missing")
    save_checkpoint(tmp_path / "small", TrainingState(modules={"a": torch.nn.Linear(1, 1)}))
    with pytest.raises(RecrlIOError, match=r"no modules \['b'\]"):
        load_checkpoint(tmp_path / "small", TrainingState(modules={"b": torch.nn.Linear(1, 1)}))
    with pytest.raises(InvalidArgumentError, match="every"):
        RunCheckpoints(tmp_path / "run", every=-1)


def test_differing_keys_are_dotted():
    stored = {"run": {"steps": 10, "methods": ["a"]}, "seed": 0, "old": 1}
    requested = {"run": {"steps": 20, "methods": ["a"]}, "seed": 0, "new": 2}
    assert differing_keys(stored, requested) == ["new", "old", "run.steps"]
    assert differing_keys(stored, stored) == []


# Interrupted writes leave the previous checkpoint loadable.


def write_marked(directory: Path, mark: int) -> None:
    save_checkpoint(
        directory,
        TrainingState(),
        tensors={"mark": torch.full((1000,), mark)},
        metadata={"mark": mark},
    )


def test_failure_before_rename_keeps_previous(tmp_path, monkeypatch):
    directory = tmp_path / "current"
    write_marked(directory, 1)
    original = Path.rename
    calls = []

    def crash_after_retiring(self, target):
        calls.append(self)
        result = original(self, target)
        if len(calls) == 1:
            raise KeyboardInterrupt("simulated crash between the two renames")
        return result

    monkeypatch.setattr(Path, "rename", crash_after_retiring)
    with pytest.raises(KeyboardInterrupt):
        write_marked(directory, 2)
    monkeypatch.undo()

    assert not directory.exists()
    assert checkpoint_path(directory) == tmp_path / ".current.old"
    checkpoint = load_checkpoint(directory)
    assert checkpoint.metadata["mark"] == 1
    assert torch.equal(checkpoint.tensors["mark"], torch.full((1000,), 1))

    # The next write replaces the retired copy and removes the partial staging folders.
    write_marked(directory, 3)
    assert load_checkpoint(directory).metadata["mark"] == 3
    assert [path.name for path in tmp_path.iterdir()] == ["current"]


WRITER = """
import sys
import torch
from recrl.checkpoint import TrainingState, save_checkpoint

directory, mark = sys.argv[1], int(sys.argv[2])
model = torch.nn.Linear(300, 300)
while True:
    mark += 1
    with torch.no_grad():
        model.weight.fill_(mark)
    save_checkpoint(directory, TrainingState(modules={"model": model}), metadata={"mark": mark})
"""


def latest_mark(directory: Path) -> int:
    """Return the mark of the checkpoint in ``directory``, or 0 while none can be read."""
    try:
        return int(load_checkpoint(directory, restore_global_generators=False).metadata["mark"])
    except (OSError, ValueError):
        # A concurrent write renamed the folder between finding and reading it.
        return 0


def test_kill_during_writes_keeps_a_complete_checkpoint(tmp_path):
    directory = tmp_path / "current"
    generator = random.Random(0)
    start = 0
    for attempt in range(3):
        command = [sys.executable, "-c", WRITER, str(directory), str(start)]
        process = subprocess.Popen(command)
        try:
            # Wait until this writer has written, then kill it at a random moment of its loop.
            deadline = time.monotonic() + 60
            while latest_mark(directory) <= start and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(generator.uniform(0.0, 0.3))
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
        model = torch.nn.Linear(300, 300)
        checkpoint = load_checkpoint(directory, TrainingState(modules={"model": model}))
        mark = checkpoint.metadata["mark"]
        assert mark > start, attempt
        assert torch.equal(model.weight, torch.full((300, 300), float(mark))), attempt
        start = mark


def test_interrupted_dataset_replace_keeps_previous(tmp_path, monkeypatch):
    source = data.write_synthetic_kuairand(data.SyntheticConfig(rows=500, seed=5), tmp_path / "a")
    other = data.write_synthetic_kuairand(data.SyntheticConfig(rows=600, seed=6), tmp_path / "b")
    out = tmp_path / "prepared"
    first = data.prepare(data.read_kuairand(source), out)
    manifest = first.manifest
    original = Path.rename
    calls = []

    def crash_after_retiring(self, target):
        calls.append(self)
        result = original(self, target)
        if len(calls) == 1:
            raise KeyboardInterrupt("simulated crash between the two renames")
        return result

    monkeypatch.setattr(Path, "rename", crash_after_retiring)
    with pytest.raises(KeyboardInterrupt):
        data.prepare(data.read_kuairand(other), out, overwrite=True)
    monkeypatch.undo()

    assert not out.exists()
    restored = data.load_prepared(out)
    assert restored.manifest == manifest
    np.testing.assert_array_equal(restored["rewards"], np.asarray(first["rewards"]))


def test_killed_prepare_overwrite_keeps_a_whole_dataset(tmp_path):
    small = data.write_synthetic_kuairand(data.SyntheticConfig(rows=500, seed=5), tmp_path / "a")
    large = data.write_synthetic_kuairand(
        data.SyntheticConfig(rows=200_000, seed=6), tmp_path / "b"
    )
    out = tmp_path / "prepared"
    previous = data.prepare(data.read_kuairand(small), out).manifest
    command = [sys.executable, "-m", "recrl.cli", "prepare", "kuairand", "--source", str(large)]
    command += ["--out", str(out), "--overwrite"]
    generator = random.Random(1)
    kept_previous = 0
    for attempt in range(3):
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            # Kill while the new dataset is being written into its staging folder.
            deadline = time.monotonic() + 60
            while not list(tmp_path.glob(".prepared.*")) and time.monotonic() < deadline:
                time.sleep(0.005)
            time.sleep(generator.uniform(0.0, 0.2))
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()

        # Either the previous dataset or the complete new one, never a torn folder.
        loaded = data.load_prepared(out)
        assert loaded.manifest["rows"] in (previous["rows"], 200_000), attempt
        for name in loaded.manifest["arrays"]:
            assert loaded[name].shape == tuple(loaded.manifest["arrays"][name]["shape"]), name
        if loaded.manifest == previous:
            kept_previous += 1
        else:
            data.prepare(data.read_kuairand(small), out, overwrite=True)
    assert kept_previous >= 1


# Damaged checkpoints raise an error that names the file, before any object changes.


def write_small(directory: Path) -> torch.nn.Linear:
    """Save a Linear(4, 3), its Adam state and a replay buffer into ``directory``."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.ones(2, 4)).sum().backward()
    optimizer.step()
    buffer = ReplayBuffer(8, observation_dim=2, reward_dim=1, seed=0)
    observations = np.ones((3, 2), dtype=np.float32)
    buffer.extend(observations, np.zeros(3), np.ones(3), observations)
    state = TrainingState(
        modules={"model": model}, optimizers={"adam": optimizer}, replay_buffers={"main": buffer}
    )
    save_checkpoint(directory, state, metadata={"step": 1})
    return model


def fresh_state() -> tuple[torch.nn.Linear, TrainingState]:
    torch.manual_seed(1)
    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.Adam(model.parameters())
    return model, TrainingState(modules={"model": model}, optimizers={"adam": optimizer})


def damaged(file: Path) -> str:
    """Return a pattern for the error about ``file`` in its checkpoint folder."""
    return (
        re.escape(f"{file}: damaged checkpoint: ")
        + ".*"
        + re.escape(f"Delete the folder {file.parent}")
    )


def make_format_one(directory: Path) -> None:
    """Rewrite ``directory/state.json`` as format 1, written before checksums were recorded."""
    document = json.loads((directory / "state.json").read_text())
    del document["files"], document["document_sha256"]
    document["format_version"] = 1
    (directory / "state.json").write_text(json.dumps(document))


def test_truncated_tensor_file_is_named(tmp_path):
    directory = tmp_path / "ckpt"
    write_small(directory)
    file = directory / "state.safetensors"
    file.write_bytes(file.read_bytes()[:100])
    with pytest.raises(RecrlIOError, match=damaged(file)) as caught:
        load_checkpoint(directory, fresh_state()[1])
    assert "size 100 bytes, expected" in str(caught.value)

    # Without checksums the safetensors parser finds the damage.
    make_format_one(directory)
    with pytest.raises(RecrlIOError, match=damaged(file)) as caught:
        load_checkpoint(directory, fresh_state()[1])
    assert "invalid safetensors file" in str(caught.value)


def test_flipped_tensor_bytes_change_nothing(tmp_path):
    directory = tmp_path / "ckpt"
    write_small(directory)
    file = directory / "state.safetensors"
    payload = bytearray(file.read_bytes())
    # The tensor data follows the header; the last bytes belong to a tensor.
    payload[-8:] = bytes(byte ^ 0xFF for byte in payload[-8:])
    file.write_bytes(bytes(payload))

    model, state = fresh_state()
    before = {key: value.clone() for key, value in model.state_dict().items()}
    with pytest.raises(RecrlIOError, match=damaged(file)) as caught:
        load_checkpoint(directory, state)
    assert "SHA-256 mismatch" in str(caught.value)
    assert_same_tensors(model.state_dict(), before)
    assert state.optimizers["adam"].state_dict()["state"] == {}


def test_changed_replay_file_is_named(tmp_path):
    directory = tmp_path / "ckpt"
    write_small(directory)
    replay_files = sorted(path for path in (directory / "replay").rglob("*") if path.is_file())
    assert replay_files
    file = replay_files[-1]
    payload = bytearray(file.read_bytes())
    payload[-1] ^= 0x01
    file.write_bytes(bytes(payload))
    with pytest.raises(RecrlIOError, match=re.escape(f"{file}: damaged checkpoint: SHA-256")):
        load_checkpoint(directory)


def test_invalid_json_is_named(tmp_path):
    directory = tmp_path / "current"
    write_small(directory)
    file = directory / "state.json"
    file.write_text('{"format_version": 2, "modu')
    with pytest.raises(RecrlIOError, match=damaged(file)) as caught:
        load_checkpoint(directory)
    assert "invalid JSON" in str(caught.value)

    file.write_bytes(b"\xff\xfe garbage")
    with pytest.raises(RecrlIOError, match=damaged(file)):
        load_checkpoint(directory)
    with pytest.raises(RecrlIOError, match=damaged(file)):
        metrics_rows_at_checkpoint(tmp_path)


def test_edited_json_is_named(tmp_path):
    directory = tmp_path / "ckpt"
    write_small(directory)
    file = directory / "state.json"
    document = json.loads(file.read_text())
    document["metadata"]["step"] = 2
    file.write_text(json.dumps(document))
    with pytest.raises(RecrlIOError, match=damaged(file)) as caught:
        load_checkpoint(directory)
    assert "SHA-256 mismatch of the document" in str(caught.value)

    # A format 1 document is checked for its keys.
    make_format_one(directory)
    document = json.loads(file.read_text())
    del document["modules"]
    file.write_text(json.dumps(document))
    with pytest.raises(RecrlIOError, match=damaged(file)) as caught:
        load_checkpoint(directory)
    assert "missing key 'modules'" in str(caught.value)


@pytest.mark.parametrize("name", ["state.safetensors", "state.json"])
def test_missing_file_is_named(tmp_path, name):
    directory = tmp_path / "ckpt"
    write_small(directory)
    file = directory / name
    file.unlink()
    with pytest.raises(RecrlIOError, match=damaged(file)) as caught:
        load_checkpoint(directory)
    assert "the file is missing" in str(caught.value)


def test_shape_or_dtype_mismatch_is_named(tmp_path):
    directory = tmp_path / "ckpt"
    write_small(directory)
    file = directory / "state.safetensors"
    wider = torch.nn.Linear(4, 5)
    with pytest.raises(RecrlIOError, match=damaged(file)) as caught:
        load_checkpoint(directory, TrainingState(modules={"model": wider}))
    assert "tensor 'weight': saved (3, 4) torch.float32, the module has (5, 4)" in str(caught.value)

    double = torch.nn.Linear(4, 3).double()
    before = double.weight.detach().clone()
    with pytest.raises(RecrlIOError, match=damaged(file)) as caught:
        load_checkpoint(directory, TrainingState(modules={"model": double}))
    assert "torch.float64" in str(caught.value)
    assert torch.equal(double.weight, before)

    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.Adam([model.weight])
    state = TrainingState(modules={"model": model}, optimizers={"adam": optimizer})
    with pytest.raises(RecrlIOError, match=damaged(directory / "state.json")) as caught:
        load_checkpoint(directory, state)
    assert "parameter groups of sizes [1], saved [2]" in str(caught.value)

    extra = torch.nn.Sequential(torch.nn.Linear(4, 3))
    with pytest.raises(RecrlIOError, match=damaged(file)) as caught:
        load_checkpoint(directory, TrainingState(modules={"model": extra}))
    assert "keys missing from the checkpoint ['0.bias', '0.weight']" in str(caught.value)


def test_format_one_without_checksums_loads(tmp_path):
    directory = tmp_path / "ckpt"
    saved = write_small(directory)
    stored = len(load_checkpoint(directory).replay_buffers["main"])
    assert stored > 0
    make_format_one(directory)
    model, state = fresh_state()
    checkpoint = load_checkpoint(directory, state)
    assert checkpoint.metadata == {"step": 1}
    assert_same_tensors(model.state_dict(), saved.state_dict())
    assert len(checkpoint.replay_buffers["main"]) == stored


def test_damaged_current_falls_back_to_retired(tmp_path, caplog):
    directory = tmp_path / "current"
    write_marked(directory, 2)
    # A retired copy, as a write killed between its last rename and its cleanup leaves.
    retired = tmp_path / ".current.old"
    write_marked(tmp_path / "older", 1)
    (tmp_path / "older").rename(retired)

    file = directory / "state.safetensors"
    file.write_bytes(file.read_bytes()[:-4])
    with pytest.raises(RecrlIOError, match=damaged(file)):
        load_checkpoint(directory)
    with caplog.at_level(logging.WARNING, logger="recrl.checkpoint"):
        checkpoint = load_checkpoint(directory, fall_back=True)
    assert checkpoint.metadata["mark"] == 1
    assert checkpoint.path == retired
    assert str(file) in caplog.text
    assert f"reading the previous checkpoint {retired} instead" in caplog.text

    # A damaged retired copy gives the error about the current one.
    (retired / "state.json").write_text("[")
    with pytest.raises(RecrlIOError, match=damaged(file)):
        load_checkpoint(directory, fall_back=True)


def test_damaged_phase_record_is_not_skipped(tmp_path):
    model = torch.nn.Linear(2, 2)
    checkpoints = RunCheckpoints(tmp_path / "run", every=1)
    checkpoints.phase("seed0/stage", TrainingState(modules={"model": model})).complete()
    file = checkpoints.phase_folder("seed0/stage") / "state.safetensors"
    file.unlink()

    resumed = RunCheckpoints(tmp_path / "run", every=1, resume=True)
    phase = resumed.phase("seed0/stage", TrainingState(modules={"model": model}))
    assert phase.completed
    with pytest.raises(RecrlIOError, match=damaged(file)):
        phase.restore_completed()


TINY_TSCAC = {
    "run": {"methods": ["rcpo"], "behaviour_steps": 2, "lambda_sweep": []},
    "common": {**SMALL_TSCAC, "hidden_dims": [8], "steps": 2, "evaluation_interval": 1},
}


def test_cli_resume_reports_damaged_record(prepared, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(TINY_TSCAC))
    out = tmp_path / "run"
    arguments = ["tscac", "--data", str(prepared.path), "--config", str(config)]
    arguments += ["--out", str(out), "--no-progress"]
    assert main(arguments) == 0
    command = [sys.executable, "-m", "recrl.cli", *arguments]

    phases = out / "checkpoints" / "phases"
    tensor_file = phases / "seed0--behaviour" / "state.safetensors"
    json_file = phases / "seed0--rcpo--train" / "state.json"
    original_json = json_file.read_text()
    tensor_file.write_bytes(tensor_file.read_bytes()[:-100])
    json_file.write_text("not json")
    # The run reads every record's state.json first, so the JSON error comes first.
    for file in (json_file, tensor_file):
        resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True)
        assert resumed.returncode == 2, resumed.stderr
        assert f"error: {file}: damaged checkpoint" in resumed.stderr
        assert f"Delete the folder {file.parent}" in resumed.stderr
        assert "Traceback" not in resumed.stderr
        json_file.write_text(original_json)
