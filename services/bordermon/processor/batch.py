"""One batch of crossings through the worker, in the order that makes SPEC §6 hold.

For a batch read from the crossings topic:

1. validate every message (the core); rejects go to the dead-letter topic and are
   acknowledged there before anything else, so an offset is never committed past a message
   that is neither applied nor dead-lettered;
2. load the batch's consignment states in one store round trip;
3. apply the accepted events in order (the core);
4. if flags are pending, save the states *with the flags inside* first, then produce the flags
   and wait for the broker's acknowledgement, then save the states with the flags cleared.
   A crash before the produce re-sends the stored flag body (same `flag_id`, same
   `detected_at`); a crash after it re-sends at worst a duplicate; never a missing flag;
5. otherwise save the touched states in one round trip;
6. return: only then does the caller acknowledge the messages, and the offsets are committed.

Nothing here knows about faust or Kafka clients: sinks and the store are small interfaces, so
the whole step runs in unit tests with an in-memory store and list sinks.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from bordermon import metrics
from bordermon.core.flag import Flag
from bordermon.core.pipeline import Accepted, Message, Reject, Tally, apply_batch, validate_batch
from bordermon.core.rule import DetectionConfig
from bordermon.core.state import ConsignmentState
from bordermon.core.timestamps import NANOS_PER_SECOND
from bordermon.stores.base import StateStore


class FlagSink(Protocol):
    async def send_flags(self, flags: Sequence[Flag]) -> None:
        """Return once every flag is acknowledged by the broker; raise otherwise."""


class DeadLetterSink(Protocol):
    async def send_dead_letters(self, rejects: Sequence[Reject]) -> None:
        """Return once every reject is acknowledged in the dead-letter topic; raise otherwise."""


@dataclass(slots=True)
class BatchReport:
    messages: int = 0
    rejected: int = 0
    flags: list[Flag] = field(default_factory=list)
    states_saved: int = 0


class BatchProcessor:
    """The worker's batch step; holds no state between batches except running counts."""

    def __init__(
        self,
        config: DetectionConfig,
        store: StateStore,
        flag_sink: FlagSink,
        dead_letter_sink: DeadLetterSink,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.config = config
        self.store = store
        self.flag_sink = flag_sink
        self.dead_letter_sink = dead_letter_sink
        self.clock = clock
        self.tally = Tally()

    async def process(self, messages: Sequence[Message]) -> BatchReport:
        started = time.perf_counter()
        report = BatchReport(messages=len(messages))
        accepted, rejects = validate_batch(messages, self.config, self.tally)
        if rejects:
            await self.dead_letter_sink.send_dead_letters(rejects)
            report.rejected = len(rejects)
            metrics.record_rejects((r.reason for r in rejects), dead_lettered=True)

        if accepted:
            await self._apply(accepted, report)
        metrics.BATCH_SIZE.observe(len(messages))
        metrics.BATCH_DURATION.observe(time.perf_counter() - started)
        return report

    async def _apply(self, accepted: Sequence[Accepted], report: BatchReport) -> None:
        ids = {item.event.consignment_id for item in accepted}
        with metrics.REDIS_ROUND_TRIP.labels("load").time():
            states: dict[str, ConsignmentState] = await self.store.load(ids)
        duplicates_before = self.tally.duplicates
        outcome = apply_batch(accepted, states, self.config, self.tally, self.clock)
        metrics.EVENTS_DUPLICATE.inc(self.tally.duplicates - duplicates_before)

        # Pending flags: new ones, and any left by a crash before their acknowledgement.
        flagged = [state for state in states.values() if state.pending]
        if not flagged:
            await self._save(outcome.touched.values(), report)
            metrics.record_events(item.event for item in accepted)
            return
        await self._save(
            {**outcome.touched, **{s.consignment_id: s for s in flagged}}.values(), report
        )
        flags = [flag for state in flagged for flag in state.pending]
        await self.flag_sink.send_flags(flags)
        acknowledged_ns = time.time_ns()
        for state in flagged:
            state.pending.clear()
        await self._save(flagged, report)
        report.flags.extend(flags)
        metrics.record_events(item.event for item in accepted)
        triggers = {flag.flag_id: item for flag, item in outcome.flags}
        for flag in flags:
            metrics.record_flag(flag, _scan_to_flag_s(triggers.get(flag.flag_id), acknowledged_ns))

    async def _save(self, states: Iterable[ConsignmentState], report: BatchReport) -> None:
        batch = list(states)
        if not batch:
            return
        with metrics.REDIS_ROUND_TRIP.labels("save").time():
            await self.store.save(batch)
        report.states_saved += len(batch)


def _scan_to_flag_s(trigger: Accepted | None, acknowledged_ns: int) -> float | None:
    """From the Kafka timestamp of the scan that completed the pair to the flag's ack."""
    if trigger is None or trigger.message.timestamp_ms is None:
        return None
    return acknowledged_ns / NANOS_PER_SECOND - trigger.message.timestamp_ms / 1000
