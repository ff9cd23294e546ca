"""What the stream worker needs from a consignment-state store, and what every store shares.

The worker handles events in batches: it loads the states of every consignment in a batch with
ONE `load`, applies the events with the pure core, then writes every changed state back with ONE
`save` before it commits the batch's offsets. A store therefore costs two round trips per batch,
whatever the batch size, which is what keeps the worker's throughput independent of Redis
latency.

Bounded state (SPEC §6): each `save` (re)sets the state's expiry, so a consignment disappears
`ttl_seconds` after its last event, and memory stays proportional to consignments in flight.

Undecodable stored state (corrupt bytes, a state written by a newer bordermon, or a value whose
consignment id is not the one it is stored under) is handled the same way by every store:

- it must not stop the worker, so `load` treats that consignment as absent (the worker starts it
  afresh, as for a new consignment);
- it must not be lost silently, so the store logs the consignment id and key at ERROR, calls the
  `on_corrupt(consignment_id, error)` callback (the worker counts it in a metric), and copies the
  raw bytes to a separate quarantine area, kept for the same TTL, before the worker's next save
  overwrites the original. An operator can inspect or restore it from there.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable
from typing import Protocol

from bordermon.core.state import ConsignmentState, StateDecodeError, decode_state

CorruptStateHandler = Callable[[str, StateDecodeError], None]
"""Called with the consignment id and the decoding error for each undecodable stored state."""

log = logging.getLogger("bordermon.stores")


class StoreUnavailable(Exception):
    """The store cannot be reached or refused the operation; the batch was not loaded/saved.

    The one exception the worker catches around `load`/`save`: it backs off and retries the
    batch without committing its offsets. The message names the store (passwords masked).
    """


class StateStore(Protocol):
    """Per-consignment state, keyed by consignment id, expiring `ttl_seconds` after last save."""

    async def load(self, consignment_ids: Collection[str]) -> dict[str, ConsignmentState]:
        """The stored states of these consignments, in one round trip.

        Ids with no state (never saved, expired, or undecodable: see the module docstring) are
        missing from the result. Raises `StoreUnavailable`.
        """
        ...

    async def save(self, states: Iterable[ConsignmentState]) -> None:
        """Store these states, in one round trip, each expiring `ttl_seconds` from now.

        When a consignment appears twice, the last state wins. Raises `StoreUnavailable`; a
        failed save may have stored some of the states and not others, which is safe because
        the worker then re-applies the batch and applying an event twice changes nothing.
        """
        ...

    async def close(self) -> None:
        """Release connections; the store is not used afterwards."""
        ...


def validate_ttl(ttl_seconds: int) -> int:
    if isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, int) or ttl_seconds < 1:
        raise ValueError(f"ttl_seconds must be a whole number of seconds >= 1, got {ttl_seconds!r}")
    return ttl_seconds


def decode_stored(consignment_id: str, raw: bytes) -> ConsignmentState:
    """Decode the state stored for `consignment_id`; raises `StateDecodeError` when unusable.

    A state that decodes but belongs to another consignment is unusable too: applying this
    consignment's events to it would mix two consignments.
    """
    state = decode_state(raw)
    if state.consignment_id != consignment_id:
        raise StateDecodeError(
            f"stored state belongs to consignment {state.consignment_id!r}, not {consignment_id!r}"
        )
    return state


def report_corrupt(
    consignment_id: str,
    error: StateDecodeError,
    where: str,
    quarantined_at: str,
    on_corrupt: CorruptStateHandler | None,
) -> None:
    log.error(
        "undecodable state for consignment %r at %s (%s); treated as absent, raw value kept at %s",
        consignment_id,
        where,
        error,
        quarantined_at,
    )
    if on_corrupt is not None:
        on_corrupt(consignment_id, error)
