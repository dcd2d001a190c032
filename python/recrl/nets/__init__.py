"""Neural network building blocks: MLPs, critic ensembles, actors and multi-task backbones."""

from recrl.nets.actors import CategoricalActor, GaussianActor, masked_log_softmax
from recrl.nets.ensemble import EnsembleLinear, EnsembleMLP
from recrl.nets.mlp import MLP
from recrl.nets.state import FieldEmbedding, StateEncoder

__all__ = [
    "CategoricalActor",
    "EnsembleLinear",
    "EnsembleMLP",
    "FieldEmbedding",
    "GaussianActor",
    "MLP",
    "StateEncoder",
    "masked_log_softmax",
]
