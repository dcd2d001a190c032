"""Readers that turn log files into :class:`~recrl.data.log.InteractionLog`.

Delimited text is parsed by the streaming Rust reader (``recrl._core.read_csv``). Built-in
readers cover the official KuaiRand files (Gao et al., CIKM 2022), the processed KuaiRand
like/hate variant, Taobao UserBehavior (Zhu et al., KDD 2018) and OTTO session JSONL; any other
log is read through a declared :class:`TableSchema`.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from recrl import _core
from recrl.data.log import FeatureTable, InteractionLog
from recrl.errors import DataFormatError, InvalidArgumentError, InvalidDataError
from recrl.progress import progress_bar

__all__ = [
    "KUAIRAND_LOG_COLUMNS",
    "TableSchema",
    "read_kuairand",
    "read_otto",
    "read_table",
    "read_taobao",
]

logger = logging.getLogger(__name__)

#: The 19 columns of the official KuaiRand log files, in file order.
KUAIRAND_LOG_COLUMNS = (
    "user_id", "video_id", "date", "hourmin", "time_ms", "is_click", "is_like", "is_follow",
    "is_comment", "is_forward", "is_hate", "long_view", "play_time_ms", "duration_ms",
    "profile_stay_time", "comment_stay_time", "is_profile_enter", "is_rand", "tab",
)  # fmt: skip

#: The 16 columns of the processed like/hate KuaiRand variant (``label``: 1 = like, 0 = hate).
KUAIRAND_LIKEHATE_COLUMNS = (
    "user_id", "video_id", "date", "hourmin", "time_ms", "is_click", "is_follow", "is_comment",
    "is_forward", "long_view", "play_time_ms", "duration_ms", "comment_stay_time",
    "is_profile_enter", "label", "timestamp",
)  # fmt: skip

#: Interaction responses of KuaiRand besides watch time, in reward order.
KUAIRAND_INTERACTIONS = ("is_click", "is_like", "is_follow", "is_comment", "is_forward", "is_hate")

_KUAIRAND_USER_NUMERIC = ("follow_user_num", "fans_user_num", "friend_user_num", "register_days")
_KUAIRAND_USER_CATEGORICAL = (
    "user_active_degree", "is_lowactive_period", "is_live_streamer", "is_video_author",
    "follow_user_num_range", "fans_user_num_range", "friend_user_num_range",
    "register_days_range", *(f"onehot_feat{i}" for i in range(18)),
)  # fmt: skip
_KUAIRAND_VIDEO_NUMERIC = ("video_duration", "server_width", "server_height")
_KUAIRAND_VIDEO_CATEGORICAL = (
    "author_id", "video_type", "upload_type", "visible_status", "music_id", "music_type", "tag",
)  # fmt: skip

# Taobao UserBehavior: documented period 2017-11-25 00:00 to 2017-12-03 24:00, China time (UTC+8).
_TAOBAO_PERIOD_S = (1511539200, 1512316800)
_TAOBAO_COLUMNS = ["user_id", "item_id", "category_id", "behavior_type", "timestamp"]


def _read_columns(
    path: Path,
    columns: Sequence[tuple[str, str]],
    *,
    delimiter: str = ",",
    headerless_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    names = None if headerless_names is None else list(headerless_names)
    return _core.read_csv(path, list(columns), delimiter=delimiter, headerless_names=names)


def _feature_table(
    path: Path, id_column: str, numeric: Sequence[str], categorical: Sequence[str]
) -> FeatureTable:
    columns = [(id_column, "int64")]
    columns += [(name, "float64") for name in numeric]
    columns += [(name, "category") for name in categorical]
    data = _read_columns(path, columns)
    table = FeatureTable(ids=data[id_column], source=path)
    for name in numeric:
        table.numeric[name] = data[name]
    for name in categorical:
        codes, labels = data[name]
        table.categorical[name] = codes
        table.labels[name] = labels
    return table


def _kuairand_responses(
    data: dict[str, Any], counts: dict[str, int]
) -> tuple[dict[str, npt.NDArray[np.float32]], dict[str, npt.NDArray[np.generic]]]:
    """Build KuaiRand rewards and context columns, counting the repairs they need."""
    duration_ms = data["duration_ms"]
    # Watch ratio is undefined without a duration: those rows get 0 and the flag duration_zero.
    watch = _core.kuairand_watch_responses(data["play_time_ms"], duration_ms)
    counts["play_time_negative_clipped"] = (
        counts.get("play_time_negative_clipped", 0) + watch["negative_play_rows"]
    )
    counts["duration_zero"] = counts.get("duration_zero", 0) + watch["zero_duration_rows"]

    responses: dict[str, npt.NDArray[np.float32]] = {"watch_time": watch["watch_time"]}
    for name in KUAIRAND_INTERACTIONS:
        responses[name] = data[name].astype(np.float32)
    context: dict[str, npt.NDArray[np.generic]] = {
        "watch_ratio": watch["watch_ratio"],
        "duration_zero": watch["duration_zero"],
        "long_view": data["long_view"].astype(np.uint8, copy=False),
        "duration_ms": duration_ms.astype(np.int64, copy=False),
    }
    if "is_rand" in data:
        context["is_rand"] = data["is_rand"].astype(np.uint8, copy=False)
    return responses, context


def _kuairand_log_files(source: Path, logs: str) -> list[Path]:
    patterns = {"standard": ["log_standard_*.csv"], "random": ["log_random_*.csv"]}
    patterns["all"] = patterns["standard"] + patterns["random"]
    if logs not in patterns:
        raise InvalidArgumentError(f"logs: expected one of {sorted(patterns)}, got {logs!r}")
    return sorted({path for pattern in patterns[logs] for path in source.glob(pattern)})


def read_kuairand(
    source: str | Path,
    *,
    logs: str = "standard",
    user_features: str | Path | None = None,
    video_features: str | Path | None = None,
) -> InteractionLog:
    """Read KuaiRand logs with their user and video features.

    Args:
        source: a KuaiRand ``data/`` folder (Pure, 1K or 27K), one official log file, or the
            processed tab-separated like/hate file (16 columns, ``label`` 1 = like, 0 = hate).
        logs: in a folder, which logs to read: ``standard`` (``log_standard_*.csv``), ``random``
            (``log_random_*.csv``, random exposure) or ``all``.
        user_features: ``user_features_*.csv``; found in the folder when not given.
        video_features: ``video_features_basic_*.csv``; found in the folder when not given.

    Returns:
        The log with rewards watch_time (seconds, negative play times clipped to 0 and counted),
        is_click, is_like, is_follow, is_comment, is_forward and is_hate. Its context columns are
        watch_ratio (play / duration, 0 where the duration is 0, flagged and counted),
        long_view, duration_ms and, for official files, is_rand.

    Raises:
        DataFormatError: no log file in the folder, or a file in neither known layout.
    """
    source = Path(source)
    folder = source if source.is_dir() else source.parent
    if source.is_dir():
        files = _kuairand_log_files(source, logs)
        if not files and logs == "standard":
            # The processed like/hate file is a subset of the standard log.
            files = sorted(source.glob("*likehate*.tsv"))
        if not files:
            wanted = {
                "standard": "log_standard_*.csv or the processed *likehate*.tsv",
                "random": "log_random_*.csv",
                "all": "log_standard_*.csv or log_random_*.csv",
            }
            raise DataFormatError(
                f"{source}: no KuaiRand log found for logs={logs!r}; expected {wanted[logs]} "
                "in this folder"
            )
    elif source.exists():
        files = [source]
    else:
        raise DataFormatError(f"{source}: file or folder not found")

    parts: list[dict[str, Any]] = []
    counts: dict[str, int] = {}
    for path in progress_bar(files, description="read KuaiRand", unit="file"):
        parts.append(_read_kuairand_file(path, counts))
        logger.info("read %d rows from %s", len(parts[-1]["user_id"]), path)
    if len(parts) == 1:
        data = parts[0]
    else:
        data = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}

    responses, context = _kuairand_responses(data, counts)
    hour = data["hourmin"] // 100
    hour += 1
    categorical: dict[str, npt.NDArray[np.int64]] = {"hour": hour}
    if "tab" in data:
        categorical["tab"] = data["tab"] + 1

    user_path = Path(user_features) if user_features else _first(folder, "user_features*.csv")
    video_path = (
        Path(video_features) if video_features else _first(folder, "video_features_basic*.csv")
    )
    user_table = (
        _feature_table(user_path, "user_id", _KUAIRAND_USER_NUMERIC, _KUAIRAND_USER_CATEGORICAL)
        if user_path
        else None
    )
    video_table = (
        _feature_table(video_path, "video_id", _KUAIRAND_VIDEO_NUMERIC, _KUAIRAND_VIDEO_CATEGORICAL)
        if video_path
        else None
    )
    return InteractionLog(
        name="kuairand",
        user_ids=data["user_id"],
        item_ids=data["video_id"],
        timestamps=data["time_ms"],
        responses=responses,
        categorical_features=categorical,
        context=context,
        user_features=user_table,
        item_features=video_table,
        sources=[*files, *(p for p in (user_path, video_path) if p)],
        counts=counts,
        response_columns={"watch_time": "play_time_ms"},
    )


def _first(folder: Path, pattern: str) -> Path | None:
    matches = sorted(folder.glob(pattern))
    return matches[0] if matches else None


def _read_kuairand_file(path: Path, counts: dict[str, int]) -> dict[str, Any]:
    with path.open("rb") as handle:
        header = handle.readline().decode("utf-8", errors="replace").strip()
    likehate = header.split("\t") == list(KUAIRAND_LIKEHATE_COLUMNS)
    integers = ["user_id", "video_id", "hourmin", "time_ms", "play_time_ms", "duration_ms"]
    # 0/1 flags, read into one byte each.
    flags = ["is_click", "is_follow", "is_comment", "is_forward", "long_view"]
    if likehate:
        columns = [(c, "int64") for c in integers] + [(c, "uint8") for c in [*flags, "label"]]
        data = _read_columns(path, columns, delimiter="\t")
        _check_flags(path, data, [*flags, "label"])
        label = data.pop("label")
        # In this variant every row was liked (label 1) or hated (label 0).
        data["is_like"] = label
        data["is_hate"] = 1 - label
        counts["likehate_rows"] = counts.get("likehate_rows", 0) + len(label)
        return data
    if header.split(",")[: len(KUAIRAND_LOG_COLUMNS)] != list(KUAIRAND_LOG_COLUMNS):
        raise DataFormatError(
            f"{path}, line 1: expected the official KuaiRand header "
            f"{','.join(KUAIRAND_LOG_COLUMNS)} or the processed like/hate header, got {header!r}"
        )
    flags += ["is_like", "is_hate", "is_rand"]
    columns = [(c, "int64") for c in [*integers, "tab"]] + [(c, "uint8") for c in flags]
    data = _read_columns(path, columns)
    _check_flags(path, data, flags)
    return data


def _check_flags(path: Path, data: dict[str, Any], names: Sequence[str]) -> None:
    """Raise InvalidDataError where a 0/1 flag column of a KuaiRand file has another value."""
    for name in names:
        values = data[name]
        if len(values) and values.max() > 1:
            row = int(np.flatnonzero(values > 1)[0])
            raise InvalidDataError(
                f"{path}: column {name}, row {row} (data rows counted from 0): expected 0 or 1, "
                f"got {int(values[row])} ({int(np.count_nonzero(values > 1))} such rows); fix the "
                "file, since KuaiRand flags are 0 or 1"
            )


def read_taobao(
    path: str | Path,
    *,
    session_gap_minutes: float = 30.0,
    keep_outside_period: bool = False,
) -> InteractionLog:
    """Read Taobao UserBehavior as one step per (session, item), for click and purchase tasks.

    The file has no header; its columns are user_id, item_id, category_id, behavior_type
    (pv, cart, fav, buy) and timestamp (Unix seconds). A user's actions are split into sessions
    where the gap between consecutive actions exceeds ``session_gap_minutes``. Each (session,
    item) pair becomes one step at the time of its first action, in order of first action. Its
    click label is 1 when the item was carted, favourited or bought in the session, its purchase
    label 1 when it was bought. Because a purchase counts as a click, purchase never exceeds
    click; ``counts["click_imposed_by_purchase"]`` counts the steps whose click comes only from a
    purchase. Rows outside the documented period (2017-11-25 to 2017-12-03, UTC+8) are dropped
    and counted unless ``keep_outside_period``.
    """
    path = Path(path)
    data = _read_columns(
        path,
        [
            ("user_id", "int64"),
            ("item_id", "int64"),
            ("category_id", "int64"),
            ("behavior_type", "category"),
            ("timestamp", "int64"),
        ],
        headerless_names=_TAOBAO_COLUMNS,
    )
    codes, labels = data["behavior_type"]
    unknown = sorted(set(labels) - {"pv", "cart", "fav", "buy"})
    if unknown:
        first = int(np.flatnonzero(codes == labels.index(unknown[0]) + 1)[0])
        raise InvalidDataError(
            f"{path}: column behavior_type, row {first}: expected pv, cart, fav or buy, "
            f"got {unknown[0]!r}"
        )
    behaviour = {
        name: codes == (labels.index(name) + 1 if name in labels else -1)
        for name in ("pv", "cart", "fav", "buy")
    }
    counts: dict[str, int] = {"raw_rows": len(codes)}

    seconds = data["timestamp"]
    inside = (seconds >= _TAOBAO_PERIOD_S[0]) & (seconds < _TAOBAO_PERIOD_S[1])
    counts["rows_outside_period"] = int((~inside).sum())
    keep = np.ones_like(inside) if keep_outside_period else inside

    users = data["user_id"][keep]
    items = data["item_id"][keep]
    categories = data["category_id"][keep]
    times = seconds[keep] * 1000
    is_click_action = (behaviour["cart"] | behaviour["fav"] | behaviour["buy"])[keep]
    is_buy = behaviour["buy"][keep]
    is_cart_or_fav = is_click_action & ~is_buy

    # Sessions: sort by (user, time, row), then cut where the user changes or the gap is large.
    order = _core.stable_order(users, times)
    users, items, categories, times = users[order], items[order], categories[order], times[order]
    is_click_action, is_buy, is_cart_or_fav = (
        is_click_action[order],
        is_buy[order],
        is_cart_or_fav[order],
    )
    gap_ms = int(session_gap_minutes * 60_000)
    new_session = np.ones(len(users), dtype=bool)
    new_session[1:] = (users[1:] != users[:-1]) | (times[1:] - times[:-1] > gap_ms)
    session = np.cumsum(new_session) - 1

    # One step per (session, item): first action's row, any click action, any purchase.
    keys = np.stack([session, items], axis=1)
    _, first_rows, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    steps = len(first_rows)
    click = np.zeros(steps, dtype=bool)
    purchase = np.zeros(steps, dtype=bool)
    cart_or_fav = np.zeros(steps, dtype=bool)
    np.logical_or.at(click, inverse, is_click_action)
    np.logical_or.at(purchase, inverse, is_buy)
    np.logical_or.at(cart_or_fav, inverse, is_cart_or_fav)
    counts["click_imposed_by_purchase"] = int((purchase & ~cart_or_fav).sum())

    step_order = np.argsort(first_rows, kind="stable")
    rows = first_rows[step_order]
    step_session = session[rows]
    episode_ends = np.ones(steps, dtype=np.uint8)
    episode_ends[:-1] = (step_session[1:] != step_session[:-1]).astype(np.uint8)
    counts["sessions"] = int(new_session.sum())
    counts["steps"] = steps
    return InteractionLog(
        name="taobao",
        user_ids=users[rows],
        item_ids=items[rows],
        timestamps=times[rows],
        responses={
            "click": click[step_order].astype(np.float32),
            "purchase": purchase[step_order].astype(np.float32),
        },
        categorical_features={"category": categories[rows]},
        context={"session": step_session.astype(np.int64)},
        episode_ends=episode_ends,
        sources=[path],
        counts=counts,
        source_rows=np.flatnonzero(keep)[order][rows].astype(np.int64),
    )


def read_otto(path: str | Path) -> InteractionLog:
    """Read OTTO session JSONL: ``{"session": int, "events": [{"aid", "ts", "type"}]}`` per line.

    Each event becomes one row with responses click, cart and order (one of them 1). Sessions
    are given, so each session's last event ends an episode. Timestamps are milliseconds.
    """
    path = Path(path)
    sessions: list[int] = []
    items: list[int] = []
    times: list[int] = []
    kinds: list[int] = []
    kind_codes = {"clicks": 0, "carts": 1, "orders": 2}
    first_lines: dict[int, int] = {}
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                session = int(record["session"])
                for event in record["events"]:
                    kind = kind_codes[event["type"]]
                    sessions.append(session)
                    items.append(int(event["aid"]))
                    times.append(int(event["ts"]))
                    kinds.append(kind)
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
                raise DataFormatError(
                    f"{path}, line {line_number}: expected "
                    '{"session": int, "events": [{"aid": int, "ts": int, "type": '
                    f'"clicks"|"carts"|"orders"}}]}}, failed with {error!r}'
                ) from error
            if first_lines.setdefault(session, line_number) != line_number:
                raise DataFormatError(
                    f"{path}, line {line_number}: session {session} already appeared on line "
                    f"{first_lines[session]}; each session must be one line with all its events, "
                    "so merge the two lines"
                )
    if not sessions:
        raise DataFormatError(f"{path}: the file has no sessions")
    session_array = np.asarray(sessions, dtype=np.int64)
    kind_array = np.asarray(kinds)
    episode_ends = np.ones(len(sessions), dtype=np.uint8)
    episode_ends[:-1] = (session_array[1:] != session_array[:-1]).astype(np.uint8)
    return InteractionLog(
        name="otto",
        user_ids=session_array,
        item_ids=np.asarray(items, dtype=np.int64),
        timestamps=np.asarray(times, dtype=np.int64),
        responses={
            name: (kind_array == code).astype(np.float32)
            for name, code in (("click", 0), ("cart", 1), ("order", 2))
        },
        episode_ends=episode_ends,
        sources=[path],
    )


@dataclass(frozen=True)
class TableSchema:
    """Column roles of a user's own log.

    Attributes:
        user: column of int64 user ids.
        item: column of int64 item ids.
        time: column of integer timestamps.
        responses: columns of responses, in reward order (read as float32).
        time_unit: ``ms`` or ``s``.
        numeric_features: per-row numeric feature columns.
        categorical_features: per-row categorical feature columns (any text).
        episode_end: optional column, 1 on the last step of an episode.
        delimiter: field separator of delimited files; by default a tab for ``.tsv`` files and
            a comma otherwise.
        header: false for a file without a header line; then ``columns`` names every column.
        columns: all column names in file order, for files without a header.
    """

    user: str
    item: str
    time: str
    responses: tuple[str, ...]
    time_unit: str = "ms"
    numeric_features: tuple[str, ...] = ()
    categorical_features: tuple[str, ...] = ()
    episode_end: str | None = None
    delimiter: str | None = None
    header: bool = True
    columns: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        roles = [
            self.user,
            self.item,
            self.time,
            *self.responses,
            *self.numeric_features,
            *self.categorical_features,
            *([self.episode_end] if self.episode_end else []),
        ]
        repeated = sorted({name for name in roles if roles.count(name) > 1})
        if repeated:
            raise InvalidArgumentError(
                f"schema: columns {repeated} have more than one role; give each column one role"
            )

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TableSchema:
        """Build a schema from a parsed YAML or JSON mapping, rejecting unknown keys."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(values) - known)
        if unknown:
            raise InvalidArgumentError(
                f"schema: unknown keys {unknown}; expected some of {sorted(known)}"
            )
        missing = sorted({"user", "item", "time", "responses"} - set(values))
        if missing:
            raise InvalidArgumentError(f"schema: missing required keys {missing}")
        for key in ("responses", "numeric_features", "categorical_features", "columns"):
            if isinstance(values.get(key), str):
                raise InvalidArgumentError(
                    f"schema: {key} must be a list of column names, got the string "
                    f"{values[key]!r}; write [{values[key]}]"
                )
        converted: dict[str, Any] = {
            key: tuple(value) if isinstance(value, list) else value for key, value in values.items()
        }
        return cls(**converted)


def read_table(path: str | Path, schema: TableSchema) -> InteractionLog:
    """Read a CSV, TSV or Parquet log whose columns are declared by ``schema``."""
    path = Path(path)
    if schema.time_unit not in ("ms", "s"):
        raise InvalidArgumentError(f"time_unit: expected 'ms' or 's', got {schema.time_unit!r}")
    wanted: list[tuple[str, str]] = [
        (schema.user, "int64"),
        (schema.item, "int64"),
        (schema.time, "int64"),
        *((name, "float32") for name in schema.responses),
        *((name, "float64") for name in schema.numeric_features),
        *((name, "category") for name in schema.categorical_features),
    ]
    if schema.episode_end:
        wanted.append((schema.episode_end, "int64"))
    if re.search(r"\.parquet$", path.name, re.IGNORECASE):
        data = _read_parquet(path, wanted)
    else:
        if not schema.header and not schema.columns:
            raise InvalidArgumentError(
                "schema: a file without a header needs `columns` naming every column in order"
            )
        delimiter = schema.delimiter or ("\t" if path.suffix.lower() == ".tsv" else ",")
        data = _read_columns(
            path,
            wanted,
            delimiter=delimiter,
            headerless_names=None if schema.header else schema.columns,
        )
    times = data[schema.time] * (1000 if schema.time_unit == "s" else 1)
    episode_ends = None
    if schema.episode_end:
        flags = data[schema.episode_end]
        bad = np.flatnonzero(~np.isin(flags, (0, 1)))
        if len(bad):
            raise InvalidDataError(
                f"{path}: column {schema.episode_end}, row {int(bad[0])}: expected 0 or 1, "
                f"got {int(flags[bad[0]])}"
            )
        episode_ends = flags.astype(np.uint8)
    categorical = {}
    for name in schema.categorical_features:
        codes, _labels = data[name]
        categorical[name] = codes
    return InteractionLog(
        name="table",
        user_ids=data[schema.user],
        item_ids=data[schema.item],
        timestamps=times.astype(np.int64),
        responses={name: data[name] for name in schema.responses},
        numeric_features={name: data[name] for name in schema.numeric_features},
        categorical_features=categorical,
        episode_ends=episode_ends,
        sources=[path],
    )


def _read_parquet(path: Path, wanted: list[tuple[str, str]]) -> dict[str, Any]:
    try:
        import pyarrow.parquet as parquet  # type: ignore[import-untyped]
        import pyarrow.types as pyarrow_types  # type: ignore[import-untyped]
    except ImportError as error:
        raise InvalidArgumentError(
            f"{path}: reading Parquet needs pyarrow; install it with `pip install pyarrow`"
        ) from error
    table = parquet.read_table(path)
    data: dict[str, Any] = {}
    for name, kind in wanted:
        if name not in table.column_names:
            raise DataFormatError(f"{path}: column {name!r} not found; it has {table.column_names}")
        column = table.column(name)
        if kind == "category":
            text = np.asarray(column.cast("string").fill_null("").to_numpy(zero_copy_only=False))
            labels, codes = np.unique(text, return_inverse=True)
            # Code 0 is reserved for missing values, as in the CSV reader.
            shifted = codes.astype(np.int64) + 1
            shifted[text == ""] = 0
            data[name] = (shifted, [str(label) for label in labels])
        elif kind == "int64":
            if column.null_count:
                raise InvalidDataError(f"{path}: column {name} has {column.null_count} missing ids")
            if not pyarrow_types.is_integer(column.type):
                raise DataFormatError(
                    f"{path}: column {name} has type {column.type}; expected integers (ids and "
                    "timestamps are read as int64, never through float or text)"
                )
            data[name] = column.to_numpy().astype(np.int64, copy=False)
        else:
            data[name] = np.asarray(
                column.to_numpy(zero_copy_only=False),
                dtype=np.float32 if kind == "float32" else np.float64,
            )
    return data
