"""One consignment, one partition, whatever the client (SPEC §2).

The SDK's confluent-kafka producer must choose the partition Kafka's Java client would: murmur2
of the key. aiokafka's `DefaultPartitioner` is that hash (Java-compatible); the SDK's choice is
read from real delivery reports, from librdkafka's in-process mock cluster, so no broker is
needed. (The mock creates topics with 4 partitions and cannot be given more: its admin API
names no controller. tests/integration/test_publish_and_flags.py checks the declared count on
a real broker.)
"""

from __future__ import annotations

from collections.abc import Mapping

from aiokafka.partitioner import DefaultPartitioner

from bordermon.scanner.publisher import Delivery, ScannerPublisher
from support.builders import crossing_doc

# ASCII, Cyrillic, Kazakh, CJK, accents and an emoji (4 UTF-8 bytes): the hash is over the
# key's UTF-8 bytes, so every width of character must agree.
CONSIGNMENT_IDS = [
    *(f"KZ-{n:06d}" for n in range(100)),
    *(f"ТОО-Алматы-{n}" for n in range(30)),
    *(f"Қазақстан/Өскемен-{n}" for n in range(30)),
    *(f"中国-义乌-{n}" for n in range(30)),
    *(f"Müller & Søn {n}" for n in range(10)),
    *(f"📦{n}" for n in range(10)),
    "a",
    "CONS-1",
]


def java_partition(consignment_id: str, partitions: int) -> int:
    """The partition Kafka's Java client (and aiokafka) gives this key."""
    everything = list(range(partitions))
    return int(DefaultPartitioner()(consignment_id.encode("utf-8"), everything, everything))


def sdk_partitions(config: Mapping[str, str | int] | None = None) -> tuple[dict[str, int], int]:
    """The partition the SDK's publisher sent each consignment to, and the partition count."""
    deliveries: list[Delivery] = []
    publisher = ScannerPublisher(
        "unused:9092",
        "crossings",
        config={"test.mock.num.brokers": 1, "allow.auto.create.topics": True, **(config or {})},
        on_delivery=deliveries.append,
    )
    for number, consignment_id in enumerate(CONSIGNMENT_IDS):
        publisher.publish(crossing_doc(event_id=f"ev-{number}", consignment_id=consignment_id))
    report = publisher.close(30)
    assert report.ok, report.errors
    partitions = publisher.check_connection()
    return {d.key or "": d.partition for d in deliveries if d.partition is not None}, partitions


def test_sdk_publisher_partitions_like_the_java_client() -> None:
    chosen, partitions = sdk_partitions()
    assert len(chosen) == len(CONSIGNMENT_IDS) >= 200
    expected = {cid: java_partition(cid, partitions) for cid in CONSIGNMENT_IDS}
    assert chosen == expected
    assert len(set(expected.values())) == partitions  # the keys reach every partition


def test_the_check_catches_librdkafkas_default_partitioner() -> None:
    chosen, partitions = sdk_partitions({"partitioner": "consistent_random"})  # CRC32
    disagree = [cid for cid in CONSIGNMENT_IDS if chosen[cid] != java_partition(cid, partitions)]
    assert len(disagree) > len(CONSIGNMENT_IDS) // 2
