"""`bordermon worker`: run a stream processor (faust, state in Redis)."""

from __future__ import annotations

import argparse
import logging

from bordermon.cli.common import (
    KAFKA_SECURITY_SETTINGS,
    CommandError,
    add_settings_options,
    load_settings,
)
from bordermon.processor import worker as library
from bordermon.processor.worker import WorkerSetupError, open_stores, preflight, serve_metrics

HELP = "run a stream processor (faust, state in Redis)"
DESCRIPTION = library.__doc__

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


EPILOG = """\
examples:
  bordermon worker                               # the local stack, every rule, metrics on :9108
  bordermon worker --rules transit-to-ru         # one rule: no link stage, no links topic
  bordermon worker --metrics-port 9109           # a second worker beside the first (same group)
  bordermon worker --config run/secure/clients/worker.toml     # the secure stack (SASL_SSL, TLS)

Several workers with the same --consumer-group share the partitions; a worker that stops
(SIGTERM) finishes its batches and commits first. Exit status 70: processing failed for good
(the log says why); nothing of the failed batch was committed, so a restart reads it again.
"""


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    add_settings_options(parser, *WORKER_SETTINGS)
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="log level (default info)",
    )


def run(args: argparse.Namespace) -> int:
    import faust

    from bordermon.metrics import CONFIG_INFO, PROMETHEUS
    from bordermon.processor.app import EXIT_UNEXPECTED, create_app

    settings = load_settings(args)
    config = settings.detection_config()
    registry = settings.load_scanner_registry()
    try:
        preflight(settings)
    except WorkerSetupError as error:
        raise CommandError(str(error)) from None
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    log = logging.getLogger("bordermon.worker")
    store, link_store = open_stores(settings, PROMETHEUS)
    worker_app = create_app(settings, config, store, link_store, registry=registry)
    if settings.metrics_port:
        try:
            serve_metrics(settings.metrics_port, log)
        except WorkerSetupError as error:
            raise CommandError(str(error)) from None
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
    worker = faust.Worker(worker_app.app, loglevel=args.log_level.upper(), quiet=True)
    try:
        worker.execute_from_commandline()  # raises SystemExit when the worker has stopped
    except SystemExit:
        if worker_app.consumer.failure is not None:
            return EXIT_UNEXPECTED  # it stopped because processing failed (logged)
        raise
    return 0
