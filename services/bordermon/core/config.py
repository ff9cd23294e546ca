"""What detection runs under (SPEC §4): windows, countries, lists and the rules switched on.

Built from settings, never from globals, so tests and replay can run any configuration.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from bordermon.core.crossing import CrossingEvent, Direction
from bordermon.core.rules import RULE_NAMES, check_rule_names
from bordermon.core.timestamps import NANOS_PER_SECOND, seconds_between
from bordermon.core.watchlist import BUILTIN_CHPL_TIERS_1_2, Watchlist, load_export_controls

DAY_NS = 86_400 * NANOS_PER_SECOND


@functools.cache
def default_export_controls() -> Watchlist:
    """CHPL tiers 1 and 2 (SPEC §4.3's default); read once per process."""
    return load_export_controls([BUILTIN_CHPL_TIERS_1_2])


@dataclass(frozen=True, slots=True)
class DetectionConfig:
    """What detection needs to know.

    `dedup_memory` bounds how many event-id fingerprints a consignment (or link key)
    remembers beyond the crossings the rules still need (those are always remembered exactly).
    """

    watchlist: Watchlist
    window_ns: int = 30 * DAY_NS
    monitored_country: str = "KZ"
    destinations_of_concern: frozenset[str] = field(default_factory=lambda: frozenset({"RU"}))
    dedup_memory: int = 1024
    rules: frozenset[str] = RULE_NAMES
    relabel_window_ns: int = 90 * DAY_NS
    export_controls: Watchlist = field(default_factory=default_export_controls)

    def __post_init__(self) -> None:
        if self.window_ns < 0 or self.relabel_window_ns < 0:
            raise ValueError("a window must not be negative")
        if self.monitored_country in self.destinations_of_concern:
            raise ValueError(
                f"the monitored country {self.monitored_country} cannot also be a destination"
                " of concern"
            )
        if self.dedup_memory < 1:
            raise ValueError("dedup_memory must be at least 1")
        check_rule_names(self.rules)

    @property
    def window_seconds(self) -> int | float:
        return seconds_between(0, self.window_ns)

    def is_qualifying_entry(self, event: CrossingEvent) -> bool:
        """An entry of goods not coming from a destination of concern (Russian goods crossing
        back into Russia are domestic transit, not re-export)."""
        return (
            event.direction is Direction.ENTRY
            and event.from_country not in self.destinations_of_concern
        )

    def is_qualifying_exit(self, event: CrossingEvent) -> bool:
        """An exit of goods leaving for a destination of concern."""
        return (
            event.direction is Direction.EXIT and event.to_country in self.destinations_of_concern
        )
