"""The detection rules (SPEC §4) as a small registry.

A rule is one module here. A rule that decides on one consignment's own events exposes
`detect(state, event, config, clock) -> Flag | None` and is listed in `CONSIGNMENT_RULES`;
the consignment stage calls it for every accepted event until the consignment is flagged
under it. A rule that links consignments (`relabel-to-ru`) emits `LinkSighting`s from the
consignment stage (`SIGHTING_SOURCES`) and is decided by the link stage
(`bordermon.core.link`).

Order matters only for the order of flags raised by one event: the order listed here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Protocol

from bordermon.core.rules import export_permit, relabel, transit

if TYPE_CHECKING:
    from bordermon.core.config import DetectionConfig
    from bordermon.core.crossing import CrossingEvent
    from bordermon.core.flag import Flag
    from bordermon.core.sighting import LinkSighting
    from bordermon.core.state import ConsignmentState

RULE_TRANSIT = transit.NAME
RULE_RELABEL = relabel.NAME
RULE_EXPORT_WITHOUT_PERMIT = export_permit.NAME


class ConsignmentRule(Protocol):
    def __call__(
        self,
        state: ConsignmentState,
        event: CrossingEvent,
        config: DetectionConfig,
        clock: Callable[[], int],
    ) -> Flag | None:
        """Update the rule's part of `state` for a new accepted event; the flag, if one is due.

        Called only while the consignment is not yet flagged under this rule; the caller
        records the flag in `state.flagged` and `state.pending`.
        """


class SightingSource(Protocol):
    def __call__(
        self, event: CrossingEvent, config: DetectionConfig
    ) -> tuple[LinkSighting, ...]: ...


CONSIGNMENT_RULES: Mapping[str, ConsignmentRule] = {
    transit.NAME: transit.detect,
    export_permit.NAME: export_permit.detect,
}
SIGHTING_SOURCES: Mapping[str, SightingSource] = {relabel.NAME: relabel.sightings_for}

RULE_NAMES: frozenset[str] = frozenset(CONSIGNMENT_RULES) | frozenset(SIGHTING_SOURCES)
# In SPEC §4's order, for defaults and messages.
ALL_RULES: tuple[str, ...] = (transit.NAME, relabel.NAME, export_permit.NAME)


def check_rule_names(names: Iterable[str]) -> None:
    """Raise ValueError naming the unknown rules and the valid ones."""
    unknown = sorted(set(names) - RULE_NAMES)
    if unknown:
        raise ValueError(
            f"unknown rule(s) {', '.join(unknown)}; the rules are {', '.join(ALL_RULES)}"
        )


__all__ = [
    "ALL_RULES",
    "CONSIGNMENT_RULES",
    "RULE_EXPORT_WITHOUT_PERMIT",
    "RULE_NAMES",
    "RULE_RELABEL",
    "RULE_TRANSIT",
    "SIGHTING_SOURCES",
    "ConsignmentRule",
    "SightingSource",
    "check_rule_names",
]
