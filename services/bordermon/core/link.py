"""The link stage of `relabel-to-ru` (SPEC §4.2): state per link key, `apply_link`, codec.

The consignment stage emits one `LinkSighting` per link key of every qualifying entry and
exit; the link stage, partitioned by link key, keeps them and raises one flag per (exit
consignment B, link key k). What a key keeps, and why:

- `entries`: qualifying entries through k, the `ENTRY_MEMORY` (64, SPEC's minimum) most
  recent by `observed_at` (ties: smallest event_id kept, as it would be reported). An older
  entry may be forgotten, as SPEC allows: a container in service for years sees thousands.
- `exits`: qualifying exits through k of consignments not yet flagged on k, waiting for an
  entry that arrives late. Bounded the same way: the `EXIT_MEMORY` (64) most recent by
  `observed_at`. An exit is dropped as soon as its consignment is flagged on k.
- `flagged`: the exit consignments already flagged on k, oldest first, the last
  `FLAGGED_MEMORY` (1024) of them. Forgetting one lets a later sighting of the same B flag
  again with the same `flag_id` (subscribers dedupe); only after 1024 other consignments
  were flagged through the same container, seal or batch.
- `seen`: 8-byte fingerprints of the last `dedup_memory` (consignment_id, event_id) pairs;
  kept crossings are also deduplicated exactly.
- `pending`: flags not yet acknowledged by the flags topic, as in `ConsignmentState`.
Redis expires a key `link_state_ttl` after its last sighting.

Why the pair choice needs no history (as for transit): a kept exit of an unflagged B never
matches a kept entry, since each arrival is compared with every kept crossing of the other
direction. So every matching pair known at detection involves the new sighting: a new exit
of B pairs with its latest matching entry; a new entry may flag several B at once, each with
its earliest exit that the entry matches.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from bordermon.core.config import DetectionConfig
from bordermon.core.flag import Flag
from bordermon.core.rules import relabel
from bordermon.core.sighting import (
    ENTRY,
    LinkSighting,
    check_link_key,
    entry_rank,
    exit_rank,
)
from bordermon.core.state import (
    StateDecodeError,
    fingerprint,
    pack_fingerprints,
    remember,
    unpack_fingerprints,
)

LINK_STATE_VERSION = 1
ENTRY_MEMORY = 64
EXIT_MEMORY = 64
FLAGGED_MEMORY = 1024


def _retention_rank(sighting: LinkSighting) -> tuple[int, str, str]:
    # Most recent first; among equal instants, the one that would be reported first.
    return (*entry_rank(sighting.sighting), sighting.consignment_id)


@dataclass(slots=True)
class LinkState:
    """Everything `relabel-to-ru` remembers about one link key. Owned by one worker at a
    time."""

    link: str
    entries: list[LinkSighting] = field(default_factory=list)
    exits: list[LinkSighting] = field(default_factory=list)
    flagged: list[str] = field(default_factory=list)
    seen: list[bytes] = field(default_factory=list)
    pending: list[Flag] = field(default_factory=list)

    def has_seen(self, sighting: LinkSighting, sighting_fingerprint: bytes) -> bool:
        if sighting_fingerprint in self.seen:
            return True
        kept = self.entries if sighting.direction == ENTRY else self.exits
        key = (sighting.consignment_id, sighting.sighting.event_id)
        return any((k.consignment_id, k.sighting.event_id) == key for k in kept)


class LinkTransition(NamedTuple):
    state: LinkState
    flags: tuple[Flag, ...]
    duplicate: bool


def _sighting_fingerprint(sighting: LinkSighting) -> bytes:
    # Duplicates are per consignment (SPEC §4): the same event_id elsewhere is another scan.
    return fingerprint(f"{sighting.consignment_id}\n{sighting.sighting.event_id}")


def apply_link(
    state: LinkState | None,
    sighting: LinkSighting,
    config: DetectionConfig,
    clock: Callable[[], int] = time.time_ns,
) -> LinkTransition:
    """Apply one link sighting to its key's state (updated in place and returned).

    `clock` gives `detected_at` and is only called when a flag is raised.
    """
    if state is None:
        state = LinkState(sighting.link)
    sighting_fingerprint = _sighting_fingerprint(sighting)
    if state.has_seen(sighting, sighting_fingerprint):
        return LinkTransition(state, (), duplicate=True)
    remember(state.seen, sighting_fingerprint, config.dedup_memory)

    if sighting.direction == ENTRY:
        flags = _new_entry(state, sighting, config, clock)
    else:
        flags = _new_exit(state, sighting, config, clock)
    for flag in flags:
        state.pending.append(flag)
        state.flagged.append(flag.consignment_id)
        # Nothing more can come of B's exits on this key: one flag per (B, k).
        state.exits = [x for x in state.exits if x.consignment_id != flag.consignment_id]
    if len(state.flagged) > FLAGGED_MEMORY:
        del state.flagged[: len(state.flagged) - FLAGGED_MEMORY]
    return LinkTransition(state, tuple(flags), duplicate=False)


def _new_exit(
    state: LinkState, exit_: LinkSighting, config: DetectionConfig, clock: Callable[[], int]
) -> list[Flag]:
    if exit_.consignment_id in state.flagged:
        return []
    window = config.relabel_window_ns
    matching = [e for e in state.entries if relabel.matches(e, exit_, window)]
    if not matching:
        state.exits.append(exit_)
        _keep_most_recent(state.exits, EXIT_MEMORY)
        return []
    entry = min(matching, key=lambda e: entry_rank(e.sighting))
    return [relabel.build_flag(entry, exit_, config, clock)]


def _new_entry(
    state: LinkState, entry: LinkSighting, config: DetectionConfig, clock: Callable[[], int]
) -> list[Flag]:
    window = config.relabel_window_ns
    earliest_by_consignment: dict[str, LinkSighting] = {}
    for exit_ in state.exits:
        if not relabel.matches(entry, exit_, window):
            continue
        known = earliest_by_consignment.get(exit_.consignment_id)
        if known is None or exit_rank(exit_.sighting) < exit_rank(known.sighting):
            earliest_by_consignment[exit_.consignment_id] = exit_
    state.entries.append(entry)
    _keep_most_recent(state.entries, ENTRY_MEMORY)
    # Several consignments at once: in the order of their reported exits, then by id.
    reported = sorted(
        earliest_by_consignment.values(),
        key=lambda x: (*exit_rank(x.sighting), x.consignment_id),
    )
    return [relabel.build_flag(entry, exit_, config, clock) for exit_ in reported]


def _keep_most_recent(kept: list[LinkSighting], limit: int) -> None:
    if len(kept) > limit:
        kept.sort(key=_retention_rank)
        del kept[limit:]


def encode_link_state(state: LinkState) -> bytes:
    """Compact JSON for the state store; empty collections are left out."""
    doc: dict[str, Any] = {"v": LINK_STATE_VERSION, "k": state.link}
    if state.entries:
        doc["e"] = [s.to_row() for s in state.entries]
    if state.exits:
        doc["x"] = [s.to_row() for s in state.exits]
    if state.flagged:
        doc["f"] = state.flagged
    if state.seen:
        doc["s"] = pack_fingerprints(state.seen)
    if state.pending:
        doc["p"] = [flag.to_record() for flag in state.pending]
    return orjson.dumps(doc)


def decode_link_state(raw: bytes) -> LinkState:
    try:
        doc = orjson.loads(raw)
        if doc.get("v") != LINK_STATE_VERSION:
            raise StateDecodeError(
                f"link state version {doc.get('v')!r}, expected {LINK_STATE_VERSION}"
            )
        link = doc["k"]
        check_link_key(link)
        flagged = doc.get("f", [])
        if type(flagged) is not list or not all(type(c) is str for c in flagged):
            raise ValueError("flagged must be a list of consignment ids")
        return LinkState(
            link=link,
            entries=[LinkSighting.from_row(link, row) for row in doc.get("e", ())],
            exits=[LinkSighting.from_row(link, row) for row in doc.get("x", ())],
            flagged=flagged,
            seen=unpack_fingerprints(doc.get("s", "")),
            pending=[Flag.from_record(record) for record in doc.get("p", ())],
        )
    except StateDecodeError:
        raise
    except (orjson.JSONDecodeError, LookupError, TypeError, ValueError, AttributeError) as error:
        raise StateDecodeError(f"unreadable link state: {error}") from None
