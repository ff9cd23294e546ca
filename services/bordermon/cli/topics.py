"""`bordermon topics apply`: create or check the Kafka topics declared under topics/."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from bordermon.admin import topics as library
from bordermon.admin.acls import AclDeclarationError, default_acls_file, load_acls
from bordermon.admin.topics import (
    DEFAULT_BOOTSTRAP,
    ROLES,
    TOPICS_FILE_ENV,
    TopicDeclarationError,
    apply_topics,
    default_topics_file,
    load_declarations,
    with_names,
)
from bordermon.cli.common import KAFKA_SECURITY_SETTINGS, add_settings_options, load_settings
from bordermon.kafka import BrokerUnreachable
from bordermon.settings import Settings, SettingsError

HELP = "create or check the Kafka topics declared under topics/"
DESCRIPTION = library.__doc__

EPILOG = """\
examples:
  bordermon topics apply                   # create what is missing on the local broker
  bordermon topics apply --check           # change nothing: report missing and drifted topics
  bordermon topics apply --config run/secure/clients/admin.toml   # topics and ACLs, as admin
  bordermon topics apply --bootstrap kafka:9092 --timeout 60      # another broker, waiting 60 s
"""


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("action", choices=("apply",), help="create missing topics, check the rest")
    parser.add_argument(
        "--check",
        action="store_true",
        help="change nothing: report missing and drifted topics (exit 1 if any)",
    )
    parser.add_argument(
        "--file",
        metavar="TOML",
        help=f"declarations (default: ${TOPICS_FILE_ENV} or topics/topics.toml of the checkout)",
    )
    parser.add_argument(
        "--bootstrap",
        "--kafka-bootstrap",
        dest="setting_kafka_bootstrap",
        metavar="HOST:PORT",
        help="Kafka bootstrap servers; env BORDERMON_KAFKA_BOOTSTRAP"
        f" (default {DEFAULT_BOOTSTRAP})",
    )
    for role in ROLES:
        option = role.replace("_", "-")
        parser.add_argument(
            f"--{option}-topic",
            dest=f"setting_{role}_topic",
            metavar="TOPIC",
            help=f"name of the {role.replace('_', '-')} topic; env BORDERMON_{role.upper()}_TOPIC",
        )
    parser.add_argument(
        "--acls",
        metavar="TOML",
        help="ACL declarations (default: acls.toml beside the topics declarations); applied"
        " when the broker has an authorizer, skipped with a note otherwise",
    )
    parser.add_argument(
        "--config", metavar="FILE", help="TOML settings file (default: $BORDERMON_CONFIG)"
    )
    add_settings_options(parser, *KAFKA_SECURITY_SETTINGS, with_config=False)
    parser.add_argument(
        "--timeout",
        type=float,
        default=15.0,
        metavar="SECONDS",
        help="how long to wait for the broker (default 15)",
    )


def _settings_and_names(args: argparse.Namespace) -> tuple[Any, dict[str, str]]:
    """Bootstrap and topic names from the settings (flags > env > config file > defaults).

    A topic name equal to the settings' default does not override the declarations file, so a
    deployment's own topics.toml can rename topics without setting anything else."""
    settings = load_settings(args)
    defaults = Settings()
    names: dict[str, str] = {}
    for role in ROLES:
        name = getattr(settings, f"{role}_topic")
        if name != getattr(defaults, f"{role}_topic"):
            names[role] = name
    return settings, names


def run(args: argparse.Namespace) -> int:
    try:
        settings, names = _settings_and_names(args)
        path = Path(args.file) if getattr(args, "file", None) else default_topics_file()
        declarations = with_names(load_declarations(path), names)
        acls_arg = getattr(args, "acls", None)
        acls_path = Path(acls_arg) if acls_arg else default_acls_file(path)
        acls = None
        if acls_arg or acls_path.is_file():
            acls = load_acls(
                acls_path,
                {d.role: d.name for d in declarations},
                {"consumer_group": settings.consumer_group},
            )
        report = apply_topics(
            settings.kafka_bootstrap,
            declarations=declarations,
            check_only=bool(getattr(args, "check", False)),
            timeout=float(getattr(args, "timeout", 15.0)),
            client_config=settings.kafka_client_config(),
            acls=acls,
        )
    except BrokerUnreachable as error:
        print(
            f"bordermon topics: {error}: start it with `bordermon stack up`,"
            " or point --bootstrap / BORDERMON_KAFKA_BOOTSTRAP at a running broker",
            file=sys.stderr,
        )
        return 2
    except (TopicDeclarationError, AclDeclarationError, SettingsError) as error:
        print(f"bordermon topics: {error}", file=sys.stderr)
        return 2
    for line in report.lines():
        print(line)
    return 0 if report.ok else 1
