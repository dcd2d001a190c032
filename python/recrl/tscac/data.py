"""Transitions of a prepared dataset as torch tensors, candidate sets and minibatches.

The TSCAC state of row t contains the user's features, the per-row context (hour, tab) and the
items seen before t. It leaves out the features of the item shown at t, because that item is
the action.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from recrl.data import PreparedDataset
from recrl.errors import InvalidArgumentError, InvalidDataError

__all__ = ["Batch", "ProblemSpec", "Transitions", "most_frequent_items"]


@dataclass(frozen=True)
class ProblemSpec:
    """Everything needed to rebuild a model of a dataset without the dataset.

    Attributes:
        numeric_dim: numeric state features (user numeric + per-row numeric).
        cardinalities: codes per categorical state field (user fields + per-row fields).
        item_vocabulary: item indices, 0 = unknown.
        reward_names: K response names in reward order.
        reward_scales: K positive scales; critics learn rewards divided by them.
        reward_means: K logged means of the training split.
        candidate_items: the N global candidate item indices.
    """

    numeric_dim: int
    cardinalities: tuple[int, ...]
    item_vocabulary: int
    reward_names: tuple[str, ...]
    reward_scales: tuple[float, ...]
    reward_means: tuple[float, ...]
    candidate_items: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        """Return plain JSON values."""
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ProblemSpec:
        """Build from ``to_dict``'s output."""
        converted: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in values.items()
        }
        return cls(**converted)

    def response_index(self, name: str) -> int:
        """Return the column of response ``name`` in the rewards."""
        if name not in self.reward_names:
            raise InvalidArgumentError(
                f"response: expected one of {list(self.reward_names)}, got {name!r}"
            )
        return self.reward_names.index(name)


@dataclass
class Batch:
    """A minibatch of transitions over candidate sets of width C = N + 1.

    Attributes:
        numeric: float32 [B, F] numeric state features.
        categorical: int64 [B, G] state codes.
        history: int64 [B, L] previously seen items.
        next_numeric, next_categorical, next_history: the same at the next row.
        candidates: int64 [B, C] candidate items: the N global ones, then the logged item.
        mask: bool [B, C] candidates that exist (the logged slot is off when the logged item is
            already among the N).
        actions: int64 [B] position of the logged item in ``candidates``.
        next_candidates, next_mask, next_actions: the same at the next row.
        rewards: float32 [B, K] rewards divided by the spec's reward scales.
        raw_rewards: float32 [B, K] rewards in their own units.
        bootstrap: float32 [B], 1 where a next row exists to bootstrap from.
        valid: float32 [B], 0 for rows cut by the data window with no next row (excluded from
            TD losses because their target is unknown).
        rows: int64 [B] dataset rows.
    """

    numeric: torch.Tensor
    categorical: torch.Tensor
    history: torch.Tensor
    next_numeric: torch.Tensor
    next_categorical: torch.Tensor
    next_history: torch.Tensor
    candidates: torch.Tensor
    mask: torch.Tensor
    actions: torch.Tensor
    next_candidates: torch.Tensor
    next_mask: torch.Tensor
    next_actions: torch.Tensor
    rewards: torch.Tensor
    raw_rewards: torch.Tensor
    bootstrap: torch.Tensor
    valid: torch.Tensor
    rows: torch.Tensor

    def state(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return (numeric, categorical, history) of the current rows."""
        return self.numeric, self.categorical, self.history

    def next_state(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return (numeric, categorical, history) of the next rows."""
        return self.next_numeric, self.next_categorical, self.next_history


def most_frequent_items(items: npt.NDArray[np.int64], count: int) -> npt.NDArray[np.int64]:
    """Return the ``count`` most frequent nonzero item indices of ``items`` [N], ties by index."""
    counts = np.bincount(items[items > 0])
    order = np.lexsort((np.arange(len(counts)), -counts))
    known = order[counts[order] > 0]
    if len(known) < count:
        raise InvalidDataError(
            f"candidates: the training split has {len(known)} distinct items, fewer than the "
            f"{count} candidates requested; lower the candidate count"
        )
    return known[:count].astype(np.int64)


class Transitions:
    """All rows of a prepared dataset as tensors, with the candidate sets of the spec.

    Args:
        dataset: the prepared dataset.
        spec: the problem (from ``Transitions.build_spec`` on the same dataset).
        device: where the tensors live.
    """

    def __init__(
        self, dataset: PreparedDataset, spec: ProblemSpec, device: torch.device | str = "cpu"
    ) -> None:
        self.dataset = dataset
        self.spec = spec
        self.device = torch.device(device)
        numeric, categorical = _state_arrays(dataset)
        to = self._tensor
        self.numeric = to(numeric.astype(np.float32))
        self.categorical = to(categorical.astype(np.int64))
        self.history = to(np.asarray(dataset["history"], dtype=np.int64))
        self.items = to(np.asarray(dataset["items"], dtype=np.int64))
        raw = np.asarray(dataset["rewards"], dtype=np.float32)
        self.raw_rewards = to(raw)
        self.rewards = to(raw / np.asarray(spec.reward_scales, dtype=np.float32))
        next_index = np.asarray(dataset["next_index"], dtype=np.int64)
        has_next = next_index >= 0
        self.next_rows = to(np.where(has_next, next_index, np.arange(len(next_index))))
        self.bootstrap = to(has_next.astype(np.float32))
        truncated = np.asarray(dataset["truncations"]).astype(bool)
        self.valid = to((~(truncated & ~has_next)).astype(np.float32))
        self.split = np.asarray(dataset["split"])
        self.candidate_items = to(np.asarray(spec.candidate_items, dtype=np.int64))

        # Position of each item in the global candidate set, N for items outside it.
        position = np.full(spec.item_vocabulary, len(spec.candidate_items), dtype=np.int64)
        position[np.asarray(spec.candidate_items)] = np.arange(len(spec.candidate_items))
        self.candidate_position = to(position)

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.array(array)).to(self.device)

    @staticmethod
    def build_spec(dataset: PreparedDataset, candidates: int) -> ProblemSpec:
        """Derive the problem of ``dataset`` from its training split only."""
        train = dataset.split_rows("train")
        numeric, _ = _state_arrays(dataset)
        rewards = np.asarray(dataset["rewards"], dtype=np.float64)[train]
        scales = rewards.std(axis=0)
        scales = np.where(scales > 0, scales, 1.0)
        features = dataset.manifest["features"]
        cardinalities = [info["cardinality"] for info in features["user"]["categorical"]]
        cardinalities += [info["cardinality"] for info in features["row_categorical"]]
        return ProblemSpec(
            numeric_dim=int(numeric.shape[1]),
            cardinalities=tuple(int(c) for c in cardinalities),
            item_vocabulary=int(dataset.manifest["vocabularies"]["items"]),
            reward_names=tuple(dataset.reward_names),
            reward_scales=tuple(float(s) for s in scales),
            reward_means=tuple(float(m) for m in rewards.mean(axis=0)),
            candidate_items=tuple(
                int(i) for i in most_frequent_items(np.asarray(dataset["items"])[train], candidates)
            ),
        )

    def split_rows(self, name: str) -> npt.NDArray[np.int64]:
        """Return the dataset rows of split ``name``."""
        return self.dataset.split_rows(name)

    def batch(self, rows: npt.NDArray[np.int64] | torch.Tensor) -> Batch:
        """Gather the transitions of ``rows`` [B] into a ``Batch``."""
        index = torch.as_tensor(rows, dtype=torch.int64, device=self.device)
        following = self.next_rows[index]
        candidates, mask, actions = self._candidates(self.items[index])
        next_candidates, next_mask, next_actions = self._candidates(self.items[following])
        return Batch(
            numeric=self.numeric[index],
            categorical=self.categorical[index],
            history=self.history[index],
            next_numeric=self.numeric[following],
            next_categorical=self.categorical[following],
            next_history=self.history[following],
            candidates=candidates,
            mask=mask,
            actions=actions,
            next_candidates=next_candidates,
            next_mask=next_mask,
            next_actions=next_actions,
            rewards=self.rewards[index],
            raw_rewards=self.raw_rewards[index],
            bootstrap=self.bootstrap[index],
            valid=self.valid[index],
            rows=index,
        )

    def _candidates(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        count = self.candidate_items.shape[0]
        candidates = torch.cat(
            [self.candidate_items.expand(items.shape[0], count), items.unsqueeze(1)], dim=1
        )
        actions = self.candidate_position[items]
        mask = torch.ones_like(candidates, dtype=torch.bool)
        mask[:, count] = actions == count
        return candidates, mask, actions


def _state_arrays(dataset: PreparedDataset) -> tuple[np.ndarray, np.ndarray]:
    user_rows = np.asarray(dataset["user_rows"])
    numeric = np.concatenate(
        [np.asarray(dataset["user_numeric"])[user_rows], np.asarray(dataset["row_numeric"])], axis=1
    )
    categorical = np.concatenate(
        [
            np.asarray(dataset["user_categorical"])[user_rows],
            np.asarray(dataset["row_categorical"]),
        ],
        axis=1,
    )
    return numeric, categorical
