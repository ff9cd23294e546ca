"""Builders of crossing events for unit tests of the pure core."""

from __future__ import annotations

from typing import Any

import orjson

from bordermon.core import CrossingEvent, load_watchlist, parse_crossing

CHPL = load_watchlist(["builtin:chpl"])
TRANSIT_ONLY = frozenset({"transit-to-ru"})


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
        "goods": [{"hs_code": "8542.31", "value_usd": 1200.5, "quantity": 10, "unit": "pcs"}],
    }
    for key, value in fields.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    return doc


def crossing(**fields: Any) -> CrossingEvent:
    return parse_crossing(orjson.dumps(crossing_doc(**fields)))


def entry(event_id: str, at: str, origin: str = "CN", **fields: Any) -> CrossingEvent:
    return crossing(
        event_id=event_id, from_country=origin, to_country="KZ", observed_at=at, **fields
    )


def exit_(event_id: str, at: str, destination: str = "RU", **fields: Any) -> CrossingEvent:
    fields.setdefault("checkpoint", "KZ-TASKALA")
    return crossing(
        event_id=event_id, from_country="KZ", to_country=destination, observed_at=at, **fields
    )
