"""The worker's batch step without a broker: ordering of writes, dead letters, crash safety."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any, NamedTuple

import orjson
import pytest

from bordermon.core import DetectionConfig
from bordermon.core.link import LinkState
from bordermon.core.pipeline import Message, Reject
from bordermon.core.rules import RULE_NAMES
from bordermon.processor.batch import (
    BatchProcessor,
    PoisonLimit,
    PoisonLimitExceeded,
    Record,
    StageTopics,
)
from bordermon.processor.dead_letter import dead_letter_headers
from bordermon.processor.stages import ConsignmentStage, LinkStage
from bordermon.stores.base import LINKS, StoreUnavailable
from bordermon.stores.memory import MemoryStore
from support.builders import CHPL, crossing_doc

# Transit only: these scenarios count transit flags; all three rules run in ALL_RULES below.
CONFIG = DetectionConfig(watchlist=CHPL, rules=frozenset({"transit-to-ru"}))


class Crash(BaseException):
    """The process dying mid-batch: not an error the processor handles (like SIGKILL)."""


class Sinks:
    """A producer that records what was sent, by topic; can fail the next flag send to
    simulate a crash."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.records: list[Record] = []
        self.fail_next_flag_send = False
        self.states_seen_at_send: list[bool] = []

    async def send_all(self, records: Sequence[Record]) -> None:
        flags = [orjson.loads(r.value) for r in records if r.topic == TOPICS.flags]
        if flags:
            # The state holding the flag must already be durable when the flag is produced.
            stored = await self.store.load([f["consignment_id"] for f in flags])
            self.states_seen_at_send += [
                any(p.flag_id == f["flag_id"] for p in stored[f["consignment_id"]].pending)
                for f in flags
            ]
            if self.fail_next_flag_send:
                self.fail_next_flag_send = False
                raise Crash("killed while producing")
        self.records += records

    @property
    def flags(self) -> list[Any]:
        """Flags sent, as subscribers read them."""
        return [orjson.loads(r.value) for r in self.records if r.topic == TOPICS.flags]

    @property
    def dead(self) -> list[Dead]:
        return [
            Dead(int(dict(r.headers or [])["source_offset"]), dict(r.headers or []))
            for r in self.records
            if r.topic == TOPICS.dead_letter
        ]


class Dead(NamedTuple):
    """A dead letter: the source offset and its headers."""

    offset: int
    headers: dict[str, bytes]

    @property
    def reason(self) -> str:
        return self.headers["error"].decode()

    @property
    def detail(self) -> str:
        return self.headers["detail"].decode()


TOPICS = StageTopics(source="crossings", flags="flags", dead_letter="dlq", forward="links")


class RecordingRecorder:
    """The metrics double: what the processor recorded, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def batch(self, stage: str, size: int, seconds: float) -> None:
        self.calls.append(("batch", stage, size))

    def rejects(self, reasons: Any, *, dead_lettered: bool) -> None:
        self.calls.append(("rejects", tuple(reasons), dead_lettered))

    def events(self, events: Any) -> None:
        self.calls.append(("events", len(list(events))))

    def duplicates(self, count: int) -> None:
        self.calls.append(("duplicates", count))

    def flags(self, flags: Any) -> None:
        for flag, scan_to_flag_s in flags:
            self.calls.append(("flag", flag.rule, flag.consignment_id, scan_to_flag_s is not None))

    def store_unavailable(self) -> None:
        self.calls.append(("store_unavailable",))

    def save_refused(self, reason: str, count: int = 1) -> None:
        self.calls.append(("save_refused", reason, count))

    def state_quarantined(self, store: str) -> None:
        self.calls.append(("state_quarantined", store))

    def round_trip(self, operation: str) -> Any:
        self.calls.append(("round_trip", operation))
        return contextlib.nullcontext()

    def named(self, name: str) -> list[tuple[Any, ...]]:
        return [call for call in self.calls if call[0] == name]


def processor_for(
    store: MemoryStore, sinks: Sinks, config: DetectionConfig = CONFIG, **options: Any
) -> BatchProcessor[Any, Any]:
    return BatchProcessor(ConsignmentStage(config), store, sinks, TOPICS, **options)


def message(offset: int, key: str | None = "A", **fields: object) -> Message:
    doc = crossing_doc(consignment_id="A", **fields)
    return Message(
        value=orjson.dumps(doc),
        key=None if key is None else key.encode(),
        check_key=True,
        offset=offset,
        partition=2,
        timestamp_ms=1_700_000_000_000,
    )


def scenario() -> list[Message]:
    return [
        message(
            0, event_id="x1", from_country="KZ", to_country="RU", observed_at="2024-03-03T00:00:00Z"
        ),
        message(1, event_id="e1", observed_at="2024-03-01T00:00:00Z"),
        Message(value=b"{oops", key=b"A", check_key=True, offset=2, partition=2),
        message(3, key="B", event_id="e2"),
        message(4, event_id="e1", observed_at="2024-03-01T00:00:00Z"),
    ]


def test_batch_dead_letters_flags_and_state() -> None:
    store = MemoryStore(3600)
    sinks = Sinks(store)
    recorder = RecordingRecorder()
    processor = processor_for(store, sinks, clock=lambda: 0, recorder=recorder)
    report = asyncio.run(processor.process(scenario()))
    assert [(r.offset, r.reason) for r in sinks.dead] == [
        (2, "invalid_json"),
        (3, "key_mismatch"),
    ]
    assert [f["consignment_id"] for f in sinks.flags] == ["A"]
    assert sinks.states_seen_at_send == [True]
    stored = asyncio.run(store.load(["A"]))["A"]
    assert stored.pending == [] and "transit-to-ru" in stored.flagged
    tally = processor.tally
    assert (tally.read, tally.accepted, tally.duplicates, tally.rejected_total) == (5, 2, 1, 2)
    assert tally.read == tally.accepted + tally.duplicates + tally.rejected_total
    assert report.rejected == 2
    # What the metrics saw: once each, the flag with its scan-to-flag latency.
    assert recorder.named("rejects") == [("rejects", ("invalid_json", "key_mismatch"), True)]
    assert recorder.named("flag") == [("flag", "transit-to-ru", "A", True)]
    assert recorder.named("events") == [("events", 3)]  # e1's duplicate included, as before
    assert recorder.named("duplicates") == [("duplicates", 1)]
    assert recorder.named("batch") == [("batch", "consignments", 5)]


def test_reprocessing_the_same_batch_emits_no_new_flag() -> None:
    store = MemoryStore(3600)
    sinks = Sinks(store)
    processor = processor_for(store, sinks, clock=lambda: 0)
    asyncio.run(processor.process(scenario()))
    asyncio.run(processor.process(scenario()))
    assert len(sinks.flags) == 1


def test_crash_before_the_flag_is_acknowledged_resends_the_same_flag() -> None:
    store = MemoryStore(3600)
    sinks = Sinks(store)
    sinks.fail_next_flag_send = True
    ticks = iter(range(1, 100))
    processor = processor_for(store, sinks, clock=lambda: next(ticks) * 10**9)
    with pytest.raises(Crash):
        asyncio.run(processor.process(scenario()))
    assert sinks.flags == []
    # The worker restarts: offsets were not committed, the same batch comes again.
    restarted = processor_for(store, sinks, clock=lambda: next(ticks) * 10**9)
    asyncio.run(restarted.process(scenario()))
    [flag] = sinks.flags
    assert flag["detected_at"] == "1970-01-01T00:00:01.000000Z"  # the first detection's time


def test_dead_letter_headers_follow_the_spec() -> None:
    reject = Reject(Message(b"{oops", b"A", True, offset=41, partition=3), "invalid_json", "x")
    headers = dict(dead_letter_headers(reject, "bordermon.crossings"))
    assert headers == {
        "error": b"invalid_json",
        "detail": b"x",
        "source_topic": b"bordermon.crossings",
        "source_partition": b"3",
        "source_offset": b"41",
    }


def test_a_validator_bug_dead_letters_the_message_and_the_batch_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from bordermon.core import pipeline

    real = pipeline.parse_crossing

    def flaky(raw: bytes, monitored_country: str = "KZ") -> object:
        if b"boom" in raw:
            raise TypeError("unforeseen input")
        return real(raw, monitored_country)

    monkeypatch.setattr(pipeline, "parse_crossing", flaky)
    store = MemoryStore(3600)
    sinks = Sinks(store)
    processor = processor_for(store, sinks, clock=lambda: 0)
    batch = [message(0, event_id="boom"), *scenario()]
    asyncio.run(processor.process(batch))
    assert (sinks.dead[0].offset, sinks.dead[0].reason) == (0, "internal_error")
    assert [f["consignment_id"] for f in sinks.flags] == ["A"]


# --- poison isolation, retries without repeated side effects, single writer (SPEC §6) ---------


def poisoned_apply(monkeypatch: pytest.MonkeyPatch, poison: str = "poison") -> None:
    """Make applying any event whose id starts with `poison` fail, as a bug would (today's
    example: an instant too large for the state codec)."""
    from bordermon.core import pipeline

    real = pipeline.apply

    def apply(state: object, event: object, *args: object, **kwargs: object) -> object:
        if getattr(event, "event_id", "").startswith(poison):
            raise TypeError("Integer exceeds 64-bit range")
        return real(state, event, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pipeline, "apply", apply)


def consignment_batch(count: int, poison_at: set[int]) -> list[Message]:
    """Entry + exit of `count` consignments; the entries at `poison_at` are poison."""
    batch = []
    for n in range(count):
        cid = f"C{n}"
        entry_id = f"poison-{n}" if n in poison_at else f"e{n}"
        batch.append(message_for(cid, 2 * n, event_id=entry_id))
        batch.append(
            message_for(
                cid,
                2 * n + 1,
                event_id=f"x{n}",
                from_country="KZ",
                to_country="RU",
                observed_at="2024-03-03T00:00:00Z",
            )
        )
    return batch


def message_for(cid: str, offset: int, **fields: object) -> Message:
    return Message(
        orjson.dumps(crossing_doc(consignment_id=cid, **fields)),
        cid.encode(),
        True,
        offset=offset,
        partition=offset % 3,
    )


def test_a_poison_message_is_dead_lettered_and_the_rest_of_the_batch_applied(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    poisoned_apply(monkeypatch)
    store = MemoryStore(3600)
    sinks = Sinks(store)
    processor = processor_for(store, sinks, clock=lambda: 0)
    batch = consignment_batch(40, poison_at={7, 30})
    report = asyncio.run(processor.process(batch))

    assert [(d.offset, d.reason) for d in sinks.dead] == [
        (14, "internal_error"),
        (60, "internal_error"),
    ]
    assert sinks.dead[0].detail == "processing failed: TypeError: Integer exceeds 64-bit range"
    # Every other consignment flagged once; the two poisoned ones only lost their entry.
    assert sorted(f["consignment_id"] for f in sinks.flags) == sorted(
        f"C{n}" for n in range(40) if n not in {7, 30}
    )
    assert report.poison == 2
    tally = processor.tally
    assert tally.rejected == {"internal_error": 2}
    assert tally.read == 80 == tally.accepted + tally.duplicates + tally.rejected_total
    # The poison is now out of the way: the same batch again changes nothing.
    asyncio.run(processor.process(batch))
    assert len(sinks.flags) == 38


def test_most_messages_failing_stops_the_worker_instead_of_emptying_the_topic(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    poisoned_apply(monkeypatch, poison="")  # every event fails: a broken deploy
    store = MemoryStore(3600)
    sinks = Sinks(store)
    processor = processor_for(
        store, sinks, poison_limit=PoisonLimit(0.5, window=100, min_failures=5)
    )
    with pytest.raises(PoisonLimitExceeded, match="5 of the last 5 messages failed"):
        asyncio.run(processor.process(consignment_batch(20, poison_at=set())))
    assert len(sinks.dead) == 4  # stopped before dead-lettering the fifth


def test_a_few_poison_messages_among_many_good_ones_stay_under_the_limit() -> None:
    limit = PoisonLimit(0.5, window=10, min_failures=3)
    for _ in range(5):
        limit.record_ok(9)
        limit.record_failure()
        limit.record_failure()


class FlakyStore(MemoryStore):
    """Refuses the first `outages` saves as an unreachable Redis would."""

    def __init__(self, outages: int) -> None:
        super().__init__(3600)
        self.outages = outages

    async def save(self, states: Any, **kwargs: Any) -> dict[str, int]:
        if self.outages:
            self.outages -= 1
            raise StoreUnavailable("Redis at redis://localhost:6379/0 unavailable")
        return await super().save(states, **kwargs)


def test_a_store_outage_retries_the_state_phase_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(asyncio, "sleep", _no_sleep)
    store = FlakyStore(outages=3)
    sinks = Sinks(store)
    recorder = RecordingRecorder()
    processor = processor_for(store, sinks, clock=lambda: 0, recorder=recorder)
    asyncio.run(processor.process(scenario()))
    assert len(recorder.named("store_unavailable")) == 3
    assert len(recorder.named("rejects")) == 1 and len(recorder.named("flag")) == 1
    # Dead letters once, counts once, although the state phase ran four times.
    assert [r.offset for r in sinks.dead] == [2, 3]
    assert [f["consignment_id"] for f in sinks.flags] == ["A"]
    tally = processor.tally
    assert (tally.read, tally.accepted, tally.duplicates, tally.rejected_total) == (5, 2, 1, 2)


async def _no_sleep(seconds: float) -> None:
    return None


def test_a_worker_that_lost_its_partition_writes_nothing_and_stops_processing_it() -> None:
    store = MemoryStore(3600)
    old, new = Sinks(store), Sinks(store)
    recorder = RecordingRecorder()
    stale = processor_for(store, old, clock=lambda: 0, recorder=recorder)
    owner = processor_for(store, new, clock=lambda: 0)
    first, second = scenario()[:2]  # A's exit, then A's entry (partition 2)
    asyncio.run(stale.process([first]))
    # A rebalance gives partition 2 to `owner` while `stale` is paused; `owner` processes it.
    asyncio.run(owner.process([first, second]))
    assert [f["consignment_id"] for f in new.flags] == ["A"]
    before = asyncio.run(store.snapshot(["A"]))

    # `stale` resumes with the batch it had in hand: refused, nothing written, nothing sent.
    later = message(9, event_id="e9", observed_at="2024-03-02T00:00:00Z")
    report = asyncio.run(stale.process([later]))
    assert report.fenced == 1 and old.flags == [] and report.states_saved == 0
    assert asyncio.run(store.snapshot(["A"])) == before
    assert stale.fenced == {"crossings:2"}
    assert recorder.named("save_refused") == [("save_refused", "fenced", 1)]
    # ... and it skips that partition until its next assignment.
    assert asyncio.run(stale.process([later])).fenced == 1
    stale.on_assignment_changed()
    assert stale.fenced == set()


class Interleaved(MemoryStore):
    """Runs `between` once, right after the next snapshot: another writer getting in between
    this worker's load and its save."""

    def __init__(self) -> None:
        super().__init__(3600)
        self.between: Any = None

    async def snapshot(self, keys: Any) -> Any:
        result = await super().snapshot(keys)
        if self.between is not None:
            between, self.between = self.between, None
            await between()
        return result


def test_two_workers_writing_one_consignment_lose_nothing() -> None:
    # One consignment on two partitions (a Java-partitioned and a CRC32-partitioned scanner):
    # the entry reaches one worker, the exit another, and their loads and saves interleave.
    store = Interleaved()
    sinks_a, sinks_b = Sinks(store), Sinks(store)
    recorder = RecordingRecorder()
    worker_a = processor_for(store, sinks_a, clock=lambda: 0, recorder=recorder)
    worker_b = processor_for(store, sinks_b, clock=lambda: 0)
    exit_a, entry_a = scenario()[:2]

    async def other_writer() -> None:
        await worker_b.process([exit_a._replace(partition=5)])

    store.between = other_writer
    asyncio.run(worker_a.process([entry_a]))
    # A's first save conflicted with B's; A reloaded, re-applied, and found the pair.
    assert [f["consignment_id"] for f in sinks_a.flags + sinks_b.flags] == ["A"]
    stored = asyncio.run(store.load(["A"]))["A"]
    assert stored.accepted == 2 and "transit-to-ru" in stored.flagged
    assert recorder.named("save_refused") == [("save_refused", "conflict", 1)]


# --- the two stages of relabel-to-ru, through the processor ---------------------------------


ALL_RULES = DetectionConfig(watchlist=CHPL, rules=RULE_NAMES)


def relabel_scenario() -> list[Message]:
    """Consignment A enters with container MSCU 123456-5; weeks later B leaves for Russia in
    the same container (spelled differently) with goods of the same HS-6."""
    entry_a = message_for(
        "A", 0, event_id="a-in", transport={"mode": "road", "container_id": "mscu 123456-5"}
    )
    exit_b = message_for(
        "B",
        1,
        event_id="b-out",
        from_country="KZ",
        to_country="RU",
        observed_at="2024-04-10T00:00:00Z",
        permit_id="KZ-EL-1",
        transport={"mode": "road", "container_id": "MSCU1234565"},
    )
    return [entry_a, exit_b]


def as_link_messages(records: Sequence[Record]) -> list[Message]:
    return [
        Message(r.value, r.key, True, offset=n, partition=0, timestamp_ms=r.timestamp_ms)
        for n, r in enumerate(records)
        if r.topic == TOPICS.forward
    ]


def link_processor(store: MemoryStore[Any], sinks: Sinks) -> BatchProcessor[Any, Any]:
    topics = StageTopics(source="links", flags=TOPICS.flags, dead_letter=TOPICS.dead_letter)
    return BatchProcessor(LinkStage(ALL_RULES), store, sinks, topics, clock=lambda: 0)


def test_sightings_are_handed_on_before_the_state_is_saved_and_the_link_stage_flags() -> None:
    store = MemoryStore(3600)
    links: MemoryStore[LinkState] = MemoryStore(3600, codec=LINKS)
    sinks = Sinks(store)
    asyncio.run(processor_for(store, sinks, ALL_RULES, clock=lambda: 0).process(relabel_scenario()))
    forwarded = [r for r in sinks.records if r.topic == TOPICS.forward]
    assert [r.key for r in forwarded] == [b"container:MSCU1234565"] * 2

    link_sinks = Sinks(store)
    asyncio.run(link_processor(links, link_sinks).process(as_link_messages(sinks.records)))
    [flag] = link_sinks.flags
    assert (flag["rule"], flag["consignment_id"], flag["linked_consignment_id"]) == (
        "relabel-to-ru",
        "B",
        "A",
    )
    assert flag["link"] == "container:MSCU1234565"
    stored = asyncio.run(links.load(["container:MSCU1234565"]))
    assert stored["container:MSCU1234565"].pending == []


def test_a_crash_between_the_stages_resends_identical_sightings_and_no_flag_is_doubled() -> None:
    store = MemoryStore(3600)
    links: MemoryStore[LinkState] = MemoryStore(3600, codec=LINKS)
    sinks = Sinks(store)

    class CrashOnSave(MemoryStore):
        async def save(self, states: Any, **kwargs: Any) -> dict[str, int]:
            raise Crash("killed after the hand-over, before the save")

    with pytest.raises(Crash):
        asyncio.run(processor_for(CrashOnSave(3600), sinks, ALL_RULES).process(relabel_scenario()))
    first = list(sinks.records)
    # Restarted: offsets were not committed, the batch is read again and saved this time.
    asyncio.run(processor_for(store, sinks, ALL_RULES).process(relabel_scenario()))
    again = sinks.records[len(first) :]
    assert [r.value for r in again] == [r.value for r in first]  # the very same bytes

    link_sinks = Sinks(store)
    asyncio.run(link_processor(links, link_sinks).process(as_link_messages(sinks.records)))
    assert len(link_sinks.flags) == 1


def test_an_unreadable_link_record_is_dead_lettered_and_the_rest_applied() -> None:
    store = MemoryStore(3600)
    links: MemoryStore[LinkState] = MemoryStore(3600, codec=LINKS)
    sinks = Sinks(store)
    asyncio.run(processor_for(store, sinks, ALL_RULES).process(relabel_scenario()))
    good = as_link_messages(sinks.records)
    bad = Message(b"[1, 2", b"container:X", True, offset=7, partition=0)
    link_sinks = Sinks(store)
    asyncio.run(link_processor(links, link_sinks).process([bad, *good]))
    assert [(d.offset, d.reason) for d in link_sinks.dead] == [(7, "internal_error")]
    assert link_sinks.dead[0].headers["source_topic"] == b"links"
    assert len(link_sinks.flags) == 1
