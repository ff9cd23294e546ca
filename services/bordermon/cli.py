"""The `bordermon` command line: thin, it parses arguments and calls into the packages.

Every failure a person can cause (a missing file, a bad setting, a broker that is down) ends
as one line on stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import orjson

from bordermon import __version__
from bordermon.jsonl import InputError
from bordermon.progress import Progress
from bordermon.settings import Settings, SettingsError

if TYPE_CHECKING:
    from typing_extensions import Buffer

PROG = "bordermon"


class CommandError(Exception):
    """A failure to report as one line (exit code 2 unless given)."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def add_settings_options(
    parser: argparse.ArgumentParser, *names: str, with_config: bool = True
) -> None:
    """Command-line overrides of settings; each also reads BORDERMON_<NAME> and the config file.
    `with_config=False` when the command already has its own --config option."""
    if with_config:
        parser.add_argument(
            "--config",
            metavar="FILE",
            help="TOML config file with settings (default: $BORDERMON_CONFIG)",
        )
    helps = {
        "kafka_bootstrap": ("HOST:PORT", "Kafka bootstrap servers (default localhost:9092)"),
        "redis_url": ("URL", "Redis URL (default redis://localhost:6379/0)"),
        "crossings_topic": ("TOPIC", "crossings topic (default bordermon.crossings)"),
        "flags_topic": ("TOPIC", "flags topic (default bordermon.flags)"),
        "dead_letter_topic": ("TOPIC", "dead-letter topic (default bordermon.crossings.dlq)"),
        "consumer_group": ("GROUP", "Kafka consumer group"),
        "window": ("DURATION", "detection window, e.g. 30d, 72h (default 30d)"),
        "monitored_country": ("CC", "the monitored country (default KZ)"),
        "destinations_of_concern": ("CC,CC", "destinations of concern (default RU)"),
        "watchlists": ("SRC,SRC", "watchlists: builtin:chpl and/or CSV files (hs6,tier,...)"),
        "state_ttl": ("DURATION", "state expiry after a consignment's last event"),
        "rules": (
            "RULE,RULE",
            "rules to run (default transit-to-ru,relabel-to-ru,export-without-permit)",
        ),
        "relabel_window": ("DURATION", "window of relabel-to-ru (default 90d)"),
        "export_controls": (
            "SRC,SRC",
            "export-control lists: builtin:chpl-tiers-1-2 (default) and/or CSV files",
        ),
        "link_state_ttl": ("DURATION", "link-key state expiry after its last sighting"),
        "links_topic": ("TOPIC", "internal link-sightings topic (default bordermon.links)"),
        "require_signatures": (
            "true|false",
            "dead-letter crossings not signed by a scanner of the registry (default false)",
        ),
        "scanner_registry": ("FILE", "scanner registry: scanner ids, public keys, checkpoints"),
        "metrics_port": ("PORT", "port of /metrics (0 disables; default 9108)"),
        "kafka_security_protocol": (
            "PROTOCOL",
            "Kafka security: PLAINTEXT (default), SASL_SSL, SSL or SASL_PLAINTEXT",
        ),
        "kafka_sasl_mechanism": ("MECHANISM", "SASL mechanism (default SCRAM-SHA-512)"),
        "kafka_username": ("USER", "Kafka SASL user"),
        "kafka_password_file": ("FILE", "file holding the Kafka SASL password (mode 0600)"),
        "kafka_ca_file": ("PEM", "CA certificate(s) that signed the Kafka brokers' certificates"),
        "redis_password_file": ("FILE", "file holding the Redis password (wins over the URL's)"),
    }
    for name in names:
        metavar, text = helps[name]
        parser.add_argument(
            "--" + name.replace("_", "-"),
            dest="setting_" + name,
            metavar=metavar,
            help=f"{text}; env BORDERMON_{name.upper()}",
        )


KAFKA_SECURITY_SETTINGS = (
    "kafka_security_protocol",
    "kafka_sasl_mechanism",
    "kafka_username",
    "kafka_password_file",
    "kafka_ca_file",
)
"""The options every Kafka client command offers (with kafka_bootstrap)."""


def load_settings(args: argparse.Namespace) -> Settings:
    overrides = {
        key.removeprefix("setting_"): value
        for key, value in vars(args).items()
        if key.startswith("setting_")
    }
    return Settings.load(overrides, config_file=getattr(args, "config", None))


def open_input(path: str) -> IO[bytes]:
    if path == "-":
        return sys.stdin.buffer
    try:
        return Path(path).open("rb")
    except OSError as error:
        raise CommandError(f"cannot read {path}: {error.strerror}") from None


class _ReportingSink(io.RawIOBase):
    """Writes through to `target` at once; a write error (a full disk, a quota) becomes one
    `CommandError` naming the output, and whatever is written after it is dropped, so that
    closing or flushing at exit does not report it a second time."""

    def __init__(self, target: IO[bytes], name: str, *, owned: bool) -> None:
        super().__init__()
        self._target = target
        self._name = name
        self._owned = owned
        self._failed = False

    def writable(self) -> bool:
        return True

    def write(self, data: Buffer) -> int:
        view = memoryview(data).cast("B")
        size = view.nbytes
        if not self._failed:
            try:
                while view:
                    view = view[self._target.write(view) or 0 :]
                self._target.flush()
            except BrokenPipeError:
                raise  # `| head`: main() treats the reader leaving as normal
            except OSError as error:
                self._failed = True
                raise CommandError(f"cannot write {self._name}: {error.strerror}") from None
        return size

    def close(self) -> None:
        if not self.closed and self._owned:
            with contextlib.suppress(OSError):
                self._target.close()
        super().close()


def open_output(path: str) -> IO[bytes]:
    """A buffered output (`-`: stdout) whose write errors end the command as one line."""
    if path == "-":
        sys.stdout.flush()
        buffer = sys.stdout.buffer
        sink = _ReportingSink(getattr(buffer, "raw", buffer), "to stdout", owned=False)
    else:
        try:
            target = Path(path).open("wb", buffering=0)  # noqa: SIM115 - the sink closes it
        except OSError as error:
            raise CommandError(f"cannot write {path}: {error.strerror}") from None
        sink = _ReportingSink(target, f"to {path}", owned=True)
    return io.BufferedWriter(sink, buffer_size=1 << 16)


# --- replay -----------------------------------------------------------------------------------


def _configure_replay(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "file", nargs="?", default="-", metavar="FILE|-", help="JSONL crossing events (default: -)"
    )
    parser.add_argument(
        "--rejects",
        metavar="FILE",
        help='write rejected lines as JSONL {"line","reason","detail","raw"} to FILE',
    )
    parser.add_argument(
        "--quiet", action="store_true", help="do not list each rejected line on stderr"
    )
    parser.add_argument(
        "--metrics",
        metavar="FILE",
        help="also write the run's counters in Prometheus text format (the worker's metric"
        " names) to FILE",
    )
    add_settings_options(
        parser,
        "window",
        "monitored_country",
        "destinations_of_concern",
        "watchlists",
        "rules",
        "relabel_window",
        "export_controls",
    )


def _run_replay(args: argparse.Namespace) -> int:
    from bordermon.core.flag import Flag
    from bordermon.core.pipeline import Accepted, Reject, Tally
    from bordermon.replay import replay

    settings = load_settings(args)
    config = settings.detection_config()
    source = open_input(args.file)
    rejects_file = open_output(args.rejects) if args.rejects else None
    stderr = sys.stderr

    def on_reject(reject: Reject) -> None:
        line = reject.message.position
        if not args.quiet:
            stderr.write(f"line {line}: {reject.reason}: {reject.detail}\n")
        if rejects_file is not None:
            raw = reject.message.value.decode("utf-8", errors="replace")
            record = {"line": line, "reason": reject.reason, "detail": reject.detail, "raw": raw}
            rejects_file.write(orjson.dumps(record) + b"\n")

    progress = Progress("replay")

    def on_batch(tally: Tally) -> None:
        progress.update(tally.read, f"{sum(tally.flags.values()):,} flags")

    on_outcome = None
    if args.metrics:
        from bordermon import metrics

        metrics_file = open_output(args.metrics)

        def on_outcome(accepted: list[Accepted], flags: list[Flag]) -> None:
            metrics.record_events(item.event for item in accepted)
            for flag in flags:
                metrics.record_flag(flag)

    flags_out = open_output("-")
    try:
        result = replay(
            source,
            flags_out,
            config,
            on_reject=on_reject,
            on_batch=on_batch,
            on_outcome=on_outcome,
        )
    finally:
        progress.done()
        if rejects_file is not None:
            rejects_file.close()
    flags_out.flush()
    if args.metrics:
        metrics.record_rejects(result.tally.rejected.elements(), dead_lettered=False)
        metrics.EVENTS_DUPLICATE.inc(result.tally.duplicates)
        with metrics_file:
            metrics_file.write(metrics.exposition())
    stderr.write(_replay_summary(result, settings))
    return 0


def _replay_summary(result: Any, settings: Settings) -> str:
    tally = result.tally
    rate = tally.read / result.seconds if result.seconds > 0 else 0.0
    rejected = ", ".join(f"{reason} {count}" for reason, count in tally.rejected.most_common())
    severities = ", ".join(
        f"{sev} {tally.flags[sev]}" for sev in ("high", "medium", "low") if tally.flags[sev]
    )
    by_rule = ", ".join(f"{rule} {count}" for rule, count in sorted(tally.flags_by_rule.items()))
    lines = [
        f"replay: {tally.read:,} events read in {result.seconds:.2f} s ({rate:,.0f} events/s)",
        f"  accepted    {tally.accepted:,}",
        f"  duplicates  {tally.duplicates:,}",
        f"  rejected    {tally.rejected_total:,}" + (f" ({rejected})" if rejected else ""),
        f"  flags       {sum(tally.flags.values()):,}" + (f" ({severities})" if severities else ""),
        *([f"    by rule   {by_rule}"] if by_rule else []),
        f"  consignments {result.consignments:,}; link keys {result.link_keys:,};"
        f" window {settings.describe()['window_ns']},"
        f" destinations {','.join(sorted(settings.destinations_of_concern))}",
    ]
    if result.blank_lines:
        lines.append(f"  blank lines skipped {result.blank_lines:,}")
    return "\n".join(lines) + "\n"


# --- registry ---------------------------------------------------------------------------------

Handler = Callable[[argparse.Namespace], int]

# name -> (module, help). Modules expose configure_parser(parser) and run(args) -> int; they
# are imported when the parser is built, so each keeps heavy imports inside `run`.
_MODULE_COMMANDS: dict[str, tuple[str, str]] = {
    "simulate": ("bordermon.simulate", "write realistic synthetic crossing events"),
    "publish": (
        "bordermon.scanner.publisher",
        "publish JSONL crossing events to Kafka, validated, as a scanner does",
    ),
    "flags": (
        "bordermon.alerts.subscriber",
        "print flags from the flags topic (new ones, or --from-beginning)",
    ),
    "worker": ("bordermon.processor.worker", "run a stream processor (faust, state in Redis)"),
    "scanner-key": (
        "bordermon.scanner.keys",
        "make a scanner's signing key (signed scans) and print its registry line",
    ),
    "topics": ("bordermon.topics", "create or check the Kafka topics declared under topics/"),
    "users": ("bordermon.users", "add a Kafka SCRAM user or rotate its password (as admin)"),
    "stack": ("bordermon.stack", "run the local Kafka, Redis and Prometheus (no Docker needed)"),
}


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

    replay = commands.add_parser(
        "replay",
        help="run detection in-process over JSONL (no Kafka, no Redis)",
        description=(
            "Run detection over JSONL crossing events from FILE or stdin and write flags as"
            " JSONL to stdout in detection order. Rejected lines are listed on stderr with"
            " their line number and reason, and a summary follows. Exit 0 when the input was"
            " read. Signatures are not checked (require_signatures is the worker's): JSONL"
            " lines carry no Kafka headers, so there is nothing to verify."
        ),
    )
    _configure_replay(replay)
    replay.set_defaults(handler=_run_replay)

    for name, (module_name, help_text) in _MODULE_COMMANDS.items():
        module = importlib.import_module(module_name)
        sub = commands.add_parser(name, help=help_text, description=module.__doc__)
        module.configure_parser(sub)
        sub.set_defaults(handler=module.run)
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


if __name__ == "__main__":
    sys.exit(main())
