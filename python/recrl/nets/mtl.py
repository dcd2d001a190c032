"""Multi-task CTR/CTCVR backbones: Single-Task, Shared-Bottom, ESMM, MMoE and PLE.

Every backbone maps the features of a user-item step to one probability per task [B, K]. The
RMTL paper (Liu et al., "Multi-Task Recommendations with Reinforcement Learning", WWW 2023,
arXiv 2302.03328) uses them with K = 2 tasks: click (pCTR) and click-and-convert (pCTCVR).

- Single-Task: an independent bottom MLP and tower per task over the shared embeddings.
- Shared-Bottom (Caruana, 1997): one bottom MLP shared by the task towers.
- ESMM (Ma et al., SIGIR 2018): a CTR network and a CVR network; pCTCVR = pCTR * pCVR, so the
  CVR head is trained through the CTCVR label over the whole impression space.
- MMoE (Ma et al., KDD 2018): expert MLPs mixed per task by a softmax gate over the input.
- PLE (Tang et al., RecSys 2020): progressive layers of shared and task-specific experts, each
  task gated over its own and the shared experts, a shared gate over all of them.

All categorical inputs (user, item, item history and the dataset's categorical fields) go through
one embedding table with per-field offsets (:class:`recrl.nets.FieldEmbedding`). Code 0 of each
field is reserved for values unseen in training.

Limitations:
    The reference implementation puts batch normalisation in every hidden layer; these
    backbones use Linear, ReLU and dropout only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, cast

import torch
from torch import nn

from recrl.errors import InvalidArgumentError, ShapeError
from recrl.nets.state import FieldEmbedding

__all__ = [
    "BACKBONES",
    "BACKBONE_TITLES",
    "ESMM",
    "MMoE",
    "PLE",
    "BackboneConfig",
    "FeatureSpec",
    "MultiTaskBackbone",
    "MultiTaskInput",
    "SharedBottom",
    "SingleTask",
    "build_backbone",
    "dense_stack",
]


@dataclass(frozen=True)
class FeatureSpec:
    """Sizes of the inputs of one prepared dataset.

    Attributes:
        numeric_dim: numeric features per row (user, item and per-row ones).
        cardinalities: codes (0 included) of each categorical column of the dataset.
        user_vocabulary: user indices, 0 = unknown.
        item_vocabulary: item indices, 0 = unknown; also used by the item history.
        history_length: L, items in each row's history window (0 = no history).
    """

    numeric_dim: int
    cardinalities: tuple[int, ...]
    user_vocabulary: int
    item_vocabulary: int
    history_length: int = 0

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> FeatureSpec:
        """Rebuild a spec from the output of ``dataclasses.asdict``."""
        return cls(**{**values, "cardinalities": tuple(values["cardinalities"])})


@dataclass(frozen=True)
class BackboneConfig:
    """Architecture of a multi-task backbone; defaults follow the RMTL reference code.

    Attributes:
        kind: ``single``, ``shared_bottom``, ``esmm``, ``mmoe`` or ``ple``.
        tasks: task names, in output column order; ESMM needs exactly two (CTR, CTCVR).
        embedding_dim: width of every field embedding (128 in the paper).
        bottom_dims: hidden widths of the bottom MLPs and experts ((512, 256) in the paper).
            PLE has one extraction level per entry, its experts one layer of that width.
        tower_dims: hidden widths of each task tower before the output unit ((128, 64)).
        dropout: dropout probability after every hidden layer, in [0, 1) (0.2).
        experts: MMoE expert count (8).
        shared_experts: PLE shared experts per level (4).
        task_experts: PLE task-specific experts per task and level (4).
    """

    kind: str = "shared_bottom"
    tasks: tuple[str, ...] = ("ctr", "ctcvr")
    embedding_dim: int = 128
    bottom_dims: tuple[int, ...] = (512, 256)
    tower_dims: tuple[int, ...] = (128, 64)
    dropout: float = 0.2
    experts: int = 8
    shared_experts: int = 4
    task_experts: int = 4

    def __post_init__(self) -> None:
        if self.kind not in BACKBONES:
            raise InvalidArgumentError(
                f"kind: expected one of {sorted(BACKBONES)}, got {self.kind!r}"
            )
        if not self.tasks:
            raise InvalidArgumentError("tasks: expected at least one task name, got none")
        if self.kind == "esmm" and len(self.tasks) != 2:
            raise InvalidArgumentError(
                f"tasks: ESMM predicts exactly two tasks (CTR, CTCVR), got {list(self.tasks)}"
            )
        if not self.bottom_dims or min(self.bottom_dims) < 1:
            raise InvalidArgumentError(
                f"bottom_dims: expected at least one positive width, got {self.bottom_dims}"
            )
        if any(width < 1 for width in self.tower_dims):
            raise InvalidArgumentError(
                f"tower_dims: expected positive widths, got {self.tower_dims}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise InvalidArgumentError(f"dropout: expected a value in [0, 1), got {self.dropout}")
        for name in ("embedding_dim", "experts", "shared_experts", "task_experts"):
            if getattr(self, name) < 1:
                raise InvalidArgumentError(
                    f"{name}: expected an integer >= 1, got {getattr(self, name)!r}"
                )

    def to_dict(self) -> dict[str, Any]:
        """Return the config as JSON-ready values."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> BackboneConfig:
        """Build a config from JSON or YAML values, turning lists into tuples."""
        converted: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in values.items()
        }
        return cls(**converted)


def dense_stack(input_dim: int, widths: Sequence[int], dropout: float) -> nn.Sequential:
    """Build Linear, ReLU and dropout layers for each width; the output is the last width."""
    layers: list[nn.Module] = []
    for width in widths:
        layers.extend([nn.Linear(input_dim, width), nn.ReLU()])
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        input_dim = width
    return nn.Sequential(*layers)


class MultiTaskInput(nn.Module):
    """Embed a user-item step as one dense vector.

    The output is ``[numeric, emb(user), emb(item), emb(field_1..F), mean(emb(history))]`` of
    width ``numeric_dim + (F + 2 + has_history) * embedding_dim``. The user, item and categorical
    fields share one :class:`FieldEmbedding` table. History items use the item field's rows,
    and history slots holding 0 (padding or unknown) are left out of the mean.
    """

    def __init__(self, spec: FeatureSpec, embedding_dim: int) -> None:
        super().__init__()
        self.spec = spec
        self.embeddings = FieldEmbedding(
            [spec.user_vocabulary, spec.item_vocabulary, *spec.cardinalities], embedding_dim
        )
        self.use_history = spec.history_length > 0
        fields = 2 + len(spec.cardinalities) + int(self.use_history)
        self.output_dim = spec.numeric_dim + fields * embedding_dim

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """Encode a batch into float [B, output_dim].

        Args:
            features: ``numeric`` float32 [B, numeric_dim], ``categorical`` int64 [B, F],
                ``users`` and ``items`` int64 [B], ``history`` int64 [B, L].
        """
        numeric = features["numeric"]
        if numeric.shape[-1] != self.spec.numeric_dim:
            raise ShapeError(
                f"numeric: expected {self.spec.numeric_dim} columns, got shape "
                f"{tuple(numeric.shape)}"
            )
        codes = torch.cat(
            [features["users"][:, None], features["items"][:, None], features["categorical"]],
            dim=1,
        )
        parts = [numeric, self.embeddings(codes).flatten(1)]
        if self.use_history:
            history = features["history"]
            item_cardinality = self.spec.item_vocabulary
            known = (history > 0) & (history < item_cardinality)
            rows = torch.where(known, history, torch.zeros_like(history))
            embedded = self.embeddings.table(rows + self.embeddings.offsets[1])
            mask = known.unsqueeze(-1).to(embedded.dtype)
            parts.append((embedded * mask).sum(1) / mask.sum(1).clamp(min=1.0))
        return torch.cat(parts, dim=1)


class MultiTaskBackbone(nn.Module):
    """Base class: the shared input layer and one probability per task.

    Args:
        spec: input sizes of the dataset.
        config: the architecture.
    """

    def __init__(self, spec: FeatureSpec, config: BackboneConfig) -> None:
        super().__init__()
        self.spec = spec
        self.config = config
        self.inputs = MultiTaskInput(spec, config.embedding_dim)

    @property
    def tasks(self) -> tuple[str, ...]:
        """Task names in output column order."""
        return self.config.tasks

    def _tower(self, input_dim: int) -> nn.Sequential:
        widths = self.config.tower_dims
        last = widths[-1] if widths else input_dim
        stack = dense_stack(input_dim, widths, self.config.dropout)
        return nn.Sequential(*stack, nn.Linear(last, 1))

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """Return the task probabilities float [B, K] in (0, 1) of a batch of steps."""
        return self.task_probabilities(self.inputs(features))

    def task_probabilities(self, inputs: torch.Tensor) -> torch.Tensor:
        """Map the embedded inputs [B, D] to the task probabilities [B, K]."""
        raise NotImplementedError


class SingleTask(MultiTaskBackbone):
    """One independent bottom MLP and tower per task; only the embedding table is shared."""

    def __init__(self, spec: FeatureSpec, config: BackboneConfig) -> None:
        super().__init__(spec, config)
        width = self.inputs.output_dim
        self.bottoms = nn.ModuleList(
            dense_stack(width, config.bottom_dims, config.dropout) for _ in config.tasks
        )
        self.towers = nn.ModuleList(self._tower(config.bottom_dims[-1]) for _ in config.tasks)

    def task_probabilities(self, inputs: torch.Tensor) -> torch.Tensor:  # noqa: D102
        logits = [tower(bottom(inputs)) for bottom, tower in zip(self.bottoms, self.towers)]
        return torch.sigmoid(torch.cat(logits, dim=1))


class SharedBottom(MultiTaskBackbone):
    """One bottom MLP shared by all task towers."""

    def __init__(self, spec: FeatureSpec, config: BackboneConfig) -> None:
        super().__init__(spec, config)
        self.bottom = dense_stack(self.inputs.output_dim, config.bottom_dims, config.dropout)
        self.towers = nn.ModuleList(self._tower(config.bottom_dims[-1]) for _ in config.tasks)

    def task_probabilities(self, inputs: torch.Tensor) -> torch.Tensor:  # noqa: D102
        shared = self.bottom(inputs)
        return torch.sigmoid(torch.cat([tower(shared) for tower in self.towers], dim=1))


class ESMM(MultiTaskBackbone):
    """Entire-space multi-task model: pCTCVR = pCTR * pCVR (Ma et al., SIGIR 2018).

    Column 0 of the output is pCTR, column 1 pCTCVR. The CVR network has no label of its own.
    """

    def __init__(self, spec: FeatureSpec, config: BackboneConfig) -> None:
        super().__init__(spec, config)
        width = self.inputs.output_dim
        self.bottoms = nn.ModuleList(
            dense_stack(width, config.bottom_dims, config.dropout) for _ in range(2)
        )
        self.towers = nn.ModuleList(self._tower(config.bottom_dims[-1]) for _ in range(2))

    def click_and_conversion(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return pCTR [B] and pCVR [B], the probability of conversion given a click."""
        ctr, cvr = (
            torch.sigmoid(tower(bottom(inputs))).squeeze(1)
            for bottom, tower in zip(self.bottoms, self.towers)
        )
        return ctr, cvr

    def task_probabilities(self, inputs: torch.Tensor) -> torch.Tensor:  # noqa: D102
        ctr, cvr = self.click_and_conversion(inputs)
        return torch.stack([ctr, ctr * cvr], dim=1)


class MMoE(MultiTaskBackbone):
    """Multi-gate mixture of experts (Ma et al., KDD 2018).

    Task k's tower reads sum_i g_k(x)_i * e_i(x), with g_k = softmax(W_k x).
    """

    def __init__(self, spec: FeatureSpec, config: BackboneConfig) -> None:
        super().__init__(spec, config)
        width = self.inputs.output_dim
        self.experts = nn.ModuleList(
            dense_stack(width, config.bottom_dims, config.dropout) for _ in range(config.experts)
        )
        self.gates = nn.ModuleList(nn.Linear(width, config.experts) for _ in config.tasks)
        self.towers = nn.ModuleList(self._tower(config.bottom_dims[-1]) for _ in config.tasks)

    def task_probabilities(self, inputs: torch.Tensor) -> torch.Tensor:  # noqa: D102
        experts = torch.stack([expert(inputs) for expert in self.experts], dim=1)  # [B, E, H]
        logits = []
        for gate, tower in zip(self.gates, self.towers):
            weights = torch.softmax(gate(inputs), dim=1).unsqueeze(-1)  # [B, E, 1]
            logits.append(tower((weights * experts).sum(1)))
        return torch.sigmoid(torch.cat(logits, dim=1))


class PLE(MultiTaskBackbone):
    """Progressive layered extraction (Tang et al., RecSys 2020).

    Level l has ``shared_experts`` shared and ``task_experts`` experts per task, each one hidden
    layer of width ``bottom_dims[l]``. Task k's gate mixes its own and the shared experts. Below
    the last level, a shared gate also mixes all experts into the input of the next level's
    shared experts.
    """

    def __init__(self, spec: FeatureSpec, config: BackboneConfig) -> None:
        super().__init__(spec, config)
        tasks = len(config.tasks)
        width = self.inputs.output_dim
        self.levels = nn.ModuleList()
        for level, expert_width in enumerate(config.bottom_dims):
            last = level == len(config.bottom_dims) - 1
            own_and_shared = config.task_experts + config.shared_experts
            modules = nn.ModuleDict(
                {
                    "shared": nn.ModuleList(
                        dense_stack(width, [expert_width], config.dropout)
                        for _ in range(config.shared_experts)
                    ),
                    "task": nn.ModuleList(
                        nn.ModuleList(
                            dense_stack(width, [expert_width], config.dropout)
                            for _ in range(config.task_experts)
                        )
                        for _ in range(tasks)
                    ),
                    "task_gates": nn.ModuleList(
                        nn.Linear(width, own_and_shared) for _ in range(tasks)
                    ),
                }
            )
            if not last:
                modules["shared_gate"] = nn.Linear(
                    width, config.shared_experts + tasks * config.task_experts
                )
            self.levels.append(modules)
            width = expert_width
        self.towers = nn.ModuleList(self._tower(width) for _ in config.tasks)

    @staticmethod
    def _mix(gate: nn.Module, gate_input: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(gate(gate_input), dim=1).unsqueeze(-1)
        return (weights * experts).sum(1)

    def task_probabilities(self, inputs: torch.Tensor) -> torch.Tensor:  # noqa: D102
        task_inputs = [inputs] * len(self.config.tasks)
        shared_input = inputs
        for modules in self.levels:
            level = cast(nn.ModuleDict, modules)
            shared = [expert(shared_input) for expert in cast(nn.ModuleList, level["shared"])]
            task_outputs = [
                [expert(x) for expert in cast(nn.ModuleList, experts)]
                for experts, x in zip(cast(nn.ModuleList, level["task"]), task_inputs)
            ]
            next_inputs = [
                self._mix(gate, x, torch.stack(outputs + shared, dim=1))
                for gate, x, outputs in zip(
                    cast(nn.ModuleList, level["task_gates"]), task_inputs, task_outputs
                )
            ]
            if "shared_gate" in level:
                everything = [out for outputs in task_outputs for out in outputs] + shared
                shared_input = self._mix(
                    level["shared_gate"], shared_input, torch.stack(everything, dim=1)
                )
            task_inputs = next_inputs
        logits = [tower(x) for tower, x in zip(self.towers, task_inputs)]
        return torch.sigmoid(torch.cat(logits, dim=1))


BACKBONES: dict[str, type[MultiTaskBackbone]] = {
    "single": SingleTask,
    "shared_bottom": SharedBottom,
    "esmm": ESMM,
    "mmoe": MMoE,
    "ple": PLE,
}

BACKBONE_TITLES = {
    "single": "Single-Task",
    "shared_bottom": "Shared-Bottom",
    "esmm": "ESMM",
    "mmoe": "MMoE",
    "ple": "PLE",
}


def build_backbone(spec: FeatureSpec, config: BackboneConfig) -> MultiTaskBackbone:
    """Construct the backbone named by ``config.kind``."""
    return BACKBONES[config.kind](spec, config)
