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
        return torch.cat(self.parts(numeric, categorical, history, items), dim=1)

    def parts(
        self,
        numeric: torch.Tensor,
        categorical: torch.Tensor,
        history: torch.Tensor,
        items: torch.Tensor | None = None,
    ) -> list[torch.Tensor]:
        """Return [numeric [B, numeric_dim], embeddings [B, output_dim - numeric_dim]].

        ``forward`` is their concatenation. Keeping the numeric features apart lets a first layer
        skip the input gradient of the part that needs none (see ``EnsembleMLP.forward_parts``).
        Arguments as in ``forward``.
        """
        embedded_parts = []
        if self.fields is not None:
            embedded_parts.append(self.fields(categorical).flatten(1))
        if self.include_history:
            mask = (history > 0).unsqueeze(-1).to(numeric.dtype)
            embedded = self.items(history.clamp(0, self.items.num_embeddings - 1)) * mask
            embedded_parts.append(embedded.sum(1) / mask.sum(1).clamp(min=1.0))
        if self.include_item:
            if items is None:
                raise ValueError("items: required because the encoder includes the current item")
            embedded_parts.append(self.items(items.clamp(0, self.items.num_embeddings - 1)))
        if not embedded_parts:
            return [numeric]
        return [numeric, torch.cat(embedded_parts, dim=1)]


def gather_member_rows(tables: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """Look up rows of M stacked tables: tables[m, indices] for every member m.

    Args:
        tables: float [M, V, E], one table per member.
        indices: int64 [...], row indices in [0, V).

    Returns:
        float [M, ..., E].
    """
    members, rows, width = tables.shape
    offsets = torch.arange(members, device=indices.device) * rows
    shifted = indices.unsqueeze(0) + offsets.view(members, *([1] * indices.dim()))
    return nn.functional.embedding(shifted, tables.reshape(members * rows, width))


class EnsembleStateEncoder(nn.Module):
    """M state encoders of one shape (no current item), with stacked embedding tables.

    Member m computes what a ``StateEncoder`` with member m's tables computes. The numeric
    features are shared by every member and returned once, so the first layer of an ensemble
    multiplies them without copying them M times.

    Args:
        members: M.
        numeric_dim: number of numeric features.
        cardinalities: codes per categorical field (0 included).
        item_vocabulary: number of item indices (0 = padding) of the history table.
        embedding_dim: width of every embedding.
    """

    offsets: torch.Tensor
    cardinalities: torch.Tensor

    def __init__(
        self,
        members: int,
        numeric_dim: int,
        cardinalities: Sequence[int],
        item_vocabulary: int,
        embedding_dim: int = 16,
    ) -> None:
        super().__init__()
        if members < 1:
            raise ValueError(f"members: expected a positive count, got {members}")
        if any(c < 1 for c in cardinalities):
            raise ValueError(f"cardinalities: expected positive counts, got {list(cardinalities)}")
        sizes = torch.tensor([0, *cardinalities], dtype=torch.int64)
        self.register_buffer("offsets", torch.cumsum(sizes, 0)[:-1].clone(), persistent=False)
        self.register_buffer(
            "cardinalities", torch.tensor(list(cardinalities), dtype=torch.int64), persistent=False
        )
        # Initialised as nn.Embedding is: standard normal, the padding row of items at zero.
        self.field_tables = nn.Parameter(
            torch.randn(members, max(1, int(sizes.sum())), embedding_dim)
        )
        items = torch.randn(members, item_vocabulary, embedding_dim)
        items[:, 0] = 0.0
        self.item_tables = nn.Parameter(items)
        self.members = members
        self.numeric_dim = numeric_dim
        self.field_count = len(cardinalities)
        self.embedding_dim = embedding_dim
        self.item_vocabulary = item_vocabulary
        self.cardinality_list = [int(c) for c in cardinalities]
        self.output_dim = numeric_dim + (self.field_count + 1) * embedding_dim

    def parts(
        self, numeric: torch.Tensor, categorical: torch.Tensor, history: torch.Tensor
    ) -> list[torch.Tensor]:
        """Return [numeric [B, numeric_dim], embeddings [M, B, output_dim - numeric_dim]].

        Args:
            numeric: float32 [B, numeric_dim].
            categorical: int64 [B, F] codes.
            history: int64 [B, L] item indices, 0 for padding.
        """
        embedded_parts = []
        if self.field_count:
            if categorical.shape[-1] != self.field_count:
                raise ValueError(
                    f"categorical: expected {self.field_count} fields, got shape "
                    f"{tuple(categorical.shape)}"
                )
            known = (categorical >= 0) & (categorical < self.cardinalities)
            codes = torch.where(known, categorical, torch.zeros_like(categorical)) + self.offsets
            embedded_parts.append(gather_member_rows(self.field_tables, codes).flatten(2))
        mask = (history > 0).unsqueeze(-1).to(numeric.dtype)
        safe = history.clamp(0, self.item_vocabulary - 1)
        pooled = (gather_member_rows(self.item_tables, safe) * mask).sum(2)
        embedded_parts.append(pooled / mask.sum(1).clamp(min=1.0))
        return [numeric, torch.cat(embedded_parts, dim=-1)]

    def member(self, index: int) -> StateEncoder:
        """Return member ``index`` as a separate ``StateEncoder`` with copied weights."""
        encoder = StateEncoder(
            self.numeric_dim, self.cardinality_list, self.item_vocabulary, self.embedding_dim
        )
        with torch.no_grad():
            if encoder.fields is not None:
                encoder.fields.table.weight.copy_(self.field_tables[index])
            encoder.items.weight.copy_(self.item_tables[index])
        return encoder.to(self.item_tables.device)
