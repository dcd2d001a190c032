"""Off-policy estimates of a target policy's mean responses from logged impressions.

Each logged row i has the action a_i that the behaviour policy mu chose, its probability
``mu(a_i | s_i)``, the probability ``pi(a_i | s_i)`` that the target policy gives the same action,
and K responses ``r_i`` (watch time, click, like, ...). The importance ratio is
``w_i = pi(a_i | s_i) / mu(a_i | s_i)``. Every estimator returns one
:class:`OffPolicyEstimate` per response column.

Per step, every impression is one sample and the estimate is a mean response per impression:

- IPS: ``V = mean_i w_i r_i``. Unbiased when mu > 0 wherever pi > 0, with high variance.
- Self-normalised IPS: ``V = sum_i w_i r_i / sum_i w_i``. Biased but consistent, bounded by the
  range of the rewards.
- Normalised capped importance sampling (NCIS): ratios are cut to ``cap`` (10 by default),
  ``c_i = min(w_i, cap)``, then ``V = sum_i c_i r_i / sum_i c_i``.

Per trajectory, episodes are CSR offsets ``episode_starts`` [E + 1], and per-decision
importance sampling weighs the reward of step t by the product of the
ratios of steps 0..t of its episode: ``V = mean_e sum_t gamma^t (prod_{u <= t} w_u) r_t``.
Optionally each ratio is first cut to a cap, and the discounted sum is divided by the summed
discounts ``sum_e sum_t gamma^t`` instead of the episode count, which gives a rate per step
comparable with the per-step estimators.

The effective sample size is ``(sum_i c_i)^2 / sum_i c_i^2`` over the weights c that the
estimator uses, which for per-decision IS are the full products of ratios of the episodes. It
equals the number of samples when all weights are equal.

A behaviour probability of 0 for a logged action makes the ratio infinite and raises
:class:`recrl.errors.InvalidDataError` naming the row, unless ``clip_behaviour=eps`` raises such
probabilities to ``eps``; the estimate then reports how many rows were clipped.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from recrl.errors import InvalidArgumentError, InvalidDataError, ShapeError
from recrl.evaluation.metrics import UndefinedMetricWarning

__all__ = [
    "DEFAULT_CAP",
    "ImportanceWeights",
    "OffPolicyEstimate",
    "importance_weights",
    "ips",
    "ncis",
    "per_decision_is",
    "snips",
    "target_probabilities",
]

logger = logging.getLogger(__name__)

DEFAULT_CAP = 10.0
"""Cap on importance ratios for normalised capped importance sampling."""


@dataclass(frozen=True)
class OffPolicyEstimate:
    """Estimate of the target policy's mean of one response."""

    response: str
    """Name of the response column."""
    estimator: str
    """``"ips"``, ``"snips"``, ``"ncis"`` or ``"per_decision_is"``."""
    estimate: float
    """Estimated mean response per step, or mean discounted return per episode, under pi."""
    logged_mean: float
    """The same quantity under the behaviour policy, read directly from the log."""
    change: float
    """``estimate - logged_mean``."""
    relative_change: float
    """``change / |logged_mean|``; NaN when the logged mean is 0."""
    effective_sample_size: float
    """``(sum c)^2 / sum c^2`` over the weights c that the estimator uses."""
    clipped_rows: int
    """Rows whose behaviour probability was raised to ``clip_behaviour``."""
    capped_rows: int = 0
    """Rows whose ratio was cut to the cap (NCIS, and per-decision IS with a cap)."""


@dataclass(frozen=True)
class ImportanceWeights:
    """Importance ratios of logged actions."""

    ratios: npt.NDArray[np.float64]
    """float64 [N] ``pi(a_i | s_i) / mu(a_i | s_i)``."""
    clipped_rows: int
    """Rows whose behaviour probability was raised to ``clip_behaviour``."""


def target_probabilities(
    policy_probabilities: npt.ArrayLike, actions: npt.ArrayLike
) -> npt.NDArray[np.float64]:
    """Gather the probability that a policy gives each logged action.

    Args:
        policy_probabilities: float [N, C] probability of each of C candidates in row i.
        actions: int [N] index in [0, C) of the logged action of row i.

    Returns:
        float64 [N] ``policy_probabilities[i, actions[i]]``.

    Raises:
        ShapeError: The shapes do not match.
        InvalidDataError: An action outside [0, C), or a gathered probability outside [0, 1]
            or NaN; the message names the row.
    """
    probabilities = np.asarray(policy_probabilities, dtype=np.float64)
    logged = np.asarray(actions)
    if probabilities.ndim != 2:
        raise ShapeError(f"policy_probabilities: expected shape (N, C), got {probabilities.shape}")
    if logged.shape != (probabilities.shape[0],):
        raise ShapeError(f"actions: expected shape ({probabilities.shape[0]},), got {logged.shape}")
    if not np.issubdtype(logged.dtype, np.integer):
        raise InvalidArgumentError(f"actions: expected integer indices, got dtype {logged.dtype}")

    candidates = probabilities.shape[1]
    bad = np.flatnonzero((logged < 0) | (logged >= candidates))
    if bad.size:
        row = int(bad[0])
        raise InvalidDataError(
            f"column actions, row {row}: expected an index in [0, {candidates}), got {logged[row]}"
        )

    gathered: npt.NDArray[np.float64] = probabilities[np.arange(logged.shape[0]), logged]
    _check_probabilities(gathered, "policy_probabilities")
    return gathered


def _check_probabilities(values: npt.NDArray[np.float64], argument: str) -> None:
    bad = np.flatnonzero(~((values >= 0.0) & (values <= 1.0)))
    if bad.size:
        row = int(bad[0])
        raise InvalidDataError(
            f"column {argument}, row {row}: expected a probability in [0, 1], got {values[row]}"
        )


def importance_weights(
    target_probabilities: npt.ArrayLike,
    behaviour_probabilities: npt.ArrayLike,
    *,
    clip_behaviour: float | None = None,
) -> ImportanceWeights:
    """Compute the importance ratios ``pi(a_i | s_i) / mu(a_i | s_i)`` of logged actions.

    Args:
        target_probabilities: float [N] probability of the logged action under the target
            policy.
        behaviour_probabilities: float [N] probability of the logged action under the
            behaviour policy.
        clip_behaviour: If set, behaviour probabilities below it are raised to it, and counted.
            If None, a behaviour probability of 0 raises.

    Returns:
        The ratios and the number of clipped rows.

    Raises:
        ShapeError: The arrays are not 1-D of equal length.
        InvalidArgumentError: ``clip_behaviour`` is outside (0, 1].
        InvalidDataError: A probability outside [0, 1] or NaN, or a behaviour probability of 0
            without ``clip_behaviour``; the message names the row.
    """
    target = np.asarray(target_probabilities, dtype=np.float64)
    behaviour = np.asarray(behaviour_probabilities, dtype=np.float64)
    if target.ndim != 1:
        raise ShapeError(f"target_probabilities: expected shape (N,), got {target.shape}")
    if behaviour.shape != target.shape:
        raise ShapeError(
            f"behaviour_probabilities: expected shape {target.shape}, got {behaviour.shape}"
        )
    _check_probabilities(target, "target_probabilities")
    _check_probabilities(behaviour, "behaviour_probabilities")

    clipped_rows = 0
    if clip_behaviour is not None:
        if not 0.0 < clip_behaviour <= 1.0:
            raise InvalidArgumentError(
                f"clip_behaviour: expected a value in (0, 1], got {clip_behaviour}"
            )
        below = behaviour < clip_behaviour
        clipped_rows = int(below.sum())
        behaviour = np.where(below, clip_behaviour, behaviour)
        if clipped_rows:
            logger.info("raised %d behaviour probabilities to %g", clipped_rows, clip_behaviour)
    else:
        zeros = np.flatnonzero(behaviour == 0.0)
        if zeros.size:
            raise InvalidDataError(
                f"column behaviour_probabilities, row {int(zeros[0])}: the logged action has "
                "behaviour probability 0, so its importance ratio is infinite; fix the behaviour "
                "model or pass clip_behaviour (for example 1e-6) to clip it"
            )

    return ImportanceWeights(ratios=target / behaviour, clipped_rows=clipped_rows)


def _rewards_matrix(
    rewards: npt.ArrayLike, rows: int, response_names: Sequence[str] | None
) -> tuple[npt.NDArray[np.float64], list[str]]:
    matrix = np.asarray(rewards, dtype=np.float64)
    if matrix.ndim == 1:
        matrix = matrix[:, None]
    if matrix.ndim != 2 or matrix.shape[0] != rows:
        raise ShapeError(f"rewards: expected shape ({rows}, K), got {np.shape(rewards)}")
    bad = np.argwhere(~np.isfinite(matrix))
    if bad.size:
        row, column = (int(v) for v in bad[0])
        raise InvalidDataError(
            f"column rewards[:, {column}], row {row}: expected a finite reward, "
            f"got {matrix[row, column]}"
        )

    if response_names is None:
        names = [f"response_{k}" for k in range(matrix.shape[1])]
    else:
        names = list(response_names)
        if len(names) != matrix.shape[1]:
            raise ShapeError(
                f"response_names: expected {matrix.shape[1]} names, one per reward column, "
                f"got {len(names)}"
            )
    return matrix, names


def _effective_sample_size(weights: npt.NDArray[np.float64]) -> float:
    squares = float(np.sum(weights * weights))
    if squares == 0.0:
        return 0.0
    return float(np.sum(weights)) ** 2 / squares


def _estimates(
    estimator: str,
    names: list[str],
    values: npt.NDArray[np.float64],
    logged_means: npt.NDArray[np.float64],
    effective_sample_size: float,
    clipped_rows: int,
    capped_rows: int = 0,
) -> dict[str, OffPolicyEstimate]:
    results = {}
    for name, value, logged in zip(names, values, logged_means):
        change = float(value - logged)
        relative = change / abs(float(logged)) if logged != 0.0 else float("nan")
        results[name] = OffPolicyEstimate(
            response=name,
            estimator=estimator,
            estimate=float(value),
            logged_mean=float(logged),
            change=change,
            relative_change=relative,
            effective_sample_size=effective_sample_size,
            clipped_rows=clipped_rows,
            capped_rows=capped_rows,
        )
    return results


def _normalised(
    estimator: str,
    weights: npt.NDArray[np.float64],
    rewards: npt.NDArray[np.float64],
    names: list[str],
    clipped_rows: int,
    capped_rows: int,
) -> dict[str, OffPolicyEstimate]:
    total = float(weights.sum())
    if total == 0.0:
        warnings.warn(
            f"{estimator}: every importance weight is 0, so the normalised estimate is undefined; "
            "returning NaN",
            UndefinedMetricWarning,
            stacklevel=3,
        )
        values = np.full(rewards.shape[1], np.nan)
    else:
        values = weights @ rewards / total
    return _estimates(
        estimator,
        names,
        values,
        rewards.mean(axis=0),
        _effective_sample_size(weights),
        clipped_rows,
        capped_rows,
    )


def ips(
    target_probabilities: npt.ArrayLike,
    behaviour_probabilities: npt.ArrayLike,
    rewards: npt.ArrayLike,
    response_names: Sequence[str] | None = None,
    *,
    clip_behaviour: float | None = None,
) -> dict[str, OffPolicyEstimate]:
    """Estimate the mean response per step by inverse propensity scoring, ``mean_i w_i r_i``.

    Args:
        target_probabilities: float [N] probability of the logged action under the target.
        behaviour_probabilities: float [N] probability of the logged action under the behaviour.
        rewards: float [N, K] (or [N]) responses of each logged row.
        response_names: K names; ``response_0``, ``response_1``, ... if None.
        clip_behaviour: Raise behaviour probabilities below this value to it (None: reject 0).

    Returns:
        ``{response: OffPolicyEstimate}``.

    Raises:
        ShapeError: The shapes do not match.
        InvalidDataError: A bad probability or reward, naming the row.
    """
    weights = importance_weights(
        target_probabilities, behaviour_probabilities, clip_behaviour=clip_behaviour
    )
    matrix, names = _rewards_matrix(rewards, weights.ratios.shape[0], response_names)
    if matrix.shape[0] == 0:
        raise InvalidArgumentError("rewards: expected at least one row, got 0")
    values = weights.ratios @ matrix / matrix.shape[0]
    return _estimates(
        "ips",
        names,
        values,
        matrix.mean(axis=0),
        _effective_sample_size(weights.ratios),
        weights.clipped_rows,
    )


def snips(
    target_probabilities: npt.ArrayLike,
    behaviour_probabilities: npt.ArrayLike,
    rewards: npt.ArrayLike,
    response_names: Sequence[str] | None = None,
    *,
    clip_behaviour: float | None = None,
) -> dict[str, OffPolicyEstimate]:
    """Estimate the mean response per step by self-normalised IPS, ``sum w r / sum w``.

    Arguments, errors and the return value are those of :func:`ips`. When every weight is 0 the
    estimate is NaN and an :class:`UndefinedMetricWarning` is raised.
    """
    weights = importance_weights(
        target_probabilities, behaviour_probabilities, clip_behaviour=clip_behaviour
    )
    matrix, names = _rewards_matrix(rewards, weights.ratios.shape[0], response_names)
    if matrix.shape[0] == 0:
        raise InvalidArgumentError("rewards: expected at least one row, got 0")
    return _normalised("snips", weights.ratios, matrix, names, weights.clipped_rows, 0)


def ncis(
    target_probabilities: npt.ArrayLike,
    behaviour_probabilities: npt.ArrayLike,
    rewards: npt.ArrayLike,
    response_names: Sequence[str] | None = None,
    *,
    cap: float = DEFAULT_CAP,
    clip_behaviour: float | None = None,
) -> dict[str, OffPolicyEstimate]:
    """Estimate the mean response per step by normalised capped importance sampling.

    ``c_i = min(w_i, cap)`` and ``V = sum_i c_i r_i / sum_i c_i``. Capping trades a bias towards
    the behaviour policy for a bounded variance.

    Args:
        target_probabilities: float [N] probability of the logged action under the target.
        behaviour_probabilities: float [N] probability of the logged action under the behaviour.
        rewards: float [N, K] (or [N]) responses of each logged row.
        response_names: K names; ``response_0``, ``response_1``, ... if None.
        cap: Largest importance ratio kept, > 0.
        clip_behaviour: Raise behaviour probabilities below this value to it (None: reject 0).

    Returns:
        ``{response: OffPolicyEstimate}``, with the number of capped rows.

    Raises:
        InvalidArgumentError: ``cap`` is not positive.
        ShapeError: The shapes do not match.
        InvalidDataError: A bad probability or reward, naming the row.
    """
    if not cap > 0.0:
        raise InvalidArgumentError(f"cap: expected a positive value, got {cap}")
    weights = importance_weights(
        target_probabilities, behaviour_probabilities, clip_behaviour=clip_behaviour
    )
    matrix, names = _rewards_matrix(rewards, weights.ratios.shape[0], response_names)
    if matrix.shape[0] == 0:
        raise InvalidArgumentError("rewards: expected at least one row, got 0")
    capped = np.minimum(weights.ratios, cap)
    capped_rows = int(np.count_nonzero(weights.ratios > cap))
    return _normalised("ncis", capped, matrix, names, weights.clipped_rows, capped_rows)


def _episode_steps(episode_starts: npt.ArrayLike, rows: int) -> npt.NDArray[np.int64]:
    """Check CSR offsets and return the step index within its episode of each row."""
    starts = np.asarray(episode_starts)
    if starts.ndim != 1 or starts.shape[0] < 2 or not np.issubdtype(starts.dtype, np.integer):
        raise ShapeError(
            "episode_starts: expected integer CSR offsets of shape (E + 1,) with E >= 1, "
            f"got dtype {starts.dtype} and shape {starts.shape}"
        )
    if starts[0] != 0 or starts[-1] != rows:
        raise InvalidDataError(
            f"episode_starts: expected to start at 0 and end at the row count {rows}, "
            f"got {starts[0]} and {starts[-1]}"
        )
    lengths = np.diff(starts)
    empty = np.flatnonzero(lengths <= 0)
    if empty.size:
        episode = int(empty[0])
        raise InvalidDataError(
            f"episode_starts: expected increasing offsets, but episode {episode} spans "
            f"rows {starts[episode]}..{starts[episode + 1]}"
        )
    episode_of_row = np.repeat(np.arange(lengths.shape[0]), lengths)
    first_row_of_row: npt.NDArray[np.int64] = starts[:-1].astype(np.int64)[episode_of_row]
    return np.arange(rows, dtype=np.int64) - first_row_of_row


def per_decision_is(
    target_probabilities: npt.ArrayLike,
    behaviour_probabilities: npt.ArrayLike,
    rewards: npt.ArrayLike,
    episode_starts: npt.ArrayLike,
    response_names: Sequence[str] | None = None,
    *,
    gamma: float | Sequence[float] = 1.0,
    clip_behaviour: float | None = None,
    cap: float | None = None,
    per_step: bool = False,
) -> dict[str, OffPolicyEstimate]:
    """Estimate the mean discounted return per episode by per-decision importance sampling.

    ``V = mean_e sum_t gamma^t rho_{e,t} r_{e,t}`` with ``rho_{e,t} = prod_{u <= t} w_{e,u}``,
    the product of the ratios of the episode's steps up to and including t. The logged mean is
    ``mean_e sum_t gamma^t r_{e,t}``. With ``cap``, each ratio is ``min(w_{e,u}, cap)`` before
    the product. With ``per_step``, both sums are divided by ``sum_e sum_t gamma^t`` instead of
    the episode count E: a discount-weighted rate per step, equal to the per-step mean reward
    when gamma is 1 and the target is the behaviour policy.

    Args:
        target_probabilities: float [N] probability of the logged action under the target.
        behaviour_probabilities: float [N] probability of the logged action under the behaviour.
        rewards: float [N, K] (or [N]) responses of each logged row, rows in step order.
        episode_starts: int [E + 1] CSR offsets: episode e is rows
            ``episode_starts[e]:episode_starts[e + 1]``, each non-empty.
        response_names: K names; ``response_0``, ``response_1``, ... if None.
        gamma: Discount in [0, 1], one for all responses or one per response [K].
        clip_behaviour: Raise behaviour probabilities below this value to it (None: reject 0).
        cap: If set (> 0), the largest ratio kept at each step; the estimate counts the capped
            rows.
        per_step: Divide by the summed discounts rather than by the number of episodes.

    Returns:
        ``{response: OffPolicyEstimate}``; the effective sample size is over the episodes'
        full products of ratios.

    Raises:
        InvalidArgumentError: ``gamma`` outside [0, 1], or ``cap`` not positive.
        ShapeError: The shapes do not match.
        InvalidDataError: Bad offsets, probabilities or rewards, naming the row or episode.
    """
    weights = importance_weights(
        target_probabilities, behaviour_probabilities, clip_behaviour=clip_behaviour
    )
    rows = weights.ratios.shape[0]
    matrix, names = _rewards_matrix(rewards, rows, response_names)
    steps = _episode_steps(episode_starts, rows)
    starts = np.asarray(episode_starts, dtype=np.int64)
    discounts = np.asarray(gamma, dtype=np.float64)
    if discounts.ndim == 0:
        discounts = np.full(matrix.shape[1], float(discounts))
    elif discounts.shape != (matrix.shape[1],):
        raise ShapeError(
            f"gamma: expected one value or {matrix.shape[1]} values, one per response, "
            f"got shape {discounts.shape}"
        )
    if not np.all((discounts >= 0.0) & (discounts <= 1.0)):
        raise InvalidArgumentError(f"gamma: expected values in [0, 1], got {gamma}")
    ratios = weights.ratios
    capped_rows = 0
    if cap is not None:
        if not cap > 0.0:
            raise InvalidArgumentError(f"cap: expected a positive value, got {cap}")
        capped_rows = int(np.count_nonzero(ratios > cap))
        ratios = np.minimum(ratios, cap)

    cumulative = _cumulative_ratios(ratios, starts)
    discount_powers = discounts[None, :] ** steps[:, None]
    weighted = _episode_sums(discount_powers * matrix * cumulative[:, None], starts).sum(axis=0)
    logged = _episode_sums(discount_powers * matrix, starts).sum(axis=0)
    # Per episode: divide by E. Per step: divide by the summed discounts of every row, per
    # response because each response may have its own gamma.
    normaliser = discount_powers.sum(axis=0) if per_step else float(starts.shape[0] - 1)
    final_ratios = cumulative[starts[1:] - 1]
    return _estimates(
        "per_decision_is",
        names,
        weighted / normaliser,
        logged / normaliser,
        _effective_sample_size(final_ratios),
        weights.clipped_rows,
        capped_rows,
    )


def _cumulative_ratios(
    ratios: npt.NDArray[np.float64], starts: npt.NDArray[np.int64]
) -> npt.NDArray[np.float64]:
    """Return the product of the ratios of each row and the earlier rows of its episode."""
    lengths = np.diff(starts)
    longest_first = np.argsort(-lengths, kind="stable")
    descending_lengths = lengths[longest_first]
    first_rows = starts[:-1][longest_first]

    # One vectorised pass per step index t: the rows at step t of the episodes longer than t
    # multiply the product of the row before them.
    cumulative = ratios.copy()
    for step in range(1, int(descending_lengths[0])):
        longer = int(np.searchsorted(-descending_lengths, -step, side="left"))
        rows = first_rows[:longer] + step
        cumulative[rows] *= cumulative[rows - 1]
    return cumulative


def _episode_sums(
    values: npt.NDArray[np.float64], starts: npt.NDArray[np.int64]
) -> npt.NDArray[np.float64]:
    """Sum float [N, K] values over the rows of each episode, giving [E, K]."""
    episodes = starts.shape[0] - 1
    episode_of_row = np.repeat(np.arange(episodes), np.diff(starts))
    columns = [
        np.bincount(episode_of_row, weights=values[:, k], minlength=episodes)
        for k in range(values.shape[1])
    ]
    return np.stack(columns, axis=1)
