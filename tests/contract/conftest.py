"""Fixtures for the state-store contract: the stores under test, memory and a real Redis.

Redis comes from the shared fixtures (support.fixtures_services: BORDERMON_REDIS_URL, else a
container, else the local stack; fail under CI=true, skip elsewhere). Each test works in the
session's own test database (`redis_test_url`) under a key prefix unique to the test run and
the test, and deletes its keys afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.stores import Harness, MemoryHarness, RedisHarness


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration)])
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    if request.param == "memory":
        yield MemoryHarness()
        return
    url: str = request.getfixturevalue("redis_test_url")
    redis_harness = RedisHarness(url)
    try:
        yield redis_harness
    finally:
        redis_harness.delete_keys()


@pytest.fixture
def redis_harness(redis_test_url: str) -> Iterator[RedisHarness]:
    """For the Redis-only tests."""
    harness = RedisHarness(redis_test_url)
    try:
        yield harness
    finally:
        harness.delete_keys()
