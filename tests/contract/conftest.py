"""Fixtures for the state-store contract: the stores under test, memory and a real Redis.

Redis comes from the integration fixtures (tests/integration/conftest.py: BORDERMON_REDIS_URL,
else a container, else the local stack; fail under CI=true, skip elsewhere), loaded here by path
because fixtures of a sibling folder's conftest are not visible to this folder. Each test works
in the session's own test database (`redis_test_url`) under a key prefix unique to the test run
and the test, and deletes its keys afterwards.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from store_helpers import Harness, MemoryHarness, RedisHarness

_INTEGRATION_CONFTEST = Path(__file__).parents[1] / "integration" / "conftest.py"
_spec = importlib.util.spec_from_file_location(
    "bordermon_tests_integration_fixtures", _INTEGRATION_CONFTEST
)
assert _spec is not None and _spec.loader is not None, _INTEGRATION_CONFTEST
_integration = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _integration  # dataclasses look their module up there
_spec.loader.exec_module(_integration)

# Re-exported so that pytest registers them for this folder too.
service_origin = _integration.service_origin
redis_url = _integration.redis_url
redis_test_db = _integration.redis_test_db
redis_test_url = _integration.redis_test_url


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
