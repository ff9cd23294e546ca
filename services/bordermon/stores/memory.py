"""An in-process `StateStore`, for tests, `replay`, and single-process development.

It keeps the *encoded* bytes, not the objects, so everything that goes through it also goes
through the state codec exactly as it would with Redis (and a caller cannot mutate a stored
state by keeping a reference to it). Expiry follows an injectable clock, so TTL behaviour can
be tested without sleeping.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Generic

from bordermon.core.state import StateDecodeError
from bordermon.stores.base import (
    CONSIGNMENTS,
    CorruptStateHandler,
    Fenced,
    S,
    SaveConflict,
    Snapshot,
    StateCodec,
    last_per_key,
    report_corrupt,
    validate_ttl,
)


class _ExpiringBytes:
    """id -> bytes with one TTL for all entries.

    Entries are kept in order of their last write; with a single TTL and a clock that does not
    go backwards, that is also the order in which they expire, so dropping expired entries on
    each write costs only the number of expired entries, and memory stays proportional to the
    live ones even when expired ids are never read again.
    """

    def __init__(self, ttl_seconds: int, clock: Callable[[], float]) -> None:
        self._ttl = ttl_seconds
        self._clock = clock
        self._data: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self.revisions: dict[str, int] = {}
        """Revision of each key's last write; like Redis, a key that expired starts again at 0."""

    def get(self, key: str) -> bytes | None:
        item = self._data.get(key)
        if item is None:
            return None
        if item[1] <= self._clock():
            del self._data[key]
            self.revisions.pop(key, None)
            return None
        return item[0]

    def put(self, key: str, raw: bytes) -> None:
        now = self._clock()
        self._data[key] = (raw, now + self._ttl)
        self._data.move_to_end(key)
        while self._data:
            oldest = next(iter(self._data.values()))
            if oldest[1] > now:
                break
            expired, _ = self._data.popitem(last=False)
            self.revisions.pop(expired, None)

    def expires_in(self, key: str) -> float | None:
        if self.get(key) is None:
            return None
        return self._data[key][1] - self._clock()

    def __len__(self) -> int:
        return len(self._data)


class MemoryStore(Generic[S]):
    """A dict-backed `StateStore` holding encoded states, with expiry on an injectable clock.

    `clock` returns seconds (default `time.monotonic`) and must not go backwards. Revisions and
    owner tokens follow the same rules as the Redis store, so the contract tests hold for both.
    """

    def __init__(
        self,
        ttl_seconds: int,
        *,
        codec: StateCodec[S] = CONSIGNMENTS,  # type: ignore[assignment]
        clock: Callable[[], float] = time.monotonic,
        on_corrupt: CorruptStateHandler | None = None,
    ) -> None:
        self.ttl_seconds = validate_ttl(ttl_seconds)
        self._codec = codec
        self._states = _ExpiringBytes(ttl_seconds, clock)
        self._quarantine = _ExpiringBytes(ttl_seconds, clock)
        self._owners: dict[str, int] = {}
        self._on_corrupt = on_corrupt

    async def load(self, keys: Collection[str]) -> dict[str, S]:
        return (await self.snapshot(keys)).states

    async def snapshot(self, keys: Collection[str]) -> Snapshot[S]:
        snapshot: Snapshot[S] = Snapshot()
        for key in keys:
            raw = self._states.get(key)
            snapshot.revisions[key] = self._states.revisions.get(key, 0)
            if raw is None:
                continue
            try:
                snapshot.states[key] = self._codec.decode(key, raw)
            except StateDecodeError as error:
                self._quarantine.put(key, raw)
                report_corrupt(
                    key, error, "memory store", "the memory store's quarantine", self._on_corrupt
                )
        return snapshot

    async def save(
        self,
        states: Iterable[S],
        *,
        expected: Mapping[str, int] | None = None,
        fence: Mapping[str, int] | None = None,
    ) -> dict[str, int]:
        # Encode first, as the Redis store does: a state that cannot be encoded writes nothing.
        latest = last_per_key(states, self._codec)
        writes = {key: self._codec.encode(state) for key, state in latest.items()}
        owners = fence or {}
        lost = [owner for owner, token in owners.items() if self._owners.get(owner) != token]
        if lost:
            raise Fenced(lost)
        revisions = self._states.revisions
        for key in writes:
            self._states.get(key)  # drops the key (and its revision) if it has expired
        moved = [
            key
            for key in writes
            if expected is not None and key in expected and revisions.get(key, 0) != expected[key]
        ]
        if moved:
            raise SaveConflict(moved)
        saved: dict[str, int] = {}
        for key, raw in writes.items():
            revision = revisions.get(key, 0) + 1
            self._states.put(key, raw)
            revisions[key] = saved[key] = revision
        return saved

    async def claim(self, owners: Collection[str]) -> dict[str, int]:
        for owner in owners:
            self._owners[owner] = self._owners.get(owner, 0) + 1
        return {owner: self._owners[owner] for owner in owners}

    async def close(self) -> None:
        return None

    # Inspection, for tests and tools; the worker uses only the `StateStore` methods.

    def put_raw(self, key: str, raw: bytes) -> None:
        """Store raw bytes as if `save` had written them (e.g. a corrupt value, in tests)."""
        self._states.put(key, raw)
        self._states.revisions[key] = self._states.revisions.get(key, 0) + 1

    def expires_in(self, key: str) -> float | None:
        """Seconds until this key's state expires; None when there is none."""
        return self._states.expires_in(key)

    def quarantined(self, key: str) -> bytes | None:
        """The raw bytes of an undecodable state set aside by `load`, if any."""
        return self._quarantine.get(key)

    def __len__(self) -> int:
        """How many states are held, including expired ones not yet dropped."""
        return len(self._states)
