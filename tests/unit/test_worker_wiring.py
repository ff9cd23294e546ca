"""The faust app's glue, below integration: message conversion, which errors hold a partition,
lag bookkeeping, and stopping before a commit. Fakes stand in for faust's objects; the real
thing runs in tests/integration."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, NamedTuple

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
from bordermon.processor import app
from bordermon.processor.app import (
    LagReport,
    _process_or_stop,
    _to_message,
    is_transient_kafka_error,
)
from bordermon.processor.batch import PoisonLimitExceeded


def faust_event(
    value: bytes | None,
    *,
    offset: int = 41,
    timestamp: float | None = 1.5,
    headers: Any = None,
) -> Any:
    message = SimpleNamespace(
        value=value,
        key=b"CONS-1",
        offset=offset,
        partition=3,
        timestamp=timestamp,
        headers=headers,
    )
    return SimpleNamespace(message=message)


def test_a_kafka_record_becomes_a_message_whose_key_is_checked() -> None:
    message = _to_message(faust_event(b"{}"))
    assert message == Message(
        value=b"{}", key=b"CONS-1", check_key=True, position=41, partition=3, timestamp_ms=1500
    )


def test_the_kafka_headers_are_kept_for_signature_checks() -> None:
    pairs = [("bordermon-scanner-id", b"nur-1"), ("bordermon-signature", b"c2ln"), ("e", None)]
    message = _to_message(faust_event(b"{}", headers=pairs))
    assert message.headers == (
        ("bordermon-scanner-id", b"nur-1"),
        ("bordermon-signature", b"c2ln"),
        ("e", b""),
    )
    as_mapping = _to_message(faust_event(b"{}", headers={"bordermon-scanner-id": b"nur-1"}))
    assert as_mapping.headers == (("bordermon-scanner-id", b"nur-1"),)
    assert _to_message(faust_event(b"{}")).headers == ()


def test_a_tombstone_is_an_empty_value_and_a_missing_timestamp_is_none() -> None:
    message = _to_message(faust_event(None, timestamp=None))
    assert message.value == b"" and message.timestamp_ms is None


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
    report.processed([Message(b"", position=6, partition=0), Message(b"", position=4, partition=0)])
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


class Stopped(Exception):
    pass


def test_the_poison_limit_stops_the_worker_before_the_commit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    codes: list[int] = []

    def exit_now(code: int) -> None:
        codes.append(code)
        raise Stopped

    monkeypatch.setattr(app.os, "_exit", exit_now)

    class Refusing:
        async def process(self, messages: list[Message]) -> None:
            raise PoisonLimitExceeded("too many failures")

    with pytest.raises(Stopped):
        asyncio.run(_process_or_stop(Refusing(), []))  # type: ignore[arg-type]
    assert codes == [app.EXIT_UNEXPECTED]
