"""SPEC §6 under faults the happy path never meets: poison messages and stale workers.

Each test gets its own topics, consumer group and Redis database, and runs real worker
subprocesses against the real stack.
"""

from __future__ import annotations

import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from support.builders import simulated_lines
from support.flags import assert_redeliveries_identical, flags_of, replay_flags
from support.kafka_io import (
    committed_offsets,
    end_offsets,
    publish_keyed,
    publish_lines,
    read_topic,
)
from support.workers import POISONED_WORKER_COMMAND, running_worker, worker_env

pytestmark = pytest.mark.integration


def poisoned(lines: list[bytes], every: int) -> tuple[list[bytes], list[bytes]]:
    """Every `every`-th valid event gets an id that the planted bug fails on."""
    out, poison = [], []
    for number, line in enumerate(lines):
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError:
            out.append(line)
            continue
        if number % every == 0 and isinstance(doc, dict) and "event_id" in doc:
            doc["event_id"] = f"poison-{number}"
            poison.append(orjson.dumps(doc))
            out.append(poison[-1])
        else:
            out.append(line)
    return out, poison


def test_poison_messages_are_dead_lettered_and_cost_their_partition_seconds(
    kafka_bootstrap: str,
    redis_test_url: str,
    redis_client: redis.Redis[bytes],
    unique_topics: Any,
    tmp_path: Path,
) -> None:
    lines, poison = poisoned(simulated_lines(300, seed=21), every=97)
    assert len(poison) >= 5
    # What the pipeline must still flag: everything the poison messages did not take part in.
    expected = replay_flags([line for line in lines if line not in poison])
    env = worker_env(kafka_bootstrap, redis_test_url, unique_topics.names, f"g-{uuid.uuid4()}")
    with running_worker(env, tmp_path / "worker.log", POISONED_WORKER_COMMAND) as worker:
        started = time.monotonic()
        publish_lines(kafka_bootstrap, unique_topics.crossings, lines)
        flags = flags_of(
            read_topic(kafka_bootstrap, unique_topics.flags, until_count=len(expected))
        )
        took = time.monotonic() - started
        assert worker.process.poll() is None, "the worker stopped on a poison message"
        dead = read_topic(kafka_bootstrap, unique_topics.dead_letter, idle=2)

    assert {f["flag_id"] for f in flags} == set(expected)
    internal = [m for m in dead if dict(m.headers())["error"] == b"internal_error"]
    assert sorted(m.value() for m in internal) == sorted(poison)  # each once, bytes untouched
    for message in internal:
        headers = dict(message.headers())
        assert headers["detail"] == b"processing failed: TypeError: Integer exceeds 64-bit range"
        assert headers["source_topic"].decode() == unique_topics.crossings
    assert took < 60, f"{len(poison)} poison messages held the pipeline for {took:.0f}s"


def test_a_deploy_that_fails_every_message_stops_with_nothing_committed_and_loses_nothing(
    kafka_bootstrap: str,
    redis_test_url: str,
    unique_topics: Any,
    tmp_path: Path,
) -> None:
    """Most messages failing is a broken deploy, not bad data: the worker stops with exit code
    70 before committing the batch, and once the bug is gone every flag comes out."""
    lines, poison = poisoned(simulated_lines(200, seed=23), every=1)
    assert len(poison) > 150
    group = f"g-{uuid.uuid4()}"
    env = worker_env(kafka_bootstrap, redis_test_url, unique_topics.names, group)
    with running_worker(env, tmp_path / "broken.log", POISONED_WORKER_COMMAND) as broken:
        publish_lines(kafka_bootstrap, unique_topics.crossings, lines)
        try:
            code = broken.process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the broken deploy kept running:\n{broken.log()[-3000:]}")
    assert code == 70, broken.log()[-3000:]
    assert "this looks like a bug in this deploy" in broken.log()
    # Not one offset committed past what was read before the stop: the batch is read again.
    committed = committed_offsets(kafka_bootstrap, unique_topics.crossings, group)
    ends = end_offsets(kafka_bootstrap, unique_topics.crossings)
    assert sum(max(offset, 0) for offset in committed.values()) < sum(ends.values())

    expected = replay_flags(lines)
    with running_worker(env, tmp_path / "fixed.log"):
        flags = flags_of(
            read_topic(kafka_bootstrap, unique_topics.flags, until_count=len(expected))
        )
    assert {f["flag_id"] for f in flags} == set(expected)
    assert committed_offsets(kafka_bootstrap, unique_topics.crossings, group) == ends


def test_a_worker_paused_past_its_session_loses_nothing_when_it_resumes(
    kafka_bootstrap: str,
    redis_test_url: str,
    redis_client: redis.Redis[bytes],
    unique_topics: Any,
    tmp_path: Path,
) -> None:
    # SIGSTOP is what a long GC pause, a frozen VM or a cut-off network looks like to the group:
    # the paused worker keeps believing it owns its partitions while another takes them over.
    lines = simulated_lines(1200, seed=23)
    expected = replay_flags(lines)
    half = len(lines) // 2
    env = worker_env(
        kafka_bootstrap,
        redis_test_url,
        unique_topics.names,
        f"g-{uuid.uuid4()}",
        BORDERMON_BATCH_MAX_EVENTS="20",
    )
    publish_lines(kafka_bootstrap, unique_topics.crossings, lines[:half])
    with running_worker(env, tmp_path / "paused.log") as paused:
        read_topic(kafka_bootstrap, unique_topics.flags, until_count=10, idle=0)
        paused.process.send_signal(signal.SIGSTOP)
        try:
            with running_worker(env, tmp_path / "successor.log", ready_timeout=90):
                publish_lines(kafka_bootstrap, unique_topics.crossings, lines[half:])
                # The successor got every partition once the paused worker's session expired.
                read_topic(kafka_bootstrap, unique_topics.flags, until_count=len(expected))
                paused.process.send_signal(signal.SIGCONT)
                time.sleep(15)  # the resumed worker acts on what it had in hand, and rejoins
                assert paused.process.poll() is None
                flags = flags_of(read_topic(kafka_bootstrap, unique_topics.flags, idle=3))
        finally:
            paused.process.send_signal(signal.SIGCONT)

    assert {f["flag_id"] for f in flags} == set(expected)  # none lost, none new
    assert_redeliveries_identical(flags)


def test_one_consignment_on_two_partitions_under_two_workers_loses_nothing(
    kafka_bootstrap: str,
    redis_test_url: str,
    redis_client: redis.Redis[bytes],
    unique_topics: Any,
    tmp_path: Path,
) -> None:
    # A Java scanner system (murmur2) sends the entries, a client with librdkafka's CRC32
    # default sends the exits: most consignments then live on two partitions, owned by two
    # workers whose saves race. Compare-and-set saves must keep every event of both.
    lines = simulated_lines(600, seed=29)
    expected = replay_flags(lines)
    murmur2, crc32 = [], []
    for line in lines:
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(doc, dict) and isinstance(doc.get("consignment_id"), str):
            (crc32 if doc.get("from_country") in ("KZ", "kz") else murmur2).append(
                (doc["consignment_id"].encode(), line)
            )
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
        publish_keyed(kafka_bootstrap, unique_topics.crossings, murmur2, "murmur2_random")
        publish_keyed(kafka_bootstrap, unique_topics.crossings, crc32, "consistent_random")
        flags = flags_of(
            read_topic(kafka_bootstrap, unique_topics.flags, until_count=len(expected))
        )
    assert {f["flag_id"] for f in flags} == set(expected)
