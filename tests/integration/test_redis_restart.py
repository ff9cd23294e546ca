"""SPEC §6 "no flag lost" when Redis itself goes away: killed mid-stream, restarted later.

The test runs its own redis-server (AOF, fsync always) on a free port, so killing it does not
disturb the shared stack. While Redis is down the worker must hold its batch (retrying, not
committing) and carry on once Redis is back.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.builders import simulated_lines
from support.flags import assert_redeliveries_identical, flags_of, replay_flags
from support.kafka_io import publish_lines, read_topic
from support.redis_servers import RedisServer, redis_server_binary
from support.workers import running_worker, worker_env

pytestmark = pytest.mark.integration


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A throw-away redis-server whose data survives SIGKILL (AOF, fsync on every write)."""
    binary = redis_server_binary()
    if binary is None:
        pytest.fail("redis-server is not installed (bordermon stack up installs it)")
    (tmp_path / "redis").mkdir()
    server = RedisServer(tmp_path / "redis", binary, durable=True)
    server.start()
    yield server
    server.kill()


def test_redis_killed_mid_stream_and_restarted_loses_no_flag(
    kafka_bootstrap: str, unique_topics: Any, own_redis: RedisServer, tmp_path: Path
) -> None:
    lines = simulated_lines(1500, seed=17)
    expected = replay_flags(lines)
    half = len(lines) // 2
    env = worker_env(
        kafka_bootstrap,
        own_redis.url(0),
        unique_topics.names,
        f"g-{uuid.uuid4()}",
        BORDERMON_BATCH_MAX_EVENTS="25",
    )
    publish_lines(kafka_bootstrap, unique_topics.crossings, lines[:half])
    with running_worker(env, tmp_path / "worker.log") as worker:
        read_topic(kafka_bootstrap, unique_topics.flags, until_count=20, idle=0)
        own_redis.kill()
        publish_lines(kafka_bootstrap, unique_topics.crossings, lines[half:])
        time.sleep(3)  # the worker meets the outage and retries
        assert worker.process.poll() is None, "the worker must wait for Redis, not exit"
        own_redis.start()
        flags = flags_of(
            read_topic(kafka_bootstrap, unique_topics.flags, until_count=len(expected))
        )
        log = worker.log()
    assert "state store unavailable" in log  # it did meet the outage
    assert {f["flag_id"] for f in flags} == set(expected)
    assert_redeliveries_identical(flags)
