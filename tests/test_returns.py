"""The return kernels of recrl.returns against hand-computed cases and the Python reference."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from recrl import returns
from recrl.errors import InvalidArgumentError, InvalidDataError, ShapeError

from .reference import returns as reference

# Contract cases, computed by hand.


def test_gae_terminated_episode_contract() -> None:
    advantages, targets = returns.gae(
        [1, 1, 1], [2, 2, 2], [2, 2, 2], 0.5, 1.0, terminals=[0, 0, 1]
    )
    np.testing.assert_array_equal(advantages, np.float32([-0.25, -0.5, -1.0]))
    np.testing.assert_array_equal(targets, np.float32([1.75, 1.5, 1.0]))
    assert advantages.dtype == np.float32
    assert targets.dtype == np.float32


def test_returns_log_ends_without_flag() -> None:
    # Episode 0 is rows 0..1 (terminated); episode 1 is row 2, where the log ends unflagged.
    result = returns.discounted_returns([1, 1, 1], 0.5, terminals=[0, 1, 0])
    np.testing.assert_array_equal(result, np.float32([1.5, 1.0, 1.0]))


def test_returns_truncated_bootstrap() -> None:
    result = returns.discounted_returns([1, 1], 0.5, truncations=[0, 1], bootstrap_values=[10])
    np.testing.assert_array_equal(result, np.float32([4.0, 6.0]))


def test_returns_column_rewards_give_vector() -> None:
    result = returns.discounted_returns([[1], [1]], 0.5)
    assert result.shape == (2,)
    np.testing.assert_array_equal(result, np.float32([1.5, 1.0]))


# Shapes and dtypes.


def test_returns_gamma_sequence_keeps_columns() -> None:
    rewards = np.ones((2, 1), dtype=np.float32)
    assert returns.discounted_returns(rewards, [0.5]).shape == (2, 1)
    assert returns.discounted_returns(rewards[:, 0], [0.5]).shape == (2, 1)
    assert returns.discounted_returns(rewards[:, 0], 0.5).shape == (2,)


def test_returns_float_gamma_applies_to_every_response() -> None:
    rewards = np.ones((2, 3), dtype=np.float32)
    result = returns.discounted_returns(rewards, 0.5)
    np.testing.assert_array_equal(result, np.full((2, 3), [[1.5], [1.0]], dtype=np.float32))


def test_returns_per_response_discounts() -> None:
    rewards = np.ones((3, 2), dtype=np.float32)
    result = returns.discounted_returns(rewards, [0.5, 1.0], episode_starts=[0, 3])
    np.testing.assert_array_equal(result, np.float32([[1.75, 3.0], [1.5, 2.0], [1.0, 1.0]]))


def test_values_accept_vector_or_column() -> None:
    rewards = np.ones(3, dtype=np.float32)
    column = np.full((3, 1), 2.0, dtype=np.float32)
    vector = column[:, 0]
    for values in (column, vector):
        advantages, _ = returns.gae(rewards, values, values, 0.5, 1.0, terminals=[0, 0, 1])
        np.testing.assert_array_equal(advantages, np.float32([-0.25, -0.5, -1.0]))


def test_returns_empty_log() -> None:
    result = returns.discounted_returns(np.zeros((0, 2), dtype=np.float32), [0.9, 0.9])
    assert result.shape == (0, 2)
    result = returns.discounted_returns(np.zeros(0, dtype=np.float32), 0.9, episode_starts=[0, 0])
    assert result.shape == (0,)


def test_returns_non_contiguous_input_is_converted() -> None:
    rewards = np.ones((3, 4), dtype=np.float64)[:, ::2]
    result = returns.discounted_returns(rewards, [0.5, 0.5], episode_starts=[0, 3])
    np.testing.assert_array_equal(result, np.float32([[1.75, 1.75], [1.5, 1.5], [1.0, 1.0]]))


def test_n_step_shortened_window() -> None:
    targets = returns.n_step_targets([1, 2, 4], [10, 20, 30], 0.5, 2, truncations=[0, 0, 1])
    np.testing.assert_array_equal(targets, np.float32([7.0, 11.5, 19.0]))


def test_lambda_returns_one_step_and_monte_carlo() -> None:
    rewards, next_values = [1, 2, 4], [10, 20, 30]
    one_step = returns.lambda_returns(rewards, next_values, 0.5, 0.0, terminals=[0, 0, 1])
    np.testing.assert_array_equal(one_step, np.float32([6.0, 12.0, 4.0]))
    monte_carlo = returns.lambda_returns(rewards, next_values, 0.5, 1.0, terminals=[0, 0, 1])
    np.testing.assert_array_equal(monte_carlo, np.float32([3.0, 4.0, 4.0]))


# Rejections: each names the argument, the expected and the received value.


def test_rewards_columns_must_match_gammas() -> None:
    with pytest.raises(ShapeError, match=r"rewards: expected shape \(4, 3\).*got shape \(4, 2\)"):
        returns.discounted_returns(np.ones((4, 2)), [0.9, 0.9, 0.9])


def test_rewards_must_be_one_or_two_dimensional() -> None:
    with pytest.raises(ShapeError, match=r"rewards: expected shape \(n,\) or \(n, k\)"):
        returns.discounted_returns(np.ones((2, 2, 2)), 0.9)


def test_rewards_need_a_response_column() -> None:
    with pytest.raises(ShapeError, match=r"rewards: expected at least one response column"):
        returns.discounted_returns(np.ones((2, 0)), 0.9)


def test_values_shape_must_match_rewards() -> None:
    rewards = np.ones((4, 3))
    with pytest.raises(ShapeError, match=r"values: expected shape \(4, 3\), got shape \(4, 2\)"):
        returns.gae(rewards, np.ones((4, 2)), np.ones((4, 3)), 0.9, 0.95)
    with pytest.raises(ShapeError, match=r"next_values: expected shape \(4,\) or \(4, 1\)"):
        returns.lambda_returns(np.ones(4), np.ones(3), 0.9, 0.95)


def test_bootstrap_values_shape() -> None:
    with pytest.raises(ShapeError, match=r"bootstrap_values: expected shape \(2, 2\)"):
        returns.discounted_returns(
            np.ones((3, 2)), [0.9, 0.9], terminals=[1, 0, 0], bootstrap_values=np.ones((3, 2))
        )


def test_truncated_episode_needs_bootstrap_values() -> None:
    with pytest.raises(InvalidArgumentError, match=r"bootstrap_values: required because episode 1"):
        returns.discounted_returns([1, 1, 1], 0.9, terminals=[1, 0, 0], truncations=[0, 0, 1])


@pytest.mark.parametrize("gamma", [-0.1, 1.5, float("nan")])
def test_gamma_outside_unit_interval(gamma: float) -> None:
    with pytest.raises(InvalidArgumentError, match=r"gammas: each discount must lie in \[0, 1\]"):
        returns.discounted_returns([1.0], gamma)
    with pytest.raises(InvalidArgumentError, match=r"gammas\[1\] = "):
        returns.discounted_returns([[1.0, 1.0]], [0.5, gamma])


@pytest.mark.parametrize("lambda_", [-0.5, 1.01, float("nan")])
def test_lambda_outside_unit_interval(lambda_: float) -> None:
    with pytest.raises(InvalidArgumentError, match=r"lambda_: must lie in \[0, 1\]"):
        returns.gae([1.0], [1.0], [1.0], 0.9, lambda_)
    with pytest.raises(InvalidArgumentError, match=r"lambda_: must lie in \[0, 1\]"):
        returns.lambda_returns([1.0], [1.0], 0.9, lambda_)


@pytest.mark.parametrize("n", [0, -3])
def test_n_must_be_positive(n: int) -> None:
    with pytest.raises(InvalidArgumentError, match=rf"n: must be at least 1, got {n}"):
        returns.n_step_targets([1.0], [1.0], 0.9, n)


@pytest.mark.parametrize(
    ("episode_starts", "message"),
    [
        ([1, 3], r"episode_starts: must start at 0, got episode_starts\[0\] = 1"),
        ([0, 2, 1, 3], r"must be non-decreasing, but episode_starts\[2\] = 1 is less than"),
        ([0, 2], r"episode_starts: must end at the number of rows 3, got episode_starts\[1\] = 2"),
    ],
)
def test_invalid_episode_starts(episode_starts: list[int], message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        returns.discounted_returns([1, 1, 1], 0.9, episode_starts=episode_starts)


def test_empty_episode_starts() -> None:
    with pytest.raises(ShapeError, match=r"episode_starts: expected at least one offset"):
        returns.discounted_returns([1, 1, 1], 0.9, episode_starts=np.zeros(0, dtype=np.int64))


def test_flag_inside_episode() -> None:
    with pytest.raises(InvalidArgumentError, match=r"truncations: row 1 is flagged but is not the"):
        returns.discounted_returns(
            [1, 1, 1], 0.9, episode_starts=[0, 3], truncations=[0, 1, 0], bootstrap_values=[0]
        )


def test_row_flagged_twice() -> None:
    with pytest.raises(InvalidArgumentError, match=r"row 2 is flagged both terminal and truncated"):
        returns.discounted_returns([1, 1, 1], 0.9, terminals=[0, 0, 1], truncations=[0, 0, 1])


def test_flags_length() -> None:
    with pytest.raises(ShapeError, match=r"terminals: expected length 3, got length 2"):
        returns.discounted_returns([1, 1, 1], 0.9, terminals=[0, 1])


def test_nan_reward_names_row_and_column() -> None:
    rewards = np.ones((4, 3), dtype=np.float32)
    rewards[2, 1] = np.nan
    with pytest.raises(InvalidDataError, match=r"column 1 of rewards, row 2: NaN is not a finite"):
        returns.discounted_returns(rewards, [0.9, 0.9, 0.9])


def test_infinite_value_is_rejected() -> None:
    values = np.float32([0.0, np.inf, 0.0])
    with pytest.raises(InvalidDataError, match=r"column 0 of values, row 1: inf"):
        returns.gae([1, 1, 1], values, [0, 0, 0], 0.9, 0.5)


def test_nan_next_value_after_terminal_is_not_read() -> None:
    targets = returns.n_step_targets([1, 1], [0, np.nan], 0.5, 3, terminals=[0, 1])
    np.testing.assert_array_equal(targets, np.float32([1.5, 1.0]))


def test_nan_bootstrap_of_truncated_episode() -> None:
    with pytest.raises(InvalidDataError, match=r"column 0 of bootstrap_values, row 1: NaN"):
        returns.discounted_returns([1, 1], 0.5, truncations=[1, 1], bootstrap_values=[0.0, np.nan])


# Every kernel against the reference, on random ragged logs.

KINDS = (reference.TERMINATED, reference.TRUNCATED, reference.UNFLAGGED)
FLOATS = st.floats(-100, 100, width=32)


@st.composite
def logs(draw: st.DrawFn) -> dict[str, Any]:
    """Draw a ragged log: empty and one-row episodes included, K in 1..8."""
    width = draw(st.integers(1, 8))
    use_offsets = draw(st.booleans())
    if use_offsets:
        lengths = draw(st.lists(st.integers(0, 6), max_size=8))
        kinds = draw(st.lists(st.sampled_from(KINDS), min_size=len(lengths), max_size=len(lengths)))
        rows = sum(lengths)
        starts = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        terminals = np.zeros(rows, dtype=np.uint8)
        truncations = np.zeros(rows, dtype=np.uint8)
        for end, length, kind in zip(starts[1:], lengths, kinds):
            if length and kind == reference.TERMINATED:
                terminals[end - 1] = 1
            elif length and kind == reference.TRUNCATED:
                truncations[end - 1] = 1
        episode_starts: list[int] | None = starts.tolist()
    else:
        row_kinds = draw(st.lists(st.sampled_from(KINDS + (reference.UNFLAGGED,)), max_size=30))
        rows = len(row_kinds)
        terminals = np.uint8([kind == reference.TERMINATED for kind in row_kinds])
        truncations = np.uint8([kind == reference.TRUNCATED for kind in row_kinds])
        episode_starts = None
    episode_list = reference.episodes(
        rows, episode_starts, terminals.tolist(), truncations.tolist()
    )

    one_dimensional = width == 1 and draw(st.booleans())
    shape = (rows,) if one_dimensional else (rows, width)
    if draw(st.booleans()):
        gamma = draw(st.floats(0, 1))
        gammas: float | np.ndarray = gamma
        gamma_vector = np.full(width, gamma)
        out_shape = (rows,) if width == 1 else (rows, width)
    else:
        gammas = draw(
            arrays(np.float64, width, elements=st.sampled_from([0.0, 1.0]) | st.floats(0, 1))
        )
        gamma_vector = gammas
        out_shape = (rows, width)
    bootstrap_shape = (len(episode_list),) if one_dimensional else (len(episode_list), width)
    return {
        "rewards": draw(arrays(np.float32, shape, elements=FLOATS)),
        "values": draw(arrays(np.float32, shape, elements=FLOATS)),
        "next_values": draw(arrays(np.float32, shape, elements=FLOATS)),
        "bootstrap_values": draw(arrays(np.float32, bootstrap_shape, elements=FLOATS)),
        "gammas": gammas,
        "gamma_vector": gamma_vector,
        "out_shape": out_shape,
        "episodes": {
            "episode_starts": episode_starts,
            "terminals": terminals,
            "truncations": truncations,
        },
        "episode_list": episode_list,
    }


def as_matrix(array: np.ndarray) -> np.ndarray:
    matrix = array.astype(np.float64)
    return matrix[:, None] if matrix.ndim == 1 else matrix


def assert_matches(actual: np.ndarray, expected: np.ndarray, out_shape: tuple[int, ...]) -> None:
    assert actual.dtype == np.float32
    assert actual.shape == out_shape
    np.testing.assert_allclose(as_matrix(actual), expected, rtol=1e-5, atol=1e-3)


@given(logs())
def test_discounted_returns_match_reference(log: dict[str, Any]) -> None:
    actual = returns.discounted_returns(
        log["rewards"], log["gammas"], bootstrap_values=log["bootstrap_values"], **log["episodes"]
    )
    expected = reference.discounted_returns(
        as_matrix(log["rewards"]),
        log["gamma_vector"],
        log["episode_list"],
        as_matrix(log["bootstrap_values"]),
    )
    assert_matches(actual, expected, log["out_shape"])
    # A reused buffer full of stale values receives exactly the same returns.
    out = np.full(log["out_shape"], np.nan, dtype=np.float32)
    written = returns.discounted_returns(
        log["rewards"],
        log["gammas"],
        bootstrap_values=log["bootstrap_values"],
        out=out,
        **log["episodes"],
    )
    assert written is out
    np.testing.assert_array_equal(out, actual)


def test_returns_out_is_checked() -> None:
    rewards = np.ones(3, dtype=np.float32)
    with pytest.raises(ShapeError, match=r"out: expected shape \(3,\)"):
        returns.discounted_returns(rewards, 0.5, out=np.empty(4, dtype=np.float32))
    with pytest.raises(InvalidArgumentError, match="out: expected a float32 NumPy array"):
        returns.discounted_returns(rewards, 0.5, out=np.empty(3))
    with pytest.raises(InvalidArgumentError, match="C-contiguous, writeable"):
        returns.discounted_returns(rewards, 0.5, out=np.empty(6, dtype=np.float32)[::2])
    with pytest.raises(InvalidArgumentError, match="shares memory with an input"):
        returns.discounted_returns(rewards, 0.5, out=rewards)


@given(logs(), st.integers(1, 8))
def test_n_step_targets_match_reference(log: dict[str, Any], n: int) -> None:
    actual = returns.n_step_targets(
        log["rewards"], log["next_values"], log["gammas"], n, **log["episodes"]
    )
    expected = reference.n_step_targets(
        as_matrix(log["rewards"]),
        as_matrix(log["next_values"]),
        log["gamma_vector"],
        n,
        log["episode_list"],
    )
    assert_matches(actual, expected, log["out_shape"])


@given(logs(), st.sampled_from([0.0, 1.0]) | st.floats(0, 1))
def test_lambda_returns_match_reference(log: dict[str, Any], lambda_: float) -> None:
    actual = returns.lambda_returns(
        log["rewards"], log["next_values"], log["gammas"], lambda_, **log["episodes"]
    )
    expected = reference.lambda_returns(
        as_matrix(log["rewards"]),
        as_matrix(log["next_values"]),
        log["gamma_vector"],
        lambda_,
        log["episode_list"],
    )
    assert_matches(actual, expected, log["out_shape"])


@given(logs(), st.sampled_from([0.0, 1.0]) | st.floats(0, 1))
def test_gae_matches_reference(log: dict[str, Any], lambda_: float) -> None:
    advantages, targets = returns.gae(
        log["rewards"], log["values"], log["next_values"], log["gammas"], lambda_, **log["episodes"]
    )
    expected_advantages, expected_targets = reference.gae(
        as_matrix(log["rewards"]),
        as_matrix(log["values"]),
        as_matrix(log["next_values"]),
        log["gamma_vector"],
        lambda_,
        log["episode_list"],
    )
    assert_matches(advantages, expected_advantages, log["out_shape"])
    assert_matches(targets, expected_targets, log["out_shape"])


@given(logs(), st.data())
def test_nan_reward_is_located(log: dict[str, Any], data: st.DataObject) -> None:
    rewards = as_matrix(log["rewards"]).astype(np.float32)
    rows, width = rewards.shape
    if rows == 0:
        return
    row = data.draw(st.integers(0, rows - 1))
    column = data.draw(st.integers(0, width - 1))
    rewards[row, column] = np.nan
    with pytest.raises(InvalidDataError, match=rf"column {column} of rewards, row {row}: NaN"):
        returns.gae(
            rewards.reshape(log["rewards"].shape),
            log["values"],
            log["next_values"],
            log["gammas"],
            0.9,
            **log["episodes"],
        )


def test_many_episodes_single_response() -> None:
    # Enough rows for several parallel chunks, with empty, truncated and terminated episodes.
    generator = np.random.default_rng(7)
    lengths = generator.integers(0, 120, size=4_000)
    starts = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    rows = int(starts[-1])
    truncations = np.zeros(rows, dtype=np.uint8)
    terminals = np.zeros(rows, dtype=np.uint8)
    ends = starts[1:][lengths > 0] - 1
    truncations[ends[::2]] = 1
    terminals[ends[1::2]] = 1
    rewards = generator.normal(size=rows).astype(np.float32)
    bootstrap = generator.normal(size=len(lengths)).astype(np.float32)

    actual = returns.discounted_returns(
        rewards,
        0.99,
        episode_starts=starts,
        terminals=terminals,
        truncations=truncations,
        bootstrap_values=bootstrap,
    )

    expected = np.zeros(rows)
    for episode, (start, end) in enumerate(zip(starts[:-1], starts[1:])):
        g = float(bootstrap[episode]) if end > start and truncations[end - 1] else 0.0
        for t in range(end - 1, start - 1, -1):
            g = float(rewards[t]) + 0.99 * g
            expected[t] = g
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-4)
