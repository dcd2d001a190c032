"""Peak memory and wall time of ``recrl prepare --shards`` against the unsharded prepare.

Each prepare runs in its own child process, which reports its peak resident set size
(``VmHWM`` of ``/proc/self/status``) when it finishes. The wall time is measured around the
child. Synthetic logs are generated with ``recrl synth`` into ``bench-data/`` when missing.

    python benches/bench_shards.py                      # 20M rows, 16 shards; 5M unsharded
    python benches/bench_shards.py --rows 2000000 --shards 4 --compare-rows 2000000
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# VmHWM (Linux) counts this process image alone; ru_maxrss would include the parent's peak.
CHILD = """
import sys
from pathlib import Path
from recrl.cli import main
status = main(sys.argv[1:])
lines = Path("/proc/self/status").read_text().splitlines()
sys.stderr.write(next(x for x in lines if x.startswith("VmHWM")).replace("VmHWM:", "peak_kib"))
sys.stderr.write("\\n")
sys.exit(status)
"""


def synthetic_log(folder: Path, rows: int) -> Path:
    """Return the folder of a synthetic log of ``rows`` rows, writing it when missing."""
    path = folder / f"synthetic-{rows}"
    if not (path / "log_standard_synthetic.csv").is_file():
        command = [sys.executable, "-m", "recrl.cli", "synth", "--rows", str(rows)]
        subprocess.run([*command, "--out", str(path), "--overwrite"], check=True)
    return path


def run_prepare(source: Path, out: Path, shards: int | None) -> tuple[float, float]:
    """Prepare ``source`` into ``out`` in a child; return (wall seconds, peak RSS in MiB)."""
    arguments = ["prepare", "kuairand", "--source", str(source), "--out", str(out)]
    if shards is not None:
        arguments += ["--shards", str(shards)]
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", CHILD, *arguments], capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"prepare failed:\n{result.stderr}")
    peak = next(line for line in result.stderr.splitlines() if line.startswith("peak_kib"))
    return wall, int(peak.split()[1]) / 1024


def folder_size_mib(path: Path) -> float:
    """Return the disk size of the files under ``path``, counting hard-linked files once."""
    files = [p.stat() for p in path.rglob("*") if p.is_file()]
    sizes = {(s.st_dev, s.st_ino): s.st_size for s in files}
    return sum(sizes.values()) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000_000, help="rows of the sharded log")
    parser.add_argument("--shards", type=int, default=16, help="shards of the sharded prepare")
    parser.add_argument(
        "--compare-rows",
        type=int,
        default=5_000_000,
        help="rows of the log prepared both unsharded and sharded (0 skips it)",
    )
    parser.add_argument(
        "--data", type=Path, default=Path("bench-data"), help="folder of the synthetic logs"
    )
    args = parser.parse_args()

    cases: list[tuple[int, int | None]] = [(args.rows, args.shards)]
    if args.compare_rows:
        cases = [(args.compare_rows, None), (args.compare_rows, args.shards), *cases]
    print(f"{'rows':>12} {'shards':>7} {'wall s':>8} {'peak RSS MiB':>13} {'output MiB':>11}")
    for rows, shards in cases:
        source = synthetic_log(args.data, rows)
        scratch = Path(tempfile.mkdtemp(prefix="bench-shards-", dir=args.data))
        try:
            wall, peak = run_prepare(source, scratch / "prepared", shards)
            size = folder_size_mib(scratch / "prepared")
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        label = "none" if shards is None else str(shards)
        print(f"{rows:>12,} {label:>7} {wall:>8.1f} {peak:>13,.0f} {size:>11,.0f}", flush=True)


if __name__ == "__main__":
    main()
