"""State encoding: from the arrays of a prepared dataset to one dense vector per row."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["FieldEmbedding", "StateEncoder"]


class FieldEmbedding(nn.Module):
    """One embedding table for several categorical fields, each at its own offset.

    Field j with ``cardinalities[j]`` codes (0 = unknown or missing) owns rows
    ``offsets[j] .. offsets[j] + cardinalities[j] - 1`` of the table. Codes at or above a field's
    cardinality (values unseen when the table was built) map to that field's code 0.

    Args:
        cardinalities: number of codes of each field, code 0 included.
        embedding_dim: width of each field's embedding.
    """

    offsets: torch.Tensor
    cardinalities: torch.Tensor

    def __init__(self, cardinalities: Sequence[int], embedding_dim: int) -> None:
        super().__init__()
        if any(c < 1 for c in cardinalities):
            raise ValueError(f"cardinalities: expected positive counts, got {list(cardinalities)}")
        sizes = torch.tensor([0, *cardinalities], dtype=torch.int64)
        self.register_buffer("offsets", torch.cumsum(sizes, 0)[:-1].clone(), persistent=False)
        self.register_buffer(
            "cardinalities", torch.tensor(list(cardinalities), dtype=torch.int64), persistent=False
        )
        self.table = nn.Embedding(max(1, int(sizes.sum())), embedding_dim)
        self.fields = len(cardinalities)
        self.embedding_dim = embedding_dim

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        """Embed codes int64 [B, F] into [B, F, embedding_dim]."""
        if codes.shape[-1] != self.fields:
            raise ValueError(
                f"codes: expected {self.fields} fields, got shape {tuple(codes.shape)}"
            )
        known = (codes >= 0) & (codes < self.cardinalities)
        safe = torch.where(known, codes, torch.zeros_like(codes))
        embedded: torch.Tensor = self.table(safe + self.offsets)
        return embedded


class StateEncoder(nn.Module):
    """Concatenate numeric features, categorical embeddings and a pooled item history.

    The state of row t is ``[numeric_t, emb(categorical_t), mean(emb(history_t))]`` and, when
    ``include_item`` is set, the embedding of the item shown at t. History slots holding 0
    (padding or unknown) are left out of the mean.

    Args:
        numeric_dim: number of numeric features.
        cardinalities: codes per categorical field (0 included).
        item_vocabulary: number of item indices (0 included) for history and item embeddings.
        embedding_dim: width of every embedding.
        include_item: add the current item's embedding (a user-item state, as in RMTL);
            leave it out when the item is the action (as in TSCAC).
        include_history: add the pooled embedding of the previously seen items.
    """

    def __init__(
        self,
        numeric_dim: int,
        cardinalities: Sequence[int],
        item_vocabulary: int,
        embedding_dim: int = 16,
        *,
        include_item: bool = False,
        include_history: bool = True,
    ) -> None:
        super().__init__()
        self.fields = FieldEmbedding(cardinalities, embedding_dim) if cardinalities else None
        self.items = nn.Embedding(item_vocabulary, embedding_dim, padding_idx=0)
        self.include_item = include_item
        self.include_history = include_history
        self.numeric_dim = numeric_dim
        self.constructor_arguments = {
            "numeric_dim": numeric_dim,
            "cardinalities": [int(c) for c in cardinalities],
            "item_vocabulary": int(item_vocabulary),
            "embedding_dim": int(embedding_dim),
            "include_item": include_item,
            "include_history": include_history,
        }
        """Arguments that rebuild this encoder, in JSON types (used by policy export)."""
        self.output_dim = (
            numeric_dim
            + len(cardinalities) * embedding_dim
            + embedding_dim * (int(include_item) + int(include_history))
        )

    def forward(
        self,
        numeric: torch.Tensor,
        categorical: torch.Tensor,
        history: torch.Tensor,
        items: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Encode a batch into float [B, output_dim].

        Args:
            numeric: float32 [B, numeric_dim].
            categorical: int64 [B, F] codes.
            history: int64 [B, L] item indices, 0 for padding.
            items: int64 [B] item indices, needed when ``include_item`` is set.
        """
        parts = [numeric]
        if self.fields is not None:
            parts.append(self.fields(categorical).flatten(1))
        if self.include_history:
            mask = (history > 0).unsqueeze(-1).to(numeric.dtype)
            embedded = self.items(history.clamp(0, self.items.num_embeddings - 1)) * mask
            parts.append(embedded.sum(1) / mask.sum(1).clamp(min=1.0))
        if self.include_item:
            if items is None:
                raise ValueError("items: required because the encoder includes the current item")
            parts.append(self.items(items.clamp(0, self.items.num_embeddings - 1)))
        return torch.cat(parts, dim=1)
