"""Benchmark: Redis memory per consignment and codec µs per state, state format 1 against 2.

    PYTHONPATH=services .venv/bin/python tests/bench/bench_state_memory.py
    PYTHONPATH=services .venv/bin/python tests/bench/bench_state_memory.py --consignments 5000

The states are those of consignments holding two events, an entry and an exit, both kept
(they do not pair: the simulator's `slow` pattern, dwell beyond the window), built by the
core's `apply` from simulated crossings, as bench_pipeline.py's Redis row does. Each format is
saved by the real `RedisStore` (`SET ... EX ttl` per consignment, the revision header) into a
database of its own on a **private** redis-server started here on a free port (`--save ""
--appendonly no`), never the shared one; the number is (used_memory after − before) / N, so
the key's share of Redis's dict and expires tables is in it.

Codec figures are µs per state, the best of `--rounds` passes over all states, the passes
alternating within a round. "encode" is of the states as `apply` built them (format 2 packs
every crossing afresh: a crossing's first save); "decode" reads a state (format 2 leaves its
kept crossings packed until they are used); then the worker's pattern, batch by batch: decode
500 states and encode them again, once as they were read ("load and save": the crossings
unused, as by most events: a scan that is not a qualifying crossing for transit-to-ru, a
duplicate) and once reading every kept crossing in between ("load, use the crossings, save":
an exit to a destination of concern reads the entries; this costs format 2 the unpacking
that its decode left out, and JSON nothing more). The states built for the run are frozen out
of the garbage collector's sight first (`gc.freeze`), as a worker's heap does not hold 50,000
states. Not a test: run it by hand and copy the tables into docs/benchmarks.md
(tests/integration/test_state_memory.py holds the budget).
"""

from __future__ import annotations

import argparse
import gc
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# The bordermon measured is this checkout's; tests/ for the measurement it shares with the test.
sys.path[:0] = [str(REPO / "services"), str(REPO / "tests")]

import redis  # noqa: E402
from machine import describe_machine  # noqa: E402

from bordermon.core.state import (  # noqa: E402
    ConsignmentState,
    decode_state,
    encode_state,
    encode_state_json,
)
from bordermon.stores.base import ConsignmentCodec  # noqa: E402
from support.redis_servers import REDIS_SERVER, private_redis  # noqa: E402
from support.state_memory import (  # noqa: E402
    BATCH,
    JsonCodec,
    measure_memory,
    say,
    two_event_states,
    warm_up_script,
)


def per_state_us(
    passes: dict[str, Callable[[], None]], count: int, rounds: int
) -> dict[str, float]:
    """µs per state of each pass (each runs over all states), best of `rounds`; the passes
    alternate within a round so that the machine's load hits them alike."""
    best = dict.fromkeys(passes, float("inf"))
    for round_number in range(rounds):
        for name, run in passes.items():
            started = time.perf_counter()
            run()
            best[name] = min(best[name], (time.perf_counter() - started) / count * 1e6)
        say(f"  codec round {round_number + 1}/{rounds}")
    return best


PASSES = ("encode", "decode", "load and save", "load, use the crossings, save")
FORMATS = {"1 (JSON)": encode_state_json, "2": encode_state}


def codec_timings(states: list[ConsignmentState], rounds: int) -> dict[str, float]:
    """µs per state of each pass of each format, by `format|pass`."""
    values = {
        version: [(encode(s), s.consignment_id) for s in states]
        for version, encode in FORMATS.items()
    }
    gc.freeze()  # what the run keeps (50,000 states and their values) is not the worker's heap
    passes: dict[str, Callable[[], None]] = {}
    for version, encode in FORMATS.items():
        passes[f"{version}|encode"] = _encode_pass(encode, states)
        passes[f"{version}|decode"] = _decode_pass(values[version])
        passes[f"{version}|load and save"] = _load_and_save_pass(encode, values[version])
        passes[f"{version}|load, use the crossings, save"] = _load_and_save_pass(
            encode, values[version], use_crossings=True
        )
    return per_state_us(passes, len(states), rounds)


def _encode_pass(
    encode: Callable[[ConsignmentState], bytes], states: list[ConsignmentState]
) -> Callable[[], None]:
    def run() -> None:
        for state in states:
            encode(state)

    return run


def _decode_pass(values: list[tuple[bytes, str]]) -> Callable[[], None]:
    def run() -> None:
        for raw, cid in values:
            decode_state(raw, cid)

    return run


def _load_and_save_pass(
    encode: Callable[[ConsignmentState], bytes],
    values: list[tuple[bytes, str]],
    *,
    use_crossings: bool = False,
) -> Callable[[], None]:
    """The worker's pattern, batch by batch: decode the batch's states, encode them again;
    with `use_crossings`, reading every kept crossing in between, as a qualifying crossing
    for transit-to-ru does."""

    def run() -> None:
        for start in range(0, len(values), BATCH):
            loaded = [decode_state(raw, cid) for raw, cid in values[start : start + BATCH]]
            for state in loaded:
                if use_crossings and not (state.entries and state.exits):
                    raise AssertionError("a two-event state keeps both crossings")
                encode(state)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Progress goes to stderr, the table to stdout.",
    )
    parser.add_argument(
        "--consignments", type=int, default=50_000, help="consignments (default 50,000)"
    )
    parser.add_argument("--seed", type=int, default=1, help="simulator seed (default 1)")
    parser.add_argument(
        "--rounds", type=int, default=7, help="codec passes, best taken (default 7)"
    )
    parser.add_argument(
        "--redis-server", default=REDIS_SERVER, help=f"server binary (default {REDIS_SERVER})"
    )
    args = parser.parse_args()
    if shutil.which(args.redis_server) is None:
        parser.error(f"{args.redis_server} not found; install redis-server or pass --redis-server")

    say(f"building {args.consignments:,} two-event states from simulated crossings ...")
    states = two_event_states(args.consignments, args.seed)
    say(f"timing the codecs over {len(states):,} states ...")
    timings = codec_timings(states, args.rounds)
    with private_redis(args.redis_server) as url:
        warm_up_script(url, states)
        say("saving format 1 (JSON) ...")
        old = measure_memory(url, 1, states, JsonCodec())
        say("saving format 2 (binary) ...")
        new = measure_memory(url, 2, states, ConsignmentCodec())
        with redis.Redis.from_url(url) as client:
            version = client.info("server")["redis_version"]

    print(describe_machine())
    print(f"redis-server {version} (private, no persistence); {len(states):,} consignments\n")
    print("| state format | used_memory per consignment | STRLEN (mean) | MEMORY USAGE (mean) |")
    print("|---|---:|---:|---:|")
    for name, memory in (("1: JSON", old), ("2: binary", new)):
        print(
            f"| {name} | **{memory.per_consignment:,.0f} B** | {memory.strlen_mean:.0f} B |"
            f" {memory.memory_usage_mean:.0f} B |"
        )
    print()
    print("| codec, µs per two-event state | format 1 (JSON) | format 2 | ratio |")
    print("|---|---:|---:|---:|")
    for name in PASSES:
        old_us, new_us = timings[f"1 (JSON)|{name}"], timings[f"2|{name}"]
        print(f"| {name} | {old_us:.2f} | {new_us:.2f} | {new_us / old_us:.2f}× |")
    for memory in (old, new):
        if memory.keys != len(states) or memory.with_expiry != memory.sampled:
            raise SystemExit("not one key with its own expiry per consignment")


if __name__ == "__main__":
    main()
