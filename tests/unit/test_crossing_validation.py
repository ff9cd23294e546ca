"""Every SPEC §3 rule, each with the reason code a scanner operator would see."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from bordermon.core.crossing import (
    MAX_EVENT_BYTES,
    Direction,
    InvalidCrossing,
    parse_crossing,
    validate_document,
)
from support.builders import crossing_doc


def reason_of(raw: bytes) -> str:
    with pytest.raises(InvalidCrossing) as caught:
        parse_crossing(raw)
    assert caught.value.detail, "every reject explains itself"
    return caught.value.reason


def reason_of_doc(**fields: Any) -> str:
    return reason_of(orjson.dumps(crossing_doc(**fields)))


def test_a_valid_entry_is_normalised() -> None:
    event = parse_crossing(
        orjson.dumps(
            crossing_doc(
                from_country="cn",
                goods=[{"hs_code": "8542.31"}, {"hs_code": "8471 50 00 00"}],
                declared_destination="kz",
            )
        )
    )
    assert event.direction is Direction.ENTRY
    assert (event.from_country, event.to_country) == ("CN", "KZ")
    assert event.hs_codes == ("854231", "8471500000")
    assert event.declared_destination == "KZ"
    assert event.origin == "CN"


def test_an_exit_is_recognised() -> None:
    event = parse_crossing(orjson.dumps(crossing_doc(from_country="KZ", to_country="RU")))
    assert event.direction is Direction.EXIT
    assert event.origin == "RU"


def test_unknown_fields_and_optional_fields_are_accepted() -> None:
    doc = crossing_doc(
        extra={"anything": [1, 2]},
        scanner_id="SCN-7",
        transport={"mode": "rail", "container_id": "MSKU1234565", "wagon": 12},
        declared_destination="RU",
    )
    doc["goods"][0]["colour"] = "green"
    assert parse_crossing(orjson.dumps(doc)).event_id == "ev-1"


def test_schema_is_optional_and_null_optional_fields_count_as_absent() -> None:
    event = parse_crossing(
        orjson.dumps(crossing_doc(schema=None, declared_destination=None, transport=None))
    )
    assert event.declared_destination is None
    raw = orjson.dumps({**crossing_doc(), "declared_destination": None, "scanner_id": None})
    assert parse_crossing(raw).declared_destination is None


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "invalid_json"),
        (b"", "invalid_json"),
        (b'{"a": 1} trailing', "invalid_json"),
        (b'{"event_id": "\xff\xfe"}', "invalid_json"),  # not UTF-8
        (b'{"a": NaN}', "invalid_json"),
        (b"[1, 2]", "not_an_object"),
        (b'"a string"', "not_an_object"),
        (b"null", "not_an_object"),
        (b"42", "not_an_object"),
    ],
)
def test_bytes_that_are_not_an_object(raw: bytes, reason: str) -> None:
    assert reason_of(raw) == reason


def test_too_large_is_checked_on_bytes_before_parsing() -> None:
    doc = crossing_doc(padding="x" * MAX_EVENT_BYTES)
    assert reason_of(orjson.dumps(doc)) == "too_large"
    # Exactly at the limit is fine.
    base = orjson.dumps(crossing_doc(padding=""))
    at_limit = orjson.dumps(crossing_doc(padding="x" * (MAX_EVENT_BYTES - len(base))))
    assert len(at_limit) == MAX_EVENT_BYTES
    assert parse_crossing(at_limit).event_id == "ev-1"


@pytest.mark.parametrize(
    "name",
    [
        "event_id",
        "consignment_id",
        "checkpoint",
        "from_country",
        "to_country",
        "observed_at",
        "goods",
    ],
)
def test_each_required_field(name: str) -> None:
    assert reason_of_doc(**{name: None}) == f"missing_field:{name}"
    assert reason_of(orjson.dumps({**crossing_doc(), name: None})) == f"invalid_field:{name}"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("schema", "crossing/2"),
        ("schema", 1),
        ("event_id", ""),
        ("event_id", "e" * 129),
        ("event_id", 12345),
        ("event_id", "ev\n1"),
        ("consignment_id", ""),
        ("consignment_id", "c" * 129),
        ("consignment_id", "CONS\x00-1"),
        ("consignment_id", "CONS\x7f"),
        ("consignment_id", "CONS\u0085"),  # C1 control (NEL)
        ("consignment_id", ["CONS-1"]),
        ("checkpoint", ""),
        ("checkpoint", "K" * 65),
        ("from_country", "XX"),
        ("from_country", "EU"),  # exceptionally reserved, not assigned
        ("from_country", "UK"),
        ("from_country", "XK"),  # user-assigned
        ("from_country", "CHN"),
        ("from_country", "C"),
        ("from_country", " CN"),
        ("from_country", "ıt"),  # dotless i upper-cases to I in Python
        ("to_country", 7),
        ("observed_at", "2024-03-01T10:00:00"),  # no offset
        ("observed_at", "2024-03-01 10:00:00Z"),
        ("observed_at", "2024-03-01"),
        ("observed_at", "2024-02-30T10:00:00Z"),
        ("observed_at", "2023-02-29T10:00:00Z"),
        ("observed_at", "2024-13-01T10:00:00Z"),
        ("observed_at", "2024-03-01T24:00:00Z"),
        ("observed_at", "2024-03-01T10:60:00Z"),
        ("observed_at", "2024-03-01T10:00:00+0500"),
        ("observed_at", "2024-03-01T10:00:00+24:00"),
        ("observed_at", "1709287200"),
        ("observed_at", 1709287200),
        ("goods", []),
        ("goods", {"hs_code": "854231"}),
        ("goods", [{"hs_code": "85423"}]),  # 5 digits
        ("goods", [{"hs_code": "85423100001"}]),  # 11 digits
        ("goods", [{"hs_code": "8542AB"}]),
        ("goods", [{"hs_code": "٨٥٤٢٣١"}]),  # Arabic-Indic digits are not HS digits
        ("goods", [{"hs_code": 854231}]),  # a number loses leading zeros
        ("goods", [{"description": "chips"}]),
        ("goods", [{"hs_code": "854231", "value_usd": -1}]),
        ("goods", [{"hs_code": "854231", "quantity": -0.5}]),
        ("goods", [{"hs_code": "854231", "value_usd": "12"}]),
        ("goods", [{"hs_code": "854231", "quantity": True}]),
        ("goods", [{"hs_code": "854231"}, "854232"]),
        ("goods", [{"hs_code": "854231"}] * 1001),
        ("declared_destination", "ZZ"),
        ("declared_destination", "Russia"),
        ("transport", "truck"),
        ("transport", {"mode": "truck"}),
        ("transport", {"mode": "road", "seal_id": 5}),
        ("scanner_id", ""),
        ("scanner_id", "s" * 65),
    ],
)
def test_invalid_field(field: str, value: object) -> None:
    assert reason_of_doc(**{field: value}) == f"invalid_field:{field}"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("event_id", "e" * 128),
        ("consignment_id", "Груз/№ 7 — 貨物 ✓"),
        ("consignment_id", "c" * 128),
        ("checkpoint", "K" * 64),
        ("from_country", "tr"),
        ("from_country", "Ae"),
        ("observed_at", "2024-03-01t10:00:00z"),
        ("observed_at", "2024-03-01T10:00:00.123456789+05:00"),
        ("observed_at", "2024-02-29T23:59:60Z"),  # leap second
        ("observed_at", "2024-03-01T10:00:00-00:00"),
        ("goods", [{"hs_code": "8542.31.00.00"}]),
        ("goods", [{"hs_code": "854231", "value_usd": 0, "quantity": 0.0}]),
        ("goods", [{"hs_code": "854231", "value_usd": None}]),
        ("goods", [{"hs_code": "854231"}] * 1000),
        ("scanner_id", "s" * 64),
        ("transport", {"mode": "sea", "vehicle_id": "IMO 9321483"}),
    ],
)
def test_valid_edge_values(field: str, value: object) -> None:
    event = parse_crossing(orjson.dumps(crossing_doc(**{field: value})))
    assert event.consignment_id == (value if field == "consignment_id" else "CONS-1")


@pytest.mark.parametrize(
    ("from_country", "to_country"),
    [("CN", "RU"), ("KZ", "KZ"), ("kz", "KZ"), ("TR", "TR")],
)
def test_not_a_crossing(from_country: str, to_country: str) -> None:
    assert reason_of_doc(from_country=from_country, to_country=to_country) == "not_a_crossing"


def test_monitored_country_is_configuration() -> None:
    doc = crossing_doc(from_country="CN", to_country="KG")
    assert validate_document(doc, monitored_country="KG").direction is Direction.ENTRY
    with pytest.raises(InvalidCrossing, match="not_a_crossing"):
        validate_document(doc, monitored_country="KZ")


def test_first_fault_in_spec_order_is_reported() -> None:
    assert reason_of_doc(event_id=None, goods=[]) == "missing_field:event_id"
    assert reason_of_doc(goods=[], from_country="CN", to_country="RU") == "invalid_field:goods"


def test_detail_names_the_goods_line() -> None:
    with pytest.raises(InvalidCrossing) as caught:
        parse_crossing(
            orjson.dumps(crossing_doc(goods=[{"hs_code": "854231"}, {"hs_code": "12ab"}]))
        )
    assert "goods[1].hs_code" in caught.value.detail


# --- SPEC v2: observed_at bounds, permit_id, batch_id, transport ids, link keys -----------


def detail_of_doc(**fields: Any) -> tuple[str, str]:
    with pytest.raises(InvalidCrossing) as caught:
        parse_crossing(orjson.dumps(crossing_doc(**fields)))
    return caught.value.reason, caught.value.detail


@pytest.mark.parametrize(
    "observed_at",
    [
        "1999-12-31T23:59:59.999999999Z",
        "2100-01-01T00:00:00Z",
        "9999-12-31T23:59:59Z",
        "0001-01-01T00:00:00Z",
        # Local times inside the bounds whose UTC instant is outside them.
        "2000-01-01T04:59:59+05:00",
        "2099-12-31T23:00:00-01:00",
    ],
)
def test_observed_at_outside_2000_to_2100_is_invalid(observed_at: str) -> None:
    reason, detail = detail_of_doc(observed_at=observed_at)
    assert reason == "invalid_field:observed_at"
    assert "[2000-01-01T00:00:00Z, 2100-01-01T00:00:00Z)" in detail


@pytest.mark.parametrize(
    "observed_at",
    [
        "2000-01-01T00:00:00Z",
        "2099-12-31T23:59:59.999Z",
        "2099-12-31T23:59:59.999999999Z",
        # Local times outside the bounds whose UTC instant is inside them.
        "1999-12-31T23:00:00-01:00",
        "2100-01-01T04:59:59+05:00",
    ],
)
def test_observed_at_inside_the_bounds_is_accepted(observed_at: str) -> None:
    assert parse_crossing(orjson.dumps(crossing_doc(observed_at=observed_at)))


def test_permit_id_is_optional_and_1_to_64_characters() -> None:
    assert parse_crossing(orjson.dumps(crossing_doc())).permit_id is None
    assert parse_crossing(orjson.dumps(crossing_doc(permit_id="P" * 64))).permit_id == "P" * 64
    for bad in ("", "P" * 65, 42, ["P-1"]):
        assert reason_of_doc(permit_id=bad) == "invalid_field:permit_id"


@pytest.mark.parametrize("batch_id", ["", "B" * 65, "RNPT\n1", "RNPT\x7f", "RNPT\x85", 17, []])
def test_goods_batch_id_must_be_1_to_64_characters_without_control_characters(
    batch_id: object,
) -> None:
    goods = [{"hs_code": "854231"}, {"hs_code": "854231", "batch_id": batch_id}]
    reason, detail = detail_of_doc(goods=goods)
    assert reason == "invalid_field:goods"
    assert "goods[1].batch_id" in detail


@pytest.mark.parametrize("key", ["vehicle_id", "container_id", "seal_id"])
@pytest.mark.parametrize("value", ["", "X" * 65, 7])
def test_transport_ids_are_1_to_64_characters(key: str, value: object) -> None:
    reason, detail = detail_of_doc(transport={key: value})
    assert reason == "invalid_field:transport"
    assert f"transport.{key}" in detail


def test_transport_ids_of_64_characters_are_accepted() -> None:
    ids = dict.fromkeys(("vehicle_id", "container_id", "seal_id"), "X" * 64)
    assert parse_crossing(orjson.dumps(crossing_doc(transport=ids)))


def test_invalid_utf8_says_so() -> None:
    raw = orjson.dumps(crossing_doc()).replace(b"CONS-1", b"CONS-\xff")
    with pytest.raises(InvalidCrossing) as caught:
        parse_crossing(raw)
    assert caught.value.reason == "invalid_json"
    assert "not valid UTF-8" in caught.value.detail
    assert "surrogates" not in caught.value.detail


def test_broken_json_in_valid_utf8_still_says_json() -> None:
    with pytest.raises(InvalidCrossing) as caught:
        parse_crossing(b'{"event_id": ')
    assert caught.value.detail.startswith("not valid JSON")


def keys_of(**fields: Any) -> tuple[str, ...]:
    return parse_crossing(orjson.dumps(crossing_doc(**fields))).link_keys


def test_no_link_keys_without_transport_ids_or_batches() -> None:
    assert keys_of() == ()
    assert keys_of(transport={"mode": "road", "vehicle_id": "777ABC02"}) == ()  # not a key


def test_link_keys_are_normalised_deduplicated_and_ordered() -> None:
    keys = keys_of(
        transport={"container_id": "mscu 123456-7", "seal_id": "kz 0042 17", "vehicle_id": "V1"},
        goods=[
            {"hs_code": "854231", "batch_id": "  10702010/010324/0001234/1 "},
            {"hs_code": "847150"},
            {"hs_code": "847150", "batch_id": "10702010/010324/0001234/1"},  # same, trimmed
            {"hs_code": "847150", "batch_id": "rnpt-2"},  # kept as given: case and dashes
        ],
    )
    assert keys == (
        "container:MSCU1234567",
        "seal:KZ004217",
        "batch:10702010/010324/0001234/1",
        "batch:rnpt-2",
    )


def test_ids_that_normalise_to_nothing_give_no_key() -> None:
    keys = keys_of(
        transport={"container_id": " - -", "seal_id": "   "},
        goods=[{"hs_code": "854231", "batch_id": "   "}],
    )
    assert keys == ()


def test_a_container_and_a_seal_with_the_same_text_are_two_keys() -> None:
    assert keys_of(transport={"container_id": "AB1", "seal_id": "ab1"}) == (
        "container:AB1",
        "seal:AB1",
    )


def test_hs_codes_stay_one_per_goods_line_in_line_order() -> None:
    event = parse_crossing(
        orjson.dumps(
            crossing_doc(
                goods=[{"hs_code": "847150"}, {"hs_code": "854231"}, {"hs_code": "8471.50"}]
            )
        )
    )
    assert event.hs_codes == ("847150", "854231", "847150")
