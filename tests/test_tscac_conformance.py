"""Every TSCAC method trains, evaluates, saves and reloads in a fresh process unchanged."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from recrl import Scorer, data
from recrl.cli import main
from recrl.tscac.agents import METHODS, build_method
from recrl.tscac.config import CONFIG_CLASSES
from recrl.tscac.data import Transitions
from recrl.tscac.evaluate import Evaluator
from recrl.tscac.io import save_method

SMALL = {
    "candidates": 20,
    "hidden_dims": (8,),
    "embedding_dim": 4,
    "action_dim": 4,
    "batch_size": 16,
}

RELOAD = """
import sys
import numpy as np
import torch
from recrl.data import load_prepared
from recrl.tscac.data import Transitions
from recrl.tscac.io import load_method

torch.set_num_threads(1)
dataset_path, models, names, rows_path, out = sys.argv[1:]
rows = np.load(rows_path)
dataset = load_prepared(dataset_path)
outputs = {}
for name in names.split(","):
    method = load_method(models, name)
    method.eval()
    batch = Transitions(dataset, method.spec).batch(rows)
    with torch.no_grad():
        outputs[name] = method.policy_log_probabilities(
            batch.state(), batch.candidates, batch.mask
        ).numpy()
np.savez(out, **outputs)
"""


@pytest.fixture(autouse=True)
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("tscac")
    source = data.write_synthetic_kuairand(data.SyntheticConfig(rows=4000, seed=1), root / "log")
    return data.prepare(data.read_kuairand(source), root / "prepared")


def test_every_method_trains_evaluates_and_reloads(prepared, tmp_path):
    spec = Transitions.build_spec(prepared, SMALL["candidates"])
    transitions = Transitions(prepared, spec)
    rows = transitions.split_rows("validation")[:32]
    train_rows = transitions.split_rows("train")
    generator = np.random.default_rng(0)
    evaluator = Evaluator(transitions, None)
    expected = {}
    for name in METHODS:
        torch.manual_seed(0)
        method = build_method(name, spec, CONFIG_CLASSES[name](**SMALL))
        for stage in method.stages:
            method.set_stage(stage)
            for _ in range(2):
                batch = transitions.batch(train_rows[generator.integers(0, len(train_rows), 16)])
                diagnostics = method.update(batch)
                assert all(np.isfinite(v) for v in diagnostics.values()), (name, diagnostics)
        method.eval()
        estimates = evaluator.estimate(method.policy_log_probabilities, "validation")
        for estimator in ("ips", "snips", "ncis", "per_decision"):
            assert estimates[estimator].shape == (len(spec.reward_names),), (name, estimator)
            assert np.isfinite(estimates[estimator]).all(), (name, estimator)
        save_method(method, tmp_path, name)
        assert (tmp_path / f"{name}.safetensors").is_file()
        assert json.loads((tmp_path / f"{name}.json").read_text())["method"] == name
        batch = transitions.batch(rows)
        with torch.no_grad():
            expected[name] = method.policy_log_probabilities(
                batch.state(), batch.candidates, batch.mask
            ).numpy()

    np.save(tmp_path / "rows.npy", rows)
    arguments = [str(prepared.path), str(tmp_path), ",".join(METHODS), str(tmp_path / "rows.npy")]
    arguments.append(str(tmp_path / "reloaded.npz"))
    subprocess.run([sys.executable, "-c", RELOAD, *arguments], check=True, timeout=300)
    reloaded = np.load(tmp_path / "reloaded.npz")
    for name in METHODS:
        np.testing.assert_array_equal(reloaded[name], expected[name], err_msg=name)


def test_tscac_command_writes_report(prepared, tmp_path):
    configuration = {
        "run": {"behaviour_steps": 2, "lambda_sweep": [0.1, 0.001], "lambda_sweep_steps": 2},
        "common": {**SMALL, "hidden_dims": [8], "steps": 2, "evaluation_interval": 1},
    }
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(configuration))
    out = tmp_path / "run"
    arguments = ["tscac", "--data", str(prepared.path), "--config", str(config_path)]
    assert main([*arguments, "--out", str(out), "--seed", "0", "1"]) == 0
    for name in ("config.yaml", "table.md", "table.csv", "curves.png", "lambda_sweep.png"):
        assert (out / name).is_file(), name
    table = (out / "table.md").read_text()
    for label in ("TSCAC", "BC", "Wide&Deep", "DeepFM", "RCPO", "Pareto", "Interaction-AC"):
        assert f"| {label} |" in table, label
    assert "selected on validation" in table
    assert "Rows whose logged item is among the candidates: train" in table
    for seed in (0, 1):
        for name in [*METHODS, "behaviour"]:
            assert (out / "models" / f"seed{seed}" / f"{name}.safetensors").is_file(), name
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert resolved["methods"]["tscac"]["steps"] == 2

    # The run folder contains the TSCAC actor in the layout `recrl export` reads.
    policy = tmp_path / "policy.safetensors"
    assert main(["export", str(out), "--out", str(policy)]) == 0
    scorer = Scorer.load(policy)
    assert scorer.kind == "categorical"

    # Another dataset's vocabulary would map item ids to the wrong embeddings.
    other = tmp_path / "other_vocabulary.npy"
    np.save(other, np.load(prepared.path / "item_vocabulary.npy")[::-1].copy())
    status = main(["export", str(out), "--out", str(policy), "--item-vocabulary", str(other)])
    assert status == 2


def test_tscac_command_rejects_unknown_fields(prepared, tmp_path):
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump({"common": {"stepz": 3}}))
    arguments = ["tscac", "--data", str(prepared.path), "--config", str(config_path)]
    assert main([*arguments, "--out", str(tmp_path / "run")]) == 2
