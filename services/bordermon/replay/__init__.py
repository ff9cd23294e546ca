"""`bordermon replay`: detection in-process over JSONL, with no Kafka and no Redis.

The embedded mode: an analyst with an export of scanner logs gets the flags with nothing else
installed. It drives the same batch steps as the stream worker (`core.pipeline`) with states
in dicts, so its flags are the worker's flags (same ids; only `detected_at` differs).

Detection order, as flags are written: batch by batch (`BATCH_LINES` non-blank lines);
within a batch, first the consignment stage's flags (`transit-to-ru`, `export-without-permit`)
in the order of the events that raised them, then the link stage's (`relabel-to-ru`) in the
order of the sightings that raised them (the order of their events, then the order in which
an event emits them). The link stage runs over the batch's sightings right after the
consignment stage, as the worker's link stage reads them from the links topic. Rejects are
reported in line order, each batch's before its flags. `bordermon.replay.parallel` writes
the same output from several processes.

Memory: every consignment's and link key's state is kept until the end of the input (no
expiry: detection over the whole file, so a pair months apart in the file is still found;
the worker's Redis keys expire `state_ttl` after their last event). Memory therefore grows
with the distinct consignments and link keys in the file, not with its length: about 3 KB
per consignment, its link keys included, with the simulator's mix (1.5 GiB for 1M lines,
542,000 consignments and 639,000 link keys; docs/benchmarks.md).
"""

from __future__ import annotations

import gc
import itertools
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO

from bordermon.core.config import DetectionConfig
from bordermon.core.flag import Flag
from bordermon.core.link import LinkState
from bordermon.core.pipeline import (
    Message,
    Reject,
    Tally,
    apply_batch,
    apply_link_batch,
    validate_batch,
)
from bordermon.core.state import ConsignmentState
from bordermon.jsonl import iter_lines

BATCH_LINES = 2000


@dataclass(slots=True)
class ReplayResult:
    tally: Tally
    blank_lines: int
    consignments: int
    link_keys: int
    seconds: float
    # Valid events (duplicates too) by (checkpoint, direction), when counted (`--metrics`).
    events_by_label: Counter[tuple[str, str]] = field(default_factory=Counter)


def _messages(source: IO[bytes], blank: list[int]) -> Iterator[Message]:
    """One message per non-blank line, with its 1-based line number."""
    for number, value in iter_lines(source, blank):
        yield Message(value=value, line=number)


def replay(
    source: IO[bytes],
    flags_out: IO[bytes],
    config: DetectionConfig,
    *,
    on_reject: Callable[[Reject], None] | None = None,
    on_batch: Callable[[Tally], None] | None = None,
    on_flags: Callable[[list[Flag]], None] | None = None,
    count_events: bool = False,
    clock: Callable[[], int] = time.time_ns,
) -> ReplayResult:
    """Read JSONL crossing events from `source`, write flags as JSONL to `flags_out` in
    detection order (see the module's docstring). Rejects go to `on_reject` as they are
    found; `on_flags` gets each batch's flags in that order, `on_batch` the running tally
    after each batch. With `count_events`, the result counts valid events by label."""
    started = time.perf_counter()
    tally = Tally()
    events_by_label: Counter[tuple[str, str]] = Counter()
    states: dict[str, ConsignmentState] = {}
    link_states: dict[str, LinkState] = {}
    blank = [0]
    messages = _messages(source, blank)
    while batch := list(itertools.islice(messages, BATCH_LINES)):
        accepted, rejects = validate_batch(batch, config, tally)
        if on_reject is not None:
            for reject in rejects:
                on_reject(reject)
        if count_events:
            events_by_label.update(
                (item.event.checkpoint, item.event.direction.value) for item in accepted
            )
        outcome = apply_batch(accepted, states, config, tally, clock)
        link_outcome = apply_link_batch(outcome.sightings, link_states, config, tally, clock)
        flags = [flag for flag, _ in outcome.flags] + [flag for flag, _ in link_outcome.flags]
        if flags:
            flags_out.write(b"".join(flag.to_json() + b"\n" for flag in flags))
            if on_flags is not None:
                on_flags(flags)
            # Written is delivered: nothing stays pending in replay.
            for state in outcome.touched.values():
                state.pending.clear()
            for link_state in link_outcome.touched.values():
                link_state.pending.clear()
        if on_batch is not None:
            on_batch(tally)
        # States live until the end and hold no cycles: keep the cyclic GC from re-scanning
        # them all on every collection (that alone doubled the cost of apply at 1M events).
        gc.freeze()
    return ReplayResult(
        tally,
        blank[0],
        len(states),
        len(link_states),
        time.perf_counter() - started,
        events_by_label,
    )
