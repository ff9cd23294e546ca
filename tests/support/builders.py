"""THE builders of crossing events, for every tier: unit, contract, integration, chaos.

`crossing_doc(**fields)` is a valid entry CN -> KZ of CHPL goods as a dict; the other builders
are views of it: `crossing_line` (the bytes a scanner sends), `crossing` (the parsed event),
`entry` / `exit_` (the two sides of a transit). Keyword arguments replace fields, None
removes one. `simulated_lines` is the simulator's output, for tests that need volume."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import orjson

from bordermon.core import (
    ConsignmentState,
    CrossingEvent,
    DetectionConfig,
    Flag,
    LinkState,
    apply,
    apply_link,
    decode_link_sighting,
    decode_link_state,
    decode_state,
    encode_link_sighting,
    encode_link_state,
    encode_state,
    load_watchlist,
    parse_crossing,
)
from bordermon.simulate import SimulationSpec, generate

CHPL = load_watchlist(["builtin:chpl"])
TRANSIT_ONLY = frozenset({"transit-to-ru"})
DEFAULT_DETECTION = DetectionConfig(watchlist=CHPL)
"""The worker's detection settings when none are given: every rule, a 30-day window, CHPL."""


def goods_of(*hs_codes: str) -> list[dict[str, Any]]:
    """`goods`: one line of each HS code, with the value, quantity and unit of the default."""
    return [
        {"hs_code": code, "value_usd": 1200.5, "quantity": 10, "unit": "pcs"} for code in hs_codes
    ]


def crossing_doc(**fields: Any) -> dict[str, Any]:
    """A valid entry CN -> KZ; keyword arguments replace fields (None removes one)."""
    doc: dict[str, Any] = {
        "schema": "crossing/1",
        "event_id": "ev-1",
        "consignment_id": "CONS-1",
        "checkpoint": "KZ-NUR-ZHOLY",
        "from_country": "CN",
        "to_country": "KZ",
        "observed_at": "2024-03-01T10:00:00Z",
        "goods": goods_of("8542.31"),
    }
    for key, value in fields.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    return doc


def crossing_line(**fields: Any) -> bytes:
    """`crossing_doc(**fields)` as one JSON line, as a scanner publishes it."""
    return orjson.dumps(crossing_doc(**fields))


def crossing(**fields: Any) -> CrossingEvent:
    return parse_crossing(crossing_line(**fields))


def entry(event_id: str, at: str, origin: str = "CN", **fields: Any) -> CrossingEvent:
    return crossing(
        event_id=event_id, from_country=origin, to_country="KZ", observed_at=at, **fields
    )


def exit_(event_id: str, at: str, destination: str = "RU", **fields: Any) -> CrossingEvent:
    fields.setdefault("checkpoint", "KZ-TASKALA")
    return crossing(
        event_id=event_id, from_country="KZ", to_country=destination, observed_at=at, **fields
    )


def run_both_stages(
    events: Iterable[CrossingEvent],
    config: DetectionConfig,
    *,
    round_trip: bool = False,
    clock: Callable[[], int] = lambda: 0,
) -> list[tuple[int, Flag]]:
    """Each event through the consignment stage, then its sightings through the link stage
    (as replay does with batches of one). With `round_trip`, every state is encoded and
    decoded between events, and every sighting goes through its wire codec, as in the worker.
    Returns (arrival index, flag) in detection order."""
    states: dict[str, ConsignmentState] = {}
    link_states: dict[str, LinkState] = {}
    raised: list[tuple[int, Flag]] = []
    for index, event in enumerate(events):
        transition = apply(states.get(event.consignment_id), event, config, clock)
        states[event.consignment_id] = transition.state
        raised += [(index, flag) for flag in transition.flags]
        for emitted in transition.sightings:
            sighting = (
                decode_link_sighting(encode_link_sighting(emitted)) if round_trip else emitted
            )
            link = apply_link(link_states.get(sighting.link), sighting, config, clock)
            link_states[sighting.link] = link.state
            raised += [(index, flag) for flag in link.flags]
        if round_trip:
            states = {cid: decode_state(encode_state(s), cid) for cid, s in states.items()}
            link_states = {
                k: decode_link_state(encode_link_state(s)) for k, s in link_states.items()
            }
    return raised


def simulated_lines(consignments: int, seed: int) -> list[bytes]:
    """The simulator's crossings (with its duplicates and malformed lines), in arrival order."""
    return list(generate(SimulationSpec(consignments=consignments, seed=seed)))
