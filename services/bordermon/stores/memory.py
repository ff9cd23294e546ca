"""An in-process `StateStore`, for tests, `replay`, and single-process development.

It keeps the *encoded* bytes, not the objects, so everything that goes through it also goes
through the state codec exactly as it would with Redis (and a caller cannot mutate a stored
state by keeping a reference to it). Expiry follows an injectable clock, so TTL behaviour can
be tested without sleeping.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable

from bordermon.core.state import ConsignmentState, StateDecodeError, encode_state
from bordermon.stores.base import (
    CorruptStateHandler,
    decode_stored,
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

    def get(self, key: str) -> bytes | None:
        item = self._data.get(key)
        if item is None:
            return None
        if item[1] <= self._clock():
            del self._data[key]
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
            self._data.popitem(last=False)

    def expires_in(self, key: str) -> float | None:
        if self.get(key) is None:
            return None
        return self._data[key][1] - self._clock()

    def __len__(self) -> int:
        return len(self._data)


class MemoryStore:
    """A dict-backed `StateStore` holding encoded states, with expiry on an injectable clock.

    `clock` returns seconds (default `time.monotonic`) and must not go backwards.
    """

    def __init__(
        self,
        ttl_seconds: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_corrupt: CorruptStateHandler | None = None,
    ) -> None:
        self.ttl_seconds = validate_ttl(ttl_seconds)
        self._states = _ExpiringBytes(ttl_seconds, clock)
        self._quarantine = _ExpiringBytes(ttl_seconds, clock)
        self._on_corrupt = on_corrupt

    async def load(self, consignment_ids: Collection[str]) -> dict[str, ConsignmentState]:
        found: dict[str, ConsignmentState] = {}
        for consignment_id in consignment_ids:
            raw = self._states.get(consignment_id)
            if raw is None:
                continue
            try:
                found[consignment_id] = decode_stored(consignment_id, raw)
            except StateDecodeError as error:
                self._quarantine.put(consignment_id, raw)
                report_corrupt(
                    consignment_id,
                    error,
                    "memory store",
                    "the memory store's quarantine",
                    self._on_corrupt,
                )
        return found

    async def save(self, states: Iterable[ConsignmentState]) -> None:
        for state in states:
            self._states.put(state.consignment_id, encode_state(state))

    async def close(self) -> None:
        return None

    # Inspection, for tests and tools; the worker uses only the `StateStore` methods.

    def put_raw(self, consignment_id: str, raw: bytes) -> None:
        """Store raw bytes as if `save` had written them (e.g. a corrupt value, in tests)."""
        self._states.put(consignment_id, raw)

    def expires_in(self, consignment_id: str) -> float | None:
        """Seconds until this consignment's state expires; None when there is none."""
        return self._states.expires_in(consignment_id)

    def quarantined(self, consignment_id: str) -> bytes | None:
        """The raw bytes of an undecodable state set aside by `load`, if any."""
        return self._quarantine.get(consignment_id)

    def __len__(self) -> int:
        """How many states are held, including expired ones not yet dropped."""
        return len(self._states)
