"""Ensembles of MLPs evaluated with one batched matrix product per layer."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from recrl.nets.mlp import _ACTIVATIONS

__all__ = ["EnsembleLinear", "EnsembleMLP"]


class EnsembleLinear(nn.Module):
    """M independent affine maps stored as one weight [M, in, out] and one bias [M, 1, out].

    Each member is initialised like ``torch.nn.Linear`` (uniform in +-1/sqrt(in)), so an
    ensemble of one behaves like a single linear layer.

    Args:
        members: M, number of independent maps.
        input_dim: width of each member's input.
        output_dim: width of each member's output.
    """

    def __init__(self, members: int, input_dim: int, output_dim: int) -> None:
        super().__init__()
        if members < 1:
            raise ValueError(f"members: expected a positive count, got {members}")
        bound = 1.0 / math.sqrt(input_dim) if input_dim > 0 else 0.0
        self.weight = nn.Parameter(torch.empty(members, input_dim, output_dim))
        self.bias = nn.Parameter(torch.empty(members, 1, output_dim))
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)
        self.members = members
        self.input_dim = input_dim
        self.output_dim = output_dim

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Map inputs [M, B, in] (or [B, in], shared by all members) to [M, B, out]."""
        if inputs.dim() == 2:
            # A shared input is one wide product [B, in] @ [in, M * out], cheaper than M copies.
            wide = self.weight.permute(1, 0, 2).reshape(self.input_dim, -1)
            output = inputs @ wide
            return (
                output.view(inputs.shape[0], self.members, self.output_dim).transpose(0, 1)
                + self.bias
            )
        return torch.baddbmm(self.bias, inputs, self.weight)


class EnsembleMLP(nn.Module):
    """M MLPs of one shape, each layer a single batched product over the members.

    Member m computes the same function as ``recrl.nets.MLP`` would with weights
    ``weight[m]`` and ``bias[m]`` of every layer; no Python loop runs over members.

    Args:
        members: M, number of networks.
        input_dim: S, features of each input row.
        hidden_dims: widths of the hidden layers, may be empty.
        output_dim: width of each member's output.
        activation: one of ``relu``, ``elu``, ``gelu``, ``tanh``, ``leaky_relu``.
    """

    def __init__(
        self,
        members: int,
        input_dim: int,
        hidden_dims: Sequence[int],
        output_dim: int,
        *,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(
                f"activation: expected one of {sorted(_ACTIVATIONS)}, got {activation!r}"
            )
        widths = [input_dim, *hidden_dims, output_dim]
        self.layers = nn.ModuleList(
            EnsembleLinear(members, widths[i], widths[i + 1]) for i in range(len(widths) - 1)
        )
        self.activation = _ACTIVATIONS[activation]()
        self.members = members
        self.input_dim = input_dim
        self.output_dim = output_dim

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Map inputs [B, S] (shared) or [M, B, S] (one per member) to [M, B, output_dim]."""
        output = inputs
        for index, layer in enumerate(self.layers):
            output = layer(output)
            if index < len(self.layers) - 1:
                output = self.activation(output)
        return output
