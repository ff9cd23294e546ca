"""One batch through a worker stage, in the order that makes SPEC §6 hold.

The same steps serve both stages (`bordermon.processor.stages`): the consignment stage over the
crossings topic and the link stage over the links topic. For a batch read from its topic:

1. **validate** every message (the core), once: rejects go to the dead-letter topic and are
   acknowledged there before anything else, so an offset is never committed past a message
   that is neither applied nor dead-lettered. Retries below never validate, dead-letter or
   count again;
2. **state phase**, retried as a whole while Kafka or Redis is unreachable:
   claim an owner token for each partition seen for the first time since the last rebalance,
   load the batch's states with their revisions in one round trip, apply the accepted items
   in order (the core), produce what goes to the next stage (link sightings) and wait for the
   acknowledgements *before* any save, so that an item counted as seen has always been handed
   on (a crash in between re-sends identical sightings, which the link stage drops as
   duplicates), then save. If flags are pending, the states are saved *with the flags
   inside* first, then the flags are produced and acknowledged, then the states are saved
   with the flags cleared. A crash before the produce re-sends the stored flag body (same
   `flag_id`, same `detected_at`); a crash after it re-sends at worst a duplicate;
3. return: only then does the caller acknowledge the messages and commit their offsets.

Every save is a compare-and-set (see `bordermon.stores.base`): a save that another writer
overtook (`SaveConflict`) is re-done from a fresh load; a save refused because another worker
claimed the partition (`Fenced`) drops that partition's messages from this worker for good
(until the next rebalance hands it back): the new owner reads them from the last commit.

**Poison messages** (SPEC §6): an exception in the state phase that is neither an outage nor
one of the two above is a message this code cannot process. The batch is bisected (each half
applied on its own, in order) until the single failing message is found; it is dead-lettered
as `internal_error` with the exception in `detail`, and the rest is applied. A message is thus
tried at most ~log2(batch) + 1 times. `PoisonLimit` stops the worker instead when most recent
messages fail, which is a bad deploy, not bad data.

Nothing here knows about faust or Kafka clients: the producer and the store are small
interfaces, so the whole step runs in unit tests with an in-memory store and a list producer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, NamedTuple, Protocol, TypeVar

from bordermon.core.flag import Flag
from bordermon.core.pipeline import INTERNAL_ERROR, Message, Reject, Tally
from bordermon.core.timestamps import NANOS_PER_SECOND
from bordermon.metrics import PROMETHEUS
from bordermon.processor.dead_letter import dead_letter_headers
from bordermon.processor.recorder import Recorder
from bordermon.processor.stages import Forward, I, S, Stage
from bordermon.stores.base import Fenced, SaveConflict, StateStore, StoreUnavailable

log = logging.getLogger("bordermon.worker")

T = TypeVar("T")


class Record(NamedTuple):
    """One record to produce."""

    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]] | None = None
    timestamp_ms: int | None = None


class Producer(Protocol):
    async def send_all(self, records: Sequence[Record]) -> None:
        """Return once every record is acknowledged by the broker; raise otherwise."""


@dataclass(frozen=True, slots=True)
class StageTopics:
    """Where a stage reads (`source`) and what it writes to."""

    source: str
    flags: str
    dead_letter: str
    forward: str | None = None
    """The next stage's topic (the links topic, for the consignment stage)."""


class PoisonLimitExceeded(Exception):
    """Too many recent messages failed processing: stop rather than dead-letter the topic."""


class PoisonLimit:
    """A safety valve in the spirit of arroyo's `DlqLimit`.

    One poison message is bad data; most messages failing is a broken deploy, and dead-lettering
    them would empty the topic into the DLQ. So when more than `max_ratio` of the last `window`
    processed messages failed (and at least `min_failures` did), `check` raises before the next
    failure is dead-lettered, and the worker stops without committing.
    """

    def __init__(self, max_ratio: float = 0.5, window: int = 1000, min_failures: int = 10) -> None:
        self.max_ratio = max_ratio
        self.min_failures = min_failures
        self._recent: deque[bool] = deque(maxlen=window)

    def record_ok(self, count: int) -> None:
        self._recent.extend([False] * min(count, self._recent.maxlen or count))

    def record_failure(self) -> None:
        failures = sum(self._recent) + 1
        seen = len(self._recent) + 1
        if failures >= self.min_failures and failures > self.max_ratio * seen:
            raise PoisonLimitExceeded(
                f"{failures} of the last {seen} messages failed processing (more than"
                f" {self.max_ratio:.0%}): this looks like a bug in this deploy, not bad data."
                " Stopping without committing; fix or roll back, then restart"
            )
        self._recent.append(True)


@dataclass(slots=True)
class BatchReport:
    messages: int = 0
    rejected: int = 0
    poison: int = 0
    fenced: int = 0
    flags: list[Flag] = field(default_factory=list)
    states_saved: int = 0


def _never_transient(error: BaseException) -> bool:
    return False


def _add_tally(total: Tally, part: Tally) -> None:
    """Add the counts of one successful attempt to the running counts."""
    for spec in dataclasses.fields(total):
        mine, theirs = getattr(total, spec.name), getattr(part, spec.name)
        if isinstance(mine, Counter):
            mine.update(theirs)
        else:
            setattr(total, spec.name, mine + theirs)


def owner_of(message: Message, topic: str) -> str:
    """The owner name a partition's token is kept under: `topic:partition`."""
    return partition_owner(topic, message.partition)


def partition_owner(topic: str, partition: int) -> str:
    return f"{topic}:{partition}"


class BatchProcessor(Generic[I, S]):
    """The worker's batch step for one stage. Between batches it holds running counts and, per
    partition, the owner token claimed since the last rebalance."""

    def __init__(
        self,
        stage: Stage[I, S],
        store: StateStore[S],
        producer: Producer,
        topics: StageTopics,
        *,
        is_transient: Callable[[BaseException], bool] = _never_transient,
        poison_limit: PoisonLimit | None = None,
        retry_max_s: float = 5.0,
        clock: Callable[[], int] = time.time_ns,
        recorder: Recorder = PROMETHEUS,
    ) -> None:
        self.recorder = recorder
        self.stage = stage
        self.store = store
        self.producer = producer
        self.topics = topics
        self.topic = topics.source
        self.is_transient = is_transient
        self.poison_limit = poison_limit or PoisonLimit()
        self.retry_max_s = retry_max_s
        self.clock = clock
        self.tally = Tally()
        self.tokens: dict[str, int] = {}
        self.fenced: set[str] = set()

    def on_assignment_changed(self) -> None:
        """A rebalance happened: tokens are claimed afresh for whatever is assigned now."""
        self.tokens.clear()
        self.fenced.clear()

    def is_fenced(self, partition: int) -> bool:
        """Whether another worker claimed `partition` of the source topic since this worker's
        last assignment (its offsets are then that worker's to commit)."""
        return partition_owner(self.topic, partition) in self.fenced

    async def process(self, messages: Sequence[Message]) -> BatchReport:
        started = time.perf_counter()
        report = BatchReport(messages=len(messages))
        live = [m for m in messages if owner_of(m, self.topic) not in self.fenced]
        report.fenced = len(messages) - len(live)
        accepted, rejects = self.stage.validate(live, self.tally)
        if rejects:
            await self._retrying("dead-letter", lambda: self._dead_letter(rejects))
            report.rejected = len(rejects)
        await self._apply_isolating(accepted, report)
        self.recorder.batch(self.stage.name, len(messages), time.perf_counter() - started)
        return report

    async def _dead_letter(self, rejects: Sequence[Reject]) -> None:
        await self.producer.send_all(
            [
                Record(
                    self.topics.dead_letter,
                    reject.message.key,
                    reject.message.value,
                    dead_letter_headers(reject, self.topics.source),
                )
                for reject in rejects
            ]
        )
        self.recorder.rejects((r.reason for r in rejects), dead_lettered=True)

    async def _retrying(self, what: str, step: Callable[[], Awaitable[T]]) -> T:
        """Run `step` until it succeeds, backing off while Redis or Kafka is unreachable.
        Anything else propagates."""
        delay = 0.1
        while True:
            try:
                return await step()
            except StoreUnavailable as error:
                self.recorder.store_unavailable()
                log.warning(
                    "%s: state store unavailable, retrying in %.1fs: %s", what, delay, error
                )
            except Exception as error:
                if not self.is_transient(error):
                    raise
                log.warning("%s: Kafka unavailable, retrying in %.1fs: %r", what, delay, error)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.retry_max_s)

    async def _apply_isolating(self, items: Sequence[I], report: BatchReport) -> None:
        """Apply `items`; on a processing failure, bisect down to the message that causes it."""
        if not items:
            return
        try:
            await self._retrying("state phase", lambda: self._apply_owned(items, report))
        except Exception as error:  # not an outage (retried inside): this batch cannot be applied
            failure = error
        else:
            self.poison_limit.record_ok(len(items))
            return
        # Outside the `except`: bisecting inside it would chain every level's traceback into
        # the one that is finally logged.
        if len(items) == 1:
            await self._dead_letter_poison(items[0], failure, report)
            return
        middle = len(items) // 2
        await self._apply_isolating(items[:middle], report)
        await self._apply_isolating(items[middle:], report)

    async def _dead_letter_poison(self, item: I, error: Exception, report: BatchReport) -> None:
        self.poison_limit.record_failure()
        detail = f"processing failed: {type(error).__name__}: {error}"
        log.error(
            "poison message at partition %d offset %d dead-lettered as %s (%s)",
            item.message.partition,
            item.message.offset,
            INTERNAL_ERROR,
            detail,
            exc_info=error,
        )
        reject = Reject(item.message, INTERNAL_ERROR, detail)
        await self._retrying("dead-letter", lambda: self._dead_letter([reject]))
        self.tally.rejected[INTERNAL_ERROR] += 1
        report.poison += 1

    async def _apply_owned(self, items: Sequence[I], report: BatchReport) -> None:
        """The state phase, re-done from a fresh load on a conflict, and without the
        partitions this worker turns out to have lost."""
        while items:
            try:
                await self._apply_once(items, report)
                return
            except SaveConflict as conflict:
                self.recorder.save_refused("conflict")
                log.info("another writer changed %s; reloading and re-applying", conflict)
            except Fenced as fenced:
                self.recorder.save_refused("fenced", len(fenced.owners))
                self.fenced |= fenced.owners
                kept = [i for i in items if owner_of(i.message, self.topic) not in self.fenced]
                report.fenced += len(items) - len(kept)
                log.warning(
                    "%s claimed by another worker: this worker stops processing it;"
                    " %d message(s) left to the new owner",
                    ", ".join(sorted(fenced.owners)),
                    len(items) - len(kept),
                )
                items = kept

    async def _fence(self, items: Sequence[I]) -> dict[str, int]:
        owners = {owner_of(item.message, self.topic) for item in items}
        unclaimed = owners - self.tokens.keys()
        if unclaimed:
            # Claimed before the first load after a rebalance: whatever an earlier owner
            # writes after this point is refused.
            self.tokens.update(await self.store.claim(sorted(unclaimed)))
        return {owner: self.tokens[owner] for owner in owners}

    async def _apply_once(self, items: Sequence[I], report: BatchReport) -> None:
        fence = await self._fence(items)
        with self.recorder.round_trip("load"):
            snapshot = await self.store.snapshot({self.stage.key_of(item) for item in items})
        states = snapshot.states
        attempt = Tally()  # counted only if the attempt succeeds, so retries never double-count
        outcome = self.stage.apply(items, states, attempt, self.clock)
        if outcome.forwards:
            await self._forward(outcome.forwards)

        # Pending flags: new ones, and any left by a crash before their acknowledgement.
        flagged = [state for state in states.values() if state.pending]
        revisions = await self._save(
            [*outcome.touched.values(), *flagged], snapshot.revisions, fence, report
        )
        flags = [flag for state in flagged for flag in state.pending]
        if flags:
            await self.producer.send_all(
                [
                    Record(self.topics.flags, flag.consignment_id.encode(), flag.to_json())
                    for flag in flags
                ]
            )
            acknowledged_ns = time.time_ns()
            for state in flagged:
                state.pending.clear()
            await self._save(flagged, revisions, fence, report)
            report.flags.extend(flags)
            triggers = {flag.flag_id: message for flag, message in outcome.flags}
            self.recorder.flags(
                [
                    (flag, _scan_to_flag_s(triggers.get(flag.flag_id), acknowledged_ns))
                    for flag in flags
                ]
            )
        _add_tally(self.tally, attempt)
        self.recorder.duplicates(attempt.duplicates)
        self.stage.record(items, self.recorder)

    async def _forward(self, forwards: Sequence[Forward]) -> None:
        topic = self.topics.forward
        if topic is None:
            raise RuntimeError(f"stage {self.stage.name} forwards records but has no next topic")
        await self.producer.send_all(
            [Record(topic, f.key, f.value, None, f.timestamp_ms) for f in forwards]
        )

    async def _save(
        self,
        states: Iterable[S],
        expected: dict[str, int],
        fence: dict[str, int],
        report: BatchReport,
    ) -> dict[str, int]:
        batch = list(states)
        if not batch:
            return expected
        with self.recorder.round_trip("save"):
            saved = await self.store.save(batch, expected=expected, fence=fence)
        report.states_saved += len(saved)
        return {**expected, **saved}


def _scan_to_flag_s(trigger: Message | None, acknowledged_ns: int) -> float | None:
    """From the Kafka timestamp of the scan that completed the pair to the flag's ack (the
    link stage's records carry their scan's timestamp, see `Forward`)."""
    if trigger is None or trigger.timestamp_ms is None:
        return None
    return acknowledged_ns / NANOS_PER_SECOND - trigger.timestamp_ms / 1000
