import numpy as np
import pytest
import torch

from recrl.errors import InvalidArgumentError, ShapeError
from recrl.nets import MLP, EnsembleMLP
from recrl.tscac.agents import min_norm_weights
from recrl.tscac.off_policy import estimate_policy_values


def test_estimators_match_hand_computed_values():
    # Weights 2, 0.5, 20 (capped at 10), 1; episodes [0, 1] and [2, 3].
    target = np.log([0.4, 0.1, 0.8, 0.25])
    behaviour = np.log([0.2, 0.2, 0.04, 0.25])
    rewards = np.array([[1.0], [0.0], [2.0], [4.0]])
    values = estimate_policy_values(
        target, behaviour, rewards, np.array([0, 0, 1, 1]), discount=0.5
    )
    assert values["ips"][0] == pytest.approx((2 * 1 + 0 + 20 * 2 + 4) / 4)
    assert values["snips"][0] == pytest.approx(46 / 23.5)
    assert values["ncis"][0] == pytest.approx((2 + 10 * 2 + 4) / 13.5)
    # Per decision: episode one 2*1 + 0.5*(2*0.5)*0; episode two 10*2 + 0.5*(10*1)*4.
    assert values["per_decision"][0] == pytest.approx((2 + 20 + 20) / (1.5 + 1.5))
    assert values["logged"][0] == pytest.approx(7 / 4)


def test_estimators_equal_logged_mean_on_policy():
    rewards = np.random.default_rng(0).random((50, 3))
    log_probabilities = np.log(np.full(50, 0.3))
    episodes = np.repeat(np.arange(10), 5)
    values = estimate_policy_values(log_probabilities, log_probabilities, rewards, episodes)
    for name in ("ips", "snips", "ncis"):
        assert np.allclose(values[name], rewards.mean(0)), name


def test_estimators_reject_bad_input():
    with pytest.raises(ShapeError, match="rewards"):
        estimate_policy_values(np.zeros(3), np.zeros(3), np.zeros((2, 1)), np.zeros(3))
    with pytest.raises(InvalidArgumentError, match="contiguous"):
        estimate_policy_values(np.zeros(3), np.zeros(3), np.zeros((3, 1)), np.array([0, 1, 0]))
    with pytest.raises(InvalidArgumentError, match="cap"):
        estimate_policy_values(np.zeros(1), np.zeros(1), np.zeros((1, 1)), np.zeros(1), cap=0)


@pytest.mark.parametrize("shared", [True, False])
def test_ensemble_member_equals_separate_mlp(shared):
    torch.manual_seed(0)
    ensemble = EnsembleMLP(3, 5, [7, 4], 2)
    inputs = torch.randn(6, 5) if shared else torch.randn(3, 6, 5)
    outputs = ensemble(inputs)
    assert outputs.shape == (3, 6, 2)
    for member in range(3):
        single = MLP(5, [7, 4], 2)
        linears = [layer for layer in single.layers if isinstance(layer, torch.nn.Linear)]
        for linear, layer in zip(linears, ensemble.layers):
            linear.weight.data.copy_(layer.weight[member].T)
            linear.bias.data.copy_(layer.bias[member, 0])
        member_inputs = inputs if shared else inputs[member]
        assert torch.allclose(single(member_inputs), outputs[member], atol=1e-6)


def test_min_norm_weights_of_two_gradients():
    # For g1 = (1, 0), g2 = (0, 2) the min-norm point of the segment has weights (0.8, 0.2).
    gradients = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    weights = min_norm_weights(gradients @ gradients.T, iterations=100)
    assert torch.allclose(weights, torch.tensor([0.8, 0.2]), atol=1e-3)
    assert torch.isclose(weights.sum(), torch.tensor(1.0))


def test_per_step_estimators_agree_with_shared_module():
    from recrl.evaluation import off_policy

    rng = np.random.default_rng(5)
    target = rng.uniform(0.01, 1.0, size=200)
    behaviour = rng.uniform(0.01, 1.0, size=200)
    rewards = rng.random((200, 3))
    ours = estimate_policy_values(
        np.log(target), np.log(behaviour), rewards, np.arange(200), cap=10.0
    )
    names = ["a", "b", "c"]
    shared = {
        "ips": off_policy.ips(target, behaviour, rewards, names),
        "snips": off_policy.snips(target, behaviour, rewards, names),
        "ncis": off_policy.ncis(target, behaviour, rewards, names, cap=10.0),
    }
    for estimator, estimates in shared.items():
        for k, name in enumerate(names):
            assert ours[estimator][k] == pytest.approx(estimates[name].estimate), estimator


def test_capped_per_step_per_decision():
    from recrl.evaluation import per_decision_is

    rng = np.random.default_rng(4)
    starts = np.array([0, 3, 4, 8])
    target = rng.uniform(0.05, 1.0, 8)
    behaviour = rng.uniform(0.01, 1.0, 8)
    rewards = rng.random((8, 2))
    gamma = [0.5, 0.9]
    result = per_decision_is(
        target, behaviour, rewards, starts, ["a", "b"], gamma=gamma, cap=3.0, per_step=True
    )
    for k, name in enumerate(("a", "b")):
        total, discounts = 0.0, 0.0
        for e in range(3):
            product = 1.0
            for t, row in enumerate(range(starts[e], starts[e + 1])):
                product *= min(target[row] / behaviour[row], 3.0)
                total += gamma[k] ** t * product * rewards[row, k]
                discounts += gamma[k] ** t
        assert result[name].estimate == pytest.approx(total / discounts)
    assert result["a"].capped_rows == int(np.count_nonzero(target / behaviour > 3.0))
    # Without a cap and per episode, the contract value: ratios [2, 0.5], rewards [1, 1] -> 3.
    contract = per_decision_is([1.0, 0.5], [0.5, 1.0], [1.0, 1.0], [0, 2])
    assert contract["response_0"].estimate == pytest.approx(3.0)
    per_step = per_decision_is([1.0, 0.5], [0.5, 1.0], [1.0, 1.0], [0, 2], per_step=True)
    assert per_step["response_0"].estimate == pytest.approx(1.5)
    with pytest.raises(InvalidArgumentError, match="cap"):
        per_decision_is([1.0], [1.0], [1.0], [0, 1], cap=0.0)


def test_runner_per_decision_is_the_shared_estimator():
    from recrl.evaluation import per_decision_is

    rng = np.random.default_rng(5)
    target = np.log(rng.uniform(0.05, 1.0, 6))
    behaviour = np.log(rng.uniform(0.05, 1.0, 6))
    rewards = rng.random((6, 3))
    values = estimate_policy_values(
        target, behaviour, rewards, np.array([4, 4, 4, 9, 2, 2]), cap=2.0, discount=0.8
    )
    shared = per_decision_is(
        np.exp(target), np.exp(behaviour), rewards, [0, 3, 4, 6], gamma=0.8, cap=2.0, per_step=True
    )
    expected = [estimate.estimate for estimate in shared.values()]
    np.testing.assert_allclose(values["per_decision"], expected)
