"""Rule `relabel-to-ru` (SPEC §4.2): the same goods leave under another consignment.

It runs in two stages. The consignment stage (`sightings_for`) turns each qualifying entry
and exit into one `LinkSighting` per link key of the event; the link stage
(`bordermon.core.link`), keyed by link key, keeps them and asks this module whether an entry
and an exit match and what flag they make.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from bordermon.core.crossing import CrossingEvent
from bordermon.core.flag import Flag
from bordermon.core.rules.common import declared_destination_reasons
from bordermon.core.sighting import ENTRY, EXIT, LinkSighting, Sighting

if TYPE_CHECKING:
    from bordermon.core.config import DetectionConfig

NAME = "relabel-to-ru"


def sightings_for(event: CrossingEvent, config: DetectionConfig) -> tuple[LinkSighting, ...]:
    """One sighting per link key of a qualifying entry or exit; none for other events."""
    if not event.link_keys:
        return ()
    if config.is_qualifying_entry(event):
        direction = ENTRY
    elif config.is_qualifying_exit(event):
        direction = EXIT
    else:
        return ()
    sighting = Sighting.of(event)
    return tuple(
        LinkSighting(
            link,
            event.consignment_id,
            direction,
            sighting,
            event.hs_codes,
            event.declared_destination,
        )
        for link in event.link_keys
    )


def hs6_of(codes: Iterable[str]) -> frozenset[str]:
    return frozenset(code[:6] for code in codes)


def matches(entry: LinkSighting, exit_: LinkSighting, window_ns: int) -> bool:
    """SPEC §4.2: another consignment, exit within [entry, entry + window], a shared HS-6."""
    return (
        entry.consignment_id != exit_.consignment_id
        and 0 <= exit_.sighting.instant_ns - entry.sighting.instant_ns <= window_ns
        and not hs6_of(entry.hs_codes).isdisjoint(hs6_of(exit_.hs_codes))
    )


def build_flag(
    entry: LinkSighting, exit_: LinkSighting, config: DetectionConfig, clock: Callable[[], int]
) -> Flag:
    """The flag of exit consignment B through the exit's link key, reporting this pair.

    Severity counts the goods lines of the two crossings whose HS-6 they share (SPEC §4.4):
    what evidently went through. Declared destinations are those of the two crossings, the
    only declarations the link stage sees.
    """
    shared = hs6_of(entry.hs_codes) & hs6_of(exit_.hs_codes)
    codes = [code for code in entry.hs_codes + exit_.hs_codes if code[:6] in shared]
    severity, reasons = config.watchlist.assess(codes)
    declared = [
        code
        for code in (entry.declared_destination, exit_.declared_destination)
        if code is not None
    ]
    return Flag.build(
        rule=NAME,
        consignment_id=exit_.consignment_id,
        severity=severity,
        reasons=reasons + declared_destination_reasons(declared, exit_.sighting),
        entry=entry.sighting,
        exit_=exit_.sighting,
        window_ns=config.relabel_window_ns,
        hs_codes=codes,
        now_ns=clock(),
        link=exit_.link,
        linked_consignment_id=entry.consignment_id,
    )
