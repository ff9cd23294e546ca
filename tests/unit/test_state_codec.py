"""The stored form of consignment state: compact, bounded, lossless."""

from __future__ import annotations

import orjson
import pytest
from builders import CHPL, TRANSIT_ONLY, entry, exit_

from bordermon.core import DetectionConfig, apply, decode_state, encode_state
from bordermon.core.state import StateDecodeError


def test_two_event_consignment_is_a_few_hundred_bytes(config: DetectionConfig) -> None:
    # Realistic ids: UUIDs and a long consignment number.
    cid = "KZ-CN-2024-000123456789"
    first = apply(
        None,
        entry(
            "3f2b8c1e-2d4a-4c55-9a7e-0c1f5e9b7a11", "2024-03-01T10:00:00+06:00", consignment_id=cid
        ),
        config,
    )
    second = apply(
        first.state,
        exit_(
            "9a1c7d3e-5b6f-4e21-8d0a-7f3e2b1c9d44", "2024-05-01T10:00:00+05:00", consignment_id=cid
        ),
        config,
    )
    assert second.flags == ()  # outside the window: both crossings are kept
    raw = encode_state(second.state)
    assert len(raw) <= 400, raw


def test_round_trip_is_lossless_including_pending_flags(config: DetectionConfig) -> None:
    state = apply(
        None, entry("e1", "2024-03-01T10:00:00Z", declared_destination="KZ"), config
    ).state
    state = apply(state, exit_("x0", "2024-03-02T10:00:00Z", destination="KG"), config).state
    transition = apply(state, exit_("x1", "2024-03-05T10:00:00.5+03:00"), config, lambda: 7)
    assert transition.flags
    decoded = decode_state(encode_state(transition.state))
    assert decoded == transition.state
    assert decoded.pending[0].to_dict() == transition.flags[0].to_dict()


def test_dedup_memory_bounds_a_consignment_scanned_thousands_of_times() -> None:
    config = DetectionConfig(watchlist=CHPL, dedup_memory=256, rules=TRANSIT_ONLY)
    state = apply(None, entry("e0", "2024-03-01T00:00:00Z"), config).state
    state = apply(state, exit_("x0", "2024-03-02T00:00:00Z"), config).state  # flagged
    for n in range(5000):
        state = apply(state, exit_(f"x-{n}", "2024-03-03T00:00:00Z", "KG"), config).state
    assert len(state.seen) == 256
    assert state.accepted == 5002
    assert len(encode_state(state)) < 4096
    # Recent ids are still recognised as duplicates.
    assert apply(state, exit_("x-4999", "2024-03-03T00:00:00Z", "KG"), config).duplicate


def test_candidate_crossings_are_deduplicated_exactly_beyond_the_fingerprint_memory() -> None:
    config = DetectionConfig(watchlist=CHPL, dedup_memory=1, rules=TRANSIT_ONLY)
    state = apply(None, exit_("x-keep", "2024-06-01T00:00:00Z"), config).state
    state = apply(state, exit_("x-other", "2024-06-02T00:00:00Z", "KG"), config).state
    # 'x-keep' aged out of the fingerprints but is kept as a candidate exit.
    assert apply(state, exit_("x-keep", "2024-06-01T00:00:00Z"), config).duplicate


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b'{"v": 99, "c": "x", "n": 0}',
        b'{"v": 1}',
        b'{"v": 1, "c": "x", "n": 1, "e": [["short"]]}',
    ],
)
def test_unreadable_state_raises_a_clear_error(raw: bytes) -> None:
    with pytest.raises(StateDecodeError):
        decode_state(raw)


def test_encoded_state_is_json_with_a_version(config: DetectionConfig) -> None:
    state = apply(None, entry("e1", "2024-03-01T10:00:00Z"), config).state
    doc = orjson.loads(encode_state(state))
    assert doc["v"] == 1 and doc["c"] == "CONS-1"
