"""The faust app's glue, below integration: which errors hold a partition, lag bookkeeping, and
stopping the worker before a commit. Fakes stand in for Kafka's objects; the consume loop has
its own tests (test_processing_loop.py) and the real thing runs in tests/integration."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, NamedTuple
from unittest.mock import patch

import pytest
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    NotLeaderForPartitionError,
    RecordTooLargeError,
    TopicAuthorizationFailedError,
)
from prometheus_client import CollectorRegistry, Gauge

from bordermon.core.pipeline import Message
from bordermon.processor.app import BatchConsumerService, LagReport, is_transient_kafka_error
from bordermon.processor.batch import PoisonLimitExceeded
from bordermon.processor.consumer import ProcessingLoop, StageBinding
from bordermon.settings import Settings


@pytest.mark.parametrize(
    "error",
    [
        KafkaConnectionError(),
        NotLeaderForPartitionError(),
        KafkaTimeoutError(),  # aiokafka calls it not retriable; it is a broker outage
        TopicAuthorizationFailedError(),  # a missing ACL: infrastructure, not the data
        ConnectionResetError(),
        TimeoutError(),
    ],
    ids=type,
)
def test_outages_hold_the_partition(error: BaseException) -> None:
    assert is_transient_kafka_error(error)


@pytest.mark.parametrize(
    "error",
    [MessageSizeTooLargeError(), RecordTooLargeError(), TypeError("bug"), KeyError("x")],
    ids=type,
)
def test_what_the_record_itself_causes_is_poison(error: BaseException) -> None:
    assert not is_transient_kafka_error(error)


class TP(NamedTuple):
    topic: str
    partition: int


class FakeConsumer:
    def __init__(self, assigned: list[TP], highwater: dict[TP, int], positions: dict[TP, int]):
        self.assigned = assigned
        self.highwaters = highwater
        self.positions = positions

    def assignment(self) -> list[TP]:
        return self.assigned

    def highwater(self, tp: TP) -> int | None:
        return self.highwaters.get(tp)

    async def position(self, tp: TP) -> int | None:
        return self.positions.get(tp)


def lag_of(registry: CollectorRegistry, partition: int) -> float | None:
    return registry.get_sample_value(
        "test_lag_messages", {"topic": "crossings", "partition": str(partition)}
    )


def test_lag_is_measured_from_what_was_processed_and_lost_partitions_are_dropped() -> None:
    registry = CollectorRegistry()
    gauge = Gauge("test_lag_messages", "lag", ["topic", "partition"], registry=registry)
    report = LagReport("crossings", gauge)
    p0, p1, other = TP("crossings", 0), TP("crossings", 1), TP("links", 0)
    report.processed([Message(b"", offset=6, partition=0), Message(b"", offset=4, partition=0)])
    consumer = FakeConsumer([p0, p1, other], {p0: 10, p1: 5, other: 99}, {p1: 3, p0: 0})
    asyncio.run(report.update(consumer))
    # p0: processed up to offset 6, so 7 is next: 10 - 7. p1: nothing processed yet, the
    # consumer's position. Another topic's partition is not this report's.
    assert (lag_of(registry, 0), lag_of(registry, 1)) == (3.0, 2.0)
    assert (
        registry.get_sample_value("test_lag_messages", {"topic": "links", "partition": "0"}) is None
    )

    consumer.assigned = [p0]  # p1 moved to another worker: its series goes
    asyncio.run(report.update(consumer))
    assert (lag_of(registry, 0), lag_of(registry, 1)) == (3.0, None)


def test_a_processing_failure_stops_the_worker_with_nothing_committed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broker:
        def __init__(self) -> None:
            self.commits: list[Any] = []

        async def getmany(self, *partitions: Any, **options: Any) -> dict[TP, list[Any]]:
            return {TP("crossings", 0): [SimpleNamespace(offset=0)]}

        async def commit(self, offsets: Any = None) -> None:
            self.commits.append(offsets)

    class Refusing:
        async def process(self, messages: list[Message]) -> None:
            raise PoisonLimitExceeded("too many failures")

    async def scenario() -> tuple[BatchConsumerService, list[str]]:
        broker = Broker()
        service = BatchConsumerService(Settings(), {})
        service.processing = ProcessingLoop(
            broker,
            {"crossings": StageBinding(Refusing())},  # type: ignore[arg-type]
        )
        stops: list[str] = []
        service.stop_worker = lambda: stops.append("stop")
        await service.run()
        assert broker.commits == []
        return service, stops

    with patch("bordermon.processor.consumer.to_message", lambda record: record):
        service, stops = asyncio.run(scenario())
    assert stops == ["stop"]
    assert isinstance(service.failure, PoisonLimitExceeded)
    assert "too many failures" in caplog.text
