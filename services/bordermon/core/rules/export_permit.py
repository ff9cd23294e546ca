"""Rule `export-without-permit` (SPEC §4.3): export-controlled goods leave for Russia with no
permit on the exit scan. No entry is needed and nothing is kept: the first such exit flags
(before it, none was seen, or the consignment would already be flagged), so the reported exit
is always the new event.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from bordermon.core.crossing import CrossingEvent
from bordermon.core.flag import Flag
from bordermon.core.rules.common import declared_destination_reasons
from bordermon.core.sighting import Sighting

if TYPE_CHECKING:
    from bordermon.core.config import DetectionConfig
    from bordermon.core.state import ConsignmentState

NAME = "export-without-permit"


def detect(
    state: ConsignmentState,
    event: CrossingEvent,
    config: DetectionConfig,
    clock: Callable[[], int],
) -> Flag | None:
    if event.permit_id is not None or not config.is_qualifying_exit(event):
        return None
    # The controlled lines of this exit are what leaves unlicensed: they name the reasons.
    _, controls = config.export_controls.assess(event.hs_codes)
    if not controls:
        return None
    exit_ = Sighting.of(event)
    # Severity, as for transit, from every code of the consignment known now (SPEC §4.4).
    severity, reasons = config.watchlist.assess(state.hs_codes)
    return Flag.build(
        rule=NAME,
        consignment_id=state.consignment_id,
        severity=severity,
        reasons=reasons + controls + declared_destination_reasons(state.declared, exit_),
        entry=None,
        exit_=exit_,
        window_ns=None,
        hs_codes=state.hs_codes,
        now_ns=clock(),
    )
