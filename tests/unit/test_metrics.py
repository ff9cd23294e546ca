"""`record_flag` counts flag/2 of every rule (SPEC §5), including flags without an entry."""

from __future__ import annotations

import json
from pathlib import Path
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


SCHEMA = Path(__file__).resolve().parents[2] / "topics" / "schemas" / "flag-v2.schema.json"
_, RELABEL, WITHOUT_PERMIT = json.loads(SCHEMA.read_text("utf-8"))["examples"]


def test_a_flag_without_entry_counts_by_rule_severity_and_chapter_only() -> None:
    rule = "export-without-permit"
    flags = value("bordermon_flags_total", rule=rule, severity="high")
    chapters = {c: value("bordermon_flags_by_hs_chapter_total", chapter=c) for c in ("84", "85")}
    origins = sum(value("bordermon_flags_by_origin_total", origin=c) for c in ("CN", "KZ", "RU"))
    latency = value("bordermon_scan_to_flag_seconds_count", rule=rule)
    metrics.record_flag(cast(Flag, WireFlag(WITHOUT_PERMIT)), 0.2)
    assert value("bordermon_flags_total", rule=rule, severity="high") == flags + 1
    for chapter, before in chapters.items():  # hs_codes 847150 and 854231
        assert value("bordermon_flags_by_hs_chapter_total", chapter=chapter) == before + 1
    assert sum(value("bordermon_flags_by_origin_total", origin=c) for c in ("CN", "KZ", "RU")) == (
        origins
    )
    assert value("bordermon_flag_dwell_seconds_count", rule=rule) == 0.0
    assert value("bordermon_scan_to_flag_seconds_count", rule=rule) == latency + 1


def test_a_relabel_flag_counts_its_origin_and_dwell_under_its_rule() -> None:
    before = value("bordermon_flag_dwell_seconds_bucket", rule="relabel-to-ru", le="3.888e+06")
    origin = value("bordermon_flags_by_origin_total", origin="CN")
    metrics.record_flag(cast(Flag, WireFlag(RELABEL)))
    assert value("bordermon_flags_by_origin_total", origin="CN") == origin + 1
    bucket = value("bordermon_flag_dwell_seconds_bucket", rule="relabel-to-ru", le="3.888e+06")
    assert bucket == before + 1  # 41.8 days: in the 45-day bucket


def test_a_core_transit_flag_is_counted() -> None:
    config = DetectionConfig(watchlist=CHPL)
    first = apply(None, entry("e1", "2024-03-01T10:00:00Z"), config)
    # A permit, so that the exit of CHPL goods raises the transit flag alone.
    (flag,) = apply(first.state, exit_("x1", "2024-03-02T10:00:00Z", permit_id="P-1"), config).flags
    before = value("bordermon_flags_total", rule=flag.rule, severity=flag.severity)
    dwell = value("bordermon_flag_dwell_seconds_sum", rule=flag.rule)
    metrics.record_flag(flag, 0.05)
    assert value("bordermon_flags_total", rule=flag.rule, severity=flag.severity) == before + 1
    assert value("bordermon_flag_dwell_seconds_sum", rule=flag.rule) == dwell + 86_400
