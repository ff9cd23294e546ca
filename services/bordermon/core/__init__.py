"""The pure core of bordermon: no I/O, no framework, only typed values.

- `crossing`: crossing event v1 and its validation (SPEC §3)
- `watchlist`: HS-code watchlists and severity (SPEC §4)
- `config`: `DetectionConfig` (`rule` re-exports it for older imports)
- `rules`: the rules of SPEC §4, one module each, and their registry
- `sighting`: `Sighting` (a kept crossing) and `LinkSighting` with its wire codec
- `state`: the consignment stage: state, `apply(state, event) -> Transition`, codec
- `link`: the link stage of `relabel-to-ru`: state, `apply_link`, codec
- `flag`: flag v2 (SPEC §5)
- `pipeline`: the batch steps both drivers run
"""

from bordermon.core.config import DetectionConfig
from bordermon.core.crossing import CrossingEvent, Direction, InvalidCrossing, parse_crossing
from bordermon.core.flag import Flag, flag_id_for
from bordermon.core.link import (
    LinkState,
    LinkTransition,
    apply_link,
    decode_link_state,
    encode_link_state,
)
from bordermon.core.rules import RULE_NAMES
from bordermon.core.sighting import (
    InvalidLinkSighting,
    LinkSighting,
    Sighting,
    decode_link_sighting,
    encode_link_sighting,
)
from bordermon.core.state import ConsignmentState, Transition, apply, decode_state, encode_state
from bordermon.core.watchlist import Severity, Watchlist, load_watchlist

__all__ = [
    "RULE_NAMES",
    "ConsignmentState",
    "CrossingEvent",
    "DetectionConfig",
    "Direction",
    "Flag",
    "InvalidCrossing",
    "InvalidLinkSighting",
    "LinkSighting",
    "LinkState",
    "LinkTransition",
    "Severity",
    "Sighting",
    "Transition",
    "Watchlist",
    "apply",
    "apply_link",
    "decode_link_sighting",
    "decode_link_state",
    "decode_state",
    "encode_link_sighting",
    "encode_link_state",
    "encode_state",
    "flag_id_for",
    "load_watchlist",
    "parse_crossing",
]
