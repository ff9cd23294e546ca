"""The `bordermon` command line: one module per command, thin over the library packages.

Each command module (`replay`, `simulate`, `publish`, `flags`, `worker`, `scanner_key`,
`topics`, `users`) exposes `HELP`, `DESCRIPTION`, `configure_parser(parser)` and
`run(args) -> int`; `common` holds what they share. The library never imports this package.

Other distributions add commands with modules of the same shape, named by entry points of the
`bordermon.commands` group: the local dev stack (deploy/local/devstack) adds `stack` that way,
so the product neither ships nor imports it. A development command that is not installed is
still listed, and running it says in one line how to install it (exit 2).

Every failure a person can cause (a missing file, a bad setting, a broker that is down) ends
as one line on stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from types import ModuleType

from bordermon import __version__
from bordermon.cli import (
    flags,
    publish,
    replay,
    scanner_key,
    simulate,
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
    "DEVELOPMENT_COMMANDS",
    "KAFKA_SECURITY_SETTINGS",
    "PLUGIN_GROUP",
    "PROG",
    "CommandError",
    "Unavailable",
    "add_settings_options",
    "build_parser",
    "discover_commands",
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
}
"""Command name -> its module, in the order `bordermon --help` lists them (the commands of
other distributions follow)."""

PLUGIN_GROUP = "bordermon.commands"
"""Entry-point group of the commands other distributions add: name = a module shaped like the
ones in COMMANDS."""

DEVELOPMENT_COMMANDS = {
    "stack": "run the local Kafka, Redis and Prometheus (development tool: not installed)",
}
"""Commands of a development checkout (deploy/local/devstack), listed even when missing."""

INSTALL_HINT = (
    "in a bordermon checkout, `source deploy/local/bootstrap.sh` installs it"
    " (or `pip install -e deploy/local/devstack`)"
)


@dataclass(frozen=True)
class Unavailable:
    """A command that `bordermon --help` lists but this installation cannot run."""

    help: str
    problem: str

    def message(self, name: str) -> str:
        return f"{PROG} {name}: {self.problem}; {INSTALL_HINT}"


@dataclass(frozen=True)
class Commands:
    available: dict[str, ModuleType]
    unavailable: dict[str, Unavailable]


def discover_commands() -> Commands:
    """The product's commands, then those of the bordermon.commands entry points; and the
    development commands that are not installed or do not load (say a stale editable install)."""
    available = dict(COMMANDS)
    unavailable = {
        name: Unavailable(summary, "a development tool, not part of the bordermon package")
        for name, summary in DEVELOPMENT_COMMANDS.items()
    }
    for entry in entry_points(group=PLUGIN_GROUP):
        if entry.name in COMMANDS:
            continue  # a plugin never replaces a product command
        try:
            module = entry.load()
        except (ImportError, AttributeError) as error:
            unavailable[entry.name] = Unavailable(
                f"{entry.value} (cannot be loaded)", f"{entry.value} cannot be loaded ({error})"
            )
            continue
        if not isinstance(module, ModuleType):
            unavailable[entry.name] = Unavailable(
                f"{entry.value} (not a command module)", f"{entry.value} is not a command module"
            )
            continue
        available[entry.name] = module
        unavailable.pop(entry.name, None)
    return Commands(available, unavailable)


def build_parser(discovered: Commands | None = None) -> argparse.ArgumentParser:
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
    discovered = discovered or discover_commands()
    for name, module in discovered.available.items():
        sub = commands.add_parser(name, help=module.HELP, description=module.DESCRIPTION)
        module.configure_parser(sub)
        handler: Handler = module.run
        sub.set_defaults(handler=handler)
    for name, missing in discovered.unavailable.items():
        # Listed only: main() answers these before parsing, whatever their arguments.
        commands.add_parser(name, help=missing.help, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    discovered = discover_commands()
    missing = discovered.unavailable.get(words[0]) if words else None
    if missing is not None:
        print(missing.message(words[0]), file=sys.stderr)
        return 2
    parser = build_parser(discovered)
    args = parser.parse_args(words)
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
