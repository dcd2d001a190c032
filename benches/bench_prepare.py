"""Episode building and CSV-to-dataset preparation: recrl beside pandas and polars.

Run from the repository root after `pip install ".[bench]"`:

    python benches/bench_prepare.py --rows 5000000

The synthetic KuaiRand-layout log (rows in time order, as a serving log is written) is
generated once into bench-data/ and reused. Each contender runs in this process on the same
arrays; the best of --repeat runs is reported. Peak memory of `recrl prepare` is measured in a
child process and compared with the size of the arrays it writes.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from recrl import _core
from recrl.data import (
    PrepareOptions,
    SyntheticConfig,
    prepare,
    read_kuairand,
    write_synthetic_kuairand,
)

GAP_MS = 30 * 60 * 1000
HISTORY = 10


# Processor time (all threads of this process) of the run with the best wall time. On a loaded
# machine it moves less than wall time, so it is printed beside it.
cpu_seconds: dict[str, float] = {}


def best_of(repeat: int, function: Callable[[], Any], name: str = "") -> tuple[float, Any]:
    best = float("inf")
    result = None
    for _ in range(repeat):
        started = time.perf_counter()
        started_cpu = time.process_time()
        result = function()
        seconds = time.perf_counter() - started
        if seconds < best:
            best = seconds
            cpu_seconds[name] = time.process_time() - started_cpu
    return best, result


# Episode building: sort by (user, time, row), cut, next index, terminal and truncation flags.


def episodes_recrl(users: np.ndarray, times: np.ndarray) -> dict[str, np.ndarray]:
    # One call sorts, gathers users and times, and cuts. It computes the sorted users and times
    # because prepare needs them, but only the arrays the others also return are compared.
    result = _core.sort_episodes(users, times, session_gap_ms=GAP_MS, active_within_ms=GAP_MS)
    del result["users"], result["times"]
    return result


def flags_from_cuts(
    sorted_users: np.ndarray, sorted_times: np.ndarray, window_end: int
) -> dict[str, np.ndarray]:
    n = len(sorted_users)
    user_change = np.ones(n, dtype=bool)
    user_change[:-1] = sorted_users[1:] != sorted_users[:-1]
    gap_cut = np.zeros(n, dtype=bool)
    gap_cut[:-1] = ~user_change[:-1] & (np.diff(sorted_times) > GAP_MS)
    last = user_change | gap_cut
    truncated = user_change & (window_end - sorted_times < GAP_MS)
    next_index = np.where(last, -1, np.arange(1, n + 1))
    starts = np.concatenate([[0], np.flatnonzero(last) + 1])
    return {
        "episode_starts": starts.astype(np.int64),
        "terminals": (last & ~truncated).astype(np.uint8),
        "truncations": truncated.astype(np.uint8),
        "next_index": next_index.astype(np.int64),
    }


def episodes_pandas(users: np.ndarray, times: np.ndarray) -> dict[str, np.ndarray]:
    import pandas as pd

    frame = pd.DataFrame({"user": users, "time": times})
    ordered = frame.sort_values(["user", "time"], kind="stable")
    sorted_users = ordered["user"].to_numpy()
    sorted_times = ordered["time"].to_numpy()
    flags = flags_from_cuts(sorted_users, sorted_times, int(times.max()))
    return {"order": ordered.index.to_numpy(), **flags}


def episodes_polars(users: np.ndarray, times: np.ndarray) -> dict[str, np.ndarray]:
    import polars as pl

    frame = pl.DataFrame({"user": users, "time": times}).with_row_index("row")
    ordered = frame.sort(["user", "time", "row"])
    gap = pl.col("time").shift(-1) - pl.col("time")
    user_change = (pl.col("user").shift(-1) != pl.col("user")).fill_null(True)
    window_end = int(times.max())
    flagged = ordered.with_columns(
        user_change.alias("user_change"),
        ((~user_change) & (gap > GAP_MS)).fill_null(False).alias("gap_cut"),
    ).with_columns(
        (pl.col("user_change") | pl.col("gap_cut")).alias("last"),
        (pl.col("user_change") & ((window_end - pl.col("time")) < GAP_MS)).alias("truncated"),
    )
    last = flagged["last"].to_numpy()
    truncated = flagged["truncated"].to_numpy()
    n = len(last)
    return {
        "order": flagged["row"].to_numpy().astype(np.int64),
        "episode_starts": np.concatenate([[0], np.flatnonzero(last) + 1]).astype(np.int64),
        "terminals": (last & ~truncated).astype(np.uint8),
        "truncations": truncated.astype(np.uint8),
        "next_index": np.where(last, -1, np.arange(1, n + 1)).astype(np.int64),
    }


# CSV to a prepared dataset with the same content: the pandas pipeline a user would write.


def prepare_pandas(source: Path, out: Path) -> int:
    import pandas as pd

    log = pd.read_csv(next(source.glob("log_standard_*.csv")))
    users = pd.read_csv(next(source.glob("user_features_*.csv")))
    videos = pd.read_csv(next(source.glob("video_features_basic_*.csv")))

    log["row"] = np.arange(len(log))
    log = log.sort_values(["user_id", "time_ms", "row"], kind="stable").reset_index(drop=True)
    flags = flags_from_cuts(
        log["user_id"].to_numpy(), log["time_ms"].to_numpy(), log["time_ms"].max()
    )
    cuts = np.quantile(log["time_ms"].to_numpy(), [0.6, 0.8], method="lower")
    split = (log["time_ms"] >= cuts[0]).astype(np.uint8) + (log["time_ms"] >= cuts[1]).astype(
        np.uint8
    )
    train = split == 0

    arrays: dict[str, np.ndarray] = {**flags, "split": split.to_numpy()}
    for column, name in (("user_id", "users"), ("video_id", "items")):
        vocabulary = np.sort(log.loc[train, column].unique())
        codes = pd.Index(vocabulary).get_indexer(log[column]).astype(np.int64) + 1
        arrays[name] = codes
    history = np.zeros((len(log), HISTORY), dtype=np.int64)
    items = pd.Series(arrays["items"])
    grouped = items.groupby(log["user_id"].to_numpy())
    for lag in range(1, HISTORY + 1):
        history[:, lag - 1] = grouped.shift(lag).fillna(0).to_numpy(dtype=np.int64)
    arrays["history"] = history

    play = log["play_time_ms"].clip(lower=0)
    interactions = ("is_click", "is_like", "is_follow", "is_comment", "is_forward", "is_hate")
    rewards = [play / 1000.0] + [log[c] for c in interactions]
    arrays["rewards"] = np.stack([np.asarray(r, dtype=np.float32) for r in rewards], axis=1)
    duration = log["duration_ms"]
    arrays["context_watch_ratio"] = np.where(
        duration > 0, play / duration.where(duration > 0, 1), 0
    ).astype(np.float32)

    numeric_user = ["follow_user_num", "fans_user_num", "friend_user_num", "register_days"]
    joined = (
        log[["user_id", "video_id"]]
        .merge(users, on="user_id", how="left")
        .merge(videos, on="video_id", how="left")
    )
    numeric = joined[numeric_user + ["video_duration", "server_width", "server_height"]]
    numeric = np.sign(numeric) * np.log1p(numeric.abs())
    mean = numeric[train.to_numpy()].mean()
    std = numeric[train.to_numpy()].std(ddof=0).replace(0, 1)
    arrays["numeric"] = ((numeric - mean) / std).fillna(0).to_numpy(dtype=np.float32)
    categorical = [c for c in users.columns if c not in numeric_user + ["user_id"]]
    categorical += [
        "author_id",
        "video_type",
        "upload_type",
        "visible_status",
        "music_id",
        "music_type",
        "tag",
    ]
    arrays["categorical"] = np.stack(
        [pd.factorize(joined[c])[0] + 1 for c in categorical], axis=1
    ).astype(np.int64)
    for name in ("user_id", "video_id", "time_ms", "row"):
        arrays[name] = log[name].to_numpy()

    out.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        np.save(out / f"{name}.npy", array)
    return len(log)


def prepare_recrl(source: Path, out: Path) -> int:
    dataset = prepare(read_kuairand(source), out, PrepareOptions(), overwrite=True)
    return len(dataset)


def peak_memory(source: Path, out: Path) -> tuple[float, float]:
    """Run recrl's prepare in a child process; return (peak RSS, bytes written) in GB.

    The peak is the child's VmHWM (Linux), which starts afresh at exec; ``ru_maxrss`` would
    carry over this large parent's peak into the child. The baseline is a child that only
    imports ``recrl.data``.
    """
    report_peak = (
        "print(next(line.split()[1] for line in open('/proc/self/status') "
        "if line.startswith('VmHWM')))\n"
    )
    code = (
        "from recrl.data import PrepareOptions, prepare, read_kuairand\n"
        f"prepare(read_kuairand({str(source)!r}), {str(out)!r}, PrepareOptions(), overwrite=True)\n"
        + report_peak
    )
    baseline = subprocess.run(
        [sys.executable, "-c", "import recrl.data\n" + report_peak],
        capture_output=True,
        text=True,
        check=True,
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    peak_kb = int(result.stdout.split()[-1]) - int(baseline.stdout.split()[-1])
    written = sum(p.stat().st_size for p in out.glob("*.npy"))
    return peak_kb / 1e6, written / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000, help="rows of the synthetic log")
    parser.add_argument("--repeat", type=int, default=3, help="runs per contender; best is kept")
    parser.add_argument("--data", type=Path, default=Path("bench-data"), help="cache folder")
    args = parser.parse_args()

    source = args.data / f"synthetic-{args.rows}"
    if not (source / "log_standard_synthetic.csv").exists():
        print(f"generating {args.rows:,} synthetic rows into {source}")
        write_synthetic_kuairand(SyntheticConfig(rows=args.rows, seed=0), source)
    log = read_kuairand(source)
    users, times = log.user_ids, log.timestamps
    print(f"log: {len(log):,} rows, {len(np.unique(users)):,} users, rows in time order")

    print("\nepisode building (sort, cut, next index, flags)")
    results = {}
    for name, function in (
        ("recrl", episodes_recrl),
        ("polars", episodes_polars),
        ("pandas", episodes_pandas),
    ):
        seconds, results[name] = best_of(args.repeat, lambda f=function: f(users, times), name)
        print(f"  {name:<8} {seconds:8.3f} s  (processor time {cpu_seconds[name]:.3f} s)")
        results[name + "_time"] = seconds
    for name in ("polars", "pandas"):
        for key, values in results["recrl"].items():
            np.testing.assert_array_equal(values, results[name][key], err_msg=f"{name} {key}")
        print(
            f"  recrl is {results[name + '_time'] / results['recrl_time']:.1f}x faster than {name}"
        )

    print("\nCSV to prepared dataset (read, sort, episodes, vocabularies, history, features, save)")
    scratch = Path(tempfile.mkdtemp(prefix="recrl-bench-"))
    try:
        timings = {}
        for name, function in (("recrl", prepare_recrl), ("pandas", prepare_pandas)):
            runs = iter(range(args.repeat))
            seconds, rows = best_of(
                args.repeat,
                lambda f=function, n=name, r=runs: f(source, scratch / f"{n}-{next(r)}"),
                name,
            )
            timings[name] = seconds
            print(
                f"  {name:<8} {seconds:8.3f} s  (processor time {cpu_seconds[name]:.2f} s, "
                f"{rows:,} rows)"
            )
        print(f"  recrl is {timings['pandas'] / timings['recrl']:.1f}x faster than pandas")
        peak, written = peak_memory(source, scratch / "memory")
        print(
            f"\npeak memory of recrl prepare: {peak:.2f} GB for {written:.2f} GB of arrays "
            f"({peak / written:.2f}x)"
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
