"""The compiled fast path accepts exactly what the reference validator accepts, as the same event.

`parse_crossing` tries `parse_crossing_fast` (msgspec structs and the Python checks no type
says) and hands whatever it refuses to `parse_crossing_reference` (orjson and the pure-Python
SPEC §3 checks). So a reject's reason and detail are the reference's by construction; what
must be proven is that the fast path never accepts what the reference rejects, and, when both
accept, builds an equal `CrossingEvent`. Every input here is run through both:

- every line of several simulator runs, a fifth of them malformed on purpose (the fast path
  must also accept every valid line: it is not allowed to be correct by refusing everything);
- the generated documents of the schema tests (`crossing_like`: a valid event, then mutated);
- byte-level mutations of valid events: bytes spliced in (bad UTF-8, escapes, whitespace,
  numbers orjson refuses), duplicate keys, unknown fields with hostile values;
- targeted cases for each point where msgspec and orjson, or typed decoding and the
  reference's checks, could part: null, booleans, duplicate keys, bad UTF-8, 1e400, depth,
  unknown fields, `schema`, the 64 KiB limit, `scanner_id`.
"""

from __future__ import annotations

import string
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bordermon.core import crossing
from bordermon.core.countries import ALPHA2_BY_SPELLING, normalize_country
from bordermon.core.crossing import (
    MAX_EVENT_BYTES,
    CrossingEvent,
    InvalidCrossing,
    parse_crossing,
    parse_crossing_fast,
    parse_crossing_reference,
)
from bordermon.simulate import SimulationSpec, simulate
from support.builders import crossing_doc
from support.strategies import FOCUSED, any_json, crossing_like, focused_event, valid_events

Outcome = tuple[str, object, object]


def reference_outcome(raw: bytes, monitored_country: str = "KZ") -> Outcome:
    try:
        return ("accepted", parse_crossing_reference(raw, monitored_country), None)
    except InvalidCrossing as error:
        return ("rejected", error.reason, error.detail)


def assert_equivalent(raw: bytes, monitored_country: str = "KZ") -> bool:
    """Both paths agree on `raw`; returns whether the fast path accepted it."""
    expected = reference_outcome(raw, monitored_country)
    fast = parse_crossing_fast(raw, monitored_country)
    if fast is not None:
        assert expected[0] == "accepted", f"fast path accepts what the reference rejects: {raw!r}"
        assert fast == expected[1], raw
        assert type(fast) is CrossingEvent
        assert [type(value) for value in fast] == [type(value) for value in expected[1]]  # type: ignore[attr-defined]
    try:
        got: Outcome = ("accepted", parse_crossing(raw, monitored_country), None)
    except InvalidCrossing as error:
        got = ("rejected", error.reason, error.detail)
    assert got == expected, raw
    return fast is not None


def dumps(doc: object) -> bytes:
    return orjson.dumps(doc)


# --- the simulator's lines ----------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_every_simulated_line_is_judged_alike(seed: int) -> None:
    lines, _ = simulate(SimulationSpec(consignments=400, seed=seed, malformed_rate=0.2))
    verdicts = {"fast": 0, "valid": 0, "rejected": 0}
    for raw in lines:
        accepted_fast = assert_equivalent(raw)
        valid = reference_outcome(raw)[0] == "accepted"
        verdicts["fast"] += accepted_fast
        verdicts["valid"] += valid
        verdicts["rejected"] += not valid
    assert verdicts["rejected"] > 100, "the run has its malformed lines"
    assert verdicts["fast"] == verdicts["valid"] > 500, "every valid line takes the fast path"


def test_simulated_lines_with_another_monitored_country() -> None:
    lines, _ = simulate(SimulationSpec(consignments=200, seed=5, malformed_rate=0.2))
    for monitored in ("RU", "CN", "KG"):
        for raw in lines:
            assert_equivalent(raw, monitored)


# --- generated documents ------------------------------------------------------------------

GENERATED = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@GENERATED
@given(crossing_like())
def test_generated_documents_are_judged_alike(doc: dict[str, Any]) -> None:
    assert_equivalent(dumps(doc))


@GENERATED
@given(valid_events())
def test_generated_valid_events_take_the_fast_path(doc: dict[str, Any]) -> None:
    assert assert_equivalent(dumps(doc))


@pytest.mark.parametrize("field", sorted(FOCUSED))
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_generated_values_one_rule_at_a_time(field: str, data: st.DataObject) -> None:
    doc = focused_event(field, data.draw(FOCUSED[field], label=field))
    for monitored in ("KZ", "RU"):
        assert_equivalent(dumps(doc), monitored)


# --- byte-level mutations -----------------------------------------------------------------

SPLICES = [
    b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc3", b"\xe2\x82",
    b"\\ud800", b"\\udc00", b"\\ud83d\\ude00", b"\\u0000", b"\\u001f", b"\\u0085", b"\\u007f",
    b"\\u", b"\\x", b"\\/", b"\\", b'"', b",", b":", b"{", b"}", b"[", b"]",
    b" ", b"\t", b"\n", b"\r", b"\x0b", b"\x0c", b"\xc2\xa0", b"\x00", b"\x1f", b"\x7f",
    b"1e400", b"-1E+400", b"1" + b"0" * 310, b"1e-400", b"100000000000000000000000000000",
    b"NaN", b"Infinity", b"true", b"null", b"01", b"1.", b".5",
]  # fmt: skip
"""Bytes that orjson and msgspec might read differently, wherever they land."""


@st.composite
def spliced(draw: st.DrawFn) -> bytes:
    raw = dumps(draw(valid_events()))
    for _ in range(draw(st.integers(1, 2))):
        at = draw(st.integers(0, len(raw)))
        cut = draw(st.integers(0, 2))
        piece = draw(st.sampled_from(SPLICES) | st.binary(min_size=1, max_size=3))
        raw = raw[:at] + piece + raw[at + cut :]
    return raw


FIELD_NAMES = [
    "schema", "event_id", "consignment_id", "checkpoint", "from_country", "to_country",
    "observed_at", "goods", "permit_id", "declared_destination", "transport", "scanner_id",
]  # fmt: skip
HOSTILE_VALUES = [
    b"1e400", b"-1e400", b"1E+999", b"1.5e0400", b"-" + b"9" * 320, b"1" * 250 + b".5",
    b"18446744073709551616", b"-9223372036854775809", b"1e-400", b"-0", b"1e99", b"1e308",
    b'"\xff"', b'"\xed\xa0\x80"', b'"\\ud800"', b'"\\udc00\\ud800"', b'"\\ud800\\u0041"',
    b'"\\ud83d\\ude00"', b'"ok"', b"[1e400]", b'{"a":1e400}', b'{"\xff":1}', b"[[[[]]]]",
]  # fmt: skip
"""Values of unknown fields (msgspec skips them unread: only the guards stand in the way)."""


def with_member(raw: bytes, key: bytes, value: bytes) -> bytes:
    """`raw` (a JSON object) with one more member at the end: duplicates are allowed."""
    return raw[:-1] + b',"' + key + b'":' + value + b"}"


@st.composite
def with_members(draw: st.DrawFn) -> bytes:
    doc = draw(valid_events())
    where = draw(st.sampled_from(["top", "goods", "transport"]))
    container: dict[str, Any] = doc
    if where == "goods":
        container = doc["goods"][0]
    elif where == "transport":
        container = doc.setdefault("transport", {}) or {}
        doc["transport"] = container
    key = draw(st.sampled_from([*FIELD_NAMES, "hs_code", "value_usd", "batch_id", "mode", "x"]))
    value = draw(
        st.sampled_from(HOSTILE_VALUES)
        | any_json.map(dumps)
        | st.sampled_from([dumps(crossing_doc()[name]) for name in FIELD_NAMES[1:8]])
    )
    marker = "\u2063marker"  # a member to splice next to: the container's last
    container[marker] = 0
    raw = dumps(doc)
    spot = raw.index(dumps(marker))
    member = b'"' + key.encode() + b'":' + value
    if draw(st.booleans()):
        return raw[:spot] + member + b"," + raw[spot:]
    return raw.replace(dumps(marker) + b":0", member)


@GENERATED
@given(spliced())
def test_spliced_bytes_are_judged_alike(raw: bytes) -> None:
    assert_equivalent(raw)


@GENERATED
@given(with_members())
def test_duplicate_and_unknown_members_are_judged_alike(raw: bytes) -> None:
    assert_equivalent(raw)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64) | st.text(max_size=40).map(str.encode))
def test_arbitrary_bytes_are_judged_alike(raw: bytes) -> None:
    assert_equivalent(raw)


# --- targeted cases -----------------------------------------------------------------------

VALID_BASE = dumps(crossing_doc())


def fast_and_reference(raw: bytes) -> tuple[CrossingEvent | None, Outcome]:
    assert_equivalent(raw)
    return parse_crossing_fast(raw), reference_outcome(raw)


def test_null_optional_fields_are_absent_on_the_fast_path() -> None:
    nulls = dict.fromkeys(
        ("schema", "permit_id", "declared_destination", "transport", "scanner_id"), None
    )
    raw = dumps({**crossing_doc(), **nulls})
    fast, _ = fast_and_reference(raw)
    assert fast is not None
    assert fast == parse_crossing_reference(VALID_BASE)
    goods = [{"hs_code": "854231", **dict.fromkeys(("value_usd", "quantity", "unit"), None)}]
    transport = dict.fromkeys(("mode", "vehicle_id", "container_id", "seal_id"), None)
    assert parse_crossing_fast(dumps(crossing_doc(goods=goods, transport=transport)))


@pytest.mark.parametrize(
    "name",
    ["event_id", "consignment_id", "checkpoint", "from_country", "to_country", "observed_at"],
)
def test_a_required_field_set_to_null_falls_back(name: str) -> None:
    fast, expected = fast_and_reference(dumps({**crossing_doc(), name: None}))
    assert fast is None
    assert expected[:2] == ("rejected", f"invalid_field:{name}")


@pytest.mark.parametrize(
    "goods",
    [
        [{"hs_code": "854231", "value_usd": True}],
        [{"hs_code": "854231", "quantity": False}],
        [{"hs_code": 854231}],
        [{"hs_code": "854231", "value_usd": "12"}],
        [{"hs_code": None}],
    ],
    ids=["bool value", "bool quantity", "numeric hs_code", "string value", "null hs_code"],
)
def test_bools_are_not_numbers_and_hs_codes_are_strings(goods: list[dict[str, Any]]) -> None:
    fast, expected = fast_and_reference(dumps(crossing_doc(goods=goods)))
    assert fast is None and expected[:2] == ("rejected", "invalid_field:goods")


def test_numbers_at_the_edges_of_a_double() -> None:
    for number, accepted in (
        (b"1e-400", True),
        (b"-0", True),
        (b"-0.0", True),
        (b"100000000000000000000000000000", True),
        (b"1.7976931348623157e308", True),
        (b"1" + b"0" * 308, True),  # 1e308 written out
        (b"17976931348623157" + b"0" * 292, True),  # the largest double, written out
        (b"17976931348623159" + b"0" * 292, False),  # rounds to infinity
        (b"1" * 250 + b".5", True),
        (b"0." + b"0" * 400 + b"1", True),
        (b"1e400", False),
        (b"1.8e308", False),
        (b"-1", False),
    ):
        raw = VALID_BASE.replace(b'"value_usd":1200.5', b'"value_usd":' + number)
        assert (reference_outcome(raw)[0] == "accepted") is accepted, number
        assert assert_equivalent(raw) is accepted, number


@pytest.mark.parametrize("value", [b"1e400", b"-1E+400", b"1" + b"0" * 400, b"[1e999]"])
@pytest.mark.parametrize("where", ["top", "goods", "transport"])
def test_an_overflowing_number_in_an_unknown_field_falls_back(value: bytes, where: str) -> None:
    raw = unknown_member(where, value)
    fast, expected = fast_and_reference(raw)
    assert fast is None
    assert expected[1] == "invalid_json"


def unknown_member(where: str, value: bytes) -> bytes:
    doc = crossing_doc(transport={"mode": "road"})
    raw = dumps(doc)
    member = b'"x_unknown":' + value
    if where == "top":
        return raw[:-1] + b"," + member + b"}"
    if where == "goods":
        return raw.replace(b'"unit":"pcs"', b'"unit":"pcs",' + member)
    return raw.replace(b'"mode":"road"', b'"mode":"road",' + member)


@pytest.mark.parametrize("where", ["top", "goods", "transport"])
def test_unknown_fields_are_ignored_on_the_fast_path(where: str) -> None:
    for value in (b"1e99", b"18446744073709551616", b'{"a":[1,null,"\xc3\xa9"]}', b'"\\u00e9"'):
        fast, expected = fast_and_reference(unknown_member(where, value))
        assert fast is not None
        assert expected[0] == "accepted"


@pytest.mark.parametrize(
    "value", [b'"\xff"', b'"ok\xc3"', b'"\xed\xa0\x80"', b'"\xf4\x90\x80\x80"', b'"\xc0\xaf"']
)
def test_bad_utf8_falls_back_wherever_it_is(value: bytes) -> None:
    for raw in (
        unknown_member("top", value),
        unknown_member("goods", value),
        VALID_BASE.replace(b'"CONS-1"', value),  # a typed field
        VALID_BASE.replace(b'"event_id"', b'"event_id' + value[1:-1] + b'"'),  # a key
    ):
        fast, expected = fast_and_reference(raw)
        assert fast is None
        assert expected[1] == "invalid_json"
        assert "not valid UTF-8" in str(expected[2])


@pytest.mark.parametrize("escape", [b"\\ud800", b"\\udc00", b"\\ud800\\u0041", b"\\udbff"])
def test_lone_surrogate_escapes_fall_back(escape: bytes) -> None:
    for raw in (
        unknown_member("top", b'"' + escape + b'"'),
        VALID_BASE.replace(b'"CONS-1"', b'"CONS' + escape + b'"'),
    ):
        fast, expected = fast_and_reference(raw)
        assert fast is None and expected[1] == "invalid_json"


def test_a_surrogate_pair_escape_is_read_alike() -> None:
    fast, _ = fast_and_reference(VALID_BASE.replace(b'"CONS-1"', b'"CONS\\ud83d\\ude00"'))
    assert fast is not None and fast.consignment_id == "CONS\U0001f600"


def test_escaped_keys_and_values_are_read_alike() -> None:
    raw = VALID_BASE.replace(b'"event_id":"ev-1"', b'"event\\u005fid":"ev\\u002d1\\/"')
    fast, _ = fast_and_reference(raw)
    assert fast is not None and fast.event_id == "ev-1/"


@pytest.mark.parametrize(
    ("members", "valid"),
    [
        ((b'"event_id":"ev-2"',), True),  # the last one wins, as orjson reads it
        ((b'"event_id":""',), False),
        ((b'"event_id":7',), False),
        ((b'"goods":[]',), False),
        ((b'"to_country":"RU"',), False),  # CN -> RU: not a crossing
        ((b'"schema":null', b'"schema":"crossing/2"'), False),
        ((b'"schema":"crossing/2"', b'"schema":null'), True),
    ],
)
def test_duplicate_keys_are_read_as_orjson_reads_them(
    members: tuple[bytes, ...], valid: bool
) -> None:
    raw = VALID_BASE
    for member in members:
        raw = raw[:-1] + b"," + member + b"}"
    assert_equivalent(raw)
    assert (reference_outcome(raw)[0] == "accepted") is valid
    # An earlier value is replaced: a bad one before a good one is no fault.
    bad_first = VALID_BASE.replace(b'{"schema"', b'{"event_id":"","schema"')
    assert reference_outcome(bad_first)[0] == "accepted"
    assert_equivalent(bad_first)


@contextmanager
def recursion_limit(limit: int) -> Iterator[None]:
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(limit)
    try:
        yield
    finally:
        sys.setrecursionlimit(before)


@pytest.mark.parametrize("depth", [10, 500, 1022, 1023, 1024, 1100, 3000])
def test_deep_nesting_in_an_unknown_field_is_read_alike(depth: int) -> None:
    # The object itself is depth 1, so the unknown value's `depth` arrays make depth + 1.
    raw = unknown_member("top", b"[" * depth + b"]" * depth)
    orjson_reads = depth + 1 <= 1024
    assert (reference_outcome(raw)[0] == "accepted") is orjson_reads
    assert_equivalent(raw)
    # msgspec's own limit is Python's recursion limit: raised, the guard alone holds.
    with recursion_limit(20_000):
        assert_equivalent(raw)


def test_the_schema_field() -> None:
    for schema, accepted in (("crossing/1", True), (None, True), ("crossing/2", False), (1, False)):
        fast, expected = fast_and_reference(dumps({**crossing_doc(), "schema": schema}))
        assert (fast is not None) is accepted is (expected[0] == "accepted")
    fast, _ = fast_and_reference(dumps(crossing_doc(schema=None)))  # absent
    assert fast is not None


def test_the_64_kib_limit_is_checked_on_bytes() -> None:
    base = dumps(crossing_doc(padding=""))
    at_limit = dumps(crossing_doc(padding="x" * (MAX_EVENT_BYTES - len(base))))
    assert len(at_limit) == MAX_EVENT_BYTES
    assert fast_and_reference(at_limit)[0] is not None
    over = dumps(crossing_doc(padding="x" * (MAX_EVENT_BYTES - len(base) + 1)))
    fast, expected = fast_and_reference(over)
    assert fast is None and expected[1] == "too_large"


def test_scanner_id_and_every_v2_field_reach_the_event() -> None:
    raw = dumps(
        crossing_doc(
            scanner_id="KZ-NUR-A1",
            permit_id="KZ-EL-1",
            declared_destination="ru",
            transport={"mode": "rail", "container_id": "mscu 123456-7", "seal_id": "kz 1"},
            goods=[
                {"hs_code": "8542.31", "batch_id": " B1 "},
                {"hs_code": "8471 50", "batch_id": "B1"},
            ],
        )
    )
    fast, _ = fast_and_reference(raw)
    assert fast is not None
    assert fast.scanner_id == "KZ-NUR-A1" and fast.permit_id == "KZ-EL-1"
    assert fast.declared_destination == "RU"
    assert fast.hs_codes == ("854231", "847150")
    assert fast.link_keys == ("container:MSCU1234567", "seal:KZ1", "batch:B1")


@pytest.mark.parametrize(
    "text",
    [
        "CONS\x00", "CONS\n", "CONS\x7f", "CONS\x85", "CONS\x9f",  # Cc: refused
        "CONS\xa0", "CONS\u2028", "CONS\u200b", "CONS\U000e0001", "Груз 7", "C O N S",  # not Cc
    ],
)  # fmt: skip
def test_control_characters_in_ids_whatever_else_is_unprintable(text: str) -> None:
    for doc in (
        crossing_doc(consignment_id=text),
        crossing_doc(event_id=text),
        crossing_doc(goods=[{"hs_code": "854231", "batch_id": text}]),
    ):
        assert_equivalent(dumps(doc))


@pytest.mark.parametrize("pair", [("cn", "kz"), ("Cn", "kZ"), ("KZ", "ru"), ("ıt", "KZ")])
def test_country_spellings(pair: tuple[str, str]) -> None:
    assert_equivalent(dumps(crossing_doc(from_country=pair[0], to_country=pair[1])))


def test_every_spelling_of_a_country_is_normalised_alike() -> None:
    alphabet = string.ascii_letters + string.digits + " ıİＫ\u212a"  # K and KELVIN SIGN
    candidates = {a + b for a in alphabet for b in alphabet} | {"", "K", "KZK", "kz "}
    for text in candidates:
        assert ALPHA2_BY_SPELLING.get(text) == normalize_country(text), text


def test_closed_and_open_structs_have_the_same_fields() -> None:
    """The closed structs (tried first) and the open ones must describe one document."""
    for closed, open_ in (
        (crossing._ClosedCrossing, crossing._Crossing),
        (crossing._ClosedGoodsLine, crossing._GoodsLine),
        (crossing._ClosedTransport, crossing._Transport),
    ):
        assert closed.__struct_fields__ == open_.__struct_fields__
        assert closed.__struct_config__.forbid_unknown_fields
        assert not open_.__struct_config__.forbid_unknown_fields


@pytest.mark.parametrize(
    ("raw", "flagged"),
    [
        (b'{"a":1e400}', True),
        (b'{"a": \n\t-12.50E+0400}', True),
        (b'{"a":[0,1.5e308]}', True),  # finite, but 3 exponent digits: looked at by the reference
        (b'{"a":' + b"9" * 200 + b"}", True),
        (b'{"a":"x' + b"9" * 200 + b'"}', True),  # in a string: only costs the fast path
        (b'{"a":1e-400,"b":1e99,"c":' + b"9" * 199 + b"}", False),
        (b'{"id":"1f70e633-0d19-44c5-8e123-302dbecea88b","b":"be400","c":"x:e400"}', False),
        (b'{"id":"-8e123","v":"a,-8e123"}', True),  # ',' before: could be a number, so flagged
    ],
)
def test_the_overflowing_number_guard(raw: bytes, flagged: bool) -> None:
    assert crossing._has_overflowing_number(raw) is flagged
