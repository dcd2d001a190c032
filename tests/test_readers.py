"""Log readers: KuaiRand repairs, generic schemas, and one clear error per malformed file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recrl import _core
from recrl.data import (
    PrepareOptions,
    TableSchema,
    prepare,
    read_kuairand,
    read_otto,
    read_table,
    read_taobao,
)
from recrl.data.readers import KUAIRAND_LOG_COLUMNS
from recrl.errors import (
    ColumnNotFoundError,
    DataFormatError,
    InvalidArgumentError,
    InvalidDataError,
)


def write_kuairand_log(path: Path, rows: list[dict[str, int]]) -> Path:
    lines = [",".join(KUAIRAND_LOG_COLUMNS)]
    for row in rows:
        values = {column: 0 for column in KUAIRAND_LOG_COLUMNS}
        values.update(row)
        lines.append(",".join(str(values[column]) for column in KUAIRAND_LOG_COLUMNS))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_kuairand_watch_ratio_and_repairs(tmp_path: Path) -> None:
    log_path = write_kuairand_log(
        tmp_path / "log_standard_4_08_to_4_21_pure.csv",
        [
            {
                "user_id": 1,
                "video_id": 10,
                "time_ms": 1,
                "play_time_ms": 60792,
                "duration_ms": 45400,
            },
            {"user_id": 1, "video_id": 11, "time_ms": 2, "play_time_ms": 0, "duration_ms": 0},
            {"user_id": 1, "video_id": 12, "time_ms": 3, "play_time_ms": -5, "duration_ms": 1000},
        ],
    )
    log = read_kuairand(tmp_path)
    assert log.sources[0] == log_path
    assert round(float(log.context["watch_ratio"][0]), 3) == 1.339
    assert log.context["duration_zero"].tolist() == [0, 1, 0]
    assert log.context["watch_ratio"][1] == 0.0
    assert log.counts["duration_zero"] == 1
    assert log.counts["play_time_negative_clipped"] == 1
    assert log.responses["watch_time"].tolist() == pytest.approx([60.792, 0.0, 0.0])
    assert list(log.responses) == [
        "watch_time", "is_click", "is_like", "is_follow", "is_comment", "is_forward", "is_hate",
    ]  # fmt: skip


def test_absurd_watch_time_names_its_column(tmp_path: Path) -> None:
    # 2e15 ms is 2e12 s, above the 1e12 limit; the message names the file column too.
    write_kuairand_log(
        tmp_path / "log_standard_4_08_to_4_21_pure.csv",
        [
            {"user_id": 1, "video_id": 10, "time_ms": 1, "play_time_ms": 1000},
            {"user_id": 1, "video_id": 11, "time_ms": 2, "play_time_ms": 2 * 10**15},
        ],
    )
    with pytest.raises(
        InvalidDataError, match=r"column watch_time \(computed from play_time_ms\), row 1 "
    ):
        prepare(read_kuairand(tmp_path), tmp_path / "prepared")


def test_kuairand_flag_outside_0_1_is_named(tmp_path: Path) -> None:
    write_kuairand_log(
        tmp_path / "log_standard_pure.csv",
        [{"user_id": 1, "time_ms": 1}, {"user_id": 1, "time_ms": 2, "is_click": 2}],
    )
    with pytest.raises(InvalidDataError, match=r"column is_click, row 1 .*expected 0 or 1, got 2"):
        read_kuairand(tmp_path)


def test_kuairand_flag_above_255_names_line(tmp_path: Path) -> None:
    write_kuairand_log(tmp_path / "log_standard_pure.csv", [{"user_id": 1, "is_like": 300}])
    with pytest.raises(DataFormatError, match=r"line 2, column is_like"):
        read_kuairand(tmp_path)


def test_kuairand_ids_stay_int64(tmp_path: Path) -> None:
    write_kuairand_log(
        tmp_path / "log_random_4_22_to_5_08_pure.csv",
        [{"user_id": 6221888200042590280, "video_id": 110378652104, "time_ms": 1649581149287}],
    )
    log = read_kuairand(tmp_path, logs="random")
    assert log.user_ids.tolist() == [6221888200042590280]
    assert log.item_ids.tolist() == [110378652104]
    assert log.timestamps.tolist() == [1649581149287]


def test_huge_ids_survive_prepare(tmp_path: Path) -> None:
    write_kuairand_log(
        tmp_path / "log_standard_4_08_to_4_21_pure.csv",
        [
            {"user_id": 6221888200042590280, "video_id": 110378652104, "time_ms": 1},
            {"user_id": 6221888200042590280, "video_id": 110378652105, "time_ms": 2},
        ],
    )
    options = PrepareOptions(split_fractions=(1.0, 0.0, 0.0))
    dataset = prepare(read_kuairand(tmp_path), tmp_path / "prepared", options)
    assert dataset["user_ids"].dtype == np.int64
    assert dataset["user_ids"].tolist() == [6221888200042590280] * 2
    assert dataset["item_ids"].tolist() == [110378652104, 110378652105]
    assert dataset["item_vocabulary"].tolist() == [110378652104, 110378652105]


def test_kuairand_folder_without_logs(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="no KuaiRand log found"):
        read_kuairand(tmp_path)


def test_kuairand_wrong_header(tmp_path: Path) -> None:
    path = tmp_path / "log_standard_x.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(DataFormatError, match="official KuaiRand header"):
        read_kuairand(path)


SCHEMA = TableSchema(
    user="user", item="item", time="t", responses=("click",), numeric_features=("f1", "f2")
)


def write_table(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_empty_file_is_named(tmp_path: Path) -> None:
    path = write_table(tmp_path / "empty.csv", "")
    with pytest.raises(DataFormatError, match=r"empty\.csv, line 1: the file is empty"):
        read_table(path, SCHEMA)


def test_header_only_file_has_no_rows(tmp_path: Path) -> None:
    path = write_table(tmp_path / "header.csv", "user,item,t,click,f1,f2\n")
    with pytest.raises(DataFormatError, match="no data rows"):
        read_table(path, SCHEMA)


def test_missing_column_is_named(tmp_path: Path) -> None:
    path = write_table(tmp_path / "log.csv", "user,item,t,click,f1\n1,2,3,0,0.5\n")
    with pytest.raises(ColumnNotFoundError, match='column "f2" not found'):
        read_table(path, SCHEMA)


def test_wrong_delimiter_is_named(tmp_path: Path) -> None:
    path = write_table(tmp_path / "log.csv", "user\titem\tt\tclick\tf1\tf2\n1\t2\t3\t0\t1\t2\n")
    with pytest.raises(DataFormatError, match="tab character"):
        read_table(path, SCHEMA)


def test_tsv_extension_means_tabs(tmp_path: Path) -> None:
    path = write_table(tmp_path / "log.tsv", "user\titem\tt\tclick\tf1\tf2\n1\t2\t3\t0\t1\t2\n")
    assert read_table(path, SCHEMA).item_ids.tolist() == [2]


def test_schema_rejects_column_with_two_roles() -> None:
    with pytest.raises(ValueError, match=r"columns \['f1'\] have more than one role"):
        TableSchema(
            user="u", item="i", time="t", responses=("r",), numeric_features=("f1",),
            categorical_features=("f1",),
        )  # fmt: skip


def test_schema_rejects_string_list() -> None:
    with pytest.raises(ValueError, match="must be a list of column names"):
        TableSchema.from_dict({"user": "u", "item": "i", "time": "t", "responses": "click"})


def test_truncated_last_line_is_named(tmp_path: Path) -> None:
    path = write_table(tmp_path / "log.csv", "user,item,t,click,f1,f2\n1,2,3,0,1,2\n1,2,4")
    with pytest.raises(DataFormatError, match=r"log\.csv, line 3: expected 6 fields, got 3"):
        read_table(path, SCHEMA)


def test_extra_fields_are_named(tmp_path: Path) -> None:
    path = write_table(tmp_path / "log.csv", "user,item,t,click,f1,f2\n1,2,3,0,1,2,7\n")
    with pytest.raises(DataFormatError, match=r"line 2: expected 6 fields, got 7; the line has"):
        read_table(path, SCHEMA)


def test_bad_value_names_line_and_column(tmp_path: Path) -> None:
    path = write_table(tmp_path / "log.csv", "user,item,t,click,f1,f2\n1,2,3,0,1,2\n1,x,4,0,1,2\n")
    with pytest.raises(DataFormatError, match=r"line 3, column item: expected an integer"):
        read_table(path, SCHEMA)


def test_id_written_as_float_is_rejected(tmp_path: Path) -> None:
    path = write_table(
        tmp_path / "log.csv", "user,item,t,click,f1,f2\n1,1.10378652104e11,3,0,1,2\n"
    )
    with pytest.raises(DataFormatError, match="column item"):
        read_table(path, SCHEMA)


def test_headerless_table_uses_declared_columns(tmp_path: Path) -> None:
    path = write_table(tmp_path / "log.csv", "5,6,7,1\n5,8,9,0\n")
    schema = TableSchema(
        user="u", item="i", time="t", responses=("r",), header=False, columns=("u", "i", "t", "r"),
        time_unit="s",
    )  # fmt: skip
    log = read_table(path, schema)
    assert log.timestamps.tolist() == [7000, 9000]
    assert log.responses["r"].tolist() == [1.0, 0.0]


def test_parquet_table_matches_csv(tmp_path: Path) -> None:
    pyarrow = pytest.importorskip("pyarrow")
    import pyarrow.parquet as parquet

    table = pyarrow.table(
        {
            "user": [1, 1],
            "item": [110378652104, 3],
            "t": [5, 6],
            "click": [1.0, 0.0],
            "f1": [0.5, 1.5],
            "f2": [2.0, None],
        }  # fmt: skip
    )
    parquet.write_table(table, tmp_path / "log.parquet")
    log = read_table(tmp_path / "log.parquet", SCHEMA)
    assert log.item_ids.tolist() == [110378652104, 3]
    assert np.isnan(log.numeric_features["f2"][1])


def test_schema_rejects_unknown_keys() -> None:
    with pytest.raises(ValueError, match="unknown keys"):
        TableSchema.from_dict({"user": "u", "item": "i", "time": "t", "responses": ["r"], "x": 1})


def test_taobao_steps_and_labels(tmp_path: Path) -> None:
    start = 1511600000  # inside the documented period
    rows = [
        (1, 100, 9, "pv", start),
        (1, 101, 9, "pv", start + 10),
        (1, 100, 9, "cart", start + 20),
        (1, 102, 9, "buy", start + 30),  # bought without a pv or cart: click imposed
        (1, 100, 9, "pv", start + 4000),  # a new session after a gap of more than 30 minutes
        (2, 100, 9, "fav", start + 5),
        (3, 100, 9, "pv", 1000),  # outside the documented period
    ]
    path = tmp_path / "UserBehavior.csv"
    path.write_text("".join(f"{u},{i},{c},{b},{t}\n" for u, i, c, b, t in rows))
    log = read_taobao(path)
    assert log.item_ids.tolist() == [100, 101, 102, 100, 100]
    assert log.responses["click"].tolist() == [1, 0, 1, 0, 1]
    assert log.responses["purchase"].tolist() == [0, 0, 1, 0, 0]
    assert log.episode_ends is not None
    assert log.episode_ends.tolist() == [0, 0, 1, 1, 1]
    assert log.counts["click_imposed_by_purchase"] == 1
    assert log.counts["rows_outside_period"] == 1
    assert log.counts["sessions"] == 3


def test_taobao_unknown_behaviour_is_named(tmp_path: Path) -> None:
    path = tmp_path / "UserBehavior.csv"
    path.write_text("1,2,3,pv,1511600000\n1,2,3,like,1511600001\n")
    with pytest.raises(InvalidDataError, match="behavior_type, row 1"):
        read_taobao(path)


def test_otto_sessions(tmp_path: Path) -> None:
    path = tmp_path / "otto.jsonl"
    path.write_text(
        '{"session": 1, "events": [{"aid": 5, "ts": 10, "type": "clicks"}, '
        '{"aid": 6, "ts": 20, "type": "orders"}]}\n'
        '{"session": 2, "events": [{"aid": 5, "ts": 30, "type": "carts"}]}\n'
    )
    log = read_otto(path)
    assert log.user_ids.tolist() == [1, 1, 2]
    assert log.responses["order"].tolist() == [0, 1, 0]
    assert log.episode_ends is not None
    assert log.episode_ends.tolist() == [0, 1, 1]


def test_otto_bad_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "otto.jsonl"
    path.write_text('{"session": 1, "events": []}\n{"session": 2, "events": [{"aid": 1}]}\n')
    with pytest.raises(DataFormatError, match="line 2"):
        read_otto(path)


def test_otto_repeated_session_is_named(tmp_path: Path) -> None:
    path = tmp_path / "otto.jsonl"
    event = '{"aid": 5, "ts": 10, "type": "clicks"}'
    path.write_text(
        f'{{"session": 7, "events": [{event}]}}\n'
        f'{{"session": 8, "events": [{event}]}}\n'
        f'{{"session": 7, "events": [{event}]}}\n'
    )
    with pytest.raises(
        DataFormatError, match=r"otto.jsonl, line 3: session 7 already appeared on line 1; each"
    ):
        read_otto(path)


def test_duplicate_header_name_is_ambiguous(tmp_path: Path) -> None:
    path = write_table(tmp_path / "log.csv", "a,a,b\n1,2,3\n")
    with pytest.raises(DataFormatError, match=r"line 1, column a: fields 1 and 2 are both named"):
        _core.read_csv(path, [("a", "int64")])
    # A repeated name that is not read does no harm.
    assert _core.read_csv(path, [("b", "int64")])["b"].tolist() == [3]


@pytest.mark.parametrize("delimiter", ["\n", "\r", '"'])
def test_delimiter_line_end_or_quote_rejected(tmp_path: Path, delimiter: str) -> None:
    path = write_table(tmp_path / "log.csv", "a,b\n1,2\n")
    with pytest.raises(InvalidArgumentError, match="cannot separate fields"):
        _core.read_csv(path, [("a", "int64")], delimiter=delimiter)


def test_invalid_utf8_labels_stay_distinct(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_bytes(b"id,tag\n1,\xff\n2,\xfe\n3,caf\xc3\xa9\n4,\xff\n")
    codes, labels = _core.read_csv(path, [("id", "int64"), ("tag", "category")])["tag"]
    assert codes.tolist() == [1, 2, 3, 1]
    assert labels == ["\\xff", "\\xfe", "caf\u00e9"]
