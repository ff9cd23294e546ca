"""`bordermon simulate`: the command line of the simulator."""

from __future__ import annotations

import argparse
import contextlib
import gc
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import IO

import orjson

from bordermon import simulate as library
from bordermon.progress import Progress
from bordermon.simulate.generator import generate
from bordermon.simulate.spec import DEFAULT_MIX, DEFAULT_START, PATTERNS, SimulationSpec
from bordermon.simulate.truth import TruthRecord

HELP = "write realistic synthetic crossing events"
DESCRIPTION = library.__doc__

_EPILOG = """\
Equal options give byte-identical output (default seed 42, default start 2024-03-01T00:00:00Z).
Lines are written in delivery order: out of event-time order within --max-lateness, with some
duplicates (the same line again) and some malformed lines. The truth file is JSONL (see
bordermon.simulate.truth), one record per consignment, per expected flag, per malformed line:
  {"consignment_id": "...", "pattern": "relabel", "case": "relabel-seal", "flagged": false, ...}
  {"flag_id": "...", "rule": "relabel-to-ru", "consignment_id": "...", "severity": "high",
   "entry_event_id": "...", "exit_event_id": "...", "link": "seal:KZ123456",
   "linked_consignment_id": "...", "hs_codes": ["854231"], "detected_line": 912}
  {"line": 17, "reason": "invalid_field:goods", "kind": "bad-goods"}
Patterns (for --mix): transit, re-export, slow, boundary, export-only, ru-return,
other-destination, re-entry, import-only, relabel, container-reuse, controlled-export.

examples:
  bordermon simulate --consignments 1000 | bordermon replay
  bordermon simulate --events 1000000 --out scans.jsonl --truth truth.jsonl
  bordermon simulate --seed 7 --malformed-rate 0 --duplicate-rate 0 --mix transit=1,slow=1
  bordermon simulate --mix relabel=1,container-reuse=1 --relabel-window-days 60
  bordermon simulate --events 50000 --rate 200 | bordermon publish -
"""


class _ArgumentError(Exception):
    """A bad command-line value: reported as one line, exit 2."""


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Declare the `simulate` options. Values are parsed in `run`, to fail in one clear line."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = _EPILOG
    add = parser.add_argument
    add("--consignments", metavar="N", help="consignments to make (default 1000 if no --events)")
    add("--events", metavar="N", help="approximate number of output lines (first limit wins)")
    add("--seed", metavar="INT", default="42", help="random seed (default 42)")
    add("--out", metavar="FILE", default="-", help="write events to FILE (default: stdout)")
    add("--truth", metavar="FILE", help="write the ground truth as JSONL to FILE")
    add("--start", metavar="RFC3339", help="instant of the first consignment (default 2024-03-01Z)")
    add("--malformed-rate", metavar="P", default="0.005", help="share of malformed lines (0.005)")
    add("--duplicate-rate", metavar="P", default="0.02", help="share of lines re-sent (0.02)")
    add(
        "--max-lateness",
        metavar="DURATION",
        default="2d",
        help="how late a line may be delivered after its event time, e.g. 90s, 6h, 2d (2d)",
    )
    add("--window-days", metavar="DAYS", default="30", help="transit window of the truth (30)")
    add(
        "--relabel-window-days",
        metavar="DAYS",
        default="90",
        help="relabel window of the truth, and of the relabel cases (90)",
    )
    add(
        "--interval",
        metavar="SECONDS",
        default="60",
        help="mean time between consignments, in event time (60)",
    )
    add("--mix", metavar="NAME=W,...", help="pattern weights; unlisted patterns get 0")
    add(
        "--rate",
        metavar="EVENTS_PER_S",
        default="0",
        help="pace output to this many lines per second for live feeds (0 = as fast as possible)",
    )


def _parse_int(name: str, text: str, low: int = 0) -> int:
    try:
        value = int(text)
    except ValueError:
        raise _ArgumentError(f"{name} must be an integer, not {text!r}") from None
    if value < low:
        raise _ArgumentError(f"{name} must be >= {low}, not {value}")
    return value


def _parse_float(name: str, text: str, low: float = 0.0, high: float = math.inf) -> float:
    try:
        value = float(text)
    except ValueError:
        raise _ArgumentError(f"{name} must be a number, not {text!r}") from None
    if not (math.isfinite(value) and low <= value < high):
        bound = f"in [{low:g}, {high:g})" if math.isfinite(high) else f">= {low:g}"
        raise _ArgumentError(f"{name} must be {bound}, not {text}")
    return value


def _parse_duration(name: str, text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
    stripped = text.strip().lower()
    scale = units.get(stripped[-1:], 0)
    number = stripped[:-1] if scale else stripped
    try:
        value = float(number) * (scale or 1)
    except ValueError:
        message = f"{name} must be a duration like 90s, 6h or 2d, not {text!r}"
        raise _ArgumentError(message) from None
    if not (math.isfinite(value) and value >= 0):
        raise _ArgumentError(f"{name} must be >= 0, not {text!r}")
    return value


def _parse_start(text: str) -> datetime:
    if "T" not in text.upper():
        raise _ArgumentError(f"--start must be RFC 3339 with an offset, not {text!r}")
    try:
        value = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise _ArgumentError(f"--start must be RFC 3339 with an offset, not {text!r}") from None
    if value.tzinfo is None:
        raise _ArgumentError(f"--start needs a UTC offset (e.g. Z or +05:00): {text!r}")
    return value


def _parse_mix(text: str) -> tuple[tuple[str, float], ...]:
    weights: dict[str, float] = {}
    for part in text.split(","):
        name, sep, weight = part.partition("=")
        name = name.strip()
        if not sep or name not in PATTERNS:
            raise _ArgumentError(
                f"--mix takes NAME=WEIGHT,... with NAME one of {', '.join(PATTERNS)}; got {part!r}"
            )
        weights[name] = _parse_float(f"--mix weight of {name}", weight)
    if not any(weights.values()):
        raise _ArgumentError("--mix needs at least one positive weight")
    return tuple(weights.items())


def _spec_from_args(args: argparse.Namespace) -> tuple[SimulationSpec, float]:
    consignments = (
        _parse_int("--consignments", args.consignments) if args.consignments is not None else None
    )
    events = _parse_int("--events", args.events) if args.events is not None else None
    if consignments is None and events is None:
        consignments = 1000
    spec = SimulationSpec(
        consignments=consignments,
        events=events,
        seed=_parse_int("--seed", args.seed, low=-(2**63)),
        start=_parse_start(args.start) if args.start is not None else DEFAULT_START,
        mix=_parse_mix(args.mix) if args.mix is not None else DEFAULT_MIX,
        duplicate_rate=_parse_float("--duplicate-rate", args.duplicate_rate, 0.0, 1.0),
        malformed_rate=_parse_float("--malformed-rate", args.malformed_rate, 0.0, 1.0),
        max_lateness_s=_parse_duration("--max-lateness", args.max_lateness),
        mean_interval_s=_parse_float("--interval", args.interval, 0.001),
        window_days=_parse_int("--window-days", args.window_days, low=1),
        relabel_window_days=_parse_int("--relabel-window-days", args.relabel_window_days, low=1),
    )
    return spec, _parse_float("--rate", args.rate)


def run(args: argparse.Namespace) -> int:
    """Run `bordermon simulate`: 0 when done (or the reader left), 2 on a bad argument."""
    try:
        spec, rate = _spec_from_args(args)
    except (_ArgumentError, ValueError) as error:
        print(f"bordermon simulate: {error}", file=sys.stderr)
        return 2
    with contextlib.ExitStack() as stack:
        try:
            out = sys.stdout.buffer
            if args.out != "-":
                out = stack.enter_context(Path(args.out).open("wb"))
            truth_file = None
            if args.truth is not None:
                truth_file = stack.enter_context(Path(args.truth).open("wb"))
        except OSError as error:
            message = f"cannot write {error.filename}: {error.strerror}"
            print(f"bordermon simulate: {message}", file=sys.stderr)
            return 2
        on_truth: Callable[[TruthRecord], None] | None = None
        if truth_file is not None:
            write_truth = truth_file.write

            def on_truth(record: TruthRecord) -> None:
                write_truth(orjson.dumps(record) + b"\n")

        # The run allocates millions of short-lived, acyclic objects; the default collector
        # thresholds would re-scan the heap of pending lines over and over (~10 % of the time).
        thresholds = gc.get_threshold()
        gc.set_threshold(100_000, 50, 100)
        progress = Progress("simulate", unit="lines")
        try:
            _write(generate(spec, on_truth), out, rate, progress)
        except BrokenPipeError:
            # `bordermon simulate | head`: the reader has what it wanted; not an error. Point
            # stdout at /dev/null so that the interpreter's final flush does not complain.
            _silence_stdout()
            return 0
        except KeyboardInterrupt:
            progress.done()
            return 130
        finally:
            gc.set_threshold(*thresholds)
    return 0


def _write(lines: Iterator[bytes], out: IO[bytes], rate: float, progress: Progress) -> None:
    """Write lines in batches; with a rate, hold it, handing each line over when it is due."""
    batch: list[bytes] = []
    started = time.monotonic()
    for count, line in enumerate(lines):
        if rate > 0:
            due = started + count / rate
            now = time.monotonic()
            if due > now:  # ahead of schedule: hand over what we have, then wait
                if batch:
                    out.write(b"\n".join(batch) + b"\n")
                    batch.clear()
                out.flush()
                progress.update(count)
                time.sleep(due - now)
        batch.append(line)
        if len(batch) >= 2048:
            out.write(b"\n".join(batch) + b"\n")
            batch.clear()
            progress.update(count + 1)
    if batch:
        out.write(b"\n".join(batch) + b"\n")
    out.flush()


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry point: `python -m bordermon.simulate --help`."""
    parser = argparse.ArgumentParser(prog="bordermon simulate", description=DESCRIPTION)
    configure_parser(parser)
    return run(parser.parse_args(argv))
