"""Slow, obvious discounted returns, written from the definitions as sums over each episode.

Arrays are float64 [N, K]; episodes are ``(start, end, kind)`` with kind one of ``"terminated"``,
``"truncated"`` or ``"unflagged"``. What follows the last row of an episode (the bootstrap) is 0
unless the episode is truncated.
"""

from __future__ import annotations

import numpy as np

TERMINATED = "terminated"
TRUNCATED = "truncated"
UNFLAGGED = "unflagged"


def episodes(
    rows: int,
    episode_starts: list[int] | None,
    terminals: list[int] | None,
    truncations: list[int] | None,
) -> list[tuple[int, int, str]]:
    """Return the episodes as (start, end, kind); without offsets, cut after each flagged row."""
    terminals = terminals if terminals is not None else [0] * rows
    truncations = truncations if truncations is not None else [0] * rows
    if episode_starts is None:
        episode_starts = [0]
        for row in range(rows):
            if terminals[row] or truncations[row]:
                episode_starts.append(row + 1)
        if episode_starts[-1] != rows:
            episode_starts.append(rows)
    result = []
    for start, end in zip(episode_starts[:-1], episode_starts[1:]):
        kind = UNFLAGGED
        if end > start and terminals[end - 1]:
            kind = TERMINATED
        elif end > start and truncations[end - 1]:
            kind = TRUNCATED
        result.append((start, end, kind))
    return result


def _after_last(kind: str, value: np.ndarray) -> np.ndarray:
    return value if kind == TRUNCATED else np.zeros_like(value)


def discounted_returns(
    rewards: np.ndarray,
    gammas: np.ndarray,
    episode_list: list[tuple[int, int, str]],
    bootstrap_values: np.ndarray | None,
) -> np.ndarray:
    """G_t = sum_i gamma^i r_{t+i} over the h rows left, plus gamma^h times the bootstrap."""
    returns = np.zeros_like(rewards)
    for episode, (start, end, kind) in enumerate(episode_list):
        bootstrap = np.zeros(rewards.shape[1])
        if kind == TRUNCATED:
            assert bootstrap_values is not None
            bootstrap = bootstrap_values[episode]
        for t in range(start, end):
            total = np.zeros(rewards.shape[1])
            for i in range(end - t):
                total += gammas**i * rewards[t + i]
            returns[t] = total + gammas ** (end - t) * bootstrap
    return returns


def n_step_return(
    rewards: np.ndarray,
    next_values: np.ndarray,
    gammas: np.ndarray,
    start: int,
    end: int,
    kind: str,
    t: int,
    n: int,
) -> np.ndarray:
    """Return the n-step return of row t, the window cut at the episode end."""
    m = min(n, end - t)
    total = np.zeros(rewards.shape[1])
    for i in range(m):
        total += gammas**i * rewards[t + i]
    last = t + m - 1
    bootstrap = next_values[last] if last < end - 1 else _after_last(kind, next_values[last])
    return total + gammas**m * bootstrap


def n_step_targets(
    rewards: np.ndarray,
    next_values: np.ndarray,
    gammas: np.ndarray,
    n: int,
    episode_list: list[tuple[int, int, str]],
) -> np.ndarray:
    """Every row's n-step return."""
    targets = np.zeros_like(rewards)
    for start, end, kind in episode_list:
        for t in range(start, end):
            targets[t] = n_step_return(rewards, next_values, gammas, start, end, kind, t, n)
    return targets


def lambda_returns(
    rewards: np.ndarray,
    next_values: np.ndarray,
    gammas: np.ndarray,
    lambda_: float,
    episode_list: list[tuple[int, int, str]],
) -> np.ndarray:
    """The forward view: (1 - lambda) sum_n lambda^(n-1) G^(n) + lambda^(h-1) G^(h), h rows left."""
    returns = np.zeros_like(rewards)
    for start, end, kind in episode_list:
        for t in range(start, end):
            h = end - t
            total = np.zeros(rewards.shape[1])
            for n in range(1, h):
                g_n = n_step_return(rewards, next_values, gammas, start, end, kind, t, n)
                total += (1 - lambda_) * lambda_ ** (n - 1) * g_n
            g_h = n_step_return(rewards, next_values, gammas, start, end, kind, t, h)
            returns[t] = total + lambda_ ** (h - 1) * g_h
    return returns


def gae(
    rewards: np.ndarray,
    values: np.ndarray,
    next_values: np.ndarray,
    gammas: np.ndarray,
    lambda_: float,
    episode_list: list[tuple[int, int, str]],
) -> tuple[np.ndarray, np.ndarray]:
    """A_t = sum_l (gamma lambda)^l delta_{t+l} over the rest of the episode; targets A + V."""
    advantages = np.zeros_like(rewards)
    for start, end, kind in episode_list:
        deltas = []
        for t in range(start, end):
            after = next_values[t] if t < end - 1 else _after_last(kind, next_values[t])
            deltas.append(rewards[t] + gammas * after - values[t])
        for t in range(start, end):
            total = np.zeros(rewards.shape[1])
            for lag in range(end - t):
                total += (gammas * lambda_) ** lag * deltas[t - start + lag]
            advantages[t] = total
    return advantages, advantages + values
