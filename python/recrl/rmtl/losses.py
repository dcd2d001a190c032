"""Rewards, TD targets and critic-weighted losses of RMTL.

Liu et al., "Multi-Task Recommendations with Reinforcement Learning", WWW 2023 (arXiv
2302.03328). A session is an MDP whose state s_t is the user-item step t, whose action
a_t = (pCTR, pCTCVR) are the model's predictions, and whose reward per task k is the negative
binary cross-entropy of the prediction against the label.
"""

from __future__ import annotations

import torch

from recrl.errors import InvalidArgumentError, ShapeError

__all__ = [
    "PROBABILITY_EPSILON",
    "binary_cross_entropy",
    "task_rewards",
    "task_weights",
    "td_targets",
    "weighted_task_loss",
]

# p and 1 - p are clipped below at eps before taking logs, so a saturated sigmoid or ESMM
# product gives a large finite loss (-log eps = 16.1) instead of infinity.
PROBABILITY_EPSILON = 1e-7


def _same_shape(name: str, value: torch.Tensor, reference: torch.Tensor) -> None:
    if value.shape != reference.shape:
        raise ShapeError(
            f"{name}: expected shape {tuple(reference.shape)}, got {tuple(value.shape)}"
        )


def binary_cross_entropy(probabilities: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Compute the elementwise BCE -(y log p + (1 - y) log(1 - p)).

    Args:
        probabilities: float [B, K] predictions; p and 1 - p are clipped below at eps.
        labels: float [B, K] in {0, 1}.

    Returns:
        float [B, K], non-negative.
    """
    _same_shape("labels", labels, probabilities)
    log_p = torch.log(probabilities.clamp(min=PROBABILITY_EPSILON))
    log_not_p = torch.log((1.0 - probabilities).clamp(min=PROBABILITY_EPSILON))
    return -(labels * log_p + (1.0 - labels) * log_not_p)


def task_rewards(actions: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Return r_k(s_t, a_t) = -BCE(a_k, y_k) [B, K], the per-task rewards.

    Args:
        actions: float [B, K], predicted probabilities a_t.
        labels: float [B, K], logged labels y_t.
    """
    return -binary_cross_entropy(actions, labels)


def td_targets(
    rewards: torch.Tensor,
    next_q_values: torch.Tensor,
    has_next: torch.Tensor,
    gamma: float,
) -> torch.Tensor:
    """Compute the one-step TD targets y_k = r_k + gamma * Q'_k(s_{t+1}, a_{t+1}).

    The bootstrap term is dropped on the last step of a session, where there is no next
    state (``has_next`` false), so y_k = r_k there.

    Args:
        rewards: float [B, K].
        next_q_values: float [B, K], target-critic values at the next step; ignored where
            ``has_next`` is false (they may hold anything, including NaN).
        has_next: bool [B], whether step t has a successor in its session.
        gamma: discount in [0, 1).
    """
    _same_shape("next_q_values", next_q_values, rewards)
    if has_next.shape != rewards.shape[:1]:
        raise ShapeError(
            f"has_next: expected shape ({rewards.shape[0]},), got {tuple(has_next.shape)}"
        )
    if not 0.0 <= gamma < 1.0:
        raise InvalidArgumentError(f"gamma: expected a value in [0, 1), got {gamma}")
    bootstrap = torch.where(has_next[:, None], next_q_values, torch.zeros_like(next_q_values))
    return rewards + gamma * bootstrap


def task_weights(
    q_values: torch.Tensor,
    labels: torch.Tensor,
    weight_scale: float,
    weighting: str = "rmtl",
) -> torch.Tensor:
    """Return the per-sample, per-task loss weights [B, K], detached from the graph.

    ``rmtl``: omega_k = 1 - lambda * Q_k(s, a_k). Because Q_k <= 0, samples whose
    critic expects a low future reward (a large future loss) get a larger weight.
    ``cw``: a constant weight of 1 (the ablation without critic weights).
    ``wl``: omega_k on samples with y_k = 1 and 1 elsewhere (the weight gated by the label).
    ``nlc``: omega_k = -Q_k (no linear combination with the constant 1 and lambda).

    NOTE: the three ablations carry the names the RMTL paper gives its ablation variants;
    the formulas above are this module's definitions of them.

    Args:
        q_values: float [B, K], critic values at the backbone's current predictions.
        labels: float [B, K] in {0, 1}.
        weight_scale: lambda >= 0.
        weighting: one of ``rmtl``, ``cw``, ``wl``, ``nlc``.
    """
    _same_shape("labels", labels, q_values)
    q_values = q_values.detach()
    if weighting == "rmtl":
        return 1.0 - weight_scale * q_values
    if weighting == "cw":
        return torch.ones_like(q_values)
    if weighting == "wl":
        return torch.where(labels > 0.5, 1.0 - weight_scale * q_values, torch.ones_like(q_values))
    if weighting == "nlc":
        return -q_values
    raise InvalidArgumentError(f"weighting: expected one of rmtl, cw, wl, nlc, got {weighting!r}")


def weighted_task_loss(
    probabilities: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """Return the mean over tasks of the mean omega-weighted BCE, a scalar.

    Args:
        probabilities: float [B, K] predictions.
        labels: float [B, K].
        weights: float [B, K], from :func:`task_weights`.
    """
    _same_shape("weights", weights, probabilities)
    return (weights * binary_cross_entropy(probabilities, labels)).mean(0).mean()
