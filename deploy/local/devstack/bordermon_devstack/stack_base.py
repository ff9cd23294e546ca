"""What the local dev stack (`bordermon_devstack.stack`) and its secure variant
(`bordermon_devstack.secure_stack`) share: the error, the probe answer, the services' context, apt
installs and the Kafka probe. Both import this module; neither imports the other's caller.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any


class StackError(Exception):
    """A problem a person can fix; the message says what and how, in a line or two."""


class Answer(Enum):
    UP = "up"
    """Something listens on the port and answers like the service."""
    FOREIGN = "foreign"
    """Something listens on the port but does not (yet) answer like the service."""
    DOWN = "down"
    """Nothing listens on the port."""


@dataclass(frozen=True)
class Probe:
    answer: Answer
    detail: str = ""


@dataclass(frozen=True)
class Context:
    """What a service's hooks need: where things go, its port, and how to talk to people."""

    repo: Path | None
    run_dir: Path
    say: Callable[[str], None]
    secure: bool = False
    """Kafka with TLS + SASL/SCRAM + ACLs, Redis with TLS + ACL users (secure_stack)."""
    kafka_libs: Path | None = None
    """Where the broker's jars are (default <run>/kafka-libs; $BORDERMON_STACK_KAFKA_LIBS)."""

    @property
    def logs_dir(self) -> Path:
        return self.run_dir / "logs"

    def log(self, name: str) -> Path:
        return self.logs_dir / f"{name}.log"

    def data(self, name: str) -> Path:
        return self.run_dir / name

    def pidfile(self, name: str) -> Path:
        return self.run_dir / name / f"{name}.pid"

    def deploy_file(self, name: str) -> Path:
        if self.repo is None:
            raise StackError(
                f"cannot find deploy/local/{name}: run this from a bordermon checkout"
                " (an installed package does not carry deploy/local/)"
            )
        return self.repo / "deploy" / "local" / name


def _tcp_open(port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def _pretty(path: Path) -> str:
    """A path relative to the working directory when it is below it: shorter to read."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _run_logged(argv: Sequence[str], log: Path) -> int:
    """Run argv to completion with its output appended to log; its exit code."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.run(
            argv, check=False, stdin=subprocess.DEVNULL, stdout=out, stderr=out
        ).returncode


def ensure_debian_package(executable: str, package: str, ctx: Context) -> str:
    """The path of `executable`, installing Debian's `package` with apt-get when it is missing."""
    found = shutil.which(executable) or shutil.which(executable, path="/usr/sbin:/usr/bin")
    if found:
        return found
    by_hand = f"sudo apt-get install -y --no-install-recommends {package}"
    apt = shutil.which("apt-get")
    if apt is None:
        raise StackError(
            f"{executable} is missing and there is no apt-get here: install {package}"
            f" with your package manager and re-run"
        )
    prefix: list[str] = []
    if os.geteuid() != 0:
        sudo = shutil.which("sudo")
        if sudo is None:
            raise StackError(f"{executable} is missing: install it as root with `{by_hand}`")
        prefix = [sudo] if sys.stdin.isatty() else [sudo, "-n"]
    apt_log = ctx.log("apt")
    apt_log.parent.mkdir(parents=True, exist_ok=True)
    ctx.say(f"{executable} is missing: installing Debian's {package} with apt-get (once)...")
    base = [*prefix, "env", "DEBIAN_FRONTEND=noninteractive", apt]
    install = [*base, "install", "-y", "--no-install-recommends", package]
    # A fresh machine may have no package lists yet: update only when the install fails.
    ok = _run_logged(install, apt_log) == 0 or (
        _run_logged([*base, "update"], apt_log) == 0 and _run_logged(install, apt_log) == 0
    )
    found = shutil.which(executable) or shutil.which(executable, path="/usr/sbin:/usr/bin")
    if not ok or not found:
        raise StackError(
            f"could not install {package} with apt-get (see {_pretty(apt_log)});"
            f" install it by hand: {by_hand}"
        )
    return found


_QUIET_LOGGER = logging.getLogger("bordermon_devstack.librdkafka")

_QUIET_LOGGER.addHandler(logging.NullHandler())

_QUIET_LOGGER.propagate = False


def probe_kafka(port: int, timeout: float, security: dict[str, Any] | None = None) -> Probe:
    """UP when a Kafka AdminClient can list topics through 127.0.0.1:port (with `security`:
    librdkafka settings to log in with, on the secure stack)."""
    if not _tcp_open(port, min(timeout, 1.0)):
        return Probe(Answer.DOWN)
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    config: dict[str, Any] = {
        **(security or {}),
        "bootstrap.servers": f"127.0.0.1:{port}",
        "logger": _QUIET_LOGGER,
    }
    admin = AdminClient(config)
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as error:
        return Probe(Answer.FOREIGN, f"no Kafka metadata: {error.args[0]}")
    if not metadata.brokers:
        return Probe(Answer.FOREIGN, "no brokers in the metadata")
    return Probe(Answer.UP)
