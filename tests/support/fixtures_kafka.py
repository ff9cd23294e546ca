"""Fixtures (a pytest plugin, registered in tests/conftest.py): every declared topic under
names unique to the test, so that sessions and tests sharing one broker do not interfere, and
an admin client."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from bordermon.admin.topics import ROLES, admin_client, apply_topics
from support.kafka_io import TestTopics, delete_topics, new_test_topic_names


@pytest.fixture
def unique_topic_names(kafka_bootstrap: str) -> Iterator[TestTopics]:
    """Names unique to this test for every declared topic (not created; deleted afterwards)."""
    topics = new_test_topic_names()
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
    return admin_client(kafka_bootstrap)
