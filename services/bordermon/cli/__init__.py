"""The `bordermon` command line: one module per command, thin over the library packages.

Each command module (`replay`, `simulate`, `publish`, `flags`, `worker`, `scanner_key`,
`topics`, `users`, `stack`) exposes `HELP`, `DESCRIPTION`, `configure_parser(parser)` and
`run(args) -> int`; `common` holds what they share. The library never imports this package.

Every failure a person can cause (a missing file, a bad setting, a broker that is down) ends
as one line on stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from types import ModuleType

from bordermon import __version__
from bordermon.cli import (
    flags,
    publish,
    replay,
    scanner_key,
    simulate,
    stack,
    topics,
    users,
    worker,
)
from bordermon.cli.common import (
    KAFKA_SECURITY_SETTINGS,
    CommandError,
    add_settings_options,
    load_settings,
    open_input,
    open_output,
)
from bordermon.jsonl import InputError
from bordermon.settings import SettingsError

__all__ = [
    "COMMANDS",
    "KAFKA_SECURITY_SETTINGS",
    "PROG",
    "CommandError",
    "add_settings_options",
    "build_parser",
    "load_settings",
    "main",
    "open_input",
    "open_output",
]

PROG = "bordermon"

Handler = Callable[[argparse.Namespace], int]

COMMANDS: dict[str, ModuleType] = {
    "replay": replay,
    "simulate": simulate,
    "publish": publish,
    "flags": flags,
    "worker": worker,
    "scanner-key": scanner_key,
    "topics": topics,
    "users": users,
    "stack": stack,
}
"""Command name -> its module, in the order `bordermon --help` lists them."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "bordermon watches border-crossing scans and flags goods that enter Kazakhstan and"
            " leave for Russia within a window. Settings come from BORDERMON_* variables, a"
            " TOML file (--config) and flags."
        ),
        epilog=(
            "examples:\n"
            "  bordermon simulate --consignments 1000 | bordermon replay\n"
            "  bordermon replay scans.jsonl --rejects rejects.jsonl > flags.jsonl\n"
            "  bordermon stack up && bordermon topics apply && bordermon worker\n"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module in COMMANDS.items():
        sub = commands.add_parser(name, help=module.HELP, description=module.DESCRIPTION)
        module.configure_parser(sub)
        handler: Handler = module.run
        sub.set_defaults(handler=handler)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except (SettingsError, CommandError, InputError) as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return getattr(error, "exit_code", 2)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `bordermon replay big.jsonl | head`: the reader left; that is not an error.
        sys.stderr.close()
        return 0
    return code
