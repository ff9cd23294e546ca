"""The pure core of bordermon: no I/O, no framework, only typed values.

- `crossing`: crossing event v1 and its validation (SPEC §3)
- `watchlist`: HS-code watchlists and severity (SPEC §4)
- `rule`: the `transit-to-ru` rule and `DetectionConfig`
- `state`: per-consignment state, `apply(state, event) -> Transition`, and its codec
- `flag`: flag v1 (SPEC §5)
"""

from bordermon.core.crossing import CrossingEvent, Direction, InvalidCrossing, parse_crossing
from bordermon.core.flag import Flag, Sighting, flag_id_for
from bordermon.core.rule import DetectionConfig
from bordermon.core.state import ConsignmentState, Transition, apply, decode_state, encode_state
from bordermon.core.watchlist import Severity, Watchlist, load_watchlist

__all__ = [
    "ConsignmentState",
    "CrossingEvent",
    "DetectionConfig",
    "Direction",
    "Flag",
    "InvalidCrossing",
    "Severity",
    "Sighting",
    "Transition",
    "Watchlist",
    "apply",
    "decode_state",
    "encode_state",
    "flag_id_for",
    "load_watchlist",
    "parse_crossing",
]
