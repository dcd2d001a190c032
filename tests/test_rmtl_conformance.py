import copy
import csv
import json

import numpy as np
import pytest
import torch

from recrl import cli, data
from recrl.nets import BACKBONES, BackboneConfig, build_backbone
from recrl.rmtl import (
    TASK_NAMES,
    CriticConfig,
    FinetuneConfig,
    PretrainConfig,
    RMTLConfig,
    TaskData,
    evaluate,
    finetune,
    load_backbone,
    load_critics,
    predict,
    pretrain,
    save_backbone,
    save_critics,
    task_labels,
    train_critics,
)

from .conftest import require_shared

SMALL_CONFIG = {
    "backbone": {
        "embedding_dim": 4,
        "bottom_dims": [16, 8],
        "tower_dims": [8],
        "experts": 2,
        "shared_experts": 1,
        "task_experts": 1,
    },
    "pretrain": {"epochs": 1, "batch_size": 256},
    "critic": {"epochs": 1, "batch_size": 256, "embedding_dim": 4, "bottom_dims": [8]},
    "finetune": {"epochs": 1, "batch_size": 256},
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("rmtl")
    source = data.write_synthetic_kuairand(
        data.SyntheticConfig(rows=3000, users=30, videos=300, seed=1), root / "log"
    )
    return data.prepare(data.read_kuairand(source), root / "prepared")


@pytest.fixture(scope="module")
def task_data(prepared):
    return TaskData.load(prepared)


def test_kuairand_labels_are_click_and_long_view(prepared):
    labels = task_labels(prepared)
    click = np.asarray(prepared["rewards"])[:, prepared.reward_names.index("is_click")]
    long_view = np.asarray(prepared["context_long_view"])
    np.testing.assert_array_equal(labels[:, 0], click)
    np.testing.assert_array_equal(labels[:, 1], click * long_view)


@pytest.mark.parametrize("kind", sorted(BACKBONES))
def test_backbone_conformance(kind, task_data, tmp_path):
    config = RMTLConfig.from_dict(SMALL_CONFIG).with_backbone(kind)
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = build_backbone(task_data.spec, config.backbone)

    # Pretrain, critics, fine-tune with and without RMTL weights.
    history = pretrain(model, task_data, config.pretrain, generator)
    assert np.isfinite(history[-1]["loss/pretrain"])
    critics, critic_history = train_critics(model, task_data, config.critic, generator)
    assert np.isfinite(critic_history[-1]["loss/critic"])
    tuned = {}
    for weighting in ("cw", "rmtl"):
        tuned[weighting] = copy.deepcopy(model)
        settings = config.with_weighting(weighting).finetune
        finetune(tuned[weighting], critics, task_data, settings, generator)

    # Evaluate: every task gets every metric.
    for candidate in (model, *tuned.values()):
        metrics = evaluate(candidate, task_data, "test")
        assert set(metrics) == set(TASK_NAMES)
        for values in metrics.values():
            assert 0.0 <= values["auc"] <= 1.0
            assert values["logloss"] > 0

    # Save and reload: identical predictions, online and target critics included.
    rows = task_data.splits["test"]
    for name, candidate in {"pretrained": model, **tuned}.items():
        save_backbone(tmp_path / name, candidate)
        assert (tmp_path / f"{name}.safetensors").is_file()
        reloaded = load_backbone(tmp_path / name)
        torch.testing.assert_close(
            predict(reloaded, task_data, rows), predict(candidate, task_data, rows), rtol=0, atol=0
        )
    save_critics(tmp_path / "critics", critics, task_data.spec, 2)
    reloaded_critics = load_critics(tmp_path / "critics")
    features = task_data.batch(rows)
    actions = predict(model, task_data, rows)
    torch.testing.assert_close(
        reloaded_critics.values(features, actions), critics.values(features, actions)
    )


def test_independent_double_critics_round_trip(task_data, tmp_path):
    config = RMTLConfig.from_dict(SMALL_CONFIG).with_backbone("mmoe")
    critic_config = CriticConfig(
        epochs=1, batch_size=256, embedding_dim=4, bottom_dims=(8,), double_q=True,
        shared_bottom=False,
    )  # fmt: skip
    torch.manual_seed(0)
    model = build_backbone(task_data.spec, config.backbone)
    critics, history = train_critics(model, task_data, critic_config, torch.Generator())
    save_critics(tmp_path / "critics", critics, task_data.spec, 2)
    reloaded = load_critics(tmp_path / "critics")

    rows = task_data.splits["validation"]
    features = task_data.batch(rows)
    actions = predict(model, task_data, rows)
    assert len(critics.critics) == 2
    assert len(critics.critics[0].bottoms) == 2
    assert np.isfinite(history[0]["eval/validation_td_error"])
    torch.testing.assert_close(
        reloaded.values(features, actions), critics.values(features, actions)
    )
    for online, target in zip(
        reloaded.target_critics.parameters(), critics.target_critics.parameters()
    ):
        torch.testing.assert_close(online, target)


def test_rmtl_weights_change_finetuning(task_data):
    config = RMTLConfig.from_dict(SMALL_CONFIG).with_backbone("shared_bottom")
    torch.manual_seed(0)
    model = build_backbone(task_data.spec, config.backbone)
    generator = torch.Generator().manual_seed(0)
    critics, _ = train_critics(model, task_data, config.critic, generator)
    results = {}
    for weighting in ("cw", "rmtl"):
        tuned = copy.deepcopy(model)
        torch.manual_seed(1)
        finetune(
            tuned,
            critics,
            task_data,
            config.with_weighting(weighting).finetune,
            torch.Generator().manual_seed(1),
        )
        results[weighting] = predict(tuned, task_data, task_data.splits["test"])
    assert not torch.equal(results["cw"], results["rmtl"])


def test_rmtl_command_writes_table_plots_and_models(prepared, tmp_path):
    import yaml

    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(SMALL_CONFIG))
    out = tmp_path / "run"

    status = cli.main(
        [
            "rmtl", "--data", str(prepared.path), "--backbone", "esmm", "mmoe",
            "--config", str(config_path), "--out", str(out), "--seed", "0", "1",
            "--ablations", "esmm", "--transfer", "mmoe:esmm", "--threads", "1",
        ]
    )  # fmt: skip

    assert status == 0
    resolved = json.loads((out / "config.json").read_text())
    assert resolved["config"]["backbone"]["embedding_dim"] == 4
    with (out / "table.csv").open() as handle:
        methods = [row["method"] for row in csv.DictReader(handle)]
    assert methods == [
        "ESMM", "RMTL-ESMM", "RMTL-ESMM (CW)", "RMTL-ESMM (WL)", "RMTL-ESMM (NLC)",
        "RMTL-ESMM (critics of MMoE)",
        "MMoE", "RMTL-MMoE",
    ]  # fmt: skip
    table = (out / "table.md").read_text()
    assert "| Method | CTR AUC | CTR Logloss | CTR s-Logloss | CTCVR AUC" in table
    assert " ± " in table
    assert (out / "plots" / "seed1_mmoe.png").stat().st_size > 0
    assert (out / "seed0" / "esmm" / "finetuned_rmtl.safetensors").is_file()
    assert (out / "seed1" / "esmm" / "finetuned_rmtl_critics_of_mmoe.safetensors").is_file()


def test_rmtl_command_rejects_bad_transfer(prepared, tmp_path, capsys):
    status = cli.main(
        ["rmtl", "--data", str(prepared.path), "--backbone", "esmm", "--transfer", "mmoe",
         "--out", str(tmp_path / "run")]
    )  # fmt: skip
    assert status == 2
    assert "expected SOURCE:TARGET" in capsys.readouterr().err


def test_config_rejects_unknown_keys():
    from recrl.errors import InvalidArgumentError

    with pytest.raises(InvalidArgumentError, match="unknown key critic.gama"):
        RMTLConfig.from_dict({"critic": {"gama": 0.9}})
    with pytest.raises(InvalidArgumentError, match="unknown section"):
        RMTLConfig.from_dict({"actor": {}})


def test_stage_defaults_follow_paper():
    config = RMTLConfig()
    assert config.critic.gamma == 0.95
    assert config.critic.tau == 0.2
    assert config.finetune.weight_scale == 0.7
    assert isinstance(config.backbone, BackboneConfig)
    assert isinstance(config.pretrain, PretrainConfig)
    assert isinstance(config.critic, CriticConfig)
    assert isinstance(config.finetune, FinetuneConfig)


def test_taobao_labels_from_real_slice(tmp_path):
    source = require_shared("taobao", "UserBehavior_head_814users.csv")
    prepared = data.prepare(data.read_taobao(source), tmp_path / "taobao")
    labels = task_labels(prepared)
    rewards = np.asarray(prepared["rewards"])
    purchase = rewards[:, prepared.reward_names.index("purchase")]

    assert labels.shape == (len(prepared), 2)
    assert bool((labels[:, 1] <= labels[:, 0]).all())
    np.testing.assert_array_equal(labels[:, 1], purchase)
    assert 0.05 < labels[:, 0].mean() < 0.2


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"backbones": ()}, "backbones: expected one or more"),
        ({"backbones": ("esmm", "deepfm")}, "backbones: expected one or more"),
        ({"ablations": ("mmoe",)}, "ablations: expected backbones among"),
        ({"transfers": (("mmoe", "esmm"),)}, "transfers: both backbones"),
        ({"seeds": (1, 1)}, "seeds: expected distinct seeds"),
    ],
)
def test_run_plan_rejects(changes, message):
    from recrl.errors import InvalidArgumentError
    from recrl.rmtl import RunPlan

    settings = {"backbones": ("esmm",), **changes}
    with pytest.raises(InvalidArgumentError, match=message):
        RunPlan(**settings)


def test_run_plan_weightings_per_backbone():
    from recrl.rmtl import RunPlan

    plan = RunPlan(backbones=("esmm", "ple"), ablations=("ple",))
    assert plan.weightings("esmm") == ("rmtl",)
    assert plan.weightings("ple") == ("rmtl", "cw", "wl", "nlc")
