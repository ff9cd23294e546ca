"""`bordermon flags`: print flags from the flags topic (new ones, or --from-beginning).

The command over `bordermon.alerts.subscriber.FlagSubscriber`: options, output, summary.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time

from bordermon.alerts.subscriber import (
    DEFAULT_IDLE_EXIT_S,
    FlagSubscriber,
    InvalidFlagMessage,
    SubscriberStats,
    _Output,
)
from bordermon.cli.common import (
    KAFKA_SECURITY_SETTINGS,
    CommandError,
    add_settings_options,
    load_settings,
)
from bordermon.kafka import (
    KafkaUnavailable,
    Terminated,
    configure_client_logging,
    sigterm_raises,
    unreachable_hint,
)

HELP = "print flags from the flags topic (new ones, or --from-beginning)"
DESCRIPTION = """Print flags from the flags topic: the new ones by default, or every one kept.

Which flags you see:

- `bordermon flags` shows the flags that are new since it last ran, like an inbox. It reads
  with the consumer group `<consumer_group>.flags-cli` (another with --group) and commits what
  it has printed, so the next run goes on from there. The very first run starts at the end of
  the topic and shows flags raised from then on. Two readers with the same group share the
  flags between them: give each person or script its own --group.
- `bordermon flags --from-beginning` shows every flag the topic still holds (its retention) and
  leaves no trace: it reads with a throwaway group and commits nothing, so the inbox above is
  untouched.
- `--from-beginning --group G` rewinds group G to the start of the topic and reads, and
  commits, from there.

Without --follow it ends after --idle-exit seconds (default 5) pass with no new flag; with
--follow it prints flags as they arrive until Ctrl-C (or --idle-exit, if given). Output is a
table on a terminal and JSONL (one flag per line, as published: flag/2, or flag/1 from older
workers) otherwise. The table shows severity, rule, consignment, route, dwell, link and
reasons; for relabel-to-ru the consignment reads `B ← A`, the consignment that left and the
one the goods entered as, and the link is the container, seal or batch that ties them. A flag
delivered twice (after a worker crash; same flag_id, SPEC §6) is shown once unless
--no-dedupe.
"""


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:  # also rejects nan
        raise argparse.ArgumentTypeError(f"{text} must be more than 0 (use --follow to wait on)")
    return value


COMMAND_EPILOG = """\
exit status: 0 when it stopped by itself (idle, or its reader left), 2 when Kafka or the topic
is missing, 130 after Ctrl-C.

examples:
  bordermon flags                                  # what is new since last time
  bordermon flags --from-beginning --format table  # everything the topic holds
  bordermon flags --follow | jq -r .consignment_id
"""


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Options of `bordermon flags`."""
    parser.epilog = COMMAND_EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "--from-beginning",
        action="store_true",
        help="show every flag the topic holds, not only new ones (with a throwaway group"
        " unless --group is given, which is then rewound)",
    )
    parser.add_argument(
        "-f",
        "--follow",
        action="store_true",
        help="keep printing flags as they arrive, until Ctrl-C",
    )
    parser.add_argument(
        "--idle-exit",
        type=_seconds,
        metavar="SECONDS",
        help=f"stop after SECONDS without a new flag (default {DEFAULT_IDLE_EXIT_S:g};"
        " with --follow: never)",
    )
    parser.add_argument(
        "--format",
        choices=("jsonl", "table"),
        help="output format (default: table on a terminal, JSONL otherwise)",
    )
    parser.add_argument(
        "--dedupe",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="show each flag_id once (default: on)",
    )
    parser.add_argument(
        "--group",
        metavar="GROUP",
        help="consumer group whose committed position says what is new"
        " (default: <consumer_group>.flags-cli)",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="show the Kafka client's log on stderr"
    )
    add_settings_options(
        parser, "kafka_bootstrap", "flags_topic", "consumer_group", *KAFKA_SECURITY_SETTINGS
    )


def _silence_stdout() -> None:
    """The reader of our stdout left (`bordermon flags | head`): send the rest nowhere, so the
    interpreter's final flush does not complain either."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def run(args: argparse.Namespace) -> int:
    """`bordermon flags`: see `bordermon.alerts.subscriber`'s docstring."""
    settings = load_settings(args)
    configure_client_logging(args.verbose)
    stderr = sys.stderr
    idle_exit: float | None = args.idle_exit
    if idle_exit is None and not args.follow:
        idle_exit = DEFAULT_IDLE_EXIT_S
    fmt = args.format or ("table" if sys.stdout.isatty() else "jsonl")
    group = args.group
    if group is None and not args.from_beginning:
        group = settings.consumer_group + ".flags-cli"

    def on_invalid(bad: InvalidFlagMessage) -> None:
        stderr.write(
            f"flags: skipped partition {bad.partition} offset {bad.offset}: {bad.reason}\n"
        )

    subscriber = FlagSubscriber(
        settings.kafka_bootstrap,
        settings.flags_topic,
        group=group,
        from_beginning=args.from_beginning,
        dedupe=args.dedupe,
        config=settings.kafka_client_config(),
        on_invalid=on_invalid,
    )
    try:
        subscriber.check_connection()
    except KafkaUnavailable as error:
        subscriber.close(finished=False)
        raise CommandError(unreachable_hint(error, "flags_topic")) from None
    if args.follow and stderr.isatty():
        stderr.write(f"flags: waiting for flags on {settings.flags_topic} (Ctrl-C to stop)\n")

    output = _Output(sys.stdout.buffer, fmt, getattr(sys.stdout, "encoding", None))
    started = time.monotonic()
    code = 0
    finished = True
    with sigterm_raises():
        try:
            for batch in subscriber.batches(idle_exit=idle_exit):
                output.write(batch)
        except KeyboardInterrupt:
            code, finished = 130, False
        except Terminated:
            code, finished = 143, False
        except BrokenPipeError:
            _silence_stdout()
            finished = False
        except KafkaUnavailable as error:
            finished = False
            raise CommandError(unreachable_hint(error, "flags_topic")) from None
        finally:
            # Flags already printed stay committed even when the loop was interrupted: the
            # offsets of earlier batches were stored when the next poll began.
            with contextlib.suppress(KeyboardInterrupt, Terminated):
                subscriber.close(finished=finished)
    if stderr.isatty():
        after_ctrl_c = "\n" if code == 130 else ""  # the terminal echoed ^C on the last line
        elapsed = time.monotonic() - started
        stderr.write(after_ctrl_c + _summary(subscriber.stats, elapsed, args.from_beginning))
    return code


def _summary(stats: SubscriberStats, seconds: float, from_beginning: bool) -> str:
    """A closing line for a person at a terminal (scripts read the exit code and stdout)."""
    if stats.flags == 0:
        hint = "" if from_beginning else "; --from-beginning shows earlier ones"
        return f"flags: no new flags in {seconds:.0f} s{hint}\n"
    extra = f", {stats.duplicates:,} duplicates skipped" if stats.duplicates else ""
    return f"flags: {stats.flags:,} flags{extra}\n"
