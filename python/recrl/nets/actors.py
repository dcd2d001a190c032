"""Ranking policies over candidate sets."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from recrl.nets.ensemble import EnsembleLinear, EnsembleMLP
from recrl.nets.mlp import MLP
from recrl.nets.state import EnsembleStateEncoder, StateEncoder, gather_member_rows

__all__ = [
    "CategoricalActor",
    "CategoricalActorEnsemble",
    "GaussianActor",
    "GaussianActorEnsemble",
    "gaussian_candidate_log_probabilities",
    "gaussian_log_density",
    "masked_log_softmax",
    "score_candidates",
]


def score_candidates(
    preferences: torch.Tensor, embeddings: torch.Tensor, candidates: torch.Tensor, shared: int = 0
) -> torch.Tensor:
    """Score <preference_m(s), e_m(j)> of M members for every candidate of every row.

    The first ``shared`` columns of ``candidates`` must contain the same items in every row (the
    global candidate set). They are scored with one product [B, D] @ [D, shared] per member.
    A per-row lookup would read B x shared embeddings and scatter as many rows in the backward
    pass. The other columns are looked up per row.

    Args:
        preferences: float [M, B, D].
        embeddings: float [M, V, D], each member's item embeddings.
        candidates: int64 [B, C] item indices.
        shared: number of leading columns shared by every row, 0 <= shared <= C.

    Returns:
        float [M, B, C].
    """
    parts = []
    if shared > 0:
        common = embeddings.index_select(1, candidates[0, :shared])
        parts.append(torch.bmm(preferences, common.transpose(1, 2)))
    if shared < candidates.shape[1]:
        own = gather_member_rows(embeddings, candidates[:, shared:])
        parts.append(torch.einsum("mbd,mbcd->mbc", preferences, own))
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)


class CategoricalActor(nn.Module):
    """A softmax policy over candidates, scored by a preference vector.

    The actor maps a state s to a preference vector a = f(s) [D]; candidate item j scores
    <a, phi_j>, with phi the learned item embedding [D], and pi(j | s) = softmax_j(score / tau).
    Serving ranks candidates by the score, which is all ``recrl.serving`` needs to export.

    Args:
        encoder: turns the dataset arrays of a row into a state vector.
        hidden_dims: widths of the hidden layers of f.
        item_vocabulary: number of item indices (0 = unknown) that phi covers.
        action_dim: D, width of the preference vector and the item embeddings.
        temperature: tau > 0.
    """

    def __init__(
        self,
        encoder: StateEncoder,
        hidden_dims: Sequence[int],
        item_vocabulary: int,
        action_dim: int = 16,
        temperature: float = 1.0,
    ) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature: expected a positive number, got {temperature}")
        self.encoder = encoder
        self.preference = MLP(encoder.output_dim, hidden_dims, action_dim)
        self.item_embeddings = nn.Embedding(item_vocabulary, action_dim)
        self.temperature = temperature
        self.constructor_arguments = {
            "encoder": encoder.constructor_arguments,
            "hidden_dims": [int(width) for width in hidden_dims],
            "item_vocabulary": int(item_vocabulary),
            "action_dim": int(action_dim),
            "temperature": float(temperature),
        }
        """Arguments that rebuild this actor, in JSON types (``recrl export`` reads them)."""

    def preferences(
        self, numeric: torch.Tensor, categorical: torch.Tensor, history: torch.Tensor
    ) -> torch.Tensor:
        """Return the preference vectors [B, D] of a batch of states."""
        state = self.encoder(numeric, categorical, history)
        output: torch.Tensor = self.preference(state)
        return output

    def scores(
        self, preferences: torch.Tensor, candidates: torch.Tensor, shared: int = 0
    ) -> torch.Tensor:
        """Score candidates int64 [B, C] (or [C], shared by the batch) as float [B, C].

        ``shared`` counts leading columns of a [B, C] ``candidates`` that hold the same items
        in every row (see ``score_candidates``).
        """
        if candidates.dim() == 1:
            embedded: torch.Tensor = self.item_embeddings(candidates)
            return preferences @ embedded.T
        weights = self.item_embeddings.weight.unsqueeze(0)
        return score_candidates(preferences.unsqueeze(0), weights, candidates, shared)[0]

    def log_probabilities(
        self, preferences: torch.Tensor, candidates: torch.Tensor
    ) -> torch.Tensor:
        """Return log pi(j | s) [B, C] over the candidates."""
        return torch.log_softmax(self.scores(preferences, candidates) / self.temperature, dim=-1)

    def masked_log_probabilities(
        self,
        preferences: torch.Tensor,
        candidates: torch.Tensor,
        mask: torch.Tensor | None,
        shared: int = 0,
    ) -> torch.Tensor:
        """Return log pi(j | s) [B, C] over the candidates where ``mask`` [B, C] is true.

        Candidates outside the mask get probability zero (log-probability -inf). ``shared`` as
        in ``scores``.
        """
        logits = self.scores(preferences, candidates, shared) / self.temperature
        return masked_log_softmax(logits, mask)


class CategoricalActorEnsemble(nn.Module):
    """M categorical actors of one shape, evaluated together.

    Member m computes what a ``CategoricalActor`` with member m's weights computes (``member``
    returns that actor). The encoders, preference MLPs and item embeddings are stacked, so
    every layer is one batched product over the members and no Python loop runs over actors.

    Args:
        encoder: the M stacked state encoders.
        hidden_dims: widths of the hidden layers of each preference MLP.
        item_vocabulary: number of item indices (0 = unknown) of the item embeddings.
        action_dim: D, width of the preference vectors and the item embeddings.
        temperature: tau > 0, shared by the members.
    """

    def __init__(
        self,
        encoder: EnsembleStateEncoder,
        hidden_dims: Sequence[int],
        item_vocabulary: int,
        action_dim: int = 16,
        temperature: float = 1.0,
    ) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature: expected a positive number, got {temperature}")
        self.encoder = encoder
        self.members = encoder.members
        self.preference = EnsembleMLP(encoder.members, encoder.output_dim, hidden_dims, action_dim)
        # Standard normal, as nn.Embedding initialises CategoricalActor.item_embeddings.
        self.item_embeddings = nn.Parameter(
            torch.randn(encoder.members, item_vocabulary, action_dim)
        )
        self.hidden_dims = [int(width) for width in hidden_dims]
        self.item_vocabulary = item_vocabulary
        self.action_dim = action_dim
        self.temperature = temperature

    def preferences(
        self, numeric: torch.Tensor, categorical: torch.Tensor, history: torch.Tensor
    ) -> torch.Tensor:
        """Return the preference vectors [M, B, D] of a batch of states."""
        return self.preference.forward_parts(self.encoder.parts(numeric, categorical, history))

    def masked_log_probabilities(
        self,
        preferences: torch.Tensor,
        candidates: torch.Tensor,
        mask: torch.Tensor | None,
        shared: int = 0,
    ) -> torch.Tensor:
        """Return log pi_m(j | s) [M, B, C] of every member over masked candidates.

        Args:
            preferences: float [M, B, D] from ``preferences``.
            candidates: int64 [B, C] item indices.
            mask: bool [B, C], true for candidates that exist.
            shared: leading columns of ``candidates`` equal in every row (see
                ``score_candidates``).
        """
        scores = score_candidates(preferences, self.item_embeddings, candidates, shared)
        return masked_log_softmax(scores / self.temperature, mask)

    def member(self, index: int) -> CategoricalActor:
        """Return member ``index`` as a separate ``CategoricalActor`` with copied weights."""
        actor = CategoricalActor(
            self.encoder.member(index),
            self.hidden_dims,
            self.item_vocabulary,
            action_dim=self.action_dim,
            temperature=self.temperature,
        ).to(self.item_embeddings.device)
        linears = [layer for layer in actor.preference.layers if isinstance(layer, nn.Linear)]
        with torch.no_grad():
            for linear, layer in zip(linears, self.preference.layers):
                if not isinstance(layer, EnsembleLinear):
                    raise TypeError("preference: expected EnsembleLinear layers")
                linear.weight.copy_(layer.weight[index].T)
                linear.bias.copy_(layer.bias[index, 0])
            actor.item_embeddings.weight.copy_(self.item_embeddings[index])
        return actor


def masked_log_softmax(logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Log-softmax over the last axis with entries where ``mask`` [.., C] is false at -inf."""
    if mask is not None:
        logits = logits.masked_fill(~mask, float("-inf"))
    return torch.log_softmax(logits, dim=-1)


class GaussianActor(nn.Module):
    """A Gaussian policy N(mu(s), sigma^2 I) over a continuous action vector, sigma shared.

    Serving can rank candidate items by <mu(s), phi_j> for any item representation phi.

    Args:
        encoder: turns the dataset arrays of a row into a state vector.
        hidden_dims: widths of the hidden layers of mu.
        action_dim: D, width of the action vector.
        sigma: the shared standard deviation, > 0.
    """

    def __init__(
        self,
        encoder: StateEncoder,
        hidden_dims: Sequence[int],
        action_dim: int = 16,
        sigma: float = 0.1,
    ) -> None:
        super().__init__()
        if sigma <= 0:
            raise ValueError(f"sigma: expected a positive number, got {sigma}")
        self.encoder = encoder
        self.mean = MLP(encoder.output_dim, hidden_dims, action_dim)
        self.sigma = sigma
        self.action_dim = action_dim

    def means(
        self, numeric: torch.Tensor, categorical: torch.Tensor, history: torch.Tensor
    ) -> torch.Tensor:
        """Return the means mu(s) [B, D] of a batch of states."""
        output: torch.Tensor = self.mean(self.encoder(numeric, categorical, history))
        return output

    def log_probabilities(self, means: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Return log N(actions; means, sigma^2 I) for actions [B, D] or [B, S, D].

        The result is [B] or [B, S]: the density of each action vector.
        """
        if actions.dim() == 3:
            means = means.unsqueeze(1)
        squared = ((actions - means) ** 2).sum(-1)
        constant = self.action_dim * (math.log(self.sigma) + 0.5 * math.log(2 * math.pi))
        return -squared / (2 * self.sigma**2) - constant

    def sample(
        self, means: torch.Tensor, count: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Draw ``count`` actions per state from N(means [B, D], sigma^2 I) as [B, count, D]."""
        noise = torch.randn(
            (means.shape[0], count, means.shape[1]),
            generator=generator,
            device=means.device,
            dtype=means.dtype,
        )
        return means.unsqueeze(1) + self.sigma * noise


def gaussian_log_density(means: torch.Tensor, actions: torch.Tensor, sigma: float) -> torch.Tensor:
    """Return log N(actions; means, sigma^2 I) over the last axis.

    Args:
        means: float [..., D].
        actions: float [..., D], broadcastable against ``means``.
        sigma: the shared standard deviation, > 0.

    Returns:
        float [...], the broadcast shape without the last axis.
    """
    width = means.shape[-1]
    squared = ((actions - means) ** 2).sum(-1)
    constant = width * (math.log(sigma) + 0.5 * math.log(2 * math.pi))
    return -squared / (2 * sigma**2) - constant


def gaussian_candidate_log_probabilities(
    means: torch.Tensor,
    action_vectors: torch.Tensor,
    candidates: torch.Tensor,
    mask: torch.Tensor | None,
    sigma: float,
) -> torch.Tensor:
    """Score candidate items under a Gaussian policy over action vectors.

    Item j is the point phi(j) of the action space. Its probability is the Gaussian density
    there, normalised over the row's candidates:
    pi(j | s) = N(phi(j); mu(s), sigma^2 I) / sum_k N(phi(k); mu(s), sigma^2 I), a softmax of
    -|phi(j) - mu(s)|^2 / (2 sigma^2).

    Args:
        means: float [..., B, D], mu(s).
        action_vectors: float [V, D], phi of every item index.
        candidates: int64 [B, C] item indices.
        mask: bool [B, C], true for candidates that exist.
        sigma: the shared standard deviation, > 0.

    Returns:
        float [..., B, C] log-probabilities, -inf outside the mask.
    """
    points = action_vectors[candidates]
    squared = ((points - means.unsqueeze(-2)) ** 2).sum(-1)
    return masked_log_softmax(-squared / (2 * sigma**2), mask)


class GaussianActorEnsemble(nn.Module):
    """M Gaussian actors N(mu_m(s), sigma^2 I) of one shape, evaluated together.

    Member m computes what a ``GaussianActor`` with member m's weights computes (``member``
    returns that actor); every layer is one batched product over the members.

    Args:
        encoder: the M stacked state encoders.
        hidden_dims: widths of the hidden layers of each mean network.
        action_dim: D, width of the action vector.
        sigma: the shared standard deviation, > 0.
    """

    def __init__(
        self,
        encoder: EnsembleStateEncoder,
        hidden_dims: Sequence[int],
        action_dim: int = 16,
        sigma: float = 0.1,
    ) -> None:
        super().__init__()
        if sigma <= 0:
            raise ValueError(f"sigma: expected a positive number, got {sigma}")
        self.encoder = encoder
        self.members = encoder.members
        self.mean = EnsembleMLP(encoder.members, encoder.output_dim, hidden_dims, action_dim)
        self.hidden_dims = [int(width) for width in hidden_dims]
        self.action_dim = action_dim
        self.sigma = sigma

    def means(
        self, numeric: torch.Tensor, categorical: torch.Tensor, history: torch.Tensor
    ) -> torch.Tensor:
        """Return the means mu_m(s) [M, B, D] of a batch of states."""
        return self.mean.forward_parts(self.encoder.parts(numeric, categorical, history))

    def log_probabilities(self, means: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Return log N(actions; mu_m, sigma^2 I) [M, B] for actions [B, D] or [M, B, D]."""
        return gaussian_log_density(means, actions, self.sigma)

    def member(self, index: int) -> GaussianActor:
        """Return member ``index`` as a separate ``GaussianActor`` with copied weights."""
        actor = GaussianActor(
            self.encoder.member(index), self.hidden_dims, self.action_dim, self.sigma
        )
        linears = [layer for layer in actor.mean.layers if isinstance(layer, nn.Linear)]
        with torch.no_grad():
            for linear, layer in zip(linears, self.mean.layers):
                if not isinstance(layer, EnsembleLinear):
                    raise TypeError("mean: expected EnsembleLinear layers")
                linear.weight.copy_(layer.weight[index].T)
                linear.bias.copy_(layer.bias[index, 0])
        return actor.to(self.encoder.item_tables.device)
