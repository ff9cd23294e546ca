"""Edges of SPEC §4.2 `relabel-to-ru` and §4.3 `export-without-permit`, and flag/2 (§5)."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
import pytest

from bordermon.core import DetectionConfig, Flag, Severity
from bordermon.core.config import DAY_NS
from bordermon.core.flag import flag_id_for
from bordermon.core.link import ENTRY_MEMORY, LinkState, apply_link
from bordermon.core.rules import ALL_RULES, CONSIGNMENT_RULES, RULE_NAMES, SIGHTING_SOURCES
from bordermon.core.sighting import LinkSighting, Sighting
from support.builders import CHPL, entry, exit_, run_both_stages

RELABEL = DetectionConfig(watchlist=CHPL, rules=frozenset({"relabel-to-ru"}))
EXPORT = DetectionConfig(watchlist=CHPL, rules=frozenset({"export-without-permit"}))
BOX = {"container_id": "MSCU 123456-7"}


def flags_of(events: list[Any], config: DetectionConfig) -> list[Flag]:
    return [flag for _, flag in run_both_stages(events, config)]


def goods(*codes: str) -> list[dict[str, str]]:
    return [{"hs_code": code} for code in codes]


def a_in(at: str, **fields: Any) -> Any:
    fields.setdefault("transport", BOX)
    fields.setdefault("consignment_id", "A")
    return entry(fields.pop("event_id", "a1"), at, **fields)


def b_out(at: str, **fields: Any) -> Any:
    fields.setdefault("transport", BOX)
    fields.setdefault("consignment_id", "B")
    return exit_(fields.pop("event_id", "b1"), at, **fields)


# --- the registry ---------------------------------------------------------------------------


def test_the_registry_names_the_three_rules() -> None:
    assert ALL_RULES == ("transit-to-ru", "relabel-to-ru", "export-without-permit")
    assert frozenset(ALL_RULES) == RULE_NAMES
    assert set(CONSIGNMENT_RULES) == {"transit-to-ru", "export-without-permit"}
    assert set(SIGHTING_SOURCES) == {"relabel-to-ru"}
    assert DetectionConfig(watchlist=CHPL).rules == RULE_NAMES


def test_an_unknown_rule_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="transit-to-ru, relabel-to-ru, export-without-permit"):
        DetectionConfig(watchlist=CHPL, rules=frozenset({"relabel"}))


# --- relabel-to-ru ---------------------------------------------------------------------------


def test_relabel_flag_reports_both_consignments_and_the_link() -> None:
    [flag] = flags_of(
        [a_in("2024-03-01T00:00:00Z"), b_out("2024-04-01T00:00:00Z", declared_destination="KZ")],
        RELABEL,
    )
    assert flag.rule == "relabel-to-ru"
    assert (flag.consignment_id, flag.linked_consignment_id) == ("B", "A")
    assert flag.link == "container:MSCU1234567"
    assert flag.flag_id == flag_id_for("relabel-to-ru", "B", "container:MSCU1234567")
    expected_id = hashlib.sha256(b"relabel-to-ru\nB\ncontainer:MSCU1234567").hexdigest()[:32]
    assert flag.flag_id == expected_id
    assert flag.dwell_seconds == 31 * 86400
    assert flag.window_seconds == 90 * 86400
    assert flag.severity is Severity.HIGH
    assert flag.reasons == ("chpl:1:854231", "declared-destination:KZ")
    wire = flag.to_dict()
    assert wire["schema"] == "flag/2"
    assert wire["entry"]["consignment_id"] == "A" and wire["exit"]["consignment_id"] == "B"
    assert wire["severity"] == "high"
    assert list(wire) == [
        "schema",
        "flag_id",
        "rule",
        "consignment_id",
        "severity",
        "reasons",
        "entry",
        "exit",
        "link",
        "linked_consignment_id",
        "dwell_seconds",
        "window_seconds",
        "hs_codes",
        "detected_at",
    ]


@pytest.mark.parametrize(
    ("exit_at", "flagged"),
    [
        ("2024-03-01T00:00:00Z", True),  # dwell 0
        ("2024-05-30T00:00:00Z", True),  # exactly 90 days (2024 is a leap year)
        ("2024-05-30T00:00:00.000000001Z", False),  # 90 days + 1 ns
        ("2024-02-29T23:59:59.999999999Z", False),  # exit 1 ns before the entry
        ("2024-05-30T05:00:00+05:00", True),  # the same instant as 90 days, in +05:00
    ],
)
def test_relabel_window_is_inclusive_at_both_ends(exit_at: str, flagged: bool) -> None:
    events = [a_in("2024-03-01T00:00:00Z"), b_out(exit_at)]
    assert bool(flags_of(events, RELABEL)) is flagged
    assert bool(flags_of(events[::-1], RELABEL)) is flagged  # whichever arrives last


def test_relabel_window_is_configuration() -> None:
    config = DetectionConfig(watchlist=CHPL, rules=RELABEL.rules, relabel_window_ns=DAY_NS)
    assert flags_of([a_in("2024-03-01T00:00:00Z"), b_out("2024-03-02T00:00:00Z")], config)
    assert not flags_of([a_in("2024-03-01T00:00:00Z"), b_out("2024-03-03T00:00:00Z")], config)


def test_the_same_consignment_is_not_relabelling() -> None:
    events = [a_in("2024-03-01T00:00:00Z"), b_out("2024-03-02T00:00:00Z", consignment_id="A")]
    assert flags_of(events, RELABEL) == []


def test_no_shared_hs6_no_flag() -> None:
    events = [
        a_in("2024-03-01T00:00:00Z", goods=goods("854231")),
        b_out("2024-03-02T00:00:00Z", goods=goods("8542390000")),
    ]
    assert flags_of(events, RELABEL) == []


def test_hs6_is_shared_across_code_lengths_and_severity_counts_shared_lines_only() -> None:
    events = [
        a_in("2024-03-01T00:00:00Z", goods=goods("8542310000", "940360")),
        b_out("2024-03-02T00:00:00Z", goods=goods("854231", "847150")),  # 847150: tier 3.A
    ]
    [flag] = flags_of(events, RELABEL)
    assert flag.hs_codes == ("854231", "8542310000")
    assert flag.severity is Severity.HIGH and flag.reasons == ("chpl:1:854231",)


def test_two_link_keys_give_two_flags() -> None:
    both = {"container_id": "MSCU1234567", "seal_id": "S-1"}
    flags = flags_of(
        [
            a_in("2024-03-01T00:00:00Z", transport=both),
            b_out("2024-03-02T00:00:00Z", transport=both),
        ],
        RELABEL,
    )
    assert [f.link for f in flags] == ["container:MSCU1234567", "seal:S-1"]
    assert len({f.flag_id for f in flags}) == 2


def test_batch_ids_link_consignments() -> None:
    events = [
        a_in(
            "2024-03-01T00:00:00Z", transport=None, goods=[{"hs_code": "854231", "batch_id": "R1"}]
        ),
        b_out(
            "2024-03-02T00:00:00Z", transport=None, goods=[{"hs_code": "854231", "batch_id": " R1"}]
        ),
    ]
    assert [f.link for f in flags_of(events, RELABEL)] == ["batch:R1"]


def test_a_vehicle_is_not_a_link() -> None:
    truck = {"vehicle_id": "777ABC02"}
    events = [
        a_in("2024-03-01T00:00:00Z", transport=truck),
        b_out("2024-03-02T00:00:00Z", transport=truck),
    ]
    assert flags_of(events, RELABEL) == []


def test_russian_goods_entering_do_not_qualify() -> None:
    events = [a_in("2024-03-01T00:00:00Z", origin="RU"), b_out("2024-03-02T00:00:00Z")]
    assert flags_of(events, RELABEL) == []


def test_exits_elsewhere_do_not_qualify() -> None:
    events = [a_in("2024-03-01T00:00:00Z"), b_out("2024-03-02T00:00:00Z", destination="KG")]
    assert flags_of(events, RELABEL) == []


def test_one_flag_per_exit_consignment_and_key_reporting_earliest_exit_latest_entry() -> None:
    events = [
        a_in("2024-03-01T00:00:00Z", event_id="a1"),
        a_in("2024-03-05T00:00:00Z", event_id="a3", consignment_id="A2"),
        b_out("2024-03-20T00:00:00Z", event_id="b2"),  # flags here, with a3 (the latest)
        b_out("2024-03-10T00:00:00Z", event_id="b1"),  # B already flagged on this key
        a_in("2024-03-09T00:00:00Z", event_id="a4", consignment_id="A4"),
    ]
    [flag] = flags_of(events, RELABEL)
    assert flag.entry is not None
    assert (flag.entry.event_id, flag.exit.event_id, flag.linked_consignment_id) == (
        "a3",
        "b2",
        "A2",
    )


def test_equal_instants_go_to_the_smallest_event_id() -> None:
    events = [
        a_in("2024-03-01T00:00:00Z", event_id="a-2", consignment_id="A2"),
        a_in("2024-03-01T05:00:00+05:00", event_id="a-1", consignment_id="A1"),
        b_out("2024-03-02T00:00:00Z"),
    ]
    for order in (events, [events[1], events[0], events[2]]):
        [flag] = flags_of(order, RELABEL)
        assert flag.entry is not None and flag.entry.event_id == "a-1"


def test_an_arriving_entry_flags_several_exit_consignments_at_once() -> None:
    events = [
        b_out("2024-03-03T00:00:00Z", consignment_id="B2", event_id="b2"),
        b_out("2024-03-02T00:00:00Z", consignment_id="B1", event_id="b1a"),
        b_out("2024-03-04T00:00:00Z", consignment_id="B1", event_id="b1b"),
        a_in("2024-03-01T00:00:00Z"),
    ]
    flags = flags_of(events, RELABEL)
    assert [(f.consignment_id, f.exit.event_id) for f in flags] == [("B1", "b1a"), ("B2", "b2")]


def test_duplicate_sightings_change_nothing() -> None:
    events = [
        a_in("2024-03-01T00:00:00Z"),
        a_in("2024-03-01T00:00:00Z"),
        b_out("2024-03-02T00:00:00Z"),
    ]
    assert len(flags_of(events + events, RELABEL)) == 1


def test_a_link_key_remembers_at_least_its_64_most_recent_entries() -> None:
    state: LinkState | None = None
    for n in range(ENTRY_MEMORY + 36):
        sighting = LinkSighting(
            "container:X",
            f"A{n}",
            "entry",
            Sighting(f"e{n}", "KZ-K", "CN", "KZ", f"2024-03-01T00:{n // 60:02d}:{n % 60:02d}Z", 0),
            ("854231",),
            None,
        )
        sighting = sighting._replace(
            sighting=sighting.sighting._replace(instant_ns=1_709_251_200_000_000_000 + n * 10**9)
        )
        state = apply_link(state, sighting, RELABEL).state
    assert state is not None and len(state.entries) == ENTRY_MEMORY
    assert min(e.consignment_id for e in state.entries) == "A36"  # the oldest were forgotten


# --- export-without-permit --------------------------------------------------------------------


def test_controlled_goods_leaving_without_a_permit_flag_without_an_entry() -> None:
    [flag] = flags_of(
        [
            exit_(
                "x1",
                "2024-03-01T00:00:00Z",
                goods=goods("8526.91", "940360"),
                declared_destination="KG",
            )
        ],
        EXPORT,
    )
    assert flag.rule == "export-without-permit"
    assert flag.flag_id == hashlib.sha256(b"export-without-permit\nCONS-1").hexdigest()[:32]
    assert flag.entry is None and flag.dwell_seconds is None and flag.window_seconds is None
    assert flag.link is None and flag.linked_consignment_id is None
    assert flag.severity is Severity.HIGH
    assert flag.reasons == ("chpl:2:852691", "export-control:2:852691", "declared-destination:KG")
    assert flag.hs_codes == ("852691", "940360")
    wire = flag.to_dict()
    assert wire["entry"] is None and wire["exit"]["consignment_id"] == "CONS-1"


def test_a_permit_means_no_flag() -> None:
    assert flags_of([exit_("x1", "2024-03-01T00:00:00Z", permit_id="KZ-LIC-1")], EXPORT) == []


@pytest.mark.parametrize("code", ["940360", "847150", "730890"])  # unlisted, tier 3.A, tier 4.A
def test_goods_not_on_the_export_control_list_do_not_flag(code: str) -> None:
    assert flags_of([exit_("x1", "2024-03-01T00:00:00Z", goods=goods(code))], EXPORT) == []


def test_only_exits_to_a_destination_of_concern_count() -> None:
    assert flags_of([exit_("x1", "2024-03-01T00:00:00Z", destination="KG")], EXPORT) == []
    assert flags_of([entry("e1", "2024-03-01T00:00:00Z")], EXPORT) == []


def test_one_flag_per_consignment_and_severity_from_every_code_known() -> None:
    events = [
        entry("e1", "2024-03-01T00:00:00Z", goods=goods("847150")),
        exit_("x1", "2024-03-02T00:00:00Z", permit_id="P"),
        exit_("x2", "2024-03-03T00:00:00Z", goods=goods("852691")),
        exit_("x3", "2024-03-01T00:00:00Z"),
    ]
    [flag] = flags_of(events, EXPORT)
    assert flag.exit.event_id == "x2"
    assert flag.hs_codes == ("847150", "852691", "854231")


def test_export_controls_are_configuration() -> None:
    from bordermon.core.watchlist import load_export_controls

    config = DetectionConfig(
        watchlist=CHPL, rules=EXPORT.rules, export_controls=load_export_controls(["builtin:chpl"])
    )
    [flag] = flags_of([exit_("x1", "2024-03-01T00:00:00Z", goods=goods("847150"))], config)
    assert flag.reasons == ("chpl:3.A:847150", "export-control:3.A:847150")


# --- all three together -------------------------------------------------------------------------


def test_all_rules_on_one_story() -> None:
    events = [
        a_in("2024-03-01T00:00:00Z", consignment_id="A"),
        exit_("a-out", "2024-03-02T00:00:00Z", consignment_id="A", permit_id="P"),
        b_out("2024-03-03T00:00:00Z"),
    ]
    flags = flags_of(events, DetectionConfig(watchlist=CHPL))
    assert [(f.rule, f.consignment_id) for f in flags] == [
        ("transit-to-ru", "A"),
        ("export-without-permit", "B"),
        ("relabel-to-ru", "B"),
    ]


# --- flag/1 records left in state by the previous version ------------------------------------


def test_a_pending_flag_1_record_still_reads() -> None:
    record = {
        "schema": "flag/1",
        "flag_id": flag_id_for("transit-to-ru", "C"),
        "rule": "transit-to-ru",
        "consignment_id": "C",
        "severity": "high",
        "reasons": ["chpl:1:854231"],
        "entry": ["e1", "KZ-NUR-ZHOLY", "CN", "KZ", "2024-03-01T10:00:00Z", 1709287200000000000],
        "exit": ["x1", "KZ-TASKALA", "KZ", "RU", "2024-03-02T10:00:00Z", 1709373600000000000],
        "dwell_seconds": 86400,
        "window_seconds": 2592000,
        "hs_codes": ["854231"],
        "detected_at": "2024-03-02T10:00:01.000000Z",
    }
    flag = Flag.from_record(orjson.loads(orjson.dumps(record)))
    assert flag.link is None and flag.linked_consignment_id is None
    wire = flag.to_dict()
    assert wire["schema"] == "flag/2" and wire["flag_id"] == record["flag_id"]
    assert wire["entry"]["consignment_id"] == "C"
    assert Flag.from_record(flag.to_record()) == flag


def test_transit_flag_ids_are_unchanged_from_flag_1() -> None:
    assert (
        flag_id_for("transit-to-ru", "CONS-1")
        == hashlib.sha256(b"transit-to-ru\nCONS-1").hexdigest()[:32]
    )
