"""Prepared datasets: sorted trajectories, rewards, states and splits as memory-mappable arrays.

A prepared dataset is a folder of ``.npy`` arrays and a ``manifest.json``. Rows are sorted by
(user, time, source row). Every array below has N rows unless a shape is given.

========================  ==========  ============================================================
array                     dtype       meaning
========================  ==========  ============================================================
user_ids, item_ids        int64       raw ids, never converted through float
user_vocabulary           int64       [U] raw user id of dense index k + 1, from the training split
item_vocabulary           int64       [I] raw item id of dense index k + 1, from the training split
timestamps                int64       milliseconds
source_rows               int64       row of the step in the source log
users, items              int64       dense indices over the training split, 0 = unknown
rewards                   float32     [N, K] responses in ``manifest["reward_names"]`` order
split                     uint8       0 train, 1 validation, 2 test
episode_starts            int64       [E + 1] CSR offsets of episodes
terminals, truncations    uint8       flags on the last step of each episode
next_index                int64       row of the next step of the same episode, -1 at the end
history                   int64       [N, L] items of the previous L steps of the user (not t)
user_rows, item_rows      int64       row of the side-feature tables, 0 = no features
user_numeric              float32     [U + 1, Fu] normalised, row 0 = missing (all zeros)
user_categorical          int64       [U + 1, Cu] codes, 0 = missing
item_numeric              float32     [I + 1, Fi]
item_categorical          int64       [I + 1, Ci]
row_numeric               float32     [N, Fr] per-row features, normalised
row_categorical           int64       [N, Cr] per-row codes
context_<name>            any         per-row columns not fed to models (watch_ratio, is_rand, ...)
========================  ==========  ============================================================

Normalisation statistics come from the training split only and are saved in the manifest.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

import recrl
from recrl import _core, _files
from recrl.data.log import InteractionLog
from recrl.errors import InvalidArgumentError, InvalidDataError, RecrlIOError, ShapeError
from recrl.progress import progress_bar

__all__ = ["PrepareOptions", "PreparedDataset", "SharedStatistics", "load_prepared", "prepare"]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
MAX_HISTORY_LENGTH = 1000
"""Maximum history window length L; the window array takes N * L * 8 bytes."""
SPLIT_NAMES = ("train", "validation", "test")


@dataclass(frozen=True)
class PrepareOptions:
    """Options for turning a log into a prepared dataset.

    Attributes:
        episodes: ``session`` cuts a user's rows at gaps above ``session_gap_minutes``; ``user``
            keeps one episode per user (and split). A log that marks its own episode ends
            (Taobao, OTTO, a schema with ``episode_end``) is cut there in both modes.
        session_gap_minutes: inactivity gap that ends a session, in minutes.
        active_within_minutes: a user's last episode that ends within this many minutes of the
            data window's end is truncated because the user may still be active. Otherwise it
            is terminated. Defaults to the session gap.
        split: ``time`` (rows ordered by timestamp) or ``user`` (users hashed into parts).
        split_fractions: train, validation and test fractions, summing to 1.
        history_length: L, the number of previous items in each state.
        on_invalid: what to do with NaN, infinite or absurd values in per-row numeric features
            and responses: ``error`` (stop before writing anything), ``drop`` the row, or
            ``impute`` the training mean. The manifest counts dropped and imputed values.
        max_abs_value: numbers whose magnitude exceeds this are absurd.
        seed: seed of the user hash for ``split="user"``.
    """

    episodes: str = "session"
    session_gap_minutes: float = 30.0
    active_within_minutes: float | None = None
    split: str = "time"
    split_fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
    history_length: int = 10
    on_invalid: str = "error"
    max_abs_value: float = 1e12
    seed: int = 0

    def __post_init__(self) -> None:
        choices = {
            "episodes": ("session", "user"),
            "split": ("time", "user"),
            "on_invalid": ("error", "drop", "impute"),
        }
        for name, allowed in choices.items():
            value = getattr(self, name)
            if value not in allowed:
                raise InvalidArgumentError(f"{name}: expected one of {allowed}, got {value!r}")
        fractions = self.split_fractions
        if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-9:
            raise InvalidArgumentError(
                f"split_fractions: expected three non-negative fractions summing to 1, got "
                f"{fractions}"
            )
        if not (math.isfinite(self.session_gap_minutes) and self.session_gap_minutes > 0):
            raise InvalidArgumentError(
                f"session_gap_minutes: expected a positive number, got {self.session_gap_minutes}"
            )
        if not 0 <= self.history_length <= MAX_HISTORY_LENGTH:
            raise InvalidArgumentError(
                f"history_length: expected an integer in [0, {MAX_HISTORY_LENGTH}], got "
                f"{self.history_length}"
            )
        if self.seed < 0:
            raise InvalidArgumentError(f"seed: expected a non-negative integer, got {self.seed}")


@dataclass(frozen=True)
class SharedStatistics:
    """Statistics of a whole log that each of its shards is prepared with.

    Preparing a shard with the statistics of the whole log gives every shard the same dense
    indices and the same normalisation as one unsharded dataset of that log.

    Attributes:
        split_cuts_ms: first timestamps of the validation and test parts of a time split, None
            where a part is empty; ignored for a user split.
        window_end_ms: last timestamp of the log, the end of its data window.
        user_vocabulary: int64 [U] sorted distinct user ids of the training split.
        item_vocabulary: int64 [I] sorted distinct item ids of the training split.
        row_numeric: (mean, std) of each per-row numeric feature over the training split.
        row_categorical: int64 sorted distinct training codes of each per-row categorical feature.
        side_counts: for ``user`` and ``item`` side tables, int64 [M + 1] training and all row
            counts per table row in sorted id order (index 0: rows without features).
    """

    split_cuts_ms: tuple[int | None, int | None]
    window_end_ms: int
    user_vocabulary: npt.NDArray[np.int64]
    item_vocabulary: npt.NDArray[np.int64]
    row_numeric: dict[str, tuple[float, float]]
    row_categorical: dict[str, npt.NDArray[np.int64]]
    side_counts: dict[str, tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]]


def _invalid_rows(values: npt.NDArray[np.floating], max_abs: float) -> npt.NDArray[np.bool_] | None:
    """Return the mask of NaN, infinite and too large values, or None when there are none."""
    # The extremes alone decide whether any value is out of bounds, and NaN propagates through
    # them and fails the comparison, so a column without problems costs two reductions.
    if not len(values) or (values.min() >= -max_abs and values.max() <= max_abs):
        return None
    # NaN fails every comparison and infinity exceeds any bound, so one test catches all three.
    invalid: npt.NDArray[np.bool_] = ~(np.abs(values) <= max_abs)
    return invalid


#: 2100-01-01T00:00:00Z in milliseconds: later timestamps are taken for a unit error.
LATEST_TIMESTAMP_MS = 4_102_444_800_000
#: 1990-01-01T00:00:00Z in milliseconds: a log whose median time is earlier is warned about,
#: since seconds read as milliseconds land in January 1970.
EARLIEST_PLAUSIBLE_MS = 631_152_000_000


def _rows(count: int) -> str:
    return f"{count} row" if count == 1 else f"{count} rows"


def _check_row_values(
    log: InteractionLog, options: PrepareOptions, counts: dict[str, int]
) -> InteractionLog:
    """Apply ``on_invalid`` to responses, per-row numeric features and timestamps.

    Timestamps before 1970 or from 2100 on are invalid: they come from a wrong unit (such as
    microseconds) or a corrupt row. They can be dropped, not imputed.
    """
    columns = {**log.responses, **log.numeric_features}
    invalid_any = np.zeros(len(log), dtype=bool)
    for name, values in columns.items():
        invalid = _invalid_rows(values, options.max_abs_value)
        if invalid is None:
            continue
        row = int(np.flatnonzero(invalid)[0])
        source_row = int(log.source_rows[row]) if log.source_rows is not None else row
        cannot_impute = name in log.responses and options.on_invalid == "impute"
        if options.on_invalid == "error" or cannot_impute:
            derived = log.response_columns.get(name)
            column = f"{name} (computed from {derived})" if derived else name
            raise InvalidDataError(
                f"column {column}, row {source_row} (data rows counted from 0): value "
                f"{float(values[row])} is NaN, infinite or larger than "
                f"{options.max_abs_value:g} in magnitude ({_rows(int(invalid.sum()))} in total in "
                f"{', '.join(map(str, log.sources)) or 'the log'}); fix the data, or prepare "
                "with on_invalid='drop' or 'impute' (--on-invalid drop or impute)"
                + (" (responses cannot be imputed, only dropped)" if name in log.responses else "")
            )
        counts[f"invalid_{name}"] = int(invalid.sum())
        invalid_any |= invalid
    invalid = (log.timestamps < 0) | (log.timestamps >= LATEST_TIMESTAMP_MS)
    if invalid.any():
        row = int(np.flatnonzero(invalid)[0])
        source_row = int(log.source_rows[row]) if log.source_rows is not None else row
        if options.on_invalid != "drop":
            raise InvalidDataError(
                f"timestamps, row {source_row} (data rows counted from 0): "
                f"{int(log.timestamps[row])} ms since the Unix epoch is outside 1970 to 2100 "
                f"({_rows(int(invalid.sum()))} in total in "
                f"{', '.join(map(str, log.sources)) or 'the log'}); check the time column's "
                "unit, or prepare with on_invalid='drop' (--on-invalid drop); timestamps "
                "cannot be imputed"
            )
        counts["invalid_timestamps"] = int(invalid.sum())
        invalid_any |= invalid
    # Counting the early values is cheaper than finding the median.
    if np.count_nonzero(log.timestamps < EARLIEST_PLAUSIBLE_MS) * 2 > len(log):
        logger.warning(
            "most timestamps fall before 1990 (median %d ms since the Unix epoch): if the log "
            "holds seconds, declare time_unit: s in the schema, or the sessions and splits "
            "will be wrong",
            int(np.median(log.timestamps)),
        )
    if options.on_invalid == "drop" and invalid_any.any():
        counts["dropped_rows"] = int(invalid_any.sum())
        log = log.select(~invalid_any)
    return log


def _split_labels(
    times: npt.NDArray[np.int64],
    users: npt.NDArray[np.int64],
    options: PrepareOptions,
    fixed_cuts: tuple[int | None, int | None] | None = None,
) -> tuple[npt.NDArray[np.uint8], dict[str, Any]]:
    train, validation, _ = options.split_fractions
    if options.split == "time":
        n = len(times)
        if fixed_cuts is None:
            # Cut k is the time at position round(fraction * n) of the sorted times; a partial
            # sort (selection) puts exactly those values in place.
            indices = [split_cut_index(fraction, n) for fraction in (train, train + validation)]
            inside = sorted({index for index in indices if index < n})
            selected = np.partition(times, inside) if inside else times
            chosen = [int(selected[index]) if index < n else None for index in indices]
        else:
            chosen = list(fixed_cuts)
        labels = np.zeros(len(users), dtype=np.uint8)
        cuts: list[int | None] = []
        for code, cut in zip((1, 2), chosen):
            # Rows from the cut time on go to the later split; a cut past the end leaves it empty.
            if cut is not None:
                labels[times >= cut] = code
            cuts.append(cut)
        first_cut, second_cut = cuts
        info = {
            "kind": "time",
            "fractions": list(options.split_fractions),
            "validation_from_ms": first_cut,
            "test_from_ms": second_cut,
        }
        return labels, info
    # Users hashed into [0, 1) with splitmix64, so a user's split never depends on other users.
    hashed = _splitmix64(users.view(np.uint64) ^ np.uint64(options.seed))
    position = (hashed >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    labels = np.where(position < train, 0, np.where(position < train + validation, 1, 2))
    info = {"kind": "user", "fractions": list(options.split_fractions), "seed": options.seed}
    return labels.astype(np.uint8), info


def split_cut_index(fraction: float, rows: int) -> int:
    """Return the position, in time order, of the first row after a cut at ``fraction``."""
    return int(round(fraction * rows))


def _take(
    values: npt.NDArray[Any], order: npt.NDArray[np.int64], placement: _core.Placement
) -> npt.NDArray[Any]:
    """Return ``values[order]``. ``placement``, built from ``order``, moves int64 and float32."""
    if values.dtype == np.int64:
        return placement.take_columns_int64([np.ascontiguousarray(values)]).reshape(-1)
    if values.dtype == np.float32:
        return placement.take_columns_float32([np.ascontiguousarray(values)]).reshape(-1)
    return np.ascontiguousarray(values[order])


def _splitmix64(values: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    with np.errstate(over="ignore"):
        z = values + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _normalise(
    values: npt.NDArray[np.floating],
    train_mask: npt.NDArray[np.bool_],
    name: str,
    log_transform: bool,
    fixed: tuple[float, float] | None = None,
) -> tuple[npt.NDArray[np.float32], dict[str, Any]]:
    """Standardise with training statistics; missing values become 0 (the training mean).

    ``fixed`` gives the (mean, std) to use instead of those of ``values[train_mask]``.
    """
    x = values.astype(np.float64)
    if log_transform:
        x = np.sign(x) * np.log1p(np.abs(x))
    if fixed is None:
        mean, std = training_moments(x[train_mask])
    else:
        mean, std = fixed
    normalised = np.where(np.isfinite(x), (x - mean) / std, 0.0).astype(np.float32)
    stats = {
        "name": name,
        "mean": mean,
        "std": std,
        "log1p": log_transform,
        "missing": int((~np.isfinite(x)).sum()),
    }
    return normalised, stats


def usable_std(mean: float, std: float) -> float:
    """Return ``std``, or 1.0 where the values do not spread.

    The standard deviation of a constant column often comes out as rounding error (1e-17 for
    0.1, say) instead of 0, and dividing by it would scale the other splits' values to 1e15 and
    more. A spread below 1e-12 of the mean's magnitude is far under any real variation and far
    above float64 rounding, so it counts as none.
    """
    # Also 1.0 for a spread of 0 or NaN, which no comparison passes.
    return std if std > 1e-12 * abs(mean) else 1.0


def training_moments(values: npt.NDArray[np.float64]) -> tuple[float, float]:
    """Return the mean and standard deviation of the finite ``values`` (0 and 1 if none)."""
    finite = values[np.isfinite(values)]
    if not len(finite):
        return 0.0, 1.0
    mean = float(finite.mean(dtype=np.float64))
    return mean, usable_std(mean, float(finite.std(dtype=np.float64)))


def _weighted_statistics(
    values: npt.NDArray[np.floating],
    train_counts: npt.NDArray[np.int64],
    all_counts: npt.NDArray[np.int64],
    name: str,
    log_transform: bool,
) -> dict[str, Any]:
    """Return what :func:`_normalise` would for ``values[rows]``, from per-value row counts."""
    finite = np.isfinite(values)
    weights = np.where(finite, train_counts, 0).astype(np.float64)
    total = weights.sum()
    safe = np.where(finite, values, 0.0)
    mean = float((weights * safe).sum() / total) if total else 0.0
    std = float(np.sqrt((weights * (safe - mean) ** 2).sum() / total)) if total else 1.0
    std = usable_std(mean, std)
    missing = int(all_counts[~finite].sum())
    return {"name": name, "mean": mean, "std": std, "log1p": log_transform, "missing": missing}


# Heavy-tailed counts and durations are compressed with sign(x) * log1p(|x|) before scaling.
_LOG_TRANSFORMED = {
    "follow_user_num",
    "fans_user_num",
    "friend_user_num",
    "register_days",
    "video_duration",
    "server_width",
    "server_height",
}


def _check_side_values(
    values: npt.NDArray[np.floating], bound: float, source: object, name: str
) -> None:
    """Raise InvalidDataError for an infinite value or one above ``bound`` in magnitude.

    NaN marks a missing value in a side table and passes. The extremes without NaN (``fmin``,
    ``fmax``) decide most columns in two reductions.
    """
    if not len(values) or (np.fmin.reduce(values) >= -bound and np.fmax.reduce(values) <= bound):
        return
    # A column of NaN alone has NaN extremes but no bad value.
    invalid = np.isinf(values) | (np.abs(np.nan_to_num(values)) > bound)
    if invalid.any():
        bad = int(np.flatnonzero(invalid)[0])
        raise InvalidDataError(
            f"{source}: column {name}, row {bad}: value {values[bad]!r} is infinite or "
            f"larger than {bound:g} in magnitude; correct it, or leave the field empty to mark "
            "the value as unknown"
        )


def _side_table(
    table: Any,
    entity_ids: npt.NDArray[np.int64],
    train_mask: npt.NDArray[np.bool_],
    options: PrepareOptions,
    kind: str,
    counts: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]] | None = None,
) -> tuple[dict[str, npt.NDArray[np.generic]], dict[str, Any]]:
    """Look up side features for each row and build normalised, compact tables.

    ``counts`` gives the training and all row counts per table row (see
    :func:`side_table_counts`) to use instead of those of ``entity_ids``.
    """
    if table is None:
        rows = np.zeros(len(entity_ids), dtype=np.int64)
        arrays: dict[str, npt.NDArray[np.generic]] = {
            f"{kind}_rows": rows,
            f"{kind}_numeric": np.zeros((1, 0), dtype=np.float32),
            f"{kind}_categorical": np.zeros((1, 0), dtype=np.int64),
        }
        return arrays, {"source": None, "numeric": [], "categorical": [], "matched_rows": 0}

    # Rows in use numbered by increasing id, 0 where the log's id has no features. Statistics
    # are over training rows, as if each row carried its entity's value: every table row is
    # weighted by how many (training) rows of the log point at it.
    side = _core.side_rows(
        np.ascontiguousarray(table.ids, dtype=np.int64),
        np.ascontiguousarray(entity_ids, dtype=np.int64),
        np.ascontiguousarray(train_mask, dtype=bool),
        *(counts or (None, None)),
    )
    rows = side["rows"]
    source_positions = side["used"]
    train_counts = side["train_counts"]
    all_counts = side["all_counts"]
    numeric_columns = []
    numeric_stats = []
    for name, values in table.numeric.items():
        _check_side_values(values, options.max_abs_value, table.source, name)
        column = np.concatenate([[np.nan], values[source_positions]])
        log_transform = name in _LOG_TRANSFORMED
        transformed = np.sign(column) * np.log1p(np.abs(column)) if log_transform else column
        stats = _weighted_statistics(transformed, train_counts, all_counts, name, log_transform)
        scaled = np.where(np.isfinite(transformed), (transformed - stats["mean"]) / stats["std"], 0)
        numeric_columns.append(scaled.astype(np.float32))
        numeric_stats.append(stats)
    size = len(source_positions) + 1
    categorical = np.zeros((size, len(table.categorical)), dtype=np.int64)
    categorical_info = []
    for position, (name, codes) in enumerate(table.categorical.items()):
        categorical[1:, position] = codes[source_positions]
        categorical_info.append({"name": name, "cardinality": len(table.labels.get(name, [])) + 1})

    arrays = {
        f"{kind}_rows": rows,
        f"{kind}_numeric": np.stack(numeric_columns, axis=1)
        if numeric_columns
        else np.zeros((size, 0), dtype=np.float32),
        f"{kind}_categorical": categorical,
    }
    info = {
        "source": str(table.source) if table.source else None,
        "numeric": numeric_stats,
        "categorical": categorical_info,
        "matched_rows": int(side["matched"]),
    }
    return arrays, info


def side_table_counts(
    table: Any, entity_ids: npt.NDArray[np.int64], train_mask: npt.NDArray[np.bool_]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Count the training rows and all rows of ``entity_ids`` that point at each table row.

    Returns int64 [M + 1] arrays over the table's ids in sorted order, index 0 counting the rows
    whose id has no features. Counts of parts of a log add up to those of the whole log.
    """
    table_codes, table_vocabulary = _core.encode_ids(table.ids, entity_ids)
    return _core.count_codes(table_codes, np.ascontiguousarray(train_mask), len(table_vocabulary))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    # One buffer filled again and again, instead of a new bytes object per block.
    buffer = bytearray(1 << 20)
    view = memoryview(buffer)
    with path.open("rb", buffering=0) as handle:
        while read := handle.readinto(buffer):
            digest.update(view[:read])
    return digest.hexdigest()


def build_arrays(
    log: InteractionLog,
    options: PrepareOptions,
    emit: Callable[[str, np.ndarray], None],
    shared: SharedStatistics | None = None,
) -> dict[str, Any]:
    """Compute every array of a prepared dataset, hand each to ``emit`` and return the manifest.

    Each array is passed to ``emit`` as soon as it is complete and not kept afterwards, so peak
    memory stays near the input log plus the largest array. Values are validated before the
    first array is emitted. With ``shared``, ``log`` is one shard of a larger log: the split,
    vocabularies and normalisation come from ``shared`` instead of ``log``, and an empty
    training split is allowed.
    """
    counts = dict(log.counts)
    counts["source_rows"] = len(log)
    log = _check_row_values(log, options, counts)
    if len(log) == 0:
        raise InvalidDataError("the log has no rows left to prepare")

    # Split labels depend on a row's time (or user) alone, so they are computed before sorting.
    split_by_row, split_info = _split_labels(
        log.timestamps, log.user_ids, options, None if shared is None else shared.split_cuts_ms
    )
    if shared is None and not (split_by_row == 0).any():
        raise InvalidDataError(
            "the training split is empty; check split_fractions or use a larger log"
        )

    # Sort by (user, time, source row) and cut episodes in one call. Split boundaries cut too,
    # and the earlier part is truncated there. The other per-row columns are gathered after.
    gap_ms = int(options.session_gap_minutes * 60_000)
    active_minutes = options.active_within_minutes
    active_ms = gap_ms if active_minutes is None else int(active_minutes * 60_000)
    episode_ends = log.episode_ends
    session_gap = gap_ms if options.episodes == "session" and episode_ends is None else None
    sorted_log = _core.sort_episodes(
        log.user_ids,
        log.timestamps,
        segments=split_by_row,
        episode_ends=None if episode_ends is None else np.ascontiguousarray(episode_ends, np.uint8),
        session_gap_ms=session_gap,
        window_end_ms=None if shared is None else shared.window_end_ms,
        active_within_ms=active_ms,
        placement=True,
    )
    # Training rows in source order, for the per-row codes encoded before they are gathered.
    train_by_row = split_by_row == 0
    del split_by_row
    # The arrays already have these dtypes; asarray only narrows the static type.
    order = np.asarray(sorted_log.pop("order"), dtype=np.int64)
    user_ids = np.asarray(sorted_log.pop("users"), dtype=np.int64)
    timestamps = np.asarray(sorted_log.pop("times"), dtype=np.int64)
    split = np.asarray(sorted_log.pop("segments"), dtype=np.uint8)
    # Columns are reordered by scattering each source row to its place: after a sort by user of
    # a log in time order, gathering by `order` would miss the cache on nearly every row. The
    # sort keeps each row's place as it goes.
    placement: _core.Placement = sorted_log.pop("placement")
    episodes = sorted_log
    # Arrays are handed to `emit` as soon as they are complete, the largest as early as they can
    # be, so the disk writes them while the rest are computed.
    emit("timestamps", timestamps)
    emit("split", split)
    emit("user_ids", user_ids)
    for name, flags in episodes.items():
        emit(name, flags)
    item_ids = _take(log.item_ids, order, placement)
    emit("item_ids", item_ids)
    assert log.source_rows is not None
    emit("source_rows", _take(log.source_rows, order, placement))
    train = split == 0

    user_source = user_ids[train] if shared is None else shared.user_vocabulary
    item_source = item_ids[train] if shared is None else shared.item_vocabulary
    users, user_vocabulary = _core.encode_ids(user_source, user_ids)
    items, item_vocabulary = _core.encode_ids(item_source, item_ids)
    emit("history", _core.history_windows(user_ids, items, options.history_length))
    emit("users", users)
    emit("items", items)
    emit("user_vocabulary", user_vocabulary)
    emit("item_vocabulary", item_vocabulary)

    rewards = placement.take_columns_float32(
        [np.ascontiguousarray(log.responses[name], dtype=np.float32) for name in log.response_names]
    )
    emit("rewards", rewards)
    for name, context_values in log.context.items():
        emit(f"context_{name}", _take(context_values, order, placement))
    # Means over the source columns, which are contiguous, where a column of `rewards` is not.
    reward_means = {name: float(log.responses[name].mean()) for name in log.response_names}
    episode_lengths = np.diff(episodes["episode_starts"])
    episode_statistics = {
        "terminated": int(episodes["terminals"].sum()),
        "truncated": int(episodes["truncations"].sum()),
        "mean_length": float(episode_lengths.mean()) if len(episode_lengths) else 0.0,
        "max_length": int(episode_lengths.max()) if len(episode_lengths) else 0,
    }
    # Every id of the log's own training vocabulary occurs in the log, so only unknown ids need
    # counting. A shard's vocabulary is the whole log's, so a shard counts its ids directly.
    if shared is None:
        distinct = {
            "users": len(user_vocabulary) + _core.count_distinct(user_ids[users == 0]),
            "items": len(item_vocabulary) + _core.count_distinct(item_ids[items == 0]),
        }
    else:
        distinct = {
            "users": _core.count_distinct(user_ids),
            "items": _core.count_distinct(item_ids),
        }
    vocabulary_sizes = {"users": len(user_vocabulary) + 1, "items": len(item_vocabulary) + 1}
    split_rows = {
        name: int(np.count_nonzero(split == code)) for code, name in enumerate(SPLIT_NAMES)
    }
    del timestamps, users, items, user_vocabulary, item_vocabulary, rewards, episodes

    # Per-row features: numeric standardised with training statistics, codes kept.
    row_numeric_stats = []
    row_numeric = []
    for name, values in log.numeric_features.items():
        fixed = None if shared is None else shared.row_numeric[name]
        normalised, stats = _normalise(_take(values, order, placement), train, name, False, fixed)
        if options.on_invalid == "impute":
            stats["imputed"] = counts.get(f"invalid_{name}", 0)
        row_numeric.append(normalised)
        row_numeric_stats.append(stats)
    emit(
        "row_numeric",
        np.stack(row_numeric, axis=1) if row_numeric else np.zeros((len(order), 0), np.float32),
    )
    del row_numeric
    # Codes are encoded in source order, where the training mask is also known. One Rust pass
    # then gathers them into the sorted [N, C] array.
    row_categorical_info = []
    row_categorical = []
    for name, codes in log.categorical_features.items():
        codes = np.ascontiguousarray(codes, dtype=np.int64)
        code_source = codes[train_by_row] if shared is None else shared.row_categorical[name]
        encoded, vocabulary = _core.encode_ids(code_source, codes)
        row_categorical.append(encoded)
        row_categorical_info.append({"name": name, "cardinality": len(vocabulary) + 1})
    emit(
        "row_categorical",
        placement.take_columns_int64(row_categorical)
        if row_categorical
        else np.zeros((len(order), 0), np.int64),
    )
    del row_categorical, train_by_row

    side_counts = {} if shared is None else shared.side_counts
    user_arrays, user_info = _side_table(
        log.user_features, user_ids, train, options, "user", side_counts.get("user")
    )
    item_arrays, item_info = _side_table(
        log.item_features, item_ids, train, options, "item", side_counts.get("item")
    )
    for name, array in (*user_arrays.items(), *item_arrays.items()):
        emit(name, array)
    del user_arrays, item_arrays

    manifest: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "recrl_version": recrl.__version__,
        "schema": log.name,
        "rows": int(len(order)),
        "episodes": int(len(episode_lengths)),
        "users": int(distinct["users"]),
        "items": int(distinct["items"]),
        "reward_names": log.response_names,
        "options": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(options).items()},
        "split": {
            **split_info,
            "rows": split_rows,
        },
        "vocabularies": vocabulary_sizes,
        "features": {
            "row_numeric": row_numeric_stats,
            "row_categorical": row_categorical_info,
            "user": user_info,
            "item": item_info,
        },
        "episode_statistics": episode_statistics,
        "reward_means": reward_means,
        "counts": counts,
        "sources": [{"path": str(path), "name": Path(path).name} for path in log.sources],
    }
    return manifest


def check_output_folder(out: Path, overwrite: bool) -> None:
    """Refuse an existing ``out`` unless ``overwrite``, and anything there but a dataset.

    Callers run it before reading a log, so a refusal costs no time.

    Raises:
        RecrlIOError: ``out`` exists and ``overwrite`` is false, or it is not a prepared dataset.
    """
    if out.exists() and not overwrite:
        raise RecrlIOError(
            f"{out}: already exists; replace it with --overwrite (overwrite=True in Python) or "
            "choose another output folder"
        )
    if out.exists() and not (out / "manifest.json").is_file():
        # Overwriting replaces the whole folder, so it must be a dataset, never other files.
        raise RecrlIOError(
            f"{out}: exists and is not a prepared dataset (no manifest.json); choose another "
            "output folder, since overwriting would delete what it contains"
        )


def prepare(
    log: InteractionLog,
    out: str | Path,
    options: PrepareOptions | None = None,
    *,
    overwrite: bool = False,
) -> PreparedDataset:
    """Build a prepared dataset from ``log`` and write it to the folder ``out`` atomically.

    Values are validated before anything is written. Arrays go to a temporary folder beside
    ``out`` as they are computed, each file is synced, and the folder is renamed into place, so
    a crash or an error leaves either the previous dataset or the complete new one.

    Raises:
        InvalidDataError: a NaN, infinite or absurd value with ``on_invalid="error"``, naming the
            column and the source row.
        RecrlIOError: ``out`` exists and ``overwrite`` is false.
    """
    options = options or PrepareOptions()
    out = Path(out)
    check_output_folder(out, overwrite)
    # The source files are hashed on a second thread while the arrays are built: hashlib
    # releases the GIL, and much of the building runs on one core.
    files = [Path(path) for path in log.sources if Path(path).is_file()]
    with _Staging(out) as staging, ThreadPoolExecutor(max_workers=1) as hasher:
        digests = {path: hasher.submit(_sha256, path) for path in files}
        with progress_bar(description="prepare", unit="array") as bar:

            def put(name: str, array: np.ndarray) -> None:
                staging.put(name, array)
                bar.update()

            manifest = build_arrays(log, options, put)
        manifest["sources"] = [
            {**source, "sha256": digests[Path(source["path"])].result()}
            for source in manifest["sources"]
            if Path(source["path"]) in digests
        ]
        staging.commit(manifest)
    logger.info(
        "prepared %d rows in %d episodes into %s", manifest["rows"], manifest["episodes"], out
    )
    return load_prepared(out)


def write_dataset(out: Path, arrays: dict[str, np.ndarray], manifest: dict[str, Any]) -> None:
    """Write arrays and manifest into ``out`` through a synced temporary folder and a rename."""
    with _Staging(out) as staging:
        for name, array in arrays.items():
            staging.put(name, array)
        staging.commit(manifest)


class _Staging:
    """A temporary folder beside ``out`` that becomes ``out`` on commit and vanishes otherwise.

    Every array is written and synced on worker threads while the next one is computed. Commit
    waits for those files, writes the manifest (with the dtype and shape of every array), syncs
    the folder and renames it into place. An existing ``out`` is renamed aside first and
    removed after, so a crash leaves the old or the new dataset whole.
    """

    def __init__(self, out: Path) -> None:
        self.out = out
        self.folder = _files.make_staging_folder(out)
        self.arrays: dict[str, dict[str, Any]] = {}
        self.files = _files.BackgroundWriter()

    def __enter__(self) -> _Staging:
        return self

    def __exit__(self, kind: object, error: object, traceback: object) -> None:
        self.files.__exit__(kind, error, traceback)
        if self.folder.exists():
            shutil.rmtree(self.folder, ignore_errors=True)

    def put(self, name: str, array: np.ndarray) -> None:
        """Write one array as ``name.npy`` while the next one is computed.

        The array must not change afterwards, because the caller hands it over.
        """
        self.files.write(self.folder / f"{name}.npy", lambda handle: np.save(handle, array))
        self.arrays[name] = {"dtype": str(array.dtype), "shape": list(array.shape)}

    def commit(self, manifest: dict[str, Any]) -> None:
        """Wait for the array files to be synced, write the manifest and move the folder."""
        self.files.wait()
        manifest["arrays"] = dict(sorted(self.arrays.items()))
        text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
        _files.write_synced(
            self.folder / "manifest.json", lambda handle: handle.write(text.encode())
        )
        _files.sync_directory(self.folder)
        if self.out.exists():
            retired = self.out.with_name(f".{self.out.name}.old")
            shutil.rmtree(retired, ignore_errors=True)
            self.out.rename(retired)
            self.folder.rename(self.out)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            self.folder.rename(self.out)
        _files.sync_directory(self.out.parent)


class PreparedDataset:
    """A prepared dataset on disk, its arrays memory-mapped on first use.

    Attributes:
        path: the dataset folder.
        manifest: the parsed ``manifest.json``.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        manifest_path = self.path / "manifest.json"
        if not manifest_path.is_file():
            raise RecrlIOError(f"{self.path}: not a prepared dataset (manifest.json not found)")
        try:
            self.manifest: dict[str, Any] = json.loads(manifest_path.read_text())
        except json.JSONDecodeError as error:
            raise RecrlIOError(
                f"{manifest_path}: invalid JSON ({error}); prepare the dataset again"
            ) from error
        if self.manifest.get("format_version") != FORMAT_VERSION:
            raise RecrlIOError(
                f"{self.path}: format version {self.manifest.get('format_version')}, this recrl "
                f"reads {FORMAT_VERSION}; prepare the dataset again"
            )
        self._arrays: dict[str, np.ndarray] = {}

    def __getitem__(self, name: str) -> np.ndarray:
        """Return the array ``name``, memory-mapped read-only."""
        if name not in self._arrays:
            path = self.path / f"{name}.npy"
            if not path.is_file():
                raise KeyError(
                    f"{self.path}: no array {name!r}; it has {sorted(self.manifest['arrays'])}"
                )
            self._arrays[name] = np.load(path, mmap_mode="r")
        return self._arrays[name]

    def __len__(self) -> int:
        return int(self.manifest["rows"])

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self.manifest["arrays"]))

    @property
    def reward_names(self) -> list[str]:
        """Response names, in the column order of ``rewards``."""
        return list(self.manifest["reward_names"])

    def split_rows(self, name: str) -> npt.NDArray[np.int64]:
        """Return the rows of split ``train``, ``validation`` or ``test``."""
        if name not in SPLIT_NAMES:
            raise InvalidArgumentError(f"split: expected one of {SPLIT_NAMES}, got {name!r}")
        return np.flatnonzero(self["split"] == SPLIT_NAMES.index(name)).astype(np.int64)

    def observations(self, rows: npt.NDArray[np.int64]) -> dict[str, npt.NDArray[np.generic]]:
        """Assemble the state of each row in ``rows`` [B].

        Returns:
            ``numeric`` float32 [B, Fu + Fi + Fr] (user, item, per-row numeric features),
            ``categorical`` int64 [B, Cu + Ci + Cr] feature codes, ``users`` and ``items``
            int64 [B] dense indices, and ``history`` int64 [B, L] items seen before each step.
        """
        rows = self._row_indices(rows)
        user_rows = self["user_rows"][rows]
        item_rows = self["item_rows"][rows]
        numeric = np.concatenate(
            [
                self["user_numeric"][user_rows],
                self["item_numeric"][item_rows],
                self["row_numeric"][rows],
            ],
            axis=1,
        )
        categorical = np.concatenate(
            [
                self["user_categorical"][user_rows],
                self["item_categorical"][item_rows],
                self["row_categorical"][rows],
            ],
            axis=1,
        )
        return {
            "numeric": numeric.astype(np.float32, copy=False),
            "categorical": categorical.astype(np.int64, copy=False),
            "users": np.asarray(self["users"][rows]),
            "items": np.asarray(self["items"][rows]),
            "history": np.asarray(self["history"][rows]),
        }

    def _row_indices(self, rows: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """Turn integer row numbers, or a boolean mask over all rows, into int64 indices."""
        array = np.asarray(rows)
        if array.dtype == np.bool_:
            if array.shape != (len(self),):
                raise ShapeError(
                    f"rows: a boolean mask needs shape ({len(self)},), got {array.shape}"
                )
            return np.flatnonzero(array).astype(np.int64)
        if not np.issubdtype(array.dtype, np.integer) or array.ndim != 1:
            raise ShapeError(
                f"rows: expected a 1-D array of integer row numbers or a boolean mask, got "
                f"dtype {array.dtype} and shape {array.shape}"
            )
        return array.astype(np.int64, copy=False)

    def categorical_cardinalities(self) -> list[int]:
        """Return the number of codes (0 included) of each column of ``categorical``."""
        features = self.manifest["features"]
        return [
            info["cardinality"]
            for group in (
                features["user"]["categorical"],
                features["item"]["categorical"],
                features["row_categorical"],
            )
            for info in group
        ]


def load_prepared(path: str | Path) -> PreparedDataset:
    """Open the prepared dataset in folder ``path``, sharded (:mod:`recrl.data.shards`) or not.

    A replacing ``prepare`` killed between moving the old dataset aside and moving the new one
    into place leaves ``path`` missing and the old dataset complete in ``.<name>.old``. That
    folder is then moved back first.
    """
    from recrl.data import shards

    path = Path(path)
    retired = path.with_name(f".{path.name}.old")
    if not path.exists() and (retired / "manifest.json").is_file():
        logger.warning(
            "%s: restoring the previous dataset from %s (a replace was interrupted)", path, retired
        )
        retired.rename(path)
        _files.sync_directory(path.parent)
    if shards.is_sharded(path):
        return shards.ShardedDataset(path)
    return PreparedDataset(path)
