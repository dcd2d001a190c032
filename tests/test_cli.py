"""Smoke runs of every `recrl` command, in-process and through the installed entry point."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from recrl.cli import main

from .conftest import require_shared


def test_demo_prints_statistics(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["demo", "--rows", "20000", "--out", str(tmp_path)]) == 0
    output = capsys.readouterr().out
    assert "episodes" in output
    assert (tmp_path / "prepared" / "manifest.json").is_file()
    assert (tmp_path / "rmtl" / "table.md").is_file()
    assert "rmtl demo" in output


def test_synth_prepare_info(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["synth", "--rows", "3000", "--out", str(tmp_path / "raw")]) == 0
    prepared = tmp_path / "prepared"
    arguments = ["prepare", "kuairand", "--source", str(tmp_path / "raw"), "--out", str(prepared)]
    assert main([*arguments, "--episodes", "user", "--history-length", "3"]) == 0
    assert main(["info", str(prepared)]) == 0
    assert "3,000 rows" in capsys.readouterr().out
    # A second prepare into the same folder needs --overwrite.
    assert main(arguments) == 2
    assert "already exists" in capsys.readouterr().err
    assert main([*arguments, "--overwrite"]) == 0


def test_prepare_refuses_output_before_reading(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # The log is unreadable, so a refusal that names the output folder came before the read.
    source = tmp_path / "raw"
    assert main(["synth", "--rows", "500", "--out", str(source)]) == 0
    prepared = tmp_path / "prepared"
    arguments = ["prepare", "kuairand", "--source", str(source), "--out", str(prepared)]
    assert main(arguments) == 0
    log = next(source.glob("log_standard_*.csv"))
    log.write_text(log.read_text().replace(",", ";"))
    capsys.readouterr()
    assert main(arguments) == 2
    error = capsys.readouterr().err
    assert "already exists" in error
    assert "header" not in error


def test_prepare_table_with_schema(tmp_path: Path) -> None:
    log = tmp_path / "log.csv"
    log.write_text("u,i,t,r\n1,2,3,1\n1,3,4,0\n2,2,5,1\n")
    schema = tmp_path / "schema.yaml"
    schema.write_text("user: u\nitem: i\ntime: t\ntime_unit: s\nresponses: [r]\n")
    out = tmp_path / "prepared"
    arguments = ["prepare", "table", "--source", str(log), "--schema", str(schema)]
    assert main([*arguments, "--out", str(out), "--split-fractions", "1", "0", "0"]) == 0


def test_bad_input_exits_with_message(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    log = tmp_path / "log.csv"
    log.write_text("u,i,t\n1,2,3\n")
    schema = tmp_path / "schema.yaml"
    schema.write_text("user: u\nitem: i\ntime: t\nresponses: [r]\n")
    arguments = ["prepare", "table", "--source", str(log), "--schema", str(schema)]
    assert main([*arguments, "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert 'column "r" not found' in error
    assert not (tmp_path / "out").exists()


def test_prepare_real_taobao(tmp_path: Path) -> None:
    source = require_shared("taobao", "UserBehavior_head_814users.csv")
    arguments = ["prepare", "taobao", "--source", str(source), "--out", str(tmp_path / "tb")]
    assert main(arguments) == 0


def test_entry_point_runs() -> None:
    executable = shutil.which("recrl")
    if executable is None:
        pytest.skip("the recrl entry point is not on PATH (package not installed)")
    result = subprocess.run([executable, "--version"], capture_output=True, text=True, check=True)
    assert result.stdout.startswith("recrl ")
