"""`relabel-to-ru` through Kafka (SPEC §4.2, §6): the consignment stage hands link sightings to
the links topic, the link stage matches them, whatever partitions and workers are involved.

Each test gets its own topics (the links topic included), consumer group and Redis database,
and runs real worker subprocesses.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
from aiokafka.partitioner import DefaultPartitioner

from support.builders import crossing_line, goods_of
from support.flags import (
    assert_flags_as_replayed,
    assert_redeliveries_identical,
    flags_of,
    replay_flags,
)
from support.kafka_io import publish_keyed, read_topic
from support.workers import DYING_WORKER_COMMAND, running_worker, worker_env

pytestmark = pytest.mark.integration

PARTITIONS = 6  # of the crossings topic (topics/topics.toml)


def partition_of(consignment_id: str) -> int:
    """Where the SDK and the Java client put a consignment (murmur2, SPEC §2)."""
    partitioner = DefaultPartitioner()
    every = list(range(PARTITIONS))
    return int(partitioner(consignment_id.encode(), every, every))


def relabels(count: int) -> list[tuple[bytes, bytes]]:
    """`count` warehouse re-exports: A_i enters with container C_i, B_i leaves for Russia 20
    days later in C_i (a permit, so that only relabel-to-ru can flag), A_i and B_i on
    different partitions."""
    records = []
    for n in range(count):
        importer = f"IMP-{n}"
        exporter = next(
            f"EXP-{n}-{k}"
            for k in range(100)
            if partition_of(f"EXP-{n}-{k}") != partition_of(importer)
        )
        container = f"TGHU{n:06d}8"
        entry = crossing_line(
            event_id=f"in-{n}",
            consignment_id=importer,
            checkpoint="KZ-KHORGOS",
            observed_at="2024-05-01T08:00:00+05:00",
            goods=goods_of("8526.91"),
            transport={"mode": "rail", "container_id": container},
        )
        exit_ = crossing_line(
            event_id=f"out-{n}",
            consignment_id=exporter,
            checkpoint="KZ-ZHANAZHOL",
            from_country="KZ",
            to_country="RU",
            observed_at="2024-05-21T08:00:00+05:00",
            goods=goods_of("8526.91"),
            permit_id=f"KZ-EL-{n}",
            transport={"mode": "road", "container_id": container.lower()},
        )
        records += [(importer.encode(), entry), (exporter.encode(), exit_)]
    return records


def test_relabels_across_partitions_and_workers_flag_as_replay_does(
    kafka_bootstrap: str,
    redis_test_url: str,
    redis_client: redis.Redis[bytes],
    unique_topics: Any,
    tmp_path: Path,
) -> None:
    records = relabels(40)
    expected = replay_flags([value for _, value in records])
    assert len(expected) == 40
    assert {f["rule"] for f in expected.values()} == {"relabel-to-ru"}
    env = worker_env(
        kafka_bootstrap,
        redis_test_url,
        unique_topics.names,
        f"g-{uuid.uuid4()}",
        BORDERMON_BATCH_MAX_EVENTS="10",
    )
    with (
        running_worker(env, tmp_path / "worker-a.log"),
        running_worker(env, tmp_path / "worker-b.log"),
    ):
        publish_keyed(kafka_bootstrap, unique_topics.crossings, records)
        flags = flags_of(
            read_topic(kafka_bootstrap, unique_topics.flags, until_count=len(expected))
        )
    assert {f["flag_id"] for f in flags} == set(expected)
    assert_flags_as_replayed(flags, expected)
    # The link stage kept its state under the link key, with its TTL (relabel window + 7 d).
    key = b"bordermon:link:container:TGHU0000008"
    assert 97 * 86400 - 120 <= redis_client.ttl(key) <= 97 * 86400


def test_a_worker_killed_between_the_two_stages_loses_no_flag(
    kafka_bootstrap: str,
    redis_test_url: str,
    redis_client: redis.Redis[bytes],
    unique_topics: Any,
    tmp_path: Path,
) -> None:
    records = relabels(30)
    expected = replay_flags([value for _, value in records])
    marker = tmp_path / "died"
    env = worker_env(
        kafka_bootstrap,
        redis_test_url,
        unique_topics.names,
        f"g-{uuid.uuid4()}",
        BORDERMON_BATCH_MAX_EVENTS="8",
        BORDERMON_TEST_DIE_ONCE=str(marker),
    )
    publish_keyed(kafka_bootstrap, unique_topics.crossings, records)
    with running_worker(env, tmp_path / "dying.log", DYING_WORKER_COMMAND) as dying:
        assert dying.process.wait(timeout=60) == -9  # SIGKILLed after the hand-over
    assert marker.read_text().endswith("sightings handed over\n")
    with running_worker(env, tmp_path / "restarted.log", DYING_WORKER_COMMAND):
        flags = flags_of(
            read_topic(kafka_bootstrap, unique_topics.flags, until_count=len(expected))
        )
        handed_over = read_topic(kafka_bootstrap, unique_topics.links, idle=2)
    assert {f["flag_id"] for f in flags} == set(expected)
    assert_redeliveries_identical(flags)
    # The batch the dead worker had handed over was handed over again, byte for byte.
    values = [m.value() for m in handed_over]
    assert len(values) > len(set(values)) and len(set(values)) == 2 * len(expected)
