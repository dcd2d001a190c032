"""Prepared datasets: validation before writing, atomic output, statistics from training only."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from recrl.data import (
    FeatureTable,
    InteractionLog,
    PrepareOptions,
    SyntheticConfig,
    load_prepared,
    prepare,
    read_kuairand,
    write_synthetic_kuairand,
)
from recrl.data import dataset as dataset_module
from recrl.errors import InvalidArgumentError, InvalidDataError, RecrlIOError


def make_log(rows: int = 40, *, seed: int = 0) -> InteractionLog:
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(4, dtype=np.int64), rows // 4)
    times = np.tile(np.arange(rows // 4, dtype=np.int64) * 60_000, 4)
    return InteractionLog(
        name="table",
        user_ids=users,
        item_ids=rng.integers(0, 10, rows).astype(np.int64),
        timestamps=times,
        responses={"click": rng.integers(0, 2, rows).astype(np.float32)},
        numeric_features={
            "f1": rng.normal(size=rows),
            "f2": rng.normal(size=rows),
        },
    )


def test_nan_feature_fails_before_writing(tmp_path: Path) -> None:
    log = make_log()
    log.numeric_features["f2"][17] = np.nan
    out = tmp_path / "prepared"
    with pytest.raises(InvalidDataError, match=r"column f2, row 17"):
        prepare(log, out)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("value", [np.inf, -np.inf, 1e300])
def test_infinite_or_absurd_feature_is_named(tmp_path: Path, value: float) -> None:
    log = make_log()
    log.numeric_features["f1"][3] = value
    with pytest.raises(InvalidDataError, match=r"column f1, row 3"):
        prepare(log, tmp_path / "prepared")


@pytest.mark.parametrize("value", [np.inf, -1e300])
def test_bad_side_feature_is_named(tmp_path: Path, value: float) -> None:
    log = make_log()
    followers = np.array([3.0, np.nan, value, 5.0])
    log.user_features = FeatureTable(ids=np.arange(4, dtype=np.int64), numeric={"fans": followers})
    with pytest.raises(InvalidDataError, match=r"column fans, row 2: value"):
        prepare(log, tmp_path / "prepared")


def test_missing_side_features_pass(tmp_path: Path) -> None:
    # NaN marks an unknown value in a side table, even in every row of a column.
    log = make_log()
    log.user_features = FeatureTable(
        ids=np.arange(4, dtype=np.int64),
        numeric={"fans": np.full(4, np.nan), "age": np.array([20.0, np.nan, 30.0, 40.0])},
    )
    dataset = prepare(log, tmp_path / "prepared")
    stats = {entry["name"]: entry for entry in dataset.manifest["features"]["user"]["numeric"]}
    assert stats["fans"]["missing"] == 40
    assert stats["age"]["missing"] == 10


def test_nan_response_cannot_be_imputed(tmp_path: Path) -> None:
    log = make_log()
    log.responses["click"][5] = np.nan
    options = PrepareOptions(on_invalid="impute")
    with pytest.raises(InvalidDataError, match=r"column click, row 5.*cannot be imputed"):
        prepare(log, tmp_path / "prepared", options)


def test_drop_counts_dropped_rows(tmp_path: Path) -> None:
    log = make_log()
    log.numeric_features["f2"][17] = np.nan
    log.numeric_features["f1"][3] = np.inf
    dataset = prepare(log, tmp_path / "prepared", PrepareOptions(on_invalid="drop"))
    assert len(dataset) == 38
    assert dataset.manifest["counts"]["dropped_rows"] == 2
    assert 17 not in dataset["source_rows"].tolist()


@pytest.mark.parametrize("value", [-1, 4_102_444_800_000, 1_700_000_000_000_000])
def test_timestamp_outside_1970_to_2100_is_named(tmp_path: Path, value: int) -> None:
    log = make_log()
    log.timestamps[9] = value
    with pytest.raises(InvalidDataError, match=r"timestamps, row 9 .*unit"):
        prepare(log, tmp_path / "prepared", PrepareOptions(on_invalid="impute"))
    dataset = prepare(log, tmp_path / "prepared", PrepareOptions(on_invalid="drop"))
    assert len(dataset) == 39
    assert dataset.manifest["counts"]["invalid_timestamps"] == 1
    assert 9 not in dataset["source_rows"].tolist()


def test_impute_counts_and_uses_training_mean(tmp_path: Path) -> None:
    log = make_log()
    log.numeric_features["f2"][17] = np.nan
    dataset = prepare(log, tmp_path / "prepared", PrepareOptions(on_invalid="impute"))
    assert dataset.manifest["counts"]["invalid_f2"] == 1
    row = int(np.flatnonzero(dataset["source_rows"] == 17)[0])
    assert dataset["row_numeric"][row, 1] == 0.0  # 0 after standardisation is the mean
    stats = dataset.manifest["features"]["row_numeric"][1]
    assert stats["name"] == "f2"
    assert stats["imputed"] == 1


def test_statistics_come_from_training_split(tmp_path: Path) -> None:
    log = make_log()
    # Make the later (validation and test) rows huge: training statistics must ignore them.
    late = log.timestamps >= np.sort(log.timestamps)[int(0.6 * len(log))]
    log.numeric_features["f1"][late] = 1000.0
    dataset = prepare(log, tmp_path / "prepared")
    train_rows = dataset.split_rows("train")
    train_values = log.numeric_features["f1"][dataset["source_rows"][train_rows]]
    stats = dataset.manifest["features"]["row_numeric"][0]
    assert stats["mean"] == pytest.approx(float(train_values.mean()))
    assert stats["std"] == pytest.approx(float(train_values.std()))


def test_vocabulary_comes_from_training_split(tmp_path: Path) -> None:
    log = make_log()
    late = log.timestamps >= np.sort(log.timestamps)[int(0.6 * len(log))]
    log.item_ids[late] = 999  # an item seen only after the training window
    dataset = prepare(log, tmp_path / "prepared")
    assert 999 not in dataset["item_vocabulary"].tolist()
    assert (dataset["items"][dataset["item_ids"] == 999] == 0).all()


def test_dataset_arrays_are_consistent(tmp_path: Path) -> None:
    dataset = prepare(make_log(), tmp_path / "prepared", PrepareOptions(history_length=3))
    starts = dataset["episode_starts"]
    assert starts[0] == 0
    assert starts[-1] == len(dataset)
    ends = starts[1:] - 1
    assert (dataset["terminals"][ends] + dataset["truncations"][ends] == 1).all()
    assert (dataset["next_index"][ends] == -1).all()
    inner = np.setdiff1d(np.arange(len(dataset)), ends)
    assert (dataset["next_index"][inner] == inner + 1).all()
    keys = np.stack([dataset["user_ids"], dataset["timestamps"]], axis=1)
    assert (np.diff(keys[:, 0]) >= 0).all()
    same_user = np.diff(keys[:, 0]) == 0
    assert (np.diff(keys[:, 1])[same_user] >= 0).all()
    # History slot 0 of row t is the item of row t - 1 of the same user, never row t's own.
    first_of_user = np.r_[True, ~same_user]
    rows = np.flatnonzero(~first_of_user)
    assert (dataset["history"][rows, 0] == dataset["items"][rows - 1]).all()
    assert (dataset["history"][first_of_user] == 0).all()


def test_same_input_gives_identical_bytes(tmp_path: Path) -> None:
    def digest(folder: Path) -> dict[str, str]:
        return {
            p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())
        }

    first = prepare(make_log(seed=3), tmp_path / "a").path
    second = prepare(make_log(seed=3), tmp_path / "b").path
    assert digest(first) == digest(second)


def test_existing_output_is_kept_without_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "prepared"
    prepare(make_log(), out)
    with pytest.raises(RecrlIOError, match="already exists"):
        prepare(make_log(seed=1), out)


def test_overwrite_refuses_foreign_folder(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(RecrlIOError, match="not a prepared dataset"):
        prepare(make_log(), out, overwrite=True)
    assert (out / "notes.txt").read_text() == "keep me"


def test_output_has_default_permissions(tmp_path: Path) -> None:
    dataset = prepare(make_log(), tmp_path / "prepared")
    assert dataset.path.stat().st_mode & 0o077 != 0
    assert (dataset.path / "manifest.json").stat().st_mode & 0o044 != 0


def test_observations_accept_mask_reject_floats(tmp_path: Path) -> None:
    dataset = prepare(make_log(), tmp_path / "prepared")
    mask = np.asarray(dataset["split"]) == 0
    states = dataset.observations(mask)
    assert len(states["items"]) == int(mask.sum())
    with pytest.raises(ValueError, match="integer row numbers or a boolean mask"):
        dataset.observations(np.array([0.5]))


def test_crash_while_writing_keeps_previous(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "prepared"
    previous = prepare(make_log(), out)
    previous_rewards = np.array(previous["rewards"])
    calls = {"count": 0}
    syncs = dataset_module._files.BackgroundWriter
    original = syncs.write

    def failing_write(self: object, path: Path, write: object) -> None:
        calls["count"] += 1
        if calls["count"] == 5:
            raise OSError("disk full")
        original(self, path, write)  # type: ignore[arg-type]

    monkeypatch.setattr(syncs, "write", failing_write)
    with pytest.raises(OSError, match="disk full"):
        prepare(make_log(seed=9), out, overwrite=True)
    reloaded = load_prepared(out)
    np.testing.assert_array_equal(reloaded["rewards"], previous_rewards)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prepared"]


@pytest.mark.parametrize(
    ("module", "name", "failing_call"),
    [
        # The sync of the third array file fails on the sync thread.
        (dataset_module._files.os, "fsync", 3),
        # The fourth array fails while it is written on the writer thread.
        (dataset_module.np, "save", 4),
    ],
)
def test_failed_background_file_keeps_previous(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: object, name: str, failing_call: int
) -> None:
    out = tmp_path / "prepared"
    previous_rewards = np.array(prepare(make_log(), out)["rewards"])
    calls = {"count": 0}
    original = getattr(module, name)

    def failing(*arguments: object) -> None:
        calls["count"] += 1
        if calls["count"] == failing_call:
            raise OSError("input/output error")
        original(*arguments)

    monkeypatch.setattr(module, name, failing)
    with pytest.raises(OSError, match="input/output error"):
        prepare(make_log(seed=9), out, overwrite=True)
    np.testing.assert_array_equal(load_prepared(out)["rewards"], previous_rewards)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prepared"]


def test_manifest_records_sources_and_options(tmp_path: Path) -> None:
    dataset = prepare(make_log(), tmp_path / "prepared", PrepareOptions(split="user", seed=4))
    manifest = json.loads((dataset.path / "manifest.json").read_text())
    assert manifest["options"]["split"] == "user"
    assert manifest["split"]["kind"] == "user"
    assert manifest["reward_names"] == ["click"]
    assert manifest["arrays"]["rewards"] == {"dtype": "float32", "shape": [40, 1]}
    assert sum(manifest["split"]["rows"].values()) == 40


def test_manifest_hashes_each_source_file(tmp_path: Path) -> None:
    # A log of a few MiB, read in several blocks by the hash, and two small feature files.
    source = tmp_path / "kuairand"
    write_synthetic_kuairand(SyntheticConfig(rows=40_000, seed=3), source)
    dataset = prepare(read_kuairand(source), tmp_path / "prepared")
    recorded = {entry["name"]: entry["sha256"] for entry in dataset.manifest["sources"]}
    expected = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in source.iterdir()}
    assert recorded == expected
    assert (source / "log_standard_synthetic.csv").stat().st_size > 2 << 20


def test_user_split_keeps_users_whole(tmp_path: Path) -> None:
    log = make_log(400)
    log.user_ids[:] = np.repeat(np.arange(40, dtype=np.int64), 10)
    dataset = prepare(log, tmp_path / "prepared", PrepareOptions(split="user"))
    for user in np.unique(dataset["user_ids"]):
        assert len(np.unique(dataset["split"][dataset["user_ids"] == user])) == 1


def test_observations_assemble_states(tmp_path: Path) -> None:
    dataset = prepare(make_log(), tmp_path / "prepared", PrepareOptions(history_length=4))
    states = dataset.observations(np.array([0, 5]))
    assert states["numeric"].shape == (2, 2)
    assert states["numeric"].dtype == np.float32
    assert states["history"].shape == (2, 4)
    assert states["items"].dtype == np.int64


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("episodes", "day"),
        ("split", "random"),
        ("on_invalid", "ignore"),
        ("split_fractions", (0.5, 0.5, 0.5)),
        ("session_gap_minutes", 0.0),
        ("history_length", -1),
        ("history_length", 100_000_000),
        ("session_gap_minutes", float("nan")),
        ("seed", -1),
    ],
)
def test_invalid_options_are_rejected(field: str, value: object) -> None:
    with pytest.raises(InvalidArgumentError, match=field):
        PrepareOptions(**{field: value})  # type: ignore[arg-type]


def test_timestamps_in_1970_are_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = make_log()
    with caplog.at_level("WARNING", logger="recrl.data.dataset"):
        prepare(log, tmp_path / "seconds")
    assert "most timestamps fall before 1990" in caplog.text
    caplog.clear()
    log.timestamps += 1_700_000_000_000
    with caplog.at_level("WARNING", logger="recrl.data.dataset"):
        prepare(log, tmp_path / "milliseconds")
    assert "before 1990" not in caplog.text


def test_constant_training_feature_keeps_unit_scale(tmp_path: Path) -> None:
    # Over 6 training rows NumPy's std of 0.1 is 1.4e-17, not 0. Dividing by it would scale the
    # other splits' 0.5 to about 3e16.
    assert np.full(6, 0.1).std() > 0
    log = make_log(40)
    dataset = prepare(log, tmp_path / "probe")
    train = np.asarray(dataset["split"]) == 0
    order = np.asarray(dataset["source_rows"])
    log.numeric_features["f1"][order[train]] = 0.1
    log.numeric_features["f1"][order[~train]] = 0.5
    prepared = prepare(log, tmp_path / "prepared")
    stats = prepared.manifest["features"]["row_numeric"][0]
    assert stats["name"] == "f1"
    assert stats["std"] == 1.0
    values = np.asarray(prepared["row_numeric"])[:, 0]
    np.testing.assert_allclose(values[train], 0.0, atol=1e-6)
    np.testing.assert_allclose(values[~train], 0.4, atol=1e-6)


def test_constant_side_feature_keeps_unit_scale() -> None:
    # Five training rows of one video whose log1p(1920) has a std of 8.9e-16 in NumPy.
    value = np.log1p(1920.0)
    assert np.full(5, value).std() > 0
    values = np.array([np.nan, value, value, np.log1p(1080.0)])
    stats = dataset_module._weighted_statistics(
        values, np.array([0, 2, 3, 0]), np.array([0, 2, 3, 2]), "server_height", True
    )
    assert stats["std"] == 1.0
    assert stats["mean"] == pytest.approx(value)
    assert dataset_module.training_moments(np.full(5, value)) == (pytest.approx(value), 1.0)
    # A real spread, however small against the mean, is kept.
    assert dataset_module.training_moments(np.array([1e6, 1e6 + 1e-3]))[1] == pytest.approx(5e-4)
