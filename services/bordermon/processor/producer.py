"""What the worker produces (dead letters, flags, link sightings), handed to Kafka a batch per
partition.

The records go through the aiokafka producer that faust's producer owns (faust configures,
starts, flushes and stops it), but not through faust's per-record `send`: that path runs
faust's sensors for every record and cost ~50 µs per record in the worker's profile, against
~5 µs here with aiokafka's public batch API (`create_batch` / `send_batch`; measured with 20,000
keyed records on the local broker: 15 µs per record through `AIOKafkaProducer.send`, 5.5 µs
batched). Partitions are chosen by aiokafka's default partitioner, the one `send` would use
(the Java client's murmur2 of the key; a random partition for a record without a key), so a
link key lands on the partition the link stage expects.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from aiokafka.partitioner import DefaultPartitioner

from bordermon.processor.batch import Record


class BatchingProducer:
    """`Producer` for `BatchProcessor`: returns once the broker acknowledged every record."""

    def __init__(self, kafka_producer: Callable[[], Any]) -> None:
        """`kafka_producer` returns the started `AIOKafkaProducer` (it exists only once the
        app has started, hence a callable)."""
        self._kafka_producer = kafka_producer
        self._partitioner = DefaultPartitioner()

    async def send_all(self, records: Sequence[Record]) -> None:
        if not records:
            return
        producer = self._kafka_producer()
        by_partition: dict[tuple[str, int], list[Record]] = {}
        partitions_of: dict[str, list[int]] = {}
        for record in records:
            partitions = partitions_of.get(record.topic)
            if partitions is None:
                # Waits for the topic's metadata the first time; a dict lookup after that.
                partitions = partitions_of[record.topic] = sorted(
                    await producer.partitions_for(record.topic)
                )
            partition = self._partitioner(record.key, partitions, partitions)
            by_partition.setdefault((record.topic, partition), []).append(record)
        acknowledgements = []
        for (topic, partition), batch_records in by_partition.items():
            batch = producer.create_batch()
            for record in batch_records:
                if _append(batch, record) is None:  # the batch is full: send it, start another
                    batch.close()
                    acknowledgements.append(
                        await producer.send_batch(batch, topic, partition=partition)
                    )
                    batch = producer.create_batch()
                    _append(batch, record)  # a first record always fits (or the broker refuses it)
            batch.close()
            acknowledgements.append(await producer.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*acknowledgements)


def _append(batch: Any, record: Record) -> Any:
    return batch.append(
        key=record.key,
        value=record.value,
        timestamp=record.timestamp_ms,  # milliseconds, as `send` hands the batch builder
        headers=record.headers or [],
    )
