"""SPEC §6 "no flag lost" when Redis itself goes away: killed mid-stream, restarted later.

The test runs its own redis-server (AOF, fsync always) on a free port, so killing it does not
disturb the shared stack. While Redis is down the worker must hold its batch (retrying, not
committing) and carry on once Redis is back.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from harness import (
    assert_redeliveries_identical,
    flags_of,
    free_port,
    publish_lines,
    read_topic,
    running_worker,
    worker_env,
)
from test_pipeline_e2e import replay_flags, simulated_lines

pytestmark = pytest.mark.integration


class OwnRedis:
    """A throw-away redis-server whose data survives SIGKILL (AOF, fsync on every write)."""

    def __init__(self, data_dir: Path) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.argv = [
            binary,
            "--port",
            str(free_port()),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--dir",
            str(data_dir),
        ]
        self.url = f"redis://127.0.0.1:{self.argv[2]}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                redis.Redis.from_url(self.url, socket_connect_timeout=1).ping()
                return
            except redis.RedisError:
                time.sleep(0.1)
        raise AssertionError("the test's redis-server did not start")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    if shutil.which("redis-server") is None and not Path("/usr/bin/redis-server").exists():
        pytest.fail("redis-server is not installed (bordermon stack up installs it)")
    server = OwnRedis(tmp_path / "redis")
    (tmp_path / "redis").mkdir()
    server.start()
    yield server
    server.kill()


def test_redis_killed_mid_stream_and_restarted_loses_no_flag(
    kafka_bootstrap: str, unique_topics: Any, own_redis: OwnRedis, tmp_path: Path
) -> None:
    lines = simulated_lines(1500, seed=17)
    expected = replay_flags(lines)
    half = len(lines) // 2
    env = worker_env(
        kafka_bootstrap,
        own_redis.url,
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
