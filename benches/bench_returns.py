"""Discounted reward-to-go: recrl beside numba, tianshou, torchrl and a plain NumPy copy.

Builds a log of about 10M rows in 200k episodes (lengths uniform in 1..99, every episode
terminated), then times each implementation on the same float32 rewards for K = 1 and K = 8
responses with gamma = 0.99. The NumPy copy moves the same bytes as the output (read N K float32
values, write N K float32 values) and is the floor for a memory-bound kernel. Each result is
checked against recrl's before its time is printed.

Run: python benches/bench_returns.py [--episodes 200000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any, Optional

import numpy as np

from recrl import returns

GAMMA = 0.99

# (name, call or None when unavailable, note, rows the call covers)
Entry = tuple[str, Optional[Callable[[], Any]], str, int]


def make_log(episodes: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    generator = np.random.default_rng(seed)
    lengths = generator.integers(1, 100, size=episodes)
    starts = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    terminals = np.zeros(int(starts[-1]), dtype=np.uint8)
    terminals[starts[1:] - 1] = 1
    rewards = generator.random((int(starts[-1]), 8), dtype=np.float32)
    return rewards, starts, terminals


def time_calls(function: Callable[[], Any], repeat: int) -> tuple[list[float], Any]:
    result = function()  # warm-up: JIT compilation, page faults of first allocations
    times = []
    for _ in range(repeat):
        begin = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - begin)
    return times, result


def numba_contenders() -> dict[str, Callable[..., np.ndarray]]:
    import numba

    @numba.njit
    def loop_one(rewards: np.ndarray, starts: np.ndarray, gamma: float) -> np.ndarray:
        out = np.empty(rewards.shape[0], dtype=np.float32)
        for episode in range(starts.shape[0] - 1):
            g = 0.0
            for t in range(starts[episode + 1] - 1, starts[episode] - 1, -1):
                g = rewards[t] + gamma * g
                out[t] = g
        return out

    @numba.njit
    def loop_many(rewards: np.ndarray, starts: np.ndarray, gammas: np.ndarray) -> np.ndarray:
        rows, width = rewards.shape
        out = np.empty((rows, width), dtype=np.float32)
        g = np.zeros(width)
        for episode in range(starts.shape[0] - 1):
            g[:] = 0.0
            for t in range(starts[episode + 1] - 1, starts[episode] - 1, -1):
                for k in range(width):
                    g[k] = rewards[t, k] + gammas[k] * g[k]
                    out[t, k] = g[k]
        return out

    @numba.njit(parallel=True)
    def prange_many(rewards: np.ndarray, starts: np.ndarray, gammas: np.ndarray) -> np.ndarray:
        rows, width = rewards.shape
        out = np.empty((rows, width), dtype=np.float32)
        for episode in numba.prange(starts.shape[0] - 1):
            g = np.zeros(width)
            for t in range(starts[episode + 1] - 1, starts[episode] - 1, -1):
                for k in range(width):
                    g[k] = rewards[t, k] + gammas[k] * g[k]
                    out[t, k] = g[k]
        return out

    return {"one": loop_one, "many": loop_many, "prange": prange_many}


def contenders(rewards: np.ndarray, starts: np.ndarray, terminals: np.ndarray) -> list[Entry]:
    """Return (name, call, note, rows covered) per implementation.

    The call is None when the implementation is unavailable.
    """
    width = rewards.shape[1]
    gammas = np.full(width, GAMMA)
    single_response = width == 1
    flat = np.ascontiguousarray(rewards[:, 0]) if single_response else rewards
    rows = rewards.shape[0]
    reused = np.empty_like(flat)
    entries: list[Entry] = [
        (
            "recrl",
            lambda: returns.discounted_returns(
                flat,
                GAMMA if single_response else gammas,
                episode_starts=starts,
                terminals=terminals,
            ),
            f"{os.cpu_count()} threads",
            rows,
        ),
        (
            "recrl, reused out",
            lambda: returns.discounted_returns(
                flat,
                GAMMA if single_response else gammas,
                episode_starts=starts,
                terminals=terminals,
                out=reused,
            ),
            "writes into one buffer kept across calls",
            rows,
        ),
        ("numpy copy", lambda: flat.copy(), "same bytes in and out", rows),
    ]

    try:
        loops = numba_contenders()
        if single_response:
            entries.append(
                ("numba loop", lambda: loops["one"](flat, starts, GAMMA), "1 thread", rows)
            )
        else:
            entries.append(
                ("numba loop", lambda: loops["many"](flat, starts, gammas), "1 thread", rows)
            )
        entries.append(
            (
                "numba prange",
                lambda: loops["prange"](rewards, starts, gammas),
                "parallel=True",
                rows,
            )
        )
    except ImportError as error:
        entries.append(("numba loop", None, f"skipped: {error}", rows))

    try:
        from tianshou.algorithm.algorithm_base import _gae

        done = terminals.astype(bool)
        zeros = np.zeros(rewards.shape[0], dtype=np.float32)
        columns = [np.ascontiguousarray(rewards[:, k]) for k in range(width)]

        def tianshou_returns() -> list[np.ndarray]:
            # _gae with zero values and lambda = 1 is tianshou's reward-to-go; 1-D only.
            return [_gae(zeros, zeros, column, done, GAMMA, 1.0) for column in columns]

        note = "_gae, values 0, lambda 1" + ("" if single_response else ", one call per column")
        entries.append(("tianshou 2.0", tianshou_returns, note, rows))
    except ImportError as error:
        entries.append(("tianshou", None, f"skipped: {error}", rows))

    try:
        import torch
        from torchrl.objectives.value.functional import reward2go

        # reward2go pads every episode to the longest one, T rows, and builds [E K, T, T] float32
        # tensors of shifted copies (torchrl 0.14, _custom_conv1d): for all 200k episodes that is
        # 7 GiB at K = 1 and 58 GiB at K = 8, beyond this machine. It runs on the first episodes
        # that fit in 1 GiB, and its time is scaled by the row count.
        longest = int(np.diff(starts).max())
        fitting = max(1, 2**30 // (width * longest * longest * 4))
        covered = int(starts[min(fitting, len(starts) - 1)])
        head = flat[:covered, None] if single_response else rewards[:covered]
        reward_tensor = torch.from_numpy(np.ascontiguousarray(head))
        done_tensor = torch.from_numpy(terminals[:covered].astype(bool))[:, None]
        done_tensor = done_tensor.expand(-1, width).contiguous()
        note = f"torch {torch.__version__}, {torch.get_num_threads()} threads"
        if covered < rewards.shape[0]:
            note += f", timed on the first {covered:,} rows and scaled"
        entries.append(
            (
                "torchrl reward2go",
                lambda: reward2go(reward_tensor, done_tensor, GAMMA, time_dim=-2),
                note,
                covered,
            )
        )
    except ImportError as error:
        entries.append(("torchrl reward2go", None, f"skipped: {error}", rows))
    return entries


def as_columns(result: Any, rows: int) -> np.ndarray:
    if isinstance(result, list):
        return np.stack([np.asarray(column) for column in result], axis=1)
    array = result.numpy() if hasattr(result, "numpy") else np.asarray(result)
    return array.reshape(rows, -1)


def run(
    width: int, rewards: np.ndarray, starts: np.ndarray, terminals: np.ndarray, repeat: int
) -> None:
    data = np.ascontiguousarray(rewards[:, :width])
    rows = data.shape[0]
    print(f"\nK = {width}: {rows:,} rows, {len(starts) - 1:,} episodes, gamma {GAMMA}")
    print(f"{'implementation':<20} {'median ms':>10} {'min ms':>9} {'vs recrl':>9}  note")
    reference = None
    recrl_median = None
    for name, call, note, covered in contenders(data, starts, terminals):
        if call is None:
            print(f"{name:<20} {'-':>10} {'-':>9} {'-':>9}  {note}")
            continue
        times, result = time_calls(call, 1 if name.startswith("torchrl") else repeat)
        scale = rows / covered
        median = statistics.median(times) * 1e3 * scale
        fastest = min(times) * 1e3 * scale
        if name == "recrl":
            reference = as_columns(result, rows)
            recrl_median = median
        elif name != "numpy copy":
            np.testing.assert_allclose(
                as_columns(result, covered), reference[:covered], rtol=1e-4, atol=1e-3
            )
        ratio = median / recrl_median if recrl_median else float("nan")
        print(f"{name:<20} {median:>10.1f} {fastest:>9.1f} {ratio:>8.2f}x  {note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=200_000, help="number of episodes")
    parser.add_argument("--repeat", type=int, default=5, help="timed calls per implementation")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic log")
    arguments = parser.parse_args()

    rewards, starts, terminals = make_log(arguments.episodes, arguments.seed)
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    for width in (1, 8):
        run(width, rewards, starts, terminals, arguments.repeat)


if __name__ == "__main__":
    main()
