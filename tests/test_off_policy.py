import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recrl.errors import InvalidArgumentError, InvalidDataError, ShapeError
from recrl.evaluation import off_policy
from recrl.evaluation.metrics import UndefinedMetricWarning


def per_decision_loop(target, behaviour, rewards, starts, gamma):
    """Per-decision IS written as the textbook double loop over episodes and steps."""
    totals = []
    for e in range(len(starts) - 1):
        product, total = 1.0, 0.0
        for t, row in enumerate(range(starts[e], starts[e + 1])):
            product *= target[row] / behaviour[row]
            total += gamma**t * product * rewards[row]
        totals.append(total)
    return sum(totals) / len(totals)


# Contract cases.


def test_two_row_contract():
    policy = np.array([[1.0, 0.0], [0.5, 0.5]])
    target = off_policy.target_probabilities(policy, np.array([0, 1]))
    np.testing.assert_array_equal(target, [1.0, 0.5])
    behaviour = np.array([0.5, 0.25])
    rewards = np.array([[1.0], [0.0]])

    weights = off_policy.importance_weights(target, behaviour)
    np.testing.assert_array_equal(weights.ratios, [2.0, 2.0])
    assert off_policy.ips(target, behaviour, rewards)["response_0"].estimate == 1.0
    assert off_policy.snips(target, behaviour, rewards)["response_0"].estimate == 0.5


def test_zero_behaviour_probability_names_row():
    with pytest.raises(InvalidDataError, match="behaviour_probabilities, row 1"):
        off_policy.ips([0.5, 0.5, 0.5], [0.5, 0.0, 0.5], [1.0, 1.0, 1.0])


def test_clip_behaviour_counts_clipped_rows():
    result = off_policy.ips(
        [0.5, 0.5, 0.5], [0.5, 0.0, 1e-9], [1.0, 1.0, 0.0], clip_behaviour=1e-3
    )["response_0"]
    assert result.clipped_rows == 2
    assert result.estimate == pytest.approx((1.0 + 500.0) / 3)


def test_ratio_above_cap_is_cut():
    # Ratios 40 and 1: capped to 10 and 1, so the estimate is (10 * 1 + 1 * 0) / 11.
    result = off_policy.ncis([0.8, 0.5], [0.02, 0.5], [[1.0, 2.0], [0.0, 4.0]], ["click", "time"])
    assert result["click"].estimate == pytest.approx(10 / 11)
    assert result["time"].estimate == pytest.approx((10 * 2 + 4) / 11)
    assert result["click"].capped_rows == 1
    assert result["click"].effective_sample_size == pytest.approx(11**2 / 101)


def test_per_decision_two_step_episode():
    # Ratios 2 and 0.5: 2 * 1 + (2 * 0.5) * 1 = 3.
    result = off_policy.per_decision_is(
        [1.0, 0.25], [0.5, 0.5], [1.0, 1.0], np.array([0, 2]), gamma=1.0
    )["response_0"]
    assert result.estimate == 3.0
    assert result.logged_mean == 2.0
    assert result.change == 1.0
    assert result.relative_change == 0.5


# Other behaviour.


def test_estimate_fields_per_response():
    result = off_policy.ips([1.0, 0.5], [0.5, 0.25], [[1.0, 0.0], [0.0, 3.0]], ["click", "like"])
    click = result["click"]
    assert click == off_policy.OffPolicyEstimate(
        response="click",
        estimator="ips",
        estimate=1.0,
        logged_mean=0.5,
        change=0.5,
        relative_change=1.0,
        effective_sample_size=2.0,
        clipped_rows=0,
    )
    assert result["like"].estimate == 3.0
    with pytest.raises(AttributeError):
        click.estimate = 2.0  # type: ignore[misc]


def test_zero_logged_mean_gives_nan_relative_change():
    result = off_policy.ips([1.0], [0.5], [0.0])["response_0"]
    assert math.isnan(result.relative_change)


def test_snips_all_zero_weights_warns():
    with pytest.warns(UndefinedMetricWarning, match="every importance weight is 0"):
        result = off_policy.snips([0.0, 0.0], [0.5, 0.5], [1.0, 0.0])
    assert math.isnan(result["response_0"].estimate)


def test_per_decision_discount_per_response():
    target = [1.0, 1.0, 0.5]
    behaviour = [0.5, 1.0, 1.0]
    rewards = np.array([[1.0, 1.0], [1.0, 1.0], [2.0, 2.0]])
    starts = np.array([0, 2, 3])
    result = off_policy.per_decision_is(target, behaviour, rewards, starts, gamma=[0.5, 1.0])
    # Episode 0: 2 * 1 + gamma * 2 * 1; episode 1: 0.5 * 2.
    assert result["response_0"].estimate == pytest.approx((2 + 0.5 * 2 + 1) / 2)
    assert result["response_1"].estimate == pytest.approx((2 + 2 + 1) / 2)
    assert result["response_0"].logged_mean == pytest.approx((1 + 0.5 + 2) / 2)
    # Full-episode products 2 and 0.5.
    assert result["response_0"].effective_sample_size == pytest.approx(2.5**2 / 4.25)


def test_target_probabilities_bad_action_names_row():
    with pytest.raises(InvalidDataError, match="column actions, row 1: expected an index in"):
        off_policy.target_probabilities(np.full((2, 3), 1 / 3), np.array([0, 3]))


def test_probability_outside_unit_interval_names_row():
    with pytest.raises(InvalidDataError, match="column target_probabilities, row 0"):
        off_policy.importance_weights([1.5], [0.5])
    with pytest.raises(InvalidDataError, match="column behaviour_probabilities, row 0"):
        off_policy.importance_weights([0.5], [np.nan])


def test_nan_reward_names_row_and_column():
    with pytest.raises(InvalidDataError, match=r"rewards\[:, 1\], row 0"):
        off_policy.ips([0.5], [0.5], [[1.0, np.nan]])


def test_shape_and_argument_errors():
    with pytest.raises(ShapeError, match="behaviour_probabilities: expected shape"):
        off_policy.ips([0.5, 0.5], [0.5], [1.0, 1.0])
    with pytest.raises(ShapeError, match="rewards: expected shape"):
        off_policy.ips([0.5, 0.5], [0.5, 0.5], [1.0])
    with pytest.raises(ShapeError, match="response_names: expected 1 names"):
        off_policy.ips([0.5], [0.5], [1.0], ["a", "b"])
    with pytest.raises(InvalidArgumentError, match="cap"):
        off_policy.ncis([0.5], [0.5], [1.0], cap=0.0)
    with pytest.raises(InvalidArgumentError, match="clip_behaviour"):
        off_policy.ips([0.5], [0.5], [1.0], clip_behaviour=0.0)
    with pytest.raises(InvalidArgumentError, match="rewards: expected at least one row"):
        off_policy.ips([], [], np.zeros((0, 1)))
    with pytest.raises(InvalidArgumentError, match="gamma"):
        off_policy.per_decision_is([0.5], [0.5], [1.0], [0, 1], gamma=1.5)
    with pytest.raises(ShapeError, match="gamma: expected one value or 1 values"):
        off_policy.per_decision_is([0.5], [0.5], [1.0], [0, 1], gamma=[0.9, 0.9])


def test_bad_episode_offsets_rejected():
    with pytest.raises(InvalidDataError, match="end at the row count 2"):
        off_policy.per_decision_is([0.5, 0.5], [0.5, 0.5], [1.0, 1.0], [0, 1])
    with pytest.raises(InvalidDataError, match="episode 1 spans rows 1..1"):
        off_policy.per_decision_is([0.5, 0.5], [0.5, 0.5], [1.0, 1.0], [0, 1, 1, 2])
    with pytest.raises(ShapeError, match="episode_starts"):
        off_policy.per_decision_is([0.5], [0.5], [1.0], [0.0, 1.0])


@settings(max_examples=100, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 6), min_size=1, max_size=12),
    gamma=st.floats(0.0, 1.0),
    data=st.data(),
)
def test_per_decision_matches_loop(lengths, gamma, data):
    rows = sum(lengths)
    probability = st.floats(0.05, 1.0)
    target = data.draw(st.lists(probability, min_size=rows, max_size=rows))
    behaviour = data.draw(st.lists(probability, min_size=rows, max_size=rows))
    rewards = data.draw(st.lists(st.floats(-5.0, 5.0), min_size=rows, max_size=rows))
    starts = np.concatenate([[0], np.cumsum(lengths)])
    result = off_policy.per_decision_is(target, behaviour, rewards, starts, gamma=gamma)
    expected = per_decision_loop(target, behaviour, rewards, starts, gamma)
    assert result["response_0"].estimate == pytest.approx(expected, rel=1e-9, abs=1e-9)


@settings(max_examples=100, deadline=None)
@given(data=st.data(), rows=st.integers(1, 30), cap=st.floats(0.5, 20.0))
def test_step_estimators_match_sums(data, rows, cap):
    probability = st.floats(0.01, 1.0)
    target = np.array(data.draw(st.lists(probability, min_size=rows, max_size=rows)))
    behaviour = np.array(data.draw(st.lists(probability, min_size=rows, max_size=rows)))
    rewards = np.array(data.draw(st.lists(st.floats(0.0, 10.0), min_size=rows, max_size=rows)))
    ratios = [t / b for t, b in zip(target, behaviour)]
    capped = [min(w, cap) for w in ratios]
    ips = sum(w * r for w, r in zip(ratios, rewards)) / rows
    snips = sum(w * r for w, r in zip(ratios, rewards)) / sum(ratios)
    ncis = sum(c * r for c, r in zip(capped, rewards)) / sum(capped)
    assert off_policy.ips(target, behaviour, rewards)["response_0"].estimate == pytest.approx(ips)
    assert off_policy.snips(target, behaviour, rewards)["response_0"].estimate == pytest.approx(
        snips
    )
    assert off_policy.ncis(target, behaviour, rewards, cap=cap)[
        "response_0"
    ].estimate == pytest.approx(ncis)
