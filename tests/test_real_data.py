"""Readers and prepare on the real KuaiRand and Taobao files, checked against pandas.

The expected figures are computed here with pandas, independently of recrl's Rust path, and
against the published descriptions of the files (row, user and video counts). KuaiRand: Gao et
al., CIKM 2022, CC BY-SA 4.0. Taobao UserBehavior: Zhu et al., KDD 2018, Alibaba Tianchi.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recrl.data import PrepareOptions, prepare, read_kuairand, read_otto, read_taobao

from .conftest import require_shared

pd = pytest.importorskip("pandas")

GAP_MS = 30 * 60 * 1000


def expected_episodes(frame: pd.DataFrame, split: np.ndarray) -> int:
    """Count episodes: cuts at user change, a gap above 30 minutes, or a split boundary."""
    users = frame["user"].to_numpy()
    times = frame["time"].to_numpy()
    cut = np.ones(len(frame), dtype=bool)
    cut[1:] = (users[1:] != users[:-1]) | (np.diff(times) > GAP_MS) | (split[1:] != split[:-1])
    return int(cut.sum())


def time_split(times: np.ndarray) -> np.ndarray:
    ordered = np.sort(times)
    first = ordered[int(round(0.6 * len(times)))]
    second = ordered[int(round(0.8 * len(times)))]
    return (times >= first).astype(np.uint8) + (times >= second).astype(np.uint8)


def test_kuairand_likehate_log(tmp_path: Path) -> None:
    source = require_shared("kuairand")
    raw = pd.read_csv(source / "standard_likehate_kcore15.tsv", sep="\t")
    assert len(raw) == 41_828
    assert raw["user_id"].nunique() == 664
    assert raw["video_id"].nunique() == 9_359

    log = read_kuairand(source)
    assert len(log) == len(raw)
    np.testing.assert_array_equal(log.user_ids, raw["user_id"].to_numpy())
    assert log.responses["is_like"].mean() == pytest.approx(raw["label"].mean())
    assert log.responses["is_hate"].mean() == pytest.approx(1 - raw["label"].mean())
    assert log.counts["duration_zero"] == int((raw["duration_ms"] <= 0).sum())
    assert log.user_features is not None
    assert len(log.user_features.ids) == 27_285
    missing_onehot4 = int((log.user_features.categorical["onehot_feat4"] == 0).sum())
    assert missing_onehot4 == 874
    assert log.item_features is not None
    assert int(np.isnan(log.item_features.numeric["video_duration"]).sum()) == 239

    dataset = prepare(log, tmp_path / "kuairand")
    ordered = raw.assign(row=np.arange(len(raw))).sort_values(
        ["user_id", "time_ms", "row"], kind="stable"
    )
    np.testing.assert_array_equal(dataset["source_rows"], ordered["row"].to_numpy())
    split = time_split(ordered["time_ms"].to_numpy())
    np.testing.assert_array_equal(dataset["split"], split)
    frame = pd.DataFrame({"user": ordered["user_id"], "time": ordered["time_ms"]})
    assert dataset.manifest["episodes"] == expected_episodes(frame, split)
    assert dataset.manifest["users"] == 664
    assert dataset.manifest["items"] == 9_359
    assert dataset.manifest["sources"][0]["name"] == "standard_likehate_kcore15.tsv"
    assert len(dataset.manifest["sources"][0]["sha256"]) == 64
    click = dataset.reward_names.index("is_click")
    assert dataset["rewards"][:, click].mean() == pytest.approx(raw["is_click"].mean(), rel=1e-6)
    matched = dataset.manifest["features"]["user"]["matched_rows"]
    expected_matched = int(raw["user_id"].isin(log.user_features.ids).sum())
    assert matched == expected_matched


def test_taobao_user_behavior(tmp_path: Path) -> None:
    path = require_shared("taobao", "UserBehavior_head_814users.csv")
    raw = pd.read_csv(path, header=None, names=["user", "item", "category", "behavior", "ts"])
    assert len(raw) == 84_287
    assert raw["user"].nunique() == 814

    # Sessions over every row, 30-minute gap: the figure published with the file is 14,096.
    everything = read_taobao(path, keep_outside_period=True)
    assert everything.counts["sessions"] == 14_096

    log = read_taobao(path)
    inside = raw[(raw["ts"] >= 1511539200) & (raw["ts"] < 1512316800)]
    assert log.counts["rows_outside_period"] == len(raw) - len(inside) == 35
    frame = inside.assign(row=np.arange(len(inside))).sort_values(
        ["user", "ts", "row"], kind="stable"
    )
    new_session = (frame["user"].diff() != 0) | (frame["ts"].diff() > 30 * 60)
    frame = frame.assign(
        session=new_session.cumsum(),
        click=frame["behavior"].isin(["cart", "fav", "buy"]),
        purchase=frame["behavior"] == "buy",
    )
    steps = frame.groupby(["session", "item"], sort=False)[["click", "purchase"]].max()
    assert len(log) == len(steps)
    assert log.responses["click"].mean() == pytest.approx(steps["click"].mean())
    assert log.responses["purchase"].mean() == pytest.approx(steps["purchase"].mean())
    assert (log.responses["purchase"] <= log.responses["click"]).all()

    dataset = prepare(log, tmp_path / "taobao")
    assert dataset.manifest["users"] == 814
    assert dataset.manifest["episodes"] >= log.counts["sessions"]
    ends = dataset["episode_starts"][1:] - 1
    assert (dataset["terminals"][ends] + dataset["truncations"][ends] == 1).all()


def test_otto_fixture() -> None:
    path = require_shared("otto", "otto_train_sessions_first10_last10.jsonl")
    log = read_otto(path)
    assert len(log) == 862
    assert len(np.unique(log.user_ids)) == 20


def test_kuairand_split_by_user(tmp_path: Path) -> None:
    source = require_shared("kuairand")
    dataset = prepare(read_kuairand(source), tmp_path / "by-user", PrepareOptions(split="user"))
    per_user = pd.DataFrame({"user": dataset["user_ids"], "split": dataset["split"]})
    assert (per_user.groupby("user")["split"].nunique() == 1).all()
