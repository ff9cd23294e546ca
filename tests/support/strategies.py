"""Hypothesis strategies of crossing documents: valid events (`valid_events`), valid events then
mutated (`crossing_like`), near-misses of one rule at a time (`FOCUSED`, `focused_event`), and
any JSON (`any_json`). The schema tests and the fast-path tests judge the same documents."""

from __future__ import annotations

import calendar
from typing import Any

from hypothesis import strategies as st

from bordermon.core.countries import ASSIGNED_ALPHA2
from support.builders import crossing_doc

ASSIGNED = sorted(ASSIGNED_ALPHA2)
NEIGHBOURS = [code for code in ASSIGNED if code != "KZ"]
_TEXT = st.characters(exclude_categories=("Cs",))  # orjson cannot write lone surrogates
_ID_CHARS = st.characters(exclude_categories=("Cs", "Cc"))

id_values = st.one_of(
    st.text(_ID_CHARS, min_size=1, max_size=20),
    st.integers(120, 128).map(lambda n: "e" * n),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(_TEXT, max_size=6),
)
any_json = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(_TEXT, max_size=5), children, max_size=3)
    ),
    max_leaves=6,
)


@st.composite
def valid_timestamps(draw: st.DrawFn) -> str:
    """Valid for SPEC v2, but for an offset that moves the first or last day across a bound
    (`_offset_crosses_a_bound`)."""
    year = draw(st.integers(2000, 2099))
    month = draw(st.integers(1, 12))
    day = draw(st.integers(1, calendar.monthrange(year, month)[1]))
    clock = f"{draw(st.integers(0, 23)):02d}:{draw(st.integers(0, 59)):02d}"
    second = draw(st.integers(0, 60))
    fraction = draw(st.sampled_from(["", ".5", ".000", ".123456789"]))
    offset = draw(
        st.sampled_from(["Z", "z"])
        | st.builds(
            "{}{:02d}:{:02d}".format,
            st.sampled_from("+-"),
            st.integers(0, 23),
            st.integers(0, 59),
        )
    )
    separator = draw(st.sampled_from("Tt"))
    return f"{year:04d}-{month:02d}-{day:02d}{separator}{clock}:{second:02d}{fraction}{offset}"


@st.composite
def timestamp_like(draw: st.DrawFn) -> str:
    """Near-misses of RFC 3339: every part drawn from valid and invalid spellings."""
    pick = draw
    year = pick(
        st.sampled_from(
            ["0000", "0001", "0004", "0400", "1900", "1999", "2000", "2024", "2099", "2100"]
        )
        | st.text("0123456789", min_size=4, max_size=4)
    )
    month = pick(st.sampled_from(["00", "01", "02", "04", "06", "09", "11", "12", "13", "1"]))
    day = pick(st.sampled_from(["00", "01", "28", "29", "30", "31", "32", "1"]))
    hour = pick(st.sampled_from(["00", "09", "19", "23", "24"]))
    minute = pick(st.sampled_from(["00", "59", "60"]))
    second = pick(st.sampled_from(["00", "59", "60", "61", ""]))
    separator = pick(st.sampled_from(["T", "t", " ", "_", ""]))
    fraction = pick(st.sampled_from(["", "", ".", ".5", ".123456789", "," + "5"]))
    offset = pick(
        st.sampled_from(
            ["Z", "z", "", "+05:00", "-00:00", "+23:59", "+24:00", "+05:60", "+0500", "+05", "Zz"]
        )
    )
    head = pick(st.sampled_from(["", "", " ", "\n", "٢"]))
    tail = pick(st.sampled_from(["", "", "", "\n", " ", "x", "\x00"]))
    seconds = f":{second}" if second else ""
    return f"{head}{year}-{month}-{day}{separator}{hour}:{minute}{seconds}{fraction}{offset}{tail}"


@st.composite
def calendar_edges(draw: st.DrawFn) -> str:
    """Well-formed but for the calendar: month ends in leap and common years."""
    year = draw(
        st.sampled_from([2000, 2001, 2004, 2023, 2024, 2096, 2099])
        | st.integers(2000, 2099)
        | st.sampled_from([4, 400, 1900, 1999, 2100, 2400])  # out of SPEC v2's range
    )
    month = draw(st.sampled_from([2, 2, 2, 4, 6, 9, 11]) | st.integers(1, 12))
    day = draw(st.sampled_from([28, 29, 29, 30, 31]))
    return f"{year:04d}-{month:02d}-{day:02d}T10:00:00Z"


def cased(code: str) -> st.SearchStrategy[str]:
    return st.sampled_from([code, code.lower()])


country_like = st.one_of(
    st.sampled_from(ASSIGNED).flatmap(cased),
    st.sampled_from(ASSIGNED).map(lambda c: c[0] + c[1].lower()),  # mixed case: core only
    st.sampled_from(["KZ", "kz", "Kz", "XX", "EU", "UK", "XK", "ZZ", "KAZ", "K", "", " KZ"]),
    st.sampled_from(["KZ\n", "ıt", "ＫＺ", "RU "]),
    any_json,
)
hs_like = st.one_of(
    st.text("0123456789", min_size=5, max_size=11),
    st.text("0123456789. ", max_size=16),
    st.text("0123456789.-a٣\n\t ", max_size=12),
    st.integers(0, 10**11),
    any_json,
)


def text_of_length(limit: int, char: str) -> st.SearchStrategy[str]:
    """Around a length limit: `limit - 1` to `limit + 1` characters, and empty."""
    return st.sampled_from([0, limit - 1, limit, limit + 1]).map(lambda n: char * n)


number_like = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False), st.integers(-5, 10**18), any_json
)


@st.composite
def goods_lines(draw: st.DrawFn, valid: bool) -> object:
    if not valid and draw(st.integers(0, 9)) == 0:
        return draw(any_json)
    digits = draw(st.text("0123456789", min_size=6, max_size=10))
    separators = draw(st.lists(st.sampled_from(["", "", ".", " "]), min_size=len(digits)))
    item: dict[str, Any] = {"hs_code": "".join(map(str.__add__, digits, separators))}
    for name, values in (
        ("value_usd", st.floats(0, 1e12) | st.integers(0, 10**9) | st.none()),
        ("quantity", st.floats(0, 1e6) | st.integers(0, 10**6) | st.none()),
        ("description", st.text(_TEXT, max_size=10) | st.none()),
        ("unit", st.sampled_from(["pcs", "kg", ""]) | st.none()),
        ("batch_id", st.text(_ID_CHARS, min_size=1, max_size=8) | st.just("B" * 64) | st.none()),
    ):
        if draw(st.booleans()):
            item[name] = draw(values)
    if not valid:
        for _ in range(draw(st.integers(1, 2))):
            name = draw(
                st.sampled_from(["hs_code", "value_usd", "quantity", "description", "batch_id"])
            )
            action = draw(st.sampled_from(["set", "set", "delete", "null"]))
            if action == "delete":
                item.pop(name, None)
            elif action == "null":
                item[name] = None
            else:
                pool = {
                    "hs_code": hs_like,
                    "description": any_json,
                    "batch_id": text_of_length(64, "B") | st.text(_TEXT, max_size=3) | any_json,
                }.get(name, number_like)
                item[name] = draw(pool)
    return item


transport_like = st.one_of(
    st.none(),
    any_json,
    st.fixed_dictionaries(
        {},
        optional={
            "mode": st.sampled_from(["road", "rail", "air", "sea", "Road", "truck", "", None])
            | any_json,
            "vehicle_id": st.text(_TEXT, max_size=8) | text_of_length(64, "V") | any_json,
            "container_id": st.text(_TEXT, max_size=8) | text_of_length(64, "C") | st.none(),
            "seal_id": st.text(_TEXT, max_size=8) | text_of_length(64, "S") | st.none(),
            "wagon": any_json,
        },
    ),
)

FIELD_VALUES: dict[str, st.SearchStrategy[object]] = {
    "schema": st.sampled_from(["crossing/1", "crossing/2", "", None]) | any_json,
    "event_id": id_values | st.text(_TEXT, max_size=12) | any_json,
    "consignment_id": id_values | st.text(_TEXT, max_size=12) | any_json,
    "checkpoint": st.text(_TEXT, max_size=3)
    | st.integers(62, 66).map(lambda n: "K" * n)
    | any_json,
    "from_country": country_like,
    "to_country": country_like,
    "observed_at": timestamp_like() | calendar_edges() | valid_timestamps() | any_json,
    "goods": st.lists(goods_lines(valid=False), max_size=3) | any_json,
    "declared_destination": country_like,
    "transport": transport_like,
    "scanner_id": st.text(_TEXT, max_size=3)
    | st.integers(62, 66).map(lambda n: "s" * n)
    | any_json,
    "permit_id": st.text(_TEXT, max_size=3) | text_of_length(64, "P") | any_json,
    "unknown": any_json,
    # Both countries at once: entry, exit, neither or both sides the monitored country.
    "sides": st.tuples(*[st.sampled_from(["KZ", "kz", "Kz", "RU", "cn", "XK"])] * 2),
}


@st.composite
def valid_events(draw: st.DrawFn) -> dict[str, Any]:
    kz = draw(cased("KZ"))
    other = draw(st.sampled_from(NEIGHBOURS).flatmap(cased))
    entering = draw(st.booleans())
    doc: dict[str, Any] = {
        "event_id": draw(id_values),
        "consignment_id": draw(id_values),
        "checkpoint": draw(st.text(_TEXT, min_size=1, max_size=12)),
        "from_country": other if entering else kz,
        "to_country": kz if entering else other,
        "observed_at": draw(valid_timestamps()),
        "goods": draw(st.lists(goods_lines(valid=True), min_size=1, max_size=3)),
    }
    optional: dict[str, st.SearchStrategy[object]] = {
        "schema": st.sampled_from(["crossing/1", None]),
        "declared_destination": st.sampled_from(ASSIGNED).flatmap(cased) | st.none(),
        "transport": st.none()
        | st.fixed_dictionaries(
            {},
            optional={
                "mode": st.sampled_from(["road", "rail", "air", "sea", None]),
                "vehicle_id": st.text(_TEXT, min_size=1, max_size=64) | st.none(),
                "container_id": st.text(_TEXT, min_size=1, max_size=64) | st.none(),
                "seal_id": st.text(_TEXT, min_size=1, max_size=64) | st.none(),
            },
        ),
        "scanner_id": st.text(_TEXT, min_size=1, max_size=64) | st.none(),
        "permit_id": st.text(_TEXT, min_size=1, max_size=64) | st.none(),
    }
    for name, values in optional.items():
        if draw(st.booleans()):
            doc[name] = draw(values)
    return doc


@st.composite
def crossing_like(draw: st.DrawFn) -> dict[str, Any]:
    """A valid event, then 0-3 mutations: a field replaced, removed or set to null."""
    doc = draw(valid_events())
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from(sorted(FIELD_VALUES)))
        action = draw(st.sampled_from(["set", "set", "set", "delete", "null"]))
        if name == "sides":
            action = "set"
        if action == "delete":
            doc.pop(name, None)
        elif action == "null":
            doc[name] = None
        elif name == "sides":
            doc["from_country"], doc["to_country"] = draw(FIELD_VALUES[name])
        else:
            doc[name] = draw(FIELD_VALUES[name])
    return doc


FOCUSED: dict[str, st.SearchStrategy[Any]] = {
    "observed_at": timestamp_like() | valid_timestamps(),
    "calendar": calendar_edges(),
    "hs_code": hs_like,
    "sides": FIELD_VALUES["sides"],
}
"""One rule at a time, in an otherwise valid event: edges the whole-document search rarely
combines with everything else valid (29 February of a common year, both sides KZ...)."""


def focused_event(field: str, value: Any) -> dict[str, Any]:
    """The default crossing (support.builders) with one FOCUSED value drawn for `field` put
    where it belongs."""
    if field == "hs_code":
        return crossing_doc(goods=[{"hs_code": value}])
    if field == "sides":
        return crossing_doc(from_country=value[0], to_country=value[1])
    if field == "calendar":
        return crossing_doc(observed_at=value)
    return crossing_doc(**{field: value})
