"""Frozen configurations of TSCAC and its baselines, one dataclass per algorithm.

Every field states its meaning, its unit or range and, where the paper names it, its symbol in
Cai et al., "Two-Stage Constrained Actor-Critic for Short Video Recommendation", WWW 2023.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

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
    "config_from_dict",
]


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
        checks = {
            "candidates": self.candidates >= 2,
            "embedding_dim": self.embedding_dim >= 1,
            "action_dim": self.action_dim >= 1,
            "temperature": self.temperature > 0,
            "batch_size": self.batch_size >= 1,
            "actor_learning_rate": self.actor_learning_rate > 0,
            "critic_learning_rate": self.critic_learning_rate > 0,
            "steps": self.steps >= 1,
            "evaluation_interval": self.evaluation_interval >= 1,
        }
        for name, valid in checks.items():
            if not valid:
                raise InvalidArgumentError(
                    f"{name}: value {getattr(self, name)!r} is out of range; see the field's "
                    f"documentation in {type(self).__name__}"
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
                raise InvalidArgumentError(
                    f"discounts: gamma of {name} must be in [0, 1), got {gamma}"
                )
        if not 0.0 < self.target_update_rate <= 1.0:
            raise InvalidArgumentError(
                f"target_update_rate: expected a value in (0, 1], got {self.target_update_rate}"
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
    offline_correction: str = "behaviour_cloning"
    """Stage-one correction for learning from logged actions: ``behaviour_cloning`` adds
    ``behaviour_cloning_weight`` times the negative log-likelihood of the logged action;
    ``importance_ratio`` instead weights each step by min(pi_i(a|s) / pi_beta(a|s), clip), with
    pi_beta a behaviour-cloning actor trained alongside on the same batches."""
    importance_clip: float = 10.0
    """Upper clip (> 0) of the per-step ratio pi_i / pi_beta."""
    interaction_responses: tuple[str, ...] = ()
    """Interaction responses constrained in stage two; empty means every response except the
    main one."""
    policy: str = "categorical"
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
            raise InvalidArgumentError(f"lambdas: expected positive values, got {self.lambdas}")
        if self.offline_correction not in ("behaviour_cloning", "importance_ratio"):
            raise InvalidArgumentError(
                "offline_correction: expected 'behaviour_cloning' or 'importance_ratio', got "
                f"{self.offline_correction!r}"
            )
        if self.policy not in ("categorical", "gaussian"):
            raise InvalidArgumentError(
                f"policy: expected 'categorical' or 'gaussian', got {self.policy!r}"
            )
        if self.sigma <= 0 or self.action_samples < 1:
            raise InvalidArgumentError(
                "sigma must be > 0 and action_samples >= 1, got "
                f"{self.sigma} and {self.action_samples}"
            )
        if self.behaviour_cloning_weight < 0 or self.importance_clip <= 0:
            raise InvalidArgumentError(
                "behaviour_cloning_weight must be >= 0 and importance_clip > 0, got "
                f"{self.behaviour_cloning_weight} and {self.importance_clip}"
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

    model: str = "wide_deep"
    """``wide_deep`` (Cheng et al., 2016) or ``deepfm`` (Guo et al., 2017)."""

    def validate(self) -> None:
        """Raise ``InvalidArgumentError`` naming the first field out of its range."""
        super().validate()
        if self.model not in ("wide_deep", "deepfm"):
            raise InvalidArgumentError(
                f"model: expected 'wide_deep' or 'deepfm', got {self.model!r}"
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


def config_from_dict(cls: type[CommonConfig], values: dict[str, Any]) -> Any:
    """Build and validate a ``cls`` from plain values (lists become tuples)."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise InvalidArgumentError(
            f"{cls.__name__}: unknown fields {unknown}; expected some of {sorted(names)}"
        )
    converted: dict[str, Any] = {
        k: tuple(v) if isinstance(v, list) else v for k, v in values.items()
    }
    config = cls(**converted)
    config.validate()
    return config
