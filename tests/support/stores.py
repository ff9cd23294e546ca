"""For the state-store contract (tests/contract): real states built by the core, and harnesses
that open each store under test with the back doors the contract needs (raw writes, TTLs,
ageing)."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

import redis
import redis.asyncio as aioredis

from bordermon.core import ConsignmentState, CrossingEvent, apply
from bordermon.core.state import StateDecodeError
from bordermon.stores import MemoryStore, RedisStore, StateStore
from bordermon.stores.base import CorruptStateHandler
from support.builders import DEFAULT_DETECTION, entry, exit_, goods_of

RUN_ID = uuid.uuid4().hex[:12]
"""This test run's part of every Redis key it writes: `bordermon:test:<run>:<n>:...`."""
_test_numbers = itertools.count()

# Event ids as producers write them (UUIDs), so that sizes are realistic.
ENTRY_ID = "7f0c2a4e-8d1b-4c55-9a7e-3b2f1d0c9e81"

DETECTED_AT_NS = 1_700_000_000_000_000_000


# --- real states, built by the core from real events ----------------------------------------


def state_of(events: Iterable[CrossingEvent]) -> ConsignmentState:
    state: ConsignmentState | None = None
    for event in events:
        state = apply(state, event, DEFAULT_DETECTION, lambda: DETECTED_AT_NS).state
    assert state is not None
    return state


def entry_only(cid: str) -> ConsignmentState:
    """One candidate entry kept, HS codes, a declared destination, one fingerprint."""
    return state_of(
        [entry("ev-entry-1", "2024-03-01T10:00:00Z", consignment_id=cid, declared_destination="RU")]
    )


def two_entries(cid: str) -> ConsignmentState:
    return state_of(
        [
            entry(ENTRY_ID, "2024-03-01T10:00:00Z", consignment_id=cid),
            entry(
                "1d9e6b3a-52c0-4f7e-8a14-6c3d2b1a0f92",
                "2024-03-02T10:00:00Z",
                consignment_id=cid,
                checkpoint="KZ-KHORGOS",
                goods=goods_of("8542.31", "8517.62"),
            ),
        ]
    )


def exit_only(cid: str) -> ConsignmentState:
    """One candidate exit kept (its entry has not arrived yet)."""
    return state_of([exit_("ev-exit-1", "2024-03-05T10:00:00Z", consignment_id=cid)])


def flagged_pending(cid: str) -> ConsignmentState:
    """Entry + exit within the window: flagged, the flag pending, entries/exits dropped."""
    state = state_of(
        [
            entry(ENTRY_ID, "2024-03-01T10:00:00Z", consignment_id=cid),
            exit_(
                "0c66a7dc-0cc7-4ef0-bb1a-deff1d13af0d",
                "2024-03-05T10:00:00Z",
                consignment_id=cid,
                goods=goods_of("8542.31", "8471.30"),
            ),
        ]
    )
    assert state.flagged and state.pending and not state.entries and not state.exits
    return state


def flagged_acknowledged(cid: str) -> ConsignmentState:
    """What the worker stores once the flags topic acknowledged the flag."""
    state = flagged_pending(cid)
    state.pending.clear()
    return state


STATE_KINDS: dict[str, Callable[[str], ConsignmentState]] = {
    "entry_only": entry_only,
    "two_entries": two_entries,
    "exit_only": exit_only,
    "flagged_pending": flagged_pending,
    "flagged_acknowledged": flagged_acknowledged,
}


# --- the stores under test --------------------------------------------------------------------


class Harness:
    """One store under test plus the back doors the contract needs to check it.

    `session()` opens the store inside the running event loop (redis.asyncio connections belong
    to a loop) and closes it at the end.
    """

    kind = "abstract"

    @asynccontextmanager
    async def session(
        self, ttl_seconds: int = 600, on_corrupt: CorruptStateHandler | None = None
    ) -> AsyncIterator[StateStore]:
        raise NotImplementedError
        yield

    async def put_raw(self, consignment_id: str, raw: bytes) -> None:
        """Store raw bytes where the state of `consignment_id` lives."""
        raise NotImplementedError

    async def expires_in(self, consignment_id: str) -> float | None:
        """Seconds until the state expires; None when there is no state."""
        raise NotImplementedError

    async def age(self, consignment_ids: Iterable[str], seconds: float) -> None:
        """Make `seconds` pass for these states (and possibly others)."""
        raise NotImplementedError

    async def quarantined(self, consignment_id: str) -> bytes | None:
        raise NotImplementedError


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class MemoryHarness(Harness):
    kind = "memory"

    def __init__(self) -> None:
        self.clock = FakeClock()
        self.store: MemoryStore | None = None

    @asynccontextmanager
    async def session(
        self, ttl_seconds: int = 600, on_corrupt: CorruptStateHandler | None = None
    ) -> AsyncIterator[StateStore]:
        self.store = MemoryStore(ttl_seconds, clock=self.clock, on_corrupt=on_corrupt)
        try:
            yield self.store
        finally:
            await self.store.close()

    def _store(self) -> MemoryStore:
        assert self.store is not None, "use inside session()"
        return self.store

    async def put_raw(self, consignment_id: str, raw: bytes) -> None:
        self._store().put_raw(consignment_id, raw)

    async def expires_in(self, consignment_id: str) -> float | None:
        return self._store().expires_in(consignment_id)

    async def age(self, consignment_ids: Iterable[str], seconds: float) -> None:
        self.clock.now += seconds

    async def quarantined(self, consignment_id: str) -> bytes | None:
        return self._store().quarantined(consignment_id)


class RedisHarness(Harness):
    kind = "redis"

    def __init__(self, url: str) -> None:
        self.url = url
        self.namespace = f"bordermon:test:{RUN_ID}:{next(_test_numbers)}:"
        self.prefix = self.namespace + "state:"
        self.store: RedisStore | None = None
        self.raw: aioredis.Redis[bytes] | None = None

    @asynccontextmanager
    async def session(
        self, ttl_seconds: int = 600, on_corrupt: CorruptStateHandler | None = None
    ) -> AsyncIterator[StateStore]:
        self.store = RedisStore.from_url(self.url, ttl_seconds, self.prefix, on_corrupt=on_corrupt)
        self.raw = aioredis.Redis.from_url(self.url)
        try:
            yield self.store
        finally:
            await self.store.close()
            await self.raw.aclose()  # type: ignore[attr-defined,unused-ignore]

    def _clients(self) -> tuple[RedisStore, aioredis.Redis[bytes]]:
        assert self.store is not None and self.raw is not None, "use inside session()"
        return self.store, self.raw

    async def put_raw(self, consignment_id: str, raw: bytes) -> None:
        store, client = self._clients()
        await client.set(store.key(consignment_id), raw, ex=store.ttl_seconds)

    async def expires_in(self, consignment_id: str) -> float | None:
        store, client = self._clients()
        millis = await client.pttl(store.key(consignment_id))
        assert millis != -1, "a state without expiry"
        return None if millis == -2 else millis / 1000

    async def age(self, consignment_ids: Iterable[str], seconds: float) -> None:
        store, client = self._clients()
        for consignment_id in consignment_ids:
            key = store.key(consignment_id)
            left = await client.pttl(key)
            if left >= 0:
                # PEXPIRE with a time <= 0 deletes the key, as expiry would.
                await client.pexpire(key, left - round(seconds * 1000))

    async def quarantined(self, consignment_id: str) -> bytes | None:
        store, client = self._clients()
        return await client.get(store.quarantine_key(consignment_id))

    def delete_keys(self) -> int:
        """Delete every key this test wrote (sync: also runs when the test's loop is gone)."""
        client: redis.Redis[bytes] = redis.Redis.from_url(self.url)
        try:
            keys = list(client.scan_iter(match=self.namespace + "*", count=1000))
            if keys:
                client.delete(*keys)
            return len(keys)
        finally:
            client.close()


def run(coroutine: Any) -> Any:
    """Run one test scenario in a fresh event loop (the project does not use pytest-asyncio)."""
    return asyncio.run(coroutine)


class CorruptLog:
    """An `on_corrupt` callback that remembers its calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, StateDecodeError]] = []

    def __call__(self, consignment_id: str, error: StateDecodeError) -> None:
        self.calls.append((consignment_id, error))
