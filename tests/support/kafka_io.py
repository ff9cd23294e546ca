"""Talking to real topics in tests: test topic names, publishing as scanners do, reading
topics back, end and committed offsets."""

from __future__ import annotations

import time
import uuid
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from bordermon.admin.topics import TopicDeclaration, admin_client, load_declarations
from bordermon.scanner.publisher import ScannerPublisher

QUIET = {"log_level": 0, "logger": lambda *args: None}  # keep librdkafka off stderr


@dataclass(frozen=True)
class TestTopics:
    """Topic names of one test, by role (SPEC §2 roles: crossings, flags, dead_letter, and the
    internal links topic)."""

    names: dict[str, str]
    declarations: tuple[TopicDeclaration, ...]

    __test__ = False  # not a test class, despite its name

    @property
    def crossings(self) -> str:
        return self.names["crossings"]

    @property
    def flags(self) -> str:
        return self.names["flags"]

    @property
    def dead_letter(self) -> str:
        return self.names["dead_letter"]

    @property
    def links(self) -> str:
        return self.names["links"]

    def declaration(self, role: str) -> TopicDeclaration:
        return next(d for d in self.declarations if d.role == role)


def new_test_topic_names() -> TestTopics:
    """Every declared topic under a name unique to the caller (`<name>.t-<random>`)."""
    suffix = uuid.uuid4().hex[:10]
    declarations = tuple(d.renamed(f"{d.name}.t-{suffix}") for d in load_declarations())
    return TestTopics({d.role: d.name for d in declarations}, declarations)


def delete_topics(bootstrap: str, names: list[str], timeout: float = 30.0) -> None:
    """Delete topics, ignoring the ones that do not exist; other failures are warnings."""
    if not names:
        return
    # Keep the client referenced until every future is done: a collected AdminClient cancels
    # its requests (and the topics would silently pile up on a shared broker).
    admin = admin_client(bootstrap)
    futures = admin.delete_topics(names, operation_timeout=timeout, request_timeout=timeout)
    for name, future in futures.items():
        try:
            future.result()
        except KafkaException as error:
            if error.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                warnings.warn(f"could not delete test topic {name}: {error}", stacklevel=1)


def publish_lines(bootstrap: str, topic: str, lines: Iterable[bytes]) -> int:
    """Byte for byte, keyed by consignment_id when one can be read, through the scanner SDK
    (`publish --raw`): so the worker reads what real scanners send, lz4 compression included."""
    count = 0
    with ScannerPublisher(bootstrap, topic, config=QUIET) as publisher:
        for line in lines:
            publisher.publish_raw(line)
            count += 1
        report = publisher.flush(60)
    assert report.ok and report.acknowledged == count, report
    return count


def publish_keyed(
    bootstrap: str,
    topic: str,
    records: Iterable[tuple[bytes | None, bytes]],
    partitioner: str = "murmur2_random",
) -> None:
    """As a scanner would, with librdkafka's `partitioner` (the Java client's murmur2 unless
    told otherwise; `consistent_random` is librdkafka's CRC32 default)."""
    producer = Producer({"bootstrap.servers": bootstrap, "partitioner": partitioner, **QUIET})
    for key, value in records:
        producer.produce(topic, value, key=key)
    assert producer.flush(30) == 0


def read_topic(
    bootstrap: str,
    topic: str,
    *,
    until_count: int | None = None,
    timeout: float = 60.0,
    idle: float = 3.0,
) -> list[Any]:
    """Every message from the start: stop at `until_count`, or after `idle` s with nothing new
    once `until_count` is reached or not given, or at `timeout`. For topics still being
    written to (by a worker); `read_to_end` reads what a topic holds now."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-reader-{time.time_ns()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            **QUIET,
        }
    )
    consumer.subscribe([topic])
    messages: list[Any] = []
    deadline = time.monotonic() + timeout
    last_new = time.monotonic()
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                messages.append(message)
                last_new = time.monotonic()
                continue
            reached = until_count is None or len(messages) >= until_count
            if reached and time.monotonic() - last_new > idle:
                break
    finally:
        consumer.close()
    return messages


def read_to_end(bootstrap: str, topic: str, timeout: float = 30.0) -> list[Message]:
    """Every message the topic holds now (up to each partition's high watermark)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-read-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            **QUIET,
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends: dict[int, int] = {}
        starts = []
        for partition in partitions:
            low, high = watermarks(consumer, TopicPartition(topic, partition))
            if high > low:
                ends[partition] = high
                starts.append(TopicPartition(topic, partition, low))
        consumer.assign(starts)
        messages: list[Message] = []
        deadline = time.monotonic() + timeout
        while ends and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error() is not None:
                continue
            messages.append(message)
            partition, offset = message.partition() or 0, message.offset() or 0
            if offset + 1 >= ends.get(partition, 0):
                ends.pop(partition, None)
        assert not ends, f"could not read {topic} to its end"
        return messages
    finally:
        consumer.close()


def kafka_reader(bootstrap: str, group: str) -> Consumer:
    """A consumer in `group` that reads from the earliest offset; it joins the group only if
    it subscribes, so it can read a group's committed offsets without disturbing it."""
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "log_level": 0,
    }
    return Consumer(config)


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """The end offset of every partition of `topic`."""
    consumer = kafka_reader(bootstrap, "bordermon-test-reader")
    try:
        metadata = consumer.list_topics(topic, timeout=15)
        partitions = sorted(metadata.topics[topic].partitions)
        return {p: watermarks(consumer, TopicPartition(topic, p))[1] for p in partitions}
    finally:
        consumer.close()


def committed_offsets(bootstrap: str, topic: str, group: str) -> dict[int, int]:
    """The group's committed offset per partition (-1001: nothing committed)."""
    partitions = sorted(end_offsets(bootstrap, topic))
    consumer = kafka_reader(bootstrap, group)  # not subscribed: it does not join the group
    try:
        got = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=15)
        return {tp.partition: tp.offset for tp in got}
    finally:
        consumer.close()


def watermarks(consumer: Consumer, partition: TopicPartition, patience_s: float = 20.0) -> Any:
    """The partition's (low, high) offsets. Right after a topic is created (or the broker
    restarted) the broker can answer "not leader for partition" for a moment: retried, as a
    client would, until `patience_s` has passed."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            return consumer.get_watermark_offsets(partition, timeout=10)
        except KafkaException as error:
            code = error.args[0].code()
            passing = error.args[0].retriable() or code in _LEADERSHIP_MOVING
            if not passing or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


_LEADERSHIP_MOVING = {
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError._TIMED_OUT,
}
