"""Frozen configurations of TSCAC and its baselines, one dataclass per algorithm.

Every field states its meaning, its unit or range and, where the paper names it, its symbol in
Cai et al., "Two-Stage Constrained Actor-Critic for Short Video Recommendation", WWW 2023.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from recrl.config_types import check_fields, choices
from recrl.errors import InvalidArgumentError

__all__ = [
    "CONFIG_CLASSES",
    "BehaviourCloningConfig",
    "CommonConfig",
    "InteractionActorCriticConfig",
    "ParetoConfig",
    "RcpoConfig",
    "RewardWeightedConfig",
    "TscacConfig",
    "check_sections",
    "config_from_dict",
]

OFFLINE_CORRECTIONS = ("behaviour_cloning", "importance_ratio")
POLICIES = ("categorical", "gaussian")
MODELS = ("wide_deep", "deepfm")


@dataclass(frozen=True)
class CommonConfig:
    """Settings every method shares: networks, optimisation and the candidate set."""

    main_response: str = "watch_time"
    """Name of the response whose value is maximised (the paper's watch time, r_1)."""
    lower_is_better: tuple[str, ...] = ("is_hate",)
    """Interaction responses whose constraint is reversed: their value must stay at most at
    the behaviour's (the paper's hate)."""
    candidates: int = 150
    """N, size of the candidate set: the N most frequent items of the training split."""
    embedding_dim: int = 16
    """Width of every embedding of the state encoders (categorical fields, history items)."""
    action_dim: int = 16
    """D, width of the preference vector a = f(s) and of each item embedding phi(j)."""
    hidden_dims: tuple[int, ...] = (64, 64)
    """Hidden widths of every actor and critic MLP."""
    temperature: float = 1.0
    """tau > 0, softmax temperature of pi(j|s) = softmax(<a, phi_j> / tau)."""
    batch_size: int = 256
    """B, transitions per gradient step, sampled uniformly with replacement."""
    actor_learning_rate: float = 1e-3
    """Adam step size of every actor."""
    critic_learning_rate: float = 1e-3
    """Adam step size of every critic."""
    steps: int = 2000
    """Gradient steps of the method (each stage of TSCAC gets this many)."""
    evaluation_interval: int = 500
    """Steps between validation evaluations; the best validation checkpoint is kept."""

    def validate(self) -> None:
        """Raise ``InvalidArgumentError`` naming the first field out of its range."""
        ranges = {
            "candidates": (self.candidates >= 2, "an integer >= 2"),
            "embedding_dim": (self.embedding_dim >= 1, "an integer >= 1"),
            "action_dim": (self.action_dim >= 1, "an integer >= 1"),
            "hidden_dims": (all(width >= 1 for width in self.hidden_dims), "widths >= 1"),
            "temperature": (self.temperature > 0, "a number > 0"),
            "batch_size": (self.batch_size >= 1, "an integer >= 1"),
            "actor_learning_rate": (self.actor_learning_rate > 0, "a number > 0"),
            "critic_learning_rate": (self.critic_learning_rate > 0, "a number > 0"),
            "steps": (self.steps >= 1, "an integer >= 1"),
            "evaluation_interval": (self.evaluation_interval >= 1, "an integer >= 1"),
        }
        for name, (valid, expected) in ranges.items():
            if not valid:
                raise InvalidArgumentError(
                    f"{name}: expected {expected}, got {getattr(self, name)!r}"
                )


@dataclass(frozen=True)
class CriticConfig(CommonConfig):
    """Settings of methods with TD-trained critics."""

    discounts: dict[str, float] = field(default_factory=dict)
    """gamma_i in [0, 1) per response name; a response not listed uses ``default_discount``."""
    default_discount: float = 0.9
    """gamma in [0, 1) of every response missing from ``discounts``."""
    target_update_rate: float = 0.01
    """Soft-update coefficient in (0, 1]: target <- rate * online + (1 - rate) * target."""
    behaviour_cloning_weight: float = 1.0
    """alpha >= 0, weight of the negative log-likelihood of the logged action added to every
    actor loss of the method (the offline correction of Fujimoto and Gu, 2021)."""

    def validate(self) -> None:
        """Raise ``InvalidArgumentError`` naming the first field out of its range."""
        super().validate()
        for name, gamma in {**self.discounts, "default_discount": self.default_discount}.items():
            if not 0.0 <= gamma < 1.0:
                field_name = name if name == "default_discount" else f"discounts.{name}"
                raise InvalidArgumentError(
                    f"{field_name}: expected a discount in [0, 1), got {gamma!r}"
                )
        if not 0.0 < self.target_update_rate <= 1.0:
            raise InvalidArgumentError(
                f"target_update_rate: expected a number in (0, 1], got {self.target_update_rate!r}"
            )

    def discount(self, response: str) -> float:
        """Return gamma_i of ``response``."""
        return float(self.discounts.get(response, self.default_discount))


@dataclass(frozen=True)
class TscacConfig(CriticConfig):
    """Two-Stage Constrained Actor-Critic.

    Stage one learns, for each interaction response i, a critic Q_i and an actor pi_i that
    maximises it by advantage-weighted likelihood, E[A_i(s, a) log pi_i(a|s)]. Stage two learns
    the watch-time critic Q_1 and an actor minimising KL(pi* || pi_theta) with
    pi* ∝ prod_i pi_i^(lambda_i / Lambda) exp(A_1 / Lambda), the solution of
    max_pi E_pi[A_1] - sum_i lambda_i KL(pi || pi_i).
    """

    lambdas: float | dict[str, float] = 1e-2
    """lambda_i > 0, the stage-two weight of each interaction constraint: one shared value or
    one per interaction name (the paper sweeps 1e-1 .. 1e-5). Advantages are in units of the
    standard deviation of each response's training rewards."""
    offline_correction: str = field(
        default="behaviour_cloning", metadata=choices(*OFFLINE_CORRECTIONS)
    )
    """Stage-one correction for learning from logged actions: ``behaviour_cloning`` adds
    ``behaviour_cloning_weight`` times the negative log-likelihood of the logged action;
    ``importance_ratio`` instead weights each step by min(pi_i(a|s) / pi_beta(a|s), clip), with
    pi_beta a behaviour-cloning actor trained alongside on the same batches."""
    importance_clip: float = 10.0
    """Upper clip (> 0) of the per-step ratio pi_i / pi_beta."""
    interaction_responses: tuple[str, ...] = ()
    """Interaction responses constrained in stage two; empty means every response except the
    main one."""
    policy: str = field(default="categorical", metadata=choices(*POLICIES))
    """Policy family. ``categorical`` is a softmax over the candidate set, with pi* computed
    exactly over the candidates. ``gaussian`` is N(mu(s), sigma^2 I) over a continuous action
    vector of width ``action_dim``, where every item j is the fixed action vector phi(j). Its
    stage-two product is the Gaussian centred at sum_i w_i mu_i, and the exp(A_1 / Lambda)
    tilt is applied by self-normalised weights over sampled actions."""
    sigma: float = 0.5
    """sigma > 0, the shared standard deviation of every Gaussian actor (``gaussian`` only)."""
    action_samples: int = 64
    """S >= 1, actions sampled per state from the stage-two product to apply the tilt
    (``gaussian`` only)."""

    def validate(self) -> None:
        """Raise ``InvalidArgumentError`` naming the first field out of its range."""
        super().validate()
        values = self.lambdas.values() if isinstance(self.lambdas, dict) else [self.lambdas]
        if any(value <= 0 for value in values):
            raise InvalidArgumentError(f"lambdas: expected values > 0, got {self.lambdas!r}")
        if self.offline_correction not in OFFLINE_CORRECTIONS:
            raise InvalidArgumentError(
                f"offline_correction: expected one of {', '.join(OFFLINE_CORRECTIONS)}, got "
                f"{self.offline_correction!r}"
            )
        if self.policy not in POLICIES:
            raise InvalidArgumentError(
                f"policy: expected one of {', '.join(POLICIES)}, got {self.policy!r}"
            )
        ranges = {
            "sigma": (self.sigma > 0, "a number > 0"),
            "action_samples": (self.action_samples >= 1, "an integer >= 1"),
            "behaviour_cloning_weight": (self.behaviour_cloning_weight >= 0, "a number >= 0"),
            "importance_clip": (self.importance_clip > 0, "a number > 0"),
        }
        for name, (valid, expected) in ranges.items():
            if not valid:
                raise InvalidArgumentError(
                    f"{name}: expected {expected}, got {getattr(self, name)!r}"
                )

    def lambda_of(self, response: str) -> float:
        """Return lambda_i of ``response``."""
        if isinstance(self.lambdas, dict):
            if response not in self.lambdas:
                raise InvalidArgumentError(
                    f"lambdas: no value for {response!r}; given {sorted(self.lambdas)}"
                )
            return float(self.lambdas[response])
        return float(self.lambdas)


@dataclass(frozen=True)
class BehaviourCloningConfig(CommonConfig):
    """Behaviour cloning: maximise the log-likelihood of the logged item among the candidates."""


@dataclass(frozen=True)
class RewardWeightedConfig(CommonConfig):
    """Wide&Deep or DeepFM ranking models trained by reward-weighted likelihood.

    The loss is -E[(r_1 / mean r_1) log pi(a|s)]: the logged item's likelihood weighted by its
    watch time relative to the training mean, the usual way supervised rankers use the reward.
    """

    model: str = field(default="wide_deep", metadata=choices(*MODELS))
    """``wide_deep`` (Cheng et al., 2016) or ``deepfm`` (Guo et al., 2017)."""

    def validate(self) -> None:
        """Raise ``InvalidArgumentError`` naming the first field out of its range."""
        super().validate()
        if self.model not in MODELS:
            raise InvalidArgumentError(
                f"model: expected one of {', '.join(MODELS)}, got {self.model!r}"
            )


@dataclass(frozen=True)
class RcpoConfig(CriticConfig):
    """Reward Constrained Policy Optimisation (Tessler et al., ICLR 2019).

    The actor maximises the advantage of r_1 + sum_i sign_i mu_i r_i, the Lagrangian of the
    constrained problem, and each multiplier mu_i >= 0 follows dual ascent on the constraint
    violation: mu_i <- max(0, mu_i + eta (bound_i - J_i(pi)) sign_i), with J_i the self-normalised
    importance estimate on the batch and bound_i the logged mean.
    """

    multiple_critics: bool = False
    """False: one critic on the scalarised reward (RCPO). True: one critic per response, the
    advantages combined with the multipliers (RCPO with multiple critics)."""
    multiplier_learning_rate: float = 1e-2
    """eta > 0, dual-ascent step of the multipliers per unit of standardised violation."""
    initial_multiplier: float = 0.0
    """mu_i >= 0 at step 0."""


@dataclass(frozen=True)
class ParetoConfig(CriticConfig):
    """Pareto-efficient multi-objective actor (multiple-gradient descent, Sener and Koltun 2018).

    One critic per response; each step combines the per-response actor gradients with the
    min-norm convex weights (Frank-Wolfe on the simplex), a common direction improving all.
    """

    frank_wolfe_iterations: int = 20
    """Iterations of the min-norm solver per step, >= 1."""


@dataclass(frozen=True)
class InteractionActorCriticConfig(TscacConfig):
    """Interaction-AC: the stage-one policy of one interaction alone, without stage two."""

    response: str = "is_click"
    """The interaction response whose stage-one policy is evaluated."""


CONFIG_CLASSES: dict[str, type[CommonConfig]] = {
    "tscac": TscacConfig,
    "behaviour_cloning": BehaviourCloningConfig,
    "wide_deep": RewardWeightedConfig,
    "deepfm": RewardWeightedConfig,
    "rcpo": RcpoConfig,
    "rcpo_multiple_critics": RcpoConfig,
    "pareto": ParetoConfig,
    "interaction_ac": InteractionActorCriticConfig,
}


def config_from_dict(cls: type[CommonConfig], values: dict[str, Any], prefix: str = "") -> Any:
    """Build and validate a ``cls`` from plain values (lists become tuples).

    Args:
        cls: the config dataclass.
        values: field name to value, as read from YAML or JSON; missing fields keep defaults.
        prefix: the dotted section of ``values`` in the settings (``common``), named in errors.

    Raises:
        InvalidArgumentError: an unknown field, a value of the wrong type, or one out of its
            range. The message names the key, the expected values and the value received.
    """
    checked = check_fields(cls, values, prefix)
    try:
        config = cls(**checked)
        config.validate()
    except InvalidArgumentError as error:
        if not prefix:
            raise
        raise InvalidArgumentError(f"{prefix}.{error}") from None
    return config


# Fields whose values are response names of the dataset.
_NAME_FIELDS = ("main_response", "lower_is_better", "interaction_responses", "response")


def check_sections(
    values: dict[str, Any],
    methods: tuple[str, ...],
    reward_names: list[str] | None = None,
) -> None:
    """Check the ``common`` and ``methods`` sections of the tscac settings field by field.

    Each section is checked on its own, so an error names the key as written
    (``common.steps``, ``methods.tscac.lambdas``). Given ``reward_names``, the dataset's
    response names, every field that names responses is checked against them too.

    Args:
        values: the settings, with the optional sections ``common`` and ``methods``.
        methods: the methods the run trains; ``common`` is checked against their configs.
        reward_names: the response names of the prepared dataset, or None to skip that check.

    Raises:
        InvalidArgumentError: an unknown field, a value of the wrong type, out of its range,
            or a response name the dataset lacks.
    """
    common = dict(values.get("common") or {})
    per_method = dict(values.get("methods") or {})
    for name in sorted(set(methods) | {"behaviour_cloning"}):
        cls = CONFIG_CLASSES[name]
        fields = {f.name for f in dataclasses.fields(cls)}
        shared = {key: value for key, value in common.items() if key in fields}
        own = dict(per_method.get(name) or {})
        config_from_dict(cls, shared, "common")
        config_from_dict(cls, own, f"methods.{name}")
        if reward_names is not None:
            merged = config_from_dict(cls, {**shared, **own})
            for key in _NAME_FIELDS:
                prefix = f"methods.{name}" if key in own else "common"
                _check_names(merged, key, prefix, reward_names)
            _check_lambdas(
                merged, f"methods.{name}" if "lambdas" in own else "common", reward_names
            )


def _check_names(config: Any, key: str, prefix: str, reward_names: list[str]) -> None:
    value = getattr(config, key, None)
    if value is None:
        return
    names = (value,) if isinstance(value, str) else value
    for name in names:
        if name not in reward_names:
            raise InvalidArgumentError(
                f"{prefix}.{key}: the dataset has no response {name!r}; set {prefix}.{key} "
                f"to one of [{', '.join(reward_names)}]"
            )


def _check_lambdas(config: Any, prefix: str, reward_names: list[str]) -> None:
    """Check that per-response lambdas name responses and cover every constrained one."""
    lambdas = getattr(config, "lambdas", None)
    if not isinstance(lambdas, dict):
        return
    for name in lambdas:
        if name not in reward_names:
            raise InvalidArgumentError(
                f"{prefix}.lambdas: the dataset has no response {name!r}; use keys among "
                f"[{', '.join(reward_names)}]"
            )
    constrained = config.interaction_responses or tuple(
        name for name in reward_names if name != config.main_response
    )
    missing = [name for name in constrained if name not in lambdas]
    if missing:
        raise InvalidArgumentError(
            f"{prefix}.lambdas: no value for the constrained responses {missing}; give one "
            "number for all, or one per response"
        )
