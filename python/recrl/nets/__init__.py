"""Neural network building blocks: MLPs, critic ensembles, actors and multi-task backbones."""

from recrl.nets.actors import CategoricalActor
from recrl.nets.mlp import MLP
from recrl.nets.mtl import (
    BACKBONES,
    ESMM,
    PLE,
    BackboneConfig,
    FeatureSpec,
    MMoE,
    MultiTaskBackbone,
    MultiTaskInput,
    SharedBottom,
    SingleTask,
    build_backbone,
)
from recrl.nets.state import FieldEmbedding, StateEncoder

__all__ = [
    "BACKBONES",
    "ESMM",
    "MLP",
    "PLE",
    "BackboneConfig",
    "CategoricalActor",
    "FeatureSpec",
    "FieldEmbedding",
    "MMoE",
    "MultiTaskBackbone",
    "MultiTaskInput",
    "SharedBottom",
    "SingleTask",
    "StateEncoder",
    "build_backbone",
]
