"""The fixtures every tier shares, as plugins from tests/support (see tests/README.md).

pytest takes `pytest_plugins` only from this, the top-level conftest; `tests/` is on the import
path (pyproject's `pythonpath`), so the plugins are the modules `support.fixtures_*`. The
folders' own conftests hold only what one folder uses.
"""

import pytest

# The helpers' asserts (support.flags.assert_flags_as_replayed...) report the values compared,
# as the tests' own do; must run before any support module is imported.
pytest.register_assert_rewrite("support")

pytest_plugins = [
    "support.fixtures_services",  # kafka_bootstrap, redis_url, service_origin
    "support.fixtures_redis",  # redis_test_db, redis_test_url, redis_client
    "support.fixtures_kafka",  # unique_topic_names, unique_topics, kafka_admin
]
