"""`bordermon replay`: detection in-process over JSONL (no Kafka, no Redis)."""

from __future__ import annotations

import argparse
import sys
import textwrap

import orjson

from bordermon.cli.common import (
    CommandError,
    add_settings_options,
    load_settings,
    open_input,
    open_output,
)
from bordermon.core.flag import Flag
from bordermon.core.pipeline import Reject, Tally
from bordermon.core.watchlist import Severity
from bordermon.progress import Progress
from bordermon.replay import ReplayResult
from bordermon.replay.parallel import ReplayJobFailed, replay_parallel, usable_cpus
from bordermon.settings import Settings

HELP = "run detection in-process over JSONL (no Kafka, no Redis)"
DESCRIPTION = (
    "Run detection over JSONL crossing events from FILE or stdin and write flags as"
    " JSONL to stdout (or --flags-out) in detection order. Rejected lines are listed on"
    " stderr with their line number and reason, and a summary follows. Exit 0 when the"
    " input was read. Signatures are not checked (require_signatures is the worker's):"
    " JSONL lines carry no Kafka headers, so there is nothing to verify."
)
EPILOG = """\
examples:
  bordermon replay crossings.jsonl > flags.jsonl
  bordermon replay crossings.jsonl --flags-out flags.jsonl --jobs 2
  bordermon replay crossings.jsonl --rejects rejects.jsonl --quiet --metrics run.prom
  bordermon simulate --consignments 1000 | bordermon replay --rules transit-to-ru

--jobs N splits the work over N processes (consignments and link keys each belong to one);
the output is the same for every N: the same flags in the same order (only detected_at, the
wall clock, differs), the same rejects and summary counts. A regular FILE is read by every
process; stdin is read once and copied to them.

Memory: every consignment's and link key's state is kept until the end of the input (no
expiry: a pair months apart in the file is still found). It grows with the distinct
consignments and link keys, not with the number of lines: about 3 KB per consignment, its
link keys included, with simulated traffic (1.5 GiB for 1M lines and 542,000 consignments;
about 13% more in all with --jobs 2, shared out between the processes). Split a file larger than
memory by time, or use the stream worker, whose Redis states expire (state_ttl).
"""


def _jobs(text: str) -> int:
    try:
        jobs = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= jobs <= MAX_JOBS:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_JOBS}")
    return jobs


MAX_JOBS = 64


def configure_parser(parser: argparse.ArgumentParser) -> None:
    # The examples keep their lines; the description, now raw too, is wrapped here.
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = textwrap.fill(DESCRIPTION, width=92)
    parser.epilog = EPILOG
    parser.add_argument(
        "file", nargs="?", default="-", metavar="FILE|-", help="JSONL crossing events (default: -)"
    )
    parser.add_argument(
        "--flags-out",
        metavar="FILE",
        default="-",
        help="write the flags as JSONL to FILE (default: -, stdout)",
    )
    parser.add_argument(
        "--jobs",
        type=_jobs,
        metavar="N",
        help="processes to run detection in (default: the usable CPUs, here"
        f" {usable_cpus()}); 1 runs it in this process. The output does not depend on N",
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
    jobs = args.jobs or usable_cpus()
    source = open_input(args.file)
    rejects_file = open_output(args.rejects) if args.rejects else None
    stderr = sys.stderr

    def on_reject(reject: Reject) -> None:
        line = reject.message.line
        if not args.quiet:
            stderr.write(f"line {line}: {reject.reason}: {reject.detail}\n")
        if rejects_file is not None:
            raw = reject.message.value.decode("utf-8", errors="replace")
            record = {"line": line, "reason": reject.reason, "detail": reject.detail, "raw": raw}
            rejects_file.write(orjson.dumps(record) + b"\n")

    progress = Progress("replay")

    def on_batch(tally: Tally) -> None:
        progress.update(tally.read, f"{sum(tally.flags.values()):,} flags")

    on_flags = None
    if args.metrics:
        # prometheus_client only when --metrics asks for it: replay starts without it.
        from bordermon import metrics  # noqa: PLC0415

        metrics_file = open_output(args.metrics)

        def on_flags(flags: list[Flag]) -> None:
            metrics.record_flags((flag, None) for flag in flags)

    flags_out = open_output(args.flags_out)
    try:
        result = replay_parallel(
            source,
            flags_out,
            config,
            jobs,
            on_reject=on_reject,
            on_batch=on_batch,
            on_flags=on_flags,
            count_events=bool(args.metrics),
        )
    except ReplayJobFailed as error:
        raise CommandError(str(error)) from None
    finally:
        progress.done()
        if rejects_file is not None:
            rejects_file.close()
    flags_out.flush()
    if args.flags_out != "-":
        flags_out.close()
    if args.metrics:
        metrics.record_event_counts(result.events_by_label)
        metrics.record_rejects(result.tally.rejected.elements(), dead_lettered=False)
        metrics.EVENTS_DUPLICATE.inc(result.tally.duplicates)
        with metrics_file:
            metrics_file.write(metrics.exposition())
    stderr.write(summary(result, settings, jobs))
    return 0


def summary(result: ReplayResult, settings: Settings, jobs: int = 1) -> str:
    tally = result.tally
    rate = tally.read / result.seconds if result.seconds > 0 else 0.0
    rejected = ", ".join(f"{reason} {count}" for reason, count in tally.rejected.most_common())
    severities = ", ".join(
        f"{severity.label} {tally.flags[severity]}"
        for severity in sorted(Severity, reverse=True)
        if tally.flags[severity]
    )
    by_rule = ", ".join(f"{rule} {count}" for rule, count in sorted(tally.flags_by_rule.items()))
    lines = [
        f"replay: {tally.read:,} events read in {result.seconds:.2f} s ({rate:,.0f} events/s"
        + (f", {jobs} jobs)" if jobs > 1 else ")"),
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
