"""The recrl command: prepare datasets, train TSCAC and RMTL, export and serve policies."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

import recrl
from recrl import runs
from recrl.errors import InvalidArgumentError, RecrlError, RecrlIOError
from recrl.progress import set_progress
from recrl.settings import (
    RMTL_SECTIONS,
    TSCAC_SECTIONS,
    add_common_options,
    command_sections,
    relax_required,
    resolve_settings,
)

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
        "--seed",
        type=int,
        default=0,
        help="seed of the user hash for --split user, an integer >= 0 (default: 0)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    parser.add_argument(
        "--shards",
        type=int,
        default=None,
        metavar="N",
        help="split users by hash into N shards and prepare them one at a time, so memory is "
        "bounded by the largest shard (default: one unsharded dataset)",
    )


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
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="hide every progress bar (by default bars show when stderr is a terminal)",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    synth = commands.add_parser("synth", help="write a synthetic log in the KuaiRand layout")
    synth.add_argument("--rows", type=int, required=True, help="number of exposures, >= 1")
    synth.add_argument(
        "--users", type=int, default=None, help="number of users, >= 1 (default: rows/2000)"
    )
    synth.add_argument(
        "--seed", type=int, default=0, help="random seed, an integer >= 0 (default: 0)"
    )
    synth.add_argument("--out", type=Path, required=True, help="folder to write the files into")
    synth.add_argument(
        "--overwrite", action="store_true", help="write into a folder that is not empty"
    )

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

    plot = commands.add_parser(
        "plot", help="write PNG plots of a run's training curves and evaluation tables"
    )
    plot.add_argument(
        "run_directory", type=Path, help="run folder with metrics.csv (tscac, rmtl or demo run)"
    )
    plot.add_argument(
        "--out", type=Path, default=None, help="folder of the PNG files (default: RUN_DIR/plots)"
    )

    _add_rmtl_parser(commands)

    export = commands.add_parser(
        "export", help="write a trained actor as a policy file for recrl.Scorer"
    )
    export.add_argument(
        "source", type=Path, help="run folder with actor.safetensors and actor.json, or either file"
    )
    export.add_argument("--out", type=Path, required=True, help="policy file to write")
    export.add_argument(
        "--item-vocabulary",
        type=Path,
        default=None,
        help="prepared dataset folder or item_vocabulary.npy (default: the dataset named in "
        "actor.json)",
    )

    score = commands.add_parser("score", help="score a JSONL file of requests with a policy")
    score.add_argument("--policy", type=Path, required=True, help="policy file from recrl export")
    score.add_argument(
        "--requests", type=Path, required=True, help="JSONL file, one request a line"
    )
    score.add_argument("--out", type=Path, required=True, help="JSONL file of the top-k results")
    score.add_argument(
        "--k", type=int, default=50, help="candidates kept per request, >= 0 (default: 50)"
    )
    score.add_argument(
        "--invalid",
        choices=("raise", "rank_last"),
        default="raise",
        help="candidates with NaN or infinite inputs: stop with an error, or rank them last "
        "(default: raise)",
    )

    tscac = commands.add_parser(
        "tscac", help="train TSCAC and its baselines on a prepared dataset and report them"
    )
    tscac.add_argument("--data", type=Path, required=True, help="prepared dataset folder")
    tscac.add_argument(
        "--out", type=Path, default=Path("runs/tscac"), help="run folder (default: runs/tscac)"
    )
    _add_device_options(tscac)
    tscac.add_argument(
        "--seed",
        type=int,
        nargs="+",
        default=[0],
        help="one or more seeds, integers >= 0; the table reports mean and spread over them "
        "(default: 0)",
    )
    _add_resume_options(tscac, "gradient steps of a training stage")
    _add_reproducibility_options(tscac)

    demo = commands.add_parser(
        "demo",
        help="synthesise a log, prepare it, print its statistics, and run short TSCAC and RMTL "
        "pipelines",
    )
    demo.add_argument(
        "--rows",
        type=int,
        default=100_000,
        help="rows of the synthetic log, >= 1 (default: 100,000)",
    )
    demo.add_argument(
        "--seed", type=int, default=0, help="random seed, an integer >= 0 (default: 0)"
    )
    demo.add_argument("--out", type=Path, default=None, help="folder to keep the files in")
    demo.add_argument(
        "--no-rmtl",
        dest="rmtl",
        action="store_false",
        help="skip the short RMTL run (a small ESMM and its RMTL version, one epoch per stage, "
        "a few seconds per 100,000 rows)",
    )
    demo.add_argument(
        "--tscac-steps",
        type=int,
        default=40,
        help="gradient steps per method and stage of the demo's TSCAC run, >= 0; 0 skips it "
        "(default: 40)",
    )
    _add_device_options(demo)
    _add_reproducibility_options(demo)
    add_common_options(parser)
    return parser


def _add_resume_options(parser: argparse.ArgumentParser, unit: str) -> None:
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run in --out when it contains one (without this, such a folder is "
        "an error, so a finished run is never lost by mistake)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its checkpoints: finished stages are loaded, the "
        "interrupted one continues from its last checkpoint; the settings must equal the run's",
    )
    parser.add_argument(
        "--checkpoint-every",
        type=int,
        default=0,
        metavar="N",
        help=f"write a checkpoint every N {unit}, besides the one at the end of each stage; "
        "0 writes only those (default: 0)",
    )


def _add_reproducibility_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--deterministic",
        action="store_true",
        help="use torch's deterministic algorithms (slower; an operation without one raises)",
    )


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
        help="CPU threads of torch, >= 1; small models run fastest on one (default: 1)",
    )


def _torch_device(args: argparse.Namespace) -> str:
    import torch

    _check_threads(args.threads)
    torch.set_num_threads(args.threads)
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
    settings: dict[str, Any],
    argv: Sequence[str],
    resume: bool = False,
    checkpoint_every: int = 0,
    overwrite: bool = False,
) -> None:
    from recrl import data
    from recrl.tscac.io import config_to_dict
    from recrl.tscac.runner import load_run_configuration, run

    if checkpoint_every < 0:
        raise InvalidArgumentError(f"--checkpoint-every: expected N >= 0, got {checkpoint_every}")
    _check_run_folder(out, resume, overwrite)
    started = time.perf_counter()
    device = _join_process_group(device)
    dataset = data.load_prepared(dataset_path)
    run_config, configs = load_run_configuration(configuration)
    record = runs.start_run(
        out, command="tscac", config=settings, seed=seeds, argv=argv, write=False
    )
    if _is_main():
        runs.write_run_file(
            record,
            resolved={
                "run": config_to_dict(run_config),
                "methods": {name: config_to_dict(config) for name, config in configs.items()},
            },
        )
    with _metrics_writer(out, resume) as metrics:
        result = run(
            dataset,
            out,
            configuration,
            seeds=tuple(seeds),
            device=device,
            metrics=metrics,
            resume=resume,
            checkpoint_every=checkpoint_every,
        )
    if _is_main():
        runs.finish_run(
            record,
            data=dataset_path,
            metrics=runs.tscac_summary(result, dataset.reward_names, configs),
        )
        print((out / "table.md").read_text())
        print(f"tscac run written to {out} in {time.perf_counter() - started:.1f} s")


def _check_run_folder(out: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to resume where no run started, or to replace a run without ``--overwrite``."""
    started = (out / "run.json").is_file() or (out / "metrics.csv").is_file()
    if resume and overwrite:
        raise InvalidArgumentError("--resume and --overwrite: pass one of them, not both")
    if resume and not (out / "metrics.csv").is_file():
        raise RecrlIOError(
            f"{out / 'metrics.csv'}: not found; --resume continues a run started in that folder"
        )
    if not resume and started and not overwrite:
        raise RecrlIOError(
            f"{out}: contains a run already; pass --resume to continue it, --overwrite to replace "
            "it, or choose another --out"
        )


def _check_threads(threads: int | None) -> None:
    if threads is not None and threads < 1:
        raise InvalidArgumentError(f"--threads: expected a count >= 1, got {threads}")


def _metrics_writer(out: Path, resume: bool) -> Any:
    """Return the run's metrics writer as a context manager, holding None on ranks other than 0.

    A resumed run keeps the rows logged up to its latest checkpoint and logs the steps after it
    again, so ``metrics.csv`` ends as that of an uninterrupted run.
    """
    import contextlib

    from recrl.checkpoint import metrics_rows_at_checkpoint
    from recrl.metrics_writer import MetricsWriter

    if not _is_main():
        return contextlib.nullcontext(None)
    keep_rows = metrics_rows_at_checkpoint(out / "checkpoints") if resume else None
    return MetricsWriter(out, keep_rows=keep_rows)


def _join_process_group(device: str) -> str:
    """Under torchrun, join the process group and return this rank's device.

    Ranks other than 0 log warnings and errors only, so the log shows each message once.
    """
    from recrl import distributed

    device = distributed.setup(device)
    if not distributed.is_main():
        logging.getLogger().setLevel(logging.WARNING)
    return device


def _is_main() -> bool:
    from recrl import distributed

    return distributed.is_main()


def _demo_tscac_configuration(steps: int) -> dict[str, Any]:
    """Return settings of the demo's TSCAC run: small networks and few steps."""
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


def _add_rmtl_parser(commands: Any) -> None:
    from recrl.nets.mtl import BACKBONES

    rmtl = commands.add_parser(
        "rmtl",
        help="pretrain multi-task models, train RMTL critics, fine-tune, and write the table",
    )
    rmtl.add_argument("--data", type=Path, required=True, help="prepared dataset folder")
    rmtl.add_argument(
        "--backbone",
        dest="backbones",
        nargs="+",
        required=True,
        choices=sorted(BACKBONES),
        help="one or more backbones, each trained with and without RMTL (setting: backbones)",
    )
    rmtl.add_argument(
        "--out", type=Path, default=Path("rmtl-run"), help="run folder (default: rmtl-run)"
    )
    rmtl.add_argument(
        "--device",
        default="cpu",
        help="torch device, e.g. cpu, cuda or cuda:1; 'auto' picks cuda when available "
        "(default: cpu)",
    )
    rmtl.add_argument(
        "--seed",
        type=int,
        nargs="+",
        default=[0],
        help="one or more seeds, integers >= 0 (default: 0)",
    )
    _add_reproducibility_options(rmtl)
    rmtl.add_argument(
        "--ablations",
        nargs="*",
        default=None,
        metavar="BACKBONE",
        help="also fine-tune with the ablated weightings CW, WL and NLC: the backbones named, "
        "or every backbone when none is named",
    )
    rmtl.add_argument(
        "--transfer",
        nargs="+",
        default=[],
        metavar="SOURCE:TARGET",
        help="fine-tune TARGET with the critics trained against SOURCE (both in --backbone)",
    )
    rmtl.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads, >= 1 (default: torch's choice); 1 is fastest on a busy machine",
    )
    rmtl.add_argument("--no-plots", action="store_true", help="skip the PNG curves")
    _add_resume_options(rmtl, "batches (optimizer steps) of a training stage")


def _run_rmtl_command(
    args: argparse.Namespace, settings: dict[str, Any], argv: Sequence[str]
) -> int:
    import torch

    from recrl.errors import InvalidArgumentError
    from recrl.rmtl import RMTLConfig, RunPlan, run_rmtl

    _check_threads(args.threads)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        kind = torch.device(device).type
    except RuntimeError as error:
        raise InvalidArgumentError(
            f"--device: expected cpu, cuda, cuda:N or auto, got {device!r}"
        ) from error
    if kind not in ("cpu", "cuda"):
        raise InvalidArgumentError(f"--device: expected cpu, cuda, cuda:N or auto, got {device!r}")
    if kind == "cuda" and not torch.cuda.is_available():
        raise RecrlError(f"--device {device}: no CUDA device is available; use cpu or auto")
    config = RMTLConfig.from_dict({key: settings[key] for key in RMTL_SECTIONS})
    transfers = []
    for pair in args.transfer:
        source, _, target = pair.partition(":")
        if not source or not target:
            raise InvalidArgumentError(
                f"--transfer: expected SOURCE:TARGET such as mmoe:esmm, got {pair!r}"
            )
        transfers.append((source, target))
    backbones = tuple(dict.fromkeys(args.backbones))
    plan = RunPlan(
        backbones=backbones,
        seeds=tuple(dict.fromkeys(args.seed)),
        ablations=_ablation_backbones(args.ablations, backbones),
        transfers=tuple(transfers),
        plots=not args.no_plots,
    )
    if args.checkpoint_every < 0:
        raise InvalidArgumentError(
            f"--checkpoint-every: expected N >= 0, got {args.checkpoint_every}"
        )
    _check_run_folder(args.out, args.resume, args.overwrite)
    started = time.perf_counter()
    device = _join_process_group(device)
    _seed(args.seed[0], args.deterministic)
    record = runs.start_run(
        args.out, command="rmtl", config=settings, seed=args.seed, argv=argv, write=_is_main()
    )
    with _metrics_writer(args.out, args.resume) as metrics:
        results = run_rmtl(
            args.data,
            args.out,
            config,
            plan,
            device=device,
            metrics=metrics,
            resume=args.resume,
            checkpoint_every=args.checkpoint_every,
        )
    if _is_main():
        runs.finish_run(record, data=args.data, metrics=runs.rmtl_summary(results))
        print((args.out / "table.md").read_text(), end="")
        print(f"rmtl finished in {time.perf_counter() - started:.1f} s; results in {args.out}")
    return 0


def _seed(seed: int, deterministic: bool) -> None:
    from recrl.seeding import seed_everything

    seed_everything(seed, deterministic=deterministic)


def _ablation_backbones(named: list[str] | None, backbones: tuple[str, ...]) -> tuple[str, ...]:
    if named is None:
        return ()
    return tuple(dict.fromkeys(named)) if named else backbones


def _read_log(args: argparse.Namespace) -> Any:
    from recrl import data

    if args.source_kind == "kuairand":
        return data.read_kuairand(args.source, logs=args.logs)
    if args.source_kind == "taobao":
        return data.read_taobao(args.source)
    if args.source_kind == "otto":
        return data.read_otto(args.source)

    schema = data.TableSchema.from_dict(_load_yaml(args.schema))
    return data.read_table(args.source, schema)


def _log_source(args: argparse.Namespace) -> Any:
    from recrl import data
    from recrl.data.partition import LogSource

    schema = None
    if args.source_kind == "table":
        schema = data.TableSchema.from_dict(_load_yaml(args.schema))
    return LogSource(
        args.source_kind, args.source, logs=getattr(args, "logs", "standard"), schema=schema
    )


def _load_yaml(path: Path) -> Any:
    """Parse a YAML file, turning syntax errors into a message that names the file."""
    import yaml

    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise InvalidArgumentError(f"{path}: invalid YAML: {error}") from error


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
        "counts       "
        + (", ".join(f"{k} {v:,}" for k, v in sorted(manifest["counts"].items())) or "none"),
    ]
    return "\n".join(lines)


def _run(args: argparse.Namespace, settings: dict[str, Any], argv: Sequence[str]) -> int:
    from recrl import data

    if args.command == "synth":
        config = data.SyntheticConfig(rows=args.rows, users=args.users, seed=args.seed)
        if args.out.exists() and any(args.out.iterdir()) and not args.overwrite:
            raise RecrlIOError(
                f"{args.out}: exists and is not empty; pass --overwrite to write the synthetic "
                "files into it anyway"
            )
        path = data.write_synthetic_kuairand(config, args.out)
        print(f"wrote a synthetic KuaiRand log of {args.rows:,} rows to {path}")
        return 0
    if args.command == "prepare":
        started = time.perf_counter()
        # The dataset folder appears whole when prepare renames it into place, so run.json is
        # written after that; it keeps the start time taken here.
        record = runs.start_run(
            args.out, command="prepare", config=settings, seed=args.seed, argv=argv, write=False
        )
        # Refuse the output folder before a long read, not after it.
        data.dataset.check_output_folder(args.out, args.overwrite)
        dataset: data.PreparedDataset
        if args.shards is not None:
            from recrl.data.shards import prepare_sharded

            dataset = prepare_sharded(
                _log_source(args),
                args.out,
                args.shards,
                _prepare_options(args),
                overwrite=args.overwrite,
            )
        else:
            log = _read_log(args)
            dataset = data.prepare(log, args.out, _prepare_options(args), overwrite=args.overwrite)
        runs.write_run_file(record)
        summary = {"rows": dataset.manifest["rows"], "episodes": dataset.manifest["episodes"]}
        runs.finish_run(record, data=args.source, metrics=summary)
        print(format_statistics(dataset.manifest))
        print(f"prepared {args.out} in {time.perf_counter() - started:.1f} s")
        return 0
    if args.command == "info":
        dataset = data.load_prepared(args.dataset)
        print(format_statistics(dataset.manifest))
        print(json.dumps(dataset.manifest["split"], indent=2))
        return 0
    if args.command == "plot":
        from recrl.plotting import plot_run

        paths = plot_run(args.run_directory, args.out)
        for path in paths:
            print(f"wrote {path}")
        return 0
    if args.command == "rmtl":
        return _run_rmtl_command(args, settings, argv)
    if args.command == "tscac":
        configuration = {key: settings[key] for key in TSCAC_SECTIONS}
        _seed(args.seed[0], args.deterministic)
        _run_tscac(
            args.data,
            args.out,
            configuration,
            args.seed,
            _torch_device(args),
            settings,
            argv,
            resume=args.resume,
            checkpoint_every=args.checkpoint_every,
            overwrite=args.overwrite,
        )
        return 0
    if args.command == "demo":
        return _demo(args, settings, argv)
    if args.command == "export":
        from recrl.serving import export_run

        path = export_run(args.source, args.out, item_vocabulary=args.item_vocabulary)
        print(f"wrote policy {path}")
        return 0
    if args.command == "score":
        from recrl.serving.offline import score_file

        if args.k < 0:
            raise RecrlError(f"--k: expected a count >= 0, got {args.k}")
        count = score_file(
            args.policy,
            args.requests,
            args.out,
            k=args.k,
            invalid=args.invalid,
            progress=not args.no_progress,
        )
        print(f"scored {count:,} requests into {args.out}")
        return 0
    raise AssertionError(f"unhandled command {args.command}")


def _demo(args: argparse.Namespace, settings: dict[str, Any], argv: Sequence[str]) -> int:
    from recrl import data

    _seed(args.seed, args.deterministic)
    with tempfile.TemporaryDirectory(prefix="recrl-demo-") as scratch:
        root = args.out or Path(scratch)
        started = time.perf_counter()
        # Only a kept demo folder gets a record; a temporary one would add runs.csv to /tmp.
        record = None
        if args.out:
            record = runs.start_run(
                root, command="demo", config=settings, seed=args.seed, argv=argv
            )
        source = data.write_synthetic_kuairand(
            data.SyntheticConfig(rows=args.rows, seed=args.seed), root / "synthetic"
        )
        log = data.read_kuairand(source)
        options = {"source": source, "out": root / "prepared", **asdict(data.PrepareOptions())}
        prepared = runs.start_run(
            root / "prepared", command="prepare", config=options, seed=0, argv=argv, write=False
        )
        dataset = data.prepare(log, root / "prepared", overwrite=True)
        runs.write_run_file(prepared)
        print(format_statistics(dataset.manifest))
        lengths = np.diff(dataset["episode_starts"])
        p50, p90 = np.percentile(lengths, [50, 90])
        print(f"lengths      p50 {p50:.0f}, p90 {p90:.0f}, one-step {int((lengths == 1).sum()):,}")
        if args.tscac_steps > 0:
            configuration = _demo_tscac_configuration(args.tscac_steps)
            # The settings of the TSCAC part alone, so its run.json works as a --config file.
            tscac_settings = {
                "data": root / "prepared",
                "out": root / "tscac",
                "seed": [args.seed],
                "device": args.device,
                "threads": args.threads,
                "deterministic": args.deterministic,
                **configuration,
            }
            _run_tscac(
                root / "prepared",
                root / "tscac",
                configuration,
                [args.seed],
                _torch_device(args),
                tscac_settings,
                argv,
                overwrite=True,
            )
        if args.rmtl:
            _demo_rmtl(root / "prepared", root / "rmtl", args.seed, argv)
        if record is not None:
            runs.finish_run(record, data=None, metrics={"rows": args.rows})
        kept = f"data in {root}" if args.out else "files removed; pass --out to keep them"
        print(f"demo finished in {time.perf_counter() - started:.1f} s ({kept})")
    return 0


def _demo_rmtl(dataset: Path, out: Path, seed: int, argv: Sequence[str]) -> None:
    """Train a small ESMM and its RMTL version for one epoch per stage and print the table."""
    from recrl.metrics_writer import MetricsWriter
    from recrl.rmtl import RMTLConfig, RunPlan, run_rmtl

    config = RMTLConfig.from_dict(
        {
            "backbone": {"embedding_dim": 8, "bottom_dims": [32, 16], "tower_dims": [16]},
            "pretrain": {"epochs": 1},
            "critic": {"epochs": 1, "embedding_dim": 8, "bottom_dims": [32], "head_dims": [16]},
            "finetune": {"epochs": 1},
        }
    )
    started = time.perf_counter()
    rmtl_settings = {
        "data": dataset,
        "out": out,
        "backbones": ["esmm"],
        "seed": [seed],
        "no_plots": True,
        **config.to_dict(),
    }
    record = runs.start_run(out, command="rmtl", config=rmtl_settings, seed=[seed], argv=argv)
    plan = RunPlan(backbones=("esmm",), seeds=(seed,), plots=False)
    with MetricsWriter(out) as metrics:
        results = run_rmtl(dataset, out, config, plan, metrics=metrics)
    runs.finish_run(record, data=dataset, metrics=runs.rmtl_summary(results))
    print((out / "table.md").read_text(), end="")
    print(f"rmtl demo (ESMM, one epoch per stage) in {time.perf_counter() - started:.1f} s")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``recrl`` command line and return its exit status."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser = _build_parser()
    relax_required(parser)
    args = parser.parse_args(arguments)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    set_progress(False if args.no_progress else None)
    status: int | None = None
    try:
        settings = resolve_settings(parser, arguments, args, command_sections(args.command))
        status = _run(args, settings, ["recrl", *arguments])
        return status
    except (RecrlError, OSError) as error:
        print(f"recrl {args.command}: error: {error}", file=sys.stderr)
        return 2
    except MemoryError:
        print(
            f"recrl {args.command}: error: out of memory; use a smaller input or size",
            file=sys.stderr,
        )
        return 2
    finally:
        _leave_process_group(clean=status == 0)


def _leave_process_group(clean: bool) -> None:
    # Training commands import recrl.distributed. For the others, importing it here would load
    # torch for nothing.
    distributed = sys.modules.get("recrl.distributed")
    if distributed is not None:
        distributed.shutdown(clean=clean)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
