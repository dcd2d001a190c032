"""recrl plot: PNG curves from metrics.csv and bar charts of TSCAC and RMTL tables."""

from __future__ import annotations

from pathlib import Path

import pytest

from recrl.cli import main
from recrl.errors import RecrlIOError
from recrl.metrics_writer import MetricsWriter
from recrl.plotting import plot_run

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

TSCAC_TABLE = """method,estimator,response,mean,std,logged,change_percent,seeds
behaviour_cloning,ncis,watch_time,13.2,0.1,13.3,-0.7,2
behaviour_cloning,ncis,is_click,0.41,0.01,0.42,-2.3,2
tscac,ncis,watch_time,13.9,0.2,13.3,4.5,2
tscac,ncis,is_click,0.43,0.02,0.42,2.3,2
tscac,ips,watch_time,14.1,0.3,13.3,6.0,2
tscac,ips,is_click,0.44,0.02,0.42,4.7,2
"""

RMTL_TABLE = """method,seeds,ctr/auc/mean,ctr/auc/std,ctcvr/auc/mean,ctcvr/auc/std
ESMM,2,0.71,0.01,0.65,0.02
RMTL-ESMM,2,0.72,0.01,0.66,0.01
"""


def write_metrics(folder: Path) -> None:
    with MetricsWriter(folder, tensorboard=False) as metrics:
        for step in (1, 2, 3):
            values = {"loss/actor": 1.0 / step, "loss/critic": 2.0 / step, "eval/watch_time": 13.0}
            metrics.log("tscac/stage_one/seed0", step * 100, {**values, "validation_score": -1.0})
            metrics.log("tscac/stage_two/seed0", step * 100, {"loss/actor": 0.5})


def assert_png(path: Path) -> None:
    assert path.is_file()
    assert path.read_bytes()[:8] == PNG_SIGNATURE


def test_curves_one_figure_per_phase(tmp_path: Path) -> None:
    write_metrics(tmp_path)
    paths = plot_run(tmp_path)
    assert [path.name for path in paths] == [
        "curves_tscac_stage_one_seed0.png",
        "curves_tscac_stage_two_seed0.png",
    ]
    for path in paths:
        assert path.parent == tmp_path / "plots"
        assert_png(path)


def test_tscac_table_one_figure_per_estimator(tmp_path: Path) -> None:
    (tmp_path / "table.csv").write_text(TSCAC_TABLE)
    paths = plot_run(tmp_path, tmp_path / "figures")
    assert [path.name for path in paths] == ["table_ncis.png", "table_ips.png"]
    for path in paths:
        assert_png(path)


def test_rmtl_table_and_command(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    run = tmp_path / "rmtl"
    run.mkdir()
    (run / "table.csv").write_text(RMTL_TABLE)
    write_metrics(run)
    assert main(["plot", str(run)]) == 0
    output = capsys.readouterr().out
    assert "table.png" in output
    assert_png(run / "plots" / "table.png")
    assert_png(run / "plots" / "curves_tscac_stage_two_seed0.png")


def test_demo_folder_plots_each_run(tmp_path: Path) -> None:
    for name in ("rmtl", "tscac"):
        write_metrics(tmp_path / name)
    (tmp_path / "prepared").mkdir()
    paths = plot_run(tmp_path)
    assert {path.parent for path in paths} == {
        tmp_path / "plots" / "rmtl",
        tmp_path / "plots" / "tscac",
    }


def test_not_a_run_directory(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "prepared").mkdir()
    assert main(["plot", str(tmp_path)]) == 2
    assert "not a run directory (no metrics.csv or table.csv)" in capsys.readouterr().err
    with pytest.raises(RecrlIOError, match="not found or not a folder"):
        plot_run(tmp_path / "missing")


def test_unknown_table_layout(tmp_path: Path) -> None:
    (tmp_path / "table.csv").write_text("a,b\n1,2\n")
    with pytest.raises(RecrlIOError, match="expected the table.csv of a tscac or rmtl run"):
        plot_run(tmp_path)
