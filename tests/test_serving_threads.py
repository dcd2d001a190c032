"""One Scorer shared by Python threads: same results, and scoring runs without the GIL.

Whether two threads finish faster than one depends on a second core being free, which a shared
machine does not promise, so the overlap is shown directly: while one thread scores, another
thread keeps running Python code. The throughput of several threads is measured in benches/.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from recrl.nets import MLP
from recrl.serving import Scorer, export_mlp

CALLS = 6


def make_scorer(tmp_path: Path) -> tuple[Scorer, np.ndarray, np.ndarray]:
    torch.manual_seed(0)
    path = export_mlp(MLP(128, [64, 32], 1).eval(), tmp_path / "m.safetensors", state_dim=64)
    rng = np.random.default_rng(0)
    states = rng.normal(size=(128, 64)).astype(np.float32)
    candidates = rng.normal(size=(128, 100, 64)).astype(np.float32)
    return Scorer.load(path), states, candidates


def test_two_threads_get_the_same_scores(tmp_path: Path) -> None:
    scorer, states, candidates = make_scorer(tmp_path)
    expected = scorer.score_batch(states, candidates)
    results: list = [None, None]
    barrier = threading.Barrier(2)

    def work(slot: int) -> None:
        barrier.wait()
        results[slot] = [scorer.score_batch(states, candidates) for _ in range(CALLS)]

    workers = [threading.Thread(target=work, args=(slot,)) for slot in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    for outputs in results:
        assert len(outputs) == CALLS
        for output in outputs:
            np.testing.assert_array_equal(output, expected)


@pytest.mark.slow
def test_scoring_releases_the_gil(tmp_path: Path) -> None:
    scorer, states, candidates = make_scorer(tmp_path)
    # Large enough that one call takes tens of milliseconds.
    candidates = np.repeat(candidates, 8, axis=1)
    scorer.score_batch(states, candidates)
    ticks = [0]
    done = threading.Event()
    during: list[int] = []

    def count() -> None:
        while not done.is_set():
            ticks[0] += 1

    def score() -> None:
        for _ in range(CALLS):
            before = ticks[0]
            scorer.score_batch(states, candidates)
            during.append(ticks[0] - before)
        done.set()

    # With a switch interval of one second, a thread that holds the GIL keeps it for a whole
    # call, and the counting thread can force a switch at most once in the 6 calls. So the
    # count moves during every call only if each call releases the GIL. The operating system
    # shares even a single core between the two threads, so no second core is needed.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1.0)
    try:
        counter = threading.Thread(target=count)
        scorer_thread = threading.Thread(target=score)
        counter.start()
        scorer_thread.start()
        scorer_thread.join()
        counter.join()
    finally:
        sys.setswitchinterval(interval)
    assert len(during) == CALLS
    assert min(during) > 0, f"the count did not move during some calls: {during}"
