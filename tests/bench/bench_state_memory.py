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
import asyncio
import gc
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SERVICES = REPO / "services"
# The bordermon measured is this checkout's.
if str(SERVICES) not in sys.path:
    sys.path.insert(0, str(SERVICES))

import redis  # noqa: E402
from machine import describe_machine  # noqa: E402

from bordermon.core.crossing import parse_crossing  # noqa: E402
from bordermon.core.state import (  # noqa: E402
    ConsignmentState,
    apply,
    decode_state,
    encode_state,
    encode_state_json,
)
from bordermon.settings import Settings  # noqa: E402
from bordermon.simulate import SimulationSpec, generate  # noqa: E402
from bordermon.stores.base import ConsignmentCodec  # noqa: E402
from bordermon.stores.redis_store import DEFAULT_PREFIX, RedisStore  # noqa: E402

REDIS_SERVER = "/usr/bin/redis-server"
BATCH = 500  # states per save, the worker's batch bound


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def two_event_states(consignments: int, seed: int = 1) -> list[ConsignmentState]:
    """States of consignments holding an entry and an exit, both kept, as the worker saves
    them once the flags they raised (export-without-permit, if any) were acknowledged."""
    config = Settings.load({}).detection_config()
    spec = SimulationSpec(
        consignments=consignments,
        events=None,
        seed=seed,
        mix=(("slow", 1.0),),
        duplicate_rate=0.0,
        malformed_rate=0.0,
    )
    states: dict[str, ConsignmentState] = {}
    for line in generate(spec):
        event = parse_crossing(line, config.monitored_country)
        transition = apply(states.get(event.consignment_id), event, config)
        transition.state.pending.clear()  # acknowledged, as in the worker
        states[event.consignment_id] = transition.state
    kept_both = [s for s in states.values() if s.entries and s.exits and s.accepted == 2]
    if len(kept_both) != len(states):
        raise SystemExit(f"{len(states) - len(kept_both)} states do not hold two kept events")
    return kept_both


class JsonCodec(ConsignmentCodec):
    """Format 1, as earlier versions wrote it: the baseline."""

    def encode(self, state: ConsignmentState) -> bytes:
        return encode_state_json(state)


@contextmanager
def private_redis(binary: str = REDIS_SERVER) -> Iterator[str]:
    """A redis-server of our own on a free port, without persistence; yields its URL."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="bordermon-redis-") as data_dir:
        argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        argv += ["--appendonly", "no", "--dir", data_dir]
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"redis://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 15
            while True:
                try:
                    redis.Redis.from_url(url, socket_connect_timeout=1).ping()
                    break
                except redis.RedisError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"{binary} did not start on port {port}") from None
                    time.sleep(0.05)
            yield url
        finally:
            process.terminate()
            process.wait(timeout=10)


@dataclass(frozen=True, slots=True)
class Memory:
    per_consignment: float
    strlen_mean: float
    memory_usage_mean: float
    keys: int
    sampled: int
    with_expiry: int
    """Of the `sampled` keys, those with an expiry of their own."""


def used_memory(url: str) -> int:
    # Let Redis finish any incremental rehash of its tables before reading.
    time.sleep(0.3)
    with redis.Redis.from_url(url) as client:
        return int(client.info("memory")["used_memory"])


def measure_memory(
    server_url: str, database: int, states: list[ConsignmentState], codec: ConsignmentCodec
) -> Memory:
    """Save `states` with the real store into an empty database of the private server and
    return what that cost Redis. The store is closed before reading (no client buffers)."""
    url = f"{server_url}/{database}"
    ttl = Settings.load({}).state_ttl_seconds

    async def save_all() -> None:
        store = RedisStore.from_url(url, ttl_seconds=ttl, codec=codec)
        try:
            for start in range(0, len(states), BATCH):
                await store.save(states[start : start + BATCH])
                say(f"  saved {min(start + BATCH, len(states)):,} / {len(states):,}")
        finally:
            await store.close()

    with redis.Redis.from_url(url) as client:
        if client.dbsize():
            raise RuntimeError(f"database {database} of the private server is not empty")
    before = used_memory(url)
    asyncio.run(save_all())
    after = used_memory(url)
    with redis.Redis.from_url(url) as client:
        sample = [DEFAULT_PREFIX.encode() + s.consignment_id.encode() for s in states[:1000]]
        lengths = [int(client.strlen(key)) for key in sample]  # type: ignore[no-untyped-call]
        usage = [int(client.memory_usage(key, samples=0) or 0) for key in sample]
        with_expiry = sum(1 for key in sample if int(client.ttl(key)) > 0)
        keys = int(client.dbsize())
    return Memory(
        (after - before) / len(states),
        sum(lengths) / len(lengths),
        sum(usage) / len(usage),
        keys,
        len(sample),
        with_expiry,
    )


def warm_up_script(server_url: str, states: list[ConsignmentState]) -> None:
    """Load the save script (Redis counts its cache in used_memory) before measuring."""
    asyncio.run(_save_one(f"{server_url}/0", states[0]))


async def _save_one(url: str, state: ConsignmentState) -> None:
    store = RedisStore.from_url(url, ttl_seconds=60)
    try:
        await store.save([state])
    finally:
        await store.close()


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
