"""Benchmark: bordermon's streaming pipeline on the local stack, next to its ceilings (issue 5).

    .venv/bin/python tests/bench/bench_pipeline.py                   # N = 200,000 events
    .venv/bin/python tests/bench/bench_pipeline.py --quick           # ~20,000: a smoke run
    .venv/bin/python tests/bench/bench_pipeline.py --profile-worker  # + a pyinstrument report
    .venv/bin/python tests/bench/bench_pipeline.py --events 100000 --worker-passes 3
                                            # the three worker rule sets, 3 times in turn

Everything is measured in one run because the machines are shared (2 vCPUs with the broker,
Redis and other people's tests): an absolute events/s moves with the neighbours' load, a ratio
of two numbers taken minutes apart much less. So beside bordermon's own numbers the run
measures what it cannot beat on this box, on the same events:

1. raw ceiling: a confluent-kafka `consume(500)` loop that only reads the events;
2. framework ceiling: a faust agent that takes the events in `take_events(500, within=0.05)`
   batches like the worker and does nothing with them (a subprocess of its own);
3. `bordermon worker`, the real one (validation, Redis state, flags, dead letters, metrics):
   events/s and the worker process's CPU seconds per million events (/proc/<pid>/stat), twice
   on the same topic: (3) with every rule, so with the link stage of `relabel-to-ru` (link
   sightings produced to the links topic, consumed again by the second agent, matched against
   the link states in Redis), (3b) with `BORDERMON_RULES=transit-to-ru` (one stage, no links
   topic) and (3c) with `BORDERMON_RULES=transit-to-ru,export-without-permit`, so that each
   rule's cost is a difference of two rows. With all rules the run also reports the sightings
   forwarded, the link stage's messages, the flags by rule and the Redis keys of each kind;
4. scan-to-flag latency at steady offered loads (2,000 and 500 events/s by default), all rules
   on, overall and by rule (relabel-to-ru's flags come out of the second stage);
5. Redis memory per consignment in flight (an entry and an exit kept, no flag yet);
6. `bordermon replay` on the same events (start-up included, like bench_replay.py), with the
   same three rule sets (6, 6b, 6c); the flags by rule of replay and of the worker are
   compared (they must agree);
7. a peer: transit-to-ru written the idiomatic faust way (peer_faust_tables.py: a faust Table
   in memory with its changelog topic, one event at a time, no Redis); compare it with 3b.

How events/s is measured, for rows 1, 2, 3, 3b, 3c and 7: from the first processed batch to the last
one, counting the events in between, with the events already waiting in the topic (a backlog,
so start-up and group joins are not in the number). Rows 1, 2 and 7 stamp time and CPU inside
the consuming process. The worker cannot be changed for a benchmark, so it is watched from
outside: its own `/metrics` (`bordermon_batch_size_sum`, the messages it has processed) and its
CPU time from /proc are sampled together every second, and the rate is taken between the first
sample that shows progress and the last sample taken while events were still waiting, so no
idle time is counted. `bordermon_batch_size_sum` counts the messages of both stages, so the
crossings are counted as `bordermon_events_consumed_total` + `bordermon_events_rejected_total`;
with the link stage on, the worker is done when it has also processed every sighting the
links topic holds (the rate of row 3 is crossings per second through both stages). The run
then checks that the worker's consumer group committed offsets up to the end of the topics
(the durable "done" of SPEC §6) and says how long after the last batch.

Events: `bordermon simulate --events N --seed 1` (cached under run/bench/ by bench_replay.py,
under a name with the seed and a hash of the simulator's source, so a changed simulator never
reuses a stale file; ~0.5 % malformed, ~2 % duplicates), published once with the scanner SDK
(`publish_raw`: keyed by consignment id, acks=all, lz4 like the SDK's default, as `bordermon
publish --raw` does); every row reads that topic from the beginning. `--compression none`
measures an uncompressed topic (aiokafka decompresses lz4 in the worker's process, librdkafka
in the raw row's).

Subprocesses (workers, faust children, replay, simulate) run this checkout's `services/` first
on PYTHONPATH, like this process, whatever the virtualenv's editable install points at.

Everything the run creates is unique to it and removed at the end, Ctrl-C included: topics
(`<declared name>.bench-<run id>-<phase>`, created with the declared partitions and configs),
consumer groups, the peer's changelog topic, the Redis database it uses (taken with the lock
files of the integration tests, so a concurrent test session picks another database; flushed
before and after), and its subprocesses. Progress goes to stderr, the result (markdown) to
stdout and to run/bench/pipeline-<date>.md. Not a test (pytest does not collect it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import orjson

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
# This checkout's bordermon, here and (bench_replay.child_env) in every subprocess, whatever the
# virtualenv's editable install points at; tests/ for the test support package.
sys.path[:0] = [str(REPO / "services"), str(REPO / "tests")]

from bench_replay import (  # noqa: E402
    ALL_RULES,
    NO_LINK_STAGE,
    TRANSIT_ONLY,
    child_env,
    ensure_input,
    rule_costs,
)
from machine import describe_machine  # noqa: E402

from support.services import REDIS_DB_LOCKS, database_url, locked_test_database  # noqa: E402
from support.state_memory import slow_consignment_states  # noqa: E402
from support.workers import WorkerProcess, free_port, worker_env  # noqa: E402

BATCH_MAX = 500  # the worker's defaults (settings batch_max_events / batch_max_wait)
BATCH_WITHIN_S = 0.05
SAMPLE_EVERY_S = 1.0
STALL_S = 120.0
LATENCY_WARMUP = 500
REDIS_DBS = (14, *range(1, 14), 15)


class BenchError(RuntimeError):
    """A measurement could not be made; the message says why (with a log tail if any)."""


_started = time.monotonic()


def note(message: str) -> None:
    """Progress on stderr, stamped with the seconds since the run started."""
    print(f"[bench {time.monotonic() - _started:7.1f}s] {message}", file=sys.stderr, flush=True)


@functools.cache
def _quiet_kafka() -> dict[str, Any]:
    """librdkafka settings that keep its log lines (e.g. a broker closing an idle connection)
    out of the progress on stderr."""
    import logging

    logger = logging.getLogger("bench.kafka")
    logger.addHandler(logging.NullHandler())
    logger.propagate = False
    return {"log_level": 0, "logger": logger}


# --- measurements -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Interval:
    """Events handled between two instants, and the CPU the process spent meanwhile."""

    events: int
    seconds: float
    cpu_seconds: float | None

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else math.nan

    @property
    def core_share(self) -> str:
        """CPU over wall time: near 100 % means the process was CPU-bound on one core."""
        if self.cpu_seconds is None or self.seconds <= 0:
            return "?"
        return f"{self.cpu_seconds / self.seconds:.0%} of a core"

    @property
    def cpu_per_million(self) -> float | None:
        if self.cpu_seconds is None or self.events <= 0:
            return None
        return self.cpu_seconds / self.events * 1e6


@dataclass(slots=True)
class Row:
    """One line of the result table."""

    label: str
    events: str = "—"
    seconds: str = "—"
    rate: str = "—"
    cpu: str = "—"
    result: str = ""
    interval: Interval | None = None

    @classmethod
    def of(cls, label: str, interval: Interval, result: str) -> Row:
        cpu = interval.cpu_per_million
        return cls(
            label,
            f"{interval.events:,}",
            f"{interval.seconds:.1f}",
            f"{interval.rate:,.0f}",
            "—" if cpu is None else f"{cpu:,.1f}",
            result,
            interval,
        )

    def markdown(self, number: int) -> str:
        cells = (self.label, self.events, self.seconds, self.rate, self.cpu, self.result)
        return f"| {number} | " + " | ".join(cells) + " |"


def own_cpu_seconds() -> float:
    """CPU of this whole process (every thread: librdkafka's and aiokafka's included)."""
    return time.process_time()


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of another process, from /proc/<pid>/stat (all of its threads)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    # Fields 14 and 15 of proc(5); the list starts at field 3 (state).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of sorted `values`."""
    rank = max(1, math.ceil(fraction * len(values)))
    return values[rank - 1]


# --- resources --------------------------------------------------------------------------------


def admin_client(bootstrap: str) -> Any:
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": bootstrap, **_quiet_kafka()})


def delete_topics(bootstrap: str, names: Sequence[str]) -> None:
    """Delete topics; a missing one is fine, other failures are reported, not raised."""
    from confluent_kafka import KafkaError, KafkaException

    if not names:
        return
    admin = admin_client(bootstrap)  # kept referenced until every future is done
    futures = admin.delete_topics(list(names), operation_timeout=30, request_timeout=30)
    for name, future in futures.items():
        try:
            future.result()
        except KafkaException as error:
            if error.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                note(f"could not delete topic {name}: {error}")


def delete_groups(bootstrap: str, groups: Sequence[str], patience_s: float = 30.0) -> None:
    """Delete consumer groups; waits for members that are still leaving (NON_EMPTY_GROUP)."""
    from confluent_kafka import KafkaError, KafkaException

    admin = admin_client(bootstrap)
    pending = list(dict.fromkeys(groups))
    deadline = time.monotonic() + patience_s
    while pending:
        futures = admin.delete_consumer_groups(pending, request_timeout=15)
        retry: list[str] = []
        for group, future in futures.items():
            try:
                future.result()
            except KafkaException as error:
                code = error.args[0].code()
                if code == KafkaError.GROUP_ID_NOT_FOUND:
                    continue
                if code == KafkaError.NON_EMPTY_GROUP and time.monotonic() < deadline:
                    retry.append(group)
                    continue
                note(f"could not delete consumer group {group}: {error}")
        pending = retry
        if pending:
            time.sleep(1.0)


def stop_process(process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """SIGTERM (faust stops gracefully, pyinstrument writes its report), SIGKILL if stuck."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)


def log_tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


@contextlib.contextmanager
def locked_redis_db(base_url: str) -> Iterator[str]:
    """A Redis database of this run's own, flushed before and after.

    Uses the test sessions' lock files (support.services), so a test session started meanwhile
    skips this database, and this run skips one a session holds.
    """
    import redis

    with locked_test_database(REDIS_DBS) as db:
        if db is None:
            raise BenchError(
                f"every Redis database 1-15 is locked by a test session ({REDIS_DB_LOCKS})"
            )
        url = database_url(base_url, db)
        client = redis.Redis.from_url(url)
        try:
            client.flushdb()
            note(f"Redis database {db} (locked in {REDIS_DB_LOCKS})")
            yield url
        finally:
            with contextlib.suppress(redis.RedisError):
                client.flushdb()
            client.close()


class Run:
    """One benchmark run: its id, its services and everything it has to undo on exit."""

    def __init__(self, bootstrap: str, redis_base_url: str) -> None:
        self.id = uuid.uuid4().hex[:8]
        self.bootstrap = bootstrap
        self.redis_base_url = redis_base_url
        self.redis_url = ""
        self.cleanup = contextlib.ExitStack()
        self.tmp = Path(".")
        self.keep_logs = False

    def __enter__(self) -> Run:
        self.tmp = Path(tempfile.mkdtemp(prefix=f"bordermon-bench-{self.id}-"))
        self.cleanup.callback(self._remove_logs)
        self.redis_url = self.cleanup.enter_context(locked_redis_db(self.redis_base_url))
        return self

    def _remove_logs(self) -> None:
        if self.keep_logs:
            note(f"logs of the failed measurement kept in {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def __exit__(self, *exc_info: object) -> None:
        note("cleaning up (subprocesses, consumer groups, topics, Redis database)")
        self.cleanup.close()

    def redis_flush(self) -> None:
        import redis

        with redis.Redis.from_url(self.redis_url) as client:
            client.flushdb()

    def topic_set(self, phase: str, **fixed: str) -> dict[str, str]:
        """The declared topics under names of this run (deleted on exit); `fixed` roles keep
        an existing topic (e.g. the crossings topic every row reads)."""
        from bordermon.admin.topics import apply_topics, load_declarations

        names = {d.role: f"{d.name}.bench-{self.id}-{phase}" for d in load_declarations()}
        created = [name for role, name in names.items() if role not in fixed]
        names.update(fixed)
        self.cleanup.callback(delete_topics, self.bootstrap, created)
        report = apply_topics(self.bootstrap, name_overrides=names)
        if not report.ok:
            raise BenchError("could not create topics:\n" + "\n".join(report.lines()))
        return names

    def create_topic(self, name: str, partitions: int, config: dict[str, str]) -> None:
        from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

        self.cleanup.callback(delete_topics, self.bootstrap, [name])
        admin = admin_client(self.bootstrap)
        futures = admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config)],
            operation_timeout=30,
            request_timeout=30,
        )
        futures[name].result()
        deadline = time.monotonic() + 15
        while name not in admin.list_topics(timeout=10).topics:
            if time.monotonic() > deadline:
                raise BenchError(f"topic {name} not visible 15 s after its creation")
            time.sleep(0.1)

    def group(self, kind: str) -> str:
        """A consumer group name of this run, deleted on exit."""
        group = f"bench-{kind}-{self.id}"
        self.cleanup.callback(delete_groups, self.bootstrap, [group])
        return group

    def start(
        self, name: str, command: list[str], env: dict[str, str] | None = None
    ) -> tuple[subprocess.Popen[bytes], Path]:
        """A subprocess in its own session (Ctrl-C reaches only this process, which then
        stops it in order), its output in a log file; stopped on exit."""
        log_path = self.tmp / f"{name}.log"
        env = {**(os.environ if env is None else env), "PYTHONPATH": child_env()["PYTHONPATH"]}
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.cleanup.callback(stop_process, process)
        return process, log_path


# --- Kafka helpers ----------------------------------------------------------------------------


def partitions_of(consumer: Any, topic: str) -> list[int]:
    metadata = consumer.list_topics(topic, timeout=10)
    return sorted(metadata.topics[topic].partitions)


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """High watermark per partition (the next offset to be written)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "bench-watermarks", **_quiet_kafka()}
    )
    try:
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in partitions_of(consumer, topic)
        }
    finally:
        consumer.close()


def messages_in(bootstrap: str, topic: str) -> int:
    """Records in a fresh topic (nothing deleted by retention yet: the sum of its ends)."""
    return sum(end_offsets(bootstrap, topic).values())


def wait_committed(bootstrap: str, group: str, topic: str, timeout: float = 30.0) -> float:
    """Seconds until `group` has committed offsets up to the end of every partition."""
    from confluent_kafka import Consumer, TopicPartition

    ends = end_offsets(bootstrap, topic)
    # Reads the group's offsets without joining it (no subscribe), so the worker is undisturbed.
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            **_quiet_kafka(),
        }
    )
    started = time.monotonic()
    try:
        while True:
            committed = consumer.committed([TopicPartition(topic, p) for p in ends], timeout=10)
            if all(tp.offset >= ends[tp.partition] for tp in committed):
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                behind = {tp.partition: ends[tp.partition] - tp.offset for tp in committed}
                raise BenchError(f"offsets of {group} not committed to the end: {behind}")
            time.sleep(0.1)
    finally:
        consumer.close()


def read_event_file(path: Path) -> list[bytes]:
    """The lines of a JSONL file, as `bordermon replay` and `publish` read them."""
    lines = path.read_bytes().split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return lines


def publish(bootstrap: str, topic: str, lines: Sequence[bytes], compression: str) -> int:
    """Send every line once, as `bordermon publish --raw` does; all must be acknowledged."""
    from bordermon.scanner.publisher import ScannerPublisher

    config = {"compression.type": compression}
    with ScannerPublisher(bootstrap, topic, config=config) as publisher:
        publisher.check_connection()
        for line in lines:
            publisher.publish_raw(line)
        report = publisher.flush(120)
    if not report.ok:
        raise BenchError(f"publishing failed: {report}")
    return report.acknowledged


# --- 1. raw ceiling ---------------------------------------------------------------------------


def measure_raw(run: Run, topic: str, expect: int) -> Row:
    """confluent-kafka reading the topic from the beginning, touching each value, nothing more.

    Partitions are assigned directly (no group join to wait for, no commit: nothing is left on
    the broker); `consume(500)` is the batch the worker's faust takes.
    """
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": run.bootstrap,
            "group.id": f"bench-raw-{run.id}",
            "enable.auto.commit": False,
            **_quiet_kafka(),
        }
    )
    try:
        consumer.assign(
            [TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions_of(consumer, topic)]
        )
        count = 0
        size = 0
        first: tuple[float, float, int] | None = None
        deadline = time.monotonic() + 120 + expect / 1000
        while count < expect:
            if time.monotonic() > deadline:
                raise BenchError(f"raw consumer read {count:,} of {expect:,} events")
            messages = consumer.consume(num_messages=BATCH_MAX, timeout=1.0)
            for message in messages:
                if message.error() is None:
                    count += 1
                    size += len(message.value() or b"")
            if messages and first is None:
                first = (time.perf_counter(), own_cpu_seconds(), count)
        assert first is not None
        last = (time.perf_counter(), own_cpu_seconds(), count)
    finally:
        consumer.close()
    interval = Interval(last[2] - first[2], last[0] - first[0], last[1] - first[1])
    return Row.of(
        "raw ceiling: confluent-kafka `consume(500)` loop, reads only",
        interval,
        f"{size / 1e6:,.0f} MB of values read; {interval.core_share} (the rest is waiting for"
        " the broker)",
    )


# --- 2 and 7: faust apps in a subprocess ------------------------------------------------------


class Meter:
    """Counts events in a faust child; writes the report file once `expect` are handled.

    Time and CPU are stamped at the first batch and at the one that reaches `expect`; the
    events of the first batch are not counted (they were handled before the first stamp).
    """

    def __init__(self, expect: int, report: Path) -> None:
        self.expect = expect
        self.report = report
        self.count = 0
        self.first: tuple[float, float, int] | None = None
        self.done = False
        self.extra: Callable[[], dict[str, int]] = dict

    def __call__(self, events: int) -> None:
        self.count += events
        if self.first is None:
            self.first = (time.perf_counter(), own_cpu_seconds(), self.count)
        if self.count >= self.expect and not self.done:
            self.done = True
            now, cpu = time.perf_counter(), own_cpu_seconds()
            t0, cpu0, count0 = self.first
            data = {
                "events": self.count - count0,
                "seconds": now - t0,
                "cpu_seconds": cpu - cpu0,
                "seen": self.count,
                **self.extra(),
            }
            partial = self.report.with_suffix(".tmp")
            partial.write_bytes(orjson.dumps(data))
            partial.replace(self.report)


def noop_app(bootstrap: str, topic: str, group: str, meter: Meter) -> Any:
    """The worker's faust app (same settings as bordermon.processor.app) with an empty body."""
    from bordermon.processor.app import new_faust_app

    app = new_faust_app(group, bootstrap)
    crossings = app.topic(topic, key_type=bytes, value_type=bytes, value_serializer="raw")

    @app.agent(crossings, name="noop")
    async def noop(stream: Any) -> None:
        async for events in stream.take_events(BATCH_MAX, within=BATCH_WITHIN_S):
            meter(len(events))

    return app


def child_main(argv: Sequence[str]) -> int:
    """`bench_pipeline.py --child noop|peer ...`: run one faust app until stopped."""
    import faust

    parser = argparse.ArgumentParser(prog="bench_pipeline.py --child")
    parser.add_argument("kind", choices=("noop", "peer"))
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--expect", type=int, required=True)
    parser.add_argument("--report", type=Path, required=True)
    parser.add_argument("--flags-topic")
    parser.add_argument("--dead-letter-topic")
    parser.add_argument("--partitions", type=int, default=6)
    args = parser.parse_args(argv)
    meter = Meter(args.expect, args.report)
    if args.kind == "noop":
        app = noop_app(args.bootstrap, args.topic, args.group, meter)
    else:
        from peer_faust_tables import create_peer_app

        from bordermon.settings import Settings

        app, stats = create_peer_app(
            args.group,
            bootstrap=args.bootstrap,
            crossings_topic=args.topic,
            flags_topic=args.flags_topic,
            dead_letter_topic=args.dead_letter_topic,
            partitions=args.partitions,
            config=Settings.load({}).detection_config(),
            on_processed=meter,
        )
        meter.extra = stats.as_dict
    faust.Worker(app, loglevel="WARNING", quiet=True).execute_from_commandline()
    return 0


def run_faust_child(
    run: Run, kind: str, topic: str, expect: int, *, extra: Sequence[str] = (), group: str = ""
) -> dict[str, Any]:
    """Start a faust child on `topic`, wait for its report, stop it; return the report."""
    group = group or run.group(kind)
    report = run.tmp / f"{kind}.json"
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        kind,
        "--bootstrap",
        run.bootstrap,
        "--topic",
        topic,
        "--group",
        group,
        "--expect",
        str(expect),
        "--report",
        str(report),
        *extra,
    ]
    process, log_path = run.start(kind, command)
    started = time.monotonic()
    next_note = started + 15
    deadline = started + 180 + expect / 300
    while not report.exists():
        if process.poll() is not None:
            raise BenchError(
                f"the {kind} app exited ({process.returncode}) before it had seen every event:"
                f"\n{log_tail(log_path)}"
            )
        now = time.monotonic()
        if now > deadline:
            raise BenchError(f"the {kind} app did not finish in time:\n{log_tail(log_path)}")
        if now > next_note:
            note(f"  {kind}: still running after {now - started:.0f} s")
            next_note = now + 15
        time.sleep(0.2)
    stop_process(process)
    data: dict[str, Any] = orjson.loads(report.read_bytes())
    return data


def measure_noop(run: Run, topic: str, expect: int) -> Row:
    data = run_faust_child(run, "noop", topic, expect)
    interval = Interval(data["events"], data["seconds"], data["cpu_seconds"])
    return Row.of(
        "framework ceiling: faust agent, `take_events(500, within=0.05)`, empty body",
        interval,
        f"{interval.core_share}; aiokafka consumer, raw serializers, acks and commits as in"
        " the worker",
    )


def measure_peer(run: Run, crossings: str, expect: int) -> Row:
    from peer_faust_tables import changelog_topic_name

    topics = run.topic_set("peer", crossings=crossings)
    group = run.group("peer")
    partitions = len(end_offsets(run.bootstrap, crossings))
    changelog = changelog_topic_name(group)
    run.create_topic(changelog, partitions, {"cleanup.policy": "compact"})
    data = run_faust_child(
        run,
        "peer",
        crossings,
        expect,
        extra=[
            "--flags-topic",
            topics["flags"],
            "--dead-letter-topic",
            topics["dead_letter"],
            "--partitions",
            str(partitions),
        ],
        group=group,
    )
    records = messages_in(run.bootstrap, changelog)
    interval = Interval(data["events"], data["seconds"], data["cpu_seconds"])
    return Row.of(
        "peer: faust Table in memory (`memory://`) + changelog, one event at a time, no Redis",
        interval,
        f"{interval.core_share}; {data['flags']:,} flags, {data['rejected']:,} dead letters,"
        f" {data['duplicates']:,} duplicates; needs changelog topic `{changelog}`"
        f" ({partitions} partitions, compacted): {records:,} records written",
    )


# --- 3. the worker ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    """One look at the worker: crossings it has processed (consignment stage), messages it
    has processed in all (both stages: crossings and link sightings) and its CPU seconds."""

    at: float
    crossings: int
    total: int
    cpu: float


@dataclass(frozen=True, slots=True)
class Scrape:
    """What the benchmark reads from the worker's `/metrics`.

    `bordermon_batch_size` is summed over its `stage` label, so it counts crossings *and* link
    sightings; the crossings alone are the valid events consumed
    (`bordermon_events_consumed_total`, duplicates included) plus the rejected ones
    (`bordermon_events_rejected_total`), both counted once per crossing by the consignment
    stage. The link stage's messages are the difference.
    """

    batch_messages: int = 0
    consumed: int = 0
    rejected: int = 0
    flags_by_rule: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    """Batches of both stages (`bordermon_batch_size_count`)."""
    redis_count: dict[str, int] = field(default_factory=dict)
    """Redis round trips by operation (load, save), both stores."""
    redis_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def crossings(self) -> int:
        return self.consumed + self.rejected

    @property
    def link_messages(self) -> int:
        return self.batch_messages - self.crossings


def _metric_value(line: str) -> float:
    return float(line.rsplit(maxsplit=1)[1])


def _label(line: str, name: str) -> str:
    marker = f'{name}="'
    start = line.index(marker) + len(marker)
    return line[start : line.index('"', start)]


def scrape_metrics(port: int) -> Scrape | None:
    """The worker's counters, None while its `/metrics` is not up yet."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
            text = answer.read().decode()
    except OSError:
        return None
    batch = consumed = rejected = batches = 0.0
    flags: dict[str, int] = {}
    redis_count: dict[str, int] = {}
    redis_seconds: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("bordermon_batch_size_sum{"):
            batch += _metric_value(line)  # both stages
        elif line.startswith("bordermon_batch_size_count{"):
            batches += _metric_value(line)
        elif line.startswith("bordermon_redis_round_trip_seconds_count{"):
            redis_count[_label(line, "operation")] = int(_metric_value(line))
        elif line.startswith("bordermon_redis_round_trip_seconds_sum{"):
            redis_seconds[_label(line, "operation")] = _metric_value(line)
        elif line.startswith("bordermon_events_consumed_total{"):
            consumed += _metric_value(line)
        elif line.startswith("bordermon_events_rejected_total{"):
            rejected += _metric_value(line)
        elif line.startswith("bordermon_flags_total{"):
            rule = _label(line, "rule")
            flags[rule] = flags.get(rule, 0) + int(_metric_value(line))
    return Scrape(
        int(batch), int(consumed), int(rejected), flags, int(batches), redis_count, redis_seconds
    )


@dataclass(slots=True)
class Worker:
    """A `bordermon worker` subprocess with its metrics port."""

    process: subprocess.Popen[bytes]
    log_path: Path
    port: int
    group: str
    scrapes: list[float] = field(default_factory=list)
    last: Scrape = field(default_factory=Scrape)

    def idle_scrape_ms(self, reads: int = 5) -> float:
        """Mean time of a `/metrics` read once the worker is idle: what each read costs it
        (while it is busy a read also waits for the GIL, which says nothing about its cost)."""
        self.scrapes.clear()
        for _ in range(reads):
            self.sample()
        return 1000 * sum(self.scrapes) / len(self.scrapes) if self.scrapes else math.nan

    def sample(self) -> Sample:
        if self.process.poll() is not None:
            raise BenchError(
                f"the worker exited ({self.process.returncode}):\n{log_tail(self.log_path)}"
            )
        started = time.perf_counter()
        scrape = scrape_metrics(self.port)
        if scrape is not None:
            self.scrapes.append(time.perf_counter() - started)
            self.last = scrape
        else:
            scrape = Scrape()
        return Sample(
            time.perf_counter(),
            scrape.crossings,
            scrape.batch_messages,
            process_cpu_seconds(self.process.pid),
        )

    def follow(
        self, expect: int, timeout: float, links_written: Callable[[], int] | None = None
    ) -> tuple[list[Sample], int]:
        """Samples every SAMPLE_EVERY_S from the first progress until the worker is done:
        `expect` crossings processed and, when `links_written` is given (the link stage
        runs), as many link sightings as the links topic then holds. Returns the samples and
        that number of sightings (0 without the link stage).

        Every sighting of a crossing is acknowledged by the links topic before the crossing
        is counted as processed (`BatchProcessor._apply_once`), so once `expect` crossings
        are counted the links topic holds every sighting there will be."""
        samples: list[Sample] = []
        started = time.monotonic()
        last_change, last_value, next_note = started, -1, started + 15
        sightings: int | None = None if links_written is not None else 0
        while True:
            sample = self.sample()
            now = time.monotonic()
            if sample.total > 0:
                samples.append(sample)
            if sample.crossings >= expect and sightings is None:
                assert links_written is not None
                sightings = links_written()
                note(f"  worker: crossings done; {sightings:,} link sightings to match")
            if sightings is not None and sample.total >= expect + sightings:
                return samples, sightings
            if sample.total != last_value:
                last_change, last_value = now, sample.total
            if now - last_change > STALL_S or now - started > timeout:
                raise BenchError(
                    f"the worker is stuck at {sample.crossings:,} of {expect:,} crossings"
                    f" ({sample.total - sample.crossings:,} link sightings):\n"
                    f"{log_tail(self.log_path)}"
                )
            if now > next_note:
                links = ""
                if links_written is not None:  # (counters read mid-batch may be a few apart)
                    links = f", {max(sample.total - sample.crossings, 0):,} link sightings"
                note(f"  worker: {sample.crossings:,} of {expect:,} crossings{links}")
                next_note = now + 15
            time.sleep(SAMPLE_EVERY_S)

    def wait_processed(self, expect: int, timeout: float) -> None:
        """Until `expect` crossings are processed (the link stage may still be busy)."""
        deadline = time.monotonic() + timeout
        while self.sample().crossings < expect:
            if time.monotonic() > deadline:
                raise BenchError(f"the worker did not process {expect:,} events in {timeout} s")
            time.sleep(0.1)

    def wait_links_matched(self, sightings: int, timeout: float) -> None:
        """Until the link stage has processed `sightings` messages (call once the crossings
        are processed: the links topic then holds every sighting)."""
        deadline = time.monotonic() + timeout
        while True:
            sample = self.sample()
            if sample.total - sample.crossings >= sightings:
                return
            if time.monotonic() > deadline:
                raise BenchError(f"the link stage did not match {sightings:,} sightings")
            time.sleep(0.1)


def start_worker(
    run: Run,
    name: str,
    topics: dict[str, str],
    profile: Path | None = None,
    rules: str = ALL_RULES,
) -> Worker:
    """`bordermon worker` on `topics`; `rules` other than "all" go to BORDERMON_RULES."""
    group = run.group(name)
    port = free_port()
    extra = {"BORDERMON_METRICS_PORT": str(port)}
    if rules != ALL_RULES:
        extra["BORDERMON_RULES"] = rules
    env = worker_env(run.bootstrap, run.redis_url, topics, group, **extra)
    if rules == ALL_RULES:
        env.pop("BORDERMON_RULES", None)  # the default: every rule
    command = [sys.executable, "-m", "bordermon", "worker"]
    if profile is not None:
        command = [
            sys.executable,
            "-m",
            "pyinstrument",
            "--renderer",
            "session",
            "--outfile",
            str(profile),
            "-m",
            "bordermon",
            "worker",
        ]
    process, log_path = run.start(name, command, env)
    return Worker(process, log_path, port, group)


def busy_interval(samples: list[Sample], expect: int, sightings: int = 0) -> Interval:
    """Crossings processed from the first sample with progress to the last one taken while
    work was still waiting in either topic (the final sample may include idle time after the
    last batch, so it is used only when there is nothing else). With the link stage, the
    interval runs until it has matched every sighting: the crossings' rate includes it."""
    first = samples[0]
    busy = [s for s in samples if s.total < expect + sightings]
    last = busy[-1] if len(busy) >= 2 else samples[-1]
    if last is first:
        raise BenchError("too few events to measure the worker: use more --events")
    return Interval(last.crossings - first.crossings, last.at - first.at, last.cpu - first.cpu)


def redis_keys(run: Run) -> dict[str, int]:
    """Keys in the run's Redis database by kind: consignment states, link states, others
    (owner tokens)."""
    import redis

    from bordermon.stores.redis_store import DEFAULT_PREFIX, LINK_PREFIX

    counts = {"consignments": 0, "links": 0, "other": 0}
    with redis.Redis.from_url(run.redis_url) as client:
        for key in client.scan_iter(count=5000):
            if key.startswith(DEFAULT_PREFIX.encode()):
                counts["consignments"] += 1
            elif key.startswith(LINK_PREFIX.encode()):
                counts["links"] += 1
            else:
                counts["other"] += 1
    return counts


@dataclass(frozen=True, slots=True)
class WorkerRun:
    """What one worker pass did, beside its rate."""

    interval: Interval
    rules: str
    flags_by_rule: dict[str, int]
    flags_in_topic: int
    dead_letters: int
    sightings: int
    link_messages: int
    link_tail_s: float | None
    redis: dict[str, int]


def measure_worker(
    run: Run,
    topics: dict[str, str],
    expect: int,
    name: str = "worker",
    profile: Path | None = None,
    *,
    rules: str = ALL_RULES,
) -> tuple[Row, WorkerRun]:
    """A worker from a fresh Redis database and consumer group over the whole topic."""
    run.redis_flush()
    relabel = rules == ALL_RULES or "relabel-to-ru" in rules.split(",")
    worker = start_worker(run, name, topics, profile, rules)

    def links_written() -> int:
        return messages_in(run.bootstrap, topics["links"])

    samples, sightings = worker.follow(
        expect, timeout=300 + expect / 300, links_written=links_written if relabel else None
    )
    interval = busy_interval(samples, expect, sightings)
    crossings_done = next(s.at for s in samples if s.crossings >= expect)
    link_tail_s = samples[-1].at - crossings_done if relabel else None
    commit_s = wait_committed(run.bootstrap, worker.group, topics["crossings"])
    if relabel:
        commit_s = max(commit_s, wait_committed(run.bootstrap, worker.group, topics["links"]))
    scrape_ms = worker.idle_scrape_ms()
    final = worker.last
    stop_process(worker.process)
    flags = messages_in(run.bootstrap, topics["flags"])
    dead = messages_in(run.bootstrap, topics["dead_letter"])
    keys = redis_keys(run)
    details = WorkerRun(
        interval,
        rules,
        {rule: count for rule, count in sorted(final.flags_by_rule.items()) if count},
        flags,
        dead,
        sightings,
        final.link_messages,
        link_tail_s,
        keys,
    )
    by_rule = ", ".join(f"{rule} {count:,}" for rule, count in details.flags_by_rule.items())
    trips = ", ".join(
        f"{final.redis_count.get(op, 0):,} {op}s ({final.redis_seconds.get(op, 0.0):.1f} s)"
        for op in ("load", "save")
    )
    if relabel:
        what = "all rules (consignment stage + link stage)"
        links = (
            f" {sightings:,} link sightings forwarded to the links topic and"
            f" {final.link_messages:,} matched by the link stage, which finished"
            f" {link_tail_s:.0f} s after the consignment stage (±{SAMPLE_EVERY_S:g} s);"
        )
    else:
        what = f"`BORDERMON_RULES={rules}` (consignment stage only, no links topic)"
        links = ""
    row = Row.of(
        f"`bordermon worker`, {what}",
        interval,
        f"{interval.core_share}; {flags:,} flags ({by_rule or 'none'}), {dead:,} dead letters;"
        f"{links} {final.batches:,} batches, Redis round trips: {trips};"
        f" Redis keys: {keys['consignments']:,} consignments, {keys['links']:,} links;"
        f" offsets committed to the end {commit_s:.1f} s after the last batch was seen;"
        f" `/metrics` read every {SAMPLE_EVERY_S:g} s ({scrape_ms:.1f} ms per read when idle)",
    )
    return row, details


# --- 4. scan-to-flag latency ------------------------------------------------------------------


class FlagCollector(threading.Thread):
    """Reads the flags topic in the background with `FlagSubscriber`, stamping arrivals.

    Polls with a 10 ms timeout: librdkafka's batch consume waits for a full batch or the
    timeout, so a long timeout would add itself to every measured latency.
    """

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(name="flag-collector", daemon=True)
        from bordermon.alerts.subscriber import FlagSubscriber, ReceivedFlag

        self.subscriber = FlagSubscriber(bootstrap, topic, from_beginning=True)
        self.received: list[ReceivedFlag] = []
        self.assigned = threading.Event()
        self.halt = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            if not self.subscriber.wait_for_assignment(60):
                raise BenchError("the flag subscriber got no partitions in 60 s")
            self.assigned.set()
            while not self.halt.is_set():
                self.received.extend(self.subscriber.poll(0.01))
        except BaseException as error:
            self.error = error
        finally:
            self.assigned.set()
            self.subscriber.close()

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=30)


def event_id_of(line: bytes) -> str | None:
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    value = doc.get("event_id") if isinstance(doc, dict) else None
    return value if isinstance(value, str) else None


def measure_latency(
    run: Run,
    rate: float,
    seconds: float,
    seed: int,
    compression: str,
    *,
    results: Results | None = None,
) -> Row:
    """Flags' arrival at a subscriber minus the produce time of the scan that completed the
    pair, with scans offered at `rate` for `seconds` to a worker that is already caught up."""
    from bordermon.scanner.publisher import ScannerPublisher
    from bordermon.simulate import SimulationSpec, generate

    # Topics, group and log of this rate's own: a second rate reusing the first one's would
    # count the first one's link sightings as still to be matched.
    phase = f"latency-{rate:.0f}"
    topics = run.topic_set(phase)
    run.redis_flush()
    paced_count = int(rate * seconds)
    lines = list(
        generate(SimulationSpec(consignments=None, events=paced_count + LATENCY_WARMUP, seed=seed))
    )
    ids = [event_id_of(line) for line in lines]
    worker = start_worker(run, f"worker-{phase}", topics)
    WorkerProcess(worker.process, worker.log_path).wait_ready(120)
    collector = FlagCollector(run.bootstrap, topics["flags"])
    note(f"  latency: flags read with the throwaway consumer group {collector.subscriber.group}")
    run.cleanup.callback(delete_groups, run.bootstrap, [collector.subscriber.group])
    collector.start()
    run.cleanup.callback(collector.stop)
    collector.assigned.wait(70)
    if collector.error is not None:
        raise BenchError(f"flag subscriber: {collector.error}")
    produced: dict[str, int] = {}
    config = {"compression.type": compression}
    with ScannerPublisher(run.bootstrap, topics["crossings"], config=config) as publisher:
        # Warm-up, unpaced and unmeasured: the worker's partitions are assigned and its first
        # batches (imports, connections) are behind it before the clock starts.
        warmup = lines[:LATENCY_WARMUP]
        for line, event_id in zip(warmup, ids, strict=False):
            if event_id is not None:
                produced.setdefault(event_id, time.time_ns())
            publisher.publish_raw(line)
        publisher.flush(30)
        worker.wait_processed(len(warmup), timeout=120)
        note(
            f"  latency: worker caught up on {len(warmup)} warm-up events; pacing at {rate:,.0f}/s"
        )
        measured_from_ns = time.time_ns()
        before = worker.sample()
        started = time.perf_counter()
        index, total = len(warmup), len(lines)
        while index < total:
            due = min(total, len(warmup) + int((time.perf_counter() - started) * rate) + 1)
            while index < due:
                event_id = ids[index]
                if event_id is not None:
                    produced.setdefault(event_id, time.time_ns())
                publisher.publish_raw(lines[index])
                index += 1
            publisher.poll(0.002)
        paced_s = time.perf_counter() - started
        after = worker.sample()
        report = publisher.flush(30)
    if not report.ok:
        raise BenchError(f"publishing failed: {report}")
    worker.wait_processed(total, timeout=120)
    worker.wait_links_matched(messages_in(run.bootstrap, topics["links"]), timeout=120)
    time.sleep(2.0)  # the last flags' way to the subscriber
    collector.stop()
    stop_process(worker.process)
    if collector.error is not None:
        raise BenchError(f"flag subscriber: {collector.error}")

    latencies: list[float] = []
    by_rule: dict[str, list[float]] = {}
    for received in collector.received:
        # The scans a flag reports: an entry (none for export-without-permit; another
        # consignment's for relabel-to-ru) and an exit. The later-produced one raised it.
        scans = [received.flag["exit"], received.flag.get("entry")]
        times = [produced.get(scan["event_id"]) for scan in scans if scan is not None]
        if not times or None in times:
            continue
        trigger = max(t for t in times if t is not None)
        if trigger >= measured_from_ns:
            latency_ms = (received.received_ns - trigger) / 1e6
            latencies.append(latency_ms)
            by_rule.setdefault(str(received.flag.get("rule")), []).append(latency_ms)
    if not latencies:
        raise BenchError("no flag was raised by a measured scan")
    latencies.sort()
    if results is not None:
        results.latency_p99_ms[rate] = percentile(latencies, 0.99)
    per_rule = []
    for rule, values in sorted(by_rule.items()):
        values.sort()
        per_rule.append(
            f"{rule} p50 {percentile(values, 0.5):.0f} / p99 {percentile(values, 0.99):.0f} ms"
            f" ({len(values):,})"
        )
    paced = total - len(warmup)
    cpu = after.cpu - before.cpu
    interval = Interval(paced, paced_s, cpu)
    return Row.of(
        f"scan-to-flag latency, {rate:,.0f} events/s offered for {seconds:.0f} s",
        interval,
        f"p50 {percentile(latencies, 0.5):.0f} ms, p99 {percentile(latencies, 0.99):.0f} ms,"
        f" max {latencies[-1]:.0f} ms over {len(latencies):,} flags ({'; '.join(per_rule)});"
        f" all rules on; the worker used {cpu / paced_s:.0%} of a core",
    )


# --- 5. Redis memory --------------------------------------------------------------------------


def measure_redis(run: Run, consignments: int, seed: int) -> Row:
    """`used_memory` growth for N consignments whose entry and exit are both kept (they do not
    pair: the simulator's `slow` pattern, dwell beyond the window), saved by the real
    `RedisStore` (same encoding, same `SET ... EX ttl`). The key's share of Redis's dict and
    expires tables is in the number; `MEMORY USAGE` of single keys is not."""
    import redis

    from bordermon.settings import Settings
    from bordermon.stores.redis_store import DEFAULT_PREFIX, RedisStore

    settings = Settings.load({})
    simulated = slow_consignment_states(consignments, seed)
    if simulated.flags_by_rule[TRANSIT_ONLY]:
        raise BenchError(f"{simulated.flags_by_rule[TRANSIT_ONLY]} slow consignments were flagged")
    # export-without-permit may flag a slow consignment's exit: its state keeps the rule in
    # `flagged`, and the flag left `pending` once acknowledged, as in the worker.
    other_flags = simulated.flags_by_rule.total()
    states = {state.consignment_id: state for state in simulated.states}
    in_flight = sum(1 for s in states.values() if s.entries and s.exits)

    async def save_all() -> None:
        store = RedisStore.from_url(run.redis_url, ttl_seconds=settings.state_ttl_seconds)
        values = list(states.values())
        try:
            for start in range(0, len(values), BATCH_MAX):
                await store.save(values[start : start + BATCH_MAX])
        finally:
            await store.close()

    client: redis.Redis[bytes] = redis.Redis.from_url(run.redis_url)
    try:
        client.flushdb()
        before = int(client.info("memory")["used_memory"])
        asyncio.run(save_all())
        after = int(client.info("memory")["used_memory"])
        sample = [s for s in states.values() if s.entries and s.exits][:1000]
        keys_of_sample = [DEFAULT_PREFIX.encode() + s.consignment_id.encode() for s in sample]
        usage = [int(client.memory_usage(key, samples=0) or 0) for key in keys_of_sample]
        lengths = [int(client.strlen(key)) for key in keys_of_sample]  # type: ignore[no-untyped-call]
        keys = int(client.dbsize())
        client.flushdb()
    finally:
        client.close()
    per = (after - before) / len(states)
    return Row(
        "Redis memory per consignment in flight (entry + exit kept, not paired)",
        f"{len(states):,} consignments",
        result=f"{per:,.0f} B of `used_memory` each ({keys:,} keys, {in_flight:,} with both"
        f" kept); one key: STRLEN {lengths[0]} B, MEMORY USAGE {usage[0]} B"
        f" (mean of {len(sample):,}: {sum(lengths) / len(lengths):.0f} B /"
        f" {sum(usage) / len(usage):.0f} B); {other_flags:,} export-without-permit flags"
        " on the way (acknowledged, not pending)",
    )


# --- 6. replay --------------------------------------------------------------------------------


def measure_replay(path: Path, rules: str = ALL_RULES, results: Results | None = None) -> Row:
    """The real `bordermon replay FILE --quiet [--rules RULES]`, flags to /dev/null
    (bench_replay.run_once)."""
    from bench_replay import by_rule_text, run_once

    result = run_once(path, rules)
    if results is not None:
        results.replay_flags[rules] = dict(sorted(result.flags_by_rule.items()))
    what = "all rules" if rules == ALL_RULES else f"`--rules {rules}`"
    return Row.of(
        f"`bordermon replay FILE --quiet`, {what} (in-process core, start-up included)",
        Interval(result.read, result.wall, result.cpu),
        f"{result.flags:,} flags ({by_rule_text(result.flags_by_rule)}),"
        f" {result.rejected:,} rejected",
    )


# --- the run ----------------------------------------------------------------------------------


ROW_ORDER = (
    *("1", "2", "3", "3b", "3c", "4", "4b", "4c", "4d", "5", "6", "6b", "6c", "7"),
    *("8", "8b", "8c"),
)
WORKER_CONFIGS = (  # (row, rules, phase): the same crossings topic, every other topic its own
    ("3", ALL_RULES, "main"),
    ("3b", TRANSIT_ONLY, "transit"),
    ("3c", NO_LINK_STAGE, "export"),
)
REPLAY_CONFIGS = (("6", ALL_RULES), ("6b", TRANSIT_ONLY), ("6c", NO_LINK_STAGE))


@dataclass(slots=True)
class Results:
    rows: dict[str, Row] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    workers: dict[str, WorkerRun] = field(default_factory=dict)
    replay_flags: dict[str, dict[str, int]] = field(default_factory=dict)
    latency_p99_ms: dict[float, float] = field(default_factory=dict)

    def rate(self, key: str) -> float | None:
        """events/s of a row; the median of its passes when it has several."""
        import statistics

        rates = [
            row.interval.rate
            for name, row in self.rows.items()
            if name.split()[0] == key and row.interval is not None
        ]
        return statistics.median(rates) if rates else None


def measure(run: Run, key: str, label: str, results: Results, action: Callable[[], Row]) -> None:
    """Run one measurement; a failure becomes a row that says so, and the run goes on."""
    note(f"{key}. {label} ...")
    try:
        row = action()
    except BenchError as error:
        run.keep_logs = True
        note(f"{key}. FAILED: {error}")
        first_line = str(error).splitlines()[0]
        row = Row(label, result=f"**failed**: {first_line}")
    else:
        note(f"{key}. {row.rate} events/s; {row.result}")
    results.rows[key] = row


def ratio(results: Results, a: str, b: str) -> str:
    top, bottom = results.rate(a), results.rate(b)
    if top is None or bottom is None or not bottom:
        return "n/a"
    return f"{top / bottom:.2f}"


def agreement(results: Results) -> list[str]:
    """Whether the worker raised, rule by rule, the flags replay raised on the same events
    (both configurations): the two rates are only comparable if they did the same work."""
    lines = []
    for rules, details in results.workers.items():
        replayed = results.replay_flags.get(rules)
        if replayed is None:
            continue
        same = details.flags_by_rule == {rule: n for rule, n in replayed.items() if n}
        lines.append(
            f"flags by rule, {rules}: worker and replay "
            + (
                "agree"
                if same
                else f"**differ**: worker {details.flags_by_rule}, replay {replayed}"
            )
        )
    return lines


def cost_line(results: Results, what: str, configs: Sequence[tuple[str, str]]) -> str:
    """CPU per crossing of each rule set (the median of its passes), as what
    export-without-permit and relabel-to-ru (sightings, link stage) add to transit-to-ru."""
    import statistics

    cpu: dict[str, float] = {}
    passes = 0
    for key, rules in configs:
        values = [
            row.interval.cpu_per_million
            for name, row in results.rows.items()
            if name.split()[0] == key
            and row.interval is not None
            and row.interval.cpu_per_million is not None
        ]
        if not values:
            return ""
        cpu[rules] = statistics.median(values)
        passes = max(passes, len(values))
    of = f", median of {passes} passes" if passes > 1 else ""
    return f"- {what}{of}: {rule_costs(cpu)}."


TARGET_WORKER_OF_RAW = 0.30
TARGET_P99_MS = 50.0
TARGET_P99_RATE = 2000.0


TARGET_REPLAY_RATE = 200_000.0


def measure_replay_at_scale(run: Run, results: Results, events: int, jobs: int | None) -> None:
    """Rows 8, 8b, 8c: a bare `orjson.loads` loop over a file of `events` simulated events
    (the floor of any JSONL reader), then `bordermon replay --jobs 1` and `--jobs N` over it."""
    from bench_replay import ensure_input, orjson_loop, run_once

    from bordermon.replay.parallel import usable_cpus

    path = ensure_input(events)
    jobs = jobs or usable_cpus()

    def floor() -> Row:
        lines, wall, cpu = orjson_loop(path)
        return Row.of(
            f"floor: `orjson.loads` of every line of a {events:,}-event file, nothing else",
            Interval(lines, wall, cpu),
            "one process",
        )

    def replay_jobs(count: int) -> Row:
        result = run_once(path, jobs=count)
        return Row.of(
            f"`bordermon replay FILE --quiet --jobs {count}` over {events:,} events, all rules",
            Interval(result.read, result.wall, result.cpu),
            f"{result.flags:,} flags, {result.rejected:,} rejected",
        )

    measure(run, "8", "orjson floor", results, floor)
    measure(run, "8b", "replay at scale, --jobs 1", results, lambda: replay_jobs(1))
    measure(run, "8c", f"replay at scale, --jobs {jobs}", results, lambda: replay_jobs(jobs))


def targets(results: Results) -> list[str]:
    """Issue 11's targets, met or not, from this run's rows."""

    def verdict(met: bool) -> str:
        return "met" if met else "**missed**"

    lines = ["Targets (issue 11):"]
    raw = results.rate("1")
    for key, what in (("3", "all rules"), ("3b", "transit-to-ru only")):
        rate = results.rate(key)
        if raw and rate:
            share = rate / raw
            lines.append(
                f"- worker ({what}) / raw ceiling = {share:.2f}, target"
                f" ≥ {TARGET_WORKER_OF_RAW:.2f}: {verdict(share >= TARGET_WORKER_OF_RAW)}"
            )
    p99 = results.latency_p99_ms.get(TARGET_P99_RATE)
    if p99 is not None:
        lines.append(
            f"- scan-to-flag p99 at {TARGET_P99_RATE:,.0f} events/s, all rules = {p99:.0f} ms,"
            f" target < {TARGET_P99_MS:.0f} ms: {verdict(p99 < TARGET_P99_MS)}"
        )
    replay, floor = results.rate("8c"), results.rate("8")
    if replay:
        of_floor = f" ({replay / floor:.2f} of the orjson floor, row 8)" if floor else ""
        lines.append(
            f"- replay at scale, row 8c = {replay:,.0f} events/s{of_floor}, target"
            f" ≥ {TARGET_REPLAY_RATE:,.0f}: {verdict(replay >= TARGET_REPLAY_RATE)}"
        )
    return lines if len(lines) > 1 else []


def render(results: Results, header: list[str]) -> list[str]:
    out = [*header, ""]
    out.append("| # | measurement | events | s | events/s | CPU s per M events | result |")
    out.append("|---|---|---|---|---|---|---|")
    ordered = sorted(results.rows, key=lambda key: (ROW_ORDER.index(key.split()[0]), key))
    out += [results.rows[key].markdown(key) for key in ordered]
    out.append("")
    out.append(
        "Ratios of events/s (of the median pass, for rows measured in several):"
        f" worker all rules / transit-to-ru only = {ratio(results, '3', '3b')};"
        f" replay all rules / transit-to-ru only = {ratio(results, '6', '6b')};"
        f" worker (all rules) / faust no-op = {ratio(results, '3', '2')};"
        f" faust no-op / raw = {ratio(results, '2', '1')};"
        f" peer / worker transit-to-ru only (the peer has that rule only)"
        f" = {ratio(results, '7', '3b')};"
        f" worker (all rules) / raw = {ratio(results, '3', '1')};"
        f" replay / worker, all rules = {ratio(results, '6', '3')}."
    )
    out += ["", *targets(results)]
    costs = [
        cost_line(results, "worker (rows 3, 3b, 3c)", [(k, r) for k, r, _ in WORKER_CONFIGS]),
        cost_line(results, "replay (rows 6, 6b, 6c)", REPLAY_CONFIGS),
    ]
    out += ["", *[line for line in costs if line]]
    if results.notes:
        out.append("")
        out += [f"- {text}" for text in results.notes]
    return out


PROFILE_STAGES: tuple[tuple[str, str, str], ...] = (
    # (what, function, file suffix): inclusive time of frames matching function and file
    (
        "bordermon batch step, both stages (`BatchProcessor.process`)",
        "process",
        "processor/batch.py",
    ),
    ("- validation (`validate_batch`: `parse_crossing`)", "validate_batch", "core/pipeline.py"),
    (
        "- `validate` of both stages (crossings: `validate_batch`; sightings: decode)",
        "validate",
        "processor/stages.py",
    ),
    ("- consignment rules and state (`apply_batch`)", "apply_batch", "core/pipeline.py"),
    ("- link rule and state (`apply_link_batch`)", "apply_link_batch", "core/pipeline.py"),
    ("- Redis load (`RedisStore.snapshot`: MGET + decode)", "snapshot", "stores/redis_store.py"),
    ("- Redis save (`RedisStore.save`: encode + EVALSHA)", "save", "stores/redis_store.py"),
    ("- sightings to the links topic (`_forward`, acks awaited)", "_forward", "processor/batch.py"),
    ("- dead letters to Kafka (`_dead_letter`)", "_dead_letter", "processor/batch.py"),
    (
        "- every produce, acks awaited (`BatchingProducer.send_all`)",
        "send_all",
        "processor/producer.py",
    ),
    (
        "faust: fetch loop, per-message dispatch (`_drain_messages`)",
        "_drain_messages",
        "faust/transport/consumer.py",
    ),
    (
        "- faust: delivery to the stream (`Conductor.on_message`)",
        "on_message",
        "faust/transport/conductor.py",
    ),
    ("faust: stream iteration, acks, batching (`Stream._c_aiter`)", "_c_aiter", "faust/streams.py"),
    ("faust: commits (`Consumer.commit`)", "commit", "faust/transport/consumer.py"),
    ("prometheus_client (anywhere)", "*", "/prometheus_client/"),
)


def _component(frames: list[tuple[str, str]]) -> str:
    """Who owns a sample's own time: the package of the innermost frame with a file
    (a built-in's time goes to its caller); waiting in epoll is the event loop idling."""
    if frames and frames[-1][0] in {"epoll.poll", "select"}:
        return "waiting in the event loop (epoll)"
    for _, path in reversed(frames):
        if path == "<built-in>":
            continue
        for package in ("bordermon", "faust", "mode", "aiokafka", "redis", "prometheus_client"):
            if f"/{package}/" in path:
                return package
        if "/asyncio/" in path:
            return "asyncio"
        return "other Python (stdlib, logging, ...)"
    return "other"


def summarize_profile(session_path: Path) -> list[str]:
    """Where the worker's main thread spent its time, as a markdown table.

    Built from the raw samples: inclusive shares of the stages above, and own time by package.
    pyinstrument samples the main thread only (the asyncio loop running the agent, Redis and the
    producer); faust runs the aiokafka consumer in a thread of its own, which is not in it.
    """
    from collections import Counter

    from pyinstrument.session import Session

    session = Session.load(session_path)
    total = sum(duration for _, duration in session.frame_records) or 1.0
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for stack, duration in session.frame_records:
        frames = []
        for info in stack:
            parts = info.split("\x01")[0].split("\x00")
            frames.append((parts[0], parts[1] if len(parts) > 1 else ""))
        own[_component(frames)] += duration
        for what, function, suffix in PROFILE_STAGES:
            if any(
                (function == "*" and suffix in path) or (name == function and path.endswith(suffix))
                for name, path in frames
            ):
                inclusive[what] += duration
    lines = [
        f"Worker profile: {len(session.frame_records):,} samples of the main thread over"
        f" {session.duration:.0f} s (process CPU {session.cpu_time:.0f} s, all threads).",
        "",
        "| inclusive share of main-thread time | % |",
        "|---|---|",
    ]
    lines += [f"| {what} | {100 * inclusive[what] / total:.1f} |" for what, _, _ in PROFILE_STAGES]
    lines += ["", "| own time by package | % |", "|---|---|"]
    lines += [f"| {name} | {100 * value / total:.1f} |" for name, value in own.most_common()]
    return lines


def profile_worker(run: Run, results: Results, topic: str, expect: int) -> list[str]:
    """A second worker pass under pyinstrument; its events/s stay out of the table (sampling
    slows the worker down). Writes the call tree and a summary under run/bench/ (the raw
    session, hundreds of MB for a full run, stays in the run's temporary directory)."""
    stem = REPO / "run" / "bench" / f"pipeline-{date.today().isoformat()}-worker-profile"
    stem.parent.mkdir(parents=True, exist_ok=True)
    session = run.tmp / "worker.pyisession"
    tree = stem.parent / f"{stem.name}-tree.txt"
    summary_path = stem.parent / f"{stem.name}-summary.md"
    note("profiling the worker with pyinstrument (a separate pass) ...")
    try:
        topics = run.topic_set("profile", crossings=topic)
        _, details = measure_worker(run, topics, expect, "worker-profiled", session)
        interval = details.interval
        if not session.exists():
            raise BenchError(f"pyinstrument wrote no session to {session}")
        command = [sys.executable, "-m", "pyinstrument", "--load", str(session), "-r", "text"]
        subprocess.run([*command, "--show-all", "-o", str(tree)], check=True)
        summary = summarize_profile(session)
    except (BenchError, subprocess.CalledProcessError) as error:
        results.notes.append(f"profiling failed: {str(error).splitlines()[0]}")
        return []
    summary_path.write_text("\n".join(summary) + "\n")
    results.notes.append(
        f"worker under pyinstrument (a separate pass, not in the table):"
        f" {interval.rate:,.0f} events/s; call tree in `{tree.relative_to(REPO)}`, summary in"
        f" `{summary_path.relative_to(REPO)}` (below)"
    )
    return summary


def checkout_description() -> str:
    """Which bordermon ran: the package's path and the checkout's commit (dirty or not)."""
    import bordermon

    try:
        commit = subprocess.run(
            ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown commit"
    return f"`{Path(bordermon.__file__).parent}` at {commit}"


def package_versions() -> str:
    """Versions of what the numbers depend on (the shared virtualenv changes under people's
    feet: a C parser or codec installed between two runs moves them)."""
    from importlib import metadata

    out = []
    for name in (
        "faust-streaming",
        "aiokafka",
        "confluent-kafka",
        "redis",
        "hiredis",
        "cramjam",
        "orjson",
    ):
        try:
            out.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            out.append(f"{name} absent")
    return ", ".join(out)


def check_codec(compression: str) -> None:
    """Fail at once, not with a crashed worker, when aiokafka cannot read the codec."""
    import importlib.util

    if compression in {"lz4", "snappy", "zstd"} and importlib.util.find_spec("cramjam") is None:
        raise BenchError(
            f"aiokafka cannot decompress {compression} without the cramjam package: reinstall"
            " bordermon (`.venv/bin/pip install -e .`, which brings aiokafka[lz4,snappy,zstd])"
            " or pass --compression none"
        )


def run_benchmark(args: argparse.Namespace, run: Run) -> list[str]:
    check_codec(args.compression)
    events_target = args.events
    path = ensure_input(events_target)
    lines = read_event_file(path)
    machine = describe_machine()
    crossings = run.topic_set("main")
    note(f"publishing {len(lines):,} events to {crossings['crossings']} ...")
    published = publish(run.bootstrap, crossings["crossings"], lines, args.compression)
    expect = messages_in(run.bootstrap, crossings["crossings"])
    if expect != published or published != len(lines):
        raise BenchError(f"{len(lines):,} lines, {published:,} acknowledged, {expect:,} in topic")
    size_mb = path.stat().st_size / 1e6
    del lines
    partitions = len(end_offsets(run.bootstrap, crossings["crossings"]))
    header = [
        f"machine: {machine}",
        "",
        f"packages: {package_versions()}",
        "",
        f"bordermon: {checkout_description()}",
        "",
        f"events: {expect:,} lines of `bordermon simulate --events {events_target} --seed 1`"
        f" (`{path.relative_to(REPO)}`, {size_mb:.0f} MB; the default mix of the simulator"
        f" whose source hash is in the name), published once to one topic"
        f" ({partitions} partitions, keyed by consignment_id, compression {args.compression})"
        f" that rows 1, 2, 3, 3b, 3c and 7 read from the beginning; run `{run.id}`,"
        f" {date.today().isoformat()}.",
    ]
    results = Results()
    topic = crossings["crossings"]
    measure(run, "1", "raw ceiling", results, lambda: measure_raw(run, topic, expect))
    measure(run, "2", "faust no-op", results, lambda: measure_noop(run, topic, expect))

    def worker_row(rules: str, phase: str, first: bool) -> Row:
        # The same crossings topic each time; flags, dead letters and links topics of its own.
        reuse = first and rules == ALL_RULES
        topics = crossings if reuse else run.topic_set(phase, crossings=topic)
        row, details = measure_worker(run, topics, expect, f"worker-{phase}", rules=rules)
        if first:
            results.workers[rules] = details
        return row

    # Passes of the three rule sets in turn: a neighbour's load that comes and goes during
    # one pass then weighs on every rule set alike, over the passes.
    for number in range(1, args.worker_passes + 1):
        for key, rules, phase in WORKER_CONFIGS:
            label = "all rules" if rules == ALL_RULES else f"BORDERMON_RULES={rules}"
            first = number == 1
            measure(
                run,
                key if first else f"{key} pass {number}",
                f"bordermon worker, {label}" + ("" if first else f" (pass {number})"),
                results,
                lambda rules=rules, phase=f"{phase}-p{number}", first=first: worker_row(
                    rules, phase, first
                ),
            )
    profile: list[str] = []
    if args.profile_worker:
        profile = profile_worker(run, results, topic, expect)
    measure(run, "7", "peer (faust Tables)", results, lambda: measure_peer(run, topic, expect))
    if args.replay_events:
        measure_replay_at_scale(run, results, args.replay_events, args.replay_jobs)
    for key, rules in REPLAY_CONFIGS:
        label = "all rules" if rules == ALL_RULES else f"--rules {rules}"
        measure(
            run,
            key,
            f"bordermon replay, {label}",
            results,
            lambda rules=rules: measure_replay(path, rules, results),
        )
    measure(
        run,
        "5",
        "Redis memory",
        results,
        lambda: measure_redis(run, args.redis_consignments, seed=args.seed + 1),
    )
    for index, rate in enumerate(args.rates):
        key = "4" + " bcd"[index].strip()

        def latency(rate: float = rate, index: int = index) -> Row:
            return measure_latency(
                run,
                rate,
                args.latency_seconds,
                args.seed + 2 + index,
                args.compression,
                results=results,
            )

        measure(run, key, f"scan-to-flag latency at {rate:,.0f} events/s", results, latency)
    results.notes += agreement(results)
    one, five, fifteen = os.getloadavg()
    results.notes.append(f"load average at the end: {one:.2f} {five:.2f} {fifteen:.2f}")
    results.notes.append(
        "events/s of rows 1, 2, 3, 3b, 3c, 7: first to last batch with every event already in the"
        " topic (start-up excluded). Rows 1, 2, 7 stamp time and CPU inside the consuming"
        " process; rows 3, 3b, 3c (the real worker, unchanged) are read from outside: its"
        " `/metrics` (crossings processed = `bordermon_events_consumed_total` +"
        " `bordermon_events_rejected_total`; both stages' messages ="
        " `bordermon_batch_size_sum`) and its /proc CPU time, sampled together, from the first"
        " sample showing progress to the last taken while work was still waiting in the"
        " crossings topic or, with all rules, in the links topic (so row 3 includes the link"
        " stage matching every sighting); its committed offsets reaching the end of the topics"
        " are then checked. Rows 3, 3b, 3c: events/s and CPU per M are per *crossing*."
        " Rows 6, 6b, 6c: wall time of the whole command. Row 4: the offered rate achieved;"
        " latency is the flag's arrival at a `FlagSubscriber` minus the produce time of the"
        " later-produced of the scans it reports (its exit alone for export-without-permit)."
        " CPU s per M events: the process's own CPU (all its threads); the"
        " broker's and Redis's CPU is not in it."
    )
    return render(results, header) + (["", *profile] if profile else [])


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--events", type=int, help="events to simulate (default 200,000)")
    parser.add_argument("--quick", action="store_true", help="a smoke run of ~20,000 events")
    parser.add_argument("--bootstrap", default="127.0.0.1:9092", help="Kafka (default %(default)s)")
    parser.add_argument(
        "--redis-url", default="redis://127.0.0.1:6379", help="Redis (default %(default)s)"
    )
    parser.add_argument(
        "--rates",
        default="2000,1000,500",
        help="latency: offered events/s, one row each, comma-separated (default %(default)s)",
    )
    parser.add_argument("--latency-seconds", type=float, help="latency: seconds (default 30)")
    parser.add_argument(
        "--redis-consignments", type=int, help="Redis memory: consignments (default events / 2)"
    )
    parser.add_argument(
        "--compression",
        default="lz4",
        choices=("lz4", "none", "gzip", "snappy", "zstd"),
        help="producer compression of the events (default lz4, the scanner SDK's)",
    )
    parser.add_argument(
        "--worker-passes",
        type=int,
        default=1,
        help="measure the three worker rule sets this many times, in turn (default 1)",
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the extra simulated sets")
    parser.add_argument(
        "--profile-worker",
        action="store_true",
        help="also run the worker under pyinstrument (a separate pass); reports in run/bench/",
    )
    parser.add_argument(
        "--replay-events",
        type=int,
        default=None,
        help="rows 8-8c: replay at scale over this many simulated events, beside a bare"
        " orjson.loads loop over the same file (default 1,000,000; 0 skips them)",
    )
    parser.add_argument(
        "--replay-jobs",
        type=int,
        default=None,
        help="N of `replay --jobs N` in row 8c (default: the usable CPUs)",
    )
    parser.add_argument("--save", type=Path, help="where to write the result (default run/bench/)")
    args = parser.parse_args(argv)
    if args.events is None:
        args.events = 20_000 if args.quick else 200_000
    if args.replay_events is None:
        args.replay_events = 0 if args.quick else 1_000_000
    args.rates = [float(rate) for rate in args.rates.split(",") if rate.strip()][:4]
    if args.latency_seconds is None:
        args.latency_seconds = 10.0 if args.quick else 30.0
    if args.redis_consignments is None:
        args.redis_consignments = max(1000, args.events // 2)
    if args.save is None:
        suffix = "-quick" if args.quick else ""
        args.save = REPO / "run" / "bench" / f"pipeline-{date.today().isoformat()}{suffix}.md"
    return args


def main(argv: Sequence[str]) -> int:
    if argv[:1] == ["--child"]:
        return child_main(argv[1:])
    args = parse_args(argv)

    def interrupted(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    try:
        with Run(args.bootstrap, args.redis_url) as run:
            note(f"run {run.id}: {args.events:,} events, logs in {run.tmp}")
            output = run_benchmark(args, run)
    except KeyboardInterrupt:
        note("interrupted; everything created was removed")
        return 130
    except BenchError as error:
        note(f"failed: {error}")
        return 1
    text = "\n".join(output) + "\n"
    print(text, end="")
    args.save.parent.mkdir(parents=True, exist_ok=True)
    args.save.write_text(text)
    note(f"saved to {args.save}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
