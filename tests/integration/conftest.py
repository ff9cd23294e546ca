"""Fixtures for integration tests: a real Kafka and a real Redis, however this machine has them.

Each service comes from, in order:
1. the environment (BORDERMON_KAFKA_BOOTSTRAP, BORDERMON_REDIS_URL) when set: an existing
   cluster, a compose file, a CI service;
2. testcontainers, when a Docker engine answers;
3. the local no-Docker stack (`bordermon stack up`), which is started when needed and left
   running afterwards, so the next session starts in no time.

A service that cannot be had FAILS the tests under CI=true (a run that skipped everything
must not look green) and skips them elsewhere, with the reason.

Tests get isolated resources so that sessions and tests do not interfere on a shared stack:
`unique_topics` creates the declared topics under names unique to the test (and deletes them
after), and `redis_client` works in a Redis database of its own, flushed before and after.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import os
import sys
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis

from bordermon.topics import ROLES, TopicDeclaration, apply_topics, load_declarations

# harness.py sits beside this file; tests/contract loads this conftest by path, from where the
# folder is not on sys.path yet.
if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))
from harness import unavailable

KAFKA_ENV = "BORDERMON_KAFKA_BOOTSTRAP"
REDIS_ENV = "BORDERMON_REDIS_URL"
TEST_REDIS_DBS = range(15, 0, -1)
"""Databases the tests may use (0 is left to people and workers); one per running session."""


def _kafka_answers(bootstrap: str, timeout: float = 10.0) -> str | None:
    """None when a Kafka AdminClient can list topics; else why not."""
    from confluent_kafka import KafkaException

    from bordermon.topics import admin_client

    try:
        metadata = admin_client(bootstrap).list_topics(timeout=timeout)
    except KafkaException as error:
        return str(error.args[0].str() if error.args else error)
    return None if metadata.brokers else "no brokers in the metadata"


def _redis_answers(url: str) -> str | None:
    try:
        with redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5) as client:
            client.ping()
    except redis.RedisError as error:
        return str(error)
    return None


def _docker_answers() -> bool:
    """A Docker engine answers; kept cheap (no engine on the dev/CI machines today)."""
    if not os.environ.get("DOCKER_HOST") and not Path("/var/run/docker.sock").exists():
        return False
    try:
        docker = importlib.import_module("docker")  # untyped; present with testcontainers
        docker.from_env(timeout=3).ping()
    except Exception:
        return False
    return True


@pytest.fixture(scope="session")
def service_origin() -> dict[str, str]:
    """Where each service came from: "env", "docker" or "stack" (filled by the fixtures)."""
    return {}


@pytest.fixture(scope="session")
def kafka_bootstrap(service_origin: dict[str, str]) -> Iterator[str]:
    given = os.environ.get(KAFKA_ENV, "").strip()
    if given:
        service_origin["kafka"] = "env"
        problem = _kafka_answers(given)
        if problem:
            unavailable(f"Kafka at {given} ({KAFKA_ENV}) does not answer: {problem}")
        yield given
        return
    if _docker_answers():
        from testcontainers.community.kafka import KafkaContainer

        service_origin["kafka"] = "docker"
        with KafkaContainer().with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    from bordermon_devstack import stack

    service_origin["kafka"] = "stack"
    try:
        report = stack.up(["kafka"], quiet=True)
    except stack.StackError as error:
        unavailable(f"the local stack could not start Kafka: {error}")
    bootstrap = report.kafka_bootstrap
    problem = _kafka_answers(bootstrap)
    if problem:
        unavailable(f"Kafka from the local stack at {bootstrap} does not answer: {problem}")
    yield bootstrap


@pytest.fixture(scope="session")
def redis_url(service_origin: dict[str, str]) -> Iterator[str]:
    given = os.environ.get(REDIS_ENV, "").strip()
    if given:
        service_origin["redis"] = "env"
        problem = _redis_answers(given)
        if problem:
            unavailable(f"Redis from {REDIS_ENV} does not answer: {problem}")
        yield given
        return
    if _docker_answers():
        from testcontainers.community.redis import RedisContainer

        service_origin["redis"] = "docker"
        with RedisContainer() as container:
            host, port = container.get_container_host_ip(), container.get_exposed_port(6379)
            yield f"redis://{host}:{port}/0"
        return
    from bordermon_devstack import stack

    service_origin["redis"] = "stack"
    try:
        report = stack.up(["redis"], quiet=True)
    except stack.StackError as error:
        unavailable(f"the local stack could not start Redis: {error}")
    problem = _redis_answers(report.redis_url)
    if problem:
        unavailable(f"Redis from the local stack at {report.redis_url} does not answer: {problem}")
    yield report.redis_url


@pytest.fixture(scope="session")
def redis_test_db() -> Iterator[int]:
    """A Redis database number no other test session on this machine is using.

    Sessions of several people (or CI and a person) may share one Redis; each holds a lock file
    for its database while it runs.
    """
    locks = Path(tempfile.gettempdir()) / "bordermon-test-redis-db"
    locks.mkdir(exist_ok=True)
    for db in TEST_REDIS_DBS:
        handle: IO[str] = (locks / f"{db}.lock").open("w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        try:
            yield db
        finally:
            handle.close()
        return
    pytest.fail(f"all test Redis databases are in use by other sessions (locks in {locks})")


@pytest.fixture
def redis_test_url(redis_url: str, redis_test_db: int) -> str:
    """redis_url pointing at this session's test database (for code under test)."""
    parts = urlsplit(redis_url)
    return urlunsplit(parts._replace(path=f"/{redis_test_db}"))


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


# --- Kafka topics ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TestTopics:
    """Topic names of one test, by role (SPEC §2 roles: crossings, flags, dead_letter, and the
    internal links topic)."""

    names: dict[str, str]
    declarations: tuple[TopicDeclaration, ...]

    __test__ = False  # not a test class, despite its name

    @property
    def crossings(self) -> str:
        return self.names["crossings"]

    @property
    def flags(self) -> str:
        return self.names["flags"]

    @property
    def dead_letter(self) -> str:
        return self.names["dead_letter"]

    @property
    def links(self) -> str:
        return self.names["links"]

    def declaration(self, role: str) -> TopicDeclaration:
        return next(d for d in self.declarations if d.role == role)


def delete_topics(bootstrap: str, names: list[str], timeout: float = 30.0) -> None:
    """Delete topics, ignoring the ones that do not exist; other failures are warnings."""
    from confluent_kafka import KafkaError, KafkaException

    from bordermon.topics import admin_client

    if not names:
        return
    # Keep the client referenced until every future is done: a collected AdminClient cancels
    # its requests (and the topics would silently pile up on a shared broker).
    admin = admin_client(bootstrap)
    futures = admin.delete_topics(names, operation_timeout=timeout, request_timeout=timeout)
    for name, future in futures.items():
        try:
            future.result()
        except KafkaException as error:
            if error.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                warnings.warn(f"could not delete test topic {name}: {error}", stacklevel=1)


@pytest.fixture
def unique_topic_names(kafka_bootstrap: str) -> Iterator[TestTopics]:
    """Names unique to this test for every declared topic (not created; deleted afterwards)."""
    suffix = uuid.uuid4().hex[:10]
    declarations = tuple(d.renamed(f"{d.name}.t-{suffix}") for d in load_declarations())
    topics = TestTopics({d.role: d.name for d in declarations}, declarations)
    yield topics
    delete_topics(kafka_bootstrap, list(topics.names.values()))


@pytest.fixture
def unique_topics(kafka_bootstrap: str, unique_topic_names: TestTopics) -> TestTopics:
    """Every declared topic, created for this test with the declared partitions and configs
    under unique names (pass `unique_topics.names` as name overrides / settings)."""
    report = apply_topics(kafka_bootstrap, name_overrides=unique_topic_names.names)
    if not report.ok:
        pytest.fail("could not create the test topics:\n" + "\n".join(report.lines()))
    assert set(unique_topic_names.names) == set(ROLES)
    return unique_topic_names


@pytest.fixture
def kafka_admin(kafka_bootstrap: str) -> Any:
    """A confluent-kafka AdminClient on the test broker (librdkafka's logs kept quiet)."""
    from bordermon.topics import admin_client

    return admin_client(kafka_bootstrap)
