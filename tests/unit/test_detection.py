"""Detection edges of SPEC §4 and the flag of SPEC §5, on the pure core."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable

import pytest

from bordermon.core import (
    ConsignmentState,
    CrossingEvent,
    DetectionConfig,
    Flag,
    Severity,
    apply,
    load_watchlist,
)
from bordermon.core.config import DAY_NS
from support.builders import CHPL, TRANSIT_ONLY, entry, exit_

Clock = Callable[[], int]


def run(
    events: Iterable[CrossingEvent], config: DetectionConfig, clock: Clock = lambda: 0
) -> tuple[ConsignmentState | None, list[Flag]]:
    state: ConsignmentState | None = None
    flags: list[Flag] = []
    for event in events:
        transition = apply(state, event, config, clock)
        state = transition.state
        flags += transition.flags
    return state, flags


def test_entry_then_exit_within_window_flags(config: DetectionConfig) -> None:
    _, flags = run(
        [entry("e1", "2024-03-01T10:00:00Z"), exit_("x1", "2024-03-05T10:00:00Z")], config
    )
    [flag] = flags
    assert flag.rule == "transit-to-ru"
    assert (flag.entry.event_id, flag.exit.event_id) == ("e1", "x1")
    assert flag.dwell_seconds == 4 * 86400
    assert flag.window_seconds == 30 * 86400
    assert flag.severity is Severity.HIGH  # 854231 is CHPL tier 1
    assert flag.reasons == ("chpl:1:854231",)
    assert flag.hs_codes == ("854231",)
    wire = flag.to_dict()
    assert wire["schema"] == "flag/2"
    assert wire["link"] is None and wire["linked_consignment_id"] is None
    assert wire["entry"] == {
        "event_id": "e1",
        "consignment_id": "CONS-1",
        "checkpoint": "KZ-NUR-ZHOLY",
        "from_country": "CN",
        "to_country": "KZ",
        "observed_at": "2024-03-01T10:00:00Z",
    }


def test_flag_id_is_sha256_of_rule_and_consignment(config: DetectionConfig) -> None:
    _, [flag] = run(
        [entry("e1", "2024-03-01T10:00:00Z"), exit_("x1", "2024-03-02T10:00:00Z")], config
    )
    expected = hashlib.sha256(b"transit-to-ru\nCONS-1").hexdigest()[:32]
    assert flag.flag_id == expected
    assert len(flag.flag_id) == 32


def test_exit_arriving_before_its_entry_is_matched(config: DetectionConfig) -> None:
    _, flags = run(
        [exit_("x1", "2024-03-05T10:00:00Z"), entry("e1", "2024-03-01T10:00:00Z")], config
    )
    assert [(f.entry.event_id, f.exit.event_id) for f in flags] == [("e1", "x1")]


@pytest.mark.parametrize(
    ("entry_at", "exit_at", "flagged"),
    [
        ("2024-03-01T00:00:00Z", "2024-03-31T00:00:00Z", True),  # exactly 30 days
        ("2024-03-01T00:00:00Z", "2024-03-31T00:00:01Z", False),  # one second over
        ("2024-03-01T00:00:00Z", "2024-03-31T00:00:00.000000001Z", False),
        ("2024-03-01T00:00:00Z", "2024-03-01T00:00:00Z", True),  # dwell 0
        ("2024-03-01T00:00:00Z", "2024-02-29T23:59:59Z", False),  # exit before entry
        # Offsets: 30 days exactly as instants, written in different zones.
        ("2024-03-01T05:00:00+05:00", "2024-03-31T03:00:00+03:00", True),
        ("2024-03-01T05:00:00+05:00", "2024-03-31T03:00:01+03:00", False),
        # Local clock says the exit is earlier, the instants say 1 h later.
        ("2024-03-01T12:00:00+06:00", "2024-03-01T10:00:00+03:00", True),
        ("2024-03-01T12:00:00+06:00", "2024-03-01T08:00:00+03:00", False),
        ("2024-03-01T12:00:00-00:00", "2024-03-01T12:00:00+00:00", True),
    ],
)
def test_window_is_inclusive_on_utc_instants(
    config: DetectionConfig, entry_at: str, exit_at: str, flagged: bool
) -> None:
    _, flags = run([entry("e1", entry_at), exit_("x1", exit_at)], config)
    assert bool(flags) is flagged


def test_window_is_configuration() -> None:
    config = DetectionConfig(watchlist=CHPL, window_ns=2 * DAY_NS, rules=TRANSIT_ONLY)
    pair = [entry("e1", "2024-03-01T00:00:00Z"), exit_("x1", "2024-03-04T00:00:00Z")]
    assert run(pair, config)[1] == []
    assert (
        run(pair, DetectionConfig(watchlist=CHPL, window_ns=3 * DAY_NS, rules=TRANSIT_ONLY))[1]
        != []
    )


def test_russian_goods_transiting_back_are_not_flagged(config: DetectionConfig) -> None:
    _, flags = run(
        [entry("e1", "2024-03-01T00:00:00Z", origin="RU"), exit_("x1", "2024-03-02T00:00:00Z")],
        config,
    )
    assert flags == []


def test_destinations_of_concern_are_configuration() -> None:
    config = DetectionConfig(
        watchlist=CHPL, destinations_of_concern=frozenset({"RU", "BY"}), rules=TRANSIT_ONLY
    )
    events = [
        entry("e1", "2024-03-01T00:00:00Z", origin="BY"),  # BY goods are not re-exports
        exit_("x1", "2024-03-02T00:00:00Z", destination="BY"),
    ]
    assert run(events, config)[1] == []
    events[0] = entry("e1", "2024-03-01T00:00:00Z", origin="TR")
    assert run(events, config)[1][0].exit.to_country == "BY"


def test_exits_to_other_countries_and_lone_exits_do_not_flag(config: DetectionConfig) -> None:
    assert (
        run(
            [entry("e1", "2024-03-01T00:00:00Z"), exit_("x1", "2024-03-02T00:00:00Z", "KG")], config
        )[1]
        == []
    )
    assert run([exit_("x1", "2024-03-02T00:00:00Z")], config)[1] == []


def test_duplicates_are_ignored(config: DetectionConfig) -> None:
    first = entry("e1", "2024-03-01T00:00:00Z")
    state, flags = run([first, first, first], config)
    assert state is not None and state.accepted == 1
    # The same event_id with different content is still the same scan.
    late_copy = entry("e1", "2024-03-20T00:00:00Z")
    state, flags = run([first, late_copy, exit_("x1", "2024-04-05T00:00:00Z")], config)
    assert flags == []  # only the first e1 (Mar 1) counts: 35 days is outside the window


def test_duplicate_reports_itself(config: DetectionConfig) -> None:
    first = apply(None, entry("e1", "2024-03-01T00:00:00Z"), config)
    again = apply(first.state, entry("e1", "2024-03-01T00:00:00Z"), config)
    assert (first.duplicate, again.duplicate) == (False, True)


def test_one_flag_per_consignment_and_rule(config: DetectionConfig) -> None:
    _, flags = run(
        [
            entry("e1", "2024-03-01T00:00:00Z"),
            exit_("x1", "2024-03-02T00:00:00Z"),
            entry("e2", "2024-03-10T00:00:00Z"),
            exit_("x2", "2024-03-11T00:00:00Z"),
        ],
        config,
    )
    assert len(flags) == 1


def test_reported_pair_is_earliest_exit_and_latest_entry_before_it(
    config: DetectionConfig,
) -> None:
    # Re-entries: three entries known, then the exit arrives.
    _, [flag] = run(
        [
            entry("e1", "2024-03-01T00:00:00Z"),
            entry("e2", "2024-03-05T00:00:00Z"),
            entry("e3", "2024-03-09T00:00:00Z"),  # after the exit: cannot pair with it
            exit_("x1", "2024-03-07T00:00:00Z"),
        ],
        config,
    )
    assert (flag.entry.event_id, flag.exit.event_id) == ("e2", "x1")
    assert flag.dwell_seconds == 2 * 86400
    # Several exits known, then the entry arrives: the earliest exit it reaches.
    _, [flag] = run(
        [
            exit_("x2", "2024-03-09T00:00:00Z"),
            exit_("x0", "2024-02-20T00:00:00Z"),  # before the entry
            exit_("x1", "2024-03-04T00:00:00Z"),
            entry("e1", "2024-03-01T00:00:00Z"),
        ],
        config,
    )
    assert (flag.entry.event_id, flag.exit.event_id) == ("e1", "x1")


def test_ties_are_broken_by_event_id_whatever_the_arrival_order(config: DetectionConfig) -> None:
    at = "2024-03-01T00:00:00Z"
    for order in (["eb", "ea"], ["ea", "eb"]):
        events = [entry(eid, at) for eid in order] + [exit_("x1", "2024-03-02T00:00:00Z")]
        assert run(events, config)[1][0].entry.event_id == "ea"


@pytest.mark.parametrize(
    ("codes", "severity", "reasons"),
    [
        (["8542310000"], Severity.HIGH, ["chpl:1:854231"]),  # prefix match
        (["852691"], Severity.HIGH, ["chpl:2:852691"]),
        (["847150"], Severity.MEDIUM, ["chpl:3.A:847150"]),
        (["8471.50.10"], Severity.MEDIUM, ["chpl:3.A:847150"]),
        (["940360"], Severity.LOW, []),  # furniture
        (["847150", "854231", "940360"], Severity.HIGH, ["chpl:1:854231", "chpl:3.A:847150"]),
    ],
)
def test_severity_from_the_watchlist_by_prefix(
    config: DetectionConfig, codes: list[str], severity: Severity, reasons: list[str]
) -> None:
    goods = [{"hs_code": code} for code in codes]
    _, [flag] = run(
        [
            entry("e1", "2024-03-01T00:00:00Z", goods=goods),
            exit_("x1", "2024-03-02T00:00:00Z", goods=[{"hs_code": "940360"}]),
        ],
        config,
    )
    assert flag.severity is severity
    assert list(flag.reasons) == reasons


def test_severity_uses_codes_of_every_accepted_event(config: DetectionConfig) -> None:
    _, [flag] = run(
        [
            exit_("x9", "2024-03-02T00:00:00Z", destination="KG", goods=[{"hs_code": "852691"}]),
            entry("e1", "2024-03-01T00:00:00Z", goods=[{"hs_code": "940360"}]),
            exit_("x1", "2024-03-02T00:00:00Z", goods=[{"hs_code": "940360"}]),
        ],
        config,
    )
    assert flag.severity is Severity.HIGH
    assert flag.hs_codes == ("852691", "940360")


def test_watchlists_are_configuration(tmp_path: pytest.TempPathFactory) -> None:
    path = tmp_path / "national.csv"  # type: ignore[operator]
    path.write_text("hs6,tier,description\n940360,4.B,Wooden furniture\n")
    config = DetectionConfig(watchlist=load_watchlist([str(path)]), rules=TRANSIT_ONLY)
    _, [flag] = run(
        [
            entry("e1", "2024-03-01T00:00:00Z", goods=[{"hs_code": "9403.60.10"}]),
            exit_("x1", "2024-03-02T00:00:00Z"),
        ],
        config,
    )
    assert (flag.severity, flag.reasons) == (Severity.MEDIUM, ("national:4.B:940360",))


def test_declared_destination_that_differs_is_a_reason(config: DetectionConfig) -> None:
    _, [flag] = run(
        [
            entry("e1", "2024-03-01T00:00:00Z", declared_destination="KZ"),
            exit_("x1", "2024-03-02T00:00:00Z", declared_destination="RU"),
        ],
        config,
    )
    assert flag.reasons == ("chpl:1:854231", "declared-destination:KZ")


def test_detected_at_comes_from_the_clock_only_when_flagging(config: DetectionConfig) -> None:
    calls: list[int] = []

    def clock() -> int:
        calls.append(1)
        return 1_709_287_200_123_456_000

    _, [flag] = run(
        [entry("e1", "2024-03-01T00:00:00Z"), exit_("x1", "2024-03-02T00:00:00Z")], config, clock
    )
    assert len(calls) == 1
    assert flag.detected_at == "2024-03-01T10:00:00.123456Z"


def test_fractional_dwell(config: DetectionConfig) -> None:
    _, [flag] = run(
        [entry("e1", "2024-03-01T00:00:00.25Z"), exit_("x1", "2024-03-01T00:00:01Z")], config
    )
    assert flag.dwell_seconds == 0.75


def test_after_flagging_kept_crossings_are_dropped_but_duplicates_still_caught(
    config: DetectionConfig,
) -> None:
    first = entry("e1", "2024-03-01T00:00:00Z")
    state, _ = run([first, exit_("x1", "2024-03-02T00:00:00Z")], config)
    assert state is not None and state.entries == [] and state.exits == []
    assert apply(state, first, config).duplicate
