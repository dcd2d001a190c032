"""Ranking policies over candidate sets."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from recrl.nets.mlp import MLP
from recrl.nets.state import StateEncoder

__all__ = ["CategoricalActor", "GaussianActor", "masked_log_softmax"]


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

    def scores(self, preferences: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """Score candidates int64 [B, C] (or [C], shared by the batch) as float [B, C]."""
        embedded: torch.Tensor = self.item_embeddings(candidates)
        if candidates.dim() == 1:
            return preferences @ embedded.T
        return torch.einsum("bd,bcd->bc", preferences, embedded)

    def log_probabilities(
        self, preferences: torch.Tensor, candidates: torch.Tensor
    ) -> torch.Tensor:
        """Return log pi(j | s) [B, C] over the candidates."""
        return torch.log_softmax(self.scores(preferences, candidates) / self.temperature, dim=-1)

    def masked_log_probabilities(
        self, preferences: torch.Tensor, candidates: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        """Return log pi(j | s) [B, C] over the candidates where ``mask`` [B, C] is true.

        Candidates outside the mask get probability zero (log-probability -inf).
        """
        logits = self.scores(preferences, candidates) / self.temperature
        return masked_log_softmax(logits, mask)


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
