"""`bordermon replay`: detection in-process over JSONL, with no Kafka and no Redis.

The embedded mode: an analyst with an export of scanner logs gets the flags with nothing else
installed. It drives the same batch step as the stream worker (`core.pipeline`) with states in
a dict, so its flags are the worker's flags (same ids; only `detected_at` differs).
"""

from __future__ import annotations

import gc
import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO

from bordermon.core.pipeline import (
    Accepted,
    BatchOutcome,
    Message,
    Reject,
    Tally,
    apply_batch,
    validate_batch,
)
from bordermon.core.rule import DetectionConfig
from bordermon.core.state import ConsignmentState
from bordermon.jsonl import iter_lines

BATCH_LINES = 2000


@dataclass(slots=True)
class ReplayResult:
    tally: Tally
    blank_lines: int
    consignments: int
    seconds: float


def _messages(source: IO[bytes], blank: list[int]) -> Iterator[Message]:
    """One message per non-blank line; `position` is the 1-based line number."""
    for number, value in iter_lines(source, blank):
        yield Message(value=value, position=number)


def replay(
    source: IO[bytes],
    flags_out: IO[bytes],
    config: DetectionConfig,
    *,
    on_reject: Callable[[Reject], None] | None = None,
    on_batch: Callable[[Tally], None] | None = None,
    on_outcome: Callable[[list[Accepted], BatchOutcome], None] | None = None,
    clock: Callable[[], int] = time.time_ns,
) -> ReplayResult:
    """Read JSONL crossing events from `source`, write flags as JSONL to `flags_out` in
    detection order. Rejects go to `on_reject` as they are found."""
    started = time.perf_counter()
    tally = Tally()
    states: dict[str, ConsignmentState] = {}
    blank = [0]
    messages = _messages(source, blank)
    while batch := list(itertools.islice(messages, BATCH_LINES)):
        accepted, rejects = validate_batch(batch, config, tally)
        if on_reject is not None:
            for reject in rejects:
                on_reject(reject)
        outcome = apply_batch(accepted, states, config, tally, clock)
        if on_outcome is not None:
            on_outcome(accepted, outcome)
        if outcome.flags:
            flags_out.write(b"".join(flag.to_json() + b"\n" for flag, _ in outcome.flags))
            for flag, _ in outcome.flags:
                # Written is delivered: nothing stays pending in replay.
                states[flag.consignment_id].pending.clear()
        if on_batch is not None:
            on_batch(tally)
        # States live until the end and hold no cycles: keep the cyclic GC from re-scanning
        # them all on every collection (that alone doubled the cost of apply at 1M events).
        gc.freeze()
    return ReplayResult(tally, blank[0], len(states), time.perf_counter() - started)
