"""A synthetic log generator in the layout of the official KuaiRand files.

The generated folder contains ``log_standard_synthetic.csv`` (the 19 official columns, rows in
time order),
``user_features_synthetic.csv`` and ``video_features_basic_synthetic.csv``, so every reader and
command that accepts a KuaiRand ``data/`` folder accepts it. Marginals follow the published
aggregates of the full KuaiRand-27K standard log (Gao et al., CIKM 2022): click rate per tab and
tab shares, the distribution of gaps between a user's consecutive exposures (so about 150
sessions per user at a 30-minute gap, at the real per-user volume), the spread of exposures per
user (p90 / p50 = 2.86), and the concentration of exposures on popular videos (the top 1% of
videos take 44% of exposures). Rates of like, follow, comment, forward and hate, and the
distribution of play time are assumptions, not published figures; they are set in
:class:`SyntheticConfig`.

Responses depend on hidden user and video factors, so a policy can learn from the log.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from recrl import _core
from recrl.data.readers import KUAIRAND_LOG_COLUMNS
from recrl.errors import InvalidArgumentError

__all__ = ["SyntheticConfig", "write_synthetic_kuairand"]

logger = logging.getLogger(__name__)

# Tab shares of exposures and click rates per tab 0..14 in the KuaiRand-27K standard log.
_TAB_EXPOSURES = np.array([
    63923841, 215925023, 9949649, 957605, 24510543, 429129, 5268393, 114704, 478050, 60678,
    23722, 217754, 332086, 72217, 14991,
], dtype=np.float64)  # fmt: skip
_TAB_CTR = np.array([
    0.1160, 0.4436, 0.4242, 0.0211, 0.5445, 0.2365, 0.1777, 0.4414, 0.0405, 0.9923, 0.9997,
    0.0006, 0.1224, 0.3631, 0.0003,
])  # fmt: skip
# Gaps between consecutive exposures of a user: bin edges in seconds and counts per bin.
_GAP_EDGES_S = np.array([0.0, 1.0, 10.0, 60.0, 300.0, 1800.0, 7200.0, 86400.0])
_GAP_COUNTS = np.array([266750346, 5175602, 17753904, 21057055, 7444288, 2186071, 1883834], float)
_TOP1_SHARE = 0.441  # share of exposures on the top 1% of videos
_START_MS = 1649347200000  # 2022-04-08 00:00 in UTC+8
_UTC8_MS = 8 * 3600 * 1000


@dataclass(frozen=True)
class SyntheticConfig:
    """Sizes and assumed rates of the synthetic log.

    Attributes:
        rows: number of exposures.
        users: number of users; defaults to one per 2,000 rows (at least 10, at most ``rows``).
        videos: number of videos; defaults to one per 10 rows (at least 100).
        seed: seed of every random draw; the same seed gives byte-identical files.
        like_rate, follow_rate, comment_rate, forward_rate, hate_rate: mean probability of each
            interaction per exposure (assumed).
        zero_duration_rate: share of videos whose duration is recorded as 0.
    """

    rows: int
    users: int | None = None
    videos: int | None = None
    seed: int = 0
    like_rate: float = 0.02
    follow_rate: float = 0.002
    comment_rate: float = 0.003
    forward_rate: float = 0.001
    hate_rate: float = 0.0005
    zero_duration_rate: float = 0.01

    def __post_init__(self) -> None:
        if self.rows < 1:
            raise InvalidArgumentError(f"rows: expected a positive integer, got {self.rows}")
        if self.seed < 0:
            raise InvalidArgumentError(f"seed: expected a non-negative integer, got {self.seed}")
        for name in ("users", "videos"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise InvalidArgumentError(f"{name}: expected a positive integer, got {value}")
        if self.users is not None and self.users > self.rows:
            raise InvalidArgumentError(
                f"users: expected at most rows ({self.rows}), since every user has at least one "
                f"row; got {self.users}"
            )


def _zipf_exponent(videos: int) -> float:
    """Find the Zipf exponent whose top 1% of videos takes the published share of exposures."""
    ranks = np.arange(1, videos + 1, dtype=np.float64)
    top = max(1, videos // 100)
    low, high = 0.0, 3.0
    for _ in range(40):
        middle = (low + high) / 2
        weights = ranks**-middle
        share = weights[:top].sum() / weights.sum()
        low, high = (middle, high) if share < _TOP1_SHARE else (low, middle)
    return (low + high) / 2


def _logistic(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return 1.0 / (1.0 + np.exp(-x))


def write_synthetic_kuairand(config: SyntheticConfig, out: str | Path) -> Path:
    """Generate a synthetic KuaiRand-layout folder at ``out`` and return its path.

    Each file is written atomically. Memory grows with ``config.rows`` (about 200 bytes a row).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(config.seed)
    rows = config.rows
    users = config.users or min(rows, max(10, rows // 2000))
    videos = config.videos or max(100, rows // 10)

    # Exposures per user: log-normal spread with the published p90 / p50 ratio, at least 1 each.
    sigma = np.log(24587.4 / 8594.0) / 1.2816
    weights = rng.lognormal(0.0, sigma, users)
    per_user = 1 + rng.multinomial(rows - users, weights / weights.sum())
    user_of_row = np.repeat(np.arange(users, dtype=np.int64), per_user)

    # Times: each user starts somewhere in the first week; gaps drawn from the published bins.
    bins = rng.choice(len(_GAP_COUNTS), size=rows, p=_GAP_COUNTS / _GAP_COUNTS.sum())
    gaps_s = rng.uniform(_GAP_EDGES_S[bins], _GAP_EDGES_S[bins + 1])
    starts = np.concatenate([[0], np.cumsum(per_user)[:-1]])
    gaps_s[starts] = rng.uniform(0, 7 * 86400, users)
    times_ms = _START_MS + np.cumsum((gaps_s * 1000).astype(np.int64))
    times_ms -= np.repeat(
        times_ms[starts] - (_START_MS + (gaps_s[starts] * 1000).astype(np.int64)), per_user
    )

    # Videos by Zipf popularity; hidden factors for users and videos drive the responses.
    exponent = _zipf_exponent(videos)
    popularity = np.arange(1, videos + 1, dtype=np.float64) ** -exponent
    video_of_row = rng.choice(videos, size=rows, p=popularity / popularity.sum())
    user_factors = rng.normal(0, 1, (users, 4))
    video_factors = rng.normal(0, 0.5, (videos, 4))
    user_bias = rng.normal(0, 0.8, users)
    affinity = np.einsum("nd,nd->n", user_factors[user_of_row], video_factors[video_of_row])

    tab = rng.choice(len(_TAB_EXPOSURES), size=rows, p=_TAB_EXPOSURES / _TAB_EXPOSURES.sum())
    tab_logit = np.log(_TAB_CTR / (1 - _TAB_CTR))
    click_probability = _logistic(tab_logit[tab] + user_bias[user_of_row] + affinity)
    is_click = rng.random(rows) < click_probability

    duration_ms = np.round(rng.lognormal(np.log(25866.0), 1.0, videos)).astype(np.int64)
    duration_ms[rng.random(videos) < config.zero_duration_rate] = 0
    row_duration = duration_ms[video_of_row]
    watched_share = np.clip(rng.lognormal(-0.4 + 0.5 * affinity, 0.6), 0, 3)
    play_ms = np.where(
        is_click,
        np.round(np.maximum(row_duration, 5000) * watched_share),
        np.round(rng.uniform(0, 3000, rows)),
    ).astype(np.int64)
    long_view = np.where(row_duration > 0, play_ms > 0.8 * row_duration, play_ms > 18000)

    def interaction(rate: float, slope: float) -> npt.NDArray[np.int64]:
        base = np.log(rate / (1 - rate))
        return (rng.random(rows) < _logistic(base + slope * affinity) * is_click / 0.38).astype(
            np.int64
        )

    local = times_ms + _UTC8_MS
    days = local // 86_400_000
    date = _dates(days)
    hourmin = ((local // 3_600_000) % 24) * 100
    columns = {
        "user_id": user_of_row,
        "video_id": video_of_row.astype(np.int64),
        "date": date,
        "hourmin": hourmin,
        "time_ms": times_ms,
        "is_click": is_click.astype(np.int64),
        "is_like": interaction(config.like_rate, 0.8),
        "is_follow": interaction(config.follow_rate, 0.8),
        "is_comment": interaction(config.comment_rate, 0.5),
        "is_forward": interaction(config.forward_rate, 0.5),
        "is_hate": (rng.random(rows) < config.hate_rate * _logistic(-affinity) * 2).astype(
            np.int64
        ),
        "long_view": long_view.astype(np.int64),
        "play_time_ms": play_ms,
        "duration_ms": row_duration,
        "profile_stay_time": np.where(rng.random(rows) < 0.01, rng.integers(1, 60000, rows), 0),
        "comment_stay_time": np.where(rng.random(rows) < 0.02, rng.integers(1, 60000, rows), 0),
        "is_profile_enter": (rng.random(rows) < 0.01).astype(np.int64),
        "is_rand": np.zeros(rows, dtype=np.int64),
        "tab": tab.astype(np.int64),
    }
    # Rows in time order, as a serving log is written, so readers must sort by user themselves.
    time_order = np.lexsort((user_of_row, times_ms))
    columns = {name: values[time_order] for name, values in columns.items()}
    log_path = out / "log_standard_synthetic.csv"
    _core.write_csv(
        log_path,
        [
            (name, np.ascontiguousarray(columns[name], dtype=np.int64))
            for name in KUAIRAND_LOG_COLUMNS
        ],
    )

    _write_user_features(rng, users, out / "user_features_synthetic.csv")
    _write_video_features(rng, videos, duration_ms, out / "video_features_basic_synthetic.csv")
    logger.info("wrote %d synthetic rows (%d users, %d videos) to %s", rows, users, videos, out)
    return out


def _dates(days: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Turn days since the epoch into YYYYMMDD integers."""
    calendar = days.astype("datetime64[D]")
    years = calendar.astype("datetime64[Y]").astype(np.int64) + 1970
    months = calendar.astype("datetime64[M]").astype(np.int64) % 12 + 1
    day = (calendar - calendar.astype("datetime64[M]")).astype(np.int64) + 1
    dates: npt.NDArray[np.int64] = years * 10000 + months * 100 + day
    return dates


def _write_user_features(rng: np.random.Generator, users: int, path: Path) -> None:
    ids = np.arange(users, dtype=np.int64)
    columns: list[tuple[str, npt.NDArray[Any]]] = [
        ("user_id", ids),
        ("user_active_degree", rng.integers(1, 5, users)),
        ("is_lowactive_period", rng.integers(0, 2, users)),
        ("is_live_streamer", rng.integers(0, 2, users)),
        ("is_video_author", rng.integers(0, 2, users)),
    ]
    for name in ("follow_user_num", "fans_user_num", "friend_user_num", "register_days"):
        values = np.round(rng.lognormal(4.0, 1.5, users)).astype(np.int64)
        columns.append((name, values))
        columns.append((f"{name}_range", np.searchsorted([10, 100, 1000, 10000], values)))
    for index in range(18):
        feature = rng.integers(0, 10, users).astype(np.float64)
        if index in (4, 12):
            feature[rng.random(users) < 0.03] = np.nan  # the official file has gaps here too
        columns.append((f"onehot_feat{index}", feature))
    _core.write_csv(path, [(name, np.ascontiguousarray(values)) for name, values in columns])


def _write_video_features(
    rng: np.random.Generator, videos: int, duration_ms: npt.NDArray[np.int64], path: Path
) -> None:
    duration = duration_ms.astype(np.float64)
    duration[rng.random(videos) < 0.03] = np.nan  # missing durations, as in the official file
    columns: list[tuple[str, npt.NDArray[Any]]] = [
        ("video_id", np.arange(videos, dtype=np.int64)),
        ("author_id", rng.integers(0, max(1, videos // 5), videos)),
        ("video_type", rng.integers(1, 3, videos)),
        ("upload_type", rng.integers(1, 10, videos)),
        ("visible_status", rng.integers(0, 2, videos)),
        ("video_duration", duration),
        ("server_width", rng.choice([720.0, 1080.0], videos)),
        ("server_height", rng.choice([1280.0, 1920.0], videos)),
        ("music_id", rng.integers(0, max(1, videos // 3), videos)),
        ("music_type", rng.integers(1, 12, videos)),
        ("tag", rng.integers(1, 60, videos)),
    ]
    _core.write_csv(path, [(name, np.ascontiguousarray(values)) for name, values in columns])
