"""The worker's batch step without a broker: ordering of writes, dead letters, crash safety."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import orjson
import pytest
from builders import CHPL, crossing_doc

from bordermon.core import DetectionConfig, Flag
from bordermon.core.pipeline import Message, Reject
from bordermon.processor.batch import BatchProcessor
from bordermon.processor.dead_letter import dead_letter_headers
from bordermon.stores.memory import MemoryStore

# Transit only: this tests the worker's write order, which the other engineer is reworking for
# the link stage; `metrics.record_flag` does not yet take an entry-less export-without-permit
# flag (its owner updates it).
CONFIG = DetectionConfig(watchlist=CHPL, rules=frozenset({"transit-to-ru"}))


class Sinks:
    """Records what was sent; can fail the next flag send to simulate a crash."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.flags: list[Flag] = []
        self.dead: list[Reject] = []
        self.fail_next_flag_send = False
        self.states_seen_at_send: list[bool] = []

    async def send_flags(self, flags: Sequence[Flag]) -> None:
        # The state holding the flag must already be durable when the flag is produced.
        stored = await self.store.load([f.consignment_id for f in flags])
        self.states_seen_at_send += [
            any(p.flag_id == f.flag_id for p in stored[f.consignment_id].pending) for f in flags
        ]
        if self.fail_next_flag_send:
            self.fail_next_flag_send = False
            raise ConnectionError("broker went away")
        self.flags += flags

    async def send_dead_letters(self, rejects: Sequence[Reject]) -> None:
        self.dead += rejects


def message(offset: int, key: str | None = "A", **fields: object) -> Message:
    doc = crossing_doc(consignment_id="A", **fields)
    return Message(
        value=orjson.dumps(doc),
        key=None if key is None else key.encode(),
        check_key=True,
        position=offset,
        partition=2,
        timestamp_ms=1_700_000_000_000,
    )


def scenario() -> list[Message]:
    return [
        message(
            0, event_id="x1", from_country="KZ", to_country="RU", observed_at="2024-03-03T00:00:00Z"
        ),
        message(1, event_id="e1", observed_at="2024-03-01T00:00:00Z"),
        Message(value=b"{oops", key=b"A", check_key=True, position=2, partition=2),
        message(3, key="B", event_id="e2"),
        message(4, event_id="e1", observed_at="2024-03-01T00:00:00Z"),
    ]


def test_batch_dead_letters_flags_and_state() -> None:
    store = MemoryStore(3600)
    sinks = Sinks(store)
    processor = BatchProcessor(CONFIG, store, sinks, sinks, clock=lambda: 0)
    report = asyncio.run(processor.process(scenario()))
    assert [(r.message.position, r.reason) for r in sinks.dead] == [
        (2, "invalid_json"),
        (3, "key_mismatch"),
    ]
    assert [f.consignment_id for f in sinks.flags] == ["A"]
    assert sinks.states_seen_at_send == [True]
    stored = asyncio.run(store.load(["A"]))["A"]
    assert stored.pending == [] and "transit-to-ru" in stored.flagged
    tally = processor.tally
    assert (tally.read, tally.accepted, tally.duplicates, tally.rejected_total) == (5, 2, 1, 2)
    assert tally.read == tally.accepted + tally.duplicates + tally.rejected_total
    assert report.rejected == 2


def test_reprocessing_the_same_batch_emits_no_new_flag() -> None:
    store = MemoryStore(3600)
    sinks = Sinks(store)
    processor = BatchProcessor(CONFIG, store, sinks, sinks, clock=lambda: 0)
    asyncio.run(processor.process(scenario()))
    asyncio.run(processor.process(scenario()))
    assert len(sinks.flags) == 1


def test_crash_before_the_flag_is_acknowledged_resends_the_same_flag() -> None:
    store = MemoryStore(3600)
    sinks = Sinks(store)
    sinks.fail_next_flag_send = True
    ticks = iter(range(1, 100))
    processor = BatchProcessor(CONFIG, store, sinks, sinks, clock=lambda: next(ticks) * 10**9)
    with pytest.raises(ConnectionError):
        asyncio.run(processor.process(scenario()))
    assert sinks.flags == []
    # The worker restarts: offsets were not committed, the same batch comes again.
    restarted = BatchProcessor(CONFIG, store, sinks, sinks, clock=lambda: next(ticks) * 10**9)
    asyncio.run(restarted.process(scenario()))
    [flag] = sinks.flags
    assert flag.detected_at == "1970-01-01T00:00:01.000000Z"  # the first detection's time


def test_dead_letter_headers_follow_the_spec() -> None:
    reject = Reject(Message(b"{oops", b"A", True, position=41, partition=3), "invalid_json", "x")
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
    processor = BatchProcessor(CONFIG, store, sinks, sinks, clock=lambda: 0)
    batch = [message(0, event_id="boom"), *scenario()]
    asyncio.run(processor.process(batch))
    assert (sinks.dead[0].message.position, sinks.dead[0].reason) == (0, "internal_error")
    assert [f.consignment_id for f in sinks.flags] == ["A"]
