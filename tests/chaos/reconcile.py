"""The chaos suite's reconciliation: what is in Kafka and Redis after the run, checked exactly.

Nothing here trusts the workers' own counters (a SIGKILL resets them). The evidence is:

- the crossings topic, read in full (every partition from 0 to its end offset);
- the dead-letter topic, read in full (each record names its source partition and offset);
- the consumer group's committed offsets;
- every consignment state in Redis, read through the store's codec (the fingerprints of the
  event ids applied, and the kept crossings, which are matched by id);
- the flags topic, read in full;
- the workers' logs (fenced saves, outages met).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import redis
from confluent_kafka import TopicPartition

from bordermon.core.crossing import InvalidCrossing, parse_crossing
from bordermon.core.state import ConsignmentState, fingerprint
from bordermon.stores.base import CONSIGNMENTS
from bordermon.stores.redis_store import (
    DEFAULT_OWNER_PREFIX,
    DEFAULT_PREFIX,
    LINK_PREFIX,
    split_revision,
)
from support.flags import differing_fields, is_arrival_order_difference
from support.kafka_io import committed_offsets, end_offsets, kafka_reader

STATE_PREFIX = DEFAULT_PREFIX.encode()
OWNER_PREFIX = DEFAULT_OWNER_PREFIX.encode()
REVISIONED_PREFIXES = (STATE_PREFIX, LINK_PREFIX.encode())
"""Consignment states and link states: both are saved with revisions."""


@dataclass
class Record:
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, bytes] = field(default_factory=dict)


def read_all(bootstrap: str, topic: str, timeout: float = 120.0) -> list[Record]:
    """Every record of every partition, from offset 0 to the end offset taken at the start."""
    import time

    ends = end_offsets(bootstrap, topic)
    consumer = kafka_reader(bootstrap, "bordermon-chaos-reader")
    wanted = {p: end for p, end in ends.items() if end > 0}
    consumer.assign([TopicPartition(topic, p, 0) for p in wanted])
    records: list[Record] = []
    position = dict.fromkeys(wanted, 0)
    deadline = time.monotonic() + timeout
    try:
        while any(position[p] < end for p, end in wanted.items()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: read {position} of {wanted} in {timeout:.0f}s")
            message = consumer.poll(1.0)
            if message is None or message.error() is not None:
                continue
            part, offset = message.partition(), message.offset()
            if offset >= wanted[part]:
                continue
            position[part] = offset + 1
            headers = {k: v or b"" for k, v in (message.headers() or [])}
            records.append(Record(part, offset, message.key(), message.value() or b"", headers))
    finally:
        consumer.close()
    return records


def load_states(redis_url: str, consignment_ids: Iterable[str]) -> dict[str, ConsignmentState]:
    """consignment id -> its state, for every stored state among these ids (read through the
    store's codec: whatever format the workers wrote)."""
    client: redis.Redis[bytes] = redis.Redis.from_url(redis_url)
    ids = sorted(set(consignment_ids))
    states: dict[str, ConsignmentState] = {}
    try:
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            values = client.mget([STATE_PREFIX + i.encode() for i in chunk])
            for cid, raw in zip(chunk, values, strict=True):
                if raw is not None:
                    states[cid] = CONSIGNMENTS.decode(cid, split_revision(raw)[1])
    finally:
        client.close()
    return states


def state_revisions(redis_url: str) -> dict[bytes, int]:
    """Revision of every stored consignment and link state (SCAN + the 24-byte header of
    each): cheap enough to sample after every fault."""
    client: redis.Redis[bytes] = redis.Redis.from_url(redis_url, socket_timeout=10)
    try:
        keys = [
            key
            for prefix in REVISIONED_PREFIXES
            for key in client.scan_iter(match=prefix + b"*", count=1000)
        ]
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.getrange(key, 0, 23)
        heads = pipe.execute()
    finally:
        client.close()
    return {key: split_revision(head + b"\n")[0] for key, head in zip(keys, heads, strict=True)}


def owner_tokens(redis_url: str, topic: str, partitions: Iterable[int]) -> dict[int, int]:
    """The current owner token of each partition: how many times it was claimed."""
    client: redis.Redis[bytes] = redis.Redis.from_url(redis_url)
    try:
        keys = [OWNER_PREFIX + f"{topic}:{p}".encode() for p in partitions]
        values = client.mget(keys) if keys else []
    finally:
        client.close()
    return {p: int(v or 0) for p, v in zip(partitions, values, strict=True)}


def _applied_ids(state: ConsignmentState) -> tuple[set[bytes], set[str]]:
    return set(state.seen), {kept.event_id for kept in [*state.entries, *state.exits]}


FENCED_LINE = re.compile(r"claimed by another worker.*?(\d+) message\(s\) left to the new owner")
LOG_EVENTS = {
    "fenced_saves": "claimed by another worker",
    "store_unavailable_retries": "state store unavailable",
    "kafka_unavailable_retries": "Kafka unavailable, retrying",
    "save_conflicts": "another writer changed",
    "poison_logged": "poison message at partition",
    "unexpected_errors": "unexpected error while processing a batch",
}


def scan_logs(logs: Iterable[Path]) -> dict[str, Any]:
    counts: Counter[str] = Counter()
    left_to_new_owner = 0
    fenced_where: list[str] = []
    for path in logs:
        for line in path.read_text(errors="replace").splitlines():
            for name, needle in LOG_EVENTS.items():
                if needle in line:
                    counts[name] += 1
            match = FENCED_LINE.search(line)
            if match:
                left_to_new_owner += int(match[1])
                fenced_where.append(f"{path.name}: {line.strip()[:200]}")
    return {
        **{name: counts[name] for name in LOG_EVENTS},
        "messages_left_to_new_owner": left_to_new_owner,
        "fenced_lines": fenced_where[:20],
    }


@dataclass
class Checks:
    failures: list[str] = field(default_factory=list)

    def expect(self, ok: bool, line: str) -> bool:
        if not ok:
            self.failures.append(line)
        return ok

    def examples(self, what: str, items: list[Any], limit: int = 5) -> None:
        if items:
            shown = ", ".join(map(str, items[:limit]))
            more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
            self.failures.append(f"{what}: {len(items)}: {shown}{more}")


def reconcile(
    *,
    bootstrap: str,
    redis_url: str,
    topics: dict[str, str],
    group: str,
    published: list[bytes],
    expected_reasons: dict[bytes, str],
    expected_flags: dict[str, dict[str, Any]],
    worker_logs: list[Path],
) -> dict[str, Any]:
    checks = Checks()
    crossings = read_all(bootstrap, topics["crossings"])
    dead = read_all(bootstrap, topics["dead_letter"])
    flag_records = read_all(bootstrap, topics["flags"])
    ends = end_offsets(bootstrap, topics["crossings"])
    committed = committed_offsets(bootstrap, topics["crossings"], group)
    link_ends = end_offsets(bootstrap, topics["links"])
    link_committed = committed_offsets(bootstrap, topics["links"], group)
    behind = {
        p: (max(link_committed.get(p, 0), 0), end)
        for p, end in link_ends.items()
        if max(link_committed.get(p, 0), 0) != end
    }
    checks.expect(
        not behind,
        f"links topic: committed offsets below the end (partition: (committed, end)): {behind}",
    )

    # The topic holds exactly the workload (the publisher is idempotent: no retry duplicates).
    checks.expect(
        Counter(r.value for r in crossings) == Counter(published),
        f"the crossings topic does not hold exactly the {len(published)} published lines"
        f" ({len(crossings)} records)",
    )

    # Dead letters by source offset.
    by_source: dict[tuple[int, int], list[Record]] = defaultdict(list)
    bad_headers = []
    from_links = []
    for record in dead:
        where = f"dlq offset {record.partition}:{record.offset}"
        try:
            source = (int(record.headers["source_partition"]), int(record.headers["source_offset"]))
        except (KeyError, ValueError):
            bad_headers.append(where)
            continue
        source_topic = record.headers.get("source_topic", b"").decode()
        if source_topic == topics["links"]:
            from_links.append(f"{where} ({record.headers.get('error', b'').decode()})")
        elif source_topic != topics["crossings"]:
            bad_headers.append(f"{where} (source_topic {source_topic!r})")
        else:
            by_source[source].append(record)
    checks.examples("dead letters without usable source headers", bad_headers)
    # The worker writes the link sightings itself: one it cannot read or apply is a bug.
    checks.examples("link sightings dead-lettered", from_links)

    states = load_states(redis_url, _consignment_ids(crossings))
    applied_by_cid = {cid: _applied_ids(state) for cid, state in states.items()}

    per_partition: dict[int, dict[str, int]] = {}
    lost, both, wrong_bytes, wrong_reason, stray_dlq = [], [], [], [], []
    seen_events: set[tuple[str, str]] = set()
    for p, end in sorted(ends.items()):
        per_partition[p] = {
            "end": end,
            "committed": committed.get(p, -1),
            "read": 0,
            "applied": 0,
            "duplicates": 0,
            "dead_lettered": 0,
        }
    for record in sorted(crossings, key=lambda r: (r.partition, r.offset)):
        counts = per_partition[record.partition]
        counts["read"] += 1
        where = f"{record.partition}:{record.offset}"
        letters = by_source.get((record.partition, record.offset), [])
        event = _event(record.value)
        applied = False
        if event is not None:
            prints, kept = applied_by_cid.get(event.consignment_id, (set(), set()))
            applied = fingerprint(event.event_id) in prints or event.event_id in kept
        if letters and applied:
            both.append(where)
        elif not letters and not applied:
            lost.append(where)
        if letters:
            counts["dead_lettered"] += 1
            if any(letter.value != record.value for letter in letters):
                wrong_bytes.append(where)
            reasons = {letter.headers.get("error", b"").decode() for letter in letters}
            expected = expected_reasons.get(record.value)
            if reasons != {expected}:
                wrong_reason.append(f"{where} {sorted(reasons)} (expected {expected})")
        elif applied and event is not None:
            if (event.consignment_id, event.event_id) in seen_events:
                counts["duplicates"] += 1
            else:
                counts["applied"] += 1
                seen_events.add((event.consignment_id, event.event_id))
    known = {(r.partition, r.offset) for r in crossings}
    stray_dlq = [f"{p}:{o}" for p, o in by_source if (p, o) not in known]

    for p, counts in per_partition.items():
        checks.expect(
            counts["committed"] == counts["end"],
            f"partition {p}: committed offset {counts['committed']} != end offset {counts['end']}",
        )
        checks.expect(
            counts["read"] == counts["end"],
            f"partition {p}: read {counts['read']} records, end offset is {counts['end']}",
        )
        total = counts["applied"] + counts["duplicates"] + counts["dead_lettered"]
        checks.expect(
            counts["read"] == total,
            f"partition {p}: read {counts['read']} != applied {counts['applied']} + duplicates"
            f" {counts['duplicates']} + dead-lettered {counts['dead_lettered']}",
        )
    checks.examples("offsets neither applied nor dead-lettered (lost)", lost)
    checks.examples("offsets both applied and dead-lettered", both)
    checks.examples("dead letters whose bytes differ from the original", wrong_bytes)
    checks.examples("dead letters with a reason other than the ground truth's", wrong_reason)
    checks.examples("dead letters naming an offset that is not in the topic", stray_dlq)
    must_dlq = sum(1 for r in crossings if r.value in expected_reasons)
    dlq_offsets = sum(c["dead_lettered"] for c in per_partition.values())
    checks.expect(
        dlq_offsets == must_dlq,
        f"{dlq_offsets} offsets dead-lettered, the ground truth says {must_dlq}",
    )
    pending = sorted(cid for cid, state in states.items() if state.pending)
    checks.examples("states still holding a pending (unacknowledged) flag", pending)

    flags = _check_flags(checks, flag_records, expected_flags)
    totals = {
        name: sum(c[name] for c in per_partition.values())
        for name in ("end", "read", "applied", "duplicates", "dead_lettered")
    }
    return {
        "ok": not checks.failures,
        "failures": checks.failures,
        "partitions": per_partition,
        "totals": totals,
        "dead_letters": {
            "records": len(dead),
            "distinct_offsets": len(by_source),
            "redelivered": len(dead) - len(by_source),
            "by_reason": dict(
                Counter(r.headers.get("error", b"").decode() for r in dead).most_common()
            ),
        },
        "flags": flags,
        "links": {
            "records": sum(link_ends.values()),
            "committed": sum(max(o, 0) for o in link_committed.values()),
            "dead_lettered": len(from_links),
        },
        "states": {
            "stored": len(states),
            "pending_left": len(pending),
            "max_revision": max(
                (
                    revision
                    for key, revision in state_revisions(redis_url).items()
                    if key.startswith(STATE_PREFIX)
                ),
                default=0,
            ),
            "owner_claims": owner_tokens(redis_url, topics["crossings"], sorted(ends)),
            "link_owner_claims": owner_tokens(redis_url, topics["links"], sorted(link_ends)),
        },
        "workers": scan_logs(worker_logs),
    }


def _check_flags(
    checks: Checks, records: list[Record], expected: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    first: dict[str, Record] = {}
    different, wrong_key, wrong_content = [], [], []
    details: list[dict[str, Any]] = []
    order_dependent: list[str] = []
    for record in records:
        doc = orjson.loads(record.value)
        flag_id = doc["flag_id"]
        if flag_id not in first:
            first[flag_id] = record
            want = expected.get(flag_id)
            fields = [] if want is None else differing_fields(doc, want)
            if fields:
                note = f"{flag_id} ({doc.get('rule')}; differs in {fields})"
                details.append({"got": doc, "replay": want})
                if is_arrival_order_difference(doc, fields):
                    order_dependent.append(note)
                else:
                    wrong_content.append(note)
            if record.key != str(doc["consignment_id"]).encode():
                wrong_key.append(flag_id)
        elif record.value != first[flag_id].value:
            different.append(flag_id)
    missing = sorted(set(expected) - set(first))
    unexpected = sorted(set(first) - set(expected))
    checks.examples("expected flags never published", missing)
    checks.examples("flags published that replay does not raise", unexpected)
    checks.examples("re-delivered flags that differ from their first delivery", different)
    checks.examples("flags whose content differs from replay's (detected_at aside)", wrong_content)
    # The consignment rules' flags must equal replay's; relabel-to-ru's may report another entry.
    checks.examples("flags not keyed by their consignment_id", wrong_key)
    return {
        "records": len(records),
        "distinct": len(first),
        "expected": len(expected),
        "redeliveries": len(records) - len(first),
        "missing": len(missing),
        "unexpected": len(unexpected),
        "relabel_order_dependent": order_dependent,
        "content_differences": details[:10],
    }


def _event(value: bytes) -> Any:
    try:
        return parse_crossing(value)
    except InvalidCrossing:
        return None


def _consignment_ids(records: Iterable[Record]) -> set[str]:
    ids = set()
    for record in records:
        event = _event(record.value)
        if event is not None:
            ids.add(event.consignment_id)
    return ids
