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
- **poll** (`poll`): fetch up to `max_records` records, then, holding the processing lock,
  **process** them (each stage's messages through its processor, crossings first) and
  **commit** the next offset of every partition in the batch. A commit happens only after the
  batch's dead letters, flags, forwards and states are durable (the processor returns only
  then). Partitions this worker was fenced off are not committed: they belong to another
  worker now;
- **revoke** (`on_revoked`): called by the group protocol before partitions are taken away; it
  waits for the in-flight batch to finish and commit, so nothing processed is left uncommitted
  when a partition changes hands. Records fetched before a revocation but not yet processed are
  dropped; their new owner reads them from the last commit;
- **close** (`close`): the same wait, then no more batches; the caller then leaves the group.

Anything a processor raises (the poison limit, a dead-letter topic refusing writes, a bug)
propagates out of `poll` with nothing committed for that batch: the caller stops the worker
and the batch is read again after the restart. No `os._exit` is needed for that: offsets are
committed here and nowhere else.
"""

from __future__ import annotations

import asyncio
import logging
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

    def assignment(self) -> Any: ...


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
        position=record.offset,
        partition=record.partition,
        timestamp_ms=int(timestamp) if timestamp is not None and timestamp >= 0 else None,
        headers=tuple((name, value or b"") for name, value in headers),
    )


@dataclass(frozen=True, slots=True)
class StageBinding:
    """A stage's processor and who is told about its processed messages (the lag report)."""

    processor: BatchProcessor[Any, Any]
    on_processed: Callable[[Sequence[Message]], None] | None = None


class ProcessingLoop:
    """Fetch, process, commit; assignment, revocation and close as named steps (see the
    module docstring). `stages` maps each source topic to its stage, in processing order."""

    def __init__(
        self,
        source: Source,
        stages: Mapping[str, StageBinding],
        *,
        max_records: int = 500,
        poll_timeout_ms: int = 100,
        commit_errors: tuple[type[BaseException], ...] = (),
    ) -> None:
        self.source = source
        self.stages = dict(stages)
        self.max_records = max_records
        self.poll_timeout_ms = poll_timeout_ms
        self.commit_errors = commit_errors
        """Commit failures that only cost re-deliveries (the group rebalanced under the commit):
        logged, not raised. The batch is durable; whoever owns its partitions next reads it
        again from the last commit and drops what it has already applied as duplicates."""
        self._in_flight = asyncio.Lock()
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
        self._revocations += 1
        async with self._in_flight:  # the batch being processed finishes and commits first
            pass
        log.info("revoked: %s", _describe(partitions))

    # --- poll, process, commit ----------------------------------------------------------
    async def poll(self) -> int:
        """One step: fetch a batch, process it, commit it. Returns the messages processed
        (0 when nothing was fetched, or the batch predates a revocation)."""
        if self.closed:
            return 0
        revocations = self._revocations
        fetched = await self.source.getmany(
            timeout_ms=self.poll_timeout_ms, max_records=self.max_records
        )
        if not fetched:
            return 0
        async with self._in_flight:
            if self.closed or self._revocations != revocations:
                # Partitions changed hands since this batch was fetched: its records may
                # belong to another worker now. Drop them unprocessed and uncommitted.
                return 0
            return await self._process(fetched)

    async def _process(self, fetched: Mapping[Any, Sequence[Any]]) -> int:
        by_topic: dict[str, list[Message]] = {}
        for tp, records in fetched.items():
            by_topic.setdefault(tp.topic, []).extend(to_message(record) for record in records)
        unknown = by_topic.keys() - self.stages.keys()
        if unknown:
            raise RuntimeError(f"fetched records of topics no stage reads: {sorted(unknown)}")
        processed = 0
        for topic, binding in self.stages.items():
            messages = by_topic.get(topic)
            if not messages:
                continue
            await binding.processor.process(messages)
            if binding.on_processed is not None:
                binding.on_processed(messages)
            processed += len(messages)
        await self._commit(fetched)
        return processed

    async def _commit(self, fetched: Mapping[Any, Sequence[Any]]) -> None:
        offsets = {
            tp: records[-1].offset + 1
            for tp, records in fetched.items()
            if records and not self.stages[tp.topic].processor.is_fenced(tp.partition)
        }
        if not offsets:
            return
        try:
            await self.source.commit(offsets)
        except self.commit_errors as error:
            log.warning(
                "offset commit refused (%r); the batch is durable and will be re-delivered"
                " to the partitions' next owner, which drops it as duplicates",
                error,
            )
            return
        for tp, offset in offsets.items():
            self.committed[(tp.topic, tp.partition)] = offset

    # --- close --------------------------------------------------------------------------
    async def close(self) -> None:
        """Finish the in-flight batch (and its commit), then take no more."""
        async with self._in_flight:
            self.closed = True


def _describe(partitions: Iterable[TopicPartition]) -> str:
    by_topic: dict[str, list[int]] = {}
    for tp in partitions:
        by_topic.setdefault(tp.topic, []).append(tp.partition)
    if not by_topic:
        return "nothing"
    return "; ".join(f"{topic} {sorted(ps)}" for topic, ps in sorted(by_topic.items()))
