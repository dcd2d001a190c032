"""Multi-layer perceptrons shared by every model of recrl."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["MLP"]

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "leaky_relu": nn.LeakyReLU,
}


class MLP(nn.Module):
    """Linear layers with an activation (and optional dropout) between them.

    The last layer has no activation, so the output is unbounded unless the caller adds one.

    Args:
        input_dim: S, features of each input row.
        hidden_dims: widths of the hidden layers, may be empty.
        output_dim: width of the output.
        activation: one of ``relu``, ``elu``, ``gelu``, ``tanh``, ``leaky_relu``.
        dropout: probability of dropping a hidden unit during training, in [0, 1).
    """

    def __init__(
        self,
        input_dim: int,
        hidden_dims: Sequence[int],
        output_dim: int,
        *,
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(
                f"activation: expected one of {sorted(_ACTIVATIONS)}, got {activation!r}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout: expected a probability in [0, 1), got {dropout}")
        layers: list[nn.Module] = []
        width = input_dim
        for hidden in hidden_dims:
            layers.append(nn.Linear(width, hidden))
            layers.append(_ACTIVATIONS[activation]())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = hidden
        layers.append(nn.Linear(width, output_dim))
        self.layers = nn.Sequential(*layers)
        self.input_dim = input_dim
        self.output_dim = output_dim

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Map inputs [B, S] to outputs [B, output_dim]."""
        output: torch.Tensor = self.layers(inputs)
        return output
