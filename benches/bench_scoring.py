"""Latency of recrl.Scorer beside NumPy and torch, per call, in one process.

Cases:
  fusion: weighted sum of 8 predictions for 1,000 candidates, then the top 50.
  mlp-1:  MLP 1044 -> 32 -> 1 (ReLU) for one state.
  mlp-512: the same MLP for a batch of 512 states.

Usage: python benches/bench_scoring.py [--calls 2000] [--rounds 3] [--baseline-core PATH]
Each round times every alternative `--calls` times, call by call. The table shows, per
alternative, p50 and p99 of the round with the lowest p50 and the ratio of its p50 to recrl's.
`--baseline-core` loads a second compiled `_core` extension (for example one built from an
earlier commit) and times its `Scorer` on the same files as one more alternative.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

from recrl.nets import MLP
from recrl.serving import Fusion, Scorer, export_fusion, export_mlp


def percentiles(function: Callable[[], object], calls: int) -> tuple[float, float]:
    for _ in range(min(200, calls)):  # warm-up
        function()
    times = np.empty(calls)
    clock = time.perf_counter_ns
    for i in range(calls):
        started = clock()
        function()
        times[i] = clock() - started
    p50, p99 = np.percentile(times, [50, 99]) / 1000.0
    return float(p50), float(p99)


def load_core(path: str) -> ModuleType:
    """Load a compiled ``_core`` extension from `path` beside the installed one."""
    spec = importlib.util.spec_from_file_location("_core", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"--baseline-core: {path} is not a loadable extension module")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fusion_case(folder: Path, baseline: ModuleType | None) -> dict[str, Callable[[], object]]:
    rng = np.random.default_rng(0)
    predictions = rng.random((1000, 8), dtype=np.float32)
    weights = rng.random(8, dtype=np.float32)
    path = export_fusion(folder / "fusion.safetensors", Fusion(weights.tolist()))
    scorer = Scorer.load(path)
    predictions_t = torch.from_numpy(predictions)
    weights_t = torch.from_numpy(weights)

    def numpy_top_k() -> object:
        scores = predictions @ weights
        best = np.argpartition(-scores, 50)[:50]
        return best[np.argsort(-scores[best], kind="stable")]

    def torch_top_k() -> object:
        return torch.topk(predictions_t @ weights_t, 50)

    cases: dict[str, Callable[[], object]] = {
        "recrl Scorer.top_k": lambda: scorer.top_k(None, predictions, 50),
        "numpy matmul+argpartition": numpy_top_k,
        "torch matmul+topk": torch_top_k,
    }
    if baseline is not None:
        old = baseline.Scorer.load(str(path))
        cases["baseline core Scorer.top_k"] = lambda: old.top_k(None, predictions, 50)
    return cases


def mlp_case(
    folder: Path, batch: int | None, baseline: ModuleType | None
) -> dict[str, Callable[[], object]]:
    torch.manual_seed(0)
    mlp = MLP(1044, [32], 1).eval()
    path = export_mlp(mlp, folder / "mlp.safetensors")
    scorer = Scorer.load(path)
    rng = np.random.default_rng(1)
    inputs = rng.normal(size=(batch or 1, 1044)).astype(np.float32)
    if batch is None:
        inputs = inputs[0]
    w1 = mlp.layers[0].weight.detach().numpy().copy()
    b1 = mlp.layers[0].bias.detach().numpy().copy()
    w2 = mlp.layers[2].weight.detach().numpy().copy()
    b2 = mlp.layers[2].bias.detach().numpy().copy()
    w1t, w2t = np.ascontiguousarray(w1.T), np.ascontiguousarray(w2.T)
    inputs_t = torch.from_numpy(inputs if batch else inputs[None])
    scripted = torch.jit.script(mlp)

    def numpy_forward() -> object:
        return np.maximum(inputs @ w1t + b1, 0) @ w2t + b2

    def torch_forward() -> object:
        with torch.no_grad():
            return mlp(inputs_t)

    def script_forward() -> object:
        with torch.no_grad():
            return scripted(inputs_t)

    cases = {"recrl Scorer.forward": lambda: scorer.forward(inputs)}
    if batch:
        cases["recrl Scorer.forward threads=2"] = lambda: scorer.forward(inputs, threads=2)
    if baseline is not None:
        old = baseline.Scorer.load(str(path))
        cases["baseline core Scorer.forward"] = lambda: old.forward(inputs)
    cases.update(
        {"numpy": numpy_forward, "torch eager": torch_forward, "torchscript": script_forward}
    )
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="timed calls per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every alternative")
    parser.add_argument(
        "--baseline-core",
        help="path of another compiled recrl _core extension to time beside the installed one",
    )
    args = parser.parse_args()
    baseline = load_core(args.baseline_core) if args.baseline_core else None
    print(
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), numpy {np.__version__}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}"
    )
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        cases = {
            "fusion 1000x8 + top-50": fusion_case(folder, baseline),
            "MLP 1044-32-1, one state": mlp_case(folder, None, baseline),
            "MLP 1044-32-1, batch 512": mlp_case(folder, 512, baseline),
        }
        for title, alternatives in cases.items():
            best: dict[str, tuple[float, float]] = {}
            for _ in range(args.rounds):
                for name, function in alternatives.items():
                    p50, p99 = percentiles(function, args.calls)
                    if name not in best or p50 < best[name][0]:
                        best[name] = (p50, p99)
            reference = next(iter(best.values()))[0]
            print(f"\n{title}: {args.calls} calls x {args.rounds} rounds, best round")
            print(f"  {'alternative':34s} {'p50 us':>9s} {'p99 us':>9s} {'p50 / recrl':>12s}")
            for name, (p50, p99) in best.items():
                print(f"  {name:34s} {p50:9.2f} {p99:9.2f} {p50 / reference:11.2f}x")
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
