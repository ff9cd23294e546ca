"""Running real bordermon workers and talking to real topics, for the integration tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import orjson
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from bordermon.scanner.publisher import ScannerPublisher

QUIET = {"log_level": 0, "logger": lambda *args: None}  # keep librdkafka off stderr


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def unavailable(reason: str) -> NoReturn:
    """Fail under CI (never skip to green), skip elsewhere."""
    if _in_ci():
        pytest.fail(f"{reason} (CI=true: integration tests must run, not skip)", pytrace=False)
    pytest.skip(reason)


def event(**fields: Any) -> bytes:
    """A valid crossing/1 event (an entry into KZ from CN with a CHPL good) with `fields`."""
    doc = {
        "schema": "crossing/1",
        "checkpoint": "KZ-NUR-ZHOLY",
        "from_country": "CN",
        "to_country": "KZ",
        "goods": [{"hs_code": "8542.31", "value_usd": 5000}],
    }
    doc.update(fields)
    return orjson.dumps(doc)


def free_port() -> int:
    """A TCP port nobody listens on right now (for a test's own server or worker)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until faust says Ready (it has joined its group and been assigned partitions)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "Worker]: Ready" in self.log():
                return
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited early:\n{self.log()[-3000:]}")
            time.sleep(0.2)
        raise AssertionError(f"worker not ready after {timeout}s:\n{self.log()[-3000:]}")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


def worker_env(
    kafka_bootstrap: str, redis_url: str, topics: dict[str, str], group: str, **extra: str
) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "BORDERMON_KAFKA_BOOTSTRAP": kafka_bootstrap,
            "BORDERMON_REDIS_URL": redis_url,
            "BORDERMON_CROSSINGS_TOPIC": topics["crossings"],
            "BORDERMON_FLAGS_TOPIC": topics["flags"],
            "BORDERMON_DEAD_LETTER_TOPIC": topics["dead_letter"],
            "BORDERMON_LINKS_TOPIC": topics["links"],
            "BORDERMON_CONSUMER_GROUP": group,
            "BORDERMON_METRICS_PORT": "0",
        }
    )
    env.update(extra)
    return env


WORKER_COMMAND = (sys.executable, "-m", "bordermon", "worker")
POISONED_WORKER_COMMAND = (sys.executable, str(Path(__file__).with_name("poisoned_worker.py")))
"""A worker with a planted bug: events whose id starts with `poison` fail to apply."""
DYING_WORKER_COMMAND = (sys.executable, str(Path(__file__).with_name("dying_worker.py")))
"""A worker that SIGKILLs itself once, between the two stages (see dying_worker.py)."""


@contextmanager
def running_worker(
    env: dict[str, str],
    log_path: Path,
    command: Iterable[str] = WORKER_COMMAND,
    ready_timeout: float = 60.0,
) -> Iterator[WorkerProcess]:
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            list(command),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    worker = WorkerProcess(process, log_path)
    try:
        worker.wait_ready(ready_timeout)
        yield worker
    finally:
        worker.stop()


def publish_lines(bootstrap: str, topic: str, lines: Iterable[bytes]) -> int:
    """Byte for byte, keyed by consignment_id when one can be read, through the scanner SDK
    (`publish --raw`): so the worker reads what real scanners send, lz4 compression included."""
    count = 0
    with ScannerPublisher(bootstrap, topic, config=QUIET) as publisher:
        for line in lines:
            publisher.publish_raw(line)
            count += 1
        report = publisher.flush(60)
    assert report.ok and report.acknowledged == count, report
    return count


def publish_keyed(
    bootstrap: str,
    topic: str,
    records: Iterable[tuple[bytes | None, bytes]],
    partitioner: str = "murmur2_random",
) -> None:
    """As a scanner would, with librdkafka's `partitioner` (the Java client's murmur2 unless
    told otherwise; `consistent_random` is librdkafka's CRC32 default)."""
    producer = Producer({"bootstrap.servers": bootstrap, "partitioner": partitioner, **QUIET})
    for key, value in records:
        producer.produce(topic, value, key=key)
    assert producer.flush(30) == 0


def read_topic(
    bootstrap: str,
    topic: str,
    *,
    until_count: int | None = None,
    timeout: float = 60.0,
    idle: float = 3.0,
) -> list[Any]:
    """Every message from the start: stop at `until_count`, or after `idle` s with nothing new
    once `until_count` is reached or not given, or at `timeout`."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-reader-{time.time_ns()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            **QUIET,
        }
    )
    consumer.subscribe([topic])
    messages: list[Any] = []
    deadline = time.monotonic() + timeout
    last_new = time.monotonic()
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                messages.append(message)
                last_new = time.monotonic()
                continue
            reached = until_count is None or len(messages) >= until_count
            if reached and time.monotonic() - last_new > idle:
                break
    finally:
        consumer.close()
    return messages


def flags_of(messages: list[Any]) -> list[dict[str, Any]]:
    return [orjson.loads(message.value()) for message in messages]


def assert_redeliveries_identical(flags: list[dict[str, Any]]) -> None:
    """SPEC §5/§6: a flag delivered again (after a crash) is the very same flag, detected_at
    included."""
    first_seen: dict[str, dict[str, Any]] = {}
    for flag in flags:
        assert first_seen.setdefault(flag["flag_id"], flag) == flag


def assert_flags_as_replayed(
    flags: list[dict[str, Any]], replayed: dict[str, dict[str, Any]]
) -> None:
    """Each streamed flag equals replay's flag of the same id, all but `detected_at`."""
    for flag in flags:
        expected = replayed[flag["flag_id"]]
        assert {k: v for k, v in flag.items() if k != "detected_at"} == {
            k: v for k, v in expected.items() if k != "detected_at"
        }


def kafka_reader(bootstrap: str, group: str) -> Consumer:
    """A consumer in `group` that reads from the earliest offset; it joins the group only if
    it subscribes, so it can read a group's committed offsets without disturbing it."""
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "log_level": 0,
    }
    return Consumer(config)


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """The end offset of every partition of `topic`."""
    consumer = kafka_reader(bootstrap, "bordermon-test-reader")
    try:
        metadata = consumer.list_topics(topic, timeout=15)
        partitions = sorted(metadata.topics[topic].partitions)
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=15)[1]
            for p in partitions
        }
    finally:
        consumer.close()


def committed_offsets(bootstrap: str, topic: str, group: str) -> dict[int, int]:
    """The group's committed offset per partition (-1001: nothing committed)."""
    partitions = sorted(end_offsets(bootstrap, topic))
    consumer = kafka_reader(bootstrap, group)  # not subscribed: it does not join the group
    try:
        got = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=15)
        return {tp.partition: tp.offset for tp in got}
    finally:
        consumer.close()
