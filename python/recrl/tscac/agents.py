"""TSCAC and the baselines of its offline comparison, each with ``update(batch) -> dict``.

Every method is a policy over a candidate set: N global candidates plus the logged item (see
``recrl.tscac.data.Batch``). Critics are TD-trained action-value ensembles (SARSA targets on the
logged next item, one discount per response, soft-updated target networks). Rewards reach the
critics divided by their training standard deviation, so advantages of different responses
share one unit.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from typing import Any, ClassVar

import torch
from torch import nn

from recrl import distributed
from recrl.errors import InvalidArgumentError
from recrl.nets import (
    CategoricalActor,
    CategoricalActorEnsemble,
    GaussianActor,
    GaussianActorEnsemble,
    gaussian_candidate_log_probabilities,
    gaussian_log_density,
)
from recrl.tscac.closed_form import (
    categorical_target_log_probabilities,
    gaussian_product_mean,
    tilted_sample_weights,
)
from recrl.tscac.config import (
    BehaviourCloningConfig,
    CommonConfig,
    CriticConfig,
    InteractionActorCriticConfig,
    ParetoConfig,
    RcpoConfig,
    RewardWeightedConfig,
    TscacConfig,
)
from recrl.tscac.data import Batch, ProblemSpec
from recrl.tscac.models import (
    CriticEnsemble,
    DeepFmRanker,
    WideDeepRanker,
    actor_log_probabilities,
    item_action_vectors,
    make_actor,
    make_actor_ensemble,
    make_encoder,
    make_gaussian_ensemble,
)

__all__ = [
    "METHODS",
    "BehaviourCloning",
    "InteractionActorCritic",
    "Method",
    "Pareto",
    "Rcpo",
    "RewardWeighted",
    "Tscac",
    "build_method",
]

logger = logging.getLogger(__name__)


def _logged(values: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Pick values [..., B, C] at the logged positions actions [B], giving [..., B]."""
    index = actions.view(*([1] * (values.dim() - 2)), -1, 1).expand(*values.shape[:-1], 1)
    return values.gather(-1, index).squeeze(-1)


def _minimise(loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
    """Take one optimizer step on ``loss``, with gradients averaged over ranks under torchrun."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()  # type: ignore[no-untyped-call]
    distributed.average_gradients(p for group in optimizer.param_groups for p in group["params"])
    optimizer.step()


def _adam(parameters: Any, learning_rate: float) -> torch.optim.Adam:
    """Return Adam over ``parameters`` with the fused kernel (one pass per parameter tensor)."""
    return torch.optim.Adam(parameters, lr=learning_rate, fused=True)


def _soft_update(target: nn.Module, online: nn.Module, rate: float) -> None:
    with torch.no_grad():
        torch._foreach_lerp_(list(target.parameters()), list(online.parameters()), rate)


class Method(nn.Module):
    """A trainable ranking policy over candidate sets.

    Subclasses set ``name`` and ``stages`` and implement ``update`` and
    ``policy_log_probabilities``; the runner calls ``set_stage`` before each stage.
    """

    name: ClassVar[str] = ""
    stages: ClassVar[tuple[str, ...]] = ("train",)
    candidate_items: torch.Tensor

    def __init__(self, spec: ProblemSpec, config: CommonConfig) -> None:
        super().__init__()
        config.validate()
        self.spec = spec
        self.config = config
        self.stage = self.stages[0]
        self.method_name = self.name
        self.main = spec.response_index(config.main_response)
        self.signs_by_response = [
            -1.0 if name in config.lower_is_better else 1.0 for name in spec.reward_names
        ]
        self.register_buffer(
            "candidate_items",
            torch.tensor(spec.candidate_items, dtype=torch.int64),
            persistent=False,
        )

    def shared_count(self, candidates: torch.Tensor) -> int:
        """Return how many leading columns of candidates [B, C] hold the global candidates.

        Batches of ``recrl.tscac.data.Transitions`` start every row with the N global candidates,
        so scoring can use one product for them (``recrl.nets.score_candidates``). Other layouts
        get 0 and are scored row by row.
        """
        count = int(self.candidate_items.shape[0])
        if count == 0 or candidates.dim() != 2 or candidates.shape[1] < count:
            return 0
        return count if bool((candidates[:, :count] == self.candidate_items).all()) else 0

    def evaluates(self, stage: str) -> bool:
        """Return whether ``stage`` trains the final policy, the one worth evaluating there.

        TSCAC's stage one trains the interaction policies only.
        """
        return True

    def set_stage(self, stage: str) -> None:
        """Switch to training stage ``stage`` (one of ``stages``)."""
        if stage not in self.stages:
            raise InvalidArgumentError(f"stage: expected one of {self.stages}, got {stage!r}")
        self.stage = stage

    def policy_log_probabilities(
        self,
        state: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        candidates: torch.Tensor,
        mask: torch.Tensor,
    ) -> torch.Tensor:
        """Return log pi(j|s) [B, C] of the method's final policy, its ``actor`` by default."""
        actor = getattr(self, "actor", None)
        if not isinstance(actor, CategoricalActor):
            raise NotImplementedError(f"{type(self).__name__} has no actor to score candidates")
        return actor_log_probabilities(
            actor, state, candidates, mask, self.shared_count(candidates)
        )

    def update(self, batch: Batch) -> dict[str, float]:
        """Take one gradient step on ``batch`` and return named scalar diagnostics."""
        raise NotImplementedError


class BehaviourCloning(Method):
    """Maximise log pi(a|s) of the logged item."""

    name = "behaviour_cloning"

    def __init__(self, spec: ProblemSpec, config: BehaviourCloningConfig) -> None:
        super().__init__(spec, config)
        self.actor = make_actor(spec, config)
        self.actor_optimizer = _adam(self.actor.parameters(), config.actor_learning_rate)

    def update(self, batch: Batch) -> dict[str, float]:
        """Take one likelihood step."""
        log_probabilities = self.policy_log_probabilities(
            batch.state(), batch.candidates, batch.mask
        )
        loss = -_logged(log_probabilities, batch.actions).mean()
        _minimise(loss, self.actor_optimizer)
        return {"loss/actor": float(loss.detach())}


class RewardWeighted(Method):
    """Wide&Deep or DeepFM trained by watch-time-weighted likelihood of the logged item."""

    name = "reward_weighted"

    def __init__(self, spec: ProblemSpec, config: RewardWeightedConfig) -> None:
        super().__init__(spec, config)
        ranker = WideDeepRanker if config.model == "wide_deep" else DeepFmRanker
        self.ranker = ranker(spec, config)
        self.optimizer = _adam(self.ranker.parameters(), config.actor_learning_rate)
        self.reward_mean = max(spec.reward_means[self.main], 1e-8)

    def policy_log_probabilities(
        self,
        state: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        candidates: torch.Tensor,
        mask: torch.Tensor,
    ) -> torch.Tensor:
        """Return log pi(j|s) [B, C] of the ranker's softmax."""
        return self.ranker.log_probabilities(state, candidates, mask)

    def update(self, batch: Batch) -> dict[str, float]:
        """Take one reward-weighted likelihood step."""
        weights = batch.raw_rewards[:, self.main] / self.reward_mean
        log_probabilities = self.policy_log_probabilities(
            batch.state(), batch.candidates, batch.mask
        )
        loss = -(weights * _logged(log_probabilities, batch.actions)).mean()
        _minimise(loss, self.optimizer)
        return {"loss/actor": float(loss.detach())}


class _CriticMethod(Method):
    """A method with an ensemble of TD-trained critics and soft-updated targets."""

    critics: CriticEnsemble
    target_critics: CriticEnsemble
    discounts: torch.Tensor

    def __init__(
        self,
        spec: ProblemSpec,
        config: CriticConfig,
        discounts: list[float],
        item_embeddings: bool = True,
    ) -> None:
        super().__init__(spec, config)
        self.critics = CriticEnsemble(len(discounts), spec, config, item_embeddings)
        self.target_critics = copy.deepcopy(self.critics)
        self.target_critics.requires_grad_(False)
        self.register_buffer("discounts", torch.tensor(discounts, dtype=torch.float32))
        self.critic_optimizer = _adam(self.critics.parameters(), config.critic_learning_rate)
        self.critic_config = config

    def critic_rewards(self, batch: Batch) -> torch.Tensor:
        """Return the reward of every critic member, float [M, B]."""
        return batch.rewards.T

    def compute_targets(self, batch: Batch) -> torch.Tensor:
        """Return TD targets r + gamma * Q_target(s', a') [M, B] on the logged next item."""
        with torch.no_grad():
            next_items = _logged(batch.next_candidates, batch.next_actions).unsqueeze(1)
            next_values = self.target_critics(*batch.next_state(), next_items)
            bootstrap = next_values.squeeze(-1) * batch.bootstrap
            targets: torch.Tensor = (
                self.critic_rewards(batch) + self.discounts.unsqueeze(1) * bootstrap
            )
            return targets

    def compute_critic_loss(
        self, batch: Batch, targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the summed TD loss of all members and Q [M, B, C] (detached) of candidates."""
        shared = self.shared_count(batch.candidates)
        logged, values = self.critics.logged_and_all(
            batch.state(), batch.candidates, batch.actions, shared
        )
        errors = (logged - targets).pow(2) * batch.valid
        loss = errors.sum(1).sum() / distributed.loss_denominator(batch.valid.sum())
        return loss, values

    def update_critics(self, loss: torch.Tensor) -> None:
        """Take one Adam step of every critic."""
        _minimise(loss, self.critic_optimizer)

    def soft_update(self) -> None:
        """Move the target critics toward the online ones."""
        _soft_update(self.target_critics, self.critics, self.critic_config.target_update_rate)


def _advantages(
    values: torch.Tensor, log_probabilities: torch.Tensor, actions: torch.Tensor
) -> torch.Tensor:
    """Return A(s, a) = Q(s, a) - E_{j ~ pi} Q(s, j) at the logged item, [..., B].

    Args:
        values: float [..., B, C], Q of every candidate (detached).
        log_probabilities: float [..., B, C], the policy defining the baseline.
        actions: int64 [B].
    """
    probabilities = log_probabilities.detach().exp()
    baseline = (probabilities * values).sum(-1)
    return _logged(values, actions) - baseline


class Tscac(_CriticMethod):
    """Two-Stage Constrained Actor-Critic (Cai et al., WWW 2023, arXiv 2302.01680).

    Stage one trains one critic per response (the K members of one ensemble) and one actor per
    interaction i by advantage-weighted likelihood with an offline correction. Stage two keeps
    training the critics and fits the main actor to the closed-form target
    pi* ∝ prod_i pi_i^(lambda_i / Lambda) exp(A_1 / Lambda) by minimising KL(pi* || pi_theta).

    With ``policy = "categorical"`` every policy is a softmax over the candidates and the KL is
    computed exactly over them. With ``policy = "gaussian"`` every policy is N(mu(s), sigma^2 I)
    over action vectors, item j being the fixed vector phi(j) (``action_vectors``), and the
    critics are Q_m(s, a) = u_m(s) + <g_m(s), a>; stage two samples from the product Gaussian
    N(sum_i w_i mu_i, sigma^2 I) and tilts the samples by self-normalised exp(A_1 / Lambda).
    """

    name = "tscac"
    stages: ClassVar[tuple[str, ...]] = ("stage_one", "stage_two")
    signs: torch.Tensor
    lambdas: torch.Tensor
    action_vectors: torch.Tensor
    actor: CategoricalActor | GaussianActor
    stage_one_actors: CategoricalActorEnsemble | GaussianActorEnsemble

    def evaluates(self, stage: str) -> bool:
        """Stage one leaves the stage-two actor, the final policy, untouched."""
        return stage != "stage_one"

    def __init__(self, spec: ProblemSpec, config: TscacConfig) -> None:
        self.gaussian = config.policy == "gaussian"
        super().__init__(
            spec,
            config,
            [config.discount(name) for name in spec.reward_names],
            item_embeddings=not self.gaussian,
        )
        self.tscac_config = config
        interactions = config.interaction_responses or tuple(
            name for name in spec.reward_names if name != config.main_response
        )
        self.interactions = interactions
        self.interaction_members = [spec.response_index(name) for name in interactions]
        signs = [self.signs_by_response[m] for m in self.interaction_members]
        self.register_buffer("signs", torch.tensor(signs, dtype=torch.float32))
        lambdas = [config.lambda_of(name) for name in interactions]
        self.register_buffer("lambdas", torch.tensor(lambdas, dtype=torch.float32))
        # Members 0 .. I-1 are the interaction actors, member I the behaviour-cloning actor
        # pi_beta of the importance ratio; all I + 1 run as one ensemble.
        members = len(interactions) + 1
        if self.gaussian:
            vectors = item_action_vectors(spec.item_vocabulary, config.action_dim)
            self.register_buffer("action_vectors", vectors)
            self.stage_one_actors = make_gaussian_ensemble(members, spec, config, config.sigma)
            self.actor = GaussianActor(
                make_encoder(spec, config), config.hidden_dims, config.action_dim, config.sigma
            )
        else:
            self.stage_one_actors = make_actor_ensemble(members, spec, config)
            self.actor = make_actor(spec, config)
        self.stage_one_optimizer = _adam(
            self.stage_one_actors.parameters(), config.actor_learning_rate
        )
        self.actor_optimizer = _adam(self.actor.parameters(), config.actor_learning_rate)

    def stage_one_log_probabilities(
        self,
        state: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        candidates: torch.Tensor,
        mask: torch.Tensor,
    ) -> torch.Tensor:
        """Return log pi_i(j|s) [I + 1, B, C]: the I interaction actors, then pi_beta."""
        actors = self.stage_one_actors
        if isinstance(actors, GaussianActorEnsemble):
            return gaussian_candidate_log_probabilities(
                actors.means(*state), self.action_vectors, candidates, mask, actors.sigma
            )
        return actors.masked_log_probabilities(
            actors.preferences(*state), candidates, mask, self.shared_count(candidates)
        )

    def policy_log_probabilities(
        self,
        state: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        candidates: torch.Tensor,
        mask: torch.Tensor,
    ) -> torch.Tensor:
        """Return log pi(j|s) [B, C] of the stage-two actor.

        A Gaussian actor scores item j by its density at the item's action vector phi(j),
        normalised over the row's candidates (``gaussian_candidate_log_probabilities``).
        """
        if isinstance(self.actor, GaussianActor):
            return gaussian_candidate_log_probabilities(
                self.actor.means(*state), self.action_vectors, candidates, mask, self.actor.sigma
            )
        return super().policy_log_probabilities(state, candidates, mask)

    def compute_targets(self, batch: Batch) -> torch.Tensor:
        """Return TD targets [M, B]; over action vectors for the Gaussian family."""
        if not self.gaussian:
            return super().compute_targets(batch)
        with torch.no_grad():
            next_vectors = self.action_vectors[_logged(batch.next_candidates, batch.next_actions)]
            next_values, _ = self.target_critics.action_values(batch.next_state(), next_vectors)
            targets: torch.Tensor = (
                self.critic_rewards(batch)
                + self.discounts.unsqueeze(1) * next_values * batch.bootstrap
            )
            return targets

    def compute_critic_loss(
        self, batch: Batch, targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the summed TD loss and what the actor losses need, detached.

        The second value is Q [M, B, C] of the candidates for the categorical family, and the
        slopes g_m(s) [M, B, D] of the critics Q_m(s, a) = u_m(s) + <g_m(s), a> for the Gaussian
        family.
        """
        if not self.gaussian:
            return super().compute_critic_loss(batch, targets)
        vectors = self.action_vectors[_logged(batch.candidates, batch.actions)]
        logged, slopes = self.critics.action_values(batch.state(), vectors)
        errors = (logged - targets).pow(2) * batch.valid
        loss = errors.sum(1).sum() / distributed.loss_denominator(batch.valid.sum())
        return loss, slopes.detach()

    def interaction_log_probabilities(
        self,
        state: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        candidates: torch.Tensor,
        mask: torch.Tensor,
    ) -> torch.Tensor:
        """Return log pi_i(j|s) [I, B, C] of the stage-one interaction actors."""
        return self.stage_one_log_probabilities(state, candidates, mask)[: len(self.interactions)]

    def update(self, batch: Batch) -> dict[str, float]:
        """Take one step of the current stage."""
        # Critic step: every response's critic in one batched ensemble.
        targets = self.compute_targets(batch)
        critic_loss, values = self.compute_critic_loss(batch, targets)
        self.update_critics(critic_loss)

        # Actor step: the stage-one actors or the stage-two actor.
        if self.stage == "stage_one":
            actor_loss, diagnostics = self.compute_stage_one_actor_loss(batch, values)
            self.update_actor(actor_loss, self.stage_one_optimizer)
        else:
            actor_loss, diagnostics = self.compute_stage_two_actor_loss(batch, values)
            self.update_actor(actor_loss, self.actor_optimizer)

        # Target step.
        self.soft_update()
        return {
            "loss/critic": float(critic_loss.detach()),
            "loss/actor": float(actor_loss.detach()),
            **diagnostics,
        }

    def compute_stage_one_actor_loss(
        self, batch: Batch, values: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Return the summed advantage-weighted likelihood loss of the interaction actors.

        Actor i minimises -E[w * sign_i * A_i(s, a) log pi_i(a|s)] (Eq. (5) of Cai et al.),
        with w = 1 plus a behaviour-cloning term, or w = min(pi_i / pi_beta, clip). For the
        Gaussian family log pi_i is the density at the logged item's vector a = phi(a_t) and
        A_i(s, a) = <g_i(s), a - mu_i(s)>, exact for a critic linear in a. There the weight of
        each row, sign_i A_i + alpha or w sign_i A_i, is clipped at 0.
        """
        actors = self.stage_one_actors
        if isinstance(actors, GaussianActorEnsemble):
            vectors = self.action_vectors[_logged(batch.candidates, batch.actions)]
            means = actors.means(*batch.state())
            logged_every = actors.log_probabilities(means, vectors)
            own = means[: len(self.interactions)].detach()
            slopes = values[self.interaction_members]
            advantages = (slopes * (vectors - own)).sum(-1) * self.signs.unsqueeze(1)
        else:
            every = self.stage_one_log_probabilities(batch.state(), batch.candidates, batch.mask)
            advantages = _advantages(
                values[self.interaction_members], every[: len(self.interactions)], batch.actions
            ) * self.signs.unsqueeze(1)
            logged_every = _logged(every, batch.actions)
        logged, behaviour = logged_every[:-1], logged_every[-1]
        behaviour_loss = -behaviour.mean()
        config = self.tscac_config
        if config.offline_correction == "importance_ratio":
            ratios = (logged.detach() - behaviour.detach()).exp().clamp(max=config.importance_clip)
            weights = ratios * advantages
        else:
            weights = advantages + config.behaviour_cloning_weight
        if self.gaussian:
            # A negative weight on a Gaussian log-density has no minimum: it pushes the mean
            # away from the logged vector without bound, where a softmax saturates. Clipping
            # the weight at 0 keeps each Gaussian loss a weighted regression toward logged
            # vectors.
            weights = weights.clamp(min=0.0)
        loss = -(weights * logged).mean(1).sum()
        diagnostics = {"charts/advantage_abs": float(advantages.abs().mean())}
        return loss + behaviour_loss, diagnostics

    def compute_stage_two_actor_loss(
        self, batch: Batch, values: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Return KL(pi* || pi_theta), averaged over the batch (Eq. (9) of Cai et al.)."""
        if self.gaussian:
            return self._gaussian_stage_two_loss(batch, values)
        state = batch.state()
        with torch.no_grad():
            stage_one = self.interaction_log_probabilities(state, batch.candidates, batch.mask)
            target = categorical_target_log_probabilities(
                stage_one, values[self.main], self.lambdas, batch.mask
            )
        log_probabilities = self.policy_log_probabilities(state, batch.candidates, batch.mask)
        terms = target.exp() * (target - log_probabilities)
        kl = torch.where(batch.mask, terms, torch.zeros_like(terms)).sum(-1)
        return kl.mean(), {
            "charts/target_entropy": float(
                -(target.exp() * target.nan_to_num(neginf=0.0)).sum(-1).mean()
            )
        }

    def _gaussian_stage_two_loss(
        self, batch: Batch, slopes: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Return the cross-entropy -E_{pi*}[log pi_theta(a|s)], the KL up to pi*'s entropy.

        The stage-one product prod_i N(mu_i, sigma^2 I)^(lambda_i / Lambda) is N(m, sigma^2 I)
        with m = sum_i w_i mu_i (``gaussian_product_mean``). S actions are drawn from it and
        weighted by softmax_k(A_1(s, a_k) / Lambda) (``tilted_sample_weights``), a
        self-normalised estimate of expectations under pi*. A_1(s, a) = <g_1(s), a - mu>; the
        baseline term is the same for every sample of a state and cancels in the softmax.
        """
        actors = self.stage_one_actors
        actor = self.actor
        if not isinstance(actors, GaussianActorEnsemble) or not isinstance(actor, GaussianActor):
            raise TypeError("the Gaussian stage two needs Gaussian actors")
        state = batch.state()
        config = self.tscac_config
        with torch.no_grad():
            means = actors.means(*state)[: len(self.interactions)]
            centre = gaussian_product_mean(means, self.lambdas)
            noise = torch.randn(
                (centre.shape[0], config.action_samples, centre.shape[1]),
                device=centre.device,
                dtype=centre.dtype,
            )
            samples = centre.unsqueeze(1) + config.sigma * noise
            tilt = (samples * slopes[self.main].unsqueeze(1)).sum(-1)
            weights = tilted_sample_weights(tilt, float(self.lambdas.sum()))
        log_densities = gaussian_log_density(actor.means(*state).unsqueeze(1), samples, actor.sigma)
        loss = -(weights * log_densities).sum(-1).mean()
        effective = 1.0 / weights.pow(2).sum(-1)
        return loss, {"charts/effective_samples": float(effective.mean())}

    def update_actor(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """Take one Adam step of the actors ``optimizer`` holds."""
        _minimise(loss, optimizer)


class InteractionActorCritic(Tscac):
    """Interaction-AC: the stage-one policy of a single interaction, without stage two."""

    name = "interaction_ac"
    stages = ("stage_one",)

    def evaluates(self, stage: str) -> bool:
        """Interaction-AC's policy is a stage-one policy, so stage one is evaluated."""
        return True

    def __init__(self, spec: ProblemSpec, config: InteractionActorCriticConfig) -> None:
        super().__init__(spec, config)
        if config.response not in self.interactions:
            raise InvalidArgumentError(
                f"response: expected one of {list(self.interactions)}, got {config.response!r}"
            )
        self.selected = self.interactions.index(config.response)

    def policy_log_probabilities(
        self,
        state: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        candidates: torch.Tensor,
        mask: torch.Tensor,
    ) -> torch.Tensor:
        """Return log pi_i(j|s) [B, C] of the selected interaction's stage-one actor."""
        return self.interaction_log_probabilities(state, candidates, mask)[self.selected]

    def selected_actor(self) -> CategoricalActor | GaussianActor:
        """Return the selected interaction's stage-one actor as a separate module."""
        return self.stage_one_actors.member(self.selected)


class Rcpo(_CriticMethod):
    """Reward Constrained Policy Optimisation with one critic, or with one per response."""

    name = "rcpo"
    signs: torch.Tensor
    multipliers: torch.Tensor

    def __init__(self, spec: ProblemSpec, config: RcpoConfig) -> None:
        members = spec.reward_names if config.multiple_critics else (config.main_response,)
        super().__init__(spec, config, [config.discount(name) for name in members])
        self.rcpo_config = config
        self.interaction_members = [
            m for m, name in enumerate(spec.reward_names) if name != config.main_response
        ]
        signs = [self.signs_by_response[m] for m in self.interaction_members]
        self.register_buffer("signs", torch.tensor(signs, dtype=torch.float32))
        self.register_buffer("multipliers", torch.full((len(signs),), config.initial_multiplier))
        self.actor = make_actor(spec, config)
        self.behaviour = make_actor(spec, config)
        parameters = [*self.actor.parameters(), *self.behaviour.parameters()]
        self.actor_optimizer = _adam(parameters, config.actor_learning_rate)

    def critic_rewards(self, batch: Batch) -> torch.Tensor:
        """Return the per-response rewards [K, B], or the scalarised reward [1, B]."""
        if self.rcpo_config.multiple_critics:
            return batch.rewards.T
        penalties = batch.rewards[:, self.interaction_members] @ (self.signs * self.multipliers)
        return (batch.rewards[:, self.main] + penalties).unsqueeze(0)

    def update(self, batch: Batch) -> dict[str, float]:
        """Take one critic, actor and multiplier step."""
        # Critic step.
        targets = self.compute_targets(batch)
        critic_loss, values = self.compute_critic_loss(batch, targets)
        self.update_critics(critic_loss)

        # Actor step on the Lagrangian advantage.
        actor_loss, logged, behaviour = self.compute_actor_loss(batch, values)
        _minimise(actor_loss, self.actor_optimizer)

        # Multiplier step (dual ascent) and target step.
        self.update_multipliers(batch, logged.detach(), behaviour.detach())
        self.soft_update()
        diagnostics = {f"charts/multiplier_{i}": float(m) for i, m in enumerate(self.multipliers)}
        return {
            "loss/critic": float(critic_loss.detach()),
            "loss/actor": float(actor_loss.detach()),
            **diagnostics,
        }

    def compute_actor_loss(
        self, batch: Batch, values: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return the actor loss and log pi(a|s), log pi_beta(a|s) [B] of the logged items."""
        state = batch.state()
        log_probabilities = self.policy_log_probabilities(state, batch.candidates, batch.mask)
        advantages = _advantages(values, log_probabilities, batch.actions)
        if self.rcpo_config.multiple_critics:
            weights = self.signs * self.multipliers
            advantage = advantages[self.main] + weights @ advantages[self.interaction_members]
        else:
            advantage = advantages[0]
        logged = _logged(log_probabilities, batch.actions)
        shared = self.shared_count(batch.candidates)
        behaviour = _logged(
            actor_log_probabilities(self.behaviour, state, batch.candidates, batch.mask, shared),
            batch.actions,
        )
        loss = -(advantage * logged).mean()
        loss = loss - self.rcpo_config.behaviour_cloning_weight * logged.mean() - behaviour.mean()
        return loss, logged, behaviour

    def update_multipliers(
        self, batch: Batch, logged: torch.Tensor, behaviour: torch.Tensor
    ) -> None:
        """Raise mu_i where the batch estimate of response i violates its bound."""
        with torch.no_grad():
            weights = (logged - behaviour).exp()
            rewards = batch.rewards[:, self.interaction_members]
            # Sums over the global batch, so every rank takes the same multiplier step.
            weighted = distributed.sum_over_ranks(weights @ rewards)
            estimates = weighted / distributed.sum_over_ranks(weights.sum()).clamp(min=1e-8)
            count = len(rewards) * distributed.world_size()
            logged_means = distributed.sum_over_ranks(rewards.sum(0)) / count
            violations = self.signs * (logged_means - estimates)
            step = self.rcpo_config.multiplier_learning_rate * violations
            self.multipliers.copy_((self.multipliers + step).clamp(min=0.0))


def min_norm_weights(gram: torch.Tensor, iterations: int) -> torch.Tensor:
    """Return the convex weights alpha [K] minimising |sum_k alpha_k g_k|^2 (Frank-Wolfe).

    Args:
        gram: float [K, K], inner products <g_k, g_l> of the per-objective gradients.
        iterations: Frank-Wolfe steps.
    """
    count = gram.shape[0]
    alpha = torch.full((count,), 1.0 / count, dtype=gram.dtype, device=gram.device)
    for _ in range(iterations):
        gradient = gram @ alpha
        vertex = int(torch.argmin(gradient))
        current = alpha @ gradient
        cross = gradient[vertex]
        corner = gram[vertex, vertex]
        denominator = current - 2 * cross + corner
        if denominator <= 1e-12:
            break
        step = float(((current - cross) / denominator).clamp(0.0, 1.0))
        if step == 0.0:
            break
        alpha = (1 - step) * alpha
        alpha[vertex] += step
    return alpha


class Pareto(_CriticMethod):
    """Pareto-efficient actor: per-response advantage losses combined by min-norm weights."""

    name = "pareto"
    signs: torch.Tensor

    def __init__(self, spec: ProblemSpec, config: ParetoConfig) -> None:
        super().__init__(spec, config, [config.discount(name) for name in spec.reward_names])
        self.pareto_config = config
        self.register_buffer("signs", torch.tensor(self.signs_by_response, dtype=torch.float32))
        self.actor = make_actor(spec, config)
        self.actor_optimizer = _adam(self.actor.parameters(), config.actor_learning_rate)

    def update(self, batch: Batch) -> dict[str, float]:
        """Take one critic step and one min-norm actor step."""
        # Critic step.
        targets = self.compute_targets(batch)
        critic_loss, values = self.compute_critic_loss(batch, targets)
        self.update_critics(critic_loss)

        # Actor step: weights from the gradients of the K objectives, then one combined step.
        log_probabilities = self.policy_log_probabilities(
            batch.state(), batch.candidates, batch.mask
        )
        advantages = _advantages(values, log_probabilities, batch.actions) * self.signs.unsqueeze(1)
        logged = _logged(log_probabilities, batch.actions)
        losses = -(advantages * logged).mean(1)
        weights = self.compute_weights(losses)
        actor_loss = weights @ losses - self.pareto_config.behaviour_cloning_weight * logged.mean()
        _minimise(actor_loss, self.actor_optimizer)

        # Target step.
        self.soft_update()
        diagnostics = {
            f"charts/weight_{name}": float(w) for name, w in zip(self.spec.reward_names, weights)
        }
        return {
            "loss/critic": float(critic_loss.detach()),
            "loss/actor": float(actor_loss.detach()),
            **diagnostics,
        }

    def compute_weights(self, losses: torch.Tensor) -> torch.Tensor:
        """Return the min-norm convex weights [K] of the per-response losses [K]."""
        parameters = [p for p in self.actor.parameters() if p.requires_grad]
        gradients = []
        for loss in losses:
            grads = torch.autograd.grad(loss, parameters, retain_graph=True, allow_unused=True)
            gradients.append(
                torch.cat(
                    [
                        (g if g is not None else torch.zeros_like(p)).flatten()
                        for g, p in zip(grads, parameters)
                    ]
                )
            )
        # The mean over ranks of per-rank gradients of batch means is the global batch's.
        stacked = distributed.sum_over_ranks(torch.stack(gradients)) / distributed.world_size()
        return min_norm_weights(stacked @ stacked.T, self.pareto_config.frank_wolfe_iterations)


METHODS: dict[str, tuple[type[Method], dict[str, Any]]] = {
    "tscac": (Tscac, {}),
    "behaviour_cloning": (BehaviourCloning, {}),
    "wide_deep": (RewardWeighted, {"model": "wide_deep"}),
    "deepfm": (RewardWeighted, {"model": "deepfm"}),
    "rcpo": (Rcpo, {"multiple_critics": False}),
    "rcpo_multiple_critics": (Rcpo, {"multiple_critics": True}),
    "pareto": (Pareto, {}),
    "interaction_ac": (InteractionActorCritic, {}),
}


def build_method(name: str, spec: ProblemSpec, config: CommonConfig) -> Method:
    """Build method ``name`` (a key of ``METHODS``) for ``spec`` with ``config``."""
    if name not in METHODS:
        raise InvalidArgumentError(f"method: expected one of {sorted(METHODS)}, got {name!r}")
    cls, forced = METHODS[name]
    if forced:
        config = dataclasses.replace(config, **forced)
    method = cls(spec, config)
    method.method_name = name
    return method
