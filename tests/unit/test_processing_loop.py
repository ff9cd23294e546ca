"""The worker's consume-process-commit lifecycle (`ProcessingLoop`) over an in-memory broker,
driving real batch processors (the consignment stage, an in-memory store): commits only after
a durable batch, none after a failure, revocation waits for the in-flight batch, batches that
predate a revocation are dropped, fenced partitions are left to their new owner. The same loop
runs against real Kafka in tests/integration."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from typing import Any, NamedTuple

import orjson
import pytest
from aiokafka.structs import ConsumerRecord

from bordermon.core import DetectionConfig
from bordermon.core.pipeline import Message
from bordermon.processor.batch import BatchProcessor, PoisonLimitExceeded, Record, StageTopics
from bordermon.processor.consumer import ProcessingLoop, StageBinding, to_message
from bordermon.processor.stages import ConsignmentStage
from bordermon.stores.memory import MemoryStore
from support.builders import CHPL, crossing_doc

CONFIG = DetectionConfig(watchlist=CHPL, rules=frozenset({"transit-to-ru"}))
TOPICS = StageTopics(source="crossings", flags="flags", dead_letter="dlq")


class TP(NamedTuple):
    topic: str
    partition: int


class CommitRefused(Exception):
    pass


class InMemoryBroker:
    """A consumer of an in-memory topic: every record of an assigned partition from the
    committed offset on, `max_records` at a time."""

    def __init__(self, logs: dict[TP, list[ConsumerRecord[bytes, bytes]]]) -> None:
        self.logs = logs
        self.assigned = set(logs)
        self.positions = dict.fromkeys(logs, 0)
        self.commits: list[dict[TP, int]] = []
        self.refuse_commits = False
        self.fetches = 0
        self.fetch_size: int | None = None
        """Records per fetch, when not `max_records`."""

    async def getmany(
        self, *partitions: Any, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TP, list[ConsumerRecord[bytes, bytes]]]:
        self.fetches += 1
        budget = self.fetch_size or max_records or 1_000_000
        batch: dict[TP, list[ConsumerRecord[bytes, bytes]]] = {}
        for tp in sorted(self.assigned):
            records = self.logs[tp][self.positions[tp] : self.positions[tp] + budget]
            if records:
                batch[tp] = records
                self.positions[tp] += len(records)
                budget -= len(records)
        return batch

    async def commit(self, offsets: Any = None) -> None:
        if self.refuse_commits:
            raise CommitRefused("group rebalanced")
        assert set(offsets) <= self.assigned, "committed a partition it does not own"
        self.commits.append(dict(offsets))

    def committed_offsets(self) -> dict[TP, int]:
        merged: dict[TP, int] = {}
        for commit in self.commits:
            merged.update(commit)
        return merged


class Producer:
    """Records what is produced; `gate`, when set, holds every send until it opens."""

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.gate: asyncio.Event | None = None
        self.sending = asyncio.Event()

    async def send_all(self, records: Sequence[Record]) -> None:
        self.sending.set()
        if self.gate is not None:
            await self.gate.wait()
        self.records += records

    def topic(self, name: str) -> list[Record]:
        return [r for r in self.records if r.topic == name]


def record(
    partition: int, offset: int, consignment: str, **fields: object
) -> ConsumerRecord[bytes, bytes]:
    value = orjson.dumps(crossing_doc(consignment_id=consignment, **fields))
    return ConsumerRecord(
        topic="crossings",
        partition=partition,
        offset=offset,
        timestamp=1_700_000_000_000,
        timestamp_type=0,
        key=consignment.encode(),
        value=value,
        checksum=None,
        serialized_key_size=len(consignment),
        serialized_value_size=len(value),
        headers=(),
    )


def transit(partition: int, first_offset: int, consignment: str) -> list[Any]:
    """An entry and an exit to Russia of `consignment`: one flag."""
    return [
        record(partition, first_offset, consignment, event_id=f"{consignment}-in"),
        record(
            partition,
            first_offset + 1,
            consignment,
            event_id=f"{consignment}-out",
            from_country="KZ",
            to_country="RU",
            observed_at="2024-03-03T00:00:00Z",
        ),
    ]


def loop_over(
    broker: InMemoryBroker, producer: Producer, store: MemoryStore[Any] | None = None, **kw: Any
) -> tuple[ProcessingLoop, BatchProcessor[Any, Any]]:
    processor = BatchProcessor(
        ConsignmentStage(CONFIG),
        MemoryStore(3600) if store is None else store,
        producer,
        TOPICS,
    )
    loop = ProcessingLoop(
        broker, {"crossings": StageBinding(processor)}, commit_errors=(CommitRefused,), **kw
    )
    return loop, processor


async def step(loop: ProcessingLoop) -> int:
    """One poll, every sub-batch it submitted settled, and what is durable committed."""
    submitted = await loop.poll()
    await loop.join()
    await loop.commit()
    return submitted


def test_a_batch_is_committed_after_its_flags_and_states_and_only_up_to_what_it_read() -> None:
    p0, p1 = TP("crossings", 0), TP("crossings", 1)
    broker = InMemoryBroker({p0: transit(0, 0, "A"), p1: transit(1, 0, "B") + transit(1, 2, "C")})
    producer = Producer()
    store: MemoryStore[Any] = MemoryStore(3600)
    loop, _ = loop_over(broker, producer, store, max_records=3)

    async def scenario() -> None:
        assert await step(loop) == 3  # p0's two records, then one of p1's
        assert broker.commits == [{p0: 2, p1: 1}]
        assert len(producer.topic("flags")) == 1
        assert await step(loop) == 3
        assert broker.committed_offsets() == {p0: 2, p1: 4}
        assert await step(loop) == 0  # nothing left: nothing committed
        assert len(broker.commits) == 2
        flagged = sorted(orjson.loads(r.value)["consignment_id"] for r in producer.topic("flags"))
        assert flagged == ["A", "B", "C"]
        assert {"A", "B", "C"} <= set((await store.load(["A", "B", "C"])).keys())

    asyncio.run(scenario())


def test_a_batch_that_fails_is_not_committed_and_the_failure_propagates(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    p0 = TP("crossings", 0)
    broker = InMemoryBroker({p0: transit(0, 0, "A")})
    loop, processor = loop_over(broker, Producer())

    async def refuse(messages: Sequence[Message]) -> Any:
        raise PoisonLimitExceeded("most messages failed")

    monkeypatch.setattr(processor, "process", refuse)

    async def scenario() -> None:
        await step(loop)  # the sub-batch fails in its task...
        with pytest.raises(PoisonLimitExceeded):
            await loop.poll()  # ...and the next poll raises it, before fetching again

    asyncio.run(scenario())
    assert broker.commits == [] and broker.fetches == 1


def test_revocation_waits_for_the_batch_in_flight_to_be_committed() -> None:
    p0 = TP("crossings", 0)
    broker = InMemoryBroker({p0: transit(0, 0, "A")})
    producer = Producer()
    loop, _ = loop_over(broker, producer)
    order: list[str] = []

    async def scenario() -> None:
        producer.gate = asyncio.Event()
        await loop.poll()
        await producer.sending.wait()  # the batch is in flight, its flag not yet acknowledged
        revoking = asyncio.create_task(loop.on_revoked([p0]))
        await asyncio.sleep(0.01)
        assert not revoking.done(), "revocation returned while a batch was in flight"
        assert broker.commits == []
        producer.gate.set()
        await revoking
        order.append("committed before the revocation returned" if broker.commits else "lost")

    asyncio.run(scenario())
    assert order == ["committed before the revocation returned"]
    assert broker.committed_offsets() == {p0: 2}


def test_a_batch_fetched_before_a_revocation_is_dropped_unprocessed_and_uncommitted() -> None:
    p0 = TP("crossings", 0)
    broker = InMemoryBroker({p0: transit(0, 0, "A")})
    producer = Producer()
    loop, _ = loop_over(broker, producer)
    real_getmany = broker.getmany

    async def getmany_then_rebalance(*args: Any, **kwargs: Any) -> Any:
        fetched = await real_getmany(*args, **kwargs)
        await loop.on_revoked([p0])  # the group rebalances while the fetch returns
        return fetched

    broker.getmany = getmany_then_rebalance  # type: ignore[method-assign]
    assert asyncio.run(loop.poll()) == 0
    assert producer.records == [] and broker.commits == []


def test_a_partition_another_worker_claimed_is_not_committed() -> None:
    p0, p1 = TP("crossings", 0), TP("crossings", 1)
    broker = InMemoryBroker({p0: transit(0, 0, "A"), p1: transit(1, 0, "B")})
    store: MemoryStore[Any] = MemoryStore(3600)
    loop, processor = loop_over(broker, Producer(), store)

    async def scenario() -> None:
        processor.tokens = await store.claim(["crossings:0", "crossings:1"])
        await store.claim(["crossings:1"])  # another worker took partition 1 meanwhile
        await step(loop)

    asyncio.run(scenario())
    assert processor.is_fenced(1) and not processor.is_fenced(0)
    assert broker.commits == [{p0: 2}]


def test_a_refused_commit_is_logged_and_the_next_batch_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    p0 = TP("crossings", 0)
    broker = InMemoryBroker({p0: transit(0, 0, "A") + transit(0, 2, "B")})
    loop, _ = loop_over(broker, Producer(), max_records=2)

    async def scenario() -> None:
        broker.refuse_commits = True
        assert await step(loop) == 2
        broker.refuse_commits = False
        assert await step(loop) == 2

    asyncio.run(scenario())
    assert broker.commits == [{p0: 4}]
    assert loop.committed == {("crossings", 0): 4}
    assert "offset commit of crossings:0 refused" in caplog.text


def test_close_finishes_the_batch_in_flight_then_fetches_no_more() -> None:
    p0 = TP("crossings", 0)
    broker = InMemoryBroker({p0: transit(0, 0, "A") + transit(0, 2, "B")})
    producer = Producer()
    loop, _ = loop_over(broker, producer, max_records=2)

    async def scenario() -> None:
        producer.gate = asyncio.Event()
        assert await loop.poll() == 2
        await producer.sending.wait()
        closing = asyncio.create_task(loop.close())
        await asyncio.sleep(0.01)
        assert not closing.done()
        producer.gate.set()
        await closing
        fetches = broker.fetches
        assert await loop.poll() == 0
        assert broker.fetches == fetches

    asyncio.run(scenario())
    assert broker.committed_offsets() == {p0: 2}


def test_an_assignment_makes_the_processors_claim_their_partitions_again() -> None:
    p0 = TP("crossings", 0)
    broker = InMemoryBroker({p0: transit(0, 0, "A")})
    loop, processor = loop_over(broker, Producer())
    processor.tokens = {"crossings:0": 1}
    processor.fenced = {"crossings:3"}
    loop.on_assigned([p0])
    assert processor.tokens == {} and processor.fenced == set()


def test_records_of_a_topic_no_stage_reads_stop_the_loop() -> None:
    stray = TP("elsewhere", 0)
    broker = InMemoryBroker({stray: transit(0, 0, "A")})
    loop, _ = loop_over(broker, Producer())
    with pytest.raises(RuntimeError, match="elsewhere"):
        asyncio.run(loop.poll())
    assert broker.commits == []


def test_a_kafka_record_becomes_a_message_whose_key_is_checked() -> None:
    kafka_record = record(3, 41, "CONS-1")
    message = to_message(kafka_record)
    assert message == Message(
        value=kafka_record.value,
        key=b"CONS-1",
        check_key=True,
        offset=41,
        partition=3,
        timestamp_ms=1_700_000_000_000,
    )


def test_the_kafka_headers_are_kept_for_signature_checks() -> None:
    pairs = (("bordermon-scanner-id", b"nur-1"), ("bordermon-signature", b"c2ln"), ("e", None))
    message = to_message(dataclasses.replace(record(0, 0, "A"), headers=pairs))
    assert message.headers == (
        ("bordermon-scanner-id", b"nur-1"),
        ("bordermon-signature", b"c2ln"),
        ("e", b""),
    )


def test_a_tombstone_is_an_empty_value_and_a_missing_timestamp_is_none() -> None:
    message = to_message(dataclasses.replace(record(0, 0, "A"), value=None, timestamp=-1))
    assert message.value == b"" and message.timestamp_ms is None


def test_partitions_fetched_together_are_one_sub_batch_by_default() -> None:
    """One lane: a fetch over three partitions costs one load, one save and one produce."""
    p0, p1, p2 = TP("crossings", 0), TP("crossings", 1), TP("crossings", 2)
    broker = InMemoryBroker(
        {p0: transit(0, 0, "A"), p1: transit(1, 0, "B"), p2: transit(2, 0, "C")}
    )
    producer = Producer()
    loop, processor = loop_over(broker, producer)
    sub_batches: list[list[tuple[int, int]]] = []
    real_process = processor.process

    async def recording(messages: Sequence[Message]) -> Any:
        sub_batches.append([(m.partition, m.offset) for m in messages])
        return await real_process(messages)

    processor.process = recording  # type: ignore[method-assign]
    asyncio.run(step(loop))
    assert sub_batches == [[(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]]
    assert len(producer.topic("flags")) == 3
    assert broker.commits == [{p0: 2, p1: 2, p2: 2}]


def test_partitions_of_different_lanes_are_processed_concurrently_each_in_offset_order() -> None:
    p0, p1 = TP("crossings", 0), TP("crossings", 1)
    broker = InMemoryBroker({p0: transit(0, 0, "A"), p1: transit(1, 0, "B")})
    producer = Producer()
    loop, _ = loop_over(broker, producer, lanes=2)
    sends_waiting: list[int] = []

    async def scenario() -> None:
        producer.gate = asyncio.Event()
        real_send = producer.send_all

        async def counting_send(records: Sequence[Record]) -> None:
            sends_waiting.append(len(sends_waiting))
            await real_send(records)

        producer.send_all = counting_send  # type: ignore[method-assign]
        assert await loop.poll() == 4
        await asyncio.sleep(0.01)
        # Both partitions' flags are waiting for their acknowledgement at the same time.
        assert len(sends_waiting) == 2 and broker.commits == []
        producer.gate.set()
        await loop.join()
        await loop.commit()

    asyncio.run(scenario())
    assert broker.commits == [{p0: 2, p1: 2}]


def test_a_partition_waits_for_its_previous_sub_batch() -> None:
    p0 = TP("crossings", 0)
    broker = InMemoryBroker({p0: transit(0, 0, "A") + transit(0, 2, "B")})
    producer = Producer()
    loop, _ = loop_over(broker, producer, max_records=2)

    async def scenario() -> None:
        producer.gate = asyncio.Event()
        await loop.poll()
        await loop.poll()  # B's records, submitted while A's are still in flight
        await asyncio.sleep(0.01)
        assert broker.commits == [] and producer.records == []
        producer.gate.set()
        await loop.join()
        await loop.commit()

    asyncio.run(scenario())
    flagged = [orjson.loads(r.value)["consignment_id"] for r in producer.topic("flags")]
    assert flagged == ["A", "B"]
    assert broker.commits == [{p0: 4}]


def test_room_for_more_is_waited_for_before_fetching() -> None:
    p0, p1 = TP("crossings", 0), TP("crossings", 1)
    broker = InMemoryBroker({p0: transit(0, 0, "A"), p1: transit(1, 0, "B")})
    producer = Producer()
    loop, _ = loop_over(broker, producer, max_records=2, max_buffered=2)

    async def scenario() -> None:
        producer.gate = asyncio.Event()
        await loop.poll()
        polling = asyncio.create_task(loop.poll())
        await asyncio.sleep(0.01)
        assert broker.fetches == 1 and not polling.done()
        producer.gate.set()
        await polling
        await loop.close()

    asyncio.run(scenario())
    assert broker.fetches == 2 and broker.committed_offsets() == {p0: 2, p1: 2}


def test_a_failing_sub_batch_is_not_committed_nor_what_follows_it_on_its_partition(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    p0, p1 = TP("crossings", 0), TP("crossings", 1)
    broker = InMemoryBroker({p0: transit(0, 0, "A"), p1: transit(1, 0, "B") + transit(1, 2, "C")})
    producer = Producer()
    loop, processor = loop_over(broker, producer, max_records=4, lanes=2)
    real_process = processor.process

    async def failing_on_b(messages: Sequence[Message]) -> Any:
        if messages[0].key == b"B":
            raise PoisonLimitExceeded("most messages failed")
        await asyncio.sleep(0.01)  # still running when B fails
        return await real_process(messages)

    monkeypatch.setattr(processor, "process", failing_on_b)

    async def scenario() -> None:
        await loop.poll()  # A (partition 0) and B (partition 1)
        await loop.poll()  # C, behind B on partition 1
        await loop.join()
        with pytest.raises(PoisonLimitExceeded):
            await loop.poll()
        await loop.close()  # as the worker does when it stops: commits what is durable

    asyncio.run(scenario())
    assert [orjson.loads(r.value)["consignment_id"] for r in producer.topic("flags")] == ["A"]
    assert broker.commits == [{p0: 2}]


def test_durable_offsets_are_committed_together_once_the_interval_has_passed() -> None:
    p0, p1 = TP("crossings", 0), TP("crossings", 1)
    broker = InMemoryBroker({p0: transit(0, 0, "A") + transit(0, 2, "B"), p1: transit(1, 0, "C")})
    now = [0.0]
    loop, _ = loop_over(
        broker, Producer(), max_records=2, commit_interval_s=1.0, clock=lambda: now[0]
    )

    async def scenario() -> None:
        await loop.poll()
        await loop.join()
        await loop.poll()  # under a second since the start: nothing committed yet
        await loop.join()
        assert broker.commits == []
        now[0] = 1.0
        await loop.poll()  # one commit for both of partition 0's sub-batches, then C's fetch
        assert broker.commits == [{p0: 4}]
        await loop.close()

    asyncio.run(scenario())
    assert broker.commits == [{p0: 4}, {p1: 2}]


def test_records_that_arrive_during_a_sub_batch_make_one_next_sub_batch() -> None:
    p0 = TP("crossings", 0)
    broker = InMemoryBroker({p0: transit(0, 0, "A") + transit(0, 2, "B") + transit(0, 4, "C")})
    broker.fetch_size = 2
    producer = Producer()
    loop, processor = loop_over(broker, producer, max_records=500)
    sizes: list[int] = []
    real_process = processor.process

    async def sizing(messages: Sequence[Message]) -> Any:
        sizes.append(len(messages))
        return await real_process(messages)

    processor.process = sizing  # type: ignore[method-assign]

    async def scenario() -> None:
        producer.gate = asyncio.Event()
        await loop.poll()
        await producer.sending.wait()  # A's flag waits for its acknowledgement...
        await loop.poll()  # ...while B
        await loop.poll()  # and C are fetched
        producer.gate.set()
        await loop.close()

    asyncio.run(scenario())
    assert sizes == [2, 4]
    assert broker.commits == [{p0: 6}]


def test_partitions_of_one_lane_share_sub_batches_and_keep_their_own_offsets() -> None:
    p0, p1, p2 = TP("crossings", 0), TP("crossings", 1), TP("crossings", 2)
    broker = InMemoryBroker(
        {p0: transit(0, 0, "A"), p1: transit(1, 0, "B"), p2: transit(2, 0, "C")}
    )
    loop, processor = loop_over(broker, Producer(), lanes=2)
    partitions_per_sub_batch: list[list[int]] = []
    real_process = processor.process

    async def recording(messages: Sequence[Message]) -> Any:
        partitions_per_sub_batch.append(sorted({m.partition for m in messages}))
        return await real_process(messages)

    processor.process = recording  # type: ignore[method-assign]
    asyncio.run(step(loop))
    assert sorted(partitions_per_sub_batch) == [[0, 2], [1]]  # lanes 0 % 2 and 2 % 2 share
    assert broker.commits == [{p0: 2, p1: 2, p2: 2}]
