"""TSCAC with the Gaussian policy family: pieces, a training loop and the command end to end."""

import math

import numpy as np
import pytest
import torch
import yaml

from recrl import data
from recrl.cli import main
from recrl.errors import InvalidArgumentError
from recrl.nets import (
    EnsembleStateEncoder,
    GaussianActorEnsemble,
    gaussian_candidate_log_probabilities,
)
from recrl.tscac.agents import InteractionActorCritic, Tscac, build_method
from recrl.tscac.closed_form import gaussian_product_mean, tilted_sample_weights
from recrl.tscac.config import InteractionActorCriticConfig, TscacConfig
from recrl.tscac.data import Transitions
from recrl.tscac.evaluate import Evaluator
from recrl.tscac.io import load_method, save_method

SMALL = {
    "candidates": 20,
    "hidden_dims": (8,),
    "embedding_dim": 4,
    "action_dim": 4,
    "batch_size": 16,
    "policy": "gaussian",
}


@pytest.fixture(autouse=True)
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("tscac_gaussian")
    source = data.write_synthetic_kuairand(data.SyntheticConfig(rows=3000, seed=2), root / "log")
    return data.prepare(data.read_kuairand(source), root / "prepared")


def test_candidate_probabilities_are_normalised_densities():
    generator = torch.Generator().manual_seed(0)
    means = torch.randn(2, 3, 4, generator=generator)
    vectors = torch.randn(10, 4, generator=generator)
    candidates = torch.tensor([[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    mask = torch.tensor([[True, True, True], [True, False, True], [True, True, True]])
    log_probabilities = gaussian_candidate_log_probabilities(means, vectors, candidates, mask, 0.7)
    sigma = 0.7
    for m in range(2):
        for b in range(3):
            densities = []
            for c in range(3):
                squared = float(((vectors[candidates[b, c]] - means[m, b]) ** 2).sum())
                density = math.exp(-squared / (2 * sigma**2)) if mask[b, c] else 0.0
                densities.append(density)
            expected = np.array(densities) / sum(densities)
            got = log_probabilities[m, b].exp().numpy()
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


def test_gaussian_ensemble_members_equal_separate_actors():
    torch.manual_seed(1)
    generator = torch.Generator().manual_seed(1)
    ensemble = GaussianActorEnsemble(EnsembleStateEncoder(3, 5, (4,), 12, 3), [6], 4, 0.3)
    numeric = torch.randn(7, 5, generator=generator)
    categorical = torch.randint(0, 4, (7, 1), generator=generator)
    history = torch.randint(0, 12, (7, 3), generator=generator)
    means = ensemble.means(numeric, categorical, history)
    actions = torch.randn(7, 4, generator=generator)
    densities = ensemble.log_probabilities(means, actions)
    for m in range(3):
        actor = ensemble.member(m)
        own = actor.means(numeric, categorical, history)
        torch.testing.assert_close(means[m], own)
        torch.testing.assert_close(densities[m], actor.log_probabilities(own, actions))


def test_linear_tilt_of_the_product_shifts_its_mean():
    # With A(s, a) = <g, a> the tilted product N(m, sigma^2 I) exp(A / Lambda) is
    # N(m + sigma^2 g / Lambda, sigma^2 I); the self-normalised sample weights recover the shift.
    generator = torch.Generator().manual_seed(2)
    means = torch.randn(3, 2, 4, generator=generator, dtype=torch.float64)
    lambdas = torch.tensor([0.5, 0.2, 0.3], dtype=torch.float64)
    slope = torch.randn(2, 4, generator=generator, dtype=torch.float64)
    sigma = 0.5
    centre = gaussian_product_mean(means, lambdas)
    noise = torch.randn(2, 200_000, 4, generator=generator, dtype=torch.float64)
    samples = centre.unsqueeze(1) + sigma * noise
    weights = tilted_sample_weights((samples * slope.unsqueeze(1)).sum(-1), float(lambdas.sum()))
    tilted_mean = (weights.unsqueeze(-1) * samples).sum(1)
    expected = centre + sigma**2 * slope / float(lambdas.sum())
    torch.testing.assert_close(tilted_mean, expected, atol=0.02, rtol=0.0)


def test_gaussian_tscac_trains_evaluates_and_reloads(prepared, tmp_path):
    spec = Transitions.build_spec(prepared, SMALL["candidates"])
    transitions = Transitions(prepared, spec)
    rows = transitions.split_rows("train")
    generator = np.random.default_rng(0)
    torch.manual_seed(0)
    method = build_method("tscac", spec, TscacConfig(**SMALL))
    assert isinstance(method, Tscac)
    assert method.gaussian
    before = [p.detach().clone() for p in method.actor.parameters()]
    for stage in method.stages:
        method.set_stage(stage)
        for _ in range(3):
            batch = transitions.batch(rows[generator.integers(0, len(rows), 16)])
            diagnostics = method.update(batch)
            assert all(np.isfinite(v) for v in diagnostics.values()), diagnostics
    assert "charts/effective_samples" in diagnostics
    after = list(method.actor.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after))
    method.eval()
    estimates = Evaluator(transitions, None).estimate(method.policy_log_probabilities, "validation")
    assert np.isfinite(estimates["ncis"]).all()

    batch = transitions.batch(transitions.split_rows("validation")[:8])
    with torch.no_grad():
        expected = method.policy_log_probabilities(batch.state(), batch.candidates, batch.mask)
    assert torch.allclose(expected.exp().sum(-1), torch.ones(8))
    save_method(method, tmp_path, "tscac")
    reloaded = load_method(tmp_path, "tscac")
    with torch.no_grad():
        got = reloaded.policy_log_probabilities(batch.state(), batch.candidates, batch.mask)
    torch.testing.assert_close(got, expected, rtol=0.0, atol=0.0)

    config = InteractionActorCriticConfig(**SMALL, response="is_like")
    interaction = build_method("interaction_ac", spec, config)
    assert isinstance(interaction, InteractionActorCritic)
    interaction.load_state_dict(method.state_dict())
    with torch.no_grad():
        selected = interaction.policy_log_probabilities(batch.state(), batch.candidates, batch.mask)
    assert torch.isfinite(selected.logsumexp(-1)).all()


def test_tscac_command_trains_the_gaussian_family(prepared, tmp_path):
    configuration = {
        "run": {
            "methods": ["behaviour_cloning", "interaction_ac", "tscac"],
            "behaviour_steps": 2,
            "lambda_sweep": [0.1, 0.001],
            "lambda_sweep_steps": 2,
        },
        "common": {**SMALL, "hidden_dims": [8], "steps": 3, "evaluation_interval": 1},
    }
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(configuration))
    out = tmp_path / "run"
    arguments = ["tscac", "--data", str(prepared.path), "--config", str(config_path)]
    assert main([*arguments, "--out", str(out), "--seed", "0"]) == 0
    table = (out / "table.md").read_text()
    for label in ("TSCAC", "BC", "Interaction-AC"):
        assert f"| {label} |" in table, label
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert resolved["methods"]["tscac"]["policy"] == "gaussian"
    assert resolved["methods"]["behaviour_cloning"].get("policy") is None
    reloaded = load_method(out / "models" / "seed0", "tscac")
    assert isinstance(reloaded, Tscac)
    assert reloaded.gaussian


def test_policy_family_is_checked():
    with pytest.raises(InvalidArgumentError, match="policy"):
        TscacConfig(policy="beta").validate()
    with pytest.raises(InvalidArgumentError, match="sigma"):
        TscacConfig(policy="gaussian", sigma=0.0).validate()


def test_stage_one_ignores_negative_weights(prepared):
    spec = Transitions.build_spec(prepared, SMALL["candidates"])
    transitions = Transitions(prepared, spec)
    batch = transitions.batch(transitions.split_rows("train")[:32])
    torch.manual_seed(0)
    config = TscacConfig(**{**SMALL, "behaviour_cloning_weight": 0.0})
    method = build_method("tscac", spec, config)
    assert isinstance(method, Tscac)
    vectors = method.action_vectors[batch.candidates.gather(1, batch.actions[:, None])[:, 0]]
    with torch.no_grad():
        means = method.stage_one_actors.means(*batch.state())
    # Slopes that give every interaction advantage sign_i * A_i = -|a - mu_i|^2 < 0.
    members = len(spec.reward_names)
    slopes = torch.zeros(members, 32, SMALL["action_dim"])
    for position, member in enumerate(method.interaction_members):
        sign = float(method.signs[position])
        slopes[member] = -sign * (vectors - means[position])
    loss, _ = method.compute_stage_one_actor_loss(batch, slopes)
    behaviour_only = -method.stage_one_actors.log_probabilities(means, vectors)[-1].mean()
    torch.testing.assert_close(loss.detach(), behaviour_only)
