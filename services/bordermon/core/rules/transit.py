"""Rule `transit-to-ru` (SPEC §4.1): the same consignment enters and leaves for Russia.

The rule keeps the consignment's qualifying entries and exits in `state.entries` /
`state.exits` until it flags, then drops them: one flag per consignment, so nothing more can
come of them.

Why the pair choice needs no history: before a flag no kept entry pairs with a kept exit, so
every matching pair known at detection involves the new event. A new exit pairs with the
latest kept entry in `[exit - window, exit]`; a new entry with the earliest kept exit in
`[entry, entry + window]`. Ties on the instant go to the smallest `event_id`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from bordermon.core.crossing import CrossingEvent
from bordermon.core.flag import Flag
from bordermon.core.rules.common import declared_destination_reasons
from bordermon.core.sighting import Sighting, entry_rank, exit_rank

if TYPE_CHECKING:
    from bordermon.core.config import DetectionConfig
    from bordermon.core.state import ConsignmentState

NAME = "transit-to-ru"


def pair_for_new_entry(
    entry: Sighting, exits: Iterable[Sighting], window_ns: int
) -> tuple[Sighting, Sighting] | None:
    """The pair to report when `entry` arrives: it, and the earliest exit it reaches."""
    lo, hi = entry.instant_ns, entry.instant_ns + window_ns
    matching = [x for x in exits if lo <= x.instant_ns <= hi]
    if not matching:
        return None
    return entry, min(matching, key=exit_rank)


def pair_for_new_exit(
    exit_: Sighting, entries: Iterable[Sighting], window_ns: int
) -> tuple[Sighting, Sighting] | None:
    """The pair to report when `exit_` arrives: it, and the latest entry within the window."""
    lo, hi = exit_.instant_ns - window_ns, exit_.instant_ns
    matching = [e for e in entries if lo <= e.instant_ns <= hi]
    if not matching:
        return None
    return min(matching, key=entry_rank), exit_


def detect(
    state: ConsignmentState,
    event: CrossingEvent,
    config: DetectionConfig,
    clock: Callable[[], int],
) -> Flag | None:
    """Pair a new qualifying crossing with those kept, or keep it; the flag, if it pairs."""
    if config.is_qualifying_entry(event):
        sighting = Sighting.of(event)
        pair = pair_for_new_entry(sighting, state.exits, config.window_ns)
        if pair is None:
            state.entries.append(sighting)
            return None
    elif config.is_qualifying_exit(event):
        sighting = Sighting.of(event)
        pair = pair_for_new_exit(sighting, state.entries, config.window_ns)
        if pair is None:
            state.exits.append(sighting)
            return None
    else:
        return None
    entry, exit_ = pair
    severity, reasons = config.watchlist.assess(state.hs_codes)
    # The ids of the dropped crossings stay in `seen`, so their duplicates are still caught.
    state.entries.clear()
    state.exits.clear()
    return Flag.build(
        rule=NAME,
        consignment_id=state.consignment_id,
        severity=severity,
        reasons=reasons + declared_destination_reasons(state.declared, exit_),
        entry=entry,
        exit_=exit_,
        window_ns=config.window_ns,
        hs_codes=state.hs_codes,
        now_ns=clock(),
    )
