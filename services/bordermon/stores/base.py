"""What the stream worker needs from a consignment-state store, and what every store shares.

The worker handles events in batches: it loads the states of every consignment in a batch with
ONE `load`, applies the events with the pure core, then writes every changed state back with ONE
`save` before it commits the batch's offsets. A store therefore costs two round trips per batch,
whatever the batch size, which is what keeps the worker's throughput independent of Redis
latency.

Bounded state (SPEC §6): each `save` (re)sets the state's expiry, so a consignment disappears
`ttl_seconds` after its last event, and memory stays proportional to consignments in flight.

Single writer (SPEC §6). Two mechanisms, both checked atomically by the store inside `save`:

- **revisions**: every stored state carries a revision number, bumped by each save. `snapshot`
  returns the revisions it read, and `save(..., expected=snapshot.revisions)` writes only if no
  one else wrote those keys in between; otherwise it writes nothing and raises `SaveConflict`,
  and the worker reloads and re-applies (applying an event twice changes nothing). This makes
  two writers of one consignment safe whatever the partitioning (e.g. a Java client and the SDK
  hashing keys differently).
- **owner tokens** (fencing): a worker that is assigned a partition `claim`s an owner token for
  it (a counter bumped per claim) and passes its tokens to `save` as the `fence`. A worker that
  lost the partition holds an older token, so its save is refused with `Fenced` before any write,
  however long it was paused.

Undecodable stored state (corrupt bytes, a state written by a newer bordermon, or a value whose
consignment id is not the one it is stored under) is handled the same way by every store:

- it must not stop the worker, so `load` treats that consignment as absent (the worker starts it
  afresh, as for a new consignment);
- it must not be lost silently, so the store logs the consignment id and key at ERROR, calls the
  `on_corrupt(consignment_id, error)` callback if it was given one (the worker counts it in
  `bordermon_states_quarantined_total{store}`, which the BordermonStatesQuarantined alert
  watches: `bordermon.processor.worker.open_stores`), and copies the raw bytes to a separate
  quarantine area, kept for the same TTL, before the worker's next save overwrites the
  original. An operator can inspect or restore it from there.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Generic, Protocol

from typing_extensions import TypeVar

from bordermon.core.link import LinkState, decode_link_state, encode_link_state
from bordermon.core.state import ConsignmentState, StateDecodeError, decode_state, encode_state

CorruptStateHandler = Callable[[str, StateDecodeError], None]
"""Called with the key (consignment id) and the decoding error for each undecodable state."""

log = logging.getLogger("bordermon.stores")

# Stores hold consignment states unless told otherwise (the link stage holds link states).
S = TypeVar("S", default=ConsignmentState)


class StoreUnavailable(Exception):
    """The store cannot be reached or refused the operation; the batch was not loaded/saved.

    The worker backs off and retries the batch without committing its offsets. The message
    names the store (passwords masked).
    """


class SaveConflict(Exception):
    """Another writer changed some of these states since they were read; nothing was written."""

    def __init__(self, keys: Collection[str]) -> None:
        super().__init__(f"{len(keys)} state(s) changed by another writer: {sorted(keys)[:5]}")
        self.keys = frozenset(keys)


class Fenced(Exception):
    """This writer no longer owns these partitions (another claimed them); nothing was written."""

    def __init__(self, owners: Collection[str]) -> None:
        super().__init__(f"ownership lost for {sorted(owners)}")
        self.owners = frozenset(owners)


class StateCodec(Protocol[S]):
    """How a store turns one kind of state into bytes and back, and which key it lives under."""

    def key_of(self, state: S) -> str: ...

    def encode(self, state: S) -> bytes: ...

    def decode(self, key: str, raw: bytes) -> S:
        """Raises `StateDecodeError` when `raw` is not a usable state *for this key*."""
        ...


class ConsignmentCodec:
    """Consignment states, keyed by consignment id."""

    def key_of(self, state: ConsignmentState) -> str:
        return state.consignment_id

    def encode(self, state: ConsignmentState) -> bytes:
        return encode_state(state)

    def decode(self, key: str, raw: bytes) -> ConsignmentState:
        # A state of another consignment is refused there too: applying this consignment's
        # events to it would mix two consignments.
        return decode_state(raw, key)


CONSIGNMENTS = ConsignmentCodec()


class LinkCodec:
    """Link states of `relabel-to-ru`, keyed by link key (`container:MSCU1234567`)."""

    def key_of(self, state: LinkState) -> str:
        return state.link

    def encode(self, state: LinkState) -> bytes:
        return encode_link_state(state)

    def decode(self, key: str, raw: bytes) -> LinkState:
        state = decode_link_state(raw)
        if state.link != key:
            raise StateDecodeError(f"stored link state belongs to {state.link!r}, not {key!r}")
        return state


LINKS = LinkCodec()


@dataclass(slots=True)
class Snapshot(Generic[S]):
    """States as read, with the revision of every key asked for (0: no state stored)."""

    states: dict[str, S] = field(default_factory=dict)
    revisions: dict[str, int] = field(default_factory=dict)


class StateStore(Protocol[S]):
    """States keyed by a string, expiring `ttl_seconds` after their last save."""

    async def load(self, keys: Collection[str]) -> dict[str, S]:
        """The stored states of these keys (`snapshot(keys).states`)."""
        ...

    async def snapshot(self, keys: Collection[str]) -> Snapshot[S]:
        """The stored states of these keys and their revisions, in one round trip.

        Keys with no usable state (never saved, expired, or undecodable: see the module
        docstring) are missing from `states`. Raises `StoreUnavailable`.
        """
        ...

    async def save(
        self,
        states: Iterable[S],
        *,
        expected: Mapping[str, int] | None = None,
        fence: Mapping[str, int] | None = None,
    ) -> dict[str, int]:
        """Store these states in one atomic step, each expiring `ttl_seconds` from now, and
        return their new revisions.

        `fence` maps owner names to the tokens `claim` gave: if any is no longer current,
        nothing is written and `Fenced` names the lost owners. `expected` maps keys to the
        revisions read: if any differs now, nothing is written and `SaveConflict` names them
        (keys not in `expected` are written whatever their revision). When a key appears twice,
        the last state wins. Raises `StoreUnavailable`.
        """
        ...

    async def claim(self, owners: Collection[str]) -> dict[str, int]:
        """Take ownership of these names (e.g. `topic:partition`): a new token for each, which
        invalidates every token handed out before for that name."""
        ...

    async def close(self) -> None:
        """Release connections; the store is not used afterwards."""
        ...


def validate_ttl(ttl_seconds: int) -> int:
    if isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, int) or ttl_seconds < 1:
        raise ValueError(f"ttl_seconds must be a whole number of seconds >= 1, got {ttl_seconds!r}")
    return ttl_seconds


def last_per_key(states: Iterable[S], codec: StateCodec[S]) -> dict[str, S]:
    """One state per key, the last one given winning (the `save` contract)."""
    return {codec.key_of(state): state for state in states}


def report_corrupt(
    key: str,
    error: StateDecodeError,
    where: str,
    quarantined_at: str,
    on_corrupt: CorruptStateHandler | None,
) -> None:
    log.error(
        "undecodable state for %r at %s (%s); treated as absent, raw value kept at %s",
        key,
        where,
        error,
        quarantined_at,
    )
    if on_corrupt is not None:
        on_corrupt(key, error)
