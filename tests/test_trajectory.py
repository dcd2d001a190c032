"""The trajectory kernels of recrl._core against hand-computed cases and the Python reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recrl import _core
from recrl.errors import InvalidArgumentError, ShapeError

from .reference import trajectory as reference

HUGE = 2**62


def int64(values: list[int]) -> np.ndarray:
    return np.asarray(values, dtype=np.int64)


def test_stable_order_ties_follow_file_order() -> None:
    # One user, rows in file order (t=30, C), (t=10, A), (t=20, B), (t=20, D).
    items = np.array(["C", "A", "B", "D"])
    for _ in range(3):
        order = _core.stable_order(int64([7, 7, 7, 7]), int64([30, 10, 20, 20]))
        assert "".join(items[order]) == "ABDC"


def test_flagged_terminals_make_one_step_episodes() -> None:
    episodes = _core.build_episodes(
        int64([1, 1, 1]), int64([1, 2, 3]), episode_ends=np.ones(3, dtype=np.uint8)
    )
    assert episodes["episode_starts"].tolist() == [0, 1, 2, 3]
    assert episodes["terminals"].tolist() == [1, 1, 1]
    assert episodes["truncations"].tolist() == [0, 0, 0]
    assert episodes["next_index"].tolist() == [-1, -1, -1]


def test_session_gap_cuts_and_terminates() -> None:
    users = int64([1, 1, 1, 2])
    times = int64([0, 1_000, 2_000_000, 5])
    episodes = _core.build_episodes(users, times, session_gap_ms=1_800_000)
    assert episodes["episode_starts"].tolist() == [0, 2, 3, 4]
    assert episodes["terminals"].tolist() == [0, 1, 1, 1]
    assert episodes["next_index"].tolist() == [1, -1, -1, -1]


def test_user_active_at_window_end_is_truncated() -> None:
    users = int64([1, 1, 2])
    times = int64([0, 990, 10])
    episodes = _core.build_episodes(users, times, window_end_ms=1_000, active_within_ms=100)
    assert episodes["truncations"].tolist() == [0, 1, 0]
    assert episodes["terminals"].tolist() == [0, 0, 1]


def test_history_never_holds_current_item() -> None:
    windows = _core.history_windows(int64([1, 1, 1, 2, 2]), int64([5, 6, 7, 8, 9]), 2)
    assert windows.tolist() == [[0, 0], [5, 0], [6, 5], [0, 0], [8, 0]]


def test_huge_ids_survive_exactly() -> None:
    users = int64([6221888200042590280, 6221888200042590280, -(2**63)])
    items = int64([110378652104, HUGE, 2**63 - 1])
    order = _core.stable_order(users, int64([2, 1, 0]))
    assert order.tolist() == [2, 1, 0]
    codes, vocabulary = _core.encode_ids(items, items)
    assert vocabulary.tolist() == sorted(items.tolist())
    assert vocabulary[codes - 1].tolist() == items.tolist()


def test_mismatched_lengths_name_argument() -> None:
    with pytest.raises(ShapeError, match="times: expected length 2, got length 1"):
        _core.stable_order(int64([1, 2]), int64([1]))


def test_unsorted_rows_name_row() -> None:
    with pytest.raises(InvalidArgumentError, match="row 1"):
        _core.build_episodes(int64([2, 1]), int64([0, 0]))


def test_negative_gap_is_rejected() -> None:
    with pytest.raises(InvalidArgumentError, match="session_gap_ms"):
        _core.build_episodes(int64([1]), int64([0]), session_gap_ms=-1)


def test_out_of_range_order_is_rejected() -> None:
    with pytest.raises(InvalidArgumentError, match="index 5 is out of range for 2 rows"):
        _core.take_int64(int64([1, 2]), int64([0, 5]))


def test_empty_input_gives_empty_outputs() -> None:
    empty = int64([])
    assert _core.stable_order(empty, empty).tolist() == []
    episodes = _core.build_episodes(empty, empty)
    assert episodes["episode_starts"].tolist() == [0]
    assert _core.history_windows(empty, empty, 3).shape == (0, 3)


# Random logs: few users and times so that ties and one-row users are common; ids span int64.
ids = st.one_of(st.integers(0, 4), st.integers(-(2**63), 2**63 - 1))
logs = st.integers(0, 60).flatmap(
    lambda n: st.tuples(
        st.lists(ids, min_size=n, max_size=n),
        st.lists(st.integers(0, 50), min_size=n, max_size=n),
        st.lists(st.integers(0, 2), min_size=n, max_size=n),
    )
)


@settings(max_examples=200, deadline=None)
@given(logs)
def test_stable_order_matches_reference(log: tuple[list[int], list[int], list[int]]) -> None:
    users, times, _ = log
    assert _core.stable_order(int64(users), int64(times)).tolist() == reference.stable_order(
        users, times
    )


@settings(max_examples=300, deadline=None)
@given(
    logs,
    st.one_of(st.none(), st.integers(0, 20)),
    st.booleans(),
    st.booleans(),
    st.integers(0, 30),
    st.one_of(st.none(), st.integers(0, 100)),
)
def test_build_episodes_matches_reference(
    log: tuple[list[int], list[int], list[int]],
    gap: int | None,
    use_segments: bool,
    use_flags: bool,
    active_within: int,
    window_end: int | None,
) -> None:
    users, times, flags = log
    order = reference.stable_order(users, times)
    users = [users[i] for i in order]
    times = [times[i] for i in order]
    segments = [time // 20 for time in times] if use_segments else None
    ends = [flag % 2 for flag in flags] if use_flags else None
    expected = reference.build_episodes(
        users, times, segments, ends, gap, window_end, active_within
    )
    actual = _core.build_episodes(
        int64(users),
        int64(times),
        segments=None if segments is None else np.asarray(segments, dtype=np.uint8),
        episode_ends=None if ends is None else np.asarray(ends, dtype=np.uint8),
        session_gap_ms=gap,
        window_end_ms=window_end,
        active_within_ms=active_within,
    )
    for name, values in expected.items():
        assert actual[name].tolist() == values, name
    lengths = np.diff(actual["episode_starts"])
    assert (lengths >= 1).all()
    ends_flagged = actual["terminals"] + actual["truncations"]
    assert ends_flagged.sum() == len(lengths)


@settings(max_examples=200, deadline=None)
@given(logs, st.integers(0, 6))
def test_history_windows_match_reference(
    log: tuple[list[int], list[int], list[int]], length: int
) -> None:
    users, times, _ = log
    items = [(u ^ t) % 1000 for u, t in zip(users, times)]
    expected = reference.history_windows(users, items, length)
    actual = _core.history_windows(int64(users), int64(items), length)
    np.testing.assert_array_equal(actual, expected)


@settings(max_examples=200, deadline=None)
@given(st.lists(ids, max_size=40), st.lists(ids, max_size=40))
def test_encode_ids_matches_reference(source: list[int], values: list[int]) -> None:
    codes, vocabulary = _core.encode_ids(int64(source), int64(values))
    expected_codes, expected_vocabulary = reference.encode_ids(source, values)
    assert codes.tolist() == expected_codes
    assert vocabulary.tolist() == expected_vocabulary
    assert _core.count_distinct(int64(values)) == len(set(values))


@st.composite
def side_tables(draw: st.DrawFn) -> tuple[list[int], list[int], list[bool], bool]:
    table = draw(st.lists(ids, unique=True, max_size=30))
    entity_pool = table + draw(st.lists(ids, max_size=5))
    size = draw(st.sampled_from([0, 1, 40, 70_000]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    picks = rng.integers(0, len(entity_pool), size) if entity_pool else []
    entities = [entity_pool[k] for k in picks]
    train = (rng.random(len(entities)) < 0.6).tolist()
    return table, entities, train, draw(st.booleans())


@settings(max_examples=100, deadline=None)
@given(side_tables())
def test_side_rows_matches_reference(case: tuple[list[int], list[int], list[bool], bool]) -> None:
    table, entities, train, share_counts = case
    shared_counts = None
    if share_counts:
        # Counts as another part of the log would add: some table rows in use, some not.
        rng = np.random.default_rng(len(table))
        shared_counts = (
            rng.integers(0, 3, len(table) + 1).tolist(),
            rng.integers(0, 3, len(table) + 1).tolist(),
        )
    side = _core.side_rows(
        int64(table),
        int64(entities),
        np.array(train, dtype=bool),
        *(() if shared_counts is None else map(int64, shared_counts)),
    )
    expected = reference.side_rows(table, entities, train, shared_counts)
    assert {key: np.asarray(value).tolist() for key, value in side.items()} == expected


def test_side_rows_by_hand() -> None:
    # Table rows 30, 10, 20 in file order. The log uses ids 20, 99 (no row) and 30, not 10.
    side = _core.side_rows(
        int64([30, 10, 20]), int64([20, 99, 30, 20]), np.array([True, True, False, False])
    )
    assert side["rows"].tolist() == [1, 0, 2, 1]
    assert side["used"].tolist() == [2, 0]
    assert side["train_counts"].tolist() == [1, 1, 0]
    assert side["all_counts"].tolist() == [1, 2, 1]
    assert side["matched"] == 3


def test_side_rows_rejects_bad_input() -> None:
    duplicates = "expected unique ids, got 3 ids of which 2 are distinct"
    with pytest.raises(InvalidArgumentError, match=duplicates):
        _core.side_rows(int64([1, 2, 1]), int64([1]), np.array([True]))
    with pytest.raises(ShapeError, match="all_counts"):
        _core.side_rows(int64([1]), int64([1]), np.array([True]), int64([0, 1]), int64([1]))
    with pytest.raises(InvalidArgumentError, match="together"):
        _core.side_rows(int64([1]), int64([1]), np.array([True]), int64([0, 1]))
    with pytest.raises(InvalidArgumentError, match="all_counts: count -2 at index 1 is negative"):
        _core.side_rows(int64([1]), int64([1]), np.array([True]), int64([0, 1]), int64([0, -2]))


# Larger logs than above, so that the parallel chunks of the Rust passes (65,536 rows each) and
# several scatter parts are used; runs of one user and shuffled times make ties and unsorted
# groups common. Users are random int64 ids or a dense range.
@st.composite
def long_logs(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = draw(st.sampled_from([0, 1, 2, 70_000, 140_001]))
    seed = draw(st.integers(0, 2**32 - 1))
    users_count = draw(st.sampled_from([1, 3, 1000, 100_000]))
    rng = np.random.default_rng(seed)
    if draw(st.booleans()):
        pool = rng.integers(-(2**63), 2**63 - 1, size=users_count, dtype=np.int64, endpoint=True)
    else:
        # Densely numbered users, which the sort counts by id offset rather than by rank.
        first = draw(st.sampled_from([0, -700, 2**63 - 100_000]))
        pool = first + rng.permutation(users_count).astype(np.int64)
    users = pool[rng.integers(0, users_count, size=n)]
    times = np.sort(rng.integers(0, 5_000, size=n)).astype(np.int64)
    if draw(st.booleans()):
        times = rng.permutation(times)
    flags = (rng.random(n) < 0.05).astype(np.uint8)
    return users, times, flags


@settings(max_examples=40, deadline=None)
@given(
    logs,
    st.one_of(st.none(), st.integers(0, 20)),
    st.booleans(),
    st.booleans(),
    st.integers(0, 30),
    st.one_of(st.none(), st.integers(0, 100)),
)
def test_sort_episodes_matches_reference(
    log: tuple[list[int], list[int], list[int]],
    gap: int | None,
    use_segments: bool,
    use_flags: bool,
    active_within: int,
    window_end: int | None,
) -> None:
    users, times, flags = log
    segments = [time // 20 for time in times] if use_segments else None
    ends = [flag % 2 for flag in flags] if use_flags else None
    expected = reference.sort_episodes(users, times, segments, ends, gap, window_end, active_within)
    actual = _core.sort_episodes(
        int64(users),
        int64(times),
        segments=None if segments is None else np.asarray(segments, dtype=np.uint8),
        episode_ends=None if ends is None else np.asarray(ends, dtype=np.uint8),
        session_gap_ms=gap,
        window_end_ms=window_end,
        active_within_ms=active_within,
    )
    assert sorted(actual) == sorted(expected)
    for name, values in expected.items():
        assert actual[name].tolist() == values, name


@settings(max_examples=15, deadline=None)
@given(long_logs(), st.one_of(st.none(), st.integers(0, 50)), st.booleans())
def test_sort_episodes_long_logs_match_numpy(
    log: tuple[np.ndarray, np.ndarray, np.ndarray], gap: int | None, use_flags: bool
) -> None:
    users, times, flags = log
    segments = (times // 2_000).astype(np.uint8)
    actual = _core.sort_episodes(
        users,
        times,
        segments=segments,
        episode_ends=flags if use_flags else None,
        session_gap_ms=gap,
        active_within_ms=25,
        placement=True,
    )
    order = np.lexsort((np.arange(len(users)), times, users))
    # The placement the sort made moves columns as indexing by the order does.
    moved = actual.pop("placement").take_columns_int64([times, np.arange(len(users))])
    np.testing.assert_array_equal(moved, np.stack([times[order], order], axis=1).reshape(-1, 2))
    np.testing.assert_array_equal(actual["order"], order)
    np.testing.assert_array_equal(actual["users"], users[order])
    np.testing.assert_array_equal(actual["times"], times[order])
    np.testing.assert_array_equal(actual["segments"], segments[order])
    expected = reference.build_episodes_vectorised(
        users[order],
        times[order],
        segments[order],
        flags[order] if use_flags else None,
        gap,
        None,
        25,
    )
    for name, values in expected.items():
        np.testing.assert_array_equal(actual[name], values, err_msg=name)


@settings(max_examples=100, deadline=None)
@given(
    st.integers(0, 4).flatmap(
        lambda width: st.integers(0, 30).flatmap(
            lambda rows: st.tuples(
                st.lists(
                    st.lists(st.floats(allow_nan=True, width=32), min_size=rows, max_size=rows),
                    min_size=width,
                    max_size=width,
                ),
                st.lists(st.integers(0, max(rows - 1, 0)), max_size=40 if rows and width else 0),
            )
        )
    )
)
def test_take_columns_matches_reference(case: tuple[list[list[float]], list[int]]) -> None:
    columns, order = case
    arrays = [np.asarray(column, dtype=np.float32) for column in columns]
    actual = _core.take_columns_float32(arrays, int64(order))
    expected = reference.take_columns(columns, order)
    assert actual.shape == (len(order), len(columns))
    np.testing.assert_array_equal(actual, expected)


def test_take_columns_rejects_out_of_range() -> None:
    with pytest.raises(InvalidArgumentError, match="order"):
        _core.take_columns_float32([np.zeros(3, dtype=np.float32)], int64([3]))
    with pytest.raises(ShapeError, match=r"columns\[1\]"):
        _core.take_columns_float32(
            [np.zeros(3, dtype=np.float32), np.zeros(2, dtype=np.float32)], int64([0])
        )


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.booleans()), max_size=60))
def test_count_codes_matches_bincount(rows: list[tuple[int, bool]]) -> None:
    codes = int64([code for code, _ in rows])
    mask = np.array([flag for _, flag in rows], dtype=bool)
    masked, every = _core.count_codes(codes, mask, 6)
    np.testing.assert_array_equal(every, np.bincount(codes, minlength=7))
    np.testing.assert_array_equal(masked, np.bincount(codes[mask], minlength=7))


def test_count_codes_rejects_bad_input() -> None:
    with pytest.raises(InvalidArgumentError, match="code 7 is outside 0..=6"):
        _core.count_codes(int64([1, 7]), np.array([True, False]), 6)
    with pytest.raises(InvalidArgumentError, match="code -1 is outside"):
        _core.count_codes(int64([-1]), np.array([True]), 6)
    with pytest.raises(ShapeError, match="mask"):
        _core.count_codes(int64([1, 2]), np.array([True]), 6)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 3), st.lists(st.integers(0, 9), max_size=30))
def test_take_columns_int64_matches_numpy(width: int, order: list[int]) -> None:
    columns = [np.arange(10, dtype=np.int64) * (k + 1) - 2**62 for k in range(width)]
    taken = _core.take_columns_int64(columns, int64(order))
    assert taken.shape == (len(order), width)
    np.testing.assert_array_equal(taken, np.stack([column[order] for column in columns], axis=1))
    with pytest.raises(InvalidArgumentError, match="index 10 is out of range"):
        _core.take_columns_int64([np.zeros(10, dtype=np.int64)], int64([10]))


# Placement scatters rows to the places a permutation gives them, and its results must equal
# the gather by the same order. Sizes above 65,536 rows use several parallel parts.
@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from([0, 1, 2, 17, 70_001]),
    st.integers(0, 3),
    st.integers(0, 2**32 - 1),
)
def test_placement_matches_gather(rows: int, width: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    order = rng.permutation(rows).astype(np.int64)
    placement = _core.Placement(order)
    assert len(placement) == rows
    floats = [rng.standard_normal(rows).astype(np.float32) for _ in range(width)]
    floats[:1] = [np.where(rng.random(rows) < 0.1, np.nan, column) for column in floats[:1]]
    integers = [rng.integers(-(2**63), 2**63 - 1, rows, dtype=np.int64) for _ in range(width)]
    for columns, take in (
        (floats, placement.take_columns_float32),
        (integers, placement.take_columns_int64),
    ):
        placed = take(columns)
        assert placed.shape == (rows, width)
        for k, column in enumerate(columns):
            np.testing.assert_array_equal(placed[:, k], column[order])


def test_placement_rejects_what_is_not_a_permutation() -> None:
    with pytest.raises(InvalidArgumentError, match="row 1 appears at positions 0 and 2"):
        _core.Placement(int64([1, 0, 1]))
    with pytest.raises(InvalidArgumentError, match="index 3 at position 1 is out of range"):
        _core.Placement(int64([0, 3, 1]))
    with pytest.raises(InvalidArgumentError, match="index -1 at position 0"):
        _core.Placement(int64([-1, 0]))
    placement = _core.Placement(int64([1, 0]))
    with pytest.raises(ShapeError, match=r"columns\[1\]"):
        placement.take_columns_int64([int64([5, 6]), int64([7])])
