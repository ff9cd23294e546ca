"""Benchmark: `bordermon replay` events/s on a simulated file (default 1,000,000 events).

    .venv/bin/python tests/bench/bench_replay.py                  # 1M events: orjson, jobs 1, N
    .venv/bin/python tests/bench/bench_replay.py --repeat 3       # each replay three times
    .venv/bin/python tests/bench/bench_replay.py --profile-jobs   # + where each job's time goes
    .venv/bin/python tests/bench/bench_replay.py --rule-sets      # what each rule costs (jobs 1)

The input is made once with `bordermon simulate` (seed 1) and cached under run/bench/, under a
name that carries the event count, the seed and a fingerprint of the simulator's source
(`simulated-<N>-seed1-sim<hash>.jsonl`): a changed simulator (patterns, default mix) gives a new
file, so a stale input is never reused.

One command measures, on that file: the floor of any Python reader of it, a bare
`orjson.loads` loop over its lines (in this process); then the real `bordermon replay FILE
--quiet` in a subprocess (flags to /dev/null, start-up included) with `--jobs 1` (one
process) and `--jobs N` (default: the usable CPUs), alternated within each repeat so that a
change of load hits both alike. It prints wall and CPU time (the jobs' included), events/s,
the peak memory of the whole process tree (sampled every 0.2 s), the load average before and
after each run, and the ratios: jobs N / jobs 1, and each replay / the orjson loop.
`--profile-jobs` then runs `--jobs N` once more in this process with pyinstrument in every
job and writes each job's profile to run/bench/replay-profile-job<i>.txt. `--rule-sets` runs
the three rule sets in one process instead (every rule, `--rules transit-to-ru`,
`--rules transit-to-ru,export-without-permit`): the differences are what
`export-without-permit` and `relabel-to-ru` each cost.

Subprocesses run the bordermon of this checkout (`services/` first on PYTHONPATH), whatever
the virtualenv's editable install points at. Not a test: run it by hand and copy the tables
into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

REPO = Path(__file__).resolve().parents[2]
SERVICES = REPO / "services"
# The bordermon measured is this checkout's, in this process and in every subprocess.
if str(SERVICES) not in sys.path:
    sys.path.insert(0, str(SERVICES))

from machine import describe_machine  # noqa: E402

SEED = 1
Key = TypeVar("Key")
ALL_RULES = "all"
TRANSIT_ONLY = "transit-to-ru"
NO_LINK_STAGE = "transit-to-ru,export-without-permit"
RULE_SETS = (ALL_RULES, TRANSIT_ONLY, NO_LINK_STAGE)
"""`--rules` of the runs: "all" is the default (every rule), else the value passed. Each one
adds one rule to the next: transit-to-ru; + export-without-permit; + relabel-to-ru (all), so
the differences are what each of the two added rules costs."""


def rule_costs(cpu_per_event: dict[str, float]) -> str:
    """What export-without-permit and relabel-to-ru add to transit-to-ru's CPU per event."""
    transit = cpu_per_event[TRANSIT_ONLY]
    export = cpu_per_event[NO_LINK_STAGE]
    every = cpu_per_event[ALL_RULES]
    return (
        f"{transit:,.1f} µs of CPU per event with transit-to-ru only;"
        f" export-without-permit adds {export - transit:+,.1f} µs,"
        f" relabel-to-ru {every - export:+,.1f} µs (all rules: {every:,.1f} µs,"
        f" {every / transit - 1:+.0%})"
    )


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a bordermon subprocess: this checkout's `services/` first on
    PYTHONPATH, so that it runs the code this benchmark imported."""
    env = dict(os.environ)
    paths = [str(SERVICES), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env.update(extra)
    return env


def simulator_fingerprint() -> str:
    """A short hash of the simulator's source files (bordermon.simulate): the cached input
    changes name whenever what generates it changes."""
    import bordermon.simulate

    package = Path(bordermon.simulate.__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:10]


def input_path(events: int) -> Path:
    name = f"simulated-{events}-seed{SEED}-sim{simulator_fingerprint()}.jsonl"
    return REPO / "run" / "bench" / name


def ensure_input(events: int) -> Path:
    path = input_path(events)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        print(f"generating {events:,} events into {path} ...", file=sys.stderr)
        partial = path.with_suffix(".partial")
        subprocess.run(
            [
                sys.executable,
                "-m",
                "bordermon",
                "simulate",
                "--events",
                str(events),
                "--seed",
                str(SEED),
                "--out",
                str(partial),
            ],
            check=True,
            env=child_env(),
        )
        partial.replace(path)  # an interrupted generation never leaves a truncated input
    return path


@dataclass(frozen=True, slots=True)
class ReplayRun:
    """One `bordermon replay` run: wall and CPU seconds, and what its summary said."""

    wall: float
    cpu: float
    read: int
    flags: int
    rejected: int
    flags_by_rule: dict[str, int]
    summary: str
    peak_bytes: int = 0

    @property
    def rate(self) -> float:
        return self.read / self.wall if self.wall > 0 else float("nan")


def parse_summary(summary: str) -> tuple[int, int, int, dict[str, int]]:
    """Events read, flags, rejected and flags by rule, from replay's summary on stderr."""
    read = int(summary.split(" events read", maxsplit=1)[0].rsplit(maxsplit=1)[-1].replace(",", ""))
    flags = rejected = 0
    by_rule: dict[str, int] = {}
    for line in summary.splitlines():
        words = line.split()
        if words[:1] == ["flags"]:
            flags = int(words[1].replace(",", ""))
        elif words[:1] == ["rejected"]:
            rejected = int(words[1].replace(",", ""))
        elif words[:2] == ["by", "rule"]:
            for part in line.split("by rule", 1)[1].split(","):
                rule, _, count = part.strip().rpartition(" ")
                if rule:
                    by_rule[rule] = int(count.replace(",", ""))
    return read, flags, rejected, by_rule


def run_once(path: Path, rules: str = ALL_RULES, jobs: int = 1) -> ReplayRun:
    """The real `bordermon replay FILE --quiet --jobs JOBS` (with `--rules RULES` unless
    "all"), timed from outside: wall time, the CPU time of the process and its jobs, and the
    peak memory of them all together."""
    command = [sys.executable, "-m", "bordermon", "replay", str(path), "--quiet"]
    command += ["--jobs", str(jobs)]
    if rules != ALL_RULES:
        command += ["--rules", rules]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    with subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=child_env()
    ) as process:
        sampler = MemorySampler(process.pid)
        sampler.start()
        stderr = process.stderr.read() if process.stderr is not None else b""
        returncode = process.wait()
    wall = time.perf_counter() - started
    sampler.stop()
    if returncode != 0:
        raise SystemExit(f"replay failed ({returncode}): {stderr.decode()[-2000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    summary = stderr.decode()
    read, flags, rejected, by_rule = parse_summary(summary)
    return ReplayRun(wall, cpu, read, flags, rejected, by_rule, summary, sampler.peak_bytes)


class MemorySampler(threading.Thread):
    """The peak of the summed resident memory of a process and its children (/proc)."""

    def __init__(self, pid: int, every_s: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.every_s = every_s
        self.peak_bytes = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.every_s):
            pids = [self.pid, *_children(self.pid)]
            self.peak_bytes = max(self.peak_bytes, sum(_rss_bytes(pid) for pid in pids))

    def stop(self) -> None:
        self.stopped.set()
        self.join()


def _children(pid: int) -> list[int]:
    try:
        return [int(word) for word in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def orjson_loop(path: Path) -> tuple[int, float, float]:
    """Lines, wall and CPU seconds of the bare reader: every line through `orjson.loads`."""
    import orjson

    lines = 0
    started, cpu_started = time.perf_counter(), time.process_time()
    with path.open("rb") as source:
        for line in source:
            lines += 1
            with contextlib.suppress(orjson.JSONDecodeError):
                orjson.loads(line)
    return lines, time.perf_counter() - started, time.process_time() - cpu_started


def cpu_micros_per_event(groups: Mapping[Key, list[ReplayRun]]) -> dict[Key, float]:
    """CPU µs per event read, over all the runs of each group."""
    return {
        key: sum(r.cpu for r in runs) / sum(r.read for r in runs) * 1e6
        for key, runs in groups.items()
    }


def load_text() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def by_rule_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{rule} {count:,}" for rule, count in sorted(counts.items())) or "none"


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument(
        "--jobs", type=int, default=None, help="N of --jobs N (default: the usable CPUs)"
    )
    parser.add_argument("--profile-jobs", action="store_true")
    parser.add_argument("--rule-sets", action="store_true")
    args = parser.parse_args()
    path = ensure_input(args.events)
    size_mb = path.stat().st_size / 1e6
    print(f"machine: {describe_machine()}")
    print(f"input: {path.name}, {size_mb:.0f} MB\n")
    if args.rule_sets:
        measure_rule_sets(path, args.repeat)
    else:
        from bordermon.replay.parallel import usable_cpus

        measure_jobs(path, args.repeat, args.jobs or usable_cpus(), args.profile_jobs)
    print(f"load average at the end: {load_text()}")
    return 0


def measure_jobs(path: Path, repeat: int, jobs: int, profile: bool) -> None:
    """The orjson loop, then replay with --jobs 1 and --jobs N, and their ratios."""
    lines, wall, cpu = orjson_loop(path)
    floor = lines / wall
    print(
        "| run | what | events | wall s | CPU s | events/s | / orjson loop | peak memory"
        " | load before → after |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    print(
        f"| – | bare `orjson.loads` loop | {lines:,} | {wall:.1f} | {cpu:.1f} | {floor:,.0f} |"
        f" 1 | – | {load_text()} |",
        flush=True,
    )
    runs: dict[int, list[ReplayRun]] = {1: [], jobs: []}
    for run in range(1, repeat + 1):
        for count, results in runs.items():
            load_before = load_text()
            result = run_once(path, jobs=count)
            results.append(result)
            print(
                f"| {run} | `replay --jobs {count}` | {result.read:,} | {result.wall:.1f} |"
                f" {result.cpu:.1f} | {result.rate:,.0f} | {result.rate / floor:.3f} |"
                f" {result.peak_bytes / 2**20:,.0f} MiB | {load_before} → {load_text()} |",
                flush=True,
            )
    best = {count: max(r.rate for r in results) for count, results in runs.items()}
    cpu_per_event = cpu_micros_per_event(runs)
    flags = {r.flags for results in runs.values() for r in results}
    print(
        f"\nbest events/s: jobs 1 {best[1]:,.0f}, jobs {jobs} {best[jobs]:,.0f}"
        f" (x{best[jobs] / best[1]:.2f}); / orjson loop: {best[1] / floor:.3f} and"
        f" {best[jobs] / floor:.3f}; CPU µs per event: {cpu_per_event[1]:.1f} and"
        f" {cpu_per_event[jobs]:.1f}; flags {' / '.join(f'{n:,}' for n in sorted(flags))}"
        + ("" if len(flags) == 1 else " (DIFFER)")
    )
    if profile:
        profile_jobs(path, jobs)


def profile_jobs(path: Path, jobs: int) -> None:
    """`--jobs N` in this process with pyinstrument in every job; a report per job."""
    from pyinstrument import Profiler

    from bordermon.replay import parallel
    from bordermon.settings import Settings

    run = parallel._JobRun.run

    def profiled(self: parallel._JobRun) -> object:
        profiler = Profiler(interval=0.001, async_mode="disabled")
        profiler.start()
        try:
            return run(self)
        finally:
            profiler.stop()
            report = REPO / "run" / "bench" / f"replay-profile-job{self.job.index}.txt"
            report.write_text(profiler.output_text(show_all=False))

    parallel._JobRun.run = profiled  # type: ignore[method-assign]
    config = Settings.load({}).detection_config()
    with path.open("rb") as source, open(os.devnull, "wb") as sink:
        result = parallel.replay_parallel(source, sink, config, jobs)
    print(
        f"\nprofiled --jobs {jobs}: {result.tally.read / result.seconds:,.0f} events/s;"
        f" reports in run/bench/replay-profile-job*.txt"
    )


def measure_rule_sets(path: Path, repeat: int) -> None:
    print(
        "| run | rules | events | wall s | CPU s | events/s (wall) | events/s (CPU)"
        " | CPU µs per event | flags by rule |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    totals: dict[str, list[ReplayRun]] = {rules: [] for rules in RULE_SETS}
    for run in range(1, repeat + 1):
        # Alternated within each repeat, so a change of load hits both configurations alike.
        for rules in RULE_SETS:
            result = run_once(path, rules)
            totals[rules].append(result)
            print(
                f"| {run} | {rules} | {result.read:,} | {result.wall:.1f} | {result.cpu:.1f} |"
                f" {result.rate:,.0f} | {result.read / result.cpu:,.0f} |"
                f" {result.cpu / result.read * 1e6:.1f} | {by_rule_text(result.flags_by_rule)} |",
                flush=True,
            )
    wall = {rules: sum(r.wall for r in runs) for rules, runs in totals.items()}
    cpu = cpu_micros_per_event(totals)
    print(
        f"\nevents/s, all rules / transit-to-ru only = {wall[TRANSIT_ONLY] / wall[ALL_RULES]:.2f};"
        f" {rule_costs(cpu)}."
    )


if __name__ == "__main__":
    sys.exit(main())
