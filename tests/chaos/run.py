"""The chaos suite (issue 9): SPEC §6 under real faults, on a private stack, reconciled exactly.

    python tests/chaos/run.py --short            # CI profile, about 3 minutes
    python tests/chaos/run.py --report run.json  # the longer default profile

It starts its own Kafka and Redis (`bordermon stack up kafka redis` with a private run folder
and free ports, so the shared stack is never touched), creates the topics, runs poisoned
`bordermon worker`s (tests/support/faulty_workers/poisoned_worker.py: applying an event whose
id starts with `poison` raises), and publishes a simulated workload in chunks, with malformed
lines and planted poison events among the good ones. Between and during chunks it injects faults:
workers SIGKILLed and restarted, a second worker joining and leaving (SIGTERM), Redis and Kafka
SIGKILLed and brought back with `bordermon stack up`, a worker SIGSTOPped past its session
timeout while the other takes over, then SIGCONTed.

Then it waits until the group has committed every offset and reconciles what is in Kafka and
Redis against the workload's ground truth (see reconcile.py). It exits 0 only when every check
holds; each failed check is one line. See docs/reliability.md.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DEVSTACK = REPO / "deploy" / "local" / "devstack"
# This checkout's code (bordermon and the local dev stack), for this process, the workers and the
# `stack` commands it starts (a venv's editable install may point at another checkout).
os.environ["PYTHONPATH"] = os.pathsep.join(
    [
        str(REPO / "services"),
        str(DEVSTACK),
        *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep)),
    ]
)
sys.path[:0] = [str(REPO / "services"), str(REPO / "tests")]

import redis  # noqa: E402
from reconcile import (  # noqa: E402
    committed_offsets,
    end_offsets,
    reconcile,
    state_revisions,
)
from workload import Workload, build  # noqa: E402

from bordermon.admin.topics import apply_topics, load_declarations  # noqa: E402
from bordermon.processor.app import REBALANCE_TIMEOUT_S, SESSION_TIMEOUT_S  # noqa: E402
from support.kafka_io import publish_lines  # noqa: E402
from support.workers import WorkerProcess, free_port, worker_env  # noqa: E402

GROUP = "bordermon-chaos"
WORKER_COMMAND = (sys.executable, str(HERE / "chaos_worker.py"))
"""support/faulty_workers/poisoned_worker.py, its apply slowed by BORDERMON_CHAOS_APPLY_MS."""


@dataclass(frozen=True)
class Profile:
    name: str
    consignments: int
    poison: int
    steps: tuple[str, ...]
    drain_timeout_s: float


STEPS = ("kill-worker", "join", "leave", "pause", "kill-redis", "kill-kafka")
SHORT = Profile(
    "short",
    consignments=800,
    poison=6,
    steps=("kill-worker", "join", "pause", "leave", "kill-redis", "kill-kafka", "kill-worker"),
    drain_timeout_s=120,
)
FULL = Profile(
    "full",
    consignments=2500,
    poison=15,
    steps=(
        "kill-worker",
        "join",
        "kill-worker",
        "pause",
        "kill-worker",
        "leave",
        "kill-redis",
        "kill-worker",
        "kill-kafka",
        "join",
        "pause",
        "kill-redis",
        "kill-worker",
        "leave",
        "kill-kafka",
        "kill-worker",
    ),
    drain_timeout_s=240,
)


class Progress:
    def __init__(self) -> None:
        self.started = time.monotonic()

    def __call__(self, line: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f}s] {line}", flush=True)


# --- the private stack ------------------------------------------------------------------------


def _cached_kafka_jars() -> Path | None:
    """Kafka jars Maven already resolved for this pom (here, or in the main checkout of this
    git worktree), so that a private run folder does not download them again."""
    digest = hashlib.sha256((REPO / "deploy" / "local" / "pom.xml").read_bytes()).hexdigest()
    candidates = [os.environ.get("BORDERMON_CHAOS_KAFKA_LIBS", ""), str(REPO / "run/kafka-libs")]
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        common = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--path-format=absolute", "--git-common-dir"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        candidates.append(str(Path(common).parent / "run" / "kafka-libs"))
    for candidate in filter(None, candidates):
        with contextlib.suppress(OSError):
            if (Path(candidate) / ".resolved-from").read_text().strip() == digest:
                return Path(candidate)
    return None


class PrivateStack:
    """Kafka and Redis from `bordermon stack`, in a run folder and on ports of their own."""

    def __init__(self, run_dir: Path, say: Callable[[str], None]) -> None:
        self.run_dir = run_dir
        self.say = say
        self.kafka_port, self.redis_port = free_port(), free_port()
        self.env = {
            **os.environ,
            "BORDERMON_RUN_DIR": str(run_dir),
            "BORDERMON_STACK_KAFKA_PORT": str(self.kafka_port),
            "BORDERMON_STACK_KAFKA_CONTROLLER_PORT": str(free_port()),
            "BORDERMON_STACK_REDIS_PORT": str(self.redis_port),
            "BORDERMON_STACK_PROMETHEUS_PORT": str(free_port()),
        }
        self.bootstrap = f"127.0.0.1:{self.kafka_port}"
        self.redis_url = f"redis://127.0.0.1:{self.redis_port}/0"
        self.redis_up = False

    def prepare(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        libs = self.run_dir / "kafka-libs"
        jars = _cached_kafka_jars()
        if jars is not None and not libs.exists():
            libs.symlink_to(jars, target_is_directory=True)
            self.say(f"stack: using the Kafka jars cached in {jars}")

    def _stack(self, *args: str) -> str:
        # `bordermon stack`, run as the dev stack's own module: the same command, with this
        # checkout's code, whether or not the venv has the dev stack's entry point installed.
        done = subprocess.run(
            [sys.executable, "-m", "bordermon_devstack", *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"bordermon stack {' '.join(args)} failed:\n{done.stderr}")
        return done.stdout

    def up(self, *services: str) -> None:
        out = self._stack("up", *services)
        for line in out.splitlines():
            if ": up at" in line or "already up" in line:
                self.say(f"stack: {line}")
        if "redis" in services:
            self._redis_durable()
            self.redis_up = True

    def _redis_durable(self) -> None:
        """Check that Redis runs with AOF and fsync on every write, as `bordermon stack` starts
        it (and set it, for a stack that predates that). Under `everysec` Redis may postpone an
        AOF write (up to 2 s, while a background fsync is slow) and still answer the client;
        with `always`, what a worker was told is saved is in the AOF before the reply."""
        client: redis.Redis[bytes] = redis.Redis.from_url(self.redis_url)
        try:
            client.config_set("appendfsync", "always")
            got = {_text(k): _text(v) for k, v in client.config_get("append*").items()}
            if got.get("appendonly") != "yes" or got.get("appendfsync") != "always":
                raise RuntimeError(f"the private Redis is not AOF with fsync always: {got}")
        finally:
            client.close()

    def pid(self, service: str) -> int:
        return int((self.run_dir / service / f"{service}.pid").read_text().strip())

    def kill(self, service: str) -> None:
        pid = self.pid(service)
        os.kill(pid, signal.SIGKILL)
        if service == "redis":
            self.redis_up = False
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            stat = Path(f"/proc/{pid}/stat")
            with contextlib.suppress(OSError, IndexError):
                if stat.read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    return
            time.sleep(0.1)
        raise RuntimeError(f"{service} (pid {pid}) still alive 15 s after SIGKILL")

    def down(self) -> None:
        self._stack("down", "kafka", "redis")


# --- workers ----------------------------------------------------------------------------------


@dataclass
class Worker:
    """One worker slot; each (re)start is a new process with its own log file."""

    name: str
    env: dict[str, str]
    logs_dir: Path
    process: WorkerProcess | None = None
    incarnation: int = 0
    logs: list[Path] = field(default_factory=list)
    paused: bool = False

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.process.poll() is None

    def start(self) -> float:
        started = time.monotonic()
        self.incarnation += 1
        log_path = self.logs_dir / f"worker-{self.name}-{self.incarnation}.log"
        self.logs.append(log_path)
        with log_path.open("ab") as log:
            popen = subprocess.Popen(
                list(WORKER_COMMAND), env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        self.process = WorkerProcess(popen, log_path)
        self.process.wait_ready(timeout=120)
        return time.monotonic() - started

    def kill(self) -> None:
        if self.process is not None:
            if self.paused:
                self.resume()
            self.process.kill()
            self.process = None

    def terminate(self) -> None:
        if self.process is not None:
            if self.paused:
                self.resume()
            self.process.stop()
            self.process = None

    def wait_on_cpu(self, timeout: float, sustained: float = 0.03) -> bool:
        """Wait until the worker's main thread (the event loop) has been running, not
        sleeping, for `sustained` seconds: applying a batch, rather than a short fetch."""
        assert self.process is not None
        stat = Path(f"/proc/{self.process.process.pid}/stat")
        deadline = time.monotonic() + timeout
        running_since: float | None = None
        while time.monotonic() < deadline:
            state = ""
            with contextlib.suppress(OSError, IndexError):
                state = stat.read_text().rsplit(")", 1)[1].split()[0]
            if state != "R":
                running_since = None
            elif running_since is None:
                running_since = time.monotonic()
            elif time.monotonic() - running_since >= sustained:
                return True
            time.sleep(0.001)
        return False

    def pause(self) -> None:
        assert self.process is not None
        self.process.process.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        assert self.process is not None
        self.process.process.send_signal(signal.SIGCONT)
        self.paused = False


# --- the run ----------------------------------------------------------------------------------


class ChaosRun:
    def __init__(self, args: argparse.Namespace, profile: Profile, say: Progress) -> None:
        self.args = args
        self.profile = profile
        self.say = say
        self.rng = random.Random(args.seed)
        self.run_dir = Path(args.run_dir or tempfile.mkdtemp(prefix="bordermon-chaos-"))
        self.stack = PrivateStack(self.run_dir / "stack", say)
        self.topics = {d.role: d.name for d in load_declarations()}
        self.workers: dict[str, Worker] = {}
        self.faults: list[dict[str, Any]] = []
        self.unexpected_exits: list[str] = []
        self.failures: list[str] = []
        self.revisions: dict[bytes, int] = {}
        self.revision_samples = 0
        self.published = 0

    # helpers

    def sleep(self, low: float, high: float) -> None:
        """A random pause (seeded): faults land at different points of processing."""
        time.sleep(self.rng.uniform(low, high))

    def publish(self, lines: Sequence[bytes]) -> None:
        if lines:
            publish_lines(self.stack.bootstrap, self.topics["crossings"], lines)
            self.published += len(lines)

    def worker(self, name: str) -> Worker:
        if name not in self.workers:
            env = worker_env(
                self.stack.bootstrap,
                self.stack.redis_url,
                self.topics,
                GROUP,
                BORDERMON_BATCH_MAX_EVENTS=str(self.args.batch_max_events),
                BORDERMON_CHAOS_APPLY_MS=str(self.args.apply_ms),
            )
            logs = self.run_dir / "logs"
            logs.mkdir(parents=True, exist_ok=True)
            self.workers[name] = Worker(name, env, logs)
        return self.workers[name]

    def start(self, name: str, why: str) -> None:
        took = self.worker(name).start()
        self.say(f"  worker {name}#{self.workers[name].incarnation} {why} (ready in {took:.1f}s)")

    def running(self) -> list[Worker]:
        return [w for w in self.workers.values() if w.process is not None]

    def check_exits(self) -> None:
        """A worker that exited by itself is a finding; it is restarted so the run goes on."""
        for worker in self.running():
            assert worker.process is not None
            code = worker.process.process.poll()
            if code is not None:
                note = f"worker {worker.name}#{worker.incarnation} exited by itself (code {code})"
                self.unexpected_exits.append(f"{note}; log {worker.process.log_path}")
                self.say(f"  ! {note}; restarting it")
                worker.process = None
                self.start(worker.name, "restarted after its own exit")

    def sample_revisions(self, after: str) -> None:
        """No stored state may lose revisions or vanish, across any fault (Redis kills too)."""
        if not self.stack.redis_up:
            return
        now = state_revisions(self.stack.redis_url)
        back = [k for k, r in self.revisions.items() if now.get(k, 0) < r]
        if back:
            shown = ", ".join(
                f"{k.decode(errors='replace')} {self.revisions[k]}->{now.get(k, 'gone')}"
                for k in back[:5]
            )
            self.failures.append(
                f"after {after}: {len(back)} state(s) went back in revision or vanished: {shown}"
            )
        self.revisions = {k: max(r, self.revisions.get(k, 0)) for k, r in now.items()}
        self.revision_samples += 1

    # fault steps: each publishes its chunk with the fault around it

    @contextlib.contextmanager
    def trickling(self, lines: Sequence[bytes], seconds: float = 3.0) -> Iterator[None]:
        """Publish `lines` in ten parts spread over `seconds` in the background while the body
        injects a fault, so that the fault lands while workers are processing."""
        errors: list[BaseException] = []

        def publish_all() -> None:
            try:
                for part in _split(lines, 10):
                    self.publish(part)
                    time.sleep(seconds / 10)
            except BaseException as error:
                errors.append(error)

        thread = threading.Thread(target=publish_all, name="trickle", daemon=True)
        thread.start()
        try:
            yield
        finally:
            thread.join()
        if errors:
            raise errors[0]

    # fault steps: each publishes its chunk with the fault around it

    def step_kill_worker(self, chunk: Sequence[bytes]) -> str:
        victim = self.rng.choice(sorted(self.running(), key=lambda w: w.name))
        with self.trickling(chunk):
            self.sleep(0.3, 2.5)
            victim.kill()
            self.say(f"  SIGKILL worker {victim.name}#{victim.incarnation} while it processes")
            self.start(victim.name, "restarted")
        return f"SIGKILL worker {victim.name}, restarted"

    def step_join(self, chunk: Sequence[bytes]) -> str:
        with self.trickling(chunk):
            self.start("B", "joined the group")
        return "worker B joined"

    def step_leave(self, chunk: Sequence[bytes]) -> str:
        with self.trickling(chunk):
            self.sleep(0.3, 2.5)
            if "B" in self.workers and self.workers["B"].process is not None:
                self.workers["B"].terminate()
                self.say("  SIGTERM worker B while it processes: it left the group")
        return "worker B left (SIGTERM)"

    def step_pause(self, chunk: Sequence[bytes]) -> str:
        if self.worker("B").process is None:
            self.start("B", "joined (to take over from the paused worker)")
        victim = self.worker("A")
        paused_s = SESSION_TIMEOUT_S + self.args.pause_extra_s
        # A burst, then the stop at a moment A's event loop is on the CPU: most likely in the
        # middle of a batch, so that its next save after SIGCONT is the one fenced.
        burst = len(chunk) * 2 // 3
        self.publish(chunk[:burst])
        busy = victim.wait_on_cpu(3.0)
        victim.pause()
        self.say(
            f"  SIGSTOP worker A {'while on the CPU ' if busy else ''}for {paused_s:.0f}s"
            f" (session timeout {SESSION_TIMEOUT_S}s)"
        )
        self.publish(chunk[burst:])
        time.sleep(paused_s)
        victim.resume()
        self.say("  SIGCONT worker A")
        time.sleep(3)
        return f"SIGSTOP worker A for {paused_s:.0f}s, then SIGCONT"

    def step_kill_redis(self, chunk: Sequence[bytes]) -> str:
        with self.trickling(chunk):
            self.sleep(0.3, 1.5)
            self.stack.kill("redis")
            self.say("  SIGKILL redis while workers process")
            time.sleep(4)  # the workers meet the outage and hold their batches
            self.stack.up("redis")
        return "SIGKILL redis, stack up after 4s"

    def step_kill_kafka(self, chunk: Sequence[bytes]) -> str:
        self.publish(chunk)  # all of it first: the publisher does not outlive the broker
        self.sleep(0.0, 0.3)
        self.stack.kill("kafka")
        self.say("  SIGKILL kafka while workers process")
        time.sleep(2)
        self.stack.up("kafka")
        return "SIGKILL kafka, stack up after 2s"

    # the whole run

    def run(self) -> dict[str, Any]:
        profile, args = self.profile, self.args
        self.say(f"profile {profile.name}, seed {args.seed}, run folder {self.run_dir}")
        load: Workload = build(profile.consignments, args.seed, profile.poison, args.malformed)
        self.say(
            f"workload: {len(load.lines)} lines, {load.consignments} consignments,"
            f" {load.malformed} malformed, {len(load.poison)} poison,"
            f" {len(load.expected_flags)} expected flags"
        )
        self.stack.prepare()
        self.stack.up("kafka", "redis")
        report = apply_topics(self.stack.bootstrap)
        if not report.ok:
            raise RuntimeError("could not create the topics:\n" + "\n".join(report.lines()))
        self.start("A", "started")
        chunks = _split(load.lines, len(profile.steps) + 1)
        for number, (step, chunk) in enumerate(zip(profile.steps, chunks, strict=False), 1):
            self.check_exits()
            self.say(f"step {number}/{len(profile.steps)} {step}: {len(chunk)} lines")
            started = time.monotonic()
            what = getattr(self, "step_" + step.replace("-", "_"))(chunk)
            self.faults.append(
                {"step": number, "fault": step, "what": what, "lines": len(chunk),
                 "seconds": round(time.monotonic() - started, 1)}
            )  # fmt: skip
            self.sample_revisions(f"step {number} {step}")
        self.check_exits()
        self.say(f"last chunk: {len(chunks[-1])} lines, no fault")
        self.publish(chunks[-1])
        caught_up = self.drain(profile.drain_timeout_s)
        self.sample_revisions("the drain")
        for worker in self.running():
            worker.terminate()
        self.say("workers stopped (SIGTERM); reconciling")
        result = reconcile(
            bootstrap=self.stack.bootstrap,
            redis_url=self.stack.redis_url,
            topics=self.topics,
            group=GROUP,
            published=load.lines,
            expected_reasons=load.expected_reasons,
            expected_flags=load.expected_flags,
            worker_logs=[log for w in self.workers.values() for log in w.logs],
        )
        failures = list(self.failures)
        if not caught_up:
            failures.append(
                f"the group did not commit every offset within {profile.drain_timeout_s}s"
            )
        failures += [f"unexpected exit: {line}" for line in self.unexpected_exits]
        failures += result["failures"]
        result.update(
            ok=not failures,
            failures=failures,
            profile=profile.name,
            seed=args.seed,
            machine=_machine(),
            run_folder=str(self.run_dir),
            stack={"kafka": self.stack.bootstrap, "redis": self.stack.redis_url, "group": GROUP},
            workload={
                "lines": len(load.lines),
                "published": self.published,
                "consignments": load.consignments,
                "malformed": load.malformed,
                "poison": len(load.poison),
                "expected_flags": len(load.expected_flags),
            },
            faults=self.faults,
            timeouts={
                "session_s": SESSION_TIMEOUT_S,
                "rebalance_s": REBALANCE_TIMEOUT_S,
                "pause_s": SESSION_TIMEOUT_S + args.pause_extra_s,
            },
            revision_samples=self.revision_samples,
            incarnations={w.name: w.incarnation for w in self.workers.values()},
            unexpected_exits=self.unexpected_exits,
        )
        result["workers"]["unexpected_exits"] = len(self.unexpected_exits)
        return result

    def drain(self, timeout: float) -> bool:
        """Wait until the group's committed offset is the end offset on every partition."""
        deadline = time.monotonic() + timeout
        last_say = 0.0
        while True:
            self.check_exits()
            lag: dict[str, int] = {}
            for role in ("crossings", "links"):
                ends = end_offsets(self.stack.bootstrap, self.topics[role])
                committed = committed_offsets(self.stack.bootstrap, self.topics[role], GROUP)
                for p, end in ends.items():
                    if end != max(committed.get(p, 0), 0):
                        lag[f"{role}:{p}"] = end - max(committed.get(p, 0), 0)
            if not lag:
                self.say("drained: every partition of crossings and links committed to its end")
                return True
            if time.monotonic() > deadline:
                self.say(f"  ! not drained after {timeout:.0f}s; lag per partition {lag}")
                return False
            if time.monotonic() - last_say > 5:
                self.say(f"  draining: {sum(lag.values())} uncommitted, per partition {lag}")
                last_say = time.monotonic()
            time.sleep(1)

    def cleanup(self) -> None:
        for worker in self.workers.values():
            with contextlib.suppress(Exception):
                worker.kill()
        if self.args.keep:
            self.say(f"--keep: stack left running (BORDERMON_RUN_DIR={self.stack.run_dir})")
            return
        with contextlib.suppress(Exception):
            self.stack.down()
            self.say("stack stopped")
        if not self.args.run_dir and not self.args.keep_data:
            shutil.rmtree(self.run_dir / "stack", ignore_errors=True)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _split(lines: Sequence[bytes], parts: int) -> list[Sequence[bytes]]:
    size = -(-len(lines) // parts)
    return [lines[i * size : (i + 1) * size] for i in range(parts)]


def _machine() -> dict[str, Any]:
    mem_kb = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    return {
        "nproc": os.cpu_count(),
        "ram_gib": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def print_report(result: dict[str, Any], say: Callable[[str], None]) -> None:
    t = result["totals"]
    say("reconciliation report")
    say(
        f"  read {t['read']} = applied {t['applied']} + duplicates {t['duplicates']}"
        f" + dead-lettered {t['dead_lettered']}  (published {result['workload']['published']})"
    )
    for p, c in result["partitions"].items():
        say(
            f"  partition {p}: end {c['end']} committed {c['committed']} applied {c['applied']}"
            f" duplicates {c['duplicates']} dead-lettered {c['dead_lettered']}"
        )
    d, f, w, k = result["dead_letters"], result["flags"], result["workers"], result["links"]
    say(
        f"  links topic: {k['records']} link sightings, {k['committed']} committed,"
        f" {k['dead_lettered']} dead-lettered"
    )
    say(
        f"  dead letters: {d['records']} records for {d['distinct_offsets']} offsets"
        f" ({d['redelivered']} re-deliveries); by reason {d['by_reason']}"
    )
    say(
        f"  flags: {f['distinct']} distinct of {f['expected']} expected, {f['records']} records"
        f" ({f['redeliveries']} re-deliveries), missing {f['missing']},"
        f" unexpected {f['unexpected']}; relabel flags reporting another entry than replay"
        f" (arrival order, allowed) {len(f['relabel_order_dependent'])}"
    )
    say(
        f"  workers: incarnations {result['incarnations']}; fenced saves {w['fenced_saves']}"
        f" ({w['messages_left_to_new_owner']} messages left to the new owner); retries while"
        f" Redis down {w['store_unavailable_retries']}, while Kafka down"
        f" {w['kafka_unavailable_retries']}; save conflicts {w['save_conflicts']};"
        f" poison dead-lettered (logged) {w['poison_logged']}; unexpected exits"
        f" {w['unexpected_exits']}"
    )
    s = result["states"]
    say(
        f"  states: {s['stored']} stored, max revision {s['max_revision']},"
        f" {s['pending_left']} with a pending flag; revision samples {result['revision_samples']};"
        f" owner claims per partition: crossings {s['owner_claims']},"
        f" links {s['link_owner_claims']}"
    )
    if result["ok"]:
        say("OK: everything reconciles")
    else:
        say(f"FAILED: {len(result['failures'])} check(s)")
        for line in result["failures"]:
            print(f"FAIL {line}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python tests/chaos/run.py",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="Exit status: 0 when everything reconciles, 1 when a check fails, 2 on a setup"
        " error. The run folder keeps the workers' logs.",
    )
    parser.add_argument(
        "--short", action="store_true", help="the CI profile (800 consignments, 7 faults)"
    )
    parser.add_argument("--seed", type=int, default=9, help="workload and fault timing seed")
    parser.add_argument("--report", type=Path, metavar="FILE", help="write the report as JSON")
    parser.add_argument(
        "--keep", action="store_true", help="leave the private stack running at the end"
    )
    parser.add_argument(
        "--run-dir", metavar="DIR", help="where the stack, its data and the logs go (default: tmp)"
    )
    parser.add_argument(
        "--keep-data", action="store_true", help="keep the stack data (Kafka log, AOF) afterwards"
    )
    parser.add_argument(
        "--batch-max-events", type=int, default=50, help="workers' batch size (default 50)"
    )
    parser.add_argument(
        "--apply-ms",
        type=float,
        default=2.0,
        help="busy CPU per applied event in the workers, so faults land mid-batch (default 2)",
    )
    parser.add_argument(
        "--malformed", type=float, default=0.01, help="simulator malformed_rate (default 0.01)"
    )
    parser.add_argument(
        "--pause-extra-s",
        type=float,
        default=5.0,
        help=f"SIGSTOP lasts the session timeout ({SESSION_TIMEOUT_S:.0f}s) plus this",
    )
    parser.add_argument(
        "--steps",
        help=f"comma-separated fault steps instead of the profile's (from: {', '.join(STEPS)})",
    )
    args = parser.parse_args(argv)
    profile = SHORT if args.short else FULL
    if args.steps:
        steps = tuple(s.strip() for s in args.steps.split(",") if s.strip())
        unknown = [s for s in steps if s not in STEPS]
        if unknown:
            parser.error(f"unknown steps {unknown}; known: {', '.join(STEPS)}")
        profile = Profile(profile.name + "+steps", profile.consignments, profile.poison, steps,
                          profile.drain_timeout_s)  # fmt: skip
    say = Progress()
    chaos = ChaosRun(args, profile, say)
    try:
        result = chaos.run()
    except Exception as error:
        say(f"setup or run error: {type(error).__name__}: {error}")
        chaos.cleanup()
        return 2
    except KeyboardInterrupt:
        chaos.cleanup()
        return 130
    result["seconds"] = round(time.monotonic() - say.started, 1)
    chaos.cleanup()
    print_report(result, say)
    say(f"workers' logs: {chaos.run_dir / 'logs'}")
    if args.report:
        args.report.write_text(json.dumps(result, indent=2, default=str) + "\n")
        say(f"report written to {args.report}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
