"""Running real `bordermon worker` processes (and ones with a planted fault) for the integration
tiers, the chaos suite and the benchmarks."""

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
FAULTY_WORKERS = Path(__file__).with_name("faulty_workers")
POISONED_WORKER_COMMAND = (sys.executable, str(FAULTY_WORKERS / "poisoned_worker.py"))
"""A worker with a planted bug: events whose id starts with `poison` fail to apply."""
DYING_WORKER_COMMAND = (sys.executable, str(FAULTY_WORKERS / "dying_worker.py"))
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
