"""The synthetic KuaiRand-layout generator against the published KuaiRand-27K aggregates."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np
import pytest

from recrl.data import PrepareOptions, SyntheticConfig, prepare, read_kuairand
from recrl.data import write_synthetic_kuairand as synthesise
from recrl.errors import InvalidArgumentError

from .conftest import shared_data

# Published KuaiRand-27K standard-log aggregates, used when the statistics folder is absent.
PUBLISHED = {"ctr": 0.37871774118515583, "sessions_per_exposure": 150.16 / 11811.6}


def published_ctr() -> float:
    path = shared_data() / "kuairand-27k-stats" / "log_standard_basic_stats.csv"
    if not path.exists():
        return PUBLISHED["ctr"]
    with path.open(encoding="utf-8-sig") as handle:
        return float(next(csv.DictReader(handle))["ctr"])


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthesise(SyntheticConfig(rows=200_000, seed=1), tmp_path_factory.mktemp("synthetic"))


def test_rows_are_in_time_order(synthetic: Path) -> None:
    log = read_kuairand(synthetic)
    assert (np.diff(log.timestamps) >= 0).all()


def test_click_rate_matches_published(synthetic: Path) -> None:
    log = read_kuairand(synthetic)
    assert log.responses["is_click"].mean() == pytest.approx(published_ctr(), abs=0.03)


def test_gap_bins_match_published(synthetic: Path) -> None:
    log = read_kuairand(synthetic)
    order = np.lexsort((log.timestamps, log.user_ids))
    users, times = log.user_ids[order], log.timestamps[order]
    same_user = users[1:] == users[:-1]
    gaps_s = np.diff(times)[same_user] / 1000
    assert (gaps_s >= 0).all()
    # Published: 82.8% of consecutive exposures within a second, 1.26% above 30 minutes.
    assert (gaps_s < 1).mean() == pytest.approx(0.828, abs=0.01)
    assert (gaps_s >= 1800).mean() == pytest.approx(0.0126, abs=0.003)


def test_sessions_follow_gap_distribution(synthetic: Path, tmp_path: Path) -> None:
    dataset = prepare(read_kuairand(synthetic), tmp_path / "prepared")
    # Sessions per exposure at a 30-minute gap: 1.26% of gaps cut, plus one start per user.
    expected = 0.0126 * len(dataset) + dataset.manifest["users"]
    assert dataset.manifest["episodes"] == pytest.approx(expected, rel=0.15)


def test_popular_videos_concentrate_exposures(synthetic: Path) -> None:
    log = read_kuairand(synthetic)
    counts = np.sort(np.bincount(log.item_ids))[::-1]
    videos = SyntheticConfig(rows=200_000).rows // 10
    top_share = counts[: videos // 100].sum() / counts.sum()
    assert top_share == pytest.approx(0.441, abs=0.05)


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    def digest(folder: Path) -> list[str]:
        return [hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())]

    first = synthesise(SyntheticConfig(rows=5_000, seed=3), tmp_path / "a")
    second = synthesise(SyntheticConfig(rows=5_000, seed=3), tmp_path / "b")
    third = synthesise(SyntheticConfig(rows=5_000, seed=4), tmp_path / "c")
    assert digest(first) == digest(second)
    assert digest(first) != digest(third)


def test_tiny_log_prepares(tmp_path: Path) -> None:
    folder = synthesise(SyntheticConfig(rows=30, seed=0), tmp_path / "tiny")
    dataset = prepare(read_kuairand(folder), tmp_path / "prepared", PrepareOptions(episodes="user"))
    assert len(dataset) == 30


def test_invalid_size_is_rejected() -> None:
    with pytest.raises(InvalidArgumentError, match="rows: expected a positive integer, got 0"):
        SyntheticConfig(rows=0)
    with pytest.raises(InvalidArgumentError, match=r"users: expected at most rows \(10\)"):
        SyntheticConfig(rows=10, users=100)


def test_fewer_rows_than_default_users(tmp_path: Path) -> None:
    folder = synthesise(SyntheticConfig(rows=5, seed=0), tmp_path / "five")
    log = read_kuairand(folder)
    assert len(log) == 5
    assert len(set(log.user_ids.tolist())) == 5
