"""`record_flag` counts flag/2 of every rule (SPEC §5), including flags without an entry."""

from __future__ import annotations

from typing import Any, cast

from builders import CHPL, entry, exit_
from prometheus_client import REGISTRY

from bordermon import metrics
from bordermon.core import DetectionConfig, Flag, apply


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class WireFlag:
    """Stands in for a core Flag: `record_flag` reads only `to_dict()`, the SPEC's wire form."""

    def __init__(self, wire: dict[str, Any]) -> None:
        self.wire = wire
        self.rule = wire["rule"]

    def to_dict(self) -> dict[str, Any]:
        return self.wire


WITHOUT_PERMIT: dict[str, Any] = {
    "schema": "flag/2",
    "flag_id": "0" * 32,
    "rule": "export-without-permit",
    "consignment_id": "KZ-ALM-5521",
    "severity": "high",
    "reasons": ["export-control:2:852691"],
    "entry": None,
    "exit": {
        "event_id": "x1",
        "consignment_id": "KZ-ALM-5521",
        "checkpoint": "KZ-TASKALA",
        "from_country": "KZ",
        "to_country": "RU",
        "observed_at": "2024-03-09T06:42:10Z",
    },
    "link": None,
    "linked_consignment_id": None,
    "dwell_seconds": None,
    "window_seconds": None,
    "hs_codes": ["852691"],
    "detected_at": "2024-03-09T06:42:10.5Z",
}


def test_a_flag_without_entry_counts_by_rule_severity_and_chapter_only() -> None:
    rule = "export-without-permit"
    flags = value("bordermon_flags_total", rule=rule, severity="high")
    chapter = value("bordermon_flags_by_hs_chapter_total", chapter="85")
    origins = sum(value("bordermon_flags_by_origin_total", origin=c) for c in ("KZ", "RU"))
    latency = value("bordermon_scan_to_flag_seconds_count", rule=rule)
    metrics.record_flag(cast(Flag, WireFlag(WITHOUT_PERMIT)), 0.2)
    assert value("bordermon_flags_total", rule=rule, severity="high") == flags + 1
    assert value("bordermon_flags_by_hs_chapter_total", chapter="85") == chapter + 1
    assert sum(value("bordermon_flags_by_origin_total", origin=c) for c in ("KZ", "RU")) == origins
    assert value("bordermon_flag_dwell_seconds_count", rule=rule) == 0.0
    assert value("bordermon_scan_to_flag_seconds_count", rule=rule) == latency + 1


def test_a_relabel_flag_counts_its_origin_and_dwell_under_its_rule() -> None:
    wire = {
        **WITHOUT_PERMIT,
        "rule": "relabel-to-ru",
        "severity": "medium",
        "entry": {**WITHOUT_PERMIT["exit"], "from_country": "TR", "to_country": "KZ"},
        "link": "container:MSCU1234567",
        "linked_consignment_id": "TR-IST-1",
        "dwell_seconds": 45 * 86_400,
        "window_seconds": 90 * 86_400,
        "hs_codes": ["847150"],
    }
    before = value("bordermon_flag_dwell_seconds_bucket", rule="relabel-to-ru", le="5.184e+06")
    origin = value("bordermon_flags_by_origin_total", origin="TR")
    metrics.record_flag(cast(Flag, WireFlag(wire)))
    assert value("bordermon_flags_by_origin_total", origin="TR") == origin + 1
    bucket = value("bordermon_flag_dwell_seconds_bucket", rule="relabel-to-ru", le="5.184e+06")
    assert bucket == before + 1  # 45 days: in the 60-day bucket


def test_a_core_transit_flag_is_counted() -> None:
    config = DetectionConfig(watchlist=CHPL)
    first = apply(None, entry("e1", "2024-03-01T10:00:00Z"), config)
    (flag,) = apply(first.state, exit_("x1", "2024-03-02T10:00:00Z"), config).flags
    before = value("bordermon_flags_total", rule=flag.rule, severity=flag.severity)
    dwell = value("bordermon_flag_dwell_seconds_sum", rule=flag.rule)
    metrics.record_flag(flag, 0.05)
    assert value("bordermon_flags_total", rule=flag.rule, severity=flag.severity) == before + 1
    assert value("bordermon_flag_dwell_seconds_sum", rule=flag.rule) == dwell + 86_400
