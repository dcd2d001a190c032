"""In-memory interaction logs: the common form every reader produces and `prepare` consumes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from recrl import _core
from recrl.errors import InvalidDataError, ShapeError

__all__ = ["FeatureTable", "InteractionLog"]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.floating]


@dataclass
class FeatureTable:
    """Side features of users or items, one row per id.

    Attributes:
        ids: int64 [M] entity ids, unique.
        numeric: float [M] arrays by feature name; NaN marks a missing value.
        categorical: int64 [M] codes by feature name, 0 for missing, with ``labels[name][k - 1]``
            the source text of code k.
        source: the file the table was read from.
    """

    ids: IntArray
    numeric: dict[str, FloatArray] = field(default_factory=dict)
    categorical: dict[str, IntArray] = field(default_factory=dict)
    labels: dict[str, list[str]] = field(default_factory=dict)
    source: Path | None = None

    def __post_init__(self) -> None:
        size = len(self.ids)
        for name, values in {**self.numeric, **self.categorical}.items():
            if values.shape != (size,):
                raise ShapeError(f"feature {name}: expected shape ({size},), got {values.shape}")
        if _core.count_distinct(np.ascontiguousarray(self.ids, dtype=np.int64)) != size:
            sorted_ids = np.sort(self.ids)
            duplicate = sorted_ids[1:][sorted_ids[1:] == sorted_ids[:-1]][0]
            raise InvalidDataError(
                f"{self.source or 'feature table'}: id {duplicate} appears more than once; "
                "each entity needs exactly one row of features"
            )


@dataclass
class InteractionLog:
    """One row per impression, in source-file order.

    Attributes:
        name: the schema the log was read with, such as ``kuairand`` or ``taobao``.
        user_ids: int64 [N].
        item_ids: int64 [N].
        timestamps: int64 [N] milliseconds since the Unix epoch.
        responses: float32 [N] arrays by response name, in reward order.
        numeric_features: float [N] per-row features by name (NaN where missing).
        categorical_features: int64 [N] per-row codes by name (0 for missing).
        context: other per-row arrays kept with the dataset but not fed to models, such as
            ``is_rand`` or ``watch_ratio``.
        episode_ends: uint8 [N] or None; 1 where the log itself marks the last step of an episode.
        user_features: side table keyed by user id, or None.
        item_features: side table keyed by item id, or None.
        sources: the files read.
        counts: what the reader had to repair, by name (clipped values, imposed labels, ...).
        source_rows: int64 [N] row of each impression in its source, counted from 0.
        response_columns: the source column of each response computed from another column,
            such as ``watch_time`` from ``play_time_ms``, for error messages.
    """

    name: str
    user_ids: IntArray
    item_ids: IntArray
    timestamps: IntArray
    responses: dict[str, npt.NDArray[np.float32]]
    numeric_features: dict[str, FloatArray] = field(default_factory=dict)
    categorical_features: dict[str, IntArray] = field(default_factory=dict)
    context: dict[str, npt.NDArray[np.generic]] = field(default_factory=dict)
    episode_ends: npt.NDArray[np.uint8] | None = None
    user_features: FeatureTable | None = None
    item_features: FeatureTable | None = None
    sources: list[Path] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    source_rows: IntArray | None = None
    response_columns: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        size = len(self.user_ids)
        columns: dict[str, npt.NDArray[np.generic]] = {
            "item_ids": self.item_ids,
            "timestamps": self.timestamps,
            **{f"responses[{k}]": v for k, v in self.responses.items()},
            **{f"numeric_features[{k}]": v for k, v in self.numeric_features.items()},
            **{f"categorical_features[{k}]": v for k, v in self.categorical_features.items()},
            **{f"context[{k}]": v for k, v in self.context.items()},
        }
        if self.episode_ends is not None:
            columns["episode_ends"] = self.episode_ends
        if self.source_rows is not None:
            columns["source_rows"] = self.source_rows
        for name, values in columns.items():
            if values.shape != (size,):
                raise ShapeError(f"{name}: expected shape ({size},), got {values.shape}")
        for name, ids in (
            ("user_ids", self.user_ids),
            ("item_ids", self.item_ids),
            ("timestamps", self.timestamps),
        ):
            if ids.dtype != np.int64:
                raise ShapeError(f"{name}: expected dtype int64, got {ids.dtype}")
        if not self.responses:
            raise ShapeError("responses: expected at least one response column, got none")
        if self.source_rows is None:
            self.source_rows = np.arange(size, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.user_ids)

    @property
    def response_names(self) -> list[str]:
        """Names of the responses, in the order of the reward columns."""
        return list(self.responses)

    def select(self, mask: npt.NDArray[np.bool_]) -> InteractionLog:
        """Return the rows where ``mask`` is true, side tables and counts unchanged."""
        assert self.source_rows is not None
        return InteractionLog(
            name=self.name,
            user_ids=self.user_ids[mask],
            item_ids=self.item_ids[mask],
            timestamps=self.timestamps[mask],
            responses={k: v[mask] for k, v in self.responses.items()},
            numeric_features={k: v[mask] for k, v in self.numeric_features.items()},
            categorical_features={k: v[mask] for k, v in self.categorical_features.items()},
            context={k: v[mask] for k, v in self.context.items()},
            episode_ends=None if self.episode_ends is None else self.episode_ends[mask],
            user_features=self.user_features,
            item_features=self.item_features,
            sources=list(self.sources),
            counts=dict(self.counts),
            source_rows=self.source_rows[mask],
            response_columns=dict(self.response_columns),
        )
