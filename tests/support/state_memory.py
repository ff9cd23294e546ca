"""Redis memory per consignment (issue 11), measured the one way that the budget test
(tests/integration/test_state_memory.py) and the benchmark (tests/bench/bench_state_memory.py)
share: states of two-event consignments built by the core from simulated crossings, saved by
the real `RedisStore` into an empty database of a private redis-server (support.redis_servers),
the cost being (used_memory after - before) / N."""

from __future__ import annotations

import asyncio
import collections
import sys
import time
from dataclasses import dataclass

import redis

from bordermon.core.crossing import parse_crossing
from bordermon.core.state import ConsignmentState, apply, encode_state_json
from bordermon.settings import Settings
from bordermon.simulate import SimulationSpec, generate
from bordermon.stores.base import ConsignmentCodec
from bordermon.stores.redis_store import DEFAULT_PREFIX, RedisStore

BATCH = 500  # states per save, the worker's batch bound


def say(text: str) -> None:
    """Progress, on stderr."""
    print(text, file=sys.stderr, flush=True)


@dataclass(frozen=True, slots=True)
class SimulatedStates:
    states: list[ConsignmentState]
    flags_by_rule: collections.Counter[str]
    """Flags the crossings raised on the way (all acknowledged: none is left pending)."""


def slow_consignment_states(consignments: int, seed: int = 1) -> SimulatedStates:
    """The states the core builds from the simulator's `slow` consignments (entry and exit
    further apart than the window, so they do not pair), as the worker saves them once the
    flags they raised (export-without-permit, if any) were acknowledged."""
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
    flags_by_rule: collections.Counter[str] = collections.Counter()
    for line in generate(spec):
        event = parse_crossing(line, config.monitored_country)
        transition = apply(states.get(event.consignment_id), event, config)
        flags_by_rule.update(flag.rule for flag in transition.flags)
        transition.state.pending.clear()  # acknowledged, as in the worker
        states[event.consignment_id] = transition.state
    return SimulatedStates(list(states.values()), flags_by_rule)


def two_event_states(consignments: int, seed: int = 1) -> list[ConsignmentState]:
    """`slow_consignment_states`, each holding an entry and an exit, both kept."""
    states = slow_consignment_states(consignments, seed).states
    kept_both = [s for s in states if s.entries and s.exits and s.accepted == 2]
    if len(kept_both) != len(states):
        raise SystemExit(f"{len(states) - len(kept_both)} states do not hold two kept events")
    return kept_both


class JsonCodec(ConsignmentCodec):
    """Format 1, as earlier versions wrote it: the baseline."""

    def encode(self, state: ConsignmentState) -> bytes:
        return encode_state_json(state)


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
