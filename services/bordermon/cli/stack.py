"""`bordermon stack up|down|status`: the local Kafka, Redis and Prometheus (no Docker)."""

from __future__ import annotations

import argparse
import sys

from bordermon import stack as library
from bordermon.stack import DEFAULT_TIMEOUT_S, RUN_DIR_ENV, SERVICES, down, status, up
from bordermon.stack_base import StackError

HELP = "run the local Kafka, Redis and Prometheus (no Docker needed)"
DESCRIPTION = library.__doc__


def configure_parser(parser: argparse.ArgumentParser) -> None:
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
