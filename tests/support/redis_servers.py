"""A redis-server of a test's (or a benchmark's) own, on a free port: to kill and restart, or
to measure, without touching the shared one."""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from support.workers import free_port

REDIS_SERVER = "/usr/bin/redis-server"
"""Where the local stack's apt install puts it (`bordermon stack up` installs it)."""


def redis_server_binary() -> str | None:
    """The redis-server to run: on PATH, else the stack's; None when there is none."""
    binary = shutil.which("redis-server") or REDIS_SERVER
    return binary if Path(binary).exists() else None


class RedisServer:
    """A redis-server on a free port of 127.0.0.1 with its data in `data_dir`. `durable`: AOF
    with an fsync on every write, so that its data survives a SIGKILL; else no persistence."""

    def __init__(self, data_dir: Path, binary: str = REDIS_SERVER, *, durable: bool) -> None:
        self.port = free_port()
        self.argv = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        if durable:
            self.argv += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            self.argv += ["--appendonly", "no"]
        self.argv += ["--dir", str(data_dir)]
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, database: int | None = None) -> str:
        base = f"redis://127.0.0.1:{self.port}"
        return base if database is None else f"{base}/{database}"

    def start(self, timeout: float = 15.0) -> None:
        """Start it (again, on the same port and data) and wait until it answers."""
        self.process = subprocess.Popen(
            self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                redis.Redis.from_url(self.url(), socket_connect_timeout=1).ping()
                return
            except redis.RedisError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{self.argv[0]} did not start on port {self.port}"
                    ) from None
                time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final save."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@contextmanager
def private_redis(binary: str = REDIS_SERVER) -> Iterator[str]:
    """A redis-server of our own on a free port, without persistence; yields its URL."""
    with tempfile.TemporaryDirectory(prefix="bordermon-redis-") as data_dir:
        server = RedisServer(Path(data_dir), binary, durable=False)
        server.start()
        try:
            yield server.url()
        finally:
            server.stop()
