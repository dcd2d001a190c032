"""Neural network building blocks: MLPs, critic ensembles, actors and multi-task backbones."""

from recrl.nets.mlp import MLP

__all__ = ["MLP"]
