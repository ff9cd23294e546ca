"""`bordermon replay`: detection in-process over JSONL (no Kafka, no Redis)."""

from __future__ import annotations

import argparse
import sys

import orjson

from bordermon.cli.common import add_settings_options, load_settings, open_input, open_output
from bordermon.core.flag import Flag
from bordermon.core.pipeline import Accepted, Reject, Tally
from bordermon.progress import Progress
from bordermon.replay import ReplayResult, replay
from bordermon.settings import Settings

HELP = "run detection in-process over JSONL (no Kafka, no Redis)"
DESCRIPTION = (
    "Run detection over JSONL crossing events from FILE or stdin and write flags as"
    " JSONL to stdout in detection order. Rejected lines are listed on stderr with"
    " their line number and reason, and a summary follows. Exit 0 when the input was"
    " read. Signatures are not checked (require_signatures is the worker's): JSONL"
    " lines carry no Kafka headers, so there is nothing to verify."
)


def configure_parser(parser: argparse.ArgumentParser) -> None:
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


def run(args: argparse.Namespace) -> int:
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
        # prometheus_client only when --metrics asks for it: replay starts without it.
        from bordermon import metrics  # noqa: PLC0415

        metrics_file = open_output(args.metrics)

        def on_outcome(accepted: list[Accepted], flags: list[Flag]) -> None:
            metrics.record_events(item.event for item in accepted)
            metrics.record_flags((flag, None) for flag in flags)

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
    stderr.write(summary(result, settings))
    return 0


def summary(result: ReplayResult, settings: Settings) -> str:
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
