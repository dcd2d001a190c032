"""Task labels and in-memory tensors of a prepared dataset for RMTL.

The two tasks are click (CTR) and click-and-convert (CTCVR). Their labels come from the
prepared dataset's responses:

- Taobao UserBehavior: click = ``click``, CTCVR = ``purchase`` (a purchase implies a click).
- KuaiRand: click = ``is_click``, CTCVR = ``is_click`` and ``context_long_view``.
- any other dataset whose ``reward_names`` contain ``click`` and ``purchase`` or
  ``conversion``: click, and click and that label.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from recrl.data import PreparedDataset
from recrl.errors import InvalidDataError
from recrl.nets.mtl import FeatureSpec

__all__ = ["TASK_NAMES", "TaskData", "feature_spec", "task_labels"]

TASK_NAMES = ("ctr", "ctcvr")


def task_labels(dataset: PreparedDataset) -> npt.NDArray[np.float32]:
    """Return the click and click-and-convert labels float32 [N, 2] of every row.

    Raises:
        InvalidDataError: the dataset has no click or no conversion response.
    """
    names = dataset.reward_names
    rewards = np.asarray(dataset["rewards"])
    if "is_click" in names and "context_long_view" in dataset.manifest["arrays"]:
        click = rewards[:, names.index("is_click")] > 0.5
        conversion = np.asarray(dataset["context_long_view"]) > 0.5
    elif "click" in names and ({"purchase", "conversion"} & set(names)):
        click = rewards[:, names.index("click")] > 0.5
        label = "purchase" if "purchase" in names else "conversion"
        conversion = rewards[:, names.index(label)] > 0.5
    else:
        raise InvalidDataError(
            f"{dataset.path}: expected click and conversion responses (is_click with "
            f"context_long_view, or click with purchase or conversion), got {names}"
        )
    return np.stack([click, click & conversion], axis=1).astype(np.float32)


def feature_spec(dataset: PreparedDataset) -> FeatureSpec:
    """Return the input sizes of ``dataset``'s observations."""
    first = dataset.observations(np.zeros(1, dtype=np.int64))
    vocabularies = dataset.manifest["vocabularies"]
    return FeatureSpec(
        numeric_dim=int(first["numeric"].shape[1]),
        cardinalities=tuple(int(c) for c in dataset.categorical_cardinalities()),
        user_vocabulary=int(vocabularies["users"]),
        item_vocabulary=int(vocabularies["items"]),
        history_length=int(first["history"].shape[1]),
    )


@dataclass
class TaskData:
    """Every row of a prepared dataset as tensors on one device.

    Attributes:
        features: ``numeric`` float32 [N, Fn], ``categorical`` int64 [N, F], ``users`` and
            ``items`` int64 [N], ``history`` int64 [N, L].
        labels: float32 [N, K], click and click-and-convert.
        sessions: int64 [N], the episode (session) index of each row.
        next_index: int64 [N], row of the next step of the session, -1 at its end.
        splits: ``train``, ``validation`` and ``test`` row indices int64 [n_split].
        spec: input sizes.
    """

    features: dict[str, torch.Tensor]
    labels: torch.Tensor
    sessions: torch.Tensor
    next_index: torch.Tensor
    splits: dict[str, torch.Tensor]
    spec: FeatureSpec

    @classmethod
    def load(cls, dataset: PreparedDataset, device: str | torch.device = "cpu") -> TaskData:
        """Read every row of ``dataset`` into tensors on ``device``."""
        rows = np.arange(len(dataset), dtype=np.int64)
        observations = dataset.observations(rows)
        episode_starts = np.asarray(dataset["episode_starts"])
        sessions = np.searchsorted(episode_starts, rows, side="right") - 1
        return cls(
            features={
                name: torch.as_tensor(np.ascontiguousarray(observations[name]), device=device)
                for name in ("numeric", "categorical", "users", "items", "history")
            },
            labels=torch.as_tensor(task_labels(dataset), device=device),
            sessions=torch.as_tensor(sessions.astype(np.int64), device=device),
            next_index=torch.as_tensor(np.array(dataset["next_index"]), device=device),
            splits={
                name: torch.as_tensor(dataset.split_rows(name), device=device)
                for name in ("train", "validation", "test")
            },
            spec=feature_spec(dataset),
        )

    def batch(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        """Return the features of ``rows`` int64 [B]."""
        return {name: values[rows] for name, values in self.features.items()}
