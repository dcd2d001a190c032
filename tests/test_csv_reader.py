"""The Rust CSV reader against the plain-Python reference on random tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recrl import _core
from recrl.errors import DataFormatError

from .reference import csv as reference

KINDS = ("int64", "uint8", "float32", "float64", "category")


def field_text(kind: str) -> st.SearchStrategy[str]:
    if kind == "int64":
        return st.one_of(st.integers(-50, 50), st.integers(-(2**63), 2**63 - 1)).map(str)
    if kind == "uint8":
        return st.integers(0, 255).map(str)
    if kind in ("float32", "float64"):
        return st.one_of(st.just(""), st.floats(allow_nan=True, allow_infinity=True).map(repr))
    # Category labels: text, integers (looked up by value, directly or hashed) and integers
    # written in other ways, which stay labels of their own.
    return st.one_of(
        st.text(alphabet="ab yz", max_size=3),
        st.integers(-3, 5_000_000).map(str),
        st.sampled_from(["007", "-0", "00", str(2**62), str(-(2**62))]),
    )


@st.composite
def tables(draw: st.DrawFn) -> tuple[list[tuple[str, str]], list[list[str]], str]:
    kinds = draw(st.lists(st.sampled_from(KINDS), min_size=1, max_size=4))
    columns = [(f"c{i}", kind) for i, kind in enumerate(kinds)]
    rows = draw(
        st.lists(
            st.tuples(*(field_text(kind) for kind in kinds)).map(list), min_size=1, max_size=30
        )
    )
    line_end = draw(st.sampled_from(["\n", "\r\n"]))
    return columns, rows, line_end


def read_some(columns: list[tuple[str, str]], keep: int) -> list[tuple[str, str]]:
    """Return the columns picked by the bits of ``keep`` (at least one), so others are skipped."""
    picked = [column for bit, column in enumerate(columns) if keep >> bit & 1]
    return picked or columns[:1]


def render(
    columns: list[tuple[str, str]], rows: list[list[str]], line_end: str, blank_every: int
) -> str:
    lines = [",".join(name for name, _ in columns)]
    for number, row in enumerate(rows):
        lines.append(",".join(row))
        if blank_every and number % blank_every == 0:
            lines.append("")
    return line_end.join(lines) + line_end


def assert_same(actual: dict[str, object], expected: dict[str, object]) -> None:
    assert sorted(actual) == sorted(expected)
    for name, values in expected.items():
        if isinstance(values, tuple):
            codes, labels = actual[name]  # type: ignore[misc]
            np.testing.assert_array_equal(codes, values[0], err_msg=name)
            assert labels == values[1], name
        else:
            np.testing.assert_array_equal(actual[name], values, err_msg=name)  # type: ignore[arg-type]


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(tables(), st.integers(0, 4), st.integers(0, 15))
def test_read_csv_matches_reference(
    tmp_path: Path,
    table: tuple[list[tuple[str, str]], list[list[str]], str],
    blank_every: int,
    keep: int,
) -> None:
    columns, rows, line_end = table
    text = render(columns, rows, line_end, blank_every)
    if all(not line.strip("\r") for line in text.split("\n")[1:]):
        return  # only blank lines: the reader rejects a file without data rows
    path = tmp_path / "table.csv"
    path.write_text(text, newline="")
    requested = read_some(columns, keep)
    assert_same(_core.read_csv(path, requested), reference.read_columns(text, requested))


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(tables(), st.integers(1, 50), st.integers(0, 15))
def test_read_csv_many_pieces_match_reference(
    tmp_path: Path,
    table: tuple[list[tuple[str, str]], list[list[str]], str],
    blank_every: int,
    keep: int,
) -> None:
    # Rows repeated past 2 MB, so that each block is cut into several pieces parsed in parallel.
    columns, rows, line_end = table
    row_bytes = sum(len(",".join(row)) + 2 for row in rows)
    repeated = rows * (2_000_000 // row_bytes + 1)
    text = render(columns, repeated, line_end, blank_every)
    if all(not line.strip("\r") for line in text.split("\n")[1:]):
        return
    path = tmp_path / "table.csv"
    path.write_text(text, newline="")
    requested = read_some(columns, keep)
    assert_same(_core.read_csv(path, requested), reference.read_columns(text, requested))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("256", "from 0 to 255, got 256"),
        ("-1", "from 0 to 255, got -1"),
        ("1.0", 'expected an integer, got "1.0"'),
    ],
)
def test_uint8_rejects_out_of_range(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "flags.csv"
    path.write_text(f"id,flag\n1,0\n2,{text}\n")
    with pytest.raises(DataFormatError, match=r"line 3.*column flag") as error:
        _core.read_csv(path, [("id", "int64"), ("flag", "uint8")])
    assert message in str(error.value)
