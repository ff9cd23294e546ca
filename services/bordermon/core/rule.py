"""The `transit-to-ru` rule (SPEC §4) and the configuration it runs under.

Everything here is a pure function of values: the rule decides whether a new crossing pairs
with crossings already kept for the consignment, and which pair a flag reports. The state
module decides what is kept; this module decides what matches.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from bordermon.core.crossing import CrossingEvent, Direction
from bordermon.core.flag import Sighting
from bordermon.core.timestamps import NANOS_PER_SECOND, seconds_between
from bordermon.core.watchlist import Watchlist

RULE_TRANSIT = "transit-to-ru"
DAY_NS = 86_400 * NANOS_PER_SECOND


@dataclass(frozen=True, slots=True)
class DetectionConfig:
    """What detection needs to know; built from settings, never from globals.

    `dedup_memory` bounds how many event-id fingerprints a consignment remembers beyond the
    crossings the rule still needs (those are always remembered exactly).
    """

    watchlist: Watchlist
    window_ns: int = 30 * DAY_NS
    monitored_country: str = "KZ"
    destinations_of_concern: frozenset[str] = field(default_factory=lambda: frozenset({"RU"}))
    dedup_memory: int = 1024
    rule: str = RULE_TRANSIT

    def __post_init__(self) -> None:
        if self.window_ns < 0:
            raise ValueError("the window must not be negative")
        if self.monitored_country in self.destinations_of_concern:
            raise ValueError(
                f"the monitored country {self.monitored_country} cannot also be a destination"
                " of concern"
            )
        if self.dedup_memory < 1:
            raise ValueError("dedup_memory must be at least 1")

    @property
    def window_seconds(self) -> int | float:
        return seconds_between(0, self.window_ns)

    def is_candidate_entry(self, event: CrossingEvent) -> bool:
        """An entry the rule can pair: goods not coming from a destination of concern."""
        return (
            event.direction is Direction.ENTRY
            and event.from_country not in self.destinations_of_concern
        )

    def is_candidate_exit(self, event: CrossingEvent) -> bool:
        """An exit the rule can pair: goods leaving for a destination of concern."""
        return (
            event.direction is Direction.EXIT and event.to_country in self.destinations_of_concern
        )


def _entry_rank(entry: Sighting) -> tuple[int, str]:
    # Latest entry wins; among equal instants the smallest event_id, so the choice does not
    # depend on arrival order.
    return (-entry.instant_ns, entry.event_id)


def _exit_rank(exit_: Sighting) -> tuple[int, str]:
    return (exit_.instant_ns, exit_.event_id)


def pair_for_new_entry(
    entry: Sighting, exits: Iterable[Sighting], window_ns: int
) -> tuple[Sighting, Sighting] | None:
    """The pair to report when `entry` arrives, or None.

    Before a flag no kept entry pairs with a kept exit, so every matching pair known now
    involves the new entry: report the earliest exit it reaches.
    """
    lo, hi = entry.instant_ns, entry.instant_ns + window_ns
    matching = [x for x in exits if lo <= x.instant_ns <= hi]
    if not matching:
        return None
    return entry, min(matching, key=_exit_rank)


def pair_for_new_exit(
    exit_: Sighting, entries: Iterable[Sighting], window_ns: int
) -> tuple[Sighting, Sighting] | None:
    """The pair to report when `exit_` arrives: it, and the latest entry within the window."""
    lo, hi = exit_.instant_ns - window_ns, exit_.instant_ns
    matching = [e for e in entries if lo <= e.instant_ns <= hi]
    if not matching:
        return None
    return min(matching, key=_entry_rank), exit_
