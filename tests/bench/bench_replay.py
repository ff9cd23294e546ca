"""Benchmark: `bordermon replay` events/s on a simulated file (default 1,000,000 events).

    .venv/bin/python tests/bench/bench_replay.py                 # 1M events
    .venv/bin/python tests/bench/bench_replay.py --events 200000 --repeat 3

The input is made once with `bordermon simulate` (seed 1) and cached under run/bench/. Each run
is the real command in a subprocess, flags to /dev/null, so start-up is included; the table
reports wall time, CPU time and events/s, and the machine it ran on. Not a test: run it by hand
and copy the table into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path

from machine import describe_machine

REPO = Path(__file__).resolve().parents[2]


def ensure_input(events: int) -> Path:
    path = REPO / "run" / "bench" / f"simulated-{events}.jsonl"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        print(f"generating {events:,} events into {path} ...", file=sys.stderr)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "bordermon",
                "simulate",
                "--events",
                str(events),
                "--seed",
                "1",
                "--out",
                str(path),
            ],
            check=True,
        )
    return path


def run_once(path: Path) -> tuple[float, float, int, str]:
    """Wall s, CPU s, events read, and the summary replay printed on stderr."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "bordermon", "replay", str(path), "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        check=True,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    summary = result.stderr.decode()
    read = int(summary.split(" events read")[0].split()[-1].replace(",", ""))
    return wall, cpu, read, summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    path = ensure_input(args.events)
    size_mb = path.stat().st_size / 1e6
    print(f"machine: {describe_machine()}")
    print(f"input: {path.name}, {size_mb:.0f} MB\n")
    print("| run | events | wall s | CPU s | events/s (wall) | events/s (CPU) |")
    print("|---|---|---|---|---|---|")
    for run in range(1, args.repeat + 1):
        wall, cpu, read, _ = run_once(path)
        print(
            f"| {run} | {read:,} | {wall:.1f} | {cpu:.1f} | {read / wall:,.0f} |"
            f" {read / cpu:,.0f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
