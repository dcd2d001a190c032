"""Sharded prepare: equality with the unsharded dataset, user partition, bounded memory, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recrl import _core, data
from recrl.data.partition import LogSource
from recrl.data.shards import ShardedDataset, prepare_sharded, time_cuts
from recrl.errors import InvalidArgumentError, InvalidDataError, RecrlIOError
from tests.reference import partition as reference

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("synthetic")
    return data.write_synthetic_kuairand(data.SyntheticConfig(rows=6000, users=12), folder)


@pytest.fixture(scope="module")
def unsharded(synthetic: Path, tmp_path_factory: pytest.TempPathFactory) -> data.PreparedDataset:
    out = tmp_path_factory.mktemp("unsharded") / "prepared"
    return data.prepare(data.read_kuairand(synthetic), out)


def _sharded(source: Path, out: Path, shards: int) -> ShardedDataset:
    return prepare_sharded(LogSource("kuairand", source), out, shards)


def test_one_shard_equals_unsharded(
    synthetic: Path, unsharded: data.PreparedDataset, tmp_path: Path
) -> None:
    sharded = _sharded(synthetic, tmp_path / "one", 1)
    assert len(sharded.shards) == 1
    shard = sharded.shards[0]
    assert sorted(shard) == sorted(unsharded)
    for name in unsharded:
        np.testing.assert_array_equal(shard[name], unsharded[name], err_msg=name)
        np.testing.assert_array_equal(sharded[name], unsharded[name], err_msg=name)
        assert shard[name].dtype == unsharded[name].dtype, name
    assert shard.manifest["features"] == unsharded.manifest["features"]
    assert shard.manifest["split"] == unsharded.manifest["split"]
    assert shard.manifest["vocabularies"] == unsharded.manifest["vocabularies"]


def _by_source_row(dataset: data.PreparedDataset, name: str) -> np.ndarray:
    order = np.argsort(np.asarray(dataset["source_rows"]), kind="stable")
    return np.asarray(dataset[name])[order]


def test_three_shards_match_unsharded(
    synthetic: Path, unsharded: data.PreparedDataset, tmp_path: Path
) -> None:
    sharded = _sharded(synthetic, tmp_path / "three", 3)
    assert len(sharded.shards) == 3
    assert len(sharded) == len(unsharded)
    assert sharded.manifest["episodes"] == unsharded.manifest["episodes"]
    assert sharded.manifest["users"] == unsharded.manifest["users"]
    assert sharded.manifest["items"] == unsharded.manifest["items"]
    assert sharded.manifest["vocabularies"] == unsharded.manifest["vocabularies"]
    assert sharded.manifest["split"] == unsharded.manifest["split"]
    assert sorted(sharded) == sorted(unsharded)
    exact = [
        "user_ids", "item_ids", "timestamps", "users", "items", "rewards", "split", "terminals",
        "truncations", "history", "user_rows", "item_rows", "row_categorical", "context_is_rand",
    ]  # fmt: skip
    for name in exact:
        np.testing.assert_array_equal(
            _by_source_row(sharded, name), _by_source_row(unsharded, name), err_msg=name
        )
    np.testing.assert_allclose(
        _by_source_row(sharded, "row_numeric"), _by_source_row(unsharded, "row_numeric"), atol=1e-5
    )
    for name in ("user_vocabulary", "item_vocabulary", "user_numeric", "item_numeric"):
        np.testing.assert_array_equal(sharded[name], unsharded[name], err_msg=name)

    # Each step's successor is the same source row in both datasets.
    def next_source(dataset: data.PreparedDataset) -> np.ndarray:
        source_rows = np.asarray(dataset["source_rows"])
        following = np.asarray(dataset["next_index"])
        successor = np.where(following >= 0, source_rows[following], -1)
        return successor[np.argsort(source_rows, kind="stable")]

    np.testing.assert_array_equal(next_source(sharded), next_source(unsharded))
    starts = np.asarray(sharded["episode_starts"])
    assert starts[0] == 0
    assert starts[-1] == len(sharded)
    assert len(starts) == sharded.manifest["episodes"] + 1


def test_users_in_exactly_one_shard(synthetic: Path, tmp_path: Path) -> None:
    sharded = _sharded(synthetic, tmp_path / "users", 4)
    seen: set[int] = set()
    for entry, shard in zip(sharded.manifest["shards"], sharded.shards, strict=True):
        users = set(np.unique(shard["user_ids"]).tolist())
        assert not users & seen
        seen |= users
        buckets = _core.shard_of_users(np.asarray(shard["user_ids"]), 4)
        assert (buckets == entry["bucket"]).all()
    assert len(seen) == sharded.manifest["users"]

    # Tables equal in every shard are stored once, as hard links.
    for name in ("item_vocabulary", "item_numeric", "user_categorical"):
        inodes = {(shard.path / f"{name}.npy").stat().st_ino for shard in sharded.shards}
        assert len(inodes) == 1, name


def test_observations_gather_across_shards(
    synthetic: Path, unsharded: data.PreparedDataset, tmp_path: Path
) -> None:
    sharded = _sharded(synthetic, tmp_path / "gather", 3)
    rows = np.array([0, len(sharded) - 1, 17, 3000, 17], dtype=np.int64)
    gathered = sharded.observations(rows)
    # Same observations as building from the concatenated arrays.
    user_rows = sharded["user_rows"][rows]
    np.testing.assert_array_equal(gathered["users"], sharded["users"][rows])
    np.testing.assert_array_equal(gathered["history"], sharded["history"][rows])
    np.testing.assert_array_equal(
        gathered["numeric"][:, : sharded["user_numeric"].shape[1]],
        sharded["user_numeric"][user_rows],
    )
    with pytest.raises(InvalidArgumentError, match="rows"):
        sharded.observations(np.array([len(sharded)], dtype=np.int64))


def test_user_split_matches_unsharded(synthetic: Path, tmp_path: Path) -> None:
    options = data.PrepareOptions(split="user", episodes="user")
    whole = data.prepare(data.read_kuairand(synthetic), tmp_path / "whole", options)
    sharded = prepare_sharded(LogSource("kuairand", synthetic), tmp_path / "user", 2, options)
    for name in ("split", "users", "terminals", "truncations"):
        np.testing.assert_array_equal(
            _by_source_row(sharded, name), _by_source_row(whole, name), err_msg=name
        )


def test_table_text_categories_match(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    n = 400
    users = rng.integers(0, 30, n)
    lines = ["user,item,time,click,price,colour"]
    colours = ["red", "green", "blue", "", "teal"]
    for row in range(n):
        colour = colours[int(rng.integers(0, len(colours)))]
        price = "" if row % 37 == 0 else f"{rng.normal(10, 3):.3f}"
        lines.append(f"{users[row]},{rng.integers(0, 50)},{row * 1000},{row % 2},{price},{colour}")
    path = tmp_path / "log.csv"
    path.write_text("\n".join(lines) + "\n")
    schema = data.TableSchema(
        user="user",
        item="item",
        time="time",
        responses=("click",),
        numeric_features=("price",),
        categorical_features=("colour",),
    )

    options = data.PrepareOptions(on_invalid="impute")
    whole = data.prepare(data.read_table(path, schema), tmp_path / "whole", options)
    source = LogSource("table", path, schema=schema)
    sharded = prepare_sharded(source, tmp_path / "sharded", 3, options)

    for name in ("row_categorical", "users", "items", "split"):
        np.testing.assert_array_equal(
            _by_source_row(sharded, name), _by_source_row(whole, name), err_msg=name
        )
    np.testing.assert_allclose(
        _by_source_row(sharded, "row_numeric"), _by_source_row(whole, "row_numeric"), atol=1e-5
    )
    assert sharded.manifest["features"] == whole.manifest["features"] | {
        "row_numeric": sharded.manifest["features"]["row_numeric"]
    }
    assert sharded.manifest["counts"] == whole.manifest["counts"]
    one = prepare_sharded(source, tmp_path / "one", 1, options)
    for name in whole:
        np.testing.assert_array_equal(one[name], whole[name], err_msg=name)


def test_otto_and_taobao_sources(tmp_path: Path) -> None:
    otto = tmp_path / "otto.jsonl"
    sessions = []
    for session in range(20):
        events = [
            {"aid": (session * 7 + k) % 13, "ts": 1_000 * (session * 10 + k), "type": "clicks"}
            for k in range(1 + session % 4)
        ]
        sessions.append(json.dumps({"session": session, "events": events}))
    otto.write_text("\n".join(sessions) + "\n")
    whole = data.prepare(data.read_otto(otto), tmp_path / "otto-whole")
    sharded = prepare_sharded(LogSource("otto", otto), tmp_path / "otto-sharded", 3)
    for name in ("source_rows", "users", "items", "terminals"):
        np.testing.assert_array_equal(
            np.sort(sharded[name]) if name == "source_rows" else _by_source_row(sharded, name),
            np.sort(whole[name]) if name == "source_rows" else _by_source_row(whole, name),
            err_msg=name,
        )

    taobao = tmp_path / "taobao.csv"
    rows = []
    for user in range(8):
        for step in range(6):
            kind = ("pv", "cart", "buy")[step % 3]
            rows.append(f"{user},{step % 4},{step},{kind},{1511539200 + 600 * step + user}")
    taobao.write_text("\n".join(rows) + "\n")
    whole = data.prepare(data.read_taobao(taobao), tmp_path / "taobao-whole")
    sharded = prepare_sharded(LogSource("taobao", taobao), tmp_path / "taobao-sharded", 2)
    for name in ("users", "items", "rewards", "split"):
        np.testing.assert_array_equal(
            _by_source_row(sharded, name), _by_source_row(whole, name), err_msg=name
        )
    assert sharded.manifest["counts"] == whole.manifest["counts"]


def test_bad_shard_counts(synthetic: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="shards: expected an integer of at least 1"):
        _sharded(synthetic, tmp_path / "zero", 0)
    with pytest.raises(InvalidArgumentError, match=r"shards: expected at most 12 .* got 13"):
        _sharded(synthetic, tmp_path / "many", 13)
    assert not (tmp_path / "many").exists()
    assert list(tmp_path.iterdir()) == []
    _sharded(synthetic, tmp_path / "kept", 2)
    with pytest.raises(RecrlIOError, match="already exists"):
        _sharded(synthetic, tmp_path / "kept", 2)


def test_invalid_value_leaves_nothing(tmp_path: Path) -> None:
    lines = ["user,item,time,click,f2"]
    lines += [f"{row % 5},{row},{row},1,{'nan' if row == 17 else row}" for row in range(40)]
    path = tmp_path / "log.csv"
    path.write_text("\n".join(lines) + "\n")
    schema = data.TableSchema(
        user="user", item="item", time="time", responses=("click",), numeric_features=("f2",)
    )
    with pytest.raises(InvalidDataError, match="column f2, row 17"):
        prepare_sharded(LogSource("table", path, schema=schema), tmp_path / "out", 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.csv"]


def test_cli_prepare_shards(synthetic: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli"
    command = [sys.executable, "-m", "recrl.cli", "prepare", "kuairand", "--source"]
    result = subprocess.run(
        [*command, str(synthetic), "--out", str(out), "--shards", "0"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "shards: expected an integer of at least 1, got 0" in result.stderr
    result = subprocess.run(
        [*command, str(synthetic), "--out", str(out), "--shards", "2"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert isinstance(data.load_prepared(out), ShardedDataset)


# VmHWM is the peak RSS of this process image alone: ru_maxrss would also count the parent's
# peak, which Linux carries over into the child at exec.
_PEAK_SCRIPT = """
import sys
from pathlib import Path
from recrl.cli import main
status = main(sys.argv[1:])
status_lines = Path("/proc/self/status").read_text().splitlines()
print("peak_kib", next(x for x in status_lines if x.startswith("VmHWM")).split()[1])
sys.exit(status)
"""


def _peak_rss_mib(arguments: list[str]) -> float:
    result = subprocess.run(
        [sys.executable, "-c", _PEAK_SCRIPT, *arguments],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    line = next(x for x in result.stdout.splitlines() if x.startswith("peak_kib"))
    return int(line.split()[1]) / 1024


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs Linux /proc")
def test_sharded_peak_memory_is_bounded(tmp_path: Path) -> None:
    source = data.write_synthetic_kuairand(
        data.SyntheticConfig(rows=500_000, users=500, seed=1), tmp_path / "raw"
    )
    common = ["prepare", "kuairand", "--source", str(source)]
    sharded = _peak_rss_mib([*common, "--out", str(tmp_path / "sharded"), "--shards", "16"])
    whole = _peak_rss_mib([*common, "--out", str(tmp_path / "whole")])
    baseline = _peak_rss_mib(["info", str(tmp_path / "whole")])
    # The rows' share of the peak shrinks with the shard size; the interpreter's does not.
    assert sharded - baseline < 0.5 * (whole - baseline), (sharded, whole, baseline)


@settings(max_examples=50, deadline=None)
@given(users=st.lists(INT64, max_size=50), shards=st.integers(1, 40))
def test_shard_of_users_matches_reference(users: list[int], shards: int) -> None:
    result = _core.shard_of_users(np.array(users, dtype=np.int64), shards)
    assert result.tolist() == [reference.shard_of(user, shards) for user in users]


@settings(max_examples=30, deadline=None)
@given(
    users=st.lists(st.one_of(st.integers(-3, 3), INT64), max_size=30),
    shards=st.integers(1, 5),
    files=st.integers(1, 3),
)
def test_partition_csv_matches_reference(
    users: list[int], shards: int, files: int, tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder = tmp_path_factory.mktemp("partition")
    inputs = []
    bounds = np.linspace(0, len(users), files + 1).astype(int)
    for index in range(files):
        part = users[bounds[index] : bounds[index + 1]]
        path = folder / f"in-{index}.csv"
        path.write_text("user,value\n" + "".join(f"{u},v{k}\n" for k, u in enumerate(part)))
        inputs.append(path)
    counts = _core.partition_csv(inputs, folder, user_column="user", shards=shards)
    expected = reference.partition_rows(users, shards)
    for shard in range(shards):
        rows = np.fromfile(folder / f"shard-{shard:05d}.rows", dtype="<i8").tolist()
        assert rows == expected[shard]
        lines = (folder / f"shard-{shard:05d}.csv").read_text().splitlines()
        assert lines[0] == "user,value"
        assert [int(line.split(",")[0]) for line in lines[1:]] == [users[r] for r in rows]
        assert counts["rows"][shard] == len(rows)
        assert counts["users"][shard] == len({users[r] for r in rows})


@settings(max_examples=60, deadline=None)
@given(
    parts=st.lists(st.lists(INT64, max_size=20), min_size=1, max_size=5),
    train=st.floats(0, 1),
)
def test_time_cuts_match_sorted_concatenation(parts: list[list[int]], train: float) -> None:
    validation = (1 - train) / 2
    options = data.PrepareOptions(split_fractions=(train, validation, 1 - train - validation))
    arrays = [np.sort(np.array(part, dtype=np.int64)) for part in parts]
    ordered = np.sort(np.concatenate(arrays))
    expected = []
    for fraction in (train, train + validation):
        index = int(round(fraction * len(ordered)))
        expected.append(int(ordered[index]) if index < len(ordered) else None)
    assert list(time_cuts(arrays, options)) == expected


def test_partition_rejects_bad_input(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("user,value\n1,a\nbad,b\n")
    with pytest.raises(ValueError, match="line 3, column user"):
        _core.partition_csv([path], tmp_path, user_column="user", shards=2)
    with pytest.raises(ValueError, match='column "id" not found'):
        _core.partition_csv([path], tmp_path, user_column="id", shards=2)
    with pytest.raises(ValueError, match="shards: expected a count in 1..=4096, got 0"):
        _core.shard_of_users(np.zeros(1, dtype=np.int64), 0)


def test_training_commands_read_shards(tmp_path: Path) -> None:
    import torch
    import yaml

    from recrl.cli import main
    from recrl.rmtl.data import TaskData
    from recrl.tscac.data import Transitions

    source = data.write_synthetic_kuairand(
        data.SyntheticConfig(rows=4000, users=20, seed=1), tmp_path / "log"
    )
    whole = data.prepare(data.read_kuairand(source), tmp_path / "whole")
    one = _sharded(source, tmp_path / "one", 1)
    two = _sharded(source, tmp_path / "two", 2)

    # The loaders see the same tensors through one shard as through the unsharded dataset.
    spec = Transitions.build_spec(one, 20)
    assert spec == Transitions.build_spec(whole, 20)
    assert torch.equal(Transitions(one, spec).numeric, Transitions(whole, spec).numeric)
    task_one, task_whole = TaskData.load(one), TaskData.load(whole)
    for name, values in task_whole.features.items():
        assert torch.equal(task_one.features[name], values), name
    assert torch.equal(task_one.sessions, task_whole.sessions)

    tscac_config = tmp_path / "tscac.yaml"
    tscac_config.write_text(
        yaml.safe_dump(
            {
                "run": {"behaviour_steps": 2, "lambda_sweep": [0.1], "lambda_sweep_steps": 1},
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
        )
    )
    tscac = ["tscac", "--data", str(two.path), "--config", str(tscac_config)]
    assert main([*tscac, "--out", str(tmp_path / "tscac")]) == 0
    assert (tmp_path / "tscac" / "table.md").is_file()

    rmtl_config = tmp_path / "rmtl.yaml"
    rmtl_config.write_text(
        yaml.safe_dump(
            {
                "backbone": {"embedding_dim": 4, "bottom_dims": [8], "tower_dims": [8]},
                "pretrain": {"epochs": 1, "batch_size": 256},
                "critic": {"epochs": 1, "batch_size": 256, "embedding_dim": 4, "bottom_dims": [8]},
                "finetune": {"epochs": 1, "batch_size": 256},
            }
        )
    )
    rmtl = ["rmtl", "--data", str(two.path), "--backbone", "esmm", "--config", str(rmtl_config)]
    assert main([*rmtl, "--out", str(tmp_path / "rmtl"), "--threads", "1", "--no-plots"]) == 0
    assert (tmp_path / "rmtl" / "table.md").is_file()


@pytest.mark.parametrize(
    ("kind", "parts"),
    [
        ("kuairand", ("kuairand", "standard_likehate_kcore15.tsv")),
        ("taobao", ("taobao", "UserBehavior_head_814users.csv")),
        ("otto", ("otto", "otto_train_sessions_first10_last10.jsonl")),
    ],
)
def test_real_log_one_shard_equal(kind: str, parts: tuple[str, str], tmp_path: Path) -> None:
    from tests.conftest import require_shared

    path = require_shared(*parts)
    readers = {"kuairand": data.read_kuairand, "taobao": data.read_taobao, "otto": data.read_otto}
    whole = data.prepare(readers[kind](path), tmp_path / "whole")
    one = prepare_sharded(LogSource(kind, path), tmp_path / "one", 1)
    for name in whole:
        np.testing.assert_array_equal(one.shards[0][name], whole[name], err_msg=name)
    three = prepare_sharded(LogSource(kind, path), tmp_path / "three", 3)
    assert three.manifest["episodes"] == whole.manifest["episodes"]
    for name in ("users", "items", "split", "terminals", "truncations", "history"):
        np.testing.assert_array_equal(
            _by_source_row(three, name), _by_source_row(whole, name), err_msg=name
        )
