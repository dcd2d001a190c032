"""Off-policy value estimates of a ranking policy, computed by ``recrl.evaluation.off_policy``.

This module only adapts the runner's arrays (log-probabilities, episode ids) to the shared
estimators and collects their values. It contains no estimator of its own.

With target pi, behaviour pi_beta and the logged (s_t, a_t, r_t), the per-step weight is
w_t = pi(a_t|s_t) / pi_beta(a_t|s_t). Per step (the offline table of Cai et al., WWW 2023):

- IPS: mean_t w_t r_t, unbiased when pi_beta is exact, high variance.
- SNIPS: sum_t w_t r_t / sum_t w_t, self-normalised, biased but far steadier.
- NCIS: SNIPS with w_t capped at ``cap`` (normalised capped importance sampling, cap 10 in the
  paper), the estimate reported in the tables.

Per trajectory, per-decision IS weights the reward of step t of an episode by
gamma^t prod_{u<=t} min(w_u, cap). The estimate is the sum of these terms over all episodes
divided by the sum of gamma^t over the same steps (``per_step=True`` of
``recrl.evaluation.per_decision_is``), a per-step rate comparable with the logged mean.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from recrl.errors import InvalidArgumentError, ShapeError
from recrl.evaluation.off_policy import OffPolicyEstimate, ips, ncis, per_decision_is, snips

__all__ = ["ESTIMATORS", "estimate_policy_values"]

ESTIMATORS = ("ips", "snips", "ncis", "per_decision")


def estimate_policy_values(
    target_log_probabilities: npt.NDArray[np.floating],
    behaviour_log_probabilities: npt.NDArray[np.floating],
    rewards: npt.NDArray[np.floating],
    episode_ids: npt.NDArray[np.integer],
    *,
    cap: float = 10.0,
    discount: float = 1.0,
) -> dict[str, npt.NDArray[np.float64]]:
    """Estimate the per-step value of every response under the target policy.

    Args:
        target_log_probabilities: float [N], log pi(a_t|s_t) of the logged actions.
        behaviour_log_probabilities: float [N], log pi_beta(a_t|s_t).
        rewards: float [N, K].
        episode_ids: int [N], equal within an episode, rows of an episode in time order.
        cap: upper cap (> 0) of each weight for NCIS and per-decision IS.
        discount: gamma in (0, 1] of the per-decision estimate.

    Returns:
        ``ips``, ``snips``, ``ncis``, ``per_decision``: float64 [K] each, and ``logged``, the
        mean reward [K] of the log.
    """
    target = np.asarray(target_log_probabilities, dtype=np.float64)
    behaviour = np.asarray(behaviour_log_probabilities, dtype=np.float64)
    reward_matrix = np.asarray(rewards, dtype=np.float64)
    episodes = np.asarray(episode_ids)
    rows = target.shape[0]
    if target.ndim != 1 or behaviour.shape != (rows,) or episodes.shape != (rows,):
        raise ShapeError(
            f"target, behaviour log-probabilities and episode_ids: expected shape ({rows},), got "
            f"{target.shape}, {behaviour.shape} and {episodes.shape}"
        )
    if reward_matrix.ndim != 2 or reward_matrix.shape[0] != rows:
        raise ShapeError(f"rewards: expected shape ({rows}, K), got {reward_matrix.shape}")
    if rows == 0:
        raise InvalidArgumentError("rewards: expected at least one logged row, got 0")
    if cap <= 0 or not 0 < discount <= 1:
        raise InvalidArgumentError(
            f"cap must be > 0 and discount in (0, 1], got cap={cap}, discount={discount}"
        )

    # exp of a log-probability <= 0 is at most 1; the minimum only guards against rounding.
    target_probabilities = np.minimum(np.exp(target), 1.0)
    behaviour_probabilities = np.minimum(np.exp(behaviour), 1.0)
    arguments = (target_probabilities, behaviour_probabilities, reward_matrix)
    return {
        "ips": _values(ips(*arguments)),
        "snips": _values(snips(*arguments)),
        "ncis": _values(ncis(*arguments, cap=cap)),
        "per_decision": _values(
            per_decision_is(
                *arguments, _episode_starts(episodes), gamma=discount, cap=cap, per_step=True
            )
        ),
        "logged": reward_matrix.mean(axis=0),
    }


def _values(estimates: dict[str, OffPolicyEstimate]) -> npt.NDArray[np.float64]:
    """Return the estimates [K] in response order (the dict keeps the reward columns' order)."""
    return np.array([estimate.estimate for estimate in estimates.values()], dtype=np.float64)


def _episode_starts(episodes: npt.NDArray[np.integer]) -> npt.NDArray[np.int64]:
    """Turn per-row episode ids [N] into CSR offsets [E + 1], rejecting split episodes."""
    starts = np.flatnonzero(np.r_[True, episodes[1:] != episodes[:-1]])
    if len(np.unique(episodes)) != len(starts):
        raise InvalidArgumentError("episode_ids: rows of each episode must be contiguous")
    offsets: npt.NDArray[np.int64] = np.r_[starts, len(episodes)].astype(np.int64)
    return offsets
