"""The faust app: the worker's lifecycle, producer and timers, around a batch consumer.

The stages and their topics:

- the crossings topic (keyed by consignment id) -> the consignment stage: dead letters, flags
  of `transit-to-ru` and `export-without-permit`, and link sightings to the links topic;
- the links topic (keyed by container / seal / goods batch) -> the link stage: flags of
  `relabel-to-ru`. Only subscribed when that rule is on.

faust runs the application: signals and graceful stop, the timers (lag, state size), and
the producer every record goes out through (its aiokafka producer, handed a batch per
partition by `bordermon.processor.producer`). It does **not** consume: its per-message stream path
cost three quarters of the worker's CPU (docs/benchmarks.md). `BatchConsumerService`, a faust
service, reads both topics in batches with one aiokafka consumer in the worker's group and
drives `bordermon.processor.consumer.ProcessingLoop`, which commits offsets itself, only after
a batch's dead letters, flags, forwards and states are durable.

Rebalances: the Kafka group protocol decides who owns a partition; the state store enforces it
(SPEC §6 single writer). After every assignment the processors forget their owner tokens and
claim new ones before their next load, so a worker that lost a partition while paused is
refused at its next save. On revocation the in-flight batch finishes and commits first. The
timeouts below bound how long a dead or paused worker holds partitions.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import shutil
import signal
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import faust
from mode import Service
from prometheus_client import Gauge

from bordermon.core.config import DetectionConfig
from bordermon.core.link import LinkState
from bordermon.core.pipeline import Message
from bordermon.core.rules import RULE_RELABEL
from bordermon.core.signatures import ScannerRegistry
from bordermon.core.state import ConsignmentState
from bordermon.metrics import CONSIGNMENTS_IN_STATE, CONSUMER_LAG
from bordermon.processor.batch import BatchProcessor, PoisonLimitExceeded, StageTopics
from bordermon.processor.consumer import ProcessingLoop, StageBinding
from bordermon.processor.producer import BatchingProducer
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


def new_faust_app(
    app_id: str, kafka_bootstrap: str, *, broker_credentials: Any = None, consume: bool = True
) -> faust.App:
    """A faust app configured the way bordermon runs faust (the benchmarks reuse it).

    `broker_credentials` is `Settings.faust_credentials()`: None for a plaintext cluster,
    `faust.SASLCredentials` (with a TLS context) for SASL_SSL.

    faust creates its data directory (`<app id>-data/v1/tables`) when it starts, even with
    the in-memory store that leaves it empty; it goes in a private temporary directory,
    removed at exit, instead of the directory the worker was started from.

    `consume=False` leaves out faust's consumer (and its tables and topic conductor): the
    worker reads Kafka through `BatchConsumerService` instead. The benchmarks' faust
    ceiling and peer keep faust's consumer.
    """
    datadir = tempfile.mkdtemp(prefix="bordermon-faust-")
    atexit.register(shutil.rmtree, datadir, ignore_errors=True)
    app = faust.App(
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
    if not consume:
        app.boot_strategy = app.BootStrategy(app, enable_kafka_consumer=False)
    return app


@dataclass(frozen=True, slots=True)
class WorkerApp:
    """The worker's faust app and its batch consumer. If processing failed for good,
    `consumer.failure` says why once the app has stopped (`bordermon worker` then exits with
    `EXIT_UNEXPECTED`)."""

    app: faust.App
    consumer: BatchConsumerService


def create_app(
    settings: Settings,
    config: DetectionConfig,
    store: StateStore[ConsignmentState],
    link_store: StateStore[LinkState] | None = None,
    *,
    registry: ScannerRegistry | None = None,
    retry_max_s: float = 5.0,
) -> WorkerApp:
    """A faust app running the batch consumer over each stage, configured from `settings`.
    The link stage runs when `relabel-to-ru` is on (then `link_store` is required). With
    `registry` (the `require_signatures` setting), crossings must be signed by a scanner it
    lists."""
    app = new_faust_app(
        settings.consumer_group,
        settings.kafka_bootstrap,
        broker_credentials=settings.faust_credentials(),
        consume=False,
    )
    # faust's producer owns the aiokafka producer (faust has no public accessor for it);
    # records skip faust's per-record path.
    producer = BatchingProducer(app.producer._ensure_producer)  # type: ignore[attr-defined]
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
    lags = [LagReport(settings.crossings_topic)]
    stages = {settings.crossings_topic: StageBinding(consignments, lags[0].processed)}
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
        lags.append(LagReport(settings.links_topic))
        stages[settings.links_topic] = StageBinding(links, lags[1].processed)

    service = BatchConsumerService(settings, stages, loop=app.loop, beacon=app.beacon)
    # faust starts a service instance as well as a class (its stubs only say classes).
    app.service(service)  # type: ignore[arg-type]

    @app.timer(interval=LAG_INTERVAL_S)  # type: ignore[untyped-decorator]
    async def report_lag() -> None:
        if service.consumer is None:
            return
        for report in lags:
            await report.update(service.consumer)

    @app.timer(interval=STATE_COUNT_INTERVAL_S)  # type: ignore[untyped-decorator]
    async def report_state_size() -> None:
        count = await store_size(store)
        if count is not None:
            CONSIGNMENTS_IN_STATE.set(count)

    return WorkerApp(app, service)


class BatchConsumerService(Service):
    """The batch consumer as a faust service: started after the app's producer, stopped (with
    its in-flight batch finished and committed) before it.

    It owns an `AIOKafkaConsumer` in the worker's consumer group, subscribed to the stages'
    topics, with auto-commit off: `ProcessingLoop` commits after each durable batch. On a
    failure the processors cannot handle it logs why, keeps it in `failure`, and stops the
    whole worker without committing that batch."""

    def __init__(
        self, settings: Settings, stages: Mapping[str, StageBinding], **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.stages = stages
        self.consumer: Any = None
        self.processing: ProcessingLoop | None = None
        self.failure: BaseException | None = None
        self.stop_worker: Callable[[], None] = terminate_this_process
        """How a failure stops the worker. By default through the signal faust's worker
        handles (its graceful stop, which this service's `on_stop` is part of); `bordermon
        worker` then exits with EXIT_UNEXPECTED and a supervisor restarts it from the last
        commit."""

    async def on_start(self) -> None:
        from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
        from aiokafka.errors import CommitFailedError, KafkaError

        settings = self.settings
        consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap,
            group_id=settings.consumer_group,
            client_id=f"{settings.consumer_group}-batch",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=int(SESSION_TIMEOUT_S * 1000),
            heartbeat_interval_ms=int(HEARTBEAT_INTERVAL_S * 1000),
            rebalance_timeout_ms=int(REBALANCE_TIMEOUT_S * 1000),
            # How long a batch may take before the group thinks this member hung: a batch
            # waits out Redis and Kafka outages (retried with backoff), so it is generous.
            max_poll_interval_ms=300_000,
            **settings.aiokafka_security(),
        )
        processing = ProcessingLoop(
            consumer,
            self.stages,
            max_records=settings.batch_max_events,
            poll_timeout_ms=max(1, settings.batch_max_wait_ns // 1_000_000),
            commit_errors=(CommitFailedError, KafkaError),
        )

        class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
            async def on_partitions_revoked(self, revoked: Any) -> None:
                await processing.on_revoked(revoked)

            async def on_partitions_assigned(self, assigned: Any) -> None:
                processing.on_assigned(assigned)

        consumer.subscribe(list(self.stages), listener=Listener())
        await consumer.start()
        self.consumer, self.processing = consumer, processing

    @Service.task
    async def _consume(self) -> None:
        await self.run()

    async def run(self) -> None:
        """Poll until the service stops, or processing fails (then stop the worker)."""
        processing = self.processing
        assert processing is not None  # set in on_start, which runs before tasks
        try:
            while not self.should_stop and not processing.closed:
                await processing.poll()
        except asyncio.CancelledError:
            raise
        except PoisonLimitExceeded as error:
            log.critical("%s", error)
            await self._fail(error)
        except Exception as error:
            log.critical(
                "unexpected error while processing a batch; stopping before its offsets are"
                " committed so it is read again after a restart",
                exc_info=True,
            )
            await self._fail(error)

    async def _fail(self, error: BaseException) -> None:
        self.failure = error
        self.stop_worker()

    async def on_stop(self) -> None:
        if self.processing is not None:
            await self.processing.close()
        if self.consumer is not None:
            await self.consumer.stop()  # leaves the group: the others rebalance at once


def terminate_this_process() -> None:
    os.kill(os.getpid(), signal.SIGTERM)


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
            if message.offset >= self.next_offsets.get(message.partition, 0):
                self.next_offsets[message.partition] = message.offset + 1

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
