"""Link sightings on the internal topic and link-key state in the store: compact, exact,
and never trusted when read back."""

from __future__ import annotations

import orjson
import pytest

from bordermon.core import (
    CrossingEvent,
    DetectionConfig,
    InvalidLinkSighting,
    LinkSighting,
    apply,
    apply_link,
    decode_link_sighting,
    decode_link_state,
    encode_link_sighting,
    encode_link_state,
)
from bordermon.core.state import StateDecodeError
from support.builders import CHPL, entry, exit_

CONFIG = DetectionConfig(watchlist=CHPL)
BOX = {"container_id": "MSCU1234567", "seal_id": "S 1"}


def sightings_of(event: CrossingEvent, clock: int = 0) -> tuple[LinkSighting, ...]:
    return apply(None, event, CONFIG, lambda: clock).sightings


def test_a_sighting_round_trips_and_is_the_same_bytes_when_emitted_again() -> None:
    event = entry(
        "e1", "2024-03-01T10:00:00.5+05:00", transport=BOX, goods=[{"hs_code": "8542.31"}]
    )
    first = sightings_of(event, clock=1)
    again = sightings_of(event, clock=2)  # another time: a re-read after a crash
    assert [s.link for s in first] == ["container:MSCU1234567", "seal:S1"]
    assert [encode_link_sighting(s) for s in first] == [encode_link_sighting(s) for s in again]
    for sighting in first:
        raw = encode_link_sighting(sighting)
        assert decode_link_sighting(raw) == sighting
        assert len(raw) < 200, raw


def test_only_qualifying_crossings_with_keys_give_sightings() -> None:
    assert sightings_of(entry("e1", "2024-03-01T00:00:00Z")) == ()  # no key
    assert sightings_of(entry("e1", "2024-03-01T00:00:00Z", origin="RU", transport=BOX)) == ()
    assert sightings_of(exit_("x1", "2024-03-01T00:00:00Z", "KG", transport=BOX)) == ()
    assert len(sightings_of(exit_("x1", "2024-03-01T00:00:00Z", transport=BOX))) == 2
    relabel_off = DetectionConfig(watchlist=CHPL, rules=frozenset({"transit-to-ru"}))
    event = exit_("x1", "2024-03-01T00:00:00Z", transport=BOX)
    assert apply(None, event, relabel_off).sightings == ()


def test_duplicates_give_no_sightings() -> None:
    event = exit_("x1", "2024-03-01T00:00:00Z", transport=BOX)
    state = apply(None, event, CONFIG).state
    again = apply(state, event, CONFIG)
    assert again.duplicate and again.sightings == ()


GOOD = encode_link_sighting(sightings_of(exit_("x1", "2024-03-01T00:00:00Z", transport=BOX))[0])


def _tampered(index: int, value: object) -> bytes:
    doc = orjson.loads(GOOD)
    doc[index] = value
    return orjson.dumps(doc)


def _tampered_sighting(index: int, value: object) -> bytes:
    doc = orjson.loads(GOOD)
    doc[4][index] = value
    return orjson.dumps(doc)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not json",
        b"{}",
        b"[]",
        GOOD[:-1],
        _tampered(0, 2),  # a newer version
        _tampered(0, True),
        _tampered(1, "container:"),  # nothing after the prefix
        _tampered(1, "vehicle:777"),
        _tampered(1, 7),
        _tampered(2, ""),
        _tampered(2, "C" * 129),
        _tampered(3, "sideways"),
        _tampered(4, "x1"),
        _tampered(5, []),
        _tampered(5, ["8542"]),
        _tampered(5, ["85423x"]),
        _tampered(5, [854231]),
        _tampered(6, 7),
        _tampered(6, "RUS"),
        _tampered_sighting(5, 0),  # an instant that is not its text's
        _tampered_sighting(5, "1709251200000000000"),
        _tampered_sighting(5, True),
        _tampered_sighting(4, "yesterday"),
        _tampered_sighting(0, None),
        orjson.dumps([*orjson.loads(GOOD), "extra"]),
    ],
)
def test_malformed_sightings_are_refused(raw: bytes) -> None:
    with pytest.raises(InvalidLinkSighting):
        decode_link_sighting(raw)


def test_link_state_round_trips_with_pending_flags() -> None:
    [a_in] = sightings_of(
        entry("a1", "2024-03-01T00:00:00Z", consignment_id="A", transport={"seal_id": "S1"})
    )
    [b_out] = sightings_of(
        exit_("b1", "2024-03-02T00:00:00Z", consignment_id="B", transport={"seal_id": "S1"})
    )
    [c_out] = sightings_of(
        exit_("c1", "2024-01-01T00:00:00Z", consignment_id="C", transport={"seal_id": "S1"})
    )
    state = apply_link(None, c_out, CONFIG).state  # kept: no entry before it
    state = apply_link(state, a_in, CONFIG).state
    transition = apply_link(state, b_out, CONFIG, lambda: 5)
    assert [f.consignment_id for f in transition.flags] == ["B"]
    decoded = decode_link_state(encode_link_state(transition.state))
    assert decoded == transition.state
    assert decoded.pending[0].to_dict() == transition.flags[0].to_dict()
    assert apply_link(decoded, b_out, CONFIG).duplicate
    assert apply_link(decoded, a_in, CONFIG).duplicate


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b'{"v": 2, "k": "seal:S1"}',
        b'{"v": 1}',
        b'{"v": 1, "k": "truck:1"}',
        b'{"v": 1, "k": "seal:S1", "e": [["A"]]}',
        b'{"v": 1, "k": "seal:S1", "s": "not base64!"}',
        b'{"v": 1, "k": "seal:S1", "s": "AAAA"}',
        b'{"v": 1, "k": "seal:S1", "f": "B"}',
    ],
)
def test_unreadable_link_state_raises_state_decode_error(raw: bytes) -> None:
    with pytest.raises(StateDecodeError):
        decode_link_state(raw)
