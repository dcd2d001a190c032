"""Off-policy value estimates of a ranking policy from logged data.

NOTE: this module is the estimator boundary of ``recrl.tscac``, kept apart so that the runner can
move to ``recrl.evaluation.off_policy`` by changing ``estimate_policy_values`` alone. IPS, SNIPS
and NCIS here equal that module's (a test checks it). The per-decision estimate differs: here the
ratios are capped and the result is a per-step rate, there it is the uncapped mean discounted
return per episode.

With target pi, behaviour pi_beta and the logged (s_t, a_t, r_t), the per-step weight is
w_t = pi(a_t|s_t) / pi_beta(a_t|s_t). Per step (the offline table of Cai et al., WWW 2023):

- IPS: mean_t w_t r_t, unbiased when pi_beta is exact, high variance.
- SNIPS: sum_t w_t r_t / sum_t w_t, self-normalised, biased but far steadier.
- NCIS: SNIPS with w_t capped at ``cap`` (normalised capped importance sampling, cap 10 in the
  paper), the estimate reported in the tables.

Per trajectory, per-decision IS weights the reward of step t of an episode by
gamma^t prod_{u<=t} w_u, each w_u capped at ``cap``. The estimate is the sum of these terms over
all episodes divided by the sum of gamma^t over the same steps, a per-step rate comparable with
the logged mean.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from recrl.errors import InvalidArgumentError, ShapeError

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

    weights = np.exp(target - behaviour)
    capped = np.minimum(weights, cap)
    return {
        "ips": (weights @ reward_matrix) / rows,
        "snips": (weights @ reward_matrix) / max(weights.sum(), 1e-300),
        "ncis": (capped @ reward_matrix) / max(capped.sum(), 1e-300),
        "per_decision": _per_decision(capped, reward_matrix, episodes, discount),
        "logged": reward_matrix.mean(axis=0),
    }


def _per_decision(
    weights: npt.NDArray[np.float64],
    rewards: npt.NDArray[np.float64],
    episodes: npt.NDArray[np.integer],
    discount: float,
) -> npt.NDArray[np.float64]:
    starts = np.flatnonzero(np.r_[True, episodes[1:] != episodes[:-1]])
    if len(np.unique(episodes)) != len(starts):
        raise InvalidArgumentError("episode_ids: rows of each episode must be contiguous")
    positions = np.arange(len(weights)) - np.repeat(starts, np.diff(np.r_[starts, len(weights)]))
    log_weights = np.log(np.maximum(weights, 1e-300))
    cumulative = np.exp(_segment_cumsum(log_weights, starts))
    discounts = discount**positions
    total = (discounts * cumulative) @ rewards
    result: npt.NDArray[np.float64] = total / discounts.sum()
    return result


def _segment_cumsum(
    values: npt.NDArray[np.float64], starts: npt.NDArray[np.int64]
) -> npt.NDArray[np.float64]:
    running = np.cumsum(values)
    offsets = np.r_[0.0, running][starts]
    lengths = np.diff(np.r_[starts, len(values)])
    result: npt.NDArray[np.float64] = running - np.repeat(offsets, lengths)
    return result
