"""The KuaiRand watch-time kernel against the plain-Python reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recrl import _core
from recrl.errors import ShapeError

from .reference import kuairand as reference

# Durations of zero and negative play times are common; some values span int64.
milliseconds = st.one_of(
    st.integers(-5, 5), st.integers(0, 10**6), st.integers(-(2**63), 2**63 - 1)
)
pairs = st.lists(st.tuples(milliseconds, milliseconds), max_size=50)


@settings(max_examples=300, deadline=None)
@given(pairs)
def test_watch_responses_match_reference(rows: list[tuple[int, int]]) -> None:
    play = [p for p, _ in rows]
    duration = [d for _, d in rows]
    actual = _core.kuairand_watch_responses(
        np.asarray(play, dtype=np.int64), np.asarray(duration, dtype=np.int64)
    )
    expected = reference.watch_responses(play, duration)
    for name in ("watch_time", "watch_ratio", "duration_zero"):
        assert actual[name].dtype == expected[name].dtype, name  # type: ignore[attr-defined]
        np.testing.assert_array_equal(actual[name], expected[name], err_msg=name)
    assert actual["negative_play_rows"] == expected["negative_play_rows"]
    assert actual["zero_duration_rows"] == expected["zero_duration_rows"]


def test_watch_responses_long_input_matches_reference() -> None:
    # Several parallel chunks of 65,536 rows.
    rng = np.random.default_rng(7)
    play = rng.integers(-1_000, 100_000, size=200_003)
    duration = rng.integers(-10, 100_000, size=200_003)
    actual = _core.kuairand_watch_responses(play, duration)
    expected = reference.watch_responses(play.tolist(), duration.tolist())
    for name in ("watch_time", "watch_ratio", "duration_zero"):
        np.testing.assert_array_equal(actual[name], expected[name], err_msg=name)
    assert actual["negative_play_rows"] == expected["negative_play_rows"]


def test_watch_responses_length_mismatch() -> None:
    with pytest.raises(ShapeError, match="duration_ms"):
        _core.kuairand_watch_responses(np.zeros(2, dtype=np.int64), np.zeros(1, dtype=np.int64))
