"""The streaming pipeline on real Kafka and Redis (SPEC §2, §6): scanners -> worker -> flags.

Each test gets its own topics, consumer group and Redis database, and runs `bordermon worker`
as a real subprocess.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

from bordermon.stores.base import CONSIGNMENTS
from bordermon.stores.redis_store import split_revision
from support.builders import crossing_line, simulated_lines
from support.flags import (
    assert_flags_as_replayed,
    assert_redeliveries_identical,
    flags_of,
    replay_flags,
)
from support.kafka_io import publish_keyed, publish_lines, read_topic
from support.workers import running_worker, worker_env

pytestmark = pytest.mark.integration

STATE_PREFIX = b"bordermon:state:"


def test_scenario_gives_exact_flags_dead_letters_and_state(
    kafka_bootstrap: str,
    redis_test_url: str,
    redis_client: redis.Redis[bytes],
    unique_topics: Any,
    tmp_path: Path,
) -> None:
    exit_a = crossing_line(
        event_id="a-x",
        consignment_id="A",
        checkpoint="KZ-TASKALA",
        from_country="KZ",
        to_country="RU",
        observed_at="2024-03-04T09:00:00+03:00",
    )
    entry_a = crossing_line(
        event_id="a-e",
        consignment_id="A",
        observed_at="2024-03-01T10:00:00+06:00",
        declared_destination="KZ",
    )
    b_in = crossing_line(
        event_id="b-e", consignment_id="B", from_country="RU", observed_at="2024-03-01T00:00:00Z"
    )
    b_out = crossing_line(
        event_id="b-x",
        consignment_id="B",
        from_country="KZ",
        to_country="RU",
        observed_at="2024-03-02T00:00:00Z",
    )
    c_in = crossing_line(event_id="c-e", consignment_id="C", observed_at="2024-03-01T00:00:00Z")
    c_out = crossing_line(
        event_id="c-x",
        consignment_id="C",
        from_country="KZ",
        to_country="KG",
        observed_at="2024-03-02T00:00:00Z",
    )
    broken = b'{"event_id": "d-1", "consignment_id": "D", '
    wrong_key = crossing_line(
        event_id="e-1", consignment_id="E", observed_at="2024-03-01T00:00:00Z"
    )
    no_goods = crossing_line(
        event_id="f-1", consignment_id="F", observed_at="2024-03-01T00:00:00Z", goods=None
    )
    records = [
        (b"A", exit_a),  # the exit first: out of order
        (b"B", b_in),
        (b"D", broken),
        (b"A", entry_a),
        (b"A", entry_a),  # a duplicate
        (b"B", b_out),
        (b"NOT-E", wrong_key),
        (b"C", c_in),
        (b"C", c_out),
        (b"F", no_goods),
    ]
    publish_keyed(kafka_bootstrap, unique_topics.crossings, records)
    env = worker_env(kafka_bootstrap, redis_test_url, unique_topics.names, f"g-{uuid.uuid4()}")
    with running_worker(env, tmp_path / "worker.log"):
        flag_messages = read_topic(kafka_bootstrap, unique_topics.flags, until_count=3)
        dead = read_topic(kafka_bootstrap, unique_topics.dead_letter, until_count=3)

    flags = {(f["rule"], f["consignment_id"]): f for f in flags_of(flag_messages)}
    # A: transit, and its exit of CHPL goods has no permit; B: Russian goods returning are no
    # transit, but their exit without a permit is export-without-permit.
    assert sorted(flags) == [
        ("export-without-permit", "A"),
        ("export-without-permit", "B"),
        ("transit-to-ru", "A"),
    ]
    assert {f["flag_id"] for f in flags.values()} == set(replay_flags([r[1] for r in records]))
    assert {m.key() for m in flag_messages} == {b"A", b"B"}
    flag = flags["transit-to-ru", "A"]
    assert (flag["entry"]["event_id"], flag["exit"]["event_id"]) == ("a-e", "a-x")
    assert flags["export-without-permit", "A"]["exit"]["event_id"] == "a-x"
    assert flag["dwell_seconds"] == 3 * 86400 + 3600 * 2  # 04:00Z -> 06:00Z three days later
    assert flag["severity"] == "high"
    assert flag["reasons"] == ["chpl:1:854231", "declared-destination:KZ"]

    assert len(dead) == 3
    by_reason = {dict(m.headers())["error"].decode(): m for m in dead}
    assert set(by_reason) == {"invalid_json", "key_mismatch", "missing_field:goods"}
    assert by_reason["invalid_json"].value() == broken  # the original bytes, untouched
    assert by_reason["key_mismatch"].key() == b"NOT-E"
    headers = dict(by_reason["key_mismatch"].headers())
    assert headers["source_topic"].decode() == unique_topics.crossings
    assert int(headers["source_partition"]) >= 0 and int(headers["source_offset"]) >= 0
    assert headers["detail"]

    stored_a = redis_client.get(STATE_PREFIX + b"A")
    assert stored_a is not None
    revision, encoded_a = split_revision(stored_a)
    state_a = CONSIGNMENTS.decode("A", encoded_a)
    assert revision >= 2  # saved with the flag pending, then with it acknowledged
    assert state_a.flagged == {"export-without-permit", "transit-to-ru"}
    assert not state_a.pending and state_a.accepted == 2
    assert redis_client.exists(STATE_PREFIX + b"B") and redis_client.exists(STATE_PREFIX + b"C")
    assert not redis_client.exists(STATE_PREFIX + b"D")
    ttl = redis_client.ttl(STATE_PREFIX + b"A")
    assert 37 * 86400 - 120 <= ttl <= 37 * 86400  # window + 7 days


def test_stream_and_replay_give_the_same_flag_ids(
    kafka_bootstrap: str,
    redis_test_url: str,
    redis_client: redis.Redis[bytes],
    unique_topics: Any,
    tmp_path: Path,
) -> None:
    lines = simulated_lines(800, seed=7)
    expected = replay_flags(lines)
    assert len(expected) > 100
    publish_lines(kafka_bootstrap, unique_topics.crossings, lines)
    env = worker_env(kafka_bootstrap, redis_test_url, unique_topics.names, f"g-{uuid.uuid4()}")
    with running_worker(env, tmp_path / "worker.log"):
        flags = flags_of(
            read_topic(kafka_bootstrap, unique_topics.flags, until_count=len(expected))
        )
    assert {f["flag_id"] for f in flags} == set(expected)
    assert_flags_as_replayed(flags, expected)


def test_sigkill_mid_stream_loses_no_flag_and_makes_no_new_id(
    kafka_bootstrap: str,
    redis_test_url: str,
    redis_client: redis.Redis[bytes],
    unique_topics: Any,
    tmp_path: Path,
) -> None:
    lines = simulated_lines(1500, seed=11)
    expected = replay_flags(lines)
    half = len(lines) // 2
    env = worker_env(
        kafka_bootstrap,
        redis_test_url,
        unique_topics.names,
        f"g-{uuid.uuid4()}",
        BORDERMON_BATCH_MAX_EVENTS="25",  # small batches: many commit points to die between
    )
    publish_lines(kafka_bootstrap, unique_topics.crossings, lines[:half])
    with running_worker(env, tmp_path / "worker-1.log") as worker:
        read_topic(kafka_bootstrap, unique_topics.flags, until_count=20, idle=0)
        worker.kill()  # SIGKILL: no shutdown, no final commit
    publish_lines(kafka_bootstrap, unique_topics.crossings, lines[half:])
    with running_worker(env, tmp_path / "worker-2.log"):
        flags = flags_of(
            read_topic(kafka_bootstrap, unique_topics.flags, until_count=len(expected))
        )
    ids = [f["flag_id"] for f in flags]
    assert set(ids) == set(expected)  # none lost, none new
    assert_redeliveries_identical(flags)


def test_two_workers_give_the_same_flags_as_one(
    kafka_bootstrap: str,
    redis_test_url: str,
    redis_client: redis.Redis[bytes],
    unique_topics: Any,
    tmp_path: Path,
) -> None:
    lines = simulated_lines(1000, seed=13)
    expected = replay_flags(lines)
    env = worker_env(
        kafka_bootstrap,
        redis_test_url,
        unique_topics.names,
        f"g-{uuid.uuid4()}",
        BORDERMON_BATCH_MAX_EVENTS="50",
    )
    with (
        running_worker(env, tmp_path / "worker-a.log"),
        running_worker(env, tmp_path / "worker-b.log"),
    ):
        publish_lines(kafka_bootstrap, unique_topics.crossings, lines)
        flags = flags_of(
            read_topic(kafka_bootstrap, unique_topics.flags, until_count=len(expected))
        )
    assert {f["flag_id"] for f in flags} == set(expected)


def test_worker_without_its_topics_or_broker_says_what_to_do_in_one_line(
    kafka_bootstrap: str, redis_test_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from bordermon.cli import main

    common = ["worker", "--redis-url", redis_test_url, "--metrics-port", "0"]
    missing = [*common, "--kafka-bootstrap", kafka_bootstrap, "--crossings-topic", "no.such"]
    assert main(missing) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no.such" in err and "bordermon topics apply" in err

    assert main([*common, "--kafka-bootstrap", "127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bordermon stack up" in err
