"""The worker's producer on the real broker: a batch per partition through aiokafka's batch API
must deliver what `send` would have, record by record: same partition for a key (the link stage
relies on it), timestamps and headers kept, batches split when full."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2

from bordermon.processor.batch import Record
from bordermon.processor.producer import BatchingProducer
from support.kafka_io import read_topic

pytestmark = pytest.mark.integration


def test_every_record_arrives_on_its_keys_partition_with_its_timestamp_and_headers(
    kafka_bootstrap: str, unique_topics: Any
) -> None:
    topic = unique_topics.links
    records = [
        Record(
            topic,
            f"CONT-{n:07d}".encode(),
            bytes([n % 256]) * 40_000,  # ~3 MB in all: more than one batch per partition
            [("n", str(n).encode())],
            1_700_000_000_000 + n,
        )
        for n in range(80)
    ]
    records.append(Record(topic, None, b"no key, no timestamp"))

    async def produce() -> int:
        kafka = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
        await kafka.start()
        try:
            await BatchingProducer(lambda: kafka).send_all(records)
            return len(await kafka.partitions_for(topic))
        finally:
            await kafka.stop()

    partitions = asyncio.run(produce())
    got = read_topic(kafka_bootstrap, topic, until_count=len(records))
    assert len(got) == len(records)
    by_key = {message.key(): message for message in got}
    for record in records[:-1]:
        message = by_key[record.key]
        # The Java client's partition for the key: what aiokafka's `send` and the SDK choose.
        assert message.partition() == (murmur2(record.key) & 0x7FFFFFFF) % partitions
        assert message.value() == record.value
        assert message.timestamp()[1] == record.timestamp_ms
        assert message.headers() == record.headers
    unkeyed = by_key[None]
    assert unkeyed.value() == b"no key, no timestamp" and unkeyed.timestamp()[1] > 1.7e12
