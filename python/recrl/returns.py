"""Discounted returns over ragged episodes: reward-to-go, n-step, TD(lambda) and GAE.

Every function takes a log of N rows cut into episodes and K responses per row (click, like,
watch time, ...), each with its own discount. The work runs in Rust (``recrl._core``), in
parallel across episodes and with the GIL released. Inputs are float32, sums are accumulated in
float64, and results are float32.

Episodes:
    Give the episodes as CSR offsets ``episode_starts`` (int64, length E + 1: rows of episode e
    are ``episode_starts[e]:episode_starts[e + 1]``), as returned by
    :func:`recrl._core.build_episodes`, together with its per-row ``terminals`` and
    ``truncations`` flags. Without ``episode_starts``, an episode ends after every flagged row
    and at the last row. A flag may only mark the last row of an episode.

What follows the last row of an episode:
    * terminated (``terminals`` set): the return after it is 0;
    * truncated (``truncations`` set, for example by the end of the data window): the return
      after it is the value of the next observation, which the caller supplies;
    * neither flag: the log ends without that value, so the return after it is 0.

Shapes:
    Rewards and values are (N, K), or (N,) for one response. ``gammas`` is one float, applied
    to every response, or a sequence of K discounts. Results are (N,) when ``gammas`` is a float
    and K = 1, whether rewards are (N,) or (N, 1); they are (N, K) otherwise.

Inputs that are not C-contiguous float32 (int64, uint8 for flags) are converted, which copies
them; pass arrays of those types to avoid the copy. Invalid inputs raise the classes of
:mod:`recrl.errors`: :class:`~recrl.errors.ShapeError` for shapes,
:class:`~recrl.errors.InvalidArgumentError` for a discount or lambda outside [0, 1] and
inconsistent episodes, :class:`~recrl.errors.InvalidDataError` for a NaN or infinite input,
naming its row and column.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Union

import numpy as np
import numpy.typing as npt

from recrl import _core
from recrl.errors import InvalidArgumentError

__all__ = ["discounted_returns", "gae", "lambda_returns", "n_step_targets"]

logger = logging.getLogger(__name__)

Gammas = Union[float, Sequence[float], npt.NDArray[np.floating]]


def _convert(name: str, array: npt.ArrayLike, dtype: type[np.generic]) -> npt.NDArray[Any]:
    converted = np.ascontiguousarray(array, dtype=dtype)
    if isinstance(array, np.ndarray) and converted is not array:
        logger.debug(
            "%s: copied %s array of shape %s into a contiguous %s array",
            name,
            array.dtype,
            array.shape,
            np.dtype(dtype),
        )
    return converted


def _floats(name: str, array: npt.ArrayLike) -> npt.NDArray[np.float32]:
    return _convert(name, array, np.float32)


def _offsets(episode_starts: npt.ArrayLike | None) -> npt.NDArray[np.int64] | None:
    if episode_starts is None:
        return None
    return _convert("episode_starts", episode_starts, np.int64)


def _flags(name: str, flags: npt.ArrayLike | None) -> npt.NDArray[np.uint8] | None:
    if flags is None:
        return None
    return _convert(name, flags, np.uint8)


def _gammas(gammas: Gammas) -> float | npt.NDArray[np.float64]:
    if np.ndim(gammas) == 0:
        return float(gammas)  # type: ignore[arg-type]
    return _convert("gammas", gammas, np.float64)


def discounted_returns(
    rewards: npt.ArrayLike,
    gammas: Gammas,
    *,
    episode_starts: npt.ArrayLike | None = None,
    terminals: npt.ArrayLike | None = None,
    truncations: npt.ArrayLike | None = None,
    bootstrap_values: npt.ArrayLike | None = None,
    out: npt.NDArray[np.float32] | None = None,
) -> npt.NDArray[np.float32]:
    """Compute the discounted reward-to-go of every row.

    G_t = r_t + gamma_k G_{t+1} inside an episode, per response k. After the last row of an
    episode G is 0, or the episode's row of ``bootstrap_values`` if the episode is truncated.

    Args:
        rewards: float32 [N, K] or [N], the rewards of each row.
        gammas: the discount of every response (a float) or of each response (float64 [K]),
            each in [0, 1].
        episode_starts: int64 [E + 1], CSR offsets of the episodes, starting at 0 and ending at
            N. Without it, episodes end after each flagged row and at the last row.
        terminals: uint8 [N], 1 on the last row of an episode that ended in the data.
        truncations: uint8 [N], 1 on the last row of an episode cut before it ended.
        bootstrap_values: float32 [E, K] or [E], the value of the observation after the last
            step of each episode. Only rows of truncated episodes are read; required when an
            episode is truncated.
        out: float32 array of the result's shape, C-contiguous, writeable and sharing no memory
            with the inputs. The returns are written into it and it is returned, so a loop can
            reuse one buffer instead of allocating the result on every call. On an error it may
            be partly written.

    Returns:
        float32 [N, K] or [N] (see the module docs for which), the return of each row: ``out``
        when it is given.
    """
    converted = _floats("rewards", rewards)
    bootstrap = None if bootstrap_values is None else _floats("bootstrap_values", bootstrap_values)
    if out is not None:
        _check_out(out, converted, bootstrap)
    return _core.discounted_returns(
        converted,
        _gammas(gammas),
        episode_starts=_offsets(episode_starts),
        terminals=_flags("terminals", terminals),
        truncations=_flags("truncations", truncations),
        bootstrap_values=bootstrap,
        out=out,
    )


def _check_out(out: Any, *inputs: npt.NDArray[Any] | None) -> None:
    """Raise unless ``out`` can receive a float32 result without touching the inputs."""
    if not isinstance(out, np.ndarray) or out.dtype != np.float32:
        dtype = getattr(out, "dtype", type(out).__name__)
        raise InvalidArgumentError(f"out: expected a float32 NumPy array, got {dtype}")
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise InvalidArgumentError("out: expected a C-contiguous, writeable array")
    if any(array is not None and np.shares_memory(out, array) for array in inputs):
        raise InvalidArgumentError("out: shares memory with an input; pass a separate buffer")


def n_step_targets(
    rewards: npt.ArrayLike,
    next_values: npt.ArrayLike,
    gammas: Gammas,
    n: int,
    *,
    episode_starts: npt.ArrayLike | None = None,
    terminals: npt.ArrayLike | None = None,
    truncations: npt.ArrayLike | None = None,
) -> npt.NDArray[np.float32]:
    """Compute the n-step bootstrapped target of every row.

    G_t = sum_{i<m} gamma^i r_{t+i} + gamma^m V(s_{t+m}) with m = min(n, rows left in the
    episode), so the window never crosses the end of an episode and a shortened window is
    discounted by gamma^m. V(s_{t+m}) is row t + m - 1 of ``next_values``; it is 0 when that row
    is the last of a terminated or unflagged episode. The cost is O(N K min(n, episode length)).

    Args:
        rewards: float32 [N, K] or [N], the rewards of each row.
        next_values: float32 [N, K] or [N], the value of the observation after each row.
        gammas: a float for every response or float64 [K], each in [0, 1].
        n: the window length, at least 1.
        episode_starts: int64 [E + 1], CSR offsets of the episodes.
        terminals: uint8 [N], 1 on the last row of an episode that ended in the data.
        truncations: uint8 [N], 1 on the last row of an episode cut before it ended.

    Returns:
        float32 [N, K] or [N], the target of each row.
    """
    return _core.n_step_targets(
        _floats("rewards", rewards),
        _floats("next_values", next_values),
        _gammas(gammas),
        n,
        episode_starts=_offsets(episode_starts),
        terminals=_flags("terminals", terminals),
        truncations=_flags("truncations", truncations),
    )


def lambda_returns(
    rewards: npt.ArrayLike,
    next_values: npt.ArrayLike,
    gammas: Gammas,
    lambda_: float,
    *,
    episode_starts: npt.ArrayLike | None = None,
    terminals: npt.ArrayLike | None = None,
    truncations: npt.ArrayLike | None = None,
) -> npt.NDArray[np.float32]:
    """Compute the TD(lambda) return of every row.

    G_t = r_t + gamma ((1 - lambda) V(s_{t+1}) + lambda G_{t+1}), the recursive form of the
    lambda-weighted average of n-step returns, (1 - lambda) sum_n lambda^(n-1) G_t^(n), whose
    tail weight goes to the full return at the end of the episode. After the last row
    of an episode both V and G are the next value if the episode is truncated and 0 otherwise.
    lambda = 1 gives the discounted return and lambda = 0 the one-step target.

    Args:
        rewards: float32 [N, K] or [N], the rewards of each row.
        next_values: float32 [N, K] or [N], the value of the observation after each row.
        gammas: a float for every response or float64 [K], each in [0, 1].
        lambda_: the trace decay, in [0, 1].
        episode_starts: int64 [E + 1], CSR offsets of the episodes.
        terminals: uint8 [N], 1 on the last row of an episode that ended in the data.
        truncations: uint8 [N], 1 on the last row of an episode cut before it ended.

    Returns:
        float32 [N, K] or [N], the return of each row.
    """
    return _core.lambda_returns(
        _floats("rewards", rewards),
        _floats("next_values", next_values),
        _gammas(gammas),
        lambda_,
        episode_starts=_offsets(episode_starts),
        terminals=_flags("terminals", terminals),
        truncations=_flags("truncations", truncations),
    )


def gae(
    rewards: npt.ArrayLike,
    values: npt.ArrayLike,
    next_values: npt.ArrayLike,
    gammas: Gammas,
    lambda_: float,
    *,
    episode_starts: npt.ArrayLike | None = None,
    terminals: npt.ArrayLike | None = None,
    truncations: npt.ArrayLike | None = None,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Compute generalized advantage estimates and value targets of every row.

    delta_t = r_t + gamma V(s_{t+1}) - V(s_t) and A_t = delta_t + gamma lambda A_{t+1}
    (Schulman et al., "High-Dimensional Continuous Control Using Generalized Advantage
    Estimation", arXiv:1506.02438, in recursive form). After the last row of an episode A is 0 and
    V(s_{t+1}) is the next value if the episode is truncated and 0 otherwise. The value targets
    A_t + V(s_t) equal the TD(lambda) returns when ``next_values`` is ``values`` shifted by one
    row inside each episode.

    Args:
        rewards: float32 [N, K] or [N], the rewards of each row.
        values: float32 [N, K] or [N], the value of the observation at each row.
        next_values: float32 [N, K] or [N], the value of the observation after each row.
        gammas: a float for every response or float64 [K], each in [0, 1].
        lambda_: the GAE parameter, in [0, 1].
        episode_starts: int64 [E + 1], CSR offsets of the episodes.
        terminals: uint8 [N], 1 on the last row of an episode that ended in the data.
        truncations: uint8 [N], 1 on the last row of an episode cut before it ended.

    Returns:
        ``(advantages, targets)``, each float32 [N, K] or [N].
    """
    return _core.gae(
        _floats("rewards", rewards),
        _floats("values", values),
        _floats("next_values", next_values),
        _gammas(gammas),
        lambda_,
        episode_starts=_offsets(episode_starts),
        terminals=_flags("terminals", terminals),
        truncations=_flags("truncations", truncations),
    )
