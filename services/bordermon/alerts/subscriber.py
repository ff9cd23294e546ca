"""The flags subscriber: reads the flags topic, decodes and dedupes flags, and formats them
(table or JSONL) for `bordermon flags` (`bordermon.cli.flags`).

For programs, `FlagSubscriber` yields the decoded flags with their Kafka timestamps:

    from bordermon.alerts.subscriber import FlagSubscriber

    with FlagSubscriber("localhost:9092", group="my-alerting") as subscriber:
        for received in subscriber.flags():           # until Ctrl-C
            send_alert(received.flag["consignment_id"], received.flag["severity"])
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

import orjson

from bordermon.kafka import (
    CONNECT_TIMEOUT_S,
    KAFKA_LOGGER,
    ClientErrors,
    KafkaUnavailable,
    TopicNotFound,
    check_topic,
)

if TYPE_CHECKING:
    from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

__all__ = [
    "DEFAULT_IDLE_EXIT_S",
    "FlagSubscriber",
    "InvalidFlagMessage",
    "ReceivedFlag",
    "SubscriberStats",
    "consignments",
    "dwell_days",
    "route",
    "table_header",
    "table_row",
]

DEFAULT_IDLE_EXIT_S = 5.0
DEFAULT_DEDUPE_MEMORY = 1_000_000
"""flag_ids remembered for deduplication (~100 bytes each). Redeliveries follow their first
delivery closely (a worker restart), so forgetting the oldest ids past this bound is safe."""
_POLL_S = 0.25  # short, so Ctrl-C is served promptly (consume() ignores signals while waiting)
_BATCH = 500


@dataclass(frozen=True, slots=True)
class ReceivedFlag:
    """One flag as read from Kafka.

    `flag` is the decoded flag object as published: flag/2 (SPEC §5) or, from an older
    worker, flag/1 (transit only: no `link` nor `linked_consignment_id`, always an entry).
    `timestamp_ms` is the Kafka message timestamp (set by the worker when it emitted the flag,
    or by the broker on append), None if the message has none; `received_ns` is the
    subscriber's wall clock (time.time_ns) when it got the message: their difference is the
    delivery latency.
    """

    flag: dict[str, Any]
    timestamp_ms: int | None
    received_ns: int
    partition: int
    offset: int
    key: str | None

    @property
    def flag_id(self) -> str:
        return str(self.flag["flag_id"])


@dataclass(frozen=True, slots=True)
class InvalidFlagMessage:
    """A message on the flags topic that is not a flag; skipped, and reported to `on_invalid`."""

    partition: int
    offset: int
    reason: str


@dataclass(slots=True)
class SubscriberStats:
    flags: int = 0
    duplicates: int = 0
    invalid: int = 0


class _SeenIds:
    """The last `capacity` flag_ids, oldest forgotten first (a dict keeps insertion order)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._ids: dict[str, None] = {}

    def add(self, flag_id: str) -> bool:
        """True when `flag_id` is new."""
        if flag_id in self._ids:
            return False
        self._ids[flag_id] = None
        if len(self._ids) > self.capacity:
            del self._ids[next(iter(self._ids))]
        return True

    def __len__(self) -> int:
        return len(self._ids)


def decode_flag(value: bytes | None) -> dict[str, Any] | str:
    """The flag object, or the reason it is not one. Only what dedupe needs is required
    (a JSON object with a `flag_id`); other fields are shown as they are."""
    if value is None:
        return "empty message"
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        return "not JSON"
    if type(doc) is not dict:
        return "not a JSON object"
    flag_id = doc.get("flag_id")
    if type(flag_id) is not str or not flag_id:
        return "no flag_id"
    return doc


class FlagSubscriber:
    """Reads flags from the flags topic, deduplicated on flag_id, with at-least-once progress.

    - `group=None` (default): a throwaway consumer group that commits nothing; each subscriber
      reads on its own. With `from_beginning=False` it starts at the end of the topic.
    - `group="name"`: offsets are committed for flags the caller has finished with (a flag
      counts as finished when the caller asks for the next ones), so a restart resumes after
      them and a crash re-delivers at worst the last batch. A group seen for the first time
      starts at the end of the topic, and that position is committed at once, so flags raised
      between two runs are not missed. `from_beginning=True` rewinds the group to the start.

    Iterate with `flags()` (one at a time) or `batches()`; `poll()` is the single step under
    both. `wait_for_assignment()` before producing lets a test or benchmark be sure it sees
    everything produced afterwards. Not thread-safe.

        with FlagSubscriber(topic="bordermon.flags", from_beginning=True) as subscriber:
            subscriber.check_connection()
            for received in subscriber.flags(idle_exit=5):
                print(received.flag["flag_id"], received.timestamp_ms)
    """

    def __init__(
        self,
        bootstrap: str = "localhost:9092",
        topic: str = "bordermon.flags",
        *,
        group: str | None = None,
        from_beginning: bool = False,
        dedupe: bool = True,
        dedupe_memory: int = DEFAULT_DEDUPE_MEMORY,
        config: Mapping[str, str | int | float | bool] | None = None,
        on_invalid: Callable[[InvalidFlagMessage], None] | None = None,
    ) -> None:
        from confluent_kafka import Consumer

        self.bootstrap = bootstrap
        self.topic = topic
        self.commits = group is not None
        self.group = group if group is not None else f"bordermon-flags-{uuid.uuid4().hex[:12]}"
        self.from_beginning = from_beginning
        self.on_invalid = on_invalid
        self.stats = SubscriberStats()
        self._seen = _SeenIds(dedupe_memory) if dedupe else None
        self._errors = ClientErrors()
        settings: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            "group.id": self.group,
            "client.id": "bordermon-flags",
            # Offsets are stored by hand once the caller is done with a batch, then committed
            # in the background: nothing is marked read before it was handled.
            "enable.auto.commit": self.commits,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest" if from_beginning else "latest",
            "error_cb": self._errors,
            "logger": logging.getLogger(KAFKA_LOGGER),
        }
        settings.update(config or {})
        self._consumer: Consumer = Consumer(settings)
        self._subscribed = False
        self._closed = False
        self._assigned = False
        self._assigned_at: float | None = None  # last assignment, for the idle clock
        self._rewound: set[int] = set()
        self._pending: dict[int, int] = {}  # partition -> last offset handed out, not stored
        self._buffer: list[Message] = []

    # -- connection and assignment --

    def check_connection(self, timeout: float = CONNECT_TIMEOUT_S) -> int:
        """Fail fast when the cluster or the topic is missing; return the partition count.

        Raises `BrokerUnreachable` or `TopicNotFound` (both `KafkaUnavailable`).
        """
        return check_topic(
            self._consumer,
            self._serve_errors,
            self._errors,
            bootstrap=self.bootstrap,
            topic=self.topic,
            timeout=timeout,
        )

    def _serve_errors(self, timeout: float) -> None:
        # Before subscribe() a consumer poll returns no message; it only serves callbacks.
        if not self._subscribed:
            self._consumer.poll(timeout)

    def _subscribe(self) -> None:
        if not self._subscribed:
            self._consumer.subscribe(
                [self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke
            )
            self._subscribed = True

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        from confluent_kafka import OFFSET_BEGINNING

        if self.from_beginning:
            # Rewind once per partition: a later rebalance must not replay everything again.
            for tp in partitions:
                if tp.partition not in self._rewound:
                    tp.offset = OFFSET_BEGINNING
                    self._rewound.add(tp.partition)
        elif self.commits and partitions:
            self._pin_new_partitions(consumer, partitions)
        consumer.assign(partitions)
        self._assigned = True
        self._assigned_at = time.monotonic()

    def _pin_new_partitions(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """A group with no committed offset starts at the end, and commits that end now.

        Without this, a run that sees no flag commits nothing, and the next run starts at the
        end again: the flags raised in between would never be shown.
        """
        from confluent_kafka import TopicPartition

        committed = consumer.committed(partitions, timeout=CONNECT_TIMEOUT_S)
        pins = []
        for tp, done in zip(partitions, committed, strict=True):
            if done.offset < 0:
                _, high = consumer.get_watermark_offsets(tp, timeout=CONNECT_TIMEOUT_S)
                tp.offset = high
                pins.append(TopicPartition(tp.topic, tp.partition, high))
        if pins:
            consumer.commit(offsets=pins, asynchronous=False)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Progress on revoked partitions goes with them (auto-commit commits stored offsets
        # on revoke); what was handed out and not finished is re-delivered to the new owner.
        for tp in partitions:
            self._pending.pop(tp.partition, None)
        self._assigned = False

    @property
    def assigned(self) -> bool:
        """Partitions are assigned (possibly none, if the group has more members than the
        topic has partitions)."""
        return self._assigned

    def wait_for_assignment(self, timeout: float = 30.0) -> bool:
        """Join the group and get partitions (messages read meanwhile are kept for `poll`)."""
        self._subscribe()
        deadline = time.monotonic() + timeout
        while not self.assigned and time.monotonic() < deadline:
            self._buffer.extend(self._consumer.consume(_BATCH, min(_POLL_S, timeout)))
        return self.assigned

    # -- reading --

    def poll(self, timeout: float = _POLL_S) -> list[ReceivedFlag]:
        """New flags from one fetch (maybe none), waiting up to `timeout` seconds.

        Calling it marks the flags returned by the previous call as done (their offsets are
        stored for commit), so handle a batch fully before asking for the next.
        """
        self._subscribe()
        self._store_pending()
        if self._buffer:
            messages, self._buffer = self._buffer, []
        else:
            messages = self._consumer.consume(_BATCH, timeout)
        received_ns = time.time_ns()
        out: list[ReceivedFlag] = []
        for message in messages:
            error = message.error()
            if error is not None:
                self._consume_error(error)
                continue
            partition, offset = message.partition() or 0, message.offset() or 0
            self._pending[partition] = offset
            flag = decode_flag(message.value())
            if isinstance(flag, str):
                self.stats.invalid += 1
                if self.on_invalid is not None:
                    self.on_invalid(InvalidFlagMessage(partition, offset, flag))
                continue
            if self._seen is not None and not self._seen.add(flag["flag_id"]):
                self.stats.duplicates += 1
                continue
            self.stats.flags += 1
            kind, stamp = message.timestamp()
            raw_key = message.key()
            out.append(
                ReceivedFlag(
                    flag=flag,
                    timestamp_ms=stamp if kind != 0 and stamp >= 0 else None,
                    received_ns=received_ns,
                    partition=partition,
                    offset=offset,
                    key=None if raw_key is None else raw_key.decode("utf-8", errors="replace"),
                )
            )
        return out

    def _consume_error(self, error: KafkaError) -> None:
        from confluent_kafka import KafkaError

        if error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            raise TopicNotFound(f"topic {self.topic!r} does not exist on the Kafka cluster")
        if error.fatal():
            raise KafkaUnavailable(f"the Kafka consumer failed: {error.str()}")
        # Anything else (a broker restarting, a partition moving) is retried by the client.

    def _store_pending(self) -> None:
        if not self.commits or not self._pending:
            self._pending.clear()
            return
        from confluent_kafka import KafkaException, TopicPartition

        offsets = [TopicPartition(self.topic, p, o + 1) for p, o in self._pending.items()]
        self._pending.clear()
        # KafkaException: a partition was revoked meanwhile; its new owner re-delivers.
        with contextlib.suppress(KafkaException):
            self._consumer.store_offsets(offsets=offsets)

    def batches(self, *, idle_exit: float | None = None) -> Iterator[list[ReceivedFlag]]:
        """Non-empty batches of new flags; ends after `idle_exit` seconds without one (None:
        never). The idle clock starts once partitions are assigned, so a slow group join does
        not eat the wait."""
        started = time.monotonic()
        last_new = started
        while True:
            batch = self.poll()
            now = time.monotonic()
            if batch:
                last_new = now
                yield batch
                continue
            if idle_exit is not None:
                since = max(last_new, self._assigned_at or started)
                if now - since >= idle_exit:
                    return

    def flags(self, *, idle_exit: float | None = None) -> Iterator[ReceivedFlag]:
        """New flags one by one; ends after `idle_exit` seconds without one (None: never)."""
        for batch in self.batches(idle_exit=idle_exit):
            yield from batch

    # -- lifetime --

    def close(self, *, finished: bool = True) -> None:
        """Leave the group. `finished`: the flags last returned were handled (commit them);
        pass False after a failure while handling them, so they are delivered again."""
        if self._closed:
            return
        self._closed = True
        if finished:
            self._store_pending()
        self._consumer.close()

    def __enter__(self) -> FlagSubscriber:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.close(finished=exc_type is None)


# --- formatting -------------------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_COLUMNS = (
    ("SEVERITY", 8),
    ("RULE", 21),  # export-without-permit
    ("CONSIGNMENT", 28),  # relabel-to-ru: `B ← A`
    ("ROUTE", 10),
    ("DWELL", 8),
    ("LINK", 22),
)
_BACK_ARROWS = {"→": "←", "->": "<-"}


def printable(text: object) -> str:
    """Text safe for a terminal: flags carry strings that came from scanners, and an escape
    sequence in a checkpoint name must not be able to rewrite the screen."""
    return _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", str(text))


def route(flag: Mapping[str, Any], arrow: str = "→") -> str:
    """`CN→KZ→RU`: where the goods came from, the monitored country, where they left for.

    A flag with no entry (`"entry": null`, export-without-permit) shows the exit only:
    `KZ→RU`."""
    entry, exit_ = flag.get("entry"), flag.get("exit")
    exit_ = exit_ if isinstance(exit_, dict) else {}
    if entry is None and "entry" in flag:
        hops = [exit_.get("from_country"), exit_.get("to_country")]
    else:
        entry = entry if isinstance(entry, dict) else {}
        hops = [entry.get("from_country"), entry.get("to_country"), exit_.get("to_country")]
    return arrow.join(printable(hop) if hop else "?" for hop in hops)


def dwell_days(seconds: object) -> str:
    """`3.2 d`: the time between entry and exit, in days (the unit of the window); `-` when
    the flag has none (null: no entry), `?` when it is not a number."""
    if seconds is None:
        return "-"
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        return "?"
    return f"{seconds / 86_400:.1f} d"


def consignments(flag: Mapping[str, Any], arrow: str = "→") -> str:
    """The consignment that left; for relabel-to-ru also the one the goods entered as:
    `KZ-ALM-0042 ← TR-IST-7781` (left as ← entered as)."""
    text = printable(flag.get("consignment_id", "?"))
    linked = flag.get("linked_consignment_id")
    if linked is not None:
        text += f" {_BACK_ARROWS.get(arrow, '<-')} {printable(linked)}"
    return text


def table_header() -> str:
    cells = [
        name.ljust(width) if name != "DWELL" else name.rjust(width) for name, width in _COLUMNS
    ]
    return "  ".join([*cells, "REASONS"])


def table_row(flag: Mapping[str, Any], arrow: str = "→") -> str:
    """One line per flag, of any rule, flag/2 or flag/1. Columns keep their width; a longer
    consignment id is not cut (a person copies it), it pushes the rest of its line to the
    right instead. Fields a flag does not have (`link` but for relabel-to-ru, `entry` and
    `dwell_seconds` of export-without-permit, all of flag/1's missing ones) show as `-`."""
    reasons = flag.get("reasons")
    reason_text = (
        ", ".join(printable(reason) for reason in reasons)
        if isinstance(reasons, list) and reasons
        else "-"
    )
    link = flag.get("link")
    cells = [
        printable(flag.get("severity", "?")).ljust(8),
        printable(flag.get("rule", "?")).ljust(21),
        consignments(flag, arrow).ljust(28),
        route(flag, arrow).ljust(10),
        dwell_days(flag.get("dwell_seconds", "?")).rjust(8),
        (printable(link) if link is not None else "-").ljust(22),
        reason_text,
    ]
    return "  ".join(cells)


class _Output:
    """Writes batches of flags to stdout as JSONL or as a table (header before the first row)."""

    def __init__(self, stream: IO[bytes], fmt: str, encoding: str | None) -> None:
        self.stream = stream
        self.table = fmt == "table"
        self.arrow = "→" if encoding and "utf" in encoding.lower() else "->"
        self.header_done = False

    def write(self, batch: list[ReceivedFlag]) -> None:
        if self.table:
            lines = [table_row(item.flag, self.arrow) for item in batch]
            if not self.header_done:
                lines.insert(0, table_header())
                self.header_done = True
            self.stream.write(("\n".join(lines) + "\n").encode("utf-8", errors="replace"))
        else:
            self.stream.write(b"".join(orjson.dumps(item.flag) + b"\n" for item in batch))
        self.stream.flush()
