"""Configuration of the RMTL stages: pretraining, critic training and fine-tuning.

Every stage has a frozen dataclass. :class:`RMTLConfig` groups them with the backbone
architecture and reads and writes the nested dict form used by YAML config files and by the
``config.json`` saved in each run folder.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from recrl.config_types import check_fields, check_value, choices
from recrl.errors import InvalidArgumentError
from recrl.nets.mtl import BackboneConfig

__all__ = [
    "WEIGHTINGS",
    "CriticConfig",
    "FinetuneConfig",
    "PretrainConfig",
    "RMTLConfig",
]

WEIGHTINGS = ("rmtl", "cw", "wl", "nlc")


def _check_positive(config: object, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        if not value > 0:
            expected = "an integer >= 1" if isinstance(value, int) else "a number > 0"
            raise InvalidArgumentError(f"{name}: expected {expected}, got {value!r}")


@dataclass(frozen=True)
class PretrainConfig:
    """Supervised pretraining of the backbone on the sum of the task BCE losses.

    Attributes:
        epochs: maximum passes over the training split.
        batch_size: B, steps per gradient update (2048 in the reference code).
        learning_rate: Adam step size (1e-3).
        weight_decay: Adam L2 penalty (1e-6).
        patience: epochs without a better validation AUC (mean over tasks) before stopping;
            the weights of the best epoch are kept.
    """

    epochs: int = 10
    batch_size: int = 2048
    learning_rate: float = 1e-3
    weight_decay: float = 1e-6
    patience: int = 2

    def __post_init__(self) -> None:
        _check_positive(self, "epochs", "batch_size", "learning_rate", "patience")


@dataclass(frozen=True)
class CriticConfig:
    """Offline TD training of one critic per task against the frozen pretrained backbone.

    Each critic estimates Q_k(s_t, a_k) = E[sum_j gamma^j r_k(t+j)] with the reward
    r_k = -BCE(a_k, y_k), so Q_k <= 0; the output unit is -softplus.

    Attributes:
        epochs: passes over the training split's transitions.
        batch_size: B, transitions per update.
        learning_rate: Adam step size.
        gamma: discount per step of a session, in [0, 1) (0.95 in the paper).
        tau: soft target update rate, target <- tau * online + (1 - tau) * target (0.2).
        action_noise: standard deviation of the Gaussian noise added to the backbone's
            predictions to form replay actions, which are then clipped into (0, 1).
        double_q: train two critic sets and bootstrap from the minimum of their targets
            (clipped double Q, Fujimoto et al., 2018).
        shared_bottom: one bottom MLP shared by the task heads (the paper); false gives
            each task an independent network (the reference code).
        embedding_dim: width of the critics' own field embeddings.
        bottom_dims: hidden widths of the critic bottom.
        head_dims: hidden widths of each task head, which reads the bottom output and a_k.
    """

    epochs: int = 3
    batch_size: int = 2048
    learning_rate: float = 1e-3
    gamma: float = 0.95
    tau: float = 0.2
    action_noise: float = 0.05
    double_q: bool = False
    shared_bottom: bool = True
    embedding_dim: int = 16
    bottom_dims: tuple[int, ...] = (128, 64)
    head_dims: tuple[int, ...] = (32,)

    def __post_init__(self) -> None:
        _check_positive(self, "epochs", "batch_size", "learning_rate", "embedding_dim")
        if not 0.0 <= self.gamma < 1.0:
            raise InvalidArgumentError(f"gamma: expected a number in [0, 1), got {self.gamma!r}")
        if not 0.0 < self.tau <= 1.0:
            raise InvalidArgumentError(f"tau: expected a number in (0, 1], got {self.tau!r}")
        if self.action_noise < 0:
            raise InvalidArgumentError(
                f"action_noise: expected a number >= 0, got {self.action_noise!r}"
            )
        for name in ("bottom_dims", "head_dims"):
            widths = getattr(self, name)
            if any(width < 1 for width in widths):
                raise InvalidArgumentError(f"{name}: expected widths >= 1, got {list(widths)}")


@dataclass(frozen=True)
class FinetuneConfig:
    """Fine-tuning of the pretrained backbone with critic-weighted task losses.

    Attributes:
        epochs: maximum passes over the training split.
        batch_size: B.
        learning_rate: Adam step size.
        weight_decay: Adam L2 penalty.
        patience: epochs without a better validation AUC before stopping; the best fine-tuned
            epoch is kept (the pretrained weights are not a candidate).
        weight_scale: lambda of omega = 1 - lambda * Q_k(s, a_k) (0.7 in the paper).
        weighting: ``rmtl`` (omega as above), ``cw`` (constant weight 1, plain continued
            training), ``wl`` (the RMTL weight on positive labels only, 1 elsewhere) or
            ``nlc`` (omega = -Q_k, without the linear transform).
    """

    epochs: int = 5
    batch_size: int = 2048
    learning_rate: float = 1e-3
    weight_decay: float = 1e-6
    patience: int = 2
    weight_scale: float = 0.7
    weighting: str = field(default="rmtl", metadata=choices(*WEIGHTINGS))

    def __post_init__(self) -> None:
        _check_positive(self, "epochs", "batch_size", "learning_rate", "patience")
        if self.weighting not in WEIGHTINGS:
            raise InvalidArgumentError(
                f"weighting: expected one of {WEIGHTINGS}, got {self.weighting!r}"
            )
        if self.weight_scale < 0:
            raise InvalidArgumentError(
                f"weight_scale: expected a number >= 0, got {self.weight_scale!r}"
            )


@dataclass(frozen=True)
class RMTLConfig:
    """All settings of one RMTL run.

    Attributes:
        backbone: architecture; ``kind`` is replaced by each backbone the run trains.
        pretrain: supervised pretraining.
        critic: critic training.
        finetune: critic-weighted fine-tuning.
        evaluation_batch_size: rows per forward pass when predicting a split.
    """

    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    critic: CriticConfig = field(default_factory=CriticConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    evaluation_batch_size: int = 8192

    def to_dict(self) -> dict[str, Any]:
        """Return the nested settings as JSON-ready values."""
        values: dict[str, Any] = _lists(asdict(self))
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RMTLConfig:
        """Build a config from nested values; missing keys keep their defaults.

        Raises:
            InvalidArgumentError: an unknown section or key, naming it and the known ones, or
                a value of the wrong type or out of range, naming its dotted key
                (``pretrain.epochs``).
        """
        sections = {
            "backbone": BackboneConfig,
            "pretrain": PretrainConfig,
            "critic": CriticConfig,
            "finetune": FinetuneConfig,
        }
        known = {*sections, "evaluation_batch_size"}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InvalidArgumentError(
                f"config: unknown section {unknown[0]!r}; expected one of {sorted(known)}"
            )
        built: dict[str, Any] = {}
        for name, kind in sections.items():
            section = values.get(name) or {}
            if not isinstance(section, Mapping):
                raise InvalidArgumentError(
                    f"{name}: expected a mapping of its settings, got {section!r}"
                )
            allowed = {f.name for f in fields(kind)}
            extra = sorted(set(section) - allowed)
            if extra:
                raise InvalidArgumentError(
                    f"config: unknown key {name}.{extra[0]}; expected one of {sorted(allowed)}"
                )
            checked = check_fields(kind, section, name)
            try:
                built[name] = kind(**checked)
            except InvalidArgumentError as error:
                raise InvalidArgumentError(f"{name}.{error}") from None
        if "evaluation_batch_size" in values:
            size = check_value("evaluation_batch_size", int, values["evaluation_batch_size"])
            if size < 1:
                raise InvalidArgumentError(
                    f"evaluation_batch_size: expected an integer >= 1, got {size!r}"
                )
            built["evaluation_batch_size"] = size
        return cls(**built)

    def with_backbone(self, kind: str) -> RMTLConfig:
        """Return a copy whose backbone is ``kind``."""
        return replace(self, backbone=replace(self.backbone, kind=kind))

    def with_weighting(self, weighting: str) -> RMTLConfig:
        """Return a copy whose fine-tuning uses ``weighting``."""
        return replace(self, finetune=replace(self.finetune, weighting=weighting))


def _lists(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _lists(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_lists(v) for v in value]
    return value
