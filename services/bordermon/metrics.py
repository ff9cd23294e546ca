"""Every Prometheus metric bordermon exports, declared once.

Dashboards (deploy/grafana) and alert rules (deploy/prometheus) may only name metrics that are
declared here; a test checks that. Conventions: `bordermon_` prefix, base units (seconds,
bytes), `_total` on counters, and no consignment or event ids as labels. Label values that
come from input are bounded: checkpoints outside the reference list become `other`, and HS
codes are reduced to their 2-digit chapter.

Every label set a dashboard or an alert reads exists from start-up at 0 (`_precreate`, at
import): a panel shows 0 rather than "No data", and `rate()`/`increase()` count the first
event too (a series born at 1 loses it). The `_created` series are off: nothing reads them.
"""

from __future__ import annotations

import collections
import csv
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from importlib import resources

from prometheus_client import (
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
    generate_latest,
)

from bordermon import __version__
from bordermon.core.countries import ASSIGNED_ALPHA2
from bordermon.core.crossing import CrossingEvent, Direction
from bordermon.core.flag import Flag
from bordermon.core.watchlist import Severity

disable_created_metrics()  # type: ignore[no-untyped-call]  # before any metric: no *_created

RULES = ("transit-to-ru", "relabel-to-ru", "export-without-permit")
"""The detection rules of SPEC §4, the values of the `rule` label."""
RULES_WITH_ENTRY = ("transit-to-ru", "relabel-to-ru")
"""The rules whose flags report an entry, hence an origin and a dwell time."""
SEVERITIES = tuple(severity.label for severity in sorted(Severity, reverse=True))
"""The values of the `severity` label, worst first."""
VALIDATION_REASONS = (
    "invalid_json",
    "not_an_object",
    "too_large",
    "not_a_crossing",
    "key_mismatch",
    # Signed scans (`require_signatures`): at 0 from start-up, so that a first forgery shows
    # as an increase.
    "unsigned",
    "bad_signature",
    "checkpoint_not_allowed",
)
"""SPEC §3's validation reasons that name no field (`missing_field:<name>` and
`invalid_field:<name>` series appear with their first occurrence)."""
DEAD_LETTER_REASONS = (*VALIDATION_REASONS, "internal_error")
"""Dead letters also hold events whose processing failed (SPEC §6)."""
STORE_ERROR_KINDS = ("unavailable",)
SAVE_REFUSALS = ("fenced", "conflict")
"""Why the state store refused a save (SPEC §6 single writer); not outages."""
REDIS_OPERATIONS = ("load", "save")
CONSIGNMENT_STORE = "consignments"
LINK_STORE = "links"
STATE_STORES = (CONSIGNMENT_STORE, LINK_STORE)
"""The worker's two state stores (consignment states, and the link states of relabel-to-ru),
the values of the `store` label: named as the stage that owns each (`STAGES`), so a panel
can set a store's quarantines beside its stage's batches."""

# Scan-to-flag target is sub-second: resolve well below it and show the tail above it.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
FAST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
DAY_S = 86_400.0
# Dwell buckets at day marks (in seconds, the base unit): dashboards divide by 86400.
# 30 days is transit-to-ru's default window, 90 days relabel-to-ru's.
DWELL_BUCKETS = tuple(days * DAY_S for days in (0.5, 1, 2, 3, 5, 7, 10, 14, 21, 30, 45, 60, 90))
BATCH_SIZE_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500)

EVENTS_CONSUMED = Counter(
    "bordermon_events_consumed_total",
    "Valid crossing events consumed (duplicates included), by checkpoint and direction.",
    ["checkpoint", "direction"],
)
EVENTS_REJECTED = Counter(
    "bordermon_events_rejected_total",
    "Messages rejected by validation, by SPEC reason (each also dead-lettered by the worker).",
    ["reason"],
)
EVENTS_DUPLICATE = Counter(
    "bordermon_events_duplicate_total",
    "Valid events ignored because their event_id was already applied.",
)
FLAGS = Counter(
    "bordermon_flags_total",
    "Flags raised and acknowledged by the flags topic, by rule and severity.",
    ["rule", "severity"],
)
FLAGS_BY_ORIGIN = Counter(
    "bordermon_flags_by_origin_total",
    "Flags by the origin country of the reported entry (ISO alpha-2); flags without an entry"
    " (export-without-permit) are not counted here.",
    ["origin"],
)
FLAGS_BY_HS_CHAPTER = Counter(
    "bordermon_flags_by_hs_chapter_total",
    "Flags by HS chapter (first 2 digits) of the codes that counted for severity; a flag"
    " counts once per chapter.",
    ["chapter"],
)
DEAD_LETTERS = Counter(
    "bordermon_dead_letters_total",
    "Messages written to the dead-letter topic, by reason.",
    ["reason"],
)
STAGES = (CONSIGNMENT_STORE, LINK_STORE)
"""The worker's two stages (bordermon.processor.stages), the values of the `stage` label."""
BATCH_SIZE = Histogram(
    "bordermon_batch_size",
    "Messages per processed batch, by stage (crossings, or link sightings).",
    ["stage"],
    buckets=BATCH_SIZE_BUCKETS,
)
BATCH_DURATION = Histogram(
    "bordermon_batch_duration_seconds",
    "Wall time to process one batch, by stage: validate, load state, apply, save, produce.",
    ["stage"],
    buckets=FAST_BUCKETS,
)
REDIS_ROUND_TRIP = Histogram(
    "bordermon_redis_round_trip_seconds",
    "Time of one pipelined Redis round trip, by operation (load or save).",
    ["operation"],
    buckets=FAST_BUCKETS,
)
SCAN_TO_FLAG = Histogram(
    "bordermon_scan_to_flag_seconds",
    "From the Kafka timestamp of the scan that raised the flag to the flag acknowledged, by rule.",
    ["rule"],
    buckets=LATENCY_BUCKETS,
)
FLAG_DWELL = Histogram(
    "bordermon_flag_dwell_seconds",
    "Time between the reported entry and exit of flags that have an entry (buckets at"
    " 0.5-90 days), by rule.",
    ["rule"],
    buckets=DWELL_BUCKETS,
)
CONSIGNMENTS_IN_STATE = Gauge(
    "bordermon_consignments_in_state",
    "Keys in the state store's Redis database (sampled with DBSIZE): consignment states, plus"
    " link-key states of relabel-to-ru and one owner token per partition. Give bordermon a"
    " database of its own.",
)
CONSUMER_LAG = Gauge(
    "bordermon_consumer_lag_messages",
    "Messages between the end of a partition (crossings, or links for the link stage) and"
    " what this worker has processed of it.",
    ["topic", "partition"],
)
STORE_ERRORS = Counter(
    "bordermon_store_errors_total",
    "State store failures (each retried), by kind.",
    ["kind"],
)
SAVES_REFUSED = Counter(
    "bordermon_state_saves_refused_total",
    "Saves the state store refused by its single-writer checks, by reason: `fenced` (this"
    " worker lost the partition to another) or `conflict` (another writer changed the state"
    " since it was read; the batch is re-applied). Not outages.",
    ["reason"],
)
STATES_QUARANTINED = Counter(
    "bordermon_states_quarantined_total",
    "Stored states the worker could not decode (corrupt bytes, a state format of a newer"
    " bordermon, a value stored under another key), by store: each was treated as absent, so"
    " its consignment or link key restarted from empty (a flag may have been missed), and its"
    " raw bytes were copied to bordermon:state-corrupt:<id> or bordermon:link-corrupt:<link key>.",
    ["store"],
)
BUILD_INFO = Info("bordermon_build", "Version of the running bordermon.")
CONFIG_INFO = Info("bordermon_config", "Detection configuration in force (no secrets).")

BUILD_INFO.info({"version": __version__})

HS_CHAPTERS = tuple(f"{number:02d}" for number in range(100))
"""Every 2-digit prefix an HS code of 6-10 digits can have (national chapters 98, 99 too)."""


def _known_checkpoints() -> frozenset[str]:
    text = (resources.files("bordermon.core") / "data" / "checkpoints.csv").read_text("utf-8")
    return frozenset(row["code"] for row in csv.DictReader(text.splitlines()))


KNOWN_CHECKPOINTS = _known_checkpoints()


def checkpoint_label(checkpoint: str) -> str:
    """Bounded label: scanners may send any checkpoint text, Prometheus must not grow with it."""
    return checkpoint if checkpoint in KNOWN_CHECKPOINTS else "other"


def hs_chapter(hs_code: str) -> str:
    return hs_code[:2]


def _precreate() -> None:
    """Give every label set the dashboards and alerts read a series at 0, from start-up.

    Labels with values known in advance only: `bordermon_consumer_lag_messages` (per
    partition) and `bordermon_config_info` are set by the worker as it starts, and
    `missing_field:*`/`invalid_field:*` reasons appear with their first occurrence.
    """
    for checkpoint in sorted(KNOWN_CHECKPOINTS | {"other"}):
        for direction in Direction:
            EVENTS_CONSUMED.labels(checkpoint, direction.value)
    for reason in VALIDATION_REASONS:
        EVENTS_REJECTED.labels(reason)
    for reason in DEAD_LETTER_REASONS:
        DEAD_LETTERS.labels(reason)
    for rule in RULES:
        SCAN_TO_FLAG.labels(rule)
        for severity in SEVERITIES:
            FLAGS.labels(rule, severity)
    for rule in RULES_WITH_ENTRY:
        FLAG_DWELL.labels(rule)
    for origin in sorted(ASSIGNED_ALPHA2):
        FLAGS_BY_ORIGIN.labels(origin)
    for chapter in HS_CHAPTERS:
        FLAGS_BY_HS_CHAPTER.labels(chapter)
    for kind in STORE_ERROR_KINDS:
        STORE_ERRORS.labels(kind)
    for reason in SAVE_REFUSALS:
        SAVES_REFUSED.labels(reason)
    for store in STATE_STORES:
        STATES_QUARANTINED.labels(store)
    for stage in STAGES:
        BATCH_SIZE.labels(stage)
        BATCH_DURATION.labels(stage)
    for operation in REDIS_OPERATIONS:
        REDIS_ROUND_TRIP.labels(operation)


_precreate()


# --- recording, shared by the worker and `bordermon replay --metrics` ---------------------------


def record_events(events: Iterable[CrossingEvent]) -> None:
    """Count valid events by checkpoint and direction (one `inc` per label set, not per event)."""
    record_event_counts(
        collections.Counter((event.checkpoint, event.direction.value) for event in events)
    )


def record_event_counts(counts: Mapping[tuple[str, str], int]) -> None:
    """Count valid events already tallied by (checkpoint as sent, direction), e.g. by replay's
    jobs. Unknown checkpoints share the `other` series; label sets are incremented in sorted
    order, so an exposition does not depend on which event came first."""
    by_label: collections.Counter[tuple[str, str]] = collections.Counter()
    for (checkpoint, direction), count in counts.items():
        by_label[(checkpoint_label(checkpoint), direction)] += count
    for (checkpoint, direction), count in sorted(by_label.items()):
        EVENTS_CONSUMED.labels(checkpoint, direction).inc(count)


def record_rejects(reasons: Iterable[str], *, dead_lettered: bool) -> None:
    for reason, count in collections.Counter(reasons).items():
        EVENTS_REJECTED.labels(reason).inc(count)
        if dead_lettered:
            DEAD_LETTERS.labels(reason).inc(count)


def record_flags(flags: Iterable[tuple[Flag, float | None]]) -> None:
    """Count acknowledged flags (SPEC §5), each with its scan-to-flag seconds (or None).

    A batch's flags are counted together: one `inc` per label set, and one labelled child per
    histogram, since a quarter of the crossings can end in a flag at full backlog. A flag
    without an entry (`export-without-permit`) counts by rule, severity and HS chapter only."""
    by_rule_severity: collections.Counter[tuple[str, str]] = collections.Counter()
    by_origin: collections.Counter[str] = collections.Counter()
    by_chapter: collections.Counter[str] = collections.Counter()
    dwells: dict[str, list[float]] = {}
    latencies: dict[str, list[float]] = {}
    for flag, scan_to_flag_s in flags:
        by_rule_severity[(flag.rule, flag.severity.label)] += 1
        if flag.entry is not None:
            by_origin[flag.entry.from_country] += 1
        by_chapter.update({hs_chapter(code) for code in flag.hs_codes})
        if flag.dwell_seconds is not None:
            dwells.setdefault(flag.rule, []).append(flag.dwell_seconds)
        if scan_to_flag_s is not None:
            latencies.setdefault(flag.rule, []).append(max(scan_to_flag_s, 0.0))
    for (rule, severity), count in by_rule_severity.items():
        FLAGS.labels(rule, severity).inc(count)
    for origin, count in by_origin.items():
        FLAGS_BY_ORIGIN.labels(origin).inc(count)
    for chapter, count in sorted(by_chapter.items()):
        FLAGS_BY_HS_CHAPTER.labels(chapter).inc(count)
    for histogram, values_by_rule in ((FLAG_DWELL, dwells), (SCAN_TO_FLAG, latencies)):
        for rule, values in values_by_rule.items():
            child = histogram.labels(rule)
            for value in values:
                child.observe(value)


class PrometheusRecorder:
    """The worker's `Recorder` (bordermon.processor.recorder): into the metrics above."""

    def batch(self, stage: str, size: int, seconds: float) -> None:
        BATCH_SIZE.labels(stage).observe(size)
        BATCH_DURATION.labels(stage).observe(seconds)

    def rejects(self, reasons: Iterable[str], *, dead_lettered: bool) -> None:
        record_rejects(reasons, dead_lettered=dead_lettered)

    def events(self, events: Iterable[CrossingEvent]) -> None:
        record_events(events)

    def duplicates(self, count: int) -> None:
        EVENTS_DUPLICATE.inc(count)

    def flags(self, flags: Sequence[tuple[Flag, float | None]]) -> None:
        record_flags(flags)

    def store_unavailable(self) -> None:
        STORE_ERRORS.labels("unavailable").inc()

    def save_refused(self, reason: str, count: int = 1) -> None:
        SAVES_REFUSED.labels(reason).inc(count)

    def state_quarantined(self, store: str) -> None:
        STATES_QUARANTINED.labels(store).inc()

    def round_trip(self, operation: str) -> AbstractContextManager[object]:
        return REDIS_ROUND_TRIP.labels(operation).time()


PROMETHEUS = PrometheusRecorder()


def exposition() -> bytes:
    """The bordermon metrics in Prometheus text format (what /metrics serves)."""
    text = generate_latest(REGISTRY).decode()
    kept = [line for line in text.splitlines() if "bordermon_" in line]
    return ("\n".join(kept) + "\n").encode()
