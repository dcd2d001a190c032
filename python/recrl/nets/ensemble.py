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

    The weight is indexed [M, in, out] but laid out in memory as [in, M, out], so the product of
    an input shared by all members with the weight is one [B, in] @ [in, M * out] product on a
    view, with no copy of the weight in the forward or backward pass.

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
        self.weight = nn.Parameter(torch.empty(input_dim, members, output_dim).permute(1, 0, 2))
        self.bias = nn.Parameter(torch.empty(members, 1, output_dim))
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)
        self.members = members
        self.input_dim = input_dim
        self.output_dim = output_dim

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Map inputs [M, B, in] (or [B, in], shared by all members) to [M, B, out]."""
        if inputs.dim() == 2:
            return self._shared_product(inputs, self._wide()) + self.bias
        return torch.baddbmm(self.bias, inputs, self.weight)

    def _wide(self) -> torch.Tensor:
        """Return the weight as [in, M * out], a view in the layout ``__init__`` allocates."""
        return self.weight.permute(1, 0, 2).reshape(self.input_dim, -1)

    def _shared_product(self, inputs: torch.Tensor, wide: torch.Tensor) -> torch.Tensor:
        """Return inputs [B, w] @ wide [w, M * out] as [M, B, out]: one product for all members."""
        output = inputs @ wide
        return output.view(inputs.shape[0], self.members, self.output_dim).transpose(0, 1)

    def forward_parts(self, parts: Sequence[torch.Tensor]) -> torch.Tensor:
        """Map the concatenation of ``parts`` along the features to [M, B, out].

        Equal to ``forward(torch.cat(parts, -1))`` when every part has the same leading axes, but
        each part may be shared ([B, S_p]) or per member ([M, B, S_p]), and each multiplies its
        own block of rows of the weight. A part that needs no gradient (the numeric features of
        a batch) then costs no input-gradient product in the backward pass, and the concatenated
        input is never built.
        """
        widths = [part.shape[-1] for part in parts]
        if sum(widths) != self.input_dim:
            raise ValueError(f"parts: expected widths summing to {self.input_dim}, got {widths}")
        output: torch.Tensor | None = None
        # Splitting the [in, M * out] view gives each part its rows without copying the weight.
        # The backward pass joins the row blocks of the gradient with one concatenation.
        blocks = torch.split(self._wide(), widths, dim=0)
        for part, width, block in zip(parts, widths, blocks):
            if width == 0:
                continue
            if part.dim() == 2:
                term = self._shared_product(part, block)
            else:
                member_block = block.view(width, self.members, self.output_dim).permute(1, 0, 2)
                term = torch.bmm(part, member_block)
            output = term if output is None else output + term
        if output is None:
            raise ValueError("parts: expected at least one part with features")
        return output + self.bias


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
        return self._run(self.layers[0](inputs))

    def forward_parts(self, parts: Sequence[torch.Tensor]) -> torch.Tensor:
        """Map the feature-wise concatenation of ``parts`` to [M, B, output_dim].

        Each part is float [B, S_p] (shared by the members) or [M, B, S_p]; the first layer
        multiplies each part by its own rows of the weight (see ``EnsembleLinear.forward_parts``).
        """
        first = self.layers[0]
        if not isinstance(first, EnsembleLinear):
            raise TypeError("layers: expected an EnsembleLinear first layer")
        return self._run(first.forward_parts(parts))

    def _run(self, output: torch.Tensor) -> torch.Tensor:
        """Apply the activation and every layer after the first."""
        for layer in self.layers[1:]:
            output = layer(self.activation(output))
        return output
