"""Batched ensembles of TSCAC compute what separate modules compute."""

import pytest
import torch

from recrl.nets import (
    CategoricalActorEnsemble,
    EnsembleMLP,
    EnsembleStateEncoder,
    score_candidates,
)
from recrl.tscac.agents import Tscac
from recrl.tscac.config import TscacConfig
from recrl.tscac.data import ProblemSpec

RESPONSES = ("watch_time", "is_click", "is_like", "is_hate")


def _spec() -> ProblemSpec:
    return ProblemSpec(
        numeric_dim=5,
        cardinalities=(3, 4),
        item_vocabulary=30,
        reward_names=RESPONSES,
        reward_scales=(1.0,) * len(RESPONSES),
        reward_means=(0.5,) * len(RESPONSES),
        candidate_items=(3, 7, 1, 12),
    )


def _state(rows: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    numeric = torch.randn(rows, 5, generator=generator)
    categorical = torch.stack(
        [
            torch.randint(0, 5, (rows,), generator=generator),
            torch.randint(-1, 4, (rows,), generator=generator),
        ],
        dim=1,
    )
    history = torch.randint(0, 30, (rows, 6), generator=generator)
    history[0] = 0
    return numeric, categorical, history


def _candidates(rows: int, generator: torch.Generator) -> torch.Tensor:
    shared = torch.tensor([3, 7, 1, 12]).expand(rows, 4)
    logged = torch.randint(0, 30, (rows, 2), generator=generator)
    return torch.cat([shared, logged], dim=1)


@pytest.mark.parametrize("shared", [0, 2, 4, 6])
def test_score_candidates_equals_row_lookup(shared):
    generator = torch.Generator().manual_seed(0)
    preferences = torch.randn(3, 8, 5, generator=generator)
    embeddings = torch.randn(3, 30, 5, generator=generator)
    candidates = _candidates(8, generator)
    expected = torch.einsum("mbd,mbcd->mbc", preferences, embeddings[:, candidates])
    scored = score_candidates(preferences, embeddings, candidates, min(shared, 4))
    torch.testing.assert_close(scored, expected)


def test_forward_parts_equals_forward_of_concatenation():
    generator = torch.Generator().manual_seed(1)
    ensemble = EnsembleMLP(3, 9, [7, 4], 2)
    shared = torch.randn(6, 5, generator=generator)
    own = torch.randn(3, 6, 4, generator=generator, requires_grad=True)
    combined = torch.cat([shared.expand(3, 6, 5), own], dim=-1)
    torch.testing.assert_close(ensemble.forward_parts([shared, own]), ensemble(combined))
    both = torch.randn(6, 9, generator=generator)
    torch.testing.assert_close(ensemble.forward_parts([both[:, :5], both[:, 5:]]), ensemble(both))
    with pytest.raises(ValueError, match="parts"):
        ensemble.forward_parts([shared])


def test_actor_ensemble_members_equal_separate_actors():
    generator = torch.Generator().manual_seed(2)
    torch.manual_seed(2)
    encoder = EnsembleStateEncoder(3, 5, (3, 4), 30, 4)
    ensemble = CategoricalActorEnsemble(encoder, [8], 30, action_dim=5, temperature=0.7)
    state = _state(8, generator)
    candidates = _candidates(8, generator)
    mask = torch.ones_like(candidates, dtype=torch.bool)
    mask[:, 4] = False
    together = ensemble.masked_log_probabilities(
        ensemble.preferences(*state), candidates, mask, shared=4
    )
    for m in range(3):
        actor = ensemble.member(m)
        alone = actor.masked_log_probabilities(actor.preferences(*state), candidates, mask)
        torch.testing.assert_close(together[m], alone)
        torch.testing.assert_close(
            encoder.member(m)(*state),
            torch.cat(
                [part if part.dim() == 2 else part[m] for part in encoder.parts(*state)], dim=1
            ),
        )


def test_critic_shared_scoring_equals_lookup():
    generator = torch.Generator().manual_seed(3)
    torch.manual_seed(3)
    method = Tscac(_spec(), TscacConfig(hidden_dims=(8,), candidates=4, embedding_dim=4))
    state = _state(8, generator)
    candidates = _candidates(8, generator)[:, :5]
    actions = torch.randint(0, 5, (8,), generator=generator)
    assert method.shared_count(candidates) == 4
    assert method.shared_count(candidates.flip(1)) == 0
    full = method.critics(*state, candidates)
    logged, every = method.critics.logged_and_all(state, candidates, actions, shared=4)
    torch.testing.assert_close(every, full.detach())
    torch.testing.assert_close(logged, full.gather(2, actions.expand(4, 8).unsqueeze(2))[..., 0])
    assert logged.requires_grad
    assert not every.requires_grad
