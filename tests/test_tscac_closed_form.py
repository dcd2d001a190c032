import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from recrl.errors import InvalidArgumentError, ShapeError
from recrl.tscac.closed_form import (
    categorical_target_log_probabilities,
    gaussian_product_mean,
    tilted_sample_weights,
)


def lagrangian(pi, advantages, stage_one, lambdas):
    """E_pi[A] - sum_i lambda_i KL(pi || pi_i) for one state."""
    pi = np.clip(pi, 1e-300, None)
    kl = (pi * (np.log(pi)[None, :] - np.log(stage_one))).sum(axis=1)
    return float(pi @ advantages - lambdas @ kl)


def random_case(rng, candidates, members):
    stage_one = rng.dirichlet(np.ones(candidates), size=members)
    advantages = rng.normal(size=candidates)
    lambdas = rng.uniform(0.2, 2.0, size=members)
    return stage_one, advantages, lambdas


def closed_form(stage_one, advantages, lambdas):
    log_pi = categorical_target_log_probabilities(
        torch.tensor(np.log(stage_one))[:, None, :],
        torch.tensor(advantages)[None, :],
        torch.tensor(lambdas),
    )
    return log_pi[0].exp().numpy()


def maximise_numerically(stage_one, advantages, lambdas):
    candidates = len(advantages)

    def negative(logits):
        pi = np.exp(logits - logits.max())
        return -lagrangian(pi / pi.sum(), advantages, stage_one, lambdas)

    result = minimize(negative, np.zeros(candidates), method="BFGS", options={"gtol": 1e-10})
    pi = np.exp(result.x - result.x.max())
    return pi / pi.sum()


@pytest.mark.parametrize("candidates", [3, 4, 5, 6])
def test_closed_form_maximises_lagrangian(candidates):
    rng = np.random.default_rng(candidates)
    for _ in range(5):
        stage_one, advantages, lambdas = random_case(rng, candidates, members=3)
        exact = closed_form(stage_one, advantages, lambdas)
        numeric = maximise_numerically(stage_one, advantages, lambdas)
        assert np.allclose(exact, numeric, atol=1e-5)
        best = lagrangian(exact, advantages, stage_one, lambdas)
        for _ in range(50):
            other = rng.dirichlet(np.ones(candidates))
            assert lagrangian(other, advantages, stage_one, lambdas) <= best + 1e-12


def test_closed_form_large_lambda_gives_geometric_mean():
    rng = np.random.default_rng(7)
    stage_one, advantages, lambdas = random_case(rng, 5, members=4)
    weights = lambdas / lambdas.sum()
    geometric = np.exp(weights @ np.log(stage_one))
    geometric /= geometric.sum()
    exact = closed_form(stage_one, advantages, lambdas * 1e6)
    assert np.allclose(exact, geometric, atol=1e-5)


def test_closed_form_small_lambda_gives_argmax():
    rng = np.random.default_rng(8)
    stage_one, advantages, lambdas = random_case(rng, 6, members=2)
    exact = closed_form(stage_one, advantages, lambdas * 1e-5)
    assert exact.argmax() == advantages.argmax()
    assert exact.max() > 1 - 1e-6


def test_closed_form_mask_excludes_candidates():
    log_pi = categorical_target_log_probabilities(
        torch.log(torch.full((2, 1, 4), 0.25)),
        torch.tensor([[0.0, 5.0, 1.0, 2.0]]),
        torch.tensor([1.0, 1.0]),
        mask=torch.tensor([[True, False, True, True]]),
    )
    assert log_pi[0, 1] == float("-inf")
    assert torch.isclose(log_pi.exp().sum(), torch.tensor(1.0))


def test_gaussian_product_matches_density_product():
    rng = np.random.default_rng(3)
    means = rng.normal(size=(3, 1, 2))
    lambdas = np.array([0.5, 1.0, 2.5])
    sigma = 0.7
    weights = lambdas / lambdas.sum()
    mean = gaussian_product_mean(torch.tensor(means), torch.tensor(lambdas))[0].numpy()

    # Unnormalised log density of prod_i N(mu_i, sigma^2)^w_i on a grid, against N(mean, sigma^2).
    grid = rng.normal(size=(200, 2)) * 3
    log_product = sum(
        -w * ((grid - mu[0]) ** 2).sum(1) / (2 * sigma**2) for w, mu in zip(weights, means)
    )
    log_gaussian = -((grid - mean) ** 2).sum(1) / (2 * sigma**2)
    difference = log_product - log_gaussian
    assert np.allclose(difference, difference[0], atol=1e-10)


def test_tilted_weights_sum_to_one_and_favour_advantage():
    weights = tilted_sample_weights(torch.tensor([[0.0, 1.0, 2.0]]), total_lambda=0.5)
    assert torch.isclose(weights.sum(), torch.tensor(1.0))
    assert bool((weights[0, 1:] > weights[0, :-1]).all())


def test_tilted_gaussian_matches_categorical_closed_form():
    # On a fine grid the sampled Gaussian target equals the closed form over that grid.
    grid = torch.linspace(-4, 4, 801, dtype=torch.float64)
    means = torch.tensor([[[-1.0]], [[2.0]]], dtype=torch.float64)
    lambdas = torch.tensor([1.0, 3.0], dtype=torch.float64)
    advantages = -((grid - 0.5) ** 2)
    log_densities = -((grid.view(1, 1, -1) - means) ** 2) / 2
    log_densities = torch.log_softmax(log_densities, dim=-1)
    exact = categorical_target_log_probabilities(log_densities, advantages[None], lambdas).exp()
    product_mean = gaussian_product_mean(means, lambdas)[0, 0]
    proposal = torch.exp(-((grid - product_mean) ** 2) / 2)
    weights = tilted_sample_weights(advantages[None], float(lambdas.sum()))[0] * proposal
    weights = weights / weights.sum()
    assert torch.allclose(weights, exact[0], atol=1e-10)


def test_closed_form_rejects_bad_input():
    with pytest.raises(ShapeError, match="advantages"):
        categorical_target_log_probabilities(torch.zeros(2, 1, 3), torch.zeros(1, 4), torch.ones(2))
    with pytest.raises(InvalidArgumentError, match="lambdas"):
        categorical_target_log_probabilities(
            torch.zeros(2, 1, 3), torch.zeros(1, 3), torch.tensor([1.0, 0.0])
        )
    with pytest.raises(InvalidArgumentError, match="total_lambda"):
        tilted_sample_weights(torch.zeros(1, 2), 0.0)


def test_gaussian_actor_density_and_samples():
    from recrl.nets import GaussianActor, StateEncoder

    torch.manual_seed(0)
    actor = GaussianActor(StateEncoder(3, [4], 10, 2), [8], action_dim=2, sigma=0.5)
    means = actor.means(
        torch.randn(5, 3), torch.ones(5, 1, dtype=torch.int64), torch.zeros(5, 2, dtype=torch.int64)
    )
    assert means.shape == (5, 2)
    actions = actor.sample(means, 7, generator=torch.Generator().manual_seed(1))
    assert actions.shape == (5, 7, 2)
    expected = torch.distributions.Normal(means.unsqueeze(1), 0.5).log_prob(actions).sum(-1)
    assert torch.allclose(actor.log_probabilities(means, actions), expected, atol=1e-5)
    single = actor.log_probabilities(means, actions[:, 0])
    assert torch.allclose(single, expected[:, 0], atol=1e-5)
