"""Sharded prepared datasets: a log split by user hash and prepared shard by shard.

``prepare_sharded`` never keeps the whole log in memory. It runs in four steps:

1. split the source files into N shard files by a hash of the user id (streaming; in Rust for
   delimited files), so every user's rows are in one shard;
2. read each shard once to validate it and collect its sorted timestamps on disk, from which
   the exact time-split cuts of the whole log follow;
3. read each shard again to accumulate the training-split vocabularies, the per-row feature
   moments and the side-table row counts, each in memory bounded by the number of distinct
   users, items or feature rows, not by the number of log rows;
4. prepare each shard with those statistics (:class:`~recrl.data.dataset.SharedStatistics`),
   so every shard has the same dense indices and normalisation as the unsharded dataset.

Peak memory is that of preparing the largest shard plus the vocabularies and side-feature
tables of the whole log. The output folder contains ``manifest.json`` (the shard list, the
merged statistics and totals), ``user_vocabulary.npy``, ``item_vocabulary.npy`` and
``shard-00000/`` ..., each a prepared dataset that :func:`~recrl.data.load_prepared` also
opens alone. Shard folders are named by hash bucket, and a bucket without rows gets no folder.

Limitations:
    - Taobao's ``context_session`` numbers sessions within each shard, not across the log.
    - A parse error inside a shard file names the shard file and its line; the row numbers of
      value errors (NaN, infinite) are those of the source.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

import recrl
from recrl import _core
from recrl.data import dataset
from recrl.data.dataset import PreparedDataset, PrepareOptions, SharedStatistics
from recrl.data.log import InteractionLog
from recrl.data.partition import LogSource, PartitionedLog, partition_log
from recrl.errors import InvalidArgumentError, InvalidDataError, RecrlIOError

__all__ = ["ShardedDataset", "is_sharded", "prepare_sharded"]

logger = logging.getLogger(__name__)

SHARD_HASH = "splitmix64(user_id ^ 0x5348415244533031) mod shards"
"""Rule that assigns rows to shards, recorded in the manifest."""
GLOBAL_TABLES = (
    "user_vocabulary",
    "item_vocabulary",
    "user_numeric",
    "user_categorical",
    "item_numeric",
    "item_categorical",
)
"""Arrays that are the same in every shard: vocabularies and side-feature tables."""


def is_sharded(path: Path) -> bool:
    """Return whether ``path`` contains a sharded prepared dataset."""
    manifest = path / "manifest.json"
    if not manifest.is_file():
        return False
    try:
        return "shards" in json.loads(manifest.read_text())
    except json.JSONDecodeError:
        return False


def prepare_sharded(
    source: LogSource,
    out: str | Path,
    shards: int,
    options: PrepareOptions | None = None,
    *,
    overwrite: bool = False,
) -> ShardedDataset:
    """Prepare the log of ``source`` as ``shards`` shards in the folder ``out``, atomically.

    Args:
        source: the log files and how to read them.
        out: output folder; it appears complete or not at all.
        shards: N, the number of hash buckets of users; at least 1 and at most the number of
            users.
        options: as for :func:`recrl.data.prepare`.
        overwrite: replace an existing prepared dataset at ``out``.

    Raises:
        InvalidArgumentError: ``shards`` is below 1 or above the number of users.
        InvalidDataError: invalid values with ``on_invalid="error"``, or an empty training split.
        RecrlIOError: ``out`` exists and ``overwrite`` is false, or is not a prepared dataset.
    """
    options = options or PrepareOptions()
    out = Path(out)
    if isinstance(shards, bool) or not isinstance(shards, int) or shards < 1:
        raise InvalidArgumentError(f"shards: expected an integer of at least 1, got {shards!r}")
    dataset.check_output_folder(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{out.name}.partition-", dir=out.parent))
    try:
        partitioned = partition_log(source, scratch, shards)
        users = int(partitioned.users.sum())
        if shards > users:
            raise InvalidArgumentError(
                f"shards: expected at most {users} (the number of users in {source.path}), "
                f"got {shards}; every shard needs at least one user"
            )
        manifest = _prepare_partitioned(partitioned, out, options)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    logger.info(
        "prepared %d rows in %d episodes as %d shards into %s",
        manifest["rows"],
        manifest["episodes"],
        len(manifest["shards"]),
        out,
    )
    return ShardedDataset(out)


@dataclass
class _Scan:
    """Result of the first read of every shard: sizes, time range and category order."""

    buckets: list[int] = field(default_factory=list)
    rows: int = 0
    window_end_ms: int = -(2**63)
    first_rows: dict[str, dict[str, int]] = field(default_factory=dict)


def _checked(log: InteractionLog, options: PrepareOptions) -> InteractionLog:
    counts: dict[str, int] = {}
    return dataset._check_row_values(log, options, counts)


def _scan_shards(partitioned: PartitionedLog, options: PrepareOptions, scratch: Path) -> _Scan:
    """Validate each shard, save its sorted timestamps and find the order of text categories."""
    scan = _Scan()
    text_categories = partitioned.source.kind == "table" and bool(
        partitioned.source.schema and partitioned.source.schema.categorical_features
    )
    for bucket in np.flatnonzero(partitioned.rows).tolist():
        log = partitioned.read_shard(bucket)
        if text_categories:
            _collect_first_rows(partitioned, bucket, log, scan.first_rows)
        log = _checked(log, options)
        if len(log) == 0:
            continue
        scan.buckets.append(bucket)
        scan.rows += len(log)
        scan.window_end_ms = max(scan.window_end_ms, int(log.timestamps.max()))
        np.save(scratch / f"times-{bucket:05d}.npy", np.sort(log.timestamps, kind="stable"))
    if not scan.buckets:
        raise InvalidDataError("the log has no rows left to prepare")
    if text_categories:
        parquet = partitioned.extension == "parquet"
        for name, first in scan.first_rows.items():
            # Parquet codes follow sorted labels and delimited codes first appearance; the
            # whole-log order of either is rebuilt from the shards.
            ordered = sorted(first) if parquet else sorted(first, key=first.__getitem__)
            partitioned.categorical_order[name] = {label: i for i, label in enumerate(ordered)}
    return scan


def _collect_first_rows(
    partitioned: PartitionedLog,
    bucket: int,
    log: InteractionLog,
    first_rows: dict[str, dict[str, int]],
) -> None:
    source_rows = np.fromfile(partitioned.shard_path(bucket).with_suffix(".rows"), dtype="<i8")
    for name, (codes, labels) in partitioned.categorical_labels(
        partitioned.shard_path(bucket)
    ).items():
        present, first = np.unique(codes, return_index=True)
        seen = first_rows.setdefault(name, {})
        for code, position in zip(present.tolist(), first.tolist(), strict=True):
            if code == 0:
                continue
            row = int(source_rows[position])
            label = labels[code - 1]
            seen[label] = min(seen.get(label, row), row)
    assert len(log) == len(source_rows)


def time_cuts(
    sorted_parts: list[npt.NDArray[np.int64]], options: PrepareOptions
) -> tuple[int | None, int | None]:
    """Return the time-split cuts of the concatenation of ``sorted_parts`` without merging them.

    Each cut is the k-th smallest timestamp over all parts, with k from the split fractions as
    in the unsharded split. It is found by bisection on the value, because the count of
    timestamps at most v is a sum of ``searchsorted`` over the sorted parts, which may be
    memory-mapped.
    """
    total = sum(len(part) for part in sorted_parts)
    train, validation, _ = options.split_fractions
    cuts: list[int | None] = []
    for fraction in (train, train + validation):
        index = dataset.split_cut_index(fraction, total)
        cuts.append(None if index >= total else _kth_smallest(sorted_parts, index))
    return cuts[0], cuts[1]


def _kth_smallest(sorted_parts: list[npt.NDArray[np.int64]], k: int) -> int:
    low = min(int(part[0]) for part in sorted_parts if len(part))
    high = max(int(part[-1]) for part in sorted_parts if len(part))
    # Smallest v with more than k values <= v.
    while low < high:
        middle = low + (high - low) // 2
        at_most = sum(int(np.searchsorted(part, middle, side="right")) for part in sorted_parts)
        if at_most > k:
            high = middle
        else:
            low = middle + 1
    return low


class _Moments:
    """Mean and variance of a feature over parts of a log.

    The parts are merged exactly: the variance of the whole is the count-weighted mean of each
    part's variance plus its squared distance from the overall mean.
    """

    def __init__(self) -> None:
        self.parts: list[tuple[int, float, float]] = []
        self.single: tuple[float, float] | None = None

    def add(self, values: npt.NDArray[np.float64]) -> None:
        finite = values[np.isfinite(values)]
        if len(finite):
            self.parts.append(
                (
                    len(finite),
                    float(finite.mean(dtype=np.float64)),
                    float(finite.var(dtype=np.float64)),
                )
            )
            if len(self.parts) == 1:
                # One part alone gives exactly what the unsharded prepare computes.
                self.single = dataset.training_moments(finite)

    def result(self) -> tuple[float, float]:
        if len(self.parts) <= 1:
            return self.single or (0.0, 1.0)
        count = sum(n for n, _, _ in self.parts)
        mean = sum(n * m for n, m, _ in self.parts) / count
        variance = sum(n * (v + (m - mean) ** 2) for n, m, v in self.parts) / count
        return mean, dataset.usable_std(mean, math.sqrt(variance))


@dataclass
class _Accumulators:
    user_vocabulary: npt.NDArray[np.int64] = field(
        default_factory=lambda: np.zeros(0, dtype=np.int64)
    )
    item_vocabulary: npt.NDArray[np.int64] = field(
        default_factory=lambda: np.zeros(0, dtype=np.int64)
    )
    items: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    numeric: dict[str, _Moments] = field(default_factory=dict)
    categorical: dict[str, npt.NDArray[np.int64]] = field(default_factory=dict)
    side_counts: dict[str, tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]] = field(
        default_factory=dict
    )
    train_rows: int = 0


def _accumulate_shard(
    log: InteractionLog,
    options: PrepareOptions,
    cuts: tuple[int | None, int | None],
    totals: _Accumulators,
) -> None:
    """Add one shard's training vocabularies, feature moments and side-table counts."""
    order = _core.stable_order(log.user_ids, log.timestamps)
    user_ids = _core.take_int64(log.user_ids, order)
    item_ids = _core.take_int64(log.item_ids, order)
    timestamps = _core.take_int64(log.timestamps, order)
    split, _ = dataset._split_labels(timestamps, user_ids, options, cuts)
    train = split == 0
    totals.train_rows += int(train.sum())

    totals.user_vocabulary = np.union1d(totals.user_vocabulary, user_ids[train])
    totals.item_vocabulary = np.union1d(totals.item_vocabulary, item_ids[train])
    totals.items = np.union1d(totals.items, item_ids)
    for name, values in log.numeric_features.items():
        totals.numeric.setdefault(name, _Moments()).add(values[order].astype(np.float64)[train])
    for name, codes in log.categorical_features.items():
        train_codes = codes[order].astype(np.int64)[train]
        known = totals.categorical.get(name, np.zeros(0, dtype=np.int64))
        totals.categorical[name] = np.union1d(known, train_codes)
    for kind, table, ids in (
        ("user", log.user_features, user_ids),
        ("item", log.item_features, item_ids),
    ):
        if table is None:
            continue
        train_counts, all_counts = dataset.side_table_counts(table, ids, train)
        if kind in totals.side_counts:
            known_train, known_all = totals.side_counts[kind]
            train_counts, all_counts = known_train + train_counts, known_all + all_counts
        totals.side_counts[kind] = (train_counts, all_counts)


def _shared_statistics(
    partitioned: PartitionedLog, scan: _Scan, options: PrepareOptions, scratch: Path
) -> tuple[SharedStatistics, _Accumulators]:
    if options.split == "time":
        parts = [np.load(scratch / f"times-{b:05d}.npy", mmap_mode="r") for b in scan.buckets]
        cuts = time_cuts(parts, options)
        del parts
    else:
        cuts = (None, None)
    totals = _Accumulators()
    for bucket in scan.buckets:
        _accumulate_shard(_checked(partitioned.read_shard(bucket), options), options, cuts, totals)
    if totals.train_rows == 0:
        raise InvalidDataError(
            "the training split is empty; check split_fractions or use a larger log"
        )
    shared = SharedStatistics(
        split_cuts_ms=cuts,
        window_end_ms=scan.window_end_ms,
        user_vocabulary=totals.user_vocabulary.astype(np.int64),
        item_vocabulary=totals.item_vocabulary.astype(np.int64),
        row_numeric={name: moments.result() for name, moments in totals.numeric.items()},
        row_categorical={k: v.astype(np.int64) for k, v in totals.categorical.items()},
        side_counts=totals.side_counts,
    )
    return shared, totals


def _prepare_partitioned(
    partitioned: PartitionedLog, out: Path, options: PrepareOptions
) -> dict[str, Any]:
    scratch = partitioned.folder
    scan = _scan_shards(partitioned, options, scratch)
    shared, totals = _shared_statistics(partitioned, scan, options, scratch)
    with dataset._Staging(out) as staging:
        shard_manifests = []
        first_shard: Path | None = None
        hashed_sources: list[dict[str, Any]] | None = None
        for bucket in scan.buckets:
            name = f"shard-{bucket:05d}"
            with dataset._Staging(staging.folder / name) as shard_staging:
                put = _linking_writer(shard_staging, first_shard)
                manifest = dataset.build_arrays(
                    partitioned.read_shard(bucket), options, put, shared
                )
                # Every shard lists the same source files, so they are hashed once.
                hashed_sources = hashed_sources or _hashed_sources(manifest["sources"])
                manifest["sources"] = hashed_sources
                manifest["shard"] = {"name": name, "bucket": bucket, "hash": SHARD_HASH}
                shard_staging.commit(manifest)
            first_shard = first_shard or staging.folder / name
            shard_manifests.append(manifest)
            logger.info("prepared shard %s: %d rows", name, manifest["rows"])
        top_writer = _linking_writer(staging, first_shard)
        top_writer("user_vocabulary", shared.user_vocabulary)
        top_writer("item_vocabulary", shared.item_vocabulary)
        top = _merged_manifest(shard_manifests, partitioned, options, len(totals.items))
        staging.commit(top)
    return top


def _linking_writer(
    staging: dataset._Staging, first_shard: Path | None
) -> Callable[[str, np.ndarray], None]:
    """Return a writer that hard-links the arrays shared by every shard to the first shard's.

    Vocabularies and side-feature tables are equal in every shard, so later shards link to the
    first shard's files instead of storing copies. Where links fail (another file system), the
    array is written.
    """

    def put(name: str, array: np.ndarray) -> None:
        if first_shard is not None and name in GLOBAL_TABLES:
            try:
                os.link(first_shard / f"{name}.npy", staging.folder / f"{name}.npy")
            except OSError:
                logger.debug("could not link %s; writing a copy", name)
            else:
                staging.arrays[name] = {"dtype": str(array.dtype), "shape": list(array.shape)}
                return
        staging.put(name, array)

    return put


def _hashed_sources(sources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {**source, "sha256": dataset._sha256(Path(source["path"]))}
        for source in sources
        if Path(source["path"]).is_file()
    ]


def _merged_manifest(
    manifests: list[dict[str, Any]],
    partitioned: PartitionedLog,
    options: PrepareOptions,
    items: int,
) -> dict[str, Any]:
    """Combine the shard manifests into the manifest of the whole dataset."""
    first = manifests[0]
    rows = sum(m["rows"] for m in manifests)
    episodes = sum(m["episodes"] for m in manifests)
    counts: dict[str, int] = {}
    for manifest in manifests:
        for key, value in manifest["counts"].items():
            counts[key] = counts.get(key, 0) + int(value)
    split_rows = {
        name: sum(m["split"]["rows"][name] for m in manifests) for name in dataset.SPLIT_NAMES
    }
    episode_statistics = {
        "terminated": sum(m["episode_statistics"]["terminated"] for m in manifests),
        "truncated": sum(m["episode_statistics"]["truncated"] for m in manifests),
        "mean_length": rows / episodes if episodes else 0.0,
        "max_length": max(m["episode_statistics"]["max_length"] for m in manifests),
    }
    reward_means = {
        name: sum(m["reward_means"][name] * m["rows"] for m in manifests) / rows
        for name in first["reward_names"]
    }
    return {
        "format_version": dataset.FORMAT_VERSION,
        "recrl_version": recrl.__version__,
        "schema": first["schema"],
        "rows": rows,
        "episodes": episodes,
        "users": sum(m["users"] for m in manifests),
        "items": items,
        "reward_names": first["reward_names"],
        "options": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(options).items()},
        "split": {**first["split"], "rows": split_rows},
        "vocabularies": first["vocabularies"],
        "features": _merged_features(manifests),
        "episode_statistics": episode_statistics,
        "reward_means": reward_means,
        "counts": counts,
        "sources": first["sources"],
        "shard_hash": SHARD_HASH,
        "shards": [
            {
                "name": m["shard"]["name"],
                "bucket": m["shard"]["bucket"],
                "rows": m["rows"],
                "episodes": m["episodes"],
                "users": m["users"],
            }
            for m in manifests
        ],
        "merged_arrays": _merged_arrays(manifests, rows, episodes),
    }


def _merged_features(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    """Shard 0's feature statistics (shared by all), with per-shard counts summed."""
    features: dict[str, Any] = json.loads(json.dumps(manifests[0]["features"]))
    for position, stats in enumerate(features["row_numeric"]):
        for key in ("missing", "imputed"):
            if key in stats:
                stats[key] = sum(m["features"]["row_numeric"][position][key] for m in manifests)
    for kind in ("user", "item"):
        features[kind]["matched_rows"] = sum(m["features"][kind]["matched_rows"] for m in manifests)
    return features


def _merged_arrays(
    manifests: list[dict[str, Any]], rows: int, episodes: int
) -> dict[str, dict[str, Any]]:
    """Dtype and shape of each array as :class:`ShardedDataset` returns it."""
    merged = {}
    for name, info in manifests[0]["arrays"].items():
        shape = list(info["shape"])
        if name == "episode_starts":
            shape[0] = episodes + 1
        elif name not in GLOBAL_TABLES:
            shape[0] = rows
        merged[name] = {"dtype": info["dtype"], "shape": shape}
    return merged


class ShardedDataset(PreparedDataset):
    """A sharded prepared dataset that reads like one :class:`PreparedDataset`.

    Each shard's arrays are memory-mapped on first use. ``dataset[name]`` of a per-row array
    concatenates the shards (with ``episode_starts`` and ``next_index`` shifted to whole-dataset
    row numbers) into one in-memory array. Vocabularies and side-feature tables are the same in
    every shard and are returned memory-mapped. :meth:`observations` gathers rows shard by shard
    without concatenating.

    Attributes:
        shards: the shards, each a :class:`PreparedDataset`.
        offsets: int64 [S + 1], the first whole-dataset row of each shard and the row count.
    """

    def __init__(self, path: str | Path) -> None:
        super().__init__(path)
        if "shards" not in self.manifest:
            raise RecrlIOError(f"{self.path}: not a sharded dataset (no shard list in manifest)")
        self.shards = [
            PreparedDataset(self.path / entry["name"]) for entry in self.manifest["shards"]
        ]
        self.offsets = np.concatenate(
            [[0], np.cumsum([len(shard) for shard in self.shards])]
        ).astype(np.int64)
        self._top_arrays = dict(self.manifest["arrays"])
        self.manifest["arrays"] = self.manifest["merged_arrays"]

    def __getitem__(self, name: str) -> np.ndarray:
        """Return the array ``name`` of the whole dataset."""
        if name not in self.manifest["arrays"]:
            raise KeyError(f"{self.path}: no array {name!r}; it has {sorted(self)}")
        if name in self._top_arrays:
            array: np.ndarray = np.load(self.path / f"{name}.npy", mmap_mode="r")
            return array
        if name in GLOBAL_TABLES:
            return self.shards[0][name]
        if name == "episode_starts":
            parts = [shard[name][:-1] + offset for shard, offset in self._with_offsets()]
            return np.concatenate([*parts, [len(self)]]).astype(np.int64)
        if name == "next_index":
            return np.concatenate(
                [np.where(s[name] >= 0, s[name] + offset, -1) for s, offset in self._with_offsets()]
            ).astype(np.int64)
        return np.concatenate([shard[name] for shard in self.shards])

    def _with_offsets(self) -> Iterator[tuple[PreparedDataset, int]]:
        return zip(self.shards, self.offsets[:-1].tolist(), strict=True)

    def _take(self, name: str, rows: npt.NDArray[np.int64]) -> np.ndarray:
        """Gather the per-row array ``name`` at whole-dataset ``rows`` [B], shard by shard."""
        shard_of_row = np.searchsorted(self.offsets, rows, side="right") - 1
        info = self.manifest["arrays"][name]
        result = np.empty((len(rows), *info["shape"][1:]), dtype=info["dtype"])
        for index in np.unique(shard_of_row).tolist():
            positions = np.flatnonzero(shard_of_row == index)
            local = rows[positions] - self.offsets[index]
            result[positions] = self.shards[index][name][local]
        return result

    def observations(self, rows: npt.NDArray[np.int64]) -> dict[str, npt.NDArray[np.generic]]:
        """Assemble the state of each row in ``rows`` [B], as the unsharded dataset does."""
        rows = self._row_indices(rows)
        if len(rows) and (rows.min() < 0 or rows.max() >= len(self)):
            raise InvalidArgumentError(
                f"rows: expected row numbers in [0, {len(self)}), got values from "
                f"{int(rows.min())} to {int(rows.max())}"
            )
        user_rows = self._take("user_rows", rows)
        item_rows = self._take("item_rows", rows)
        numeric = np.concatenate(
            [
                self["user_numeric"][user_rows],
                self["item_numeric"][item_rows],
                self._take("row_numeric", rows),
            ],
            axis=1,
        )
        categorical = np.concatenate(
            [
                self["user_categorical"][user_rows],
                self["item_categorical"][item_rows],
                self._take("row_categorical", rows),
            ],
            axis=1,
        )
        return {
            "numeric": numeric.astype(np.float32, copy=False),
            "categorical": categorical.astype(np.int64, copy=False),
            "users": self._take("users", rows),
            "items": self._take("items", rows),
            "history": self._take("history", rows),
        }
