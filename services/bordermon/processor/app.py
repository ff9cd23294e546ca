"""The faust app: two agents, each driving one stage's `BatchProcessor` over its topic.

- `crossings` (keyed by consignment id) -> the consignment stage: dead letters, flags of
  `transit-to-ru` and `export-without-permit`, and link sightings to the links topic;
- `links` (keyed by container / seal / goods batch) -> the link stage: flags of
  `relabel-to-ru`. Only subscribed when that rule is on.

Faust owns consumption, partition assignment and offset commits; this module is the thin
adapter. `Stream.take_events` acknowledges a batch's events only after our loop body returns,
and faust commits acknowledged offsets, so an offset is committed only after the batch's dead
letters, flags and states are all durable.

One failure mode needs care: if the loop body raised, faust would still acknowledge the batch
(in the generator's `finally`). So the body never raises: `BatchProcessor` retries outages
(Redis or Kafka unavailable) with backoff and isolates poison messages itself; anything that
still escapes (the poison limit, a dead-letter topic that refuses writes) stops the process at
once, before a commit, so the batch is read again after a restart.

Rebalances: the Kafka group protocol decides who owns a partition; the state store enforces it
(SPEC §6 single writer). After every assignment the processor forgets its owner tokens and
claims new ones before its next load, so a worker that lost a partition while paused is refused
at its next save. The timeouts below bound how long a dead or paused worker holds partitions.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

import faust
from prometheus_client import Gauge

from bordermon.core.config import DetectionConfig
from bordermon.core.link import LinkState
from bordermon.core.pipeline import Message
from bordermon.core.rules import RULE_RELABEL
from bordermon.core.signatures import ScannerRegistry
from bordermon.core.state import ConsignmentState
from bordermon.metrics import CONSIGNMENTS_IN_STATE, CONSUMER_LAG
from bordermon.processor.batch import BatchProcessor, PoisonLimitExceeded, Record, StageTopics
from bordermon.processor.stages import ConsignmentStage, LinkStage
from bordermon.settings import Settings
from bordermon.stores.base import StateStore, StoreUnavailable

log = logging.getLogger("bordermon.worker")

EXIT_UNEXPECTED = 70  # EX_SOFTWARE
LAG_INTERVAL_S = 5.0

# Group membership timeouts, chosen on purpose (faust's defaults are 60 s each):
# - a worker that stops heartbeating (killed, SIGSTOPped, cut off) loses its partitions after
#   SESSION_TIMEOUT_S; shorter means faster failover but more spurious rebalances on GC pauses;
# - HEARTBEAT_INTERVAL_S is a third of that, as Kafka advises;
# - REBALANCE_TIMEOUT_S bounds how long the group waits for members to rejoin, which is also how
#   long a worker may sit idle after a broker restart interrupted its join.
SESSION_TIMEOUT_S = 10.0
HEARTBEAT_INTERVAL_S = 3.0
REBALANCE_TIMEOUT_S = 20.0
STATE_COUNT_INTERVAL_S = 10.0


class FaustProducer:
    """Records through faust's producer, waiting for the broker's acknowledgements."""

    def __init__(self, app: faust.App) -> None:
        self.app = app

    async def send_all(self, records: Sequence[Record]) -> None:
        producer = self.app.producer
        futures = [
            await producer.send(
                record.topic,
                record.key,
                record.value,
                None,
                None if record.timestamp_ms is None else record.timestamp_ms / 1000,
                record.headers,
            )
            for record in records
        ]
        await asyncio.gather(*futures)


def new_faust_app(
    app_id: str, kafka_bootstrap: str, *, broker_credentials: Any = None
) -> faust.App:
    """A faust app configured the way bordermon runs faust (the benchmarks reuse it).

    `broker_credentials` is `Settings.faust_credentials()`: None for a plaintext cluster,
    `faust.SASLCredentials` (with a TLS context) for SASL_SSL.

    faust creates its data directory (`<app id>-data/v1/tables`) when it starts, even with
    the in-memory store that leaves it empty; it goes in a private temporary directory,
    removed at exit, instead of the directory the worker was started from.
    """
    datadir = tempfile.mkdtemp(prefix="bordermon-faust-")
    atexit.register(shutil.rmtree, datadir, ignore_errors=True)
    return faust.App(
        app_id,
        datadir=datadir,
        broker=[f"kafka://{server.strip()}" for server in kafka_bootstrap.split(",")],
        broker_credentials=broker_credentials,
        value_serializer="raw",
        key_serializer="raw",
        # Topics are declared under topics/ and applied by `bordermon topics apply`.
        topic_allow_declare=False,
        topic_disable_leader=True,
        web_enabled=False,
        store="memory://",
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        broker_commit_interval=1.0,
        # A dead letter is the original message plus headers: allow what the DLQ topic allows.
        producer_max_request_size=1_114_124,
        stream_wait_empty=True,
        logging_config=None,
        broker_session_timeout=SESSION_TIMEOUT_S,
        broker_heartbeat_interval=HEARTBEAT_INTERVAL_S,
        broker_rebalance_timeout=REBALANCE_TIMEOUT_S,
    )


def create_app(
    settings: Settings,
    config: DetectionConfig,
    store: StateStore[ConsignmentState],
    link_store: StateStore[LinkState] | None = None,
    *,
    registry: ScannerRegistry | None = None,
    retry_max_s: float = 5.0,
) -> faust.App:
    """A faust app with an agent per stage, configured from `settings`. The link stage runs
    when `relabel-to-ru` is on (then `link_store` is required). With `registry` (the
    `require_signatures` setting), crossings must be signed by a scanner it lists."""
    app = new_faust_app(
        settings.consumer_group,
        settings.kafka_bootstrap,
        broker_credentials=settings.faust_credentials(),
    )
    producer = FaustProducer(app)
    relabel = RULE_RELABEL in config.rules
    consignments = BatchProcessor(
        ConsignmentStage(config, registry),
        store,
        producer,
        StageTopics(
            source=settings.crossings_topic,
            flags=settings.flags_topic,
            dead_letter=settings.dead_letter_topic,
            forward=settings.links_topic if relabel else None,
        ),
        is_transient=is_transient_kafka_error,
        retry_max_s=retry_max_s,
    )
    processors: list[BatchProcessor[Any, Any]] = [consignments]
    lag = LagReport(settings.crossings_topic)
    lags = [lag]
    _add_agent(app, "crossings", settings.crossings_topic, consignments, settings, on_processed=lag)
    if relabel:
        if link_store is None:
            raise ValueError("relabel-to-ru is on: the link stage needs a link store")
        links = BatchProcessor(
            LinkStage(config),
            link_store,
            producer,
            StageTopics(
                source=settings.links_topic,
                flags=settings.flags_topic,
                dead_letter=settings.dead_letter_topic,
            ),
            is_transient=is_transient_kafka_error,
            retry_max_s=retry_max_s,
        )
        processors.append(links)
        link_lag = LagReport(settings.links_topic)
        lags.append(link_lag)
        _add_agent(app, "links", settings.links_topic, links, settings, on_processed=link_lag)

    @app.on_partitions_assigned.connect
    async def forget_owner_tokens(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        for processor in processors:
            processor.on_assignment_changed()

    @app.timer(interval=LAG_INTERVAL_S)  # type: ignore[untyped-decorator]
    async def report_lag() -> None:
        for report in lags:
            await report.update(app.consumer)

    @app.timer(interval=STATE_COUNT_INTERVAL_S)  # type: ignore[untyped-decorator]
    async def report_state_size() -> None:
        count = await store_size(store)
        if count is not None:
            CONSIGNMENTS_IN_STATE.set(count)

    app.bordermon_processors = processors  # type: ignore[attr-defined]
    return app


def _add_agent(
    app: faust.App,
    name: str,
    topic_name: str,
    processor: BatchProcessor[Any, Any],
    settings: Settings,
    *,
    on_processed: LagReport | None = None,
) -> None:
    topic = app.topic(topic_name, key_type=bytes, value_type=bytes, value_serializer="raw")
    max_events = settings.batch_max_events
    within_s = settings.batch_max_wait_ns / 1e9

    @app.agent(topic, name=name)
    async def process(stream: faust.StreamT[bytes]) -> None:
        # take_events is on the Stream class, not on faust's StreamT protocol.
        batches = stream.take_events(max_events, within=within_s)  # type: ignore[attr-defined]
        async for events in batches:
            messages = [_to_message(event) for event in events]
            await _process_or_stop(processor, messages)
            if on_processed is not None:
                on_processed.processed(messages)


class LagReport:
    """Consumer lag of one topic, per partition this worker is assigned: the high watermark
    minus the next offset to *process* (not merely fetched into faust's buffers). It remembers
    the partitions it reported, so that a partition that moved to another worker stops being
    reported here (it is that worker's to report)."""

    def __init__(self, topic: str, gauge: Gauge = CONSUMER_LAG) -> None:
        self.topic = topic
        self.gauge = gauge
        self.next_offsets: dict[int, int] = {}
        self._reported: set[int] = set()

    def processed(self, messages: Sequence[Message]) -> None:
        for message in messages:
            if message.position >= self.next_offsets.get(message.partition, 0):
                self.next_offsets[message.partition] = message.position + 1

    async def update(self, consumer: Any) -> None:
        assigned = {tp.partition: tp for tp in consumer.assignment() if tp.topic == self.topic}
        for partition, tp in assigned.items():
            try:
                highwater = consumer.highwater(tp)
            except Exception:  # not fetched yet: no watermark known
                continue
            if highwater is None:
                continue
            position = self.next_offsets.get(partition)
            if position is None:
                position = await consumer.position(tp)
            if position is not None:
                self.gauge.labels(self.topic, str(partition)).set(max(highwater - position, 0))
                self._reported.add(partition)
        for partition in sorted(self._reported - assigned.keys()):
            self.gauge.remove(self.topic, str(partition))
            self._reported.discard(partition)


async def store_size(store: StateStore) -> int | None:
    """Consignments held, when the store can tell cheaply (the Redis store: DBSIZE)."""
    size = getattr(store, "size", None)
    if size is None:
        return None
    try:
        return int(await size())
    except StoreUnavailable:
        return None


def _to_message(event: Any) -> Message:
    kafka_message = event.message
    # aiokafka gives headers as (str, bytes) pairs (faust's type also allows a mapping); a
    # header without a value has None.
    headers = kafka_message.headers or ()
    if isinstance(headers, Mapping):
        headers = headers.items()
    return Message(
        value=kafka_message.value if kafka_message.value is not None else b"",
        key=kafka_message.key,
        check_key=True,
        position=kafka_message.offset,
        partition=kafka_message.partition,
        timestamp_ms=int(kafka_message.timestamp * 1000) if kafka_message.timestamp else None,
        headers=tuple((name, value or b"") for name, value in headers),
    )


async def _process_or_stop(processor: BatchProcessor[Any, Any], messages: list[Message]) -> None:
    """Process a batch; on anything the processor could not handle, stop before the commit."""
    try:
        await processor.process(messages)
    except asyncio.CancelledError:
        raise
    except PoisonLimitExceeded as error:
        log.critical("%s", error)
        _stop_now()
    except Exception:
        log.critical(
            "unexpected error while processing a batch; stopping before its offsets are"
            " committed so it is read again after a restart",
            exc_info=True,
        )
        _stop_now()


def _stop_now() -> None:
    logging.shutdown()
    os._exit(EXIT_UNEXPECTED)


def is_transient_kafka_error(error: BaseException) -> bool:
    """Kafka or the network failing (hold the partition and retry), as opposed to Kafka refusing
    *this record* (then the message that produced it is poison).

    Only the record-level refusals count as the data's fault. Everything else from Kafka is
    infrastructure, whatever aiokafka's `retriable` flag says: a producer timeout
    (`KafkaTimeoutError`, "not retriable" in aiokafka, is what a broker outage looks like), a
    missing ACL or topic. Treating those as poison would dead-letter good messages during an
    outage; holding the partition is what SPEC §6 asks for infrastructure faults.
    """
    from aiokafka.errors import KafkaError, MessageSizeTooLargeError, RecordTooLargeError

    if isinstance(error, MessageSizeTooLargeError | RecordTooLargeError):
        return False
    return isinstance(error, KafkaError | ConnectionError | TimeoutError)
