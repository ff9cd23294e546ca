"""The worker's hot path: a batch consumer driving each stage's `BatchProcessor`.

faust reads a topic one message at a time (`Consumer._drain_messages` awaits several futures
per message) and that cost was three quarters of the worker's CPU; so the worker reads Kafka
itself, in batches (`AIOKafkaConsumer.getmany`), and commits offsets itself. faust stays the
application: it runs this consumer as a service, with the producer, the timers and the process
lifecycle (signals, graceful stop).

`ProcessingLoop` is that consumer's lifecycle, one named step each (in the spirit of
getsentry/arroyo's strategies), with no faust in it:

- **assign** (`on_assigned`): partitions were assigned; the processors forget their owner
  tokens and claim fresh ones before their next load (the single-writer fence of SPEC §6);
- **poll** (`poll`): fetch up to `max_records` records and **submit** them to their lane's
  queue (a lane is a stage's share of partitions: `lanes` per stage, partition p in lane
  p % lanes). Each lane with queued records has one drain task that takes up to
  `max_records` of them as a sub-batch, has its stage's processor process it, marks each
  partition's next offset durable, and goes on while records are queued. So a partition's
  order is kept, and sub-batches grow with the load: a few records, quickly, when the worker
  keeps up; full ones when it is behind. `poll` waits while `max_buffered` records are
  fetched and not yet processed;
- **commit** (`commit`): the durable offsets of all partitions in one request, every
  `commit_interval_s` at most (a request per sub-batch was a broker round trip each, which
  added latency for nothing). An offset is committed only after its sub-batch's dead letters,
  flags, forwards and states are durable. Partitions this worker was fenced off are not
  committed: they belong to another worker now;
- **revoke** (`on_revoked`): called by the group protocol before partitions are taken away;
  it **joins** every pending sub-batch and commits, so nothing processed is left uncommitted
  when a partition changes hands. Records fetched before a revocation but not yet submitted
  are dropped; their new owner reads them from the last commit;
- **close** (`close`): no more fetching, then the same join and commit; the caller then leaves
  the group.

A sub-batch that fails (the poison limit, a dead-letter topic refusing writes, a bug) is not
committed, nor is anything after it on its partition; the failure is raised by the next
`poll`, and the caller stops the worker: the batch is read again after the restart. No
`os._exit` is needed for that: offsets are committed here and nowhere else.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from bordermon.core.pipeline import Message
from bordermon.processor.batch import BatchProcessor

log = logging.getLogger("bordermon.worker")


class TopicPartition(Protocol):
    """aiokafka's `TopicPartition` (a named tuple): what the loop reads of it."""

    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...


class Source(Protocol):
    """The part of a Kafka consumer the loop uses. aiokafka's `AIOKafkaConsumer` is one; the
    wiring tests pass an in-memory fake."""

    async def getmany(
        self, *partitions: Any, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[Any, list[Any]]: ...

    async def commit(self, offsets: Any = None) -> None: ...


def to_message(record: Any) -> Message:
    """A fetched Kafka record (aiokafka's `ConsumerRecord`) as the core's `Message`.

    The key is checked against the event's consignment id (`check_key`): the crossings topic
    is keyed by it, and a mismatch would put one consignment's events on two partitions. A
    tombstone is an empty value (a reject, not a crash). Header values of None (allowed by
    Kafka) are empty bytes."""
    headers = record.headers or ()
    if isinstance(headers, Mapping):
        headers = headers.items()
    timestamp = record.timestamp
    return Message(
        value=record.value if record.value is not None else b"",
        key=record.key,
        check_key=True,
        partition=record.partition,
        offset=record.offset,
        timestamp_ms=int(timestamp) if timestamp is not None and timestamp >= 0 else None,
        headers=tuple((name, value or b"") for name, value in headers),
    )


@dataclass(frozen=True, slots=True)
class StageBinding:
    """A stage's processor and who is told about its processed messages (the lag report)."""

    processor: BatchProcessor[Any, Any]
    on_processed: Callable[[Sequence[Message]], None] | None = None


class ProcessingLoop:
    """Fetch, submit per partition, process, commit; assignment, revocation and close as named
    steps (see the module docstring). `stages` maps each source topic to its stage."""

    def __init__(
        self,
        source: Source,
        stages: Mapping[str, StageBinding],
        *,
        max_records: int = 500,
        poll_timeout_ms: int = 100,
        max_buffered: int | None = None,
        lanes: int = 1,
        commit_interval_s: float = 0.2,
        commit_errors: tuple[type[BaseException], ...] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self.stages = dict(stages)
        self.max_records = max_records
        self.poll_timeout_ms = poll_timeout_ms
        self.lanes = lanes
        """Drain tasks per stage, at most; partition p goes to lane p % lanes. One lane (the
        default) puts every partition the fetch returned into one sub-batch: one Redis load
        and save and one produce for all of them. A lane per partition overlaps partitions'
        waits on Redis and the broker instead, but at a few records per partition per fetch
        the per-sub-batch work then dominates. Measured on the bench (docs/benchmarks.md,
        "Lanes"): one lane halved scan-to-flag p99 at 1,000 and 2,000 events/s and kept the
        throughput at full backlog, where the worker is bound by its CPU, not by waits."""
        self.max_buffered = max_buffered or 4 * max_records
        """Records fetched and not yet processed, at most: `poll` waits below this before it
        fetches more (memory, and how far ahead of the slowest partition a worker reads)."""
        self.commit_interval_s = commit_interval_s
        """Durable offsets are committed together, at most this often (and at every
        revocation and close): one request for every partition, not one per sub-batch."""
        self.clock = clock
        self._last_commit = clock()
        self._durable: dict[TopicPartition, int] = {}
        """Per partition, the next offset after its last durable sub-batch, not yet committed."""
        self.commit_errors = commit_errors
        """Commit failures that only cost re-deliveries (the group rebalanced under the commit):
        logged, not raised. The batch is durable; whoever owns its partitions next reads it
        again from the last commit and drops what it has already applied as duplicates."""
        self._queued: dict[tuple[str, int], list[Any]] = {}
        """Per lane (topic, partition % lanes), records fetched and not yet taken."""
        self._draining: dict[tuple[str, int], asyncio.Task[None]] = {}
        """Per lane with queued or in-process records, the task that processes them."""
        self._partitions: dict[tuple[str, int], TopicPartition] = {}
        """The consumer's partition objects, to commit with, by (topic, partition)."""
        self._buffered = 0
        self._progress = asyncio.Event()
        self._failures: list[BaseException] = []
        self._revocations = 0
        self.closed = False
        self.committed: dict[tuple[str, int], int] = {}
        """The last offset committed per (topic, partition): what the next owner resumes at."""

    # --- assign -------------------------------------------------------------------------
    def on_assigned(self, partitions: Iterable[TopicPartition]) -> None:
        for binding in self.stages.values():
            binding.processor.on_assignment_changed()
        log.info("assigned: %s", _describe(partitions))

    # --- revoke -------------------------------------------------------------------------
    async def on_revoked(self, partitions: Iterable[TopicPartition]) -> None:
        self._revocations += 1  # whatever is being fetched right now is dropped
        await self.join()
        await self.commit()
        log.info("revoked: %s", _describe(partitions))

    # --- poll and submit ----------------------------------------------------------------
    async def poll(self) -> int:
        """One step: wait for room, fetch, submit each partition's records. Returns the
        records submitted (0 when nothing was fetched, or the fetch predates a revocation).
        Raises the failure of any sub-batch that failed since the last call."""
        self._raise_failure()
        if self.closed:
            return 0
        if self._durable and self.clock() - self._last_commit >= self.commit_interval_s:
            await self.commit()
        while self._buffered >= self.max_buffered:
            self._progress.clear()
            await self._progress.wait()  # a sub-batch finished (or failed)
            self._raise_failure()
        revocations = self._revocations
        fetched = await self.source.getmany(
            timeout_ms=self.poll_timeout_ms, max_records=self.max_records
        )
        self._raise_failure()
        if not fetched or self.closed or self._revocations != revocations:
            # Nothing, or partitions changed hands while this was fetched: its records may
            # belong to another worker now. Dropped unprocessed and uncommitted.
            return 0
        unknown = {tp.topic for tp in fetched} - self.stages.keys()
        if unknown:
            raise RuntimeError(f"fetched records of topics no stage reads: {sorted(unknown)}")
        submitted = 0
        for tp, records in fetched.items():
            if records:
                self._submit(tp, records)
                submitted += len(records)
        return submitted

    def _submit(self, tp: TopicPartition, records: Sequence[Any]) -> None:
        """Queue a partition's records behind what its lane already has; start the lane's
        drain task if it has none. One task per lane keeps each partition's order; records
        that arrive while a sub-batch is in process make the next sub-batch (so sub-batches
        grow with the load: small and quick when the worker keeps up, full when it is
        behind)."""
        self._partitions[(tp.topic, tp.partition)] = tp
        lane = (tp.topic, tp.partition % self.lanes)
        self._queued.setdefault(lane, []).extend(records)
        self._buffered += len(records)
        if lane not in self._draining:
            self._draining[lane] = asyncio.ensure_future(self._drain(lane))

    def _raise_failure(self) -> None:
        if self._failures:
            raise self._failures[0]

    # --- process (one partition's sub-batches, in order) --------------------------------
    async def _drain(self, lane: tuple[str, int]) -> None:
        """Process the lane's queue, `max_records` at a time, until it is empty. A failure is
        kept for `poll` to raise; what was queued behind it is dropped, neither processed nor
        committed (the worker stops and reads it again after the restart)."""
        binding = self.stages[lane[0]]
        queue = self._queued[lane]
        try:
            while queue:
                records = queue[: self.max_records]
                del queue[: self.max_records]
                messages = [to_message(record) for record in records]
                try:
                    await binding.processor.process(messages)
                finally:
                    self._buffered -= len(records)
                    self._progress.set()
                if binding.on_processed is not None:
                    binding.on_processed(messages)
                for record in records:  # in offset order within each partition
                    self._durable[self._partitions[(record.topic, record.partition)]] = (
                        record.offset + 1
                    )
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self._failures.append(error)
        finally:
            # Synchronously with the last check of `queue`: records that arrive from now on
            # start a new drain task.
            del self._queued[lane]
            del self._draining[lane]
            self._progress.set()

    # --- commit -------------------------------------------------------------------------
    async def commit(self) -> None:
        """Commit every partition's durable offset, in one request; not the partitions this
        worker was fenced off (another worker owns them and commits them)."""
        durable, self._durable = self._durable, {}
        self._last_commit = self.clock()
        offsets = {
            tp: offset
            for tp, offset in durable.items()
            if not self.stages[tp.topic].processor.is_fenced(tp.partition)
        }
        if not offsets:
            return
        try:
            await self.source.commit(offsets)
        except self.commit_errors as error:
            log.warning(
                "offset commit of %s refused (%r); the batches are durable and will be"
                " re-delivered to the partitions' next owner, which drops them as duplicates",
                ", ".join(sorted(f"{tp.topic}:{tp.partition}" for tp in offsets)),
                error,
            )
            return
        for tp, offset in offsets.items():
            self.committed[(tp.topic, tp.partition)] = offset

    # --- join and close -----------------------------------------------------------------
    async def join(self) -> None:
        """Until every fetched record is processed (or its partition failed)."""
        while self._draining:
            await asyncio.wait(set(self._draining.values()))

    async def close(self) -> None:
        """Fetch no more, let what was submitted finish, and commit it."""
        self.closed = True
        await self.join()
        await self.commit()


def _describe(partitions: Iterable[TopicPartition]) -> str:
    by_topic: dict[str, list[int]] = {}
    for tp in partitions:
        by_topic.setdefault(tp.topic, []).append(tp.partition)
    if not by_topic:
        return "nothing"
    return "; ".join(f"{topic} {sorted(ps)}" for topic, ps in sorted(by_topic.items()))
