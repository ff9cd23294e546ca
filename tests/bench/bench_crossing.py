"""Benchmark: µs per event of `parse_crossing` (compiled fast path, reference fallback) against
`parse_crossing_reference` (orjson + the pure-Python SPEC §3 checks), over simulated lines.

    PYTHONPATH=services .venv/bin/python tests/bench/bench_crossing.py [--lines 100000]

The valid lines are `simulate(...)` output with no malformed line; the rejects are the
simulator's malformed lines (every kind, in its weights). Each figure is the best of five
passes over the whole list (timeit), so the machine's noise shows as spread, not as a bias.
Not a test: run it by hand and copy the table into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import timeit
from collections.abc import Callable

import orjson
from machine import describe_machine

from bordermon.core import crossing
from bordermon.core.crossing import InvalidCrossing, parse_crossing, parse_crossing_reference
from bordermon.simulate import SimulationSpec, simulate


def _lines(count: int, malformed_rate: float) -> tuple[list[bytes], list[bytes]]:
    valid: list[bytes] = []
    rejected: list[bytes] = []
    seed = 1
    while len(valid) < count:
        lines, _ = simulate(
            SimulationSpec(
                consignments=None, events=count, seed=seed, malformed_rate=malformed_rate
            )
        )
        for raw in lines:
            try:
                parse_crossing_reference(raw)
            except InvalidCrossing:
                rejected.append(raw)
            else:
                valid.append(raw)
        seed += 1
    return valid[:count], rejected


def _per_event(parses: list[Callable[[bytes], object]], lines: list[bytes]) -> list[float]:
    """µs per line of each parser, best of five rounds; the parsers alternate within a round
    so that a change in the machine's load hits them alike."""

    def timed(parse: Callable[[bytes], object]) -> float:
        def outcome(raw: bytes) -> object:
            try:
                return parse(raw)
            except (InvalidCrossing, ValueError) as error:
                return error

        def run() -> None:
            for raw in lines:
                outcome(raw)

        return timeit.timeit(run, number=1) / len(lines) * 1e6

    rounds = [[timed(parse) for parse in parses] for _ in range(5)]
    return [min(column) for column in zip(*rounds, strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=100_000)
    args = parser.parse_args()
    valid, _ = _lines(args.lines, 0.0)
    _, rejects = _lines(args.lines // 10, 0.5)
    print(describe_machine())
    print(f"{len(valid):,} valid lines, {len(rejects):,} rejects\n")
    print("| input | reference µs/event | parse_crossing µs/event | ratio |")
    print("|---|---:|---:|---:|")
    for name, lines in (("valid events", valid), ("malformed lines", rejects)):
        before, after = _per_event([parse_crossing_reference, parse_crossing], lines)
        print(f"| {name} | {before:.2f} | {after:.2f} | {before / after:.2f}× |")
    loads, decode = _per_event([orjson.loads, crossing._decode_typed], valid)
    print(
        f"| valid events, JSON decoding alone | {loads:.2f} (orjson.loads)"
        f" | {decode:.2f} (msgspec structs) | {loads / decode:.2f}× |"
    )


if __name__ == "__main__":
    main()
