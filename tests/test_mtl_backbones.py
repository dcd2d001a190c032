import math

import pytest
import torch

from recrl.errors import InvalidArgumentError, ShapeError
from recrl.nets import BACKBONES, ESMM, BackboneConfig, FeatureSpec, MultiTaskInput, build_backbone


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny models run fastest on one thread, above all on a machine shared with other jobs.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


SPEC = FeatureSpec(
    numeric_dim=3, cardinalities=(5, 7), user_vocabulary=10, item_vocabulary=20, history_length=4
)
SMALL = {
    "embedding_dim": 4,
    "bottom_dims": (8, 6),
    "tower_dims": (5,),
    "experts": 3,
    "shared_experts": 2,
    "task_experts": 2,
}


def _features(batch: int = 6, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        "numeric": torch.randn(batch, 3, generator=generator),
        "categorical": torch.randint(0, 7, (batch, 2), generator=generator),
        "users": torch.randint(0, 10, (batch,), generator=generator),
        "items": torch.randint(0, 20, (batch,), generator=generator),
        "history": torch.randint(0, 20, (batch, 4), generator=generator),
    }


@pytest.mark.parametrize("kind", sorted(BACKBONES))
def test_backbone_outputs_probabilities(kind):
    model = build_backbone(SPEC, BackboneConfig(kind=kind, **SMALL)).eval()
    probabilities = model(_features())
    assert probabilities.shape == (6, 2)
    assert bool(((probabilities > 0) & (probabilities < 1)).all())


@pytest.mark.parametrize("kind", sorted(BACKBONES))
def test_backbone_gradients_reach_embeddings(kind):
    model = build_backbone(SPEC, BackboneConfig(kind=kind, **SMALL))
    model(_features()).sum().backward()
    gradient = model.inputs.embeddings.table.weight.grad
    assert gradient is not None
    assert float(gradient.abs().sum()) > 0


def _set_constant_tower(tower: torch.nn.Sequential, probability: float) -> None:
    last = tower[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(math.log(probability / (1 - probability)))


def test_esmm_ctcvr_is_ctr_times_cvr():
    model = build_backbone(SPEC, BackboneConfig(kind="esmm", **SMALL)).eval()
    assert isinstance(model, ESMM)
    _set_constant_tower(model.towers[0], 0.8)
    _set_constant_tower(model.towers[1], 0.25)

    probabilities = model(_features())

    torch.testing.assert_close(probabilities[:, 0], torch.full((6,), 0.8))
    torch.testing.assert_close(probabilities[:, 1], torch.full((6,), 0.2))


def test_esmm_product_on_random_weights():
    model = build_backbone(SPEC, BackboneConfig(kind="esmm", **SMALL)).eval()
    features = _features(32, seed=3)
    ctr, cvr = model.click_and_conversion(model.inputs(features))

    probabilities = model(features)

    torch.testing.assert_close(probabilities[:, 0], ctr)
    torch.testing.assert_close(probabilities[:, 1], ctr * cvr)
    assert bool((probabilities[:, 1] <= probabilities[:, 0]).all())


def test_input_maps_unseen_codes_to_reserved_index():
    layer = MultiTaskInput(SPEC, embedding_dim=4)
    seen = _features(2)
    unseen = {name: value.clone() for name, value in seen.items()}
    seen["categorical"][:, 1] = 0
    unseen["categorical"][:, 1] = 99  # field cardinality is 7
    seen["items"][:] = 0
    unseen["items"][:] = 20  # item vocabulary is 20, so 20 was never seen

    torch.testing.assert_close(layer(seen), layer(unseen))


def test_input_width_and_history_mean():
    layer = MultiTaskInput(SPEC, embedding_dim=4)
    features = _features(1)
    features["history"] = torch.tensor([[3, 0, 5, 0]])

    encoded = layer(features)

    assert encoded.shape == (1, 3 + (2 + 2 + 1) * 4)
    table = layer.embeddings.table.weight
    item_offset = SPEC.user_vocabulary
    expected = (table[item_offset + 3] + table[item_offset + 5]) / 2
    torch.testing.assert_close(encoded[0, -4:], expected)


def test_input_rejects_wrong_numeric_width():
    layer = MultiTaskInput(SPEC, embedding_dim=4)
    features = _features(2)
    features["numeric"] = torch.zeros(2, 5)
    with pytest.raises(ShapeError, match="numeric: expected 3 columns"):
        layer(features)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"kind": "wide"}, "kind: expected one of"),
        ({"kind": "esmm", "tasks": ("ctr",)}, "ESMM predicts exactly two"),
        ({"bottom_dims": ()}, "bottom_dims"),
        ({"dropout": 1.0}, "dropout"),
        ({"experts": 0}, "experts"),
    ],
)
def test_backbone_config_rejects(changes, message):
    with pytest.raises(InvalidArgumentError, match=message):
        BackboneConfig(**changes)


def test_paper_defaults():
    config = BackboneConfig()
    assert config.embedding_dim == 128
    assert config.bottom_dims == (512, 256)
    assert config.tower_dims == (128, 64)
    assert config.dropout == 0.2
    assert config.experts == 8
    assert (config.shared_experts, config.task_experts, len(config.bottom_dims)) == (4, 4, 2)
