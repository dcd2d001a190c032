"""Neural network building blocks: MLPs, critic ensembles, actors and multi-task backbones."""

from recrl.nets.actors import (
    CategoricalActor,
    CategoricalActorEnsemble,
    GaussianActor,
    masked_log_softmax,
    score_candidates,
)
from recrl.nets.ensemble import EnsembleLinear, EnsembleMLP
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
from recrl.nets.state import EnsembleStateEncoder, FieldEmbedding, StateEncoder

__all__ = [
    "BACKBONES",
    "ESMM",
    "MLP",
    "PLE",
    "BackboneConfig",
    "CategoricalActor",
    "CategoricalActorEnsemble",
    "EnsembleLinear",
    "EnsembleMLP",
    "EnsembleStateEncoder",
    "FeatureSpec",
    "FieldEmbedding",
    "GaussianActor",
    "MMoE",
    "MultiTaskBackbone",
    "MultiTaskInput",
    "SharedBottom",
    "SingleTask",
    "StateEncoder",
    "build_backbone",
    "masked_log_softmax",
    "score_candidates",
]
