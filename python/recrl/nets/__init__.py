"""Neural network building blocks: MLPs, critic ensembles, actors and multi-task backbones."""

from recrl.nets.actors import (
    CategoricalActor,
    CategoricalActorEnsemble,
    GaussianActor,
    GaussianActorEnsemble,
    gaussian_candidate_log_probabilities,
    gaussian_log_density,
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
    "GaussianActorEnsemble",
    "MMoE",
    "MultiTaskBackbone",
    "MultiTaskInput",
    "SharedBottom",
    "SingleTask",
    "StateEncoder",
    "build_backbone",
    "gaussian_candidate_log_probabilities",
    "gaussian_log_density",
    "masked_log_softmax",
    "score_candidates",
]
