"""What only the Redis store promises: round trips, key layout, size, errors."""

from __future__ import annotations

import time
from typing import Any, cast

import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from bordermon.core import encode_state
from bordermon.core.state import encode_state_json
from bordermon.metrics import CONSIGNMENT_STORE, LINK_STORE, PROMETHEUS
from bordermon.processor.worker import open_stores
from bordermon.settings import Settings
from bordermon.stores import RedisStore, StoreUnavailable
from bordermon.stores.base import SaveConflict
from bordermon.stores.redis_store import RedisClient
from support.stores import (
    RUN_ID,
    STATE_KINDS,
    RedisHarness,
    entry_only,
    flagged_pending,
    run,
    two_entries,
)

pytestmark = pytest.mark.integration

TTL = 600


class CountingConnection(aioredis.Connection):
    """Counts round trips (one per packed write, whose replies are then read) and commands."""

    round_trips = 0
    commands: list[str] = []  # noqa: RUF012 (reset per test by `counting_client`)

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        type(self).round_trips += 1
        await super().send_packed_command(command, check_health)

    def pack_command(self, *args: Any) -> list[bytes]:
        name = args[0].decode() if isinstance(args[0], bytes) else str(args[0])
        type(self).commands.append(name.upper())
        return super().pack_command(*args)

    @classmethod
    def reset(cls) -> None:
        cls.round_trips = 0
        cls.commands = []


async def counting_store(harness: RedisHarness) -> tuple[RedisStore, aioredis.Redis[bytes]]:
    pool: Any = aioredis.ConnectionPool.from_url(harness.url, connection_class=CountingConnection)
    client: aioredis.Redis[bytes] = aioredis.Redis(connection_pool=pool)
    await client.ping()  # connect (and handshake) before counting
    CountingConnection.reset()
    store = RedisStore(cast(RedisClient, client), TTL, harness.prefix)
    return store, client


@pytest.mark.parametrize("batch", [1, 10, 500])
def test_load_is_one_mget_and_save_one_evalsha_whatever_the_batch(
    redis_harness: RedisHarness, batch: int
) -> None:
    states = [two_entries(f"CONS-{n:04d}") for n in range(batch)]
    ids = [s.consignment_id for s in states]

    async def scenario() -> None:
        store, client = await counting_store(redis_harness)
        try:
            await store.save(states[:1])  # the first save of a process may load the script
            CountingConnection.reset()
            await store.save(states)
            assert CountingConnection.round_trips == 1
            assert CountingConnection.commands == ["EVALSHA"]

            CountingConnection.reset()
            loaded = await store.load([*ids, "missing-1", "missing-2"])
            assert len(loaded) == batch
            assert CountingConnection.round_trips == 1
            assert CountingConnection.commands == ["MGET"]
        finally:
            await client.aclose()  # type: ignore[attr-defined,unused-ignore]

    run(scenario())


def test_keys_are_the_prefix_and_the_utf8_id_with_the_encoded_state_and_ttl(
    redis_harness: RedisHarness,
) -> None:
    cid = "KZ:CONS *1? [é] 🚚"
    state = entry_only(cid)

    async def scenario() -> None:
        async with redis_harness.session(TTL) as store:
            await store.save([state])
            assert redis_harness.raw is not None
            key = (redis_harness.prefix + cid).encode("utf-8")
            # The revision header, then the codec's bytes: `redis-cli GET` still reads it.
            assert await redis_harness.raw.get(key) == b"R1\n" + encode_state(state)
            assert 0 < await redis_harness.raw.ttl(key) <= TTL
            assert await redis_harness.raw.keys(redis_harness.namespace + "*") == [key]

    run(scenario())


def test_a_json_state_of_the_previous_version_loads_and_is_saved_back_in_format_2(
    redis_harness: RedisHarness,
) -> None:
    """An upgrade finds format-1 values (JSON, with a revision header) in Redis: they load
    with their revision, the compare-and-set holds, and the next save writes format 2."""
    state = flagged_pending("UPGRADED")

    async def scenario() -> None:
        async with redis_harness.session(TTL) as store:
            assert isinstance(store, RedisStore) and redis_harness.raw is not None
            key = store.key("UPGRADED")
            await redis_harness.raw.set(key, b"R7\n" + encode_state_json(state), ex=TTL)
            snapshot = await store.snapshot(["UPGRADED"])
            assert snapshot.states == {"UPGRADED": state}
            assert snapshot.revisions == {"UPGRADED": 7}
            with pytest.raises(SaveConflict):
                await store.save([state], expected={"UPGRADED": 6})
            assert await store.save([state], expected=snapshot.revisions) == {"UPGRADED": 8}
            assert await redis_harness.raw.get(key) == b"R8\n" + encode_state(state)

    run(scenario())


def test_quarantined_copies_expire_too(redis_harness: RedisHarness) -> None:
    async def scenario() -> None:
        async with redis_harness.session(TTL) as store:
            await redis_harness.put_raw("BAD", b"not a state")
            assert await store.load(["BAD"]) == {}
            assert isinstance(store, RedisStore) and redis_harness.raw is not None
            ttl = await redis_harness.raw.ttl(store.quarantine_key("BAD"))
            assert 0 < ttl <= TTL
            assert (
                store.quarantine_key("BAD")
                == (redis_harness.namespace + "state-corrupt:BAD").encode()
            )

    run(scenario())


def quarantined_total(store: str) -> float:
    return REGISTRY.get_sample_value("bordermon_states_quarantined_total", {"store": store}) or 0.0


def test_the_worker_stores_count_each_quarantined_state_under_their_own_store(
    redis_test_url: str,
) -> None:
    """`bordermon worker`'s two stores (consignment and link states, on the worker's own key
    prefixes) each count what they quarantine in bordermon_states_quarantined_total{store}."""
    consignment, link = f"QUARANTINED-{RUN_ID}", f"container:QUARANTINED-{RUN_ID}"
    counted: list[dict[str, float]] = []

    def count() -> None:
        counted.append(
            {label: quarantined_total(label) for label in (CONSIGNMENT_STORE, LINK_STORE)}
        )

    async def scenario() -> None:
        store, link_store = open_stores(Settings(redis_url=redis_test_url), PROMETHEUS)
        client: aioredis.Redis[bytes] = aioredis.Redis.from_url(redis_test_url)
        written = [store.key(consignment), store.quarantine_key(consignment)]
        written += [link_store.key(link), link_store.quarantine_key(link)]
        try:
            await client.set(store.key(consignment), b"not a state", ex=TTL)
            await client.set(link_store.key(link), b"not a link state", ex=TTL)
            count()
            assert await store.load([consignment]) == {}
            count()
            assert await link_store.load([link]) == {}
            count()
            assert await client.get(link_store.quarantine_key(link)) == b"not a link state"
        finally:
            await client.delete(*written)
            await client.aclose()  # type: ignore[attr-defined,unused-ignore]
            await store.close()
            await link_store.close()

    run(scenario())
    before, after_consignment, after_link = counted
    assert after_consignment == {**before, CONSIGNMENT_STORE: before[CONSIGNMENT_STORE] + 1}
    assert after_link == {**after_consignment, LINK_STORE: before[LINK_STORE] + 1}


def test_two_event_consignment_value_fits_a_128_byte_allocation(
    redis_harness: RedisHarness, record_property: Any
) -> None:
    """The steady-state value of a consignment seen twice, with realistic (UUID) event ids.

    At most 124 bytes with the revision header: with Redis's string header and terminator,
    one 128-byte jemalloc allocation (tests/integration/test_state_memory.py measures the
    whole key against the 300-byte budget).

    `flagged_pending` (an unacknowledged flag) is the one exception: it carries the whole flag
    until the flags topic acknowledges it, and is measured and recorded, not bounded here.
    """
    cid = "CONS-2024-000123"  # a typical id

    async def scenario() -> dict[str, tuple[int, int]]:
        sizes: dict[str, tuple[int, int]] = {}
        async with redis_harness.session(TTL) as store:
            assert redis_harness.raw is not None
            for kind, make in STATE_KINDS.items():
                state = make(cid)
                await store.save([state])
                key = (redis_harness.prefix + cid).encode()
                strlen = await redis_harness.raw.strlen(key)  # type: ignore[no-untyped-call,unused-ignore]
                memory = await redis_harness.raw.memory_usage(key, samples=0)
                assert strlen == len(b"R1\n" + encode_state(state))  # with the revision header
                sizes[kind] = (strlen, memory)
        return sizes

    sizes = run(scenario())
    for kind, (strlen, memory) in sizes.items():
        record_property(f"{kind}_strlen", strlen)
        record_property(f"{kind}_memory_usage", memory)
    print("\nstate sizes (STRLEN, MEMORY USAGE):", sizes)  # shown with -s
    assert sizes["two_entries"][0] <= 124
    assert sizes["flagged_acknowledged"][0] <= 124
    assert sizes["entry_only"][0] <= 124


def test_closed_port_raises_store_unavailable_quickly_with_masked_url() -> None:
    async def scenario() -> list[StoreUnavailable]:
        store = RedisStore.from_url("redis://:s3cret-pw@127.0.0.1:1/0", TTL)
        errors: list[StoreUnavailable] = []
        try:
            for call in (store.load(["x"]), store.save([entry_only("x")])):
                with pytest.raises(StoreUnavailable) as caught:
                    await call
                errors.append(caught.value)
        finally:
            await store.close()
        return errors

    started = time.monotonic()
    errors = run(scenario())
    elapsed = time.monotonic() - started
    assert elapsed < 2.0, f"took {elapsed:.2f}s"
    for error in errors:
        message = str(error)
        assert "s3cret-pw" not in message
        assert "redis://:***@127.0.0.1:1/0" in message
        assert "ConnectionError" in message
    assert "during load" in str(errors[0]) and "during save" in str(errors[1])


def test_unusable_configuration_is_rejected_up_front() -> None:
    with pytest.raises(ValueError, match="ttl_seconds"):
        RedisStore.from_url("redis://127.0.0.1:6379/0", 0)
    with pytest.raises(ValueError, match=r"\*\*\*") as caught:
        RedisStore.from_url("http://:s3cret-pw@127.0.0.1:6379/0", 60)
    assert "s3cret-pw" not in str(caught.value)


def test_save_survives_a_server_that_lost_the_script(redis_harness: RedisHarness) -> None:
    """A Redis restart (or SCRIPT FLUSH) drops cached scripts; the next save reloads it."""
    states = [two_entries(f"CONS-{n}") for n in range(3)]

    async def scenario() -> None:
        store, client = await counting_store(redis_harness)
        try:
            await store.save(states[:1])
            await client.script_flush()
            await store.save(states)
            loaded = await store.load([s.consignment_id for s in states])
            assert loaded == {s.consignment_id: s for s in states}
        finally:
            await client.aclose()  # type: ignore[attr-defined,unused-ignore]

    run(scenario())
