"""The scanner SDK: publish crossing events to Kafka as a border scanner does: validated,
keyed, acknowledged. Each event is checked against the crossing event contract (SPEC §3)
before it is sent and goes to the crossings topic keyed by its consignment_id (one worker owns
a consignment). `bordermon publish` (`bordermon.cli.publish`) is the command over it.

`ScannerPublisher` is what an integrator embeds.

    from bordermon.scanner.publisher import ScannerPublisher

    with ScannerPublisher("kafka-1:9092") as publisher:
        publisher.check_connection()          # fail fast if the cluster or topic is missing
        publisher.publish({"event_id": "...", "consignment_id": "...", ...})
        report = publisher.flush(30)
    if not report.ok:
        ...  # report.failed, report.errors: keep the events and retry later

Signed scans: given a scanner id and its Ed25519 key (`bordermon scanner-key new` makes one),
the publisher signs the exact bytes of each event it sends and adds the headers
`bordermon-scanner-id` and `bordermon-signature` (see `bordermon.core.signatures`):

    from bordermon.scanner.keys import read_private_key

    key = read_private_key("/etc/bordermon/scanner.key")
    with ScannerPublisher("kafka-1:9092", scanner_id="nur-zholy-1", signing_key=key) as p:
        ...
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from bordermon.core.crossing import (
    CrossingEvent,
    InvalidCrossing,
    consignment_id_of,
    parse_crossing,
)
from bordermon.kafka import (
    CONNECT_TIMEOUT_S,
    KAFKA_LOGGER,
    BrokerUnreachable,
    ClientErrors,
    KafkaUnavailable,
    TopicNotFound,
    check_topic,
)

if TYPE_CHECKING:
    # confluent-kafka takes ~0.1 s to import: only `run` and the SDK objects load it.
    from confluent_kafka import KafkaError, Message
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

__all__ = [
    "DEFAULT_PRODUCER_CONFIG",
    "BrokerUnreachable",
    "Delivery",
    "DeliveryReport",
    "KafkaUnavailable",
    "PublishError",
    "ScannerPublisher",
    "TopicNotFound",
]


DEFAULT_PRODUCER_CONFIG: Mapping[str, str | int | bool] = {
    # Idempotence + acks=all: a retried send never duplicates or reorders events of a partition,
    # and an acknowledged event survives the loss of the partition leader.
    "enable.idempotence": True,
    "acks": "all",
    # SPEC §2: a consignment's partition is Kafka's murmur2 hash of its key, as the Java client
    # and aiokafka (the worker's own producer) compute it. librdkafka's default is CRC32, which
    # would put the same consignment in another partition than a Java scanner does.
    "partitioner": "murmur2_random",
    # A few milliseconds of batching costs nothing next to the 1 s scan-to-flag budget and
    # turns a burst of scans into one request.
    "linger.ms": 5,
    # JSON compresses 3-5x; lz4 is the cheapest codec in CPU, which matters on scanner hardware.
    "compression.type": "lz4",
    # SPEC §2: nothing relies on auto-creation. A missing topic is an error, not a new topic.
    "allow.auto.create.topics": False,
    "client.id": "bordermon-scanner",
}

_MAX_BUFFER_RETRY_POLL_S = 0.1


# --- errors -----------------------------------------------------------------------------------


class PublishError(RuntimeError):
    """The Kafka client refused an event before sending it (too large, or a fatal client error).

    Distinct from a failed delivery: nothing was queued, so the caller can keep the event.
    """


@dataclass(frozen=True, slots=True)
class Delivery:
    """The outcome of one event, passed to the `on_delivery` callback of `ScannerPublisher`.

    `error` is None when Kafka acknowledged the event (then `partition`/`offset` say where it
    is); otherwise it is librdkafka's reason, e.g. `Local: Message timed out`.
    """

    key: str | None
    error: str | None
    partition: int | None = None
    offset: int | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """Counts since the publisher was created.

    - `sent`: events handed to the Kafka client (queued for sending);
    - `acknowledged`: confirmed written by the cluster (`acks=all`);
    - `failed`: rejected by the cluster or timed out; `errors` counts them by reason;
    - `pending`: still waiting for an answer when `flush` returned (its timeout elapsed).
    """

    sent: int
    acknowledged: int
    failed: int
    pending: int
    errors: Mapping[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Every event sent so far is acknowledged."""
        return self.failed == 0 and self.pending == 0 and self.acknowledged == self.sent


class _Producer(Protocol):
    """The part of confluent_kafka.Producer the publisher uses (a fake can stand in for it)."""

    def produce(
        self,
        topic: str,
        *,
        value: bytes,
        key: bytes | None,
        on_delivery: Callable[[KafkaError | None, Message], None],
        headers: list[tuple[str, str | bytes | None]] | None = None,
    ) -> None: ...

    def poll(self, timeout: float) -> int: ...

    def flush(self, timeout: float) -> int: ...

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any: ...

    def __len__(self) -> int: ...


class ScannerPublisher:
    """Publishes crossing events (SPEC §3) to the crossings topic, keyed by consignment_id.

    Events are validated with the same code the stream worker runs: `publish()` raises
    `InvalidCrossing` at once for an event the worker would dead-letter, and sends nothing, so
    a scanner learns immediately that its event is wrong. Sending is asynchronous: `publish()`
    queues the event and returns; Kafka's answer arrives later and is counted (and passed to
    `on_delivery` if given). Call `flush()` to wait for the answers and get a `DeliveryReport`;
    leaving a `with` block flushes too.

        with ScannerPublisher("localhost:9092") as publisher:
            publisher.check_connection()
            for event in scans:                     # dicts or JSON bytes
                try:
                    publisher.publish(event)
                except InvalidCrossing as error:
                    log.warning("scan %s rejected: %s", event.get("event_id"), error)
            report = publisher.flush(30)
        assert report.ok, report.errors

    The producer is idempotent with `acks=all`, so retries never duplicate an event; `config`
    overrides or adds librdkafka settings (e.g. `{"message.timeout.ms": 600000}` for a scanner
    on a flaky link, or SASL settings). Not thread-safe: use one publisher per thread.

    With `scanner_id` and `signing_key` (an Ed25519 private key), every message, raw ones
    included, is signed over its exact value bytes and carries the two signature headers.
    """

    def __init__(
        self,
        bootstrap: str = "localhost:9092",
        topic: str = "bordermon.crossings",
        *,
        monitored_country: str = "KZ",
        config: Mapping[str, str | int | float | bool] | None = None,
        on_delivery: Callable[[Delivery], None] | None = None,
        producer: _Producer | None = None,
        scanner_id: str | None = None,
        signing_key: Ed25519PrivateKey | None = None,
    ) -> None:
        """`producer` replaces the confluent-kafka Producer (in tests; `config` is unused).
        `scanner_id` and `signing_key` go together: both to sign, neither not to."""
        if (scanner_id is None) != (signing_key is None):
            raise ValueError("scanner_id and signing_key go together: give both to sign")
        if scanner_id is not None:
            from bordermon.core.signatures import check_scanner_id

            check_scanner_id(scanner_id)
        self.scanner_id = scanner_id
        self._signing_key = signing_key
        self.bootstrap = bootstrap
        self.topic = topic
        self.monitored_country = monitored_country
        self._on_delivery_user = on_delivery
        self._errors_cb = ClientErrors()
        if producer is None:
            from confluent_kafka import Producer

            settings: dict[str, Any] = {
                **DEFAULT_PRODUCER_CONFIG,
                "bootstrap.servers": bootstrap,
                "error_cb": self._errors_cb,
                "logger": logging.getLogger(KAFKA_LOGGER),
            }
            settings.update(config or {})
            producer = Producer(settings)
        self._producer: _Producer = producer
        self._sent = 0
        self._acknowledged = 0
        self._failed: Counter[str] = Counter()
        self._closed = False

    # -- sending --

    def publish(self, event: Mapping[str, Any] | bytes) -> CrossingEvent:
        """Validate one crossing event and queue it; return the parsed event.

        `event` is a mapping (serialised to JSON here) or the JSON bytes themselves, which are
        sent exactly as given. Raises `InvalidCrossing` (with `.reason`, a SPEC §3 code, and
        `.detail`) when the event breaks the contract; nothing is sent then.
        """
        if isinstance(event, bytes | bytearray | memoryview):
            raw = bytes(event)
        elif isinstance(event, Mapping):
            raw = _to_json(event)
        else:  # JSON text or a model object: a programming error, not an invalid event
            raise TypeError(f"publish() takes a mapping or JSON bytes, not {type(event).__name__}")
        crossing = parse_crossing(raw, self.monitored_country)
        self._produce(raw, crossing.consignment_id.encode("utf-8"))
        return crossing

    def publish_raw(self, value: bytes) -> str | None:
        """Queue `value` untouched, without validation; return the key used.

        The key is the payload's `consignment_id` when one can be read (even from an otherwise
        invalid event), so a bad event lands next to its consignment, as a real scanner's
        would; otherwise the message has no key. For testing the worker on bad input.
        """
        key = consignment_id_of(value)
        self._produce(value, None if key is None else key.encode("utf-8"))
        return key

    def _produce(self, value: bytes, key: bytes | None) -> None:
        from confluent_kafka import KafkaException

        self._raise_if_fatal()
        headers: list[tuple[str, str | bytes | None]] | None = None
        if self._signing_key is not None and self.scanner_id is not None:
            from bordermon.core.signatures import sign_headers

            headers = [*sign_headers(value, self.scanner_id, self._signing_key)]
        while True:
            try:
                self._producer.produce(
                    self.topic,
                    value=value,
                    key=key,
                    on_delivery=self._delivered,
                    headers=headers,
                )
                break
            except BufferError:
                # The local queue is full: serve delivery reports until there is room. The
                # queue drains as Kafka answers (or as messages time out), so this ends.
                self._producer.poll(_MAX_BUFFER_RETRY_POLL_S)
            except KafkaException as error:
                raise PublishError(_kafka_reason(error)) from None
        self._sent += 1
        # Serve delivery callbacks as we go, so counts stay fresh and the queue never fills.
        self._producer.poll(0)

    def _delivered(self, error: KafkaError | None, message: Message) -> None:
        raw_key = message.key()
        key = None if raw_key is None else raw_key.decode("utf-8", errors="replace")
        if error is None:
            self._acknowledged += 1
            outcome = Delivery(key, None, message.partition(), message.offset())
        else:
            reason = str(error.str())
            self._failed[reason] += 1
            outcome = Delivery(key, reason)
        if self._on_delivery_user is not None:
            self._on_delivery_user(outcome)

    def _raise_if_fatal(self) -> None:
        if self._errors_cb.fatal is not None:
            raise PublishError(f"the Kafka producer failed: {self._errors_cb.fatal.str()}")

    # -- waiting --

    def poll(self, timeout: float = 0) -> None:
        """Serve delivery callbacks, waiting up to `timeout` seconds (less when one came)."""
        self._producer.poll(timeout)

    def sleep(self, seconds: float) -> None:
        """Wait `seconds` while serving delivery callbacks: an idle scanner's `time.sleep`."""
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            self._producer.poll(remaining)

    def flush(self, timeout: float | None = None) -> DeliveryReport:
        """Wait until every queued event is acknowledged or failed, or `timeout` seconds pass
        (None: as long as it takes, bounded by librdkafka's `message.timeout.ms`)."""
        pending = self._producer.flush(-1 if timeout is None else timeout)
        return self._report(pending)

    def report(self) -> DeliveryReport:
        """The counts now, without waiting."""
        self._producer.poll(0)
        return self._report(len(self._producer))

    def _report(self, pending: int) -> DeliveryReport:
        return DeliveryReport(
            sent=self._sent,
            acknowledged=self._acknowledged,
            failed=sum(self._failed.values()),
            pending=pending,
            errors=dict(self._failed),
        )

    def check_connection(self, timeout: float = CONNECT_TIMEOUT_S) -> int:
        """Fail fast when the cluster or the topic is missing; return the partition count.

        Without it a publisher on a wrong address only learns that when its events time out,
        minutes later. Raises `BrokerUnreachable` or `TopicNotFound` (both `KafkaUnavailable`).
        """
        return check_topic(
            self._producer,
            self._producer.poll,
            self._errors_cb,
            bootstrap=self.bootstrap,
            topic=self.topic,
            timeout=timeout,
        )

    def __len__(self) -> int:
        """Events queued and not yet answered by Kafka."""
        return len(self._producer)

    # -- lifetime --

    def close(self, timeout: float | None = 30.0) -> DeliveryReport:
        """Flush (up to `timeout` seconds) and return the final report. Idempotent."""
        report = self.flush(timeout)
        self._closed = True
        return report

    def __enter__(self) -> ScannerPublisher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        # Flush even when the block raised: events already queued are real scans and still
        # deserve delivery; only what the block did not publish is lost.
        if not self._closed:
            self.close()


def _to_json(event: Mapping[str, Any]) -> bytes:
    try:
        return orjson.dumps(event if isinstance(event, dict) else dict(event))
    except TypeError as error:
        raise InvalidCrossing(
            "invalid_json", f"the event cannot be encoded as JSON: {error}"
        ) from None


def _kafka_reason(error: BaseException) -> str:
    kafka_error = error.args[0] if error.args else None
    if kafka_error is not None and hasattr(kafka_error, "str"):
        return str(kafka_error.str())
    return str(error)
