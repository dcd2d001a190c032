"""Neural network building blocks: MLPs, critic ensembles, actors and multi-task backbones."""

from recrl.nets.actors import CategoricalActor
from recrl.nets.mlp import MLP
from recrl.nets.state import FieldEmbedding, StateEncoder

__all__ = ["CategoricalActor", "MLP", "FieldEmbedding", "StateEncoder"]
