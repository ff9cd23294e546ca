"""`record_flags` counts flag/2 of every rule (SPEC §5), including flags without an entry."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from prometheus_client import REGISTRY

from bordermon import metrics
from bordermon.core import DetectionConfig, Flag, Severity, apply
from support.builders import CHPL, entry, exit_


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def from_wire(wire: dict[str, Any]) -> Flag:
    """A core Flag with the fields of a SPEC example that the metrics read."""
    entry = wire["entry"]
    return Flag(
        flag_id=wire["flag_id"],
        rule=wire["rule"],
        consignment_id=wire["consignment_id"],
        severity=Severity.from_label(wire["severity"]),
        reasons=tuple(wire["reasons"]),
        entry=None if entry is None else cast(Any, SimpleNamespace(**entry)),
        exit=cast(Any, SimpleNamespace(**wire["exit"])),
        link=wire["link"],
        linked_consignment_id=wire["linked_consignment_id"],
        dwell_seconds=wire["dwell_seconds"],
        window_seconds=wire["window_seconds"],
        hs_codes=tuple(wire["hs_codes"]),
        detected_at=wire["detected_at"],
    )


SCHEMA = Path(__file__).resolve().parents[2] / "topics" / "schemas" / "flag-v2.schema.json"
_, RELABEL, WITHOUT_PERMIT = json.loads(SCHEMA.read_text("utf-8"))["examples"]


def test_a_flag_without_entry_counts_by_rule_severity_and_chapter_only() -> None:
    rule = "export-without-permit"
    flags = value("bordermon_flags_total", rule=rule, severity="high")
    chapters = {c: value("bordermon_flags_by_hs_chapter_total", chapter=c) for c in ("84", "85")}
    origins = sum(value("bordermon_flags_by_origin_total", origin=c) for c in ("CN", "KZ", "RU"))
    latency = value("bordermon_scan_to_flag_seconds_count", rule=rule)
    metrics.record_flags([(from_wire(WITHOUT_PERMIT), 0.2)])
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
    metrics.record_flags([(from_wire(RELABEL), None)])
    assert value("bordermon_flags_by_origin_total", origin="CN") == origin + 1
    bucket = value("bordermon_flag_dwell_seconds_bucket", rule="relabel-to-ru", le="3.888e+06")
    assert bucket == before + 1  # 41.8 days: in the 45-day bucket


def test_a_core_transit_flag_is_counted() -> None:
    config = DetectionConfig(watchlist=CHPL)
    first = apply(None, entry("e1", "2024-03-01T10:00:00Z"), config)
    # A permit, so that the exit of CHPL goods raises the transit flag alone.
    (flag,) = apply(first.state, exit_("x1", "2024-03-02T10:00:00Z", permit_id="P-1"), config).flags
    before = value("bordermon_flags_total", rule=flag.rule, severity=flag.severity.label)
    dwell = value("bordermon_flag_dwell_seconds_sum", rule=flag.rule)
    metrics.record_flags([(flag, 0.05)])
    assert (
        value("bordermon_flags_total", rule=flag.rule, severity=flag.severity.label) == before + 1
    )
    assert value("bordermon_flag_dwell_seconds_sum", rule=flag.rule) == dwell + 86_400


def test_a_batch_of_flags_is_counted_per_label_set_and_each_latency_observed() -> None:
    rule = "export-without-permit"
    flags = value("bordermon_flags_total", rule=rule, severity="high")
    chapter = value("bordermon_flags_by_hs_chapter_total", chapter="84")
    latency = value("bordermon_scan_to_flag_seconds_count", rule=rule)
    relabel_origin = value("bordermon_flags_by_origin_total", origin="CN")
    batch = [(from_wire(WITHOUT_PERMIT), 0.1), (from_wire(WITHOUT_PERMIT), None)]
    metrics.record_flags([*batch, (from_wire(RELABEL), 0.3)])
    assert value("bordermon_flags_total", rule=rule, severity="high") == flags + 2
    with_84 = sum(any(c.startswith("84") for c in f["hs_codes"]) for f in (WITHOUT_PERMIT, RELABEL))
    assert with_84 == 2  # one chapter-84 code in each example
    assert value("bordermon_flags_by_hs_chapter_total", chapter="84") == chapter + 3
    assert value("bordermon_scan_to_flag_seconds_count", rule=rule) == latency + 1
    assert value("bordermon_flags_by_origin_total", origin="CN") == relabel_origin + 1


def test_crossings_at_unknown_checkpoints_share_one_series() -> None:
    """Scanners may send any checkpoint text: the label stays within the known list plus
    `other`, so a misconfigured scanner cannot grow Prometheus without bound."""
    assert "KZ-NUR-ZHOLY" in metrics.KNOWN_CHECKPOINTS
    known = value("bordermon_events_consumed_total", checkpoint="KZ-NUR-ZHOLY", direction="entry")
    other = value("bordermon_events_consumed_total", checkpoint="other", direction="entry")
    metrics.record_events(
        [
            entry("e1", "2024-03-01T00:00:00Z", checkpoint="KZ-NUR-ZHOLY"),
            entry("e2", "2024-03-01T00:00:00Z", checkpoint="Shed 7, night shift"),
            entry("e3", "2024-03-01T00:00:00Z", checkpoint="KZ-NOT-A-CHECKPOINT"),
        ]
    )
    assert value(
        "bordermon_events_consumed_total", checkpoint="KZ-NUR-ZHOLY", direction="entry"
    ) == (known + 1)
    assert value("bordermon_events_consumed_total", checkpoint="other", direction="entry") == (
        other + 2
    )
    labels = {
        sample.labels["checkpoint"]
        for family in REGISTRY.collect()
        if family.name == "bordermon_events_consumed"
        for sample in family.samples
    }
    assert labels == metrics.KNOWN_CHECKPOINTS | {"other"}
