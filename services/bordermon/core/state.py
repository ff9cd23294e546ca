"""The consignment stage: per-consignment state and `apply(state, event) -> Transition`.

This is the one copy of the consignment-level detection; the replay command and the stream
worker both drive it. It runs the consignment rules of `bordermon.core.rules`
(`transit-to-ru`, `export-without-permit`) and, for `relabel-to-ru`, emits the link
sightings that the link stage (`bordermon.core.link`) decides on. What is kept, and why:

- `entries` / `exits`: crossings `transit-to-ru` may still pair (qualifying entries and
  exits only), kept until the consignment is flagged under it, then dropped: one flag per
  rule, so nothing more can come of them. `export-without-permit` keeps nothing.
- `hs_codes`, `declared`: everything severity and reasons need, as sets.
- `seen`: fingerprints (8 bytes of BLAKE2b) of the most recent event ids, at most
  `dedup_memory` of them, so a consignment scanned thousands of times stays bounded. Kept
  crossings are always deduplicated exactly by their ids; a fingerprint that has aged out can
  only let a very old duplicate of a non-candidate event be counted again, which changes no
  flag.
- `flagged`: rules already flagged, so re-reading the topic emits no new flag.
  Link sightings are not remembered: they carry no clock value, so one emitted again (a
  duplicate the fingerprints no longer catch) is the same bytes and the link stage drops it.
- `pending`: flags detected but not yet acknowledged by the flags topic. The worker writes the
  state with the flag in it before producing, and clears it after the broker acknowledges;
  a crash in between re-sends the very same flag (same `detected_at` too).

Stored form (`encode_state` / `decode_state`): format 2, binary (a version byte, msgpack of
positional fields packed by `bordermon.core.packing`, a CRC-32 tied to the consignment id); a
two-event consignment is ~100 bytes. A state read leaves its kept crossings packed until they
are used (`ConsignmentState`), and is written back as read where unchanged. Format 1, the
JSON earlier versions wrote (~330 bytes), is still read. docs/design.md, "Consignment state",
says why.
"""

from __future__ import annotations

import base64
import hashlib
import time
import zlib
from collections.abc import Callable
from typing import Annotated, NamedTuple

import msgspec
import orjson

from bordermon.core.config import DetectionConfig
from bordermon.core.crossing import CrossingEvent
from bordermon.core.flag import Flag
from bordermon.core.packing import (
    PackedFlag,
    PackedRule,
    PackedSighting,
    pack_flag,
    pack_hs_codes,
    pack_pairs,
    pack_rules,
    pack_sightings,
    unpack_flag,
    unpack_hs_codes,
    unpack_pairs,
    unpack_rules,
    unpack_sightings,
)
from bordermon.core.rules import CONSIGNMENT_RULES, SIGHTING_SOURCES
from bordermon.core.sighting import LinkSighting, Sighting

STATE_VERSION = 2
"""The format `encode_state` writes: its first byte. Format 1 was JSON, whose first byte is
`{` (0x7B); later formats take 3, 4... and must never take 0x7B."""
JSON_STATE_VERSION = 1
_VERSION_BYTE = bytes([STATE_VERSION])
FINGERPRINT_BYTES = 8


def fingerprint(event_id: str) -> bytes:
    return hashlib.blake2b(event_id.encode(), digest_size=FINGERPRINT_BYTES).digest()


def remember(seen: list[bytes], new_fingerprint: bytes, limit: int) -> None:
    """Add a fingerprint, forgetting the oldest beyond `limit` (the state stays bounded)."""
    seen.append(new_fingerprint)
    if len(seen) > limit:
        del seen[: len(seen) - limit]


def pack_fingerprints(seen: list[bytes]) -> str:
    return base64.b64encode(b"".join(seen)).decode("ascii")


def unpack_fingerprints(text: str) -> list[bytes]:
    return split_fingerprints(base64.b64decode(text, validate=True))


def split_fingerprints(packed: bytes) -> list[bytes]:
    if len(packed) % FINGERPRINT_BYTES:
        raise ValueError("the fingerprints are not whole")
    return [packed[i : i + FINGERPRINT_BYTES] for i in range(0, len(packed), FINGERPRINT_BYTES)]


class ConsignmentState:
    """Everything detection remembers about one consignment. Owned by one worker at a time.

    A state read by `decode_state` unpacks its kept crossings (`entries`, `exits`: writing
    their ids and times back as text is most of a decode) when they are first used, and
    `encode_state` writes back what it read for those unused or unchanged since. Most events
    never look at them: only a qualifying crossing for `transit-to-ru` does (an exit to a
    destination of concern reads the entries, an entry the exits), and `has_seen` only when
    the ring has forgotten ids. Otherwise a plain class of fields, as `dataclass` would
    write it (constructor, equality, `repr`).
    """

    __slots__ = (
        "_entries",
        "_exits",
        "_packed_entries",
        "_packed_exits",
        "_packed_hs_codes",
        "_read_entries",
        "_read_exits",
        "_read_hs_codes",
        "accepted",
        "consignment_id",
        "declared",
        "flagged",
        "hs_codes",
        "pending",
        "seen",
    )

    consignment_id: str
    accepted: int
    hs_codes: set[str]
    declared: set[str]
    seen: list[bytes]
    flagged: set[str]
    pending: list[Flag]
    # Each list of kept crossings: the list (None until first used, in a state read from
    # storage), the packed crossings it was read from (none, in a state not read), and what
    # they unpacked to (a copy: the list changes in place; None until used).
    _entries: list[Sighting] | None
    _packed_entries: list[PackedSighting]
    _read_entries: list[Sighting] | None
    _exits: list[Sighting] | None
    _packed_exits: list[PackedSighting]
    _read_exits: list[Sighting] | None
    # The HS codes as read, packed and unpacked (a copy), for the same reason: the events of
    # a consignment mostly carry the codes it has already.
    _packed_hs_codes: bytes | list[str]
    _read_hs_codes: frozenset[str] | None

    def __init__(
        self,
        consignment_id: str,
        accepted: int = 0,
        *,
        entries: list[Sighting] | None = None,
        exits: list[Sighting] | None = None,
        hs_codes: set[str] | None = None,
        declared: set[str] | None = None,
        seen: list[bytes] | None = None,
        flagged: set[str] | None = None,
        pending: list[Flag] | None = None,
    ) -> None:
        self.consignment_id = consignment_id
        self.accepted = accepted
        self._entries = [] if entries is None else entries
        self._exits = [] if exits is None else exits
        self.hs_codes = set() if hs_codes is None else hs_codes
        self.declared = set() if declared is None else declared
        self.seen = [] if seen is None else seen
        self.flagged = set() if flagged is None else flagged
        self.pending = [] if pending is None else pending
        self._packed_entries = self._packed_exits = _NONE_PACKED
        self._read_entries = self._read_exits = self._read_hs_codes = None
        self._packed_hs_codes = b""

    @property
    def entries(self) -> list[Sighting]:
        entries = self._entries
        if entries is None:  # not used since read
            entries = self._entries = unpack_sightings(self._packed_entries)
            self._read_entries = entries[:]
        return entries

    @entries.setter
    def entries(self, entries: list[Sighting]) -> None:
        self._entries = entries

    @property
    def exits(self) -> list[Sighting]:
        exits = self._exits
        if exits is None:  # not used since read
            exits = self._exits = unpack_sightings(self._packed_exits)
            self._read_exits = exits[:]
        return exits

    @exits.setter
    def exits(self, exits: list[Sighting]) -> None:
        self._exits = exits

    def _fields(self) -> tuple[object, ...]:
        return (
            self.consignment_id,
            self.accepted,
            self.entries,
            self.exits,
            self.hs_codes,
            self.declared,
            self.seen,
            self.flagged,
            self.pending,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ConsignmentState):
            return NotImplemented
        return self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]  # mutable, as a dataclass with eq

    def __repr__(self) -> str:
        fields = zip(_FIELD_NAMES, self._fields(), strict=True)
        return f"ConsignmentState({', '.join(f'{name}={value!r}' for name, value in fields)})"

    def has_seen(self, event_id: str, event_fingerprint: bytes) -> bool:
        if event_fingerprint in self.seen:
            return True
        # Every accepted event's fingerprint went into the ring, the kept crossings' too, so
        # while it has forgotten none (it holds one per accepted event) an id it does not
        # hold is not a kept crossing's. Once it has, kept crossings are checked by id.
        if len(self.seen) >= self.accepted:
            return False
        # (Most states keep none or one, so skip the generators when empty.)
        if self.entries and any(kept.event_id == event_id for kept in self.entries):
            return True
        return bool(self.exits) and any(kept.event_id == event_id for kept in self.exits)


_FIELD_NAMES = (
    "consignment_id",
    "accepted",
    "entries",
    "exits",
    "hs_codes",
    "declared",
    "seen",
    "flagged",
    "pending",
)
_new_object = object.__new__
_NONE_PACKED: list[PackedSighting] = []
"""The packed crossings of a state not read from storage (shared: never changed)."""


def _packed(
    kept: list[Sighting], packed: list[PackedSighting], read: list[Sighting] | None
) -> list[PackedSighting]:
    """One list of kept crossings packed, reusing what was read for the crossings it still
    holds of those (list equality checks identity first: an unchanged list costs one
    comparison)."""
    if read is None:  # not read from storage, or replaced unused
        return pack_sightings(kept) if kept else []
    if kept == read:
        return packed
    count = len(read)
    if count and kept[:count] == read:  # crossings kept since, after those read
        return packed + pack_sightings(kept[count:])
    return pack_sightings(kept)


class Transition(NamedTuple):
    """The result of applying one event: the new state and what it produced (flags of the
    consignment rules, and link sightings for the link stage, both in a stable order)."""

    state: ConsignmentState
    flags: tuple[Flag, ...]
    sightings: tuple[LinkSighting, ...]
    duplicate: bool


def apply(
    state: ConsignmentState | None,
    event: CrossingEvent,
    config: DetectionConfig,
    clock: Callable[[], int] = time.time_ns,
) -> Transition:
    """Apply one accepted event to its consignment's state.

    The state is updated in place and returned (copying it per event would make long
    consignments quadratic); callers own the state they pass in. `clock` gives `detected_at`
    and is only called when a flag is raised.
    """
    if state is None:
        state = ConsignmentState(event.consignment_id)
    event_fingerprint = fingerprint(event.event_id)
    if state.has_seen(event.event_id, event_fingerprint):
        return Transition(state, (), (), duplicate=True)

    remember(state.seen, event_fingerprint, config.dedup_memory)
    state.accepted += 1
    state.hs_codes.update(event.hs_codes)
    if event.declared_destination is not None:
        state.declared.add(event.declared_destination)

    flags: list[Flag] = []
    for name, detect in CONSIGNMENT_RULES.items():
        if name not in config.rules or name in state.flagged:
            continue
        flag = detect(state, event, config, clock)
        if flag is not None:
            state.flagged.add(name)
            state.pending.append(flag)
            flags.append(flag)
    sightings: tuple[LinkSighting, ...] = ()
    for name, emit in SIGHTING_SOURCES.items():
        if name in config.rules:
            sightings += emit(event, config)
    return Transition(state, tuple(flags), sightings, duplicate=False)


_Fingerprint = Annotated[
    bytes, msgspec.Meta(min_length=FINGERPRINT_BYTES, max_length=FINGERPRINT_BYTES)
]
_LISTED_FINGERPRINTS = 8
"""A ring of up to this many fingerprints is stored as a list of them, which the decoder hands
over as it is; a longer one as one string, 2 bytes a fingerprint smaller, cut up in Python."""


class _PackedState(msgspec.Struct, array_like=True, forbid_unknown_fields=True):
    """Format 2 of a consignment state: a msgpack array, empty fields at the end left out.

    The consignment id is not in it (the key holds it; the checksum ties the value to it).
    `seen` is the fingerprint ring, oldest first: a list of 8-byte strings, or one string of
    them all when longer than `_LISTED_FINGERPRINTS`. The types say every range and length a
    part may have (`packing.PackedSighting`): what the decoder lets through unpacks. A field
    more than these is refused, not skipped: adding one is a new format version, and a reader
    that dropped it would lose it on its next save.
    """

    accepted: int
    entries: list[PackedSighting] = []
    exits: list[PackedSighting] = []
    hs_codes: bytes | list[str] = []
    declared: str | list[str] = ""
    seen: list[_Fingerprint] | bytes = []
    flagged: list[PackedRule] = []
    pending: list[PackedFlag] = []


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(_PackedState)
_CHECKSUM_BYTES = 4
_CHECKSUM_RESIDUE = 0x2144DF1C
"""CRC-32 of any data followed by its own CRC-32, little-endian: a value is whole when the
CRC-32 of all of it is this (one pass over one buffer, no slicing)."""


def encode_state(state: ConsignmentState) -> bytes:
    """Format 2: the version byte, the msgpack body, a CRC-32 of the consignment id and both
    (little-endian, so that the CRC-32 of a whole value is `_CHECKSUM_RESIDUE`).

    The checksum makes a damaged value, or one stored under another consignment's key, fail
    to decode rather than decode into a wrong state. The ring holds 8-byte fingerprints only
    (`fingerprint`). Kept crossings not used since the state was read are written back as
    read, those unchanged as they were packed.
    """
    entries, exits, hs_codes, read_hs_codes, seen = (
        state._entries,
        state._exits,
        state.hs_codes,
        state._read_hs_codes,
        state.seen,
    )
    fields: list[object] = [
        state.accepted,
        (
            state._packed_entries  # (not used since read)
            if entries is None
            else _packed(entries, state._packed_entries, state._read_entries)
        ),
        (
            state._packed_exits
            if exits is None
            else _packed(exits, state._packed_exits, state._read_exits)
        ),
        (
            state._packed_hs_codes  # (unchanged since read)
            if read_hs_codes is not None and hs_codes == read_hs_codes
            else pack_hs_codes(hs_codes)
        ),
        pack_pairs(state.declared),
        seen if len(seen) <= _LISTED_FINGERPRINTS else b"".join(seen),
    ]
    if state.flagged or state.pending:  # (few states: flags are acknowledged within a batch)
        fields.append(pack_rules(state.flagged))
        fields.append([pack_flag(flag) for flag in state.pending])
    while len(fields) > 1 and not fields[-1]:  # empty fields at the end are left out
        fields.pop()
    body = _VERSION_BYTE + _ENCODER.encode(fields)
    checksum = zlib.crc32(body, zlib.crc32(state.consignment_id.encode()))
    return body + checksum.to_bytes(_CHECKSUM_BYTES, "little")


class StateDecodeError(ValueError):
    """Stored state this version cannot read (corrupt, written by a newer version, or stored
    under another consignment's key)."""


def decode_state(raw: bytes, consignment_id: str) -> ConsignmentState:
    """Read the state stored for `consignment_id`: format 2, or the JSON of format 1.

    Raises `StateDecodeError` for anything else: damaged bytes, an unknown (newer) format, a
    state that belongs to another consignment (applying this consignment's events to it would
    mix two consignments). Kept crossings are checked here and unpacked when first used.
    """
    version = raw[:1]
    if version == _VERSION_BYTE:
        return _decode_binary(raw, consignment_id)
    if version == b"{":
        return _decode_json(raw, consignment_id)
    if not version:
        raise StateDecodeError("empty state value")
    raise StateDecodeError(
        f"state format {raw[0]} is not one this version reads ({STATE_VERSION} or JSON);"
        " written by a newer bordermon?"
    )


def _decode_binary(raw: bytes, consignment_id: str) -> ConsignmentState:
    if len(raw) < 2 + _CHECKSUM_BYTES or (
        zlib.crc32(raw, zlib.crc32(consignment_id.encode())) != _CHECKSUM_RESIDUE
    ):
        raise StateDecodeError(
            "state checksum mismatch: the value is damaged or belongs to another consignment"
        )
    try:
        packed = _DECODER.decode(raw[1:-_CHECKSUM_BYTES])  # (cheaper than a memoryview)
        seen, flagged, pending = packed.seen, packed.flagged, packed.pending
        hs_codes = unpack_hs_codes(packed.hs_codes)
        state: ConsignmentState = _new_object(ConsignmentState)  # (its fields set below)
        state.consignment_id = consignment_id
        state.accepted = packed.accepted
        state.hs_codes = hs_codes
        state.declared = unpack_pairs(packed.declared)
        state.seen = seen if isinstance(seen, list) else split_fingerprints(seen)
        state.flagged = unpack_rules(flagged) if flagged else set()
        state.pending = [unpack_flag(flag) for flag in pending] if pending else []
        # The kept crossings are unpacked when first used (the decoder has checked them).
        state._entries = state._exits = state._read_entries = state._read_exits = None
        state._packed_entries, state._packed_exits = packed.entries, packed.exits
        state._packed_hs_codes, state._read_hs_codes = packed.hs_codes, frozenset(hs_codes)
        return state
    except (msgspec.DecodeError, ValueError, TypeError, LookupError, OverflowError) as error:
        raise StateDecodeError(f"unreadable state: {error}") from None


def _decode_json(raw: bytes, consignment_id: str) -> ConsignmentState:
    """Format 1 (compact JSON with short keys), as written before format 2."""
    try:
        doc = orjson.loads(raw)
        if doc.get("v") != JSON_STATE_VERSION:
            raise StateDecodeError(
                f"JSON state version {doc.get('v')!r}, expected {JSON_STATE_VERSION}"
            )
        state = ConsignmentState(
            consignment_id=doc["c"],
            accepted=doc["n"],
            entries=[Sighting.from_row(row) for row in doc.get("e", ())],
            exits=[Sighting.from_row(row) for row in doc.get("x", ())],
            hs_codes=set(doc.get("h", ())),
            declared=set(doc.get("d", ())),
            seen=unpack_fingerprints(doc.get("s", "")),
            flagged=set(doc.get("f", ())),
            pending=[Flag.from_record(record) for record in doc.get("p", ())],
        )
    except StateDecodeError:
        raise
    except (orjson.JSONDecodeError, LookupError, TypeError, ValueError, AttributeError) as error:
        raise StateDecodeError(f"unreadable state: {error}") from None
    if state.consignment_id != consignment_id:
        raise StateDecodeError(
            f"stored state belongs to consignment {state.consignment_id!r}, not {consignment_id!r}"
        )
    return state


def encode_state_json(state: ConsignmentState) -> bytes:
    """Format 1, which bordermon no longer writes: the reference its reader is tested
    against, and the baseline of tests/bench/bench_state_memory.py. Empty collections are
    left out."""
    doc: dict[str, object] = {
        "v": JSON_STATE_VERSION,
        "c": state.consignment_id,
        "n": state.accepted,
    }
    if state.entries:
        doc["e"] = [s.to_row() for s in state.entries]
    if state.exits:
        doc["x"] = [s.to_row() for s in state.exits]
    if state.hs_codes:
        doc["h"] = sorted(state.hs_codes)
    if state.declared:
        doc["d"] = sorted(state.declared)
    if state.seen:
        doc["s"] = pack_fingerprints(state.seen)
    if state.flagged:
        doc["f"] = sorted(state.flagged)
    if state.pending:
        doc["p"] = [flag.to_record() for flag in state.pending]
    return orjson.dumps(doc)
