"""Settings of the tscac and rmtl sections checked against their field types before training."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from recrl import data
from recrl.cli import main
from recrl.config_types import check_value, describe_type
from recrl.errors import InvalidArgumentError
from recrl.rmtl import RMTLConfig
from recrl.tscac.config import BehaviourCloningConfig, TscacConfig, config_from_dict


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("prepared")
    source = data.write_synthetic_kuairand(data.SyntheticConfig(rows=5000, seed=2), folder / "raw")
    data.prepare(data.read_kuairand(source), folder / "dataset")
    return folder / "dataset"


def run_cli(arguments: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    status = main(arguments)
    return status, capsys.readouterr().err


@pytest.mark.parametrize(
    ("assignment", "key", "expected"),
    [
        ("common.steps=abc", "common.steps", "expected an integer, got 'abc'"),
        ("common.steps=2.5", "common.steps", "expected an integer, got 2.5"),
        ("common.steps=true", "common.steps", "expected an integer, got True"),
        ("common.steps=-5", "common.steps", "expected an integer >= 1, got -5"),
        ("common.actor_learning_rate=fast", "common.actor_learning_rate", "expected a number"),
        ("common.actor_learning_rate=.nan", "common.actor_learning_rate", "expected a number"),
        ("run.lambda_sweep=abc", "run.lambda_sweep", "expected a list of numbers"),
        ("run.lambda_sweep_steps=2.5", "run.lambda_sweep_steps", "expected an integer"),
        ("common.hidden_dims=64", "common.hidden_dims", "expected a list of integers, got 64"),
        ("common.hidden_dims=[0]", "common.hidden_dims", "expected widths >= 1"),
        ("common.lower_is_better=[nosuch]", "common.lower_is_better", "no response 'nosuch'"),
        ("common.main_response=nosuch", "common.main_response", "set common.main_response to"),
        ("common.policy=beta", "common.policy", "expected one of categorical, gaussian"),
        ("methods.tscac.lambdas=abc", "methods.tscac.lambdas", "a mapping of names to numbers"),
        ("methods.tscac.lambdas.nosuch=0.1", "methods.tscac.lambdas", "no response 'nosuch'"),
        ("methods.tscac.lambdas.is_click=0.1", "methods.tscac.lambdas", "no value for"),
        ("methods.tscac.default_discount=1", "methods.tscac.default_discount", "[0, 1)"),
        ("methods.tscac.discounts.is_like=2", "methods.tscac.discounts.is_like", "[0, 1)"),
    ],
)
def test_tscac_bad_setting_exits(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    prepared: Path,
    assignment: str,
    key: str,
    expected: str,
) -> None:
    arguments = ["tscac", "--data", str(prepared), "--out", str(tmp_path / "run")]
    arguments += ["--no-progress", "--set", "run.methods=[behaviour_cloning,tscac]"]
    status, err = run_cli([*arguments, "--set", assignment], capsys)
    assert status == 2
    assert "Traceback" not in err
    assert f"error: {key}:" in err
    assert expected in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("assignment", "key", "expected"),
    [
        ("pretrain.epochs=abc", "pretrain.epochs", "expected an integer, got 'abc'"),
        ("pretrain.epochs=0", "pretrain.epochs", "expected an integer >= 1, got 0"),
        ("pretrain.learning_rate=fast", "pretrain.learning_rate", "expected a number"),
        ("critic.gamma=abc", "critic.gamma", "expected a number, got 'abc'"),
        ("critic.gamma=1.5", "critic.gamma", "expected a number in [0, 1), got 1.5"),
        ("critic.double_q=1", "critic.double_q", "expected true or false, got 1"),
        ("critic.head_dims=32", "critic.head_dims", "expected a list of integers, got 32"),
        ("finetune.weighting=other", "finetune.weighting", "expected one of rmtl, cw, wl, nlc"),
        ("backbone.tasks=[a,b]", "backbone.tasks", "expected [ctr, ctcvr]"),
        ("backbone.dropout=high", "backbone.dropout", "expected a number"),
        ("evaluation_batch_size=2.5", "evaluation_batch_size", "expected an integer"),
    ],
)
def test_rmtl_bad_setting_exits(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    prepared: Path,
    assignment: str,
    key: str,
    expected: str,
) -> None:
    arguments = ["rmtl", "--data", str(prepared), "--out", str(tmp_path / "run")]
    arguments += ["--backbone", "esmm", "--no-progress"]
    status, err = run_cli([*arguments, "--set", assignment], capsys)
    assert status == 2
    assert "Traceback" not in err
    assert f"error: {key}:" in err
    assert expected in err
    assert not (tmp_path / "run" / "metrics.csv").exists()


@pytest.mark.parametrize(
    ("annotation", "value", "converted"),
    [
        (int, 3, 3),
        (float, 3, 3.0),
        (float, 1e-3, 1e-3),
        (bool, False, False),
        (tuple[int, ...], [1, 2], (1, 2)),
        (tuple[str, ...], [], ()),
        (float | dict[str, float], 0.5, 0.5),
        (float | dict[str, float], {"a": 1}, {"a": 1.0}),
    ],
)
def test_check_value_accepts(annotation: Any, value: Any, converted: Any) -> None:
    result = check_value("key", annotation, value)
    assert result == converted
    assert type(result) is type(converted)


@pytest.mark.parametrize(
    ("annotation", "value"),
    [
        (int, 2.0),
        (int, True),
        (int, "3"),
        (float, True),
        (float, math.inf),
        (float, "1e-3"),
        (bool, 0),
        (str, 1),
        (tuple[int, ...], "12"),
        (tuple[int, ...], [1, 2.5]),
        (dict[str, float], [1.0]),
        (float | dict[str, float], {"a": "b"}),
    ],
)
def test_check_value_rejects(annotation: Any, value: Any) -> None:
    with pytest.raises(InvalidArgumentError, match=f"key: expected {describe_type(annotation)}"):
        check_value("key", annotation, value)


def test_check_value_choices() -> None:
    assert check_value("policy", str, "gaussian", ("categorical", "gaussian")) == "gaussian"
    with pytest.raises(InvalidArgumentError, match="policy: expected one of categorical, gaussian"):
        check_value("policy", str, "beta", ("categorical", "gaussian"))


def test_config_from_dict_names_key() -> None:
    with pytest.raises(InvalidArgumentError, match=r"^common\.steps: expected an integer >= 1"):
        config_from_dict(BehaviourCloningConfig, {"steps": -5}, "common")
    with pytest.raises(InvalidArgumentError, match=r"^steps: expected an integer, got 'x'"):
        config_from_dict(BehaviourCloningConfig, {"steps": "x"})
    config = config_from_dict(TscacConfig, {"lambdas": {"is_click": 1}, "hidden_dims": [8]})
    assert config.lambdas == {"is_click": 1.0}
    assert config.hidden_dims == (8,)


def test_rmtl_from_dict_names_key() -> None:
    with pytest.raises(InvalidArgumentError, match=r"^critic\.tau: expected a number in \(0, 1\]"):
        RMTLConfig.from_dict({"critic": {"tau": 0}})
    with pytest.raises(InvalidArgumentError, match=r"^pretrain: expected a mapping"):
        RMTLConfig.from_dict({"pretrain": 3})
    config = RMTLConfig.from_dict({"critic": {"gamma": 0, "bottom_dims": [8]}})
    assert config.critic.gamma == 0.0
    assert config.critic.bottom_dims == (8,)
