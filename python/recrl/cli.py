"""The ``recrl`` command: synthesise, prepare and inspect datasets, train TSCAC, run the demo."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

import recrl
from recrl.errors import RecrlError

logger = logging.getLogger("recrl")


def _add_prepare_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, help="folder of the prepared dataset")
    parser.add_argument(
        "--episodes",
        choices=("session", "user"),
        default="session",
        help="cut episodes at inactivity gaps (session) or keep one per user (default: session)",
    )
    parser.add_argument(
        "--session-gap-minutes",
        type=float,
        default=30.0,
        help="inactivity gap that ends a session, in minutes (default: 30)",
    )
    parser.add_argument(
        "--split",
        choices=("time", "user"),
        default="time",
        help="split rows by time or users by hash into train/validation/test (default: time)",
    )
    parser.add_argument(
        "--split-fractions",
        type=float,
        nargs=3,
        default=(0.6, 0.2, 0.2),
        metavar=("TRAIN", "VALIDATION", "TEST"),
        help="fractions summing to 1 (default: 0.6 0.2 0.2)",
    )
    parser.add_argument(
        "--history-length",
        type=int,
        default=10,
        help="number of previously seen items in each state (default: 10)",
    )
    parser.add_argument(
        "--on-invalid",
        choices=("error", "drop", "impute"),
        default="error",
        help="NaN, infinite or absurd per-row values: stop, drop the row, or impute the training "
        "mean (default: error)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the user hash for --split user"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset")


def _prepare_options(args: argparse.Namespace) -> Any:
    from recrl.data import PrepareOptions

    return PrepareOptions(
        episodes=args.episodes,
        session_gap_minutes=args.session_gap_minutes,
        split=args.split,
        split_fractions=tuple(args.split_fractions),
        history_length=args.history_length,
        on_invalid=args.on_invalid,
        seed=args.seed,
    )


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recrl", description=__doc__)
    parser.add_argument("--version", action="version", version=f"recrl {recrl.__version__}")
    parser.add_argument("--verbose", "-v", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(dest="command", required=True)

    synth = commands.add_parser("synth", help="write a synthetic log in the KuaiRand layout")
    synth.add_argument("--rows", type=int, required=True, help="number of exposures")
    synth.add_argument(
        "--users", type=int, default=None, help="number of users (default: rows/2000)"
    )
    synth.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    synth.add_argument("--out", type=Path, required=True, help="folder to write the files into")

    prepare = commands.add_parser("prepare", help="turn a log into a prepared dataset")
    sources = prepare.add_subparsers(dest="source_kind", required=True)
    kuairand = sources.add_parser("kuairand", help="a KuaiRand data/ folder or log file")
    kuairand.add_argument(
        "--source", type=Path, required=True, help="KuaiRand data/ folder or file"
    )
    kuairand.add_argument(
        "--logs",
        choices=("standard", "random", "all"),
        default="standard",
        help="which logs of the folder to read (default: standard)",
    )
    _add_prepare_options(kuairand)
    taobao = sources.add_parser("taobao", help="Taobao UserBehavior CSV (no header)")
    taobao.add_argument("--source", type=Path, required=True, help="UserBehavior CSV file")
    _add_prepare_options(taobao)
    otto = sources.add_parser("otto", help="OTTO session JSONL")
    otto.add_argument("--source", type=Path, required=True, help="OTTO JSONL file")
    _add_prepare_options(otto)
    table = sources.add_parser("table", help="any CSV, TSV or Parquet log with a declared schema")
    table.add_argument("--source", type=Path, required=True, help="the log file")
    table.add_argument("--schema", type=Path, required=True, help="YAML or JSON schema file")
    _add_prepare_options(table)

    info = commands.add_parser("info", help="print the statistics of a prepared dataset")
    info.add_argument("dataset", type=Path, help="prepared dataset folder")

    tscac = commands.add_parser(
        "tscac", help="train TSCAC and its baselines on a prepared dataset and report them"
    )
    tscac.add_argument("--data", type=Path, required=True, help="prepared dataset folder")
    tscac.add_argument(
        "--config",
        type=Path,
        default=None,
        help="YAML file with sections run, common and methods (default: built-in settings)",
    )
    tscac.add_argument(
        "--out", type=Path, default=Path("runs/tscac"), help="run folder (default: runs/tscac)"
    )
    _add_device_options(tscac)
    tscac.add_argument(
        "--seed",
        type=int,
        nargs="+",
        default=[0],
        help="one or more seeds; the table reports mean and spread over them (default: 0)",
    )

    demo = commands.add_parser(
        "demo",
        help="synthesise a log, prepare it, print its statistics and run a short TSCAC comparison",
    )
    demo.add_argument("--rows", type=int, default=200_000, help="rows of the synthetic log")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    demo.add_argument("--out", type=Path, default=None, help="folder to keep the files in")
    demo.add_argument(
        "--tscac-steps",
        type=int,
        default=40,
        help="gradient steps per method and stage of the demo's TSCAC run; 0 skips it "
        "(default: 40)",
    )
    _add_device_options(demo)
    return parser


def _add_device_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda", "auto"),
        default="cpu",
        help="torch device; auto picks cuda when available (default: cpu)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads of torch; small models run fastest on one (default: 1)",
    )


def _torch_device(args: argparse.Namespace) -> str:
    import torch

    torch.set_num_threads(max(1, args.threads))
    if args.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        raise RecrlError("--device cuda: no CUDA device is available; use --device cpu or auto")
    return str(args.device)


def _run_tscac(
    dataset_path: Path,
    out: Path,
    configuration: dict[str, Any] | None,
    seeds: list[int],
    device: str,
) -> None:
    from recrl import data
    from recrl.tscac.runner import run

    started = time.perf_counter()
    dataset = data.load_prepared(dataset_path)
    run(dataset, out, configuration, seeds=tuple(seeds), device=device)
    print((out / "table.md").read_text())
    print(f"tscac run written to {out} in {time.perf_counter() - started:.1f} s")


#: Settings of the demo's TSCAC run: small networks and few steps, to finish in minutes.
def _demo_configuration(steps: int) -> dict[str, Any]:
    return {
        "run": {
            "behaviour_steps": max(20, 2 * steps),
            "lambda_sweep": [1e-1, 1e-2, 1e-3, 1e-4, 1e-5],
            "lambda_sweep_steps": max(1, steps // 2),
        },
        "common": {
            "candidates": 50,
            "batch_size": 128,
            "hidden_dims": [32],
            "steps": steps,
            "evaluation_interval": max(1, steps // 2),
        },
    }


def _read_log(args: argparse.Namespace) -> Any:
    from recrl import data

    if args.source_kind == "kuairand":
        return data.read_kuairand(args.source, logs=args.logs)
    if args.source_kind == "taobao":
        return data.read_taobao(args.source)
    if args.source_kind == "otto":
        return data.read_otto(args.source)
    import yaml

    schema = data.TableSchema.from_dict(yaml.safe_load(args.schema.read_text()))
    return data.read_table(args.source, schema)


def format_statistics(manifest: dict[str, Any]) -> str:
    """Render the trajectory statistics of a prepared dataset's manifest as text."""
    episodes = manifest["episode_statistics"]
    lines = [
        f"dataset      {manifest['schema']} ({manifest['rows']:,} rows, "
        f"{manifest['users']:,} users, {manifest['items']:,} items)",
        f"episodes     {manifest['episodes']:,} ({episodes['terminated']:,} terminated, "
        f"{episodes['truncated']:,} truncated), mean length {episodes['mean_length']:.1f}, "
        f"max {episodes['max_length']:,}",
        "split        " + ", ".join(f"{k} {v:,}" for k, v in manifest["split"]["rows"].items()),
        "rewards      " + ", ".join(f"{k} {v:.4g}" for k, v in manifest["reward_means"].items()),
        "repairs      "
        + (", ".join(f"{k} {v:,}" for k, v in sorted(manifest["counts"].items())) or "none"),
    ]
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    from recrl import data

    if args.command == "synth":
        config = data.SyntheticConfig(rows=args.rows, users=args.users, seed=args.seed)
        path = data.write_synthetic_kuairand(config, args.out)
        print(f"wrote a synthetic KuaiRand log of {args.rows:,} rows to {path}")
        return 0
    if args.command == "prepare":
        started = time.perf_counter()
        log = _read_log(args)
        dataset = data.prepare(log, args.out, _prepare_options(args), overwrite=args.overwrite)
        print(format_statistics(dataset.manifest))
        print(f"prepared {args.out} in {time.perf_counter() - started:.1f} s")
        return 0
    if args.command == "info":
        dataset = data.load_prepared(args.dataset)
        print(format_statistics(dataset.manifest))
        print(json.dumps(dataset.manifest["split"], indent=2))
        return 0
    if args.command == "tscac":
        import yaml

        configuration = yaml.safe_load(args.config.read_text()) if args.config else None
        _run_tscac(args.data, args.out, configuration, args.seed, _torch_device(args))
        return 0
    if args.command == "demo":
        return _demo(args)
    raise AssertionError(f"unhandled command {args.command}")


def _demo(args: argparse.Namespace) -> int:
    from recrl import data

    with tempfile.TemporaryDirectory(prefix="recrl-demo-") as scratch:
        root = args.out or Path(scratch)
        started = time.perf_counter()
        source = data.write_synthetic_kuairand(
            data.SyntheticConfig(rows=args.rows, seed=args.seed), root / "synthetic"
        )
        log = data.read_kuairand(source)
        dataset = data.prepare(log, root / "prepared", overwrite=True)
        print(format_statistics(dataset.manifest))
        lengths = np.diff(dataset["episode_starts"])
        p50, p90 = np.percentile(lengths, [50, 90])
        print(f"lengths      p50 {p50:.0f}, p90 {p90:.0f}, one-step {int((lengths == 1).sum()):,}")
        if args.tscac_steps > 0:
            _run_tscac(
                root / "prepared",
                root / "tscac",
                _demo_configuration(args.tscac_steps),
                [args.seed],
                _torch_device(args),
            )
        print(f"demo finished in {time.perf_counter() - started:.1f} s (data in {root})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``recrl`` command line and return its exit status."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return _run(args)
    except (RecrlError, OSError) as error:
        print(f"recrl {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
