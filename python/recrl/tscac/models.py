"""Networks of TSCAC and its baselines: critic ensembles, actors and supervised rankers."""

from __future__ import annotations

import math

import torch
from torch import nn

from recrl.errors import InvalidArgumentError
from recrl.nets import (
    MLP,
    CategoricalActor,
    CategoricalActorEnsemble,
    EnsembleMLP,
    EnsembleStateEncoder,
    GaussianActorEnsemble,
    StateEncoder,
    masked_log_softmax,
    score_candidates,
)
from recrl.nets.state import gather_member_rows
from recrl.tscac.config import CommonConfig
from recrl.tscac.data import ProblemSpec

__all__ = [
    "CriticEnsemble",
    "DeepFmRanker",
    "WideDeepRanker",
    "make_actor",
    "item_action_vectors",
    "make_actor_ensemble",
    "make_encoder",
    "make_gaussian_ensemble",
]


def make_encoder(spec: ProblemSpec, config: CommonConfig) -> StateEncoder:
    """Build a state encoder of user features, row context and history (no current item)."""
    return StateEncoder(
        spec.numeric_dim, spec.cardinalities, spec.item_vocabulary, config.embedding_dim
    )


def make_actor(spec: ProblemSpec, config: CommonConfig) -> CategoricalActor:
    """Build a categorical actor over candidate items with its own state encoder."""
    return CategoricalActor(
        make_encoder(spec, config),
        config.hidden_dims,
        spec.item_vocabulary,
        action_dim=config.action_dim,
        temperature=config.temperature,
    )


def make_actor_ensemble(
    members: int, spec: ProblemSpec, config: CommonConfig
) -> CategoricalActorEnsemble:
    """Build M categorical actors as one ensemble, each member shaped like ``make_actor``'s."""
    encoder = EnsembleStateEncoder(
        members, spec.numeric_dim, spec.cardinalities, spec.item_vocabulary, config.embedding_dim
    )
    return CategoricalActorEnsemble(
        encoder,
        config.hidden_dims,
        spec.item_vocabulary,
        action_dim=config.action_dim,
        temperature=config.temperature,
    )


def make_gaussian_ensemble(
    members: int, spec: ProblemSpec, config: CommonConfig, sigma: float
) -> GaussianActorEnsemble:
    """Build M Gaussian actors over action vectors of width ``action_dim`` as one ensemble."""
    encoder = EnsembleStateEncoder(
        members, spec.numeric_dim, spec.cardinalities, spec.item_vocabulary, config.embedding_dim
    )
    return GaussianActorEnsemble(encoder, config.hidden_dims, config.action_dim, sigma)


def item_action_vectors(item_vocabulary: int, action_dim: int, seed: int = 0) -> torch.Tensor:
    """Return fixed action vectors phi(j) float [V, D] of every item index, drawn N(0, I / D).

    The continuous action space of the Gaussian family needs each logged item as a point, and
    the point must not move while the critics learn values of it. The vectors are drawn once
    from a seeded generator (unit expected norm) and stored with the model.
    """
    generator = torch.Generator().manual_seed(seed)
    vectors = torch.randn(item_vocabulary, action_dim, generator=generator)
    return vectors / math.sqrt(action_dim)


def actor_log_probabilities(
    actor: CategoricalActor,
    state: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    candidates: torch.Tensor,
    mask: torch.Tensor,
    shared: int = 0,
) -> torch.Tensor:
    """Return log pi(j|s) [B, C] of ``actor`` over masked candidates.

    ``shared`` counts the leading columns of ``candidates`` equal in every row.
    """
    return actor.masked_log_probabilities(actor.preferences(*state), candidates, mask, shared)


class CriticEnsemble(nn.Module):
    """M action-value critics Q_m(s, j), evaluated together.

    Each member is Q_m(s, j) = u_m(s) + <g_m(s), e_m(j)>, with [u_m, g_m] one member of an
    ``EnsembleMLP`` over a shared state encoding and e_m a member's item embedding. All
    members run as one batched matrix product per layer; no Python loop runs over members.
    Over a continuous action space the same heads give Q_m(s, a) = u_m(s) + <g_m(s), a>
    (``action_values``), and the ensemble learns no item embeddings.

    Args:
        members: M, number of critics (one per response, or one for a scalarised reward).
        spec: the problem.
        config: network widths.
        item_embeddings: learn e_m(j) for item candidates; false for continuous actions.
    """

    item_embeddings: torch.Tensor | None

    def __init__(
        self, members: int, spec: ProblemSpec, config: CommonConfig, item_embeddings: bool = True
    ) -> None:
        super().__init__()
        self.encoder = make_encoder(spec, config)
        self.heads = EnsembleMLP(
            members, self.encoder.output_dim, config.hidden_dims, 1 + config.action_dim
        )
        if item_embeddings:
            self.item_embeddings = nn.Parameter(
                torch.randn(members, spec.item_vocabulary, config.action_dim) * 0.01
            )
        else:
            self.register_parameter("item_embeddings", None)
        self.members = members

    def _items(self) -> torch.Tensor:
        if self.item_embeddings is None:
            raise InvalidArgumentError(
                "candidates: this critic ensemble scores action vectors (action_values), "
                "not item candidates"
            )
        return self.item_embeddings

    def action_values(
        self, state: tuple[torch.Tensor, torch.Tensor, torch.Tensor], actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return Q_m(s, a) [M, B] of action vectors a float [B, D] and g_m(s) [M, B, D].

        Q is linear in a, so E_{a ~ N(mu, sigma^2 I)}[Q_m(s, a)] = Q_m(s, mu) exactly and the
        advantage of a is <g_m(s), a - mu>.
        """
        values, preferences = self._heads(*state)
        return values.squeeze(-1) + (preferences * actions).sum(-1), preferences

    def forward(
        self,
        numeric: torch.Tensor,
        categorical: torch.Tensor,
        history: torch.Tensor,
        candidates: torch.Tensor,
        shared: int = 0,
    ) -> torch.Tensor:
        """Return Q_m(s, j) [M, B, C] of every member for candidates int64 [B, C].

        ``shared`` counts the leading columns of ``candidates`` equal in every row (see
        ``recrl.nets.score_candidates``).
        """
        values, preferences = self._heads(numeric, categorical, history)
        return values + score_candidates(preferences, self._items(), candidates, shared)

    def logged_and_all(
        self,
        state: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        candidates: torch.Tensor,
        actions: torch.Tensor,
        shared: int = 0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return Q_m(s, a) [M, B] of the logged items and, detached, Q_m(s, j) [M, B, C].

        Only the logged values carry gradients, because a TD loss needs no other. The values
        of every candidate (for advantages) are computed without building a graph.

        Args:
            state: (numeric, categorical, history) of the batch.
            candidates: int64 [B, C].
            actions: int64 [B], the logged position in ``candidates``.
            shared: leading columns of ``candidates`` equal in every row.
        """
        values, preferences = self._heads(*state)
        logged_items = candidates.gather(1, actions.unsqueeze(1)).squeeze(1)
        items = self._items()
        embedded = gather_member_rows(items, logged_items)
        logged = values.squeeze(-1) + (preferences * embedded).sum(-1)
        with torch.no_grad():
            every = values.detach() + score_candidates(
                preferences.detach(), items.detach(), candidates, shared
            )
        return logged, every

    def _heads(
        self, numeric: torch.Tensor, categorical: torch.Tensor, history: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return u_m(s) [M, B, 1] and g_m(s) [M, B, D]."""
        heads = self.heads.forward_parts(self.encoder.parts(numeric, categorical, history))
        return heads[..., :1], heads[..., 1:]


class _Ranker(nn.Module):
    """Shared parts of the supervised rankers: encoder, item bias and the deep tower."""

    def __init__(self, spec: ProblemSpec, config: CommonConfig) -> None:
        super().__init__()
        self.encoder = make_encoder(spec, config)
        self.item_bias = nn.Embedding(spec.item_vocabulary, 1)
        self.deep_items = nn.Embedding(spec.item_vocabulary, config.action_dim)
        # The first deep layer over [u(s), v_j] is split into a state part and an item part,
        # so the state part runs once per row instead of once per candidate.
        first, *rest = config.hidden_dims or (1,)
        self.deep_state = nn.Linear(self.encoder.output_dim, first)
        self.deep_item = nn.Linear(config.action_dim, first, bias=False)
        self.deep = MLP(first, rest, 1)
        self.temperature = config.temperature

    def scores(
        self,
        state: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        candidates: torch.Tensor,
    ) -> torch.Tensor:
        """Score candidates int64 [B, C] as float [B, C]."""
        raise NotImplementedError

    def deep_scores(self, encoded: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """Run the deep tower on [u(s), v_j] of every candidate, float [B, C]."""
        hidden = self.deep_state(encoded).unsqueeze(1) + self.deep_item(self.deep_items(candidates))
        deep: torch.Tensor = self.deep(torch.relu(hidden))
        return deep.squeeze(-1)

    def log_probabilities(
        self,
        state: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        candidates: torch.Tensor,
        mask: torch.Tensor,
    ) -> torch.Tensor:
        """Return log pi(j|s) [B, C] = log-softmax of the scores over masked candidates."""
        return masked_log_softmax(self.scores(state, candidates) / self.temperature, mask)


class WideDeepRanker(_Ranker):
    """Wide&Deep scorer (Cheng et al., 2016) as a softmax policy over candidates.

    score(s, j) = b_j + <W u(s), w_j> + deep([u(s), v_j]): an item bias and a low-rank cross of
    state and item (the wide part) plus an MLP over the state encoding and item embedding.
    """

    def __init__(self, spec: ProblemSpec, config: CommonConfig) -> None:
        super().__init__(spec, config)
        self.cross = nn.Linear(self.encoder.output_dim, config.action_dim, bias=False)
        self.wide_items = nn.Embedding(spec.item_vocabulary, config.action_dim)

    def scores(
        self,
        state: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        candidates: torch.Tensor,
    ) -> torch.Tensor:
        """Score candidates int64 [B, C] as float [B, C]."""
        encoded = self.encoder(*state)
        wide: torch.Tensor = self.item_bias(candidates).squeeze(-1)
        wide = wide + torch.einsum("bd,bcd->bc", self.cross(encoded), self.wide_items(candidates))
        return wide + self.deep_scores(encoded, candidates)


class DeepFmRanker(_Ranker):
    """DeepFM scorer (Guo et al., 2017) as a softmax policy over candidates.

    score(s, j) = b_j + FM(s, j) + deep([u(s), v_j]), where the factorisation-machine term sums
    <v_f, v_g> over every pair of fields, the state's categorical fields, the pooled history and
    the item; pairs of state fields are the same for every candidate and only shift the score.
    """

    def __init__(self, spec: ProblemSpec, config: CommonConfig) -> None:
        super().__init__(spec, config)
        self.fm_items = nn.Embedding(spec.item_vocabulary, config.embedding_dim)
        # The FM item term sums over every state field; small weights keep early scores near 0.
        nn.init.normal_(self.fm_items.weight, std=0.01)

    def scores(
        self,
        state: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        candidates: torch.Tensor,
    ) -> torch.Tensor:
        """Score candidates int64 [B, C] as float [B, C]."""
        numeric, categorical, history = state
        encoded = self.encoder(numeric, categorical, history)
        fields = self._state_fields(categorical, history)
        field_sum = fields.sum(1)
        state_pairs = 0.5 * (field_sum.pow(2) - fields.pow(2).sum(1)).sum(-1, keepdim=True)
        fm = state_pairs + torch.einsum("bd,bcd->bc", field_sum, self.fm_items(candidates))
        bias: torch.Tensor = self.item_bias(candidates).squeeze(-1)
        return bias + fm + self.deep_scores(encoded, candidates)

    def _state_fields(self, categorical: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        parts = []
        if self.encoder.fields is not None:
            parts.append(self.encoder.fields(categorical))
        mask = (history > 0).unsqueeze(-1).float()
        pooled = (self.encoder.items(history) * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        parts.append(pooled.unsqueeze(1))
        return torch.cat(parts, dim=1)
