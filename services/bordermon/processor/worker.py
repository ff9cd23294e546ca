"""`bordermon worker`: run one stream processor (start several for more throughput).

Before faust starts, the worker checks that Redis answers and that the crossings, flags,
dead-letter and (with `relabel-to-ru` on) links topics exist, so a missing piece is one clear
line instead of a retry loop.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from bordermon.core.rules import RULE_RELABEL
from bordermon.kafka import (
    KAFKA_LOGGER,
    ClientErrors,
    KafkaUnavailable,
    check_topic,
    configure_client_logging,
    unreachable_hint,
)
from bordermon.settings import Settings, mask_url

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from bordermon.core.link import LinkState
    from bordermon.core.state import ConsignmentState, StateDecodeError
    from bordermon.processor.recorder import Recorder
    from bordermon.stores.base import CorruptStateHandler
    from bordermon.stores.redis_store import RedisStore


class WorkerSetupError(Exception):
    """Something the worker cannot start without (Redis, a topic, its metrics port), with what
    to do, in one line."""


def preflight(settings: Settings) -> None:
    """Fail fast, with what to do, when Redis or a topic is missing."""
    import redis
    from confluent_kafka.admin import AdminClient

    try:
        redis.Redis.from_url(
            settings.redis_url, socket_connect_timeout=3, **settings.redis_client_args()
        ).ping()
    except (redis.RedisError, OSError) as error:
        raise WorkerSetupError(
            f"Redis at {mask_url(settings.redis_url)} does not answer ({error}); start it with"
            " `bordermon stack up` or set BORDERMON_REDIS_URL"
        ) from None
    configure_client_logging(verbose=False)
    errors = ClientErrors()
    client_config: dict[str, Any] = {
        **settings.kafka_client_config(),
        "error_cb": errors,  # refused connections are reported here, at once
        "logger": logging.getLogger(KAFKA_LOGGER),
    }
    admin = AdminClient(client_config)
    topics = [
        (settings.crossings_topic, "crossings_topic"),
        (settings.flags_topic, "flags_topic"),
        (settings.dead_letter_topic, "dead_letter_topic"),
    ]
    if RULE_RELABEL in settings.rules:
        topics.append((settings.links_topic, "links_topic"))
    for topic, setting in topics:
        try:
            check_topic(admin, admin.poll, errors, bootstrap=settings.kafka_bootstrap, topic=topic)
        except KafkaUnavailable as error:
            raise WorkerSetupError(unreachable_hint(error, setting)) from None


def serve_metrics(port: int, log: logging.Logger) -> WSGIServer:
    """Serve /metrics on `port`, on every interface (prometheus_client binds 0.0.0.0), and log
    the address it really bound; a port in use is one line saying which setting to change."""
    from prometheus_client import start_http_server

    try:
        server, _ = start_http_server(port)
    except OSError as error:
        raise WorkerSetupError(
            f"cannot serve metrics on port {port}: {error.strerror}; set BORDERMON_METRICS_PORT"
            " (or --metrics-port) to a free port, or to 0 to serve no metrics"
        ) from None
    host, bound_port = server.server_address[:2]
    log.info("metrics on http://%s:%d/metrics (all interfaces)", host, bound_port)
    return server


def quarantine_counter(recorder: Recorder, store: str) -> CorruptStateHandler:
    """The `on_corrupt` of a state store: count each state it quarantines under `store`.

    The store has already logged the key and the error at ERROR; the count is what an operator
    sees (a panel, the BordermonStatesQuarantined alert), since that key's history is lost."""

    def count(key: str, error: StateDecodeError) -> None:
        recorder.state_quarantined(store)

    return count


def open_stores(
    settings: Settings, recorder: Recorder
) -> tuple[RedisStore[ConsignmentState], RedisStore[LinkState]]:
    """The worker's two Redis stores, consignment states and link states, each counting the
    states it quarantines under its own `store` label. Nothing connects until first used."""
    from bordermon.metrics import CONSIGNMENT_STORE, LINK_STORE
    from bordermon.stores.base import LINKS
    from bordermon.stores.redis_store import LINK_PREFIX, RedisStore

    store = RedisStore.from_url(
        settings.redis_url,
        ttl_seconds=settings.state_ttl_seconds,
        password=settings.redis_password,
        on_corrupt=quarantine_counter(recorder, CONSIGNMENT_STORE),
    )
    link_store = RedisStore.from_url(
        settings.redis_url,
        ttl_seconds=settings.link_state_ttl_seconds,
        password=settings.redis_password,
        prefix=LINK_PREFIX,
        codec=LINKS,
        on_corrupt=quarantine_counter(recorder, LINK_STORE),
    )
    return store, link_store
