"""Per-consignment state and its transition: `apply(state, event) -> (state, flags)`.

This is the one copy of the detection logic; the replay command and the stream worker both
drive it. What is kept, and why:

- `entries` / `exits`: crossings the rule may still pair (candidate entries and exits only),
  kept until the consignment is flagged, then dropped: one flag per rule, so nothing more
  can come of them.
- `hs_codes`, `declared`: everything severity and reasons need, as sets.
- `seen`: fingerprints (8 bytes of BLAKE2b) of the most recent event ids, at most
  `dedup_memory` of them, so a consignment scanned thousands of times stays bounded. Kept
  crossings are always deduplicated exactly by their ids; a fingerprint that has aged out can
  only let a very old duplicate of a non-candidate event be counted again, which changes no
  flag.
- `flagged`: rules already flagged, so re-reading the topic emits no new flag.
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

from bordermon.core.crossing import CrossingEvent
from bordermon.core.flag import Flag, Sighting, flag_id_for
from bordermon.core.rule import DetectionConfig, pair_for_new_entry, pair_for_new_exit
from bordermon.core.timestamps import format_utc, seconds_between

STATE_VERSION = 1
_FINGERPRINT_BYTES = 8


def fingerprint(event_id: str) -> bytes:
    return hashlib.blake2b(event_id.encode(), digest_size=_FINGERPRINT_BYTES).digest()


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
    """The result of applying one event: the new state and what it produced."""

    state: ConsignmentState
    flags: tuple[Flag, ...]
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
        return Transition(state, (), duplicate=True)

    state.seen.append(event_fingerprint)
    if len(state.seen) > config.dedup_memory:
        del state.seen[: len(state.seen) - config.dedup_memory]
    state.accepted += 1
    state.hs_codes.update(event.hs_codes)
    if event.declared_destination is not None:
        state.declared.add(event.declared_destination)

    if config.rule in state.flagged:
        return Transition(state, (), duplicate=False)

    pair: tuple[Sighting, Sighting] | None = None
    if config.is_candidate_entry(event):
        sighting = _sighting(event)
        pair = pair_for_new_entry(sighting, state.exits, config.window_ns)
        if pair is None:
            state.entries.append(sighting)
    elif config.is_candidate_exit(event):
        sighting = _sighting(event)
        pair = pair_for_new_exit(sighting, state.entries, config.window_ns)
        if pair is None:
            state.exits.append(sighting)
    if pair is None:
        return Transition(state, (), duplicate=False)

    flag = _raise_flag(state, pair, config, clock())
    state.flagged.add(config.rule)
    state.pending.append(flag)
    # The ids of the dropped crossings stay in `seen`, so their duplicates are still caught.
    state.entries.clear()
    state.exits.clear()
    return Transition(state, (flag,), duplicate=False)


def _sighting(event: CrossingEvent) -> Sighting:
    return Sighting(
        event.event_id,
        event.checkpoint,
        event.from_country,
        event.to_country,
        event.observed_at,
        event.instant_ns,
    )


def _raise_flag(
    state: ConsignmentState,
    pair: tuple[Sighting, Sighting],
    config: DetectionConfig,
    now_ns: int,
) -> Flag:
    entry, exit_ = pair
    severity, reasons = config.watchlist.assess(state.hs_codes)
    reasons += [
        f"declared-destination:{code}"
        for code in sorted(state.declared)
        if code != exit_.to_country
    ]
    return Flag(
        flag_id=flag_id_for(config.rule, state.consignment_id),
        rule=config.rule,
        consignment_id=state.consignment_id,
        severity=severity.label,
        reasons=tuple(reasons),
        entry=entry,
        exit=exit_,
        dwell_seconds=seconds_between(entry.instant_ns, exit_.instant_ns),
        window_seconds=config.window_seconds,
        hs_codes=tuple(sorted(state.hs_codes)),
        detected_at=format_utc(now_ns),
    )


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
        doc["s"] = base64.b64encode(b"".join(state.seen)).decode("ascii")
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
        packed = base64.b64decode(doc.get("s", ""))
        return ConsignmentState(
            consignment_id=doc["c"],
            accepted=doc["n"],
            entries=[Sighting.from_row(row) for row in doc.get("e", ())],
            exits=[Sighting.from_row(row) for row in doc.get("x", ())],
            hs_codes=set(doc.get("h", ())),
            declared=set(doc.get("d", ())),
            seen=[
                packed[i : i + _FINGERPRINT_BYTES]
                for i in range(0, len(packed), _FINGERPRINT_BYTES)
            ],
            flagged=set(doc.get("f", ())),
            pending=[Flag.from_record(record) for record in doc.get("p", ())],
        )
    except StateDecodeError:
        raise
    except (orjson.JSONDecodeError, LookupError, TypeError, ValueError, AttributeError) as error:
        raise StateDecodeError(f"unreadable state: {error}") from None
