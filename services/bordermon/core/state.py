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

The encoded form is compact JSON with short keys (a two-event consignment is ~300 bytes).
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import orjson

from bordermon.core.config import DetectionConfig
from bordermon.core.crossing import CrossingEvent
from bordermon.core.flag import Flag
from bordermon.core.rules import CONSIGNMENT_RULES, SIGHTING_SOURCES
from bordermon.core.sighting import LinkSighting, Sighting

STATE_VERSION = 1
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
    packed = base64.b64decode(text, validate=True)
    if len(packed) % FINGERPRINT_BYTES:
        raise ValueError("the fingerprints are not whole")
    return [packed[i : i + FINGERPRINT_BYTES] for i in range(0, len(packed), FINGERPRINT_BYTES)]


@dataclass(slots=True)
class ConsignmentState:
    """Everything detection remembers about one consignment. Owned by one worker at a time."""

    consignment_id: str
    accepted: int = 0
    entries: list[Sighting] = field(default_factory=list)
    exits: list[Sighting] = field(default_factory=list)
    hs_codes: set[str] = field(default_factory=set)
    declared: set[str] = field(default_factory=set)
    seen: list[bytes] = field(default_factory=list)
    flagged: set[str] = field(default_factory=set)
    pending: list[Flag] = field(default_factory=list)

    def has_seen(self, event_id: str, event_fingerprint: bytes) -> bool:
        if event_fingerprint in self.seen:
            return True
        # Kept crossings are checked by id too: they may have aged out of `seen`.
        # (Most states keep none or one, so skip the generators when empty.)
        if self.entries and any(kept.event_id == event_id for kept in self.entries):
            return True
        return bool(self.exits) and any(kept.event_id == event_id for kept in self.exits)


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


def encode_state(state: ConsignmentState) -> bytes:
    """Compact JSON for the state store; empty collections are left out."""
    doc: dict[str, object] = {"v": STATE_VERSION, "c": state.consignment_id, "n": state.accepted}
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


class StateDecodeError(ValueError):
    """Stored state this version cannot read (corrupt, or written by a newer version)."""


def decode_state(raw: bytes) -> ConsignmentState:
    try:
        doc = orjson.loads(raw)
        if doc.get("v") != STATE_VERSION:
            raise StateDecodeError(f"state version {doc.get('v')!r}, expected {STATE_VERSION}")
        return ConsignmentState(
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
