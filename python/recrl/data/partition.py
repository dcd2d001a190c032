"""Splitting a log's files into shard files by user hash, and reading one shard back as a log.

Every row goes to shard ``shard_of_users(user_id, N)`` (splitmix64 of the salted user id,
modulo N), so all rows of a user land in one shard, in their source order. Each shard is written
in the layout of its source, so the ordinary readers read it, with a ``.rows`` file beside it
holding the source row number (int64, little-endian) of each of its rows. Delimited files are
split by the streaming Rust kernel ``recrl._core.partition_csv``; OTTO JSONL and Parquet are
split here, in bounded blocks.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from recrl import _core
from recrl.data import readers
from recrl.data.log import FeatureTable, InteractionLog
from recrl.errors import DataFormatError, InvalidArgumentError, InvalidDataError

__all__ = ["LogSource", "PartitionedLog", "partition_log"]

logger = logging.getLogger(__name__)

SOURCE_KINDS = ("kuairand", "taobao", "otto", "table")
_BLOCK_ROWS = 1 << 20
"""Lines or rows routed per block by the Python splitters."""


@dataclass(frozen=True)
class LogSource:
    """Location and reader kind of a log, for ``prepare --shards``.

    Attributes:
        kind: ``kuairand``, ``taobao``, ``otto`` or ``table``, as for ``recrl prepare``.
        path: the file, or for KuaiRand the ``data/`` folder or one log file.
        logs: KuaiRand only: ``standard``, ``random`` or ``all``.
        schema: ``table`` only: the column roles.
    """

    kind: str
    path: Path
    logs: str = "standard"
    schema: readers.TableSchema | None = None

    def __post_init__(self) -> None:
        if self.kind not in SOURCE_KINDS:
            raise InvalidArgumentError(f"kind: expected one of {SOURCE_KINDS}, got {self.kind!r}")
        if self.kind == "table" and self.schema is None:
            raise InvalidArgumentError("schema: a table source needs a TableSchema, got None")
        if not Path(self.path).exists():
            raise DataFormatError(f"{self.path}: file or folder not found")


@dataclass
class PartitionedLog:
    """Shard files of a log, ready to be read one at a time.

    Attributes:
        source: the log that was split.
        folder: the folder holding the shard files.
        rows: int64 [N] rows of each shard.
        users: int64 [N] distinct users of each shard.
        files: the source files that were split, in order.
        user_features, item_features: side tables, read once and shared by every shard.
        categorical_order: position of each label of a text category column in the coding of
            the whole log. The codes of every shard are remapped to it.
    """

    source: LogSource
    folder: Path
    rows: npt.NDArray[np.int64]
    users: npt.NDArray[np.int64]
    files: list[Path]
    extension: str
    user_features: FeatureTable | None = None
    item_features: FeatureTable | None = None
    categorical_order: dict[str, dict[str, int]] = field(default_factory=dict)

    def shard_path(self, index: int) -> Path:
        """Return the log file of shard ``index``."""
        return self.folder / f"shard-{index:05d}.{self.extension}"

    def read_shard(self, index: int) -> InteractionLog:
        """Read shard ``index`` as a log whose ``source_rows`` count rows of the whole source."""
        path = self.shard_path(index)
        log = _read_source_file(self.source, path)
        source_rows = np.fromfile(path.with_suffix(".rows"), dtype="<i8").astype(np.int64)
        assert log.source_rows is not None
        log.source_rows = source_rows[log.source_rows]
        log.sources = [*self.files, *(t.source for t in self._tables() if t.source)]
        log.user_features = self.user_features
        log.item_features = self.item_features
        if self.categorical_order:
            self._remap_categories(log, path)
        return log

    def _tables(self) -> list[FeatureTable]:
        return [t for t in (self.user_features, self.item_features) if t is not None]

    def categorical_labels(self, path: Path) -> dict[str, tuple[npt.NDArray[np.int64], list[str]]]:
        """Return the codes and labels of each text category column of the shard file ``path``."""
        schema = self.source.schema
        assert schema is not None
        if path.suffix.lower() == ".parquet":
            return _parquet_categories(path, schema.categorical_features)
        data = readers._read_columns(
            path,
            [(name, "category") for name in schema.categorical_features],
            delimiter=_table_delimiter(schema, path),
            headerless_names=None if schema.header else schema.columns,
        )
        return {name: data[name] for name in schema.categorical_features}

    def _remap_categories(self, log: InteractionLog, path: Path) -> None:
        # A shard file codes labels in its own order. Mapping them to the order of the whole log
        # gives equal labels equal codes in every shard.
        for name, (_, labels) in self.categorical_labels(path).items():
            order = self.categorical_order[name]
            lookup = np.zeros(len(labels) + 1, dtype=np.int64)
            lookup[1:] = [order[label] + 1 for label in labels]
            log.categorical_features[name] = lookup[log.categorical_features[name]]


def partition_log(source: LogSource, folder: Path, shards: int) -> PartitionedLog:
    """Split the files of ``source`` into ``shards`` shard files in ``folder``.

    Raises:
        InvalidArgumentError: ``shards`` is below 1 or above ``recrl._core.MAX_SHARDS``.
        DataFormatError: a file whose user id column is missing or not int64.
    """
    if not 1 <= shards <= _core.MAX_SHARDS:
        raise InvalidArgumentError(
            f"shards: expected a count in 1..{_core.MAX_SHARDS}, got {shards}"
        )
    files, extension = _source_files(source)
    if source.kind == "otto":
        counts = _partition_otto(files[0], folder, shards)
    elif extension == "parquet":
        assert source.schema is not None
        counts = _partition_parquet(files[0], folder, shards, source.schema.user)
    else:
        counts = _partition_delimited(source, files, folder, shards, extension)
    partitioned = PartitionedLog(
        source=source,
        folder=folder,
        rows=np.asarray(counts["rows"], dtype=np.int64),
        users=np.asarray(counts["users"], dtype=np.int64),
        files=files,
        extension=extension,
    )
    if source.kind == "kuairand":
        partitioned.user_features, partitioned.item_features = _kuairand_tables(source)
    logger.info(
        "split %d rows of %d users into %d shards in %s",
        int(partitioned.rows.sum()),
        int(partitioned.users.sum()),
        shards,
        folder,
    )
    return partitioned


def _source_files(source: LogSource) -> tuple[list[Path], str]:
    path = Path(source.path)
    if source.kind == "kuairand" and path.is_dir():
        files = readers._kuairand_log_files(path, source.logs)
        if not files and source.logs == "standard":
            files = sorted(path.glob("*likehate*.tsv"))
        if not files:
            raise DataFormatError(f"{path}: no KuaiRand log found for logs={source.logs!r}")
        return files, files[0].suffix.lstrip(".").lower() or "csv"
    if path.is_dir():
        raise DataFormatError(f"{path}: expected a file for a {source.kind} source, got a folder")
    return [path], path.suffix.lstrip(".").lower() or "csv"


def _partition_delimited(
    source: LogSource, files: list[Path], folder: Path, shards: int, extension: str
) -> dict[str, Any]:
    headerless: list[str] | None = None
    if source.kind == "kuairand":
        with files[0].open("rb") as handle:
            header = handle.readline().decode("utf-8", errors="replace")
        delimiter = "\t" if "\t" in header else ","
        user_column = "user_id"
    elif source.kind == "taobao":
        delimiter, user_column, headerless = ",", "user_id", list(readers._TAOBAO_COLUMNS)
    else:
        schema = source.schema
        assert schema is not None
        delimiter = _table_delimiter(schema, files[0])
        user_column = schema.user
        if not schema.header:
            if not schema.columns:
                raise InvalidArgumentError(
                    "schema: a file without a header needs `columns` naming every column in order"
                )
            headerless = list(schema.columns)
    result: dict[str, Any] = _core.partition_csv(
        files,
        folder,
        user_column=user_column,
        shards=shards,
        extension=extension,
        delimiter=delimiter,
        headerless_names=headerless,
    )
    return result


def _table_delimiter(schema: readers.TableSchema, path: Path) -> str:
    return schema.delimiter or ("\t" if path.suffix.lower() == ".tsv" else ",")


class _ShardFiles:
    """Open shard files and their ``.rows`` files, with per-shard row and user counts."""

    def __init__(self, folder: Path, shards: int, extension: str) -> None:
        self.paths = [folder / f"shard-{i:05d}.{extension}" for i in range(shards)]
        self.rows_files = [open(p.with_suffix(".rows"), "wb") for p in self.paths]  # noqa: SIM115
        self.rows = np.zeros(shards, dtype=np.int64)
        self.users: list[set[int]] = [set() for _ in range(shards)]

    def add_rows(self, shard: int, source_rows: npt.NDArray[np.int64], users: Any) -> None:
        source_rows.astype("<i8").tofile(self.rows_files[shard])
        self.rows[shard] += len(source_rows)
        self.users[shard].update(int(u) for u in users)

    def close(self) -> dict[str, Any]:
        for handle in self.rows_files:
            handle.close()
        return {"rows": self.rows, "users": np.array([len(u) for u in self.users], np.int64)}


def _partition_otto(path: Path, folder: Path, shards: int) -> dict[str, Any]:
    files = _ShardFiles(folder, shards, "jsonl")
    outputs = [open(p, "w", encoding="utf-8") for p in files.paths]  # noqa: SIM115
    try:
        first_event = 0
        block: list[tuple[str, int, int]] = []
        with path.open(encoding="utf-8") as handle:
            for line_number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    session, events = int(record["session"]), len(record["events"])
                except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
                    raise DataFormatError(
                        f"{path}, line {line_number}: expected a JSON object with an integer "
                        f"session and a list of events, failed with {error!r}"
                    ) from error
                block.append((line, session, events))
                if len(block) == _BLOCK_ROWS:
                    first_event = _route_otto_block(block, files, outputs, shards, first_event)
                    block = []
        _route_otto_block(block, files, outputs, shards, first_event)
    finally:
        for output in outputs:
            output.close()
    return files.close()


def _route_otto_block(
    block: list[tuple[str, int, int]],
    files: _ShardFiles,
    outputs: list[Any],
    shards: int,
    first_event: int,
) -> int:
    if not block:
        return first_event
    sessions = np.array([session for _, session, _ in block], dtype=np.int64)
    targets = _core.shard_of_users(sessions, shards)
    for (line, session, events), shard in zip(block, targets.tolist(), strict=True):
        outputs[shard].write(line if line.endswith("\n") else line + "\n")
        files.add_rows(shard, np.arange(first_event, first_event + events), [session])
        first_event += events
    return first_event


def _partition_parquet(path: Path, folder: Path, shards: int, user_column: str) -> dict[str, Any]:
    import pyarrow.parquet as parquet  # type: ignore[import-untyped]

    files = _ShardFiles(folder, shards, "parquet")
    parquet_file = parquet.ParquetFile(path)
    if user_column not in parquet_file.schema_arrow.names:
        raise DataFormatError(
            f"{path}: column {user_column!r} not found; it has {parquet_file.schema_arrow.names}"
        )
    writers = [parquet.ParquetWriter(p, parquet_file.schema_arrow) for p in files.paths]
    try:
        first_row = 0
        for batch in parquet_file.iter_batches(batch_size=_BLOCK_ROWS):
            column = batch.column(user_column)
            if column.null_count:
                raise InvalidDataError(f"{path}: column {user_column} has missing user ids")
            users = column.to_numpy().astype(np.int64, copy=False)
            targets = _core.shard_of_users(np.ascontiguousarray(users), shards)
            for shard in np.unique(targets).tolist():
                positions = np.flatnonzero(targets == shard)
                writers[shard].write_batch(batch.take(positions))
                files.add_rows(shard, first_row + positions, np.unique(users[positions]))
            first_row += batch.num_rows
    finally:
        for writer in writers:
            writer.close()
    return files.close()


def _parquet_categories(
    path: Path, names: tuple[str, ...]
) -> dict[str, tuple[npt.NDArray[np.int64], list[str]]]:
    import pyarrow.parquet as parquet

    table = parquet.read_table(path, columns=list(names))
    result = {}
    for name in names:
        text = np.asarray(
            table.column(name).cast("string").fill_null("").to_numpy(zero_copy_only=False)
        )
        labels, codes = np.unique(text, return_inverse=True)
        shifted = codes.astype(np.int64) + 1
        shifted[text == ""] = 0
        result[name] = (shifted, [str(label) for label in labels])
    return result


def _kuairand_tables(source: LogSource) -> tuple[FeatureTable | None, FeatureTable | None]:
    path = Path(source.path)
    folder = path if path.is_dir() else path.parent
    user_path = readers._first(folder, "user_features*.csv")
    video_path = readers._first(folder, "video_features_basic*.csv")
    user_table = (
        readers._feature_table(
            user_path,
            "user_id",
            readers._KUAIRAND_USER_NUMERIC,
            readers._KUAIRAND_USER_CATEGORICAL,
        )
        if user_path
        else None
    )
    video_table = (
        readers._feature_table(
            video_path,
            "video_id",
            readers._KUAIRAND_VIDEO_NUMERIC,
            readers._KUAIRAND_VIDEO_CATEGORICAL,
        )
        if video_path
        else None
    )
    return user_table, video_table


def _read_source_file(source: LogSource, path: Path) -> InteractionLog:
    if source.kind == "kuairand":
        # The shard folder holds no feature files, so none are read here; the partitioned log
        # attaches the tables it read once.
        return readers.read_kuairand(path)
    if source.kind == "taobao":
        return readers.read_taobao(path)
    if source.kind == "otto":
        return readers.read_otto(path)
    assert source.schema is not None
    return readers.read_table(path, source.schema)
