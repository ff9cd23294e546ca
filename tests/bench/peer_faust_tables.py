"""A peer for the pipeline benchmark: bordermon's rule written the idiomatic faust way.

Benchmark-only code, never deployed. bench_pipeline.py runs it in a subprocess on the same
events as `bordermon worker`, to answer "what would a plain faust app doing the same job cost?".
It is what the faust documentation teaches:

- per-consignment state in a faust `Table` (in memory, `store="memory://"`), keyed by
  consignment id, whose every update is written to a changelog topic
  (`<app id>-consignments-changelog`, compacted, as many partitions as the crossings topic) so
  that a restarted worker can rebuild the table; no Redis;
- one event at a time (`async for key, value in stream.items()`), the table value a
  `faust.Record`;
- flags and dead letters sent with `topic.send()`, which queues the message and lets faust's
  producer deliver it in the background (faust flushes the producer before it commits offsets).

What is deliberately equal to the worker, so that the comparison is about the framework idiom
and not about the rule: validation is `bordermon.core.parse_crossing` (the single SPEC §3 gate,
~25 µs of the worker's per-event cost), the key is checked against the payload, and severity
comes from the same watchlist. What is written here, not taken from `bordermon.core.apply`, is
the rule's bookkeeping: candidate entries and exits per consignment, the pair search inside the
window, duplicate detection by event id, one flag per consignment.

What this peer does not give, and the worker does (so a faster peer is not a drop-in
replacement): state survives only through the changelog (a new worker replays it before it
processes anything), no expiry of old consignments (faust's plain tables have no TTL: memory
grows with every consignment ever seen), a flag is not stored before it is produced (a crash
between the table update and the flag's delivery can lose it), unbounded duplicate memory.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import faust
import orjson

from bordermon.core.crossing import CrossingEvent, Direction, InvalidCrossing, parse_crossing
from bordermon.core.rule import DetectionConfig
from bordermon.core.timestamps import format_utc
from bordermon.processor.app import new_faust_app

TABLE_NAME = "consignments"
RULE = "transit-to-ru"


def changelog_topic_name(app_id: str) -> str:
    """The topic faust writes the table's changes to (faust's own naming)."""
    return f"{app_id}-{TABLE_NAME}-changelog"


class Consignment(faust.Record, serializer="json"):
    """What the rule remembers about one consignment (a table value).

    Crossings are kept as `[instant_ns, event_id, checkpoint, from, to, observed_at]` so that
    the natural list order is the rule's ranking order.
    """

    entries: list[list[Any]]
    exits: list[list[Any]]
    hs_codes: list[str]
    declared: list[str]
    seen: list[str]
    flagged: bool = False


@dataclass(slots=True)
class PeerStats:
    """Counts for the benchmark report (events the rule saw, and what came out)."""

    flags: int = 0
    rejected: int = 0
    duplicates: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"flags": self.flags, "rejected": self.rejected, "duplicates": self.duplicates}


def _kept(event: CrossingEvent) -> list[Any]:
    return [
        event.instant_ns,
        event.event_id,
        event.checkpoint,
        event.from_country,
        event.to_country,
        event.observed_at,
    ]


def _public(kept: list[Any]) -> dict[str, Any]:
    return {
        "event_id": kept[1],
        "checkpoint": kept[2],
        "from_country": kept[3],
        "to_country": kept[4],
        "observed_at": kept[5],
    }


def _pair(event: CrossingEvent, state: Consignment, config: DetectionConfig) -> Any:
    """(entry, exit) when `event` completes a pair, else None (and `event` is kept)."""
    new = _kept(event)
    window = config.window_ns
    if (
        event.direction is Direction.ENTRY
        and event.from_country not in config.destinations_of_concern
    ):
        lo, hi = event.instant_ns, event.instant_ns + window
        exits = [x for x in state.exits if lo <= x[0] <= hi]
        if exits:
            return new, min(exits, key=lambda x: (x[0], x[1]))
        state.entries.append(new)
    elif event.direction is Direction.EXIT and event.to_country in config.destinations_of_concern:
        lo, hi = event.instant_ns - window, event.instant_ns
        entries = [e for e in state.entries if lo <= e[0] <= hi]
        if entries:
            return min(entries, key=lambda e: (-e[0], e[1])), new
        state.exits.append(new)
    return None


def _flag(consignment_id: str, state: Consignment, pair: Any, config: DetectionConfig) -> bytes:
    entry, exit_ = pair
    severity, reasons = config.watchlist.assess(state.hs_codes)
    reasons += [f"declared-destination:{c}" for c in sorted(state.declared) if c != exit_[4]]
    dwell_ns = exit_[0] - entry[0]
    return orjson.dumps(
        {
            "schema": "flag/1",
            "flag_id": hashlib.sha256(f"{RULE}\n{consignment_id}".encode()).hexdigest()[:32],
            "rule": RULE,
            "consignment_id": consignment_id,
            "severity": severity.label,
            "reasons": reasons,
            "entry": _public(entry),
            "exit": _public(exit_),
            "dwell_seconds": dwell_ns // 1_000_000_000
            if dwell_ns % 1_000_000_000 == 0
            else dwell_ns / 1e9,
            "window_seconds": config.window_seconds,
            "hs_codes": sorted(state.hs_codes),
            "detected_at": format_utc(time.time_ns()),
        }
    )


def create_peer_app(
    app_id: str,
    *,
    bootstrap: str,
    crossings_topic: str,
    flags_topic: str,
    dead_letter_topic: str,
    partitions: int,
    config: DetectionConfig,
    on_processed: Callable[[int], None] = lambda n: None,
) -> tuple[faust.App, PeerStats]:
    """The faust app (consumer group and app id `app_id`) and the counts it keeps.

    `on_processed(1)` is called after each event is fully handled (the benchmark's meter).
    The changelog topic must exist: internal topics are not auto-created here, as in the
    worker (`topic_allow_declare=False`; the benchmark broker has auto-creation off).
    """
    app = new_faust_app(app_id, bootstrap)
    crossings = app.topic(crossings_topic, key_type=bytes, value_type=bytes)
    flags = app.topic(flags_topic, key_type=bytes, value_type=bytes)
    dead_letters = app.topic(dead_letter_topic, key_type=bytes, value_type=bytes)
    table = app.Table(
        TABLE_NAME,
        partitions=partitions,
        key_type=str,
        value_type=Consignment,  # keys and values as JSON (faust's default for these types)
    )
    stats = PeerStats()
    monitored = config.monitored_country

    @app.agent(crossings, name="transit-rule")
    async def transit_rule(stream: faust.StreamT[bytes]) -> None:
        async for key, value in stream.items():
            try:
                event = parse_crossing(value, monitored)
                if key != event.consignment_id.encode():
                    raise InvalidCrossing("key_mismatch", "Kafka key is not the consignment_id")
            except InvalidCrossing as error:
                stats.rejected += 1
                await dead_letters.send(
                    key=key, value=value, headers=[("error", error.reason.encode())]
                )
                on_processed(1)
                continue
            cid = event.consignment_id
            state = table.get(cid)
            if state is None:
                state = Consignment(entries=[], exits=[], hs_codes=[], declared=[], seen=[])
            if event.event_id in state.seen:
                stats.duplicates += 1
                on_processed(1)
                continue
            state.seen.append(event.event_id)
            state.hs_codes = sorted(set(state.hs_codes).union(event.hs_codes))
            if event.declared_destination and event.declared_destination not in state.declared:
                state.declared.append(event.declared_destination)
            if not state.flagged:
                pair = _pair(event, state, config)
                if pair is not None:
                    await flags.send(key=cid.encode(), value=_flag(cid, state, pair, config))
                    stats.flags += 1
                    state.flagged = True
                    state.entries, state.exits = [], []
            table[cid] = state  # a table only sees (and logs) what is assigned back to it
            on_processed(1)

    return app, stats
