"""Ranking policies over candidate sets."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from recrl.nets.mlp import MLP
from recrl.nets.state import StateEncoder

__all__ = ["CategoricalActor"]


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
