"""Fixtures (a pytest plugin, registered in tests/conftest.py): the Kafka broker and the Redis
server of the session, from wherever support.services finds them."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from support.services import (
    KAFKA_ENV,
    REDIS_ENV,
    docker_answers,
    kafka_answers,
    redis_answers,
    unavailable,
)


@pytest.fixture(scope="session")
def service_origin() -> dict[str, str]:
    """Where each service came from: "env", "docker" or "stack" (filled by the fixtures)."""
    return {}


@pytest.fixture(scope="session")
def kafka_bootstrap(service_origin: dict[str, str]) -> Iterator[str]:
    given = os.environ.get(KAFKA_ENV, "").strip()
    if given:
        service_origin["kafka"] = "env"
        problem = kafka_answers(given)
        if problem:
            unavailable(f"Kafka at {given} ({KAFKA_ENV}) does not answer: {problem}")
        yield given
        return
    if docker_answers():
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
    problem = kafka_answers(bootstrap)
    if problem:
        unavailable(f"Kafka from the local stack at {bootstrap} does not answer: {problem}")
    yield bootstrap


@pytest.fixture(scope="session")
def redis_url(service_origin: dict[str, str]) -> Iterator[str]:
    given = os.environ.get(REDIS_ENV, "").strip()
    if given:
        service_origin["redis"] = "env"
        problem = redis_answers(given)
        if problem:
            unavailable(f"Redis from {REDIS_ENV} does not answer: {problem}")
        yield given
        return
    if docker_answers():
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
    problem = redis_answers(report.redis_url)
    if problem:
        unavailable(f"Redis from the local stack at {report.redis_url} does not answer: {problem}")
    yield report.redis_url
