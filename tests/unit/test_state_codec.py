"""The stored form of consignment state: compact, bounded, lossless, and old values still read.

Format 2 (binary, `encode_state`) is what bordermon writes; format 1 (JSON) is what it wrote
before and may still find in Redis, so both are read by `decode_state`. The frozen values
below are bytes earlier versions really wrote: they must decode to the state they held.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable

import msgspec
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from msgspec.msgpack import Ext

from bordermon.core import (
    DetectionConfig,
    Flag,
    Severity,
    Sighting,
    apply,
    decode_state,
    encode_state,
)
from bordermon.core.packing import CHECKPOINTS, RULES, pack_time, unpack_time
from bordermon.core.state import (
    STATE_VERSION,
    ConsignmentState,
    StateDecodeError,
    encode_state_json,
    fingerprint,
)
from bordermon.core.timestamps import parse_instant
from support.builders import CHPL, TRANSIT_ONLY, entry, exit_

# --- frozen values of earlier versions --------------------------------------------------------

JSON_WITH_PENDING_FLAG_V1 = (
    b'{"v":1,"c":"KZ-CN-2024-000123","n":3,"h":["847150","854231"],"d":["KG"],'
    b'"s":"HfYrmViWk3xCSYvudQAVL/+Ai3lLCaVX","f":["transit-to-ru"],"p":[{"schema":"flag/1",'
    b'"flag_id":"b8abfc323b9be710d41716e0b1771900","rule":"transit-to-ru",'
    b'"consignment_id":"KZ-CN-2024-000123","severity":"high","reasons":["chpl:1:854231",'
    b'"chpl:3.A:847150","declared-destination:KG"],"entry":["3f2b8c1e-2d4a-4c55-9a7e-0c1f5e9b7a11",'
    b'"KZ-NUR-ZHOLY","CN","KZ","2024-03-01T10:00:00.250+06:00",1709265600250000000],'
    b'"exit":["9A1C7D3E-5B6F-4E21-8D0A-7F3E2B1C9D44","Petropavl rail yard","KZ","RU",'
    b'"2024-03-20t23:59:60+05:00",1710961200000000000],"dwell_seconds":1695599.75,'
    b'"window_seconds":2592000,"hs_codes":["847150","854231"],'
    b'"detected_at":"2024-02-28T06:00:00.123456Z"}]}'
)
"""Written by bordermon at 7f20f5e (flag/1): entry, an exit to KG, an exit to RU that flagged;
the flag pending (not yet acknowledged). A leap second and a lowercase `t` in the exit."""

JSON_WITH_PENDING_FLAGS_V2 = (
    b'{"v":1,"c":"CN-SZX-88231","n":2,"h":["852691","854231"],"d":["AM"],'
    b'"s":"Sd26SKll52gKajp8yghJqQ==","f":["export-without-permit","transit-to-ru"],'
    b'"p":[{"schema":"flag/2","flag_id":"8f24e57cdbaba6ef554eed869d90adb1",'
    b'"rule":"transit-to-ru","consignment_id":"CN-SZX-88231","severity":"high",'
    b'"reasons":["chpl:1:854231","chpl:2:852691","declared-destination:AM"],'
    b'"entry":["7f0c2a4e-8d1b-4c55-9a7e-3b2f1d0c9e81","KZ-KALZHAT","CN","KZ",'
    b'"2024-11-02T08:15:00+05:00",1730517300000000000],"exit":['
    b'"c41d6a2b-1e8f-4a3c-b5d7-9e0f2a4c6b18","KZ-KOSAK","KZ","RU","2024-11-20T17:40:12.5Z",'
    b'1732124412500000000],"link":null,"linked_consignment_id":null,"dwell_seconds":1607112.5,'
    b'"window_seconds":2592000,"hs_codes":["852691","854231"],'
    b'"detected_at":"2024-12-03T04:26:40.654321Z"},{"schema":"flag/2",'
    b'"flag_id":"31376f54052ea8e94e21c3c83627f252","rule":"export-without-permit",'
    b'"consignment_id":"CN-SZX-88231","severity":"high","reasons":["chpl:1:854231",'
    b'"chpl:2:852691","export-control:1:854231","export-control:2:852691",'
    b'"declared-destination:AM"],"entry":null,"exit":["c41d6a2b-1e8f-4a3c-b5d7-9e0f2a4c6b18",'
    b'"KZ-KOSAK","KZ","RU","2024-11-20T17:40:12.5Z",1732124412500000000],"link":null,'
    b'"linked_consignment_id":null,"dwell_seconds":null,"window_seconds":null,'
    b'"hs_codes":["852691","854231"],"detected_at":"2024-12-03T04:26:40.654321Z"}]}'
)
"""Written by bordermon at e6f9f70 (flag/2): flagged under two rules at once, both pending."""

JSON_TWO_EVENTS_KEPT = (
    b'{"v":1,"c":"CSG-0000002-A81A","n":2,"e":[["39235bc0-736a-447a-843f-dda7b1eedaff",'
    b'"KZ-ALMATY-AIR","US","KZ","2024-03-01T00:01:42+00:00",1709251302000000000]],"x":[['
    b'"6a8a43ef-2880-4790-be6c-6fe94c41d9c0","KZ-TASKALA","KZ","RU","2024-04-25T00:35:20+05:00",'
    b'1713987320000000000]],"h":["080810","640399"],"d":["AM"],"s":"sFc2jIjzmQu5Yl0/QXkwZg=="}'
)
"""Written by bordermon at e6f9f70: an entry and an exit beyond the window, both kept."""

BINARY_TWO_EVENTS_KEPT = bytes.fromhex(
    "0296029195c41039235bc0736a447a843fdda7b1eedaff1ba455534b5ace65e11ae6029195c4106a"
    "8a43ef28804790be6c6fe94c41d9c006a44b5a5255ce66295ef82ac407080810f640399fa2414d"
    "92c408b057368c88f3990bc408b9625d3f41793066ed2e82d1"
)
"""The same state in format 2, as this version writes it (pins the format: tables, layout).
Format 2 as first merged (UUIDs as msgpack extensions, the ring as one string, a big-endian
checksum) was redefined before any release, so no value of it can be in storage."""

KEPT_ENTRY = Sighting(
    "39235bc0-736a-447a-843f-dda7b1eedaff",
    "KZ-ALMATY-AIR",
    "US",
    "KZ",
    "2024-03-01T00:01:42+00:00",
    1709251302000000000,
)
KEPT_EXIT = Sighting(
    "6a8a43ef-2880-4790-be6c-6fe94c41d9c0",
    "KZ-TASKALA",
    "KZ",
    "RU",
    "2024-04-25T00:35:20+05:00",
    1713987320000000000,
)
TWO_EVENTS_KEPT = ConsignmentState(
    "CSG-0000002-A81A",
    accepted=2,
    entries=[KEPT_ENTRY],
    exits=[KEPT_EXIT],
    hs_codes={"080810", "640399"},
    declared={"AM"},
    seen=[fingerprint(KEPT_ENTRY.event_id), fingerprint(KEPT_EXIT.event_id)],
)


def test_a_json_state_with_a_pending_flag_v1_decodes_to_the_state_it_held() -> None:
    cid = "KZ-CN-2024-000123"
    entry_ = Sighting(
        "3f2b8c1e-2d4a-4c55-9a7e-0c1f5e9b7a11",
        "KZ-NUR-ZHOLY",
        "CN",
        "KZ",
        "2024-03-01T10:00:00.250+06:00",
        1709265600250000000,
    )
    exit_ru = Sighting(
        "9A1C7D3E-5B6F-4E21-8D0A-7F3E2B1C9D44",
        "Petropavl rail yard",
        "KZ",
        "RU",
        "2024-03-20t23:59:60+05:00",
        1710961200000000000,
    )
    flag = Flag(
        flag_id="b8abfc323b9be710d41716e0b1771900",
        rule="transit-to-ru",
        consignment_id=cid,
        severity=Severity.HIGH,
        reasons=("chpl:1:854231", "chpl:3.A:847150", "declared-destination:KG"),
        entry=entry_,
        exit=exit_ru,
        link=None,
        linked_consignment_id=None,
        dwell_seconds=1695599.75,
        window_seconds=2592000,
        hs_codes=("847150", "854231"),
        detected_at="2024-02-28T06:00:00.123456Z",
    )
    expected = ConsignmentState(
        cid,
        accepted=3,
        hs_codes={"847150", "854231"},
        declared={"KG"},
        seen=[fingerprint(i) for i in (entry_.event_id, "x-kg-1", exit_ru.event_id)],
        flagged={"transit-to-ru"},
        pending=[flag],
    )
    decoded = decode_state(JSON_WITH_PENDING_FLAG_V1, cid)
    assert decoded == expected
    assert decoded.pending[0].to_dict()["schema"] == "flag/2"  # re-sent as this version's flag
    _assert_survives_format_2(decoded)


def test_a_json_state_with_pending_flags_v2_decodes_to_the_state_it_held() -> None:
    cid = "CN-SZX-88231"
    entry_ = Sighting(
        "7f0c2a4e-8d1b-4c55-9a7e-3b2f1d0c9e81",
        "KZ-KALZHAT",
        "CN",
        "KZ",
        "2024-11-02T08:15:00+05:00",
        1730517300000000000,
    )
    exit_ru = Sighting(
        "c41d6a2b-1e8f-4a3c-b5d7-9e0f2a4c6b18",
        "KZ-KOSAK",
        "KZ",
        "RU",
        "2024-11-20T17:40:12.5Z",
        1732124412500000000,
    )
    common = {"consignment_id": cid, "severity": Severity.HIGH, "exit": exit_ru, "link": None}
    transit = Flag(
        flag_id="8f24e57cdbaba6ef554eed869d90adb1",
        rule="transit-to-ru",
        reasons=("chpl:1:854231", "chpl:2:852691", "declared-destination:AM"),
        entry=entry_,
        linked_consignment_id=None,
        dwell_seconds=1607112.5,
        window_seconds=2592000,
        hs_codes=("852691", "854231"),
        detected_at="2024-12-03T04:26:40.654321Z",
        **common,
    )
    without_permit = Flag(
        flag_id="31376f54052ea8e94e21c3c83627f252",
        rule="export-without-permit",
        reasons=(
            "chpl:1:854231",
            "chpl:2:852691",
            "export-control:1:854231",
            "export-control:2:852691",
            "declared-destination:AM",
        ),
        entry=None,
        linked_consignment_id=None,
        dwell_seconds=None,
        window_seconds=None,
        hs_codes=("852691", "854231"),
        detected_at="2024-12-03T04:26:40.654321Z",
        **common,
    )
    expected = ConsignmentState(
        cid,
        accepted=2,
        hs_codes={"852691", "854231"},
        declared={"AM"},
        seen=[fingerprint(entry_.event_id), fingerprint(exit_ru.event_id)],
        flagged={"transit-to-ru", "export-without-permit"},
        pending=[transit, without_permit],
    )
    decoded = decode_state(JSON_WITH_PENDING_FLAGS_V2, cid)
    assert decoded == expected
    _assert_survives_format_2(decoded)


def test_a_json_state_with_two_kept_crossings_decodes_to_the_state_it_held() -> None:
    decoded = decode_state(JSON_TWO_EVENTS_KEPT, "CSG-0000002-A81A")
    assert decoded == TWO_EVENTS_KEPT
    _assert_survives_format_2(decoded)


def test_format_2_is_pinned_by_a_frozen_value() -> None:
    """Changing the layout or a table breaks values already stored: that needs a new version."""
    assert decode_state(BINARY_TWO_EVENTS_KEPT, "CSG-0000002-A81A") == TWO_EVENTS_KEPT
    assert encode_state(TWO_EVENTS_KEPT) == BINARY_TWO_EVENTS_KEPT


def test_the_tables_of_format_2_are_only_ever_appended_to() -> None:
    # A stored index must keep naming the same checkpoint or rule.
    frozen = "\n".join(CHECKPOINTS[:28]) + "\n\n" + "\n".join(RULES[:3])
    assert hashlib.sha256(frozen.encode()).hexdigest()[:16] == "ae147afaae160d77"


def _assert_survives_format_2(state: ConsignmentState) -> None:
    again = encode_state(state)
    assert again[0] == STATE_VERSION
    assert decode_state(again, state.consignment_id) == state
    assert len(again) < len(encode_state_json(state)) * 0.6


# --- size and bounds ---------------------------------------------------------------------------


def test_two_event_consignment_fits_one_small_allocation(config: DetectionConfig) -> None:
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
    # With the revision header (`R1\n`) and Redis's 4 bytes of string header and terminator,
    # at most 128 bytes: one jemalloc size class below the 160 that makes 300 B per key.
    assert len(raw) <= 121, raw
    assert len(encode_state_json(second.state)) > 2.5 * len(raw)


def test_round_trip_is_lossless_including_pending_flags(config: DetectionConfig) -> None:
    state = apply(
        None, entry("e1", "2024-03-01T10:00:00Z", declared_destination="KZ"), config
    ).state
    state = apply(state, exit_("x0", "2024-03-02T10:00:00Z", destination="KG"), config).state
    transition = apply(state, exit_("x1", "2024-03-05T10:00:00.5+03:00"), config, lambda: 7)
    assert transition.flags
    decoded = decode_state(encode_state(transition.state), "CONS-1")
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
    assert len(encode_state(state)) < 256 * 8 + 200  # the ring, and the pending flag
    # Recent ids are still recognised as duplicates.
    assert apply(state, exit_("x-4999", "2024-03-03T00:00:00Z", "KG"), config).duplicate


def test_candidate_crossings_are_deduplicated_exactly_beyond_the_fingerprint_memory() -> None:
    config = DetectionConfig(watchlist=CHPL, dedup_memory=1, rules=TRANSIT_ONLY)
    state = apply(None, exit_("x-keep", "2024-06-01T00:00:00Z"), config).state
    state = apply(state, exit_("x-other", "2024-06-02T00:00:00Z", "KG"), config).state
    # 'x-keep' aged out of the fingerprints but is kept as a candidate exit.
    assert apply(state, exit_("x-keep", "2024-06-01T00:00:00Z"), config).duplicate
    decoded = decode_state(encode_state(state), "CONS-1")
    assert (
        decoded == state
        and apply(decoded, exit_("x-keep", "2024-06-01T00:00:00Z"), config).duplicate
    )


# --- reading a state: kept crossings unpacked when used, the rest saved back as read ----------


def test_kept_crossings_are_unpacked_when_first_used_and_saved_back_as_read() -> None:
    state = decode_state(BINARY_TWO_EVENTS_KEPT, "CSG-0000002-A81A")
    # Not used: written back as read, byte for byte.
    assert encode_state(state) == BINARY_TWO_EVENTS_KEPT
    # Used: exactly the crossings stored, and still written back the same.
    assert state.entries == [KEPT_ENTRY]
    assert state.exits == [KEPT_EXIT]
    assert encode_state(state) == BINARY_TWO_EVENTS_KEPT


@pytest.mark.parametrize(
    "change",
    [
        lambda s: s.entries.append(KEPT_EXIT),  # one kept since
        lambda s: s.exits.clear(),  # dropped (a flag)
        lambda s: s.entries.__setitem__(0, KEPT_EXIT),  # replaced, same length
        lambda s: setattr(s, "exits", [KEPT_ENTRY]),  # replaced, unused
        lambda s: s.hs_codes.add("850440"),  # a code more
        lambda s: (s.hs_codes.discard("080810"), s.hs_codes.add("080811")),  # same count
        lambda s: setattr(s, "hs_codes", {"640399"}),
    ],
)
def test_a_state_changed_after_it_was_read_is_saved_as_changed(
    change: Callable[[ConsignmentState], object],
) -> None:
    state = decode_state(BINARY_TWO_EVENTS_KEPT, "CSG-0000002-A81A")
    expected = decode_state(BINARY_TWO_EVENTS_KEPT, "CSG-0000002-A81A")
    change(state)
    change(expected)
    again = decode_state(encode_state(state), "CSG-0000002-A81A")
    assert again == expected
    assert again != TWO_EVENTS_KEPT


def test_an_event_that_is_no_candidate_leaves_the_kept_crossings_packed() -> None:
    """The point of unpacking late: most events of a consignment with kept crossings (here an
    exit elsewhere than to Russia) look neither at them nor, while the ring has forgotten
    nothing, at their ids."""
    config = DetectionConfig(watchlist=CHPL, rules=TRANSIT_ONLY)
    state = decode_state(BINARY_TWO_EVENTS_KEPT, "CSG-0000002-A81A")
    transition = apply(state, exit_("x-kg", "2024-05-01T00:00:00Z", "KG"), config)
    assert not transition.duplicate and transition.flags == ()
    assert state._entries is None and state._exits is None  # still packed
    saved = decode_state(encode_state(state), "CSG-0000002-A81A")
    assert (saved.entries, saved.exits, saved.accepted) == ([KEPT_ENTRY], [KEPT_EXIT], 3)
    # A duplicate of a kept crossing is still one (its fingerprint is in the ring).
    assert apply(state, exit_(KEPT_EXIT.event_id, KEPT_EXIT.observed_at), config).duplicate


def test_a_state_read_compares_and_prints_as_its_fields() -> None:
    state = decode_state(BINARY_TWO_EVENTS_KEPT, "CSG-0000002-A81A")
    assert (state, TWO_EVENTS_KEPT) == (TWO_EVENTS_KEPT, state)  # either way round
    assert state != ConsignmentState("CSG-0000002-A81A")
    assert repr(state) == repr(TWO_EVENTS_KEPT)
    assert repr(state).startswith(
        "ConsignmentState(consignment_id='CSG-0000002-A81A', accepted=2, entries=[Sighting("
    )


@pytest.mark.parametrize(
    ("observed_at", "packed_size"),
    [
        ("2024-03-01T10:00:00Z", 6),  # whole seconds (5 bytes) and a detail of one
        ("2024-03-01T10:00:00+05:00", 6),
        ("2024-03-01T10:00:00-00:00", 6),
        ("2024-03-01t10:00:00z", 7),
        ("2024-03-01T10:00:00.250+06:00", 10),
        ("2024-03-01T10:00:00.512323+05:00", 10),
        ("2024-03-01T10:00:00.123456789-03:30", 14),
        ("1969-12-31T23:59:59.5Z", 4),
        ("0999-03-01T10:00:00Z", 10),  # (seconds beyond 32 bits)
        ("9999-12-31T23:59:59-23:45", 11),
    ],
)
def test_times_as_scanners_write_them_are_two_integers(observed_at: str, packed_size: int) -> None:
    instant_ns = parse_instant(observed_at)
    seconds, detail = pack_time(observed_at, instant_ns)
    assert isinstance(detail, int)
    assert len(msgspec.msgpack.encode((seconds, detail))) - 1 == packed_size
    assert unpack_time(seconds, detail) == (observed_at, instant_ns)


@pytest.mark.parametrize(
    ("observed_at", "instant_ns"),
    [
        ("2024-03-20T23:59:60+05:00", parse_instant("2024-03-20T23:59:60+05:00")),  # leap second
        ("2024-03-01T10:00:00.1234567891Z", parse_instant("2024-03-01T10:00:00.1234567891Z")),
        ("2024-03-01T10:00:00+05:30", 0),  # an instant that is not the text's
        ("2024-03-01T10:00:00.²Z", 0),  # a digit, but not one `int` reads
        ("2024-03-01T10:00:00.٣Z", 0),  # a digit `int` reads, but not ASCII
        ("2024-03-01T10:00:00+05:07", parse_instant("2024-03-01T10:00:00+05:07")),
        ("2024-03-01 10:00:00Z", parse_instant("2024-03-01T10:00:00Z")),  # not `T` or `t`
        ("2024-03-01T10:00:00.Z", parse_instant("2024-03-01T10:00:00Z")),  # no digits
        ("", 0),
    ],
)
def test_other_times_are_kept_as_text(observed_at: str, instant_ns: int) -> None:
    assert pack_time(observed_at, instant_ns) == (instant_ns, observed_at)


# --- what is refused -------------------------------------------------------------------------


def _sealed(body: bytes, consignment_id: str = "x", version: int = STATE_VERSION) -> bytes:
    """A format-2 value around `body` with a correct checksum: only the body is wrong."""
    head = bytes([version]) + body
    return head + zlib.crc32(head, zlib.crc32(consignment_id.encode())).to_bytes(4, "little")


def _msgpack(*fields: object) -> bytes:
    return msgspec.msgpack.encode(list(fields))


UUID = bytes(16)


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b"", "empty"),
        (b"not json", "format 110"),
        (bytes([3]) + b"anything", "newer bordermon"),
        (bytes([0xFF]), "newer bordermon"),
        (b'{"v": 99, "c": "x", "n": 0}', "JSON state version 99"),
        (b'{"v": 2, "c": "x", "n": 0}', "JSON state version 2"),
        (b'{"v": 1}', "unreadable"),
        (b'{"v": 1, "c": "x", "n": 1, "e": [["short"]]}', "unreadable"),
        (b'{"v": 1, "c": "someone else", "n": 1}', "belongs to consignment 'someone else'"),
        (b"\x02\x91\x00", "checksum"),
        (_sealed(_msgpack(1), "someone else"), "checksum"),
        (_sealed(b""), "checksum"),
        (_sealed(b"\xc1"), "unreadable"),
        (_sealed(_msgpack("one")), "unreadable"),
        # Kept crossings are unpacked when first used: the decoder refuses, when the state
        # is read, every one that could not be (`PackedSighting`).
        (_sealed(_msgpack(1, [[Ext(0, UUID), 0, "CNKZ", 0, 0]])), "got `ext`"),
        (_sealed(_msgpack(1, [[bytes(15), 0, "CNKZ", 0, 0]])), "`bytes` of length >= 16"),
        (_sealed(_msgpack(1, [[["a", "b"], 0, "CNKZ", 0, 0]])), "length <= 1"),
        (_sealed(_msgpack(1, [[UUID, 28, "CNKZ", 0, 0]])), "`int` <= 27"),
        (_sealed(_msgpack(1, [[UUID, -1, "CNKZ", 0, 0]])), "`int` >= 0"),
        (_sealed(_msgpack(1, [[UUID, 0, "CNK", 0, 0]])), "`str` of length >= 4"),
        (_sealed(_msgpack(1, [[UUID, 0, ["CN"], 0, 0]])), "length >= 2"),
        (_sealed(_msgpack(1, [[UUID, 0, "CNKZ", 0, -3]])), "`int` >= 0"),
        (_sealed(_msgpack(1, [[UUID, 0, "CNKZ", 0, [0, "T"]]])), "Expected `int | str`"),
        (_sealed(_msgpack(1, [[UUID, 0, "CNKZ", 1.5, 0]])), "Expected `int`"),
        (_sealed(_msgpack(1, [], [], b"\xab")), "digits"),
        (_sealed(_msgpack(1, [], [], [], "ABC")), "two-character"),
        (_sealed(_msgpack(1, [], [], [], "", b"1234567")), "not whole"),
        (_sealed(_msgpack(1, [], [], [], "", [b"1234567"])), "`bytes` of length >= 8"),
        (_sealed(_msgpack(1, [], [], [], "", [], [3])), "`int` <= 2"),
        (_sealed(_msgpack(1, [], [], [], "", [], [], [["not a flag"]])), "unreadable"),
        (_sealed(_msgpack(1, [], [], [], "", [], [], [], "one too many")), "unreadable"),
    ],
)
def test_unreadable_state_raises_a_clear_error(raw: bytes, says: str) -> None:
    with pytest.raises(StateDecodeError, match=says):
        decode_state(raw, "x")


def test_a_pending_flag_of_unknown_severity_is_refused_in_either_format() -> None:
    cid = "CN-SZX-88231"
    as_json = JSON_WITH_PENDING_FLAGS_V2.replace(b'"high"', b'"critical"', 1)
    with pytest.raises(StateDecodeError, match="unknown severity 'critical'"):
        decode_state(as_json, cid)
    packed = encode_state(decode_state(JSON_WITH_PENDING_FLAGS_V2, cid))
    body = packed[1:-4]
    high, huge = msgspec.msgpack.encode("high"), msgspec.msgpack.encode("huge")
    assert body.count(high) == 2  # the two pending flags
    with pytest.raises(StateDecodeError, match="'huge'"):
        decode_state(_sealed(body.replace(high, huge, 1), cid), cid)


def test_a_state_stored_under_another_consignment_is_refused() -> None:
    for raw in (encode_state(TWO_EVENTS_KEPT), JSON_TWO_EVENTS_KEPT):
        with pytest.raises(StateDecodeError, match=r"another consignment|belongs to"):
            decode_state(raw, "CSG-0000002-A81B")


def test_the_version_byte_cannot_be_mistaken_for_json_or_a_revision_header() -> None:
    assert encode_state(TWO_EVENTS_KEPT)[:1] not in (b"{", b"R", b" ")


# --- properties: any state round-trips; damage is always a StateDecodeError ------------------

_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=24)
_INT64 = st.integers(-(2**63), 2**63 - 1)


@st.composite
def _times(draw: st.DrawFn) -> tuple[str, int]:
    """`observed_at` with its instant: as validated crossings have them, or anything at all."""
    if draw(st.booleans()):
        return draw(_TEXT), draw(_INT64)
    # Instants are int64 nanoseconds (years 1678 to 2262), in format 1 as in format 2.
    year = draw(st.sampled_from([1678, 1969, 1970, 2000, 2024, 2099, 2261]))
    month, day = draw(st.integers(1, 12)), draw(st.integers(1, 28))
    hour, minute = draw(st.integers(0, 23)), draw(st.integers(0, 59))
    second = draw(st.integers(0, 60))  # 60: a leap second
    fraction = draw(st.sampled_from(["", ".5", ".250", ".123456789", ".1234567891", ".000"]))
    zone = draw(st.sampled_from(["Z", "z", "+00:00", "-00:00", "+05:00", "+05:45", "-03:30"]))
    separator = draw(st.sampled_from("Tt"))
    text = (
        f"{year:04d}-{month:02d}-{day:02d}{separator}{hour:02d}:{minute:02d}:{second:02d}"
        f"{fraction}{zone}"
    )
    return text, parse_instant(text)


@st.composite
def _sightings(draw: st.DrawFn) -> Sighting:
    observed_at, instant_ns = draw(_times())
    countries = st.one_of(st.sampled_from(["CN", "KZ", "RU", "KG"]), _TEXT)
    return Sighting(
        draw(st.one_of(st.uuids().map(str), st.uuids().map(lambda u: str(u).upper()), _TEXT)),
        draw(st.one_of(st.sampled_from(CHECKPOINTS), _TEXT)),
        draw(countries),
        draw(countries),
        observed_at,
        instant_ns,
    )


_NUMBERS = st.one_of(st.none(), _INT64, st.floats(allow_nan=False, allow_infinity=False))


@st.composite
def _flags(draw: st.DrawFn) -> Flag:
    return Flag(
        flag_id=draw(_TEXT),
        rule=draw(st.one_of(st.sampled_from(RULES), _TEXT)),
        consignment_id=draw(_TEXT),
        severity=draw(st.sampled_from(Severity)),
        reasons=tuple(draw(st.lists(_TEXT, max_size=3))),
        entry=draw(st.one_of(st.none(), _sightings())),
        exit=draw(_sightings()),
        link=draw(st.one_of(st.none(), _TEXT)),
        linked_consignment_id=draw(st.one_of(st.none(), _TEXT)),
        dwell_seconds=draw(_NUMBERS),
        window_seconds=draw(_NUMBERS),
        hs_codes=tuple(draw(st.lists(_TEXT, max_size=3))),
        detected_at=draw(_TEXT),
    )


@st.composite
def states(draw: st.DrawFn) -> ConsignmentState:
    entries = draw(st.lists(_sightings(), max_size=3))
    exits = draw(st.lists(_sightings(), max_size=3))
    # The ring: the kept crossings' fingerprints (maybe twice, maybe not at all) among others.
    kept_prints = [fingerprint(s.event_id) for s in entries + exits]
    some_print = st.binary(min_size=8, max_size=8)
    if kept_prints:
        some_print = st.one_of(some_print, st.sampled_from(kept_prints))
    prints = draw(st.lists(some_print, max_size=12))
    digits = st.text("0123456789", min_size=6, max_size=10)
    return ConsignmentState(
        consignment_id=draw(_TEXT),
        accepted=draw(st.integers(0, 2**63 - 1)),
        entries=entries,
        exits=exits,
        hs_codes=draw(st.sets(st.one_of(digits, _TEXT), max_size=4)),
        declared=draw(st.sets(st.one_of(st.sampled_from(["AM", "KZ", "RU"]), _TEXT), max_size=3)),
        seen=prints,
        flagged=draw(st.sets(st.one_of(st.sampled_from(RULES), _TEXT), max_size=3)),
        pending=draw(st.lists(_flags(), max_size=2)),
    )


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(states())
def test_any_state_round_trips_exactly(state: ConsignmentState) -> None:
    raw = encode_state(state)
    assert decode_state(raw, state.consignment_id) == state
    # and the reader of format 1 reads everything format 1 could write
    assert decode_state(encode_state_json(state), state.consignment_id) == state


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(states(), st.data())
def test_a_truncated_or_damaged_value_raises_state_decode_error(
    state: ConsignmentState, data: st.DataObject
) -> None:
    raw = encode_state(state)
    cut = data.draw(st.integers(0, len(raw) - 1), label="cut at")
    with pytest.raises(StateDecodeError):
        decode_state(raw[:cut], state.consignment_id)
    at = data.draw(st.integers(0, len(raw) - 1), label="damaged byte")
    flip = data.draw(st.integers(1, 255), label="xor")
    damaged = raw[:at] + bytes([raw[at] ^ flip]) + raw[at + 1 :]
    with pytest.raises(StateDecodeError):
        decode_state(damaged, state.consignment_id)
    json_cut = data.draw(st.integers(0, len(encode_state_json(state)) - 1), label="JSON cut")
    with pytest.raises(StateDecodeError):
        decode_state(encode_state_json(state)[:json_cut], state.consignment_id)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), _TEXT)
def test_arbitrary_bytes_raise_nothing_but_state_decode_error(raw: bytes, cid: str) -> None:
    assume(raw[:1] != b"{" or b'"v":1' not in raw)
    with pytest.raises(StateDecodeError):
        decode_state(raw, cid)


# Packed crossings as the decoder may meet them: of the right shape, each part of any of its
# forms, with now and then one part just outside its range or of another type.
_PACKED_PARTS = (
    st.one_of(st.binary(min_size=16, max_size=16), st.lists(_TEXT, min_size=1, max_size=1)),
    st.one_of(st.integers(0, len(CHECKPOINTS) - 1), _TEXT),
    st.one_of(st.text(min_size=4, max_size=4), st.lists(_TEXT, min_size=2, max_size=2)),
    _INT64,
    st.one_of(st.integers(0, 193), st.integers(0, 2**64 - 1), _TEXT),
)
_OFF_PARTS = (  # (just outside: the first values that do not fit)
    st.one_of(st.sampled_from([bytes(15), bytes(17)]), st.sampled_from([[], ["a", "b"]])),
    st.sampled_from([-1, len(CHECKPOINTS), len(CHECKPOINTS) + 1]),
    st.sampled_from(["CNK", "CNKZR", ["CN"], ["CN", "KZ", "RU"]]),
    st.one_of(st.just(2**64 - 1), st.floats()),
    st.one_of(st.just(-1), st.floats(), st.tuples(st.integers(0, 193))),
)


@st.composite
def _packed_crossings(draw: st.DrawFn) -> list[object]:
    crossing = [draw(part) for part in _PACKED_PARTS]
    off = draw(st.none() | st.integers(0, len(_OFF_PARTS) - 1))
    if off is not None:
        crossing[off] = draw(_OFF_PARTS[off])
    return crossing


@settings(max_examples=500, deadline=None)
@given(st.lists(_packed_crossings(), max_size=2), st.lists(_packed_crossings(), max_size=2))
def test_kept_crossings_the_decoder_lets_through_always_unpack(
    entries: list[list[object]], exits: list[list[object]]
) -> None:
    """They are unpacked when first used, by then no error can be a StateDecodeError: the
    decoder must refuse, when the state is read, every one that would fail."""
    try:
        state = decode_state(_sealed(_msgpack(1, entries, exits)), "x")
    except StateDecodeError:
        return
    assert len(state.entries) == len(entries) and len(state.exits) == len(exits)
    assert decode_state(encode_state(state), "x") == state
