"""Where the integration tiers get Kafka and Redis from, and what they do when they cannot.

Each service comes from, in order:
1. the environment (BORDERMON_KAFKA_BOOTSTRAP, BORDERMON_REDIS_URL) when set: an existing
   cluster, a compose file, a CI service;
2. testcontainers, when a Docker engine answers;
3. the local no-Docker stack (`bordermon stack up`), which is started when needed and left
   running afterwards, so the next session starts in no time.

A service that cannot be had FAILS the tests under CI=true (a run that skipped everything
must not look green) and skips them elsewhere, with the reason: `unavailable`.
"""

from __future__ import annotations

import fcntl
import importlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, NoReturn
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis

KAFKA_ENV = "BORDERMON_KAFKA_BOOTSTRAP"
REDIS_ENV = "BORDERMON_REDIS_URL"
TEST_REDIS_DBS = range(15, 0, -1)
"""Databases the tests may use (0 is left to people and workers); one per running session."""
REDIS_DB_LOCKS = Path(tempfile.gettempdir()) / "bordermon-test-redis-db"
"""One lock file per database in use, shared by test sessions and tests/bench/bench_pipeline.py."""


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def unavailable(reason: str) -> NoReturn:
    """Fail under CI (never skip to green), skip elsewhere."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: integration tests must run, not skip)", pytrace=False)
    pytest.skip(reason)


def kafka_answers(bootstrap: str, timeout: float = 10.0) -> str | None:
    """None when a Kafka AdminClient can list topics; else why not."""
    from confluent_kafka import KafkaException

    from bordermon.admin.topics import admin_client

    try:
        metadata = admin_client(bootstrap).list_topics(timeout=timeout)
    except KafkaException as error:
        return str(error.args[0].str() if error.args else error)
    return None if metadata.brokers else "no brokers in the metadata"


def redis_answers(url: str) -> str | None:
    """None when Redis at `url` answers PING; else why not."""
    try:
        with redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5) as client:
            client.ping()
    except redis.RedisError as error:
        return str(error)
    return None


def docker_answers() -> bool:
    """A Docker engine answers; kept cheap (no engine on the dev/CI machines today)."""
    if not os.environ.get("DOCKER_HOST") and not Path("/var/run/docker.sock").exists():
        return False
    try:
        docker = importlib.import_module("docker")  # untyped; present with testcontainers
        docker.from_env(timeout=3).ping()
    except Exception:
        return False
    return True


def database_url(redis_url: str, database: int) -> str:
    """`redis_url` pointing at another database number."""
    return urlunsplit(urlsplit(redis_url)._replace(path=f"/{database}"))


@contextmanager
def locked_test_database(candidates: Iterable[int] = TEST_REDIS_DBS) -> Iterator[int | None]:
    """The first of `candidates` no other test session or benchmark on this machine holds,
    locked until the block ends; None when every one is taken.

    Sessions of several people (or CI and a person) may share one Redis; each holds a lock file
    for its database while it runs.
    """
    REDIS_DB_LOCKS.mkdir(exist_ok=True)
    for database in candidates:
        handle: IO[str] = (REDIS_DB_LOCKS / f"{database}.lock").open("w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        try:
            yield database
        finally:
            handle.close()
        return
    yield None
