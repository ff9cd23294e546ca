"""Fixtures (a pytest plugin, registered in tests/conftest.py): a Redis database of this
session's own on the session's Redis, so that sessions sharing one Redis do not interfere."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
import redis

from support.services import REDIS_DB_LOCKS, database_url, locked_test_database


@pytest.fixture(scope="session")
def redis_test_db() -> Iterator[int]:
    """A Redis database number no other test session on this machine is using."""
    with locked_test_database() as database:
        if database is None:
            pytest.fail(
                f"all test Redis databases are in use by other sessions (locks in {REDIS_DB_LOCKS})"
            )
        yield database


@pytest.fixture
def redis_test_url(redis_url: str, redis_test_db: int) -> str:
    """redis_url pointing at this session's test database (for code under test)."""
    return database_url(redis_url, redis_test_db)


@pytest.fixture
def redis_client(redis_test_url: str) -> Iterator[redis.Redis[bytes]]:
    """A client on this session's test database, empty at the start, flushed at the end."""
    client: redis.Redis[bytes] = redis.Redis.from_url(redis_test_url)
    client.flushdb()
    try:
        yield client
    finally:
        with contextlib.suppress(redis.RedisError):
            client.flushdb()
        client.close()
