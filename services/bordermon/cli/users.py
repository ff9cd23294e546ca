"""`bordermon users set-password`: add a Kafka SCRAM user or rotate its password."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bordermon.admin import users as library
from bordermon.admin.topics import admin_client
from bordermon.admin.users import USER_NAME, UserError, generate_password_file, set_password
from bordermon.cli.common import (
    KAFKA_SECURITY_SETTINGS,
    CommandError,
    add_settings_options,
    load_settings,
)
from bordermon.settings import read_secret_file

HELP = "add a Kafka SCRAM user or rotate its password (as admin)"
DESCRIPTION = library.__doc__


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter  # keep the example's lines
    parser.add_argument("action", choices=("set-password",), help="create or rotate a user")
    parser.add_argument("user", help="the Kafka user (principal User:<user>)")
    parser.add_argument(
        "--password-file",
        required=True,
        metavar="FILE",
        help="the user's password (the file its clients use as kafka_password_file)",
    )
    parser.add_argument(
        "--generate",
        action="store_true",
        help="first write a fresh random password to FILE (mode 0600); it is never printed",
    )
    add_settings_options(parser, "kafka_bootstrap", *KAFKA_SECURITY_SETTINGS)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    if not USER_NAME.fullmatch(args.user):
        raise CommandError(f"{args.user!r} is not a user name (letters, digits, '.', '_', '-')")
    path = Path(args.password_file)
    if args.generate:
        generate_password_file(path)
    password = read_secret_file(str(path), "--password-file")
    admin = admin_client(settings.kafka_bootstrap, settings.kafka_client_config())
    try:
        set_password(admin, args.user, password.reveal())
    except UserError as error:
        raise CommandError(str(error)) from None
    print(f"users: SCRAM-SHA-512 password of {args.user} set from {path}", file=sys.stderr)
    return 0
