"""`bordermon stack up|down|status`: the local Kafka, Redis and Prometheus (no Docker).

A `bordermon` command from outside the product: this module is the `stack` entry point of the
`bordermon.commands` group (deploy/local/devstack/pyproject.toml), with the interface of the
product's command modules (HELP, DESCRIPTION, configure_parser, run). `python -m
bordermon_devstack` runs it without going through `bordermon`.
"""

from __future__ import annotations

import argparse
import sys

from bordermon_devstack import stack as library
from bordermon_devstack.stack import (
    DEFAULT_TIMEOUT_S,
    RUN_DIR_ENV,
    SERVICES,
    down,
    status,
    up,
)
from bordermon_devstack.stack_base import StackError

HELP = "run the local Kafka, Redis and Prometheus (no Docker needed; development tool)"
DESCRIPTION = library.__doc__

EPILOG = """\
exit status: 0 when done (status: when every service answers), 1 when a service could not
start or is down (one line says what to do), 130 after Ctrl-C.

examples:
  bordermon stack up                   # start what is down, wait until each answers
  bordermon stack status               # one line per service
  bordermon stack up kafka --run-dir /tmp/run   # one service, in a run folder of its own
  bordermon stack up --secure          # TLS, SCRAM and ACLs: run/secure, ports 9094 and 6380
  bordermon stack down                 # stop what `up` started
"""


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "action",
        choices=("up", "down", "status"),
        help="up: start and wait until all answer; down: stop; status: exit 0 when all are up",
    )
    parser.add_argument(
        "services",
        nargs="*",
        metavar="SERVICE",
        help=f"only these services ({', '.join(s.name for s in SERVICES)}; default: all)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help=f"how long `up` waits for each service to answer (default {DEFAULT_TIMEOUT_S:.0f})",
    )
    parser.add_argument(
        "--run-dir",
        metavar="DIR",
        help=f"data, pid files and logs (default: ${RUN_DIR_ENV} or <repo>/run)",
    )
    parser.add_argument(
        "--secure",
        action="store_true",
        default=None,
        help="Kafka with TLS, SASL/SCRAM and ACLs, Redis with TLS and ACL users (default run"
        " folder <repo>/run/secure, ports 9094/9095 and 6380; env BORDERMON_STACK_SECURE=1)",
    )


def run(args: argparse.Namespace) -> int:
    services = getattr(args, "services", None) or None
    run_dir = getattr(args, "run_dir", None)
    secure = getattr(args, "secure", None)
    try:
        if args.action == "up":
            up(services, run_dir=run_dir, timeout=getattr(args, "timeout", None), secure=secure)
            return 0
        if args.action == "down":
            down(services, run_dir=run_dir, secure=secure)
            return 0
        return 0 if status(services, run_dir=run_dir, secure=secure).all_up else 1
    except StackError as error:
        print(f"bordermon stack: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def main(argv: list[str] | None = None) -> int:
    """`python -m bordermon_devstack ...`: the same command, for scripts that must not depend
    on how `bordermon` finds its plugins (tests/chaos/run.py with this checkout's code)."""
    parser = argparse.ArgumentParser(prog="bordermon stack", description=DESCRIPTION)
    configure_parser(parser)
    return run(parser.parse_args(argv))
