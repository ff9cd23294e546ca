"""Malformed lines: each breaks exactly one SPEC section 3 rule, so its reason is unambiguous
whatever order a validator checks in. A mutation takes a valid event (with a fresh event_id)
and returns (line, reason).
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Callable
from typing import Any, Final

import orjson

from bordermon.simulate.reference import MONITORED, cumulative

_Mutation = Callable[[dict[str, Any], random.Random], tuple[bytes, str]]


def _dumps(event: Any) -> bytes:
    return orjson.dumps(event)


def _entry_side(event: dict[str, Any]) -> tuple[str, str]:
    """(the monitored side's field, the other side's field) of a valid event."""
    if str(event["to_country"]).upper() == MONITORED:
        return "to_country", "from_country"
    return "from_country", "to_country"


def _truncated(event: dict[str, Any], rng: random.Random) -> tuple[bytes, str]:
    text = _dumps(event).decode()
    return text[: rng.randrange(1, len(text) - 1)].encode(), "invalid_json"


def _trailing_comma(event: dict[str, Any], rng: random.Random) -> tuple[bytes, str]:
    return _dumps(event)[:-1] + b",}", "invalid_json"


def _single_quotes(event: dict[str, Any], rng: random.Random) -> tuple[bytes, str]:
    return _dumps(event).replace(b'"', b"'"), "invalid_json"


def _two_objects(event: dict[str, Any], rng: random.Random) -> tuple[bytes, str]:
    return _dumps(event) + _dumps(event), "invalid_json"


def _noise(event: dict[str, Any], rng: random.Random) -> tuple[bytes, str]:
    return rng.choice((b"scanner 7 offline -- retrying", b"{", b"ok", b"<html>")), "invalid_json"


def _not_object(event: dict[str, Any], rng: random.Random) -> tuple[bytes, str]:
    value = rng.choice(([event], event["event_id"], 42, None, True, []))
    return _dumps(value), "not_an_object"


_OUT_OF_RANGE: Final = (
    "9999-12-31T23:59:59Z",
    "1970-01-01T00:00:00Z",
    "1999-12-31T23:59:59.999999Z",
    "2100-01-01T00:00:00Z",
    "2100-01-01T05:00:00+05:00",
    "2101-03-01T12:00:00+06:00",
)
_REQUIRED: Final = (
    "event_id", "consignment_id", "checkpoint", "from_country", "to_country", "observed_at",
    "goods",
)  # fmt: skip


def _missing(event: dict[str, Any], rng: random.Random) -> tuple[bytes, str]:
    name = rng.choice(_REQUIRED)
    del event[name]
    return _dumps(event), f"missing_field:{name}"


def _bad_event_id(event: dict[str, Any], rng: random.Random) -> tuple[bytes, str]:
    event["event_id"] = rng.choice(("", "e" * 129, 12345))
    return _dumps(event), "invalid_field:event_id"


def _bad_consignment_id(event: dict[str, Any], rng: random.Random) -> tuple[bytes, str]:
    value = str(event["consignment_id"])
    event["consignment_id"] = rng.choice(("", value + "\u0007", value + "\n", "c" * 129, 7))
    return _dumps(event), "invalid_field:consignment_id"


def _bad_checkpoint(event: dict[str, Any], rng: random.Random) -> tuple[bytes, str]:
    event["checkpoint"] = rng.choice(("", "KZ-" + "X" * 62, ["KZ-DOSTYK"]))
    return _dumps(event), "invalid_field:checkpoint"


def _bad_country(event: dict[str, Any], rng: random.Random) -> tuple[bytes, str]:
    _, other = _entry_side(event)  # only the foreign side: the event stays a crossing
    event[other] = rng.choice(("XX", "EU", "UK", "RUS", "C1", "", "zz"))
    return _dumps(event), f"invalid_field:{other}"


def _bad_time(event: dict[str, Any], rng: random.Random) -> tuple[bytes, str]:
    text = str(event["observed_at"])
    bare = text[:-1] if text.endswith("Z") else text[:-6]
    choice = rng.randrange(8)
    if choice <= 1:
        value: Any = bare  # no offset
    elif choice == 2:
        value = text[:10]  # a date only
    elif choice == 3:
        value = text[:5] + "13" + text[7:]  # month 13
    elif choice == 4:
        value = 1_709_280_000  # epoch seconds, not a string
    elif choice == 5:
        # ISO 8601 basic offset "+0500", not RFC 3339 (which needs "+05:00")
        value = bare + "+0500"
    else:  # well-formed, but outside [2000, 2100): a placeholder or a broken clock
        value = rng.choice(_OUT_OF_RANGE)
    event["observed_at"] = value
    return _dumps(event), "invalid_field:observed_at"


def _bad_goods(event: dict[str, Any], rng: random.Random) -> tuple[bytes, str]:
    goods: list[dict[str, Any]] = [dict(line) for line in event["goods"]]
    line = goods[rng.randrange(len(goods))]
    choice = rng.randrange(13)
    if choice == 0:
        event["goods"] = []
        return _dumps(event), "invalid_field:goods"
    if choice == 1:
        event["goods"] = line["hs_code"]  # a string, not an array
        return _dumps(event), "invalid_field:goods"
    if choice == 2:
        event["goods"] = [{"hs_code": "854231"}] * 1001  # over the 1000-line limit
        return _dumps(event), "invalid_field:goods"
    if choice == 3:
        goods.append("854231")  # type: ignore[arg-type]  # a line that is not an object
    elif choice == 4:
        line["hs_code"] = "8542A1"
    elif choice == 5:
        line["hs_code"] = rng.choice(("85423", "8542.3", "8542 3"))
    elif choice == 6:
        line["hs_code"] = "85423190001"  # 11 digits
    elif choice == 7:
        line["hs_code"] = "8542-31"
    elif choice == 8:
        line["value_usd"] = -round(rng.uniform(1, 5000), 2)
    elif choice == 9:
        line["quantity"] = -rng.randint(1, 100)
    elif choice == 10:
        line["value_usd"] = rng.choice(("1200.50", True))  # a string or a boolean, not a number
    elif choice == 11:
        del line["hs_code"]
    else:  # batch_id: 1-64 characters without control characters
        line["batch_id"] = rng.choice(("", "B" * 65, "10702070/210324\n0012345", 10702070))
    event["goods"] = goods
    return _dumps(event), "invalid_field:goods"


def _bad_declared(event: dict[str, Any], rng: random.Random) -> tuple[bytes, str]:
    event["declared_destination"] = rng.choice(("XX", "EU", "KAZ", ""))
    return _dumps(event), "invalid_field:declared_destination"


def _bad_transport(event: dict[str, Any], rng: random.Random) -> tuple[bytes, str]:
    if rng.random() < 0.5:
        event["transport"] = rng.choice(({"mode": "hovercraft"}, "road", ["rail"], {"mode": 3}))
    else:  # container_id, seal_id, vehicle_id: 1-64 characters
        name = rng.choice(("container_id", "seal_id", "vehicle_id"))
        value = rng.choice(("", "MSCU" + "1" * 61, 1234567))
        event["transport"] = {**event.get("transport", {"mode": "road"}), name: value}
    return _dumps(event), "invalid_field:transport"


def _bad_permit(event: dict[str, Any], rng: random.Random) -> tuple[bytes, str]:
    event["permit_id"] = rng.choice(("", "P" * 65, "KZ-EL-" + "0" * 59, 42))
    return _dumps(event), "invalid_field:permit_id"


def _bad_scanner(event: dict[str, Any], rng: random.Random) -> tuple[bytes, str]:
    event["scanner_id"] = rng.choice(("", "S" * 65))
    return _dumps(event), "invalid_field:scanner_id"


def _bad_schema(event: dict[str, Any], rng: random.Random) -> tuple[bytes, str]:
    event["schema"] = rng.choice(("crossing/2", "crossing/2", "crossing/0", "flag/1", 1))
    return _dumps(event), "invalid_field:schema"


def _not_crossing(event: dict[str, Any], rng: random.Random) -> tuple[bytes, str]:
    home, other = _entry_side(event)
    if rng.random() < 0.5:  # both sides Kazakhstan (lowercase counts: it is upper-cased)
        event[other] = rng.choice(("KZ", "kz"))
    else:  # neither side: e.g. CN -> RU recorded at a Kazakh checkpoint
        foreign = str(event[other]).upper()
        event[home] = rng.choice([c for c in ("RU", "CN", "KG", "UZ", "TR") if c != foreign])
    return _dumps(event), "not_a_crossing"


def _too_large(event: dict[str, Any], rng: random.Random) -> tuple[bytes, str]:
    goods = [dict(line) for line in event["goods"]]
    goods[0]["description"] = "scanned manifest text " * 3200  # about 70 KB, over 64 KiB
    event["goods"] = goods
    return _dumps(event), "too_large"


_MUTATIONS: Final[dict[str, _Mutation]] = {
    "truncated": _truncated,
    "trailing-comma": _trailing_comma,
    "single-quotes": _single_quotes,
    "two-objects": _two_objects,
    "noise": _noise,
    "not-an-object": _not_object,
    "missing-field": _missing,
    "bad-event-id": _bad_event_id,
    "bad-consignment-id": _bad_consignment_id,
    "bad-checkpoint": _bad_checkpoint,
    "bad-country": _bad_country,
    "bad-observed-at": _bad_time,
    "bad-goods": _bad_goods,
    "bad-declared-destination": _bad_declared,
    "bad-transport": _bad_transport,
    "bad-permit-id": _bad_permit,
    "bad-scanner-id": _bad_scanner,
    "bad-schema": _bad_schema,
    "not-a-crossing": _not_crossing,
    "too-large": _too_large,
}
_MALFORMED_WEIGHTS: Final[tuple[tuple[str, float], ...]] = (
    ("truncated", 6), ("trailing-comma", 2), ("single-quotes", 1), ("two-objects", 1),
    ("noise", 1), ("not-an-object", 5), ("missing-field", 14), ("bad-event-id", 4),
    ("bad-consignment-id", 4), ("bad-checkpoint", 3), ("bad-country", 9), ("bad-observed-at", 10),
    ("bad-goods", 16), ("bad-declared-destination", 3), ("bad-transport", 3),
    ("bad-scanner-id", 2), ("bad-permit-id", 3), ("bad-schema", 5), ("not-a-crossing", 8),
    ("too-large", 1),
)  # fmt: skip
_MALFORMED_KINDS, _MALFORMED_CUM = cumulative(_MALFORMED_WEIGHTS)


def malformed(event: dict[str, Any], rng: random.Random) -> tuple[bytes, str, str]:
    """A line that breaks exactly one SPEC section 3 rule, made from a valid event (with a fresh
    event_id already, so that a detector that wrongly accepted it could not take it for a
    duplicate of the real scan): (line, reason, kind)."""
    kind = _MALFORMED_KINDS[bisect.bisect_right(_MALFORMED_CUM, rng.random() * _MALFORMED_CUM[-1])]
    line, reason = _MUTATIONS[kind](event, rng)
    return line, reason, kind
