"""`bordermon publish`: JSONL crossing events to Kafka, validated, as a scanner does.

The command over the scanner SDK (`bordermon.scanner.publisher.ScannerPublisher`): pacing, the
per-line report, the summary and the exit code.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from bordermon.cli.common import (
    KAFKA_SECURITY_SETTINGS,
    CommandError,
    add_settings_options,
    load_settings,
    open_input,
)
from bordermon.core.crossing import InvalidCrossing
from bordermon.jsonl import iter_lines
from bordermon.kafka import (
    KafkaUnavailable,
    Terminated,
    configure_client_logging,
    sigterm_raises,
    unreachable_hint,
)
from bordermon.progress import Progress
from bordermon.scanner.publisher import DeliveryReport, PublishError, ScannerPublisher

HELP = "publish JSONL crossing events to Kafka, validated, as a scanner does"


class Pacer:
    """Spreads sends evenly at `rate` per second (0: no pacing) without drift.

    The n-th event is due at start + n / rate; the caller waits with the publisher's `sleep`,
    so deliveries are served meanwhile. After a stall of more than a second
    the schedule restarts instead of bursting to catch up: a demo feed should look live.
    """

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.clock = clock
        self.start = clock()
        self.count = 0

    def delay(self) -> float:
        """Seconds to wait before the next event (and count it)."""
        if self.rate <= 0:
            return 0.0
        now = self.clock()
        due = self.start + self.count / self.rate
        if now - due > 1.0:
            self.start, self.count = now, 0
            due = now
        self.count += 1
        return max(0.0, due - now)


@dataclass(slots=True)
class PublishStats:
    """What the command did, for the progress line, the summary and the exit code."""

    lines: int = 0
    blank: int = 0
    invalid: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    stopped: int | None = None  # exit code when Ctrl-C (130) or SIGTERM (143) ended the run

    @property
    def invalid_total(self) -> int:
        return sum(self.invalid.values())


def summary(stats: PublishStats, report: DeliveryReport, *, topic: str, seconds: float) -> str:
    """The end-of-run summary (stderr)."""

    def counts(counter: Mapping[str, int]) -> str:
        ranked = sorted(counter.items(), key=lambda item: (-item[1], item[0]))
        return f" ({', '.join(f'{name} {count:,}' for name, count in ranked)})" if ranked else ""

    failed = Counter(report.errors)
    failed.update(stats.refused)
    head = f"publish: {stats.lines:,} events read in {seconds:.2f} s to {topic}"
    lines = [
        head + (" (interrupted)" if stats.stopped is not None else ""),
        f"  sent          {report.sent:,}",
        f"  acknowledged  {report.acknowledged:,}",
        f"  invalid       {stats.invalid_total:,}{counts(stats.invalid)}",
        f"  failed        {sum(failed.values()):,}{counts(failed)}",
    ]
    if report.pending:
        lines.append(f"  unconfirmed   {report.pending:,} (no answer from Kafka in time)")
    if stats.blank:
        lines.append(f"  blank lines skipped {stats.blank:,}")
    return "\n".join(lines) + "\n"


def exit_code(stats: PublishStats, report: DeliveryReport) -> int:
    """0 only if every event read was valid and acknowledged; 130/143 when stopped by
    Ctrl-C/SIGTERM; else 1."""
    if stats.stopped is not None:
        return stats.stopped
    everything = stats.lines == report.sent == report.acknowledged
    return 0 if everything and report.ok and not stats.invalid and not stats.refused else 1


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0:  # also rejects nan
        raise argparse.ArgumentTypeError(f"{text} must be 0 or more")
    return value


def _positive(text: str) -> float:
    value = _non_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


COMMAND_DESCRIPTION = """\
Publish JSONL crossing events to the crossings topic, keyed by consignment_id, as a scanner does.

Each line is checked against the crossing event contract (SPEC §3) first: an invalid line is
listed on stderr as `line N: reason: detail` and not sent; valid lines are sent byte for byte.
--raw skips the check and sends every non-blank line untouched (keyed by its consignment_id
when one can be read), to try the worker on bad input. A summary follows on stderr.

With --scanner-key FILE and --scanner-id ID (or BORDERMON_SCANNER_KEY_FILE and
BORDERMON_SCANNER_ID), every message sent, --raw ones included, is signed over its exact
bytes with the scanner's Ed25519 key (`bordermon scanner-key new` makes one) and carries the
headers bordermon-scanner-id and bordermon-signature, for workers that require signed scans.

exit status: 0 when every event read was valid and acknowledged by Kafka, 1 when some were
invalid or not acknowledged, 2 when nothing could be sent (usage, no broker, no topic),
130 after Ctrl-C.
"""

DESCRIPTION = COMMAND_DESCRIPTION

COMMAND_EPILOG = """\
examples:
  bordermon simulate --consignments 1000 | bordermon publish
  bordermon publish scans.jsonl --rate 20      # a live-looking demo feed
  bordermon publish broken.jsonl --raw         # try the worker on bad input
"""


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Options of `bordermon publish`."""
    parser.epilog = COMMAND_EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter

    parser.add_argument(
        "file", nargs="?", default="-", metavar="FILE|-", help="JSONL crossing events (default: -)"
    )
    parser.add_argument(
        "--raw",
        action="store_true",
        help="send every non-blank line byte for byte, without validation (keyed by its"
        " consignment_id when one can be read): to try the worker on bad input",
    )
    parser.add_argument(
        "--rate",
        type=_non_negative,
        default=0.0,
        metavar="N",
        help="send N events per second, to simulate a live feed (default 0: as fast as possible)",
    )
    parser.add_argument(
        "--timeout",
        type=_positive,
        default=30.0,
        metavar="SECONDS",
        help="how long Kafka may take to acknowledge an event before it counts as failed"
        " (default 30)",
    )
    parser.add_argument(
        "--quiet", action="store_true", help="do not list each invalid line on stderr"
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="show the Kafka client's log on stderr"
    )
    parser.add_argument(
        "--scanner-key",
        dest="setting_scanner_key_file",
        metavar="FILE",
        help="sign every message with this scanner's Ed25519 private key (PEM or base64 of the"
        " raw 32 bytes); needs --scanner-id; env BORDERMON_SCANNER_KEY_FILE",
    )
    parser.add_argument(
        "--scanner-id",
        dest="setting_scanner_id",
        metavar="ID",
        help="the scanner id of --scanner-key, as in the scanner registry;"
        " env BORDERMON_SCANNER_ID",
    )
    add_settings_options(parser, "kafka_bootstrap", "crossings_topic", *KAFKA_SECURITY_SETTINGS)


def run(args: argparse.Namespace) -> int:
    """`bordermon publish`: see `COMMAND_DESCRIPTION`."""
    settings = load_settings(args)
    signing = settings.load_scanner_key()
    source = open_input(args.file)
    stderr = sys.stderr
    configure_client_logging(args.verbose)
    publisher = ScannerPublisher(
        settings.kafka_bootstrap,
        settings.crossings_topic,
        monitored_country=settings.monitored_country,
        config={**settings.kafka_client_config(), "message.timeout.ms": int(args.timeout * 1000)},
        scanner_id=None if signing is None else signing[0],
        signing_key=None if signing is None else signing[1],
    )
    try:
        publisher.check_connection()
    except KafkaUnavailable as error:
        raise CommandError(unreachable_hint(error, "crossings_topic")) from None
    if args.file == "-" and sys.stdin.isatty():
        stderr.write("publish: reading JSONL crossing events from stdin (Ctrl-D to end)\n")

    stats = PublishStats()
    blank = [0]
    pacer = Pacer(args.rate)
    progress = Progress("publish", unit="sent", stream=stderr)
    started = time.monotonic()
    with sigterm_raises():
        try:
            for number, value in iter_lines(source, blank):
                wait = pacer.delay()
                if wait:
                    publisher.sleep(wait)
                stats.lines += 1
                try:
                    if args.raw:
                        publisher.publish_raw(value)
                    else:
                        publisher.publish(value)
                except InvalidCrossing as error:
                    stats.invalid[error.reason] += 1
                    if not args.quiet:
                        progress.done()
                        stderr.write(f"line {number}: {error.reason}: {error.detail}\n")
                except PublishError as error:
                    stats.refused[str(error)] += 1
                    progress.done()
                    stderr.write(f"line {number}: not sent: {error}\n")
                progress.update(
                    publisher.report().sent,
                    lambda: (
                        f"{publisher.report().acknowledged:,} acknowledged,"
                        f" {stats.invalid_total:,} invalid"
                    ),
                )
        except KeyboardInterrupt:
            stats.stopped = 130
        except Terminated:
            stats.stopped = 143
        finally:
            stats.blank = blank[0]
            progress.done()
            if source is not sys.stdin.buffer:
                source.close()
        # After Ctrl-C, wait only briefly for what was sent: the person wants out, and the
        # summary says what is unconfirmed. A second Ctrl-C stops the wait.
        try:
            report = publisher.close(5.0 if stats.stopped is not None else args.timeout + 5.0)
        except KeyboardInterrupt:
            stats.stopped, report = 130, publisher.report()
        except Terminated:
            stats.stopped, report = 143, publisher.report()
    stderr.write(
        summary(stats, report, topic=settings.crossings_topic, seconds=time.monotonic() - started)
    )
    return exit_code(stats, report)
