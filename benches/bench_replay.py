"""Replay sampling speed and memory: recrl beside torch, cpprb, tianshou and torchrl.

Every store contains N transitions of S float32 features, a next observation, a 1-wide action,
K = 8 rewards and terminal/truncation flags, filled with episodes of 100 steps. Each timed call
draws a batch of B transitions and hands it over as torch tensors (``torch.from_numpy`` where
a library returns NumPy). The recrl store stays alive while each alternative is built in turn
and freed afterwards, so the process keeps at most two stores in memory. Their calls are timed
in alternating rounds. Peak memory is measured in a fresh subprocess per store.

Usage:
    python benches/bench_replay.py                      # N = 1_000_000, S = 1044, B = 512
    python benches/bench_replay.py --size 100000        # smaller, for a quick look
    python benches/bench_replay.py --only memory

Install the alternatives into the environment first (``pip install cpprb tianshou torchrl``);
a missing one is skipped with the reason printed.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np
import torch

from recrl.replay import ReplayBuffer, SumTree

EPISODE_LENGTH = 100
CHUNK = 10_000
REWARDS = 8
ROUNDS = 10


def chunk_data(features: int) -> dict[str, np.ndarray]:
    generator = np.random.default_rng(0)
    steps = np.arange(CHUNK)
    return {
        "observations": generator.random((CHUNK, features), dtype=np.float32),
        "actions": generator.random((CHUNK, 1), dtype=np.float32),
        "rewards": generator.random((CHUNK, REWARDS), dtype=np.float32),
        "terminals": steps % EPISODE_LENGTH == EPISODE_LENGTH - 1,
        "truncations": np.zeros(CHUNK, dtype=bool),
    }


def time_calls(call: Callable[[], object], iterations: int, warmup: int = 10) -> float:
    """Return the median seconds per call over ``iterations`` calls."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# Store builders: each fills N transitions and returns (uniform call, prioritized call, store).


def build_recrl(size: int, data: dict[str, np.ndarray]) -> ReplayBuffer:
    capacity = size + size // EPISODE_LENGTH + 1
    buffer = ReplayBuffer(capacity, data["observations"].shape[1], 1, REWARDS, alpha=0.6, seed=0)
    for _ in range(size // CHUNK):
        buffer.extend(
            data["observations"],
            data["actions"],
            data["rewards"],
            data["observations"],
            terminals=data["terminals"],
            truncations=data["truncations"],
        )
    return buffer


def recrl_calls(size: int, batch: int, data: dict[str, np.ndarray]):
    buffer = build_recrl(size, data)
    generator = np.random.default_rng(1)

    def uniform() -> object:
        return buffer.sample(batch).observations

    def prioritized() -> object:
        sample = buffer.sample_prioritized(batch, beta=0.4)
        priorities = generator.random(batch) + 1e-3
        buffer.update_priorities(sample.indices, priorities, sample.stamps)
        return sample.observations

    return uniform, prioritized, buffer


def torch_calls(size: int, batch: int, data: dict[str, np.ndarray]):
    features = data["observations"].shape[1]
    observations = torch.empty((size + 1, features))
    actions = torch.empty((size, 1))
    rewards = torch.empty((size, REWARDS))
    terminals = torch.empty(size, dtype=torch.bool)
    truncations = torch.empty(size, dtype=torch.bool)
    for start in range(0, size, CHUNK):
        rows = slice(start, start + CHUNK)
        observations[rows] = torch.from_numpy(data["observations"])
        actions[rows] = torch.from_numpy(data["actions"])
        rewards[rows] = torch.from_numpy(data["rewards"])
        terminals[rows] = torch.from_numpy(data["terminals"])
        truncations[rows] = torch.from_numpy(data["truncations"])
    out = {
        "observations": torch.empty((batch, features)),
        "next_observations": torch.empty((batch, features)),
        "actions": torch.empty((batch, 1)),
        "rewards": torch.empty((batch, REWARDS)),
        "terminals": torch.empty(batch, dtype=torch.bool),
        "truncations": torch.empty(batch, dtype=torch.bool),
    }

    # Same layout as recrl: next observation of row i is row i + 1.
    def uniform() -> object:
        index = torch.randint(0, size, (batch,))
        torch.index_select(observations, 0, index, out=out["observations"])
        torch.index_select(observations, 0, index + 1, out=out["next_observations"])
        torch.index_select(actions, 0, index, out=out["actions"])
        torch.index_select(rewards, 0, index, out=out["rewards"])
        torch.index_select(terminals, 0, index, out=out["terminals"])
        torch.index_select(truncations, 0, index, out=out["truncations"])
        return out["observations"]

    store = (observations, actions, rewards, terminals, truncations)
    return uniform, None, store


def cpprb_env(features: int) -> dict[str, dict[str, object]]:
    return {
        "obs": {"shape": features},
        "next_obs": {"shape": features},
        "act": {"shape": 1},
        "rew": {"shape": REWARDS},
        "done": {},
        "trunc": {},
    }


def fill_cpprb(store, size: int, data: dict[str, np.ndarray]) -> None:
    for _ in range(size // CHUNK):
        store.add(
            obs=data["observations"],
            next_obs=data["observations"],
            act=data["actions"],
            rew=data["rewards"],
            done=data["terminals"],
            trunc=data["truncations"],
        )


def to_torch(sample: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {key: torch.from_numpy(value) for key, value in sample.items()}


def cpprb_calls(size: int, batch: int, data: dict[str, np.ndarray], prioritized: bool):
    import cpprb

    features = data["observations"].shape[1]
    generator = np.random.default_rng(1)
    if not prioritized:
        store = cpprb.ReplayBuffer(size, cpprb_env(features))
        fill_cpprb(store, size, data)
        return (lambda: to_torch(store.sample(batch))["obs"]), None, store

    store = cpprb.PrioritizedReplayBuffer(size, cpprb_env(features), alpha=0.6)
    fill_cpprb(store, size, data)

    def sample_and_update() -> object:
        sample = store.sample(batch, beta=0.4)
        store.update_priorities(sample["indexes"], generator.random(batch) + 1e-3)
        return to_torch(sample)["obs"]

    return None, sample_and_update, store


def tianshou_batch(size: int, data: dict[str, np.ndarray]):
    from tianshou.data import Batch

    features = data["observations"].shape[1]
    observations = np.empty((size, features), dtype=np.float32)
    for start in range(0, size, CHUNK):
        observations[start : start + CHUNK] = data["observations"]
    repeats = size // CHUNK
    terminals = np.tile(data["terminals"], repeats)
    return Batch(
        obs=observations,
        # tianshou stores next observations explicitly unless ignore_obs_next is set.
        obs_next=observations.copy(),
        act=np.tile(data["actions"], (repeats, 1)),
        rew=np.tile(data["rewards"], (repeats, 1)),
        terminated=terminals,
        truncated=np.zeros(size, dtype=bool),
        done=terminals,
    )


def tianshou_calls(size: int, batch: int, data: dict[str, np.ndarray], prioritized: bool):
    from tianshou.data import PrioritizedReplayBuffer
    from tianshou.data import ReplayBuffer as TianshouBuffer

    # One batched set_batch fills the store; the per-step add loop would take minutes. The
    # size and insertion index are set to what a million adds would leave.
    store = (
        PrioritizedReplayBuffer(size, alpha=0.6, beta=0.4) if prioritized else TianshouBuffer(size)
    )
    store.set_batch(tianshou_batch(size, data))
    store._size = size
    store._insertion_idx = 0
    generator = np.random.default_rng(1)
    if not prioritized:

        def uniform() -> object:
            sample, _ = store.sample(batch)
            return torch.from_numpy(sample.obs), torch.from_numpy(sample.obs_next)

        return uniform, None, store

    store.init_weight(np.arange(size))

    def sample_and_update() -> object:
        sample, indices = store.sample(batch)
        weights = store.get_weight(indices)
        store.update_weight(indices, generator.random(batch) + 1e-3)
        return torch.from_numpy(sample.obs), torch.from_numpy(weights)

    return None, sample_and_update, store


def tianshou_tree_calls(size: int, batch: int, data: dict[str, np.ndarray]):
    from tianshou.data.utils.segtree import SegmentTree

    tree = SegmentTree(size)
    tree[np.arange(size)] = np.ones(size)
    generator = np.random.default_rng(1)

    def sample_and_update() -> object:
        masses = generator.random(batch) * tree.reduce()
        indices = tree.get_prefix_sum_idx(masses)
        tree[indices] = (generator.random(batch) + 1e-3) ** 0.6
        return indices

    return None, sample_and_update, tree


def recrl_tree_calls(size: int, batch: int, data: dict[str, np.ndarray]):
    """Build the calls of ``tianshou_tree_calls`` on recrl's ``SumTree``."""
    tree = SumTree(size)
    tree.set_many(np.arange(size), np.ones(size))
    generator = np.random.default_rng(1)

    def sample_and_update() -> object:
        masses = generator.random(batch) * tree.total()
        indices = tree.find_prefix_many(masses)
        tree.set_many(indices, (generator.random(batch) + 1e-3) ** 0.6)
        return indices

    return None, sample_and_update, tree


def torchrl_calls(size: int, batch: int, data: dict[str, np.ndarray], prioritized: bool):
    from tensordict import TensorDict
    from torchrl.data import (
        LazyTensorStorage,
        TensorDictPrioritizedReplayBuffer,
        TensorDictReplayBuffer,
    )

    storage = LazyTensorStorage(size)
    if prioritized:
        store = TensorDictPrioritizedReplayBuffer(
            alpha=0.6, beta=0.4, storage=storage, batch_size=batch, priority_key="td_error"
        )
    else:
        store = TensorDictReplayBuffer(storage=storage, batch_size=batch)
    observations = torch.from_numpy(data["observations"])
    for _ in range(size // CHUNK):
        store.extend(
            TensorDict(
                {
                    "observation": observations,
                    "action": torch.from_numpy(data["actions"]),
                    "reward": torch.from_numpy(data["rewards"]),
                    "terminated": torch.from_numpy(data["terminals"]),
                    "truncated": torch.from_numpy(data["truncations"]),
                    "next": {"observation": observations},
                },
                batch_size=[CHUNK],
            )
        )
    if not prioritized:
        return (lambda: store.sample()["observation"]), None, store

    def sample_and_update() -> object:
        sample = store.sample()
        store.update_priority(sample["index"], torch.rand(batch) + 1e-3)
        return sample["observation"]

    return None, sample_and_update, store


def run_speed(args: argparse.Namespace) -> None:
    data = chunk_data(args.features)
    size, batch = args.size, args.batch
    print(f"\n== uniform, batch {batch} from {size:,} x {args.features} float32 ==")
    uniform_builders: list[tuple[str, Callable[[], tuple]]] = [
        ("recrl", lambda: recrl_calls(size, batch, data)),
        ("torch index_select", lambda: torch_calls(size, batch, data)),
        ("cpprb", lambda: cpprb_calls(size, batch, data, prioritized=False)),
        ("tianshou", lambda: tianshou_calls(size, batch, data, prioritized=False)),
        ("torchrl", lambda: torchrl_calls(size, batch, data, prioritized=False)),
    ]
    report(uniform_builders, 0, args.iterations)

    print(f"\n== prioritized with priority update, batch {batch} from {size:,} ==")
    prioritized_builders: list[tuple[str, Callable[[], tuple]]] = [
        ("recrl", lambda: recrl_calls(size, batch, data)),
        ("tianshou full payload", lambda: tianshou_calls(size, batch, data, prioritized=True)),
        ("cpprb", lambda: cpprb_calls(size, batch, data, prioritized=True)),
        ("torchrl", lambda: torchrl_calls(size, batch, data, prioritized=True)),
    ]
    report(prioritized_builders, 1, args.iterations)

    print(f"\n== priority tree alone: draw {batch} leaves of {size:,}, then set them ==")
    tree_builders: list[tuple[str, Callable[[], tuple]]] = [
        ("recrl SumTree", lambda: recrl_tree_calls(size, batch, data)),
        ("tianshou SegmentTree", lambda: tianshou_tree_calls(size, batch, data)),
    ]
    report(tree_builders, 1, args.iterations)


def report(builders: list[tuple[str, Callable[[], tuple]]], which: int, iterations: int) -> None:
    """Time recrl (the first builder) and each alternative in alternating rounds.

    Other processes share the machine, so recrl and each alternative are timed in alternating
    rounds of ``iterations // ROUNDS`` calls while both stores exist. Each ratio then compares
    two medians taken under the same background load.
    """
    (recrl_name, build_recrl_calls), *alternatives = builders
    gc.collect()
    start = time.perf_counter()
    recrl = build_recrl_calls()
    print(f"{recrl_name:>24}: filled in {time.perf_counter() - start:5.1f} s", flush=True)
    rounds = max(iterations // ROUNDS, 1)
    for name, build in alternatives:
        gc.collect()
        start = time.perf_counter()
        try:
            calls = build()
        except ImportError as error:
            print(f"{name:>24}: skipped ({error})")
            continue
        fill = time.perf_counter() - start
        ours, theirs = [], []
        for _ in range(ROUNDS):
            ours.append(time_calls(recrl[which], rounds, warmup=2))
            theirs.append(time_calls(calls[which], rounds, warmup=2))
        del calls
        gc.collect()
        ours_median, theirs_median = statistics.median(ours), statistics.median(theirs)
        print(
            f"{name:>24}: {theirs_median * 1e6:9.1f} us/batch vs recrl "
            f"{ours_median * 1e6:7.1f} us/batch, ratio {theirs_median / ours_median:5.2f} "
            f"(above 1: recrl faster; fill {fill:5.1f} s)",
            flush=True,
        )


def memory_child(kind: str, size: int, features: int) -> None:
    data = chunk_data(features)
    baseline = rss_kib("VmRSS")
    if kind == "recrl":
        store = build_recrl(size, data)
    elif kind == "cpprb":
        import cpprb

        store = cpprb.ReplayBuffer(size, cpprb_env(features))
        fill_cpprb(store, size, data)
    elif kind == "cpprb-next_of":
        import cpprb

        env = cpprb_env(features)
        del env["next_obs"]
        store = cpprb.ReplayBuffer(size, env, next_of="obs")
        for _ in range(size // CHUNK):
            store.add(
                obs=data["observations"],
                next_obs=data["observations"],
                act=data["actions"],
                rew=data["rewards"],
                done=data["terminals"],
                trunc=data["truncations"],
            )
    else:
        raise ValueError(f"unknown store {kind!r}")
    print(json.dumps({"baseline_kib": baseline, "peak_kib": rss_kib("VmHWM")}))
    del store


def rss_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not found in /proc/self/status")


def run_memory(args: argparse.Namespace) -> None:
    print(f"\n== peak memory of {args.size:,} transitions (fresh subprocess each) ==")
    results = {}
    for kind in ("recrl", "cpprb", "cpprb-next_of"):
        command = [sys.executable, __file__, "--memory-child", kind, "--size", str(args.size)]
        command += ["--features", str(args.features)]
        completed = subprocess.run(command, capture_output=True, text=True, check=False)
        if completed.returncode != 0:
            reason = completed.stderr.strip().splitlines()[-1:] or ["no output"]
            print(f"{kind:>24}: skipped ({reason[0]})")
            continue
        figures = json.loads(completed.stdout.strip().splitlines()[-1])
        grown = (figures["peak_kib"] - figures["baseline_kib"]) / 2**20
        results[kind] = grown
        ratio = f"{grown / results['recrl']:5.2f}x recrl" if "recrl" in results else ""
        print(
            f"{kind:>24}: peak RSS {figures['peak_kib'] / 2**20:6.2f} GiB, "
            f"store {grown:6.2f} GiB {ratio}",
            flush=True,
        )
    if "recrl" in results and "cpprb" in results:
        ratio = results["recrl"] / results["cpprb"]
        print(f"recrl / cpprb (explicit next observations): {ratio:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1_000_000, help="transitions N")
    parser.add_argument("--features", type=int, default=1044, help="observation width S")
    parser.add_argument("--batch", type=int, default=512, help="batch size B")
    parser.add_argument("--iterations", type=int, default=200, help="timed calls per store")
    parser.add_argument("--only", choices=["speed", "memory"], help="run one part")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.size % CHUNK:
        parser.error(f"--size must be a multiple of {CHUNK}")
    if args.memory_child:
        memory_child(args.memory_child, args.size, args.features)
        return

    print(
        f"python {platform.python_version()}, torch {torch.__version__}, "
        f"{os.cpu_count()} cpus, torch threads {torch.get_num_threads()}, "
        f"load average {os.getloadavg()[0]:.1f} at start"
    )
    if args.only != "memory":
        run_speed(args)
    if args.only != "speed":
        run_memory(args)


if __name__ == "__main__":
    main()
