"""`bordermon worker`: run one stream processor (start several for more throughput).

Before faust starts, the worker checks that Redis answers and that the crossings, flags,
dead-letter and (with `relabel-to-ru` on) links topics exist, so a missing piece is one clear
line instead of a retry loop.
"""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING, Any

from bordermon.cli import (
    KAFKA_SECURITY_SETTINGS,
    CommandError,
    add_settings_options,
    load_settings,
)
from bordermon.core.rules import RULE_RELABEL
from bordermon.settings import Settings, mask_url

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

WORKER_SETTINGS = (
    "kafka_bootstrap",
    "redis_url",
    "crossings_topic",
    "flags_topic",
    "dead_letter_topic",
    "links_topic",
    "consumer_group",
    "rules",
    "window",
    "relabel_window",
    "monitored_country",
    "destinations_of_concern",
    "watchlists",
    "export_controls",
    "state_ttl",
    "link_state_ttl",
    "metrics_port",
    "require_signatures",
    "scanner_registry",
    *KAFKA_SECURITY_SETTINGS,
    "redis_password_file",
)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    add_settings_options(parser, *WORKER_SETTINGS)
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="log level (default info)",
    )


def preflight(settings: Settings) -> None:
    """Fail fast, with what to do, when Redis or a topic is missing."""
    import redis
    from confluent_kafka.admin import AdminClient

    from bordermon.kafka import (
        KAFKA_LOGGER,
        ClientErrors,
        KafkaUnavailable,
        check_topic,
        configure_client_logging,
        unreachable_hint,
    )

    try:
        redis.Redis.from_url(
            settings.redis_url, socket_connect_timeout=3, **settings.redis_client_args()
        ).ping()
    except (redis.RedisError, OSError) as error:
        raise CommandError(
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
            raise CommandError(unreachable_hint(error, setting)) from None


def serve_metrics(port: int, log: logging.Logger) -> WSGIServer:
    """Serve /metrics on `port`, on every interface (prometheus_client binds 0.0.0.0), and log
    the address it really bound; a port in use is one line saying which setting to change."""
    from prometheus_client import start_http_server

    try:
        server, _ = start_http_server(port)
    except OSError as error:
        raise CommandError(
            f"cannot serve metrics on port {port}: {error.strerror}; set BORDERMON_METRICS_PORT"
            " (or --metrics-port) to a free port, or to 0 to serve no metrics"
        ) from None
    host, bound_port = server.server_address[:2]
    log.info("metrics on http://%s:%d/metrics (all interfaces)", host, bound_port)
    return server


def run(args: argparse.Namespace) -> int:
    import faust

    from bordermon.metrics import CONFIG_INFO
    from bordermon.processor.app import create_app
    from bordermon.stores.base import LINKS
    from bordermon.stores.redis_store import LINK_PREFIX, RedisStore

    settings = load_settings(args)
    config = settings.detection_config()
    registry = settings.load_scanner_registry()
    preflight(settings)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    log = logging.getLogger("bordermon.worker")
    store = RedisStore.from_url(
        settings.redis_url,
        ttl_seconds=settings.state_ttl_seconds,
        password=settings.redis_password,
    )
    link_store = RedisStore.from_url(
        settings.redis_url,
        ttl_seconds=settings.link_state_ttl_seconds,
        password=settings.redis_password,
        prefix=LINK_PREFIX,
        codec=LINKS,
    )
    app = create_app(settings, config, store, link_store, registry=registry)
    if settings.metrics_port:
        serve_metrics(settings.metrics_port, log)
    CONFIG_INFO.info(
        {
            "window_seconds": str(config.window_seconds),
            "monitored_country": config.monitored_country,
            "destinations_of_concern": ",".join(sorted(config.destinations_of_concern)),
            "watchlist_codes": str(len(config.watchlist)),
            "crossings_topic": settings.crossings_topic,
            "flags_topic": settings.flags_topic,
        }
    )
    log.info("starting worker: %s", settings)
    if registry is not None:
        log.info(
            "signed scans required: %d scanner(s) in %s", len(registry), settings.scanner_registry
        )
    worker = faust.Worker(app, loglevel=args.log_level.upper(), quiet=True)
    worker.execute_from_commandline()
    return 0
