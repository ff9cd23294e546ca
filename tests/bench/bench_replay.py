"""Benchmark: `bordermon replay` events/s on a simulated file (default 1,000,000 events).

    .venv/bin/python tests/bench/bench_replay.py                 # 1M events
    .venv/bin/python tests/bench/bench_replay.py --events 200000 --repeat 3

The input is made once with `bordermon simulate` (seed 1) and cached under run/bench/, under a
name that carries the event count, the seed and a fingerprint of the simulator's source
(`simulated-<N>-seed1-sim<hash>.jsonl`): a changed simulator (patterns, default mix) gives a new
file, so a stale input is never reused. Each run is the real command in a subprocess, flags to
/dev/null, so start-up is included, on the same file with every rule (the default), with
`--rules transit-to-ru` and with `--rules transit-to-ru,export-without-permit`: the
differences are what `export-without-permit` and `relabel-to-ru` (its sightings and the link
stage) each cost. The table reports wall time,
CPU time, events/s and flags by rule, and the machine it ran on. Subprocesses run the bordermon
of this checkout (`services/` first on PYTHONPATH), whatever the virtualenv's editable install
points at. Not a test: run it by hand and copy the table into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SERVICES = REPO / "services"
# The bordermon measured is this checkout's, in this process and in every subprocess.
if str(SERVICES) not in sys.path:
    sys.path.insert(0, str(SERVICES))

from machine import describe_machine  # noqa: E402

SEED = 1
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


def run_once(path: Path, rules: str = ALL_RULES) -> ReplayRun:
    """The real `bordermon replay FILE --quiet` (with `--rules RULES` unless "all"), timed
    from outside: wall time and the child's CPU time."""
    command = [sys.executable, "-m", "bordermon", "replay", str(path), "--quiet"]
    if rules != ALL_RULES:
        command += ["--rules", rules]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        check=True,
        env=child_env(),
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    summary = result.stderr.decode()
    read, flags, rejected, by_rule = parse_summary(summary)
    return ReplayRun(wall, cpu, read, flags, rejected, by_rule, summary)


def by_rule_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{rule} {count:,}" for rule, count in sorted(counts.items())) or "none"


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    path = ensure_input(args.events)
    size_mb = path.stat().st_size / 1e6
    print(f"machine: {describe_machine()}")
    print(f"input: {path.name}, {size_mb:.0f} MB\n")
    print(
        "| run | rules | events | wall s | CPU s | events/s (wall) | events/s (CPU)"
        " | CPU µs per event | flags by rule |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    totals: dict[str, list[ReplayRun]] = {rules: [] for rules in RULE_SETS}
    for run in range(1, args.repeat + 1):
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
    cpu = {
        rules: sum(r.cpu for r in runs) / sum(r.read for r in runs) * 1e6
        for rules, runs in totals.items()
    }
    print(
        f"\nevents/s, all rules / transit-to-ru only = {wall[TRANSIT_ONLY] / wall[ALL_RULES]:.2f};"
        f" {rule_costs(cpu)}."
    )
    one, five, fifteen = os.getloadavg()
    print(f"load average at the end: {one:.2f} {five:.2f} {fifteen:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
