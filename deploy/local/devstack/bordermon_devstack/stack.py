"""Run the local stack bordermon needs (Kafka, Redis, Prometheus) on loopback, without Docker.

`bordermon stack up` starts what is not already running, waits until each service really
answers, and is safe to repeat; `down` stops what it started; `status` exits 0 only when every
service answers. Kafka is a real Apache Kafka 4 broker (single KRaft node) whose jars Maven
resolves once from deploy/local/pom.xml; Redis and Prometheus are Debian's redis-server and
prometheus, installed with apt-get when missing. Prometheus scrapes the local worker(s) with the
alert rules of deploy/prometheus/rules loaded. Data, pid files and logs live in the run folder
(<repo>/run, or $BORDERMON_RUN_DIR); ports default to 9092 (controller 9093), 6379 and 9090,
overridable with BORDERMON_STACK_KAFKA_PORT, BORDERMON_STACK_KAFKA_CONTROLLER_PORT,
BORDERMON_STACK_REDIS_PORT and BORDERMON_STACK_PROMETHEUS_PORT.

`--secure` (or BORDERMON_STACK_SECURE=1) runs Kafka with TLS, SASL/SCRAM and ACLs and Redis with
TLS and ACL users instead, in <repo>/run/secure on ports 9094/9095 and 6380 by default: see
bordermon_devstack.secure_stack.

Why not Docker: the dev and CI machines have no Docker engine, but they have Java, Maven and apt,
and a stack that starts in seconds without one keeps integration tests honest (real broker, real
Redis) on every machine. See deploy/local/README.md.

A development tool, not part of the bordermon package or image: it lives in deploy/local/devstack
(`source deploy/local/bootstrap.sh` installs it beside bordermon) and plugs the `stack` command
into `bordermon` through the `bordermon.commands` entry point.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import string
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from bordermon.admin import credentials
from bordermon_devstack import secure_stack
from bordermon_devstack.stack_base import (
    Answer,
    Context,
    Probe,
    StackError,
    _pretty,
    _run_logged,
    _tcp_open,
    ensure_debian_package,
    probe_kafka,
)

RUN_DIR_ENV = "BORDERMON_RUN_DIR"
DEFAULT_TIMEOUT_S = 120.0
"""How long `up` waits for a service to answer: a cold JVM on a busy 2-core box is slow."""
STOP_TIMEOUT_S = 45.0
"""How long `down` waits after SIGTERM before SIGKILL (Kafka flushes and closes its logs)."""
LOG_ROTATE_BYTES = 20 * 1024 * 1024
"""A service log larger than this is moved to <name>.log.1 when the service starts again."""

KAFKA_HEAP_OPTS = ("-Xms256m", "-Xmx512m")
"""The broker's heap: Kafka's release default is 1 GiB, too much for a box shared with Redis,
workers and tests; 512 MiB is plenty for dev/CI traffic. KAFKA_HEAP_OPTS overrides it."""
KAFKA_JVM_OPTS = (
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)
"""The GC settings of Kafka's own start script, plus: die on OOM rather than limp."""
MIN_JAVA = 17


@dataclass(frozen=True)
class Service:
    """One service of the stack. To add one, write these hooks and append it to SERVICES."""

    name: str
    default_port: int
    port_env: str
    process_marker: str
    """Text in /proc/<pid>/cmdline that identifies our process (guards against pid reuse)."""
    probe: Callable[[int, float], Probe]
    """(port, timeout seconds) -> does something on 127.0.0.1:port answer like this service?"""
    prepare: Callable[[Context, int], None]
    """Install, resolve, configure, format: everything before the first start (idempotent)."""
    command: Callable[[Context, int], list[str]]
    """The argv that runs the service in the foreground, logging to stdout/stderr."""
    url: Callable[[int], str]
    """How clients address it (Kafka bootstrap, Redis URL, ...)."""
    start_timeout: float = DEFAULT_TIMEOUT_S

    def port(self) -> int:
        return _port_from_env(self.port_env, self.default_port)

    def address(self) -> str:
        return f"127.0.0.1:{self.port()}"


@dataclass(frozen=True)
class ServiceState:
    name: str
    address: str
    url: str
    up: bool
    pid: int | None
    """The pid of the process this stack started, when it is running."""
    log: Path
    detail: str = ""

    @property
    def managed(self) -> bool:
        return self.pid is not None


@dataclass(frozen=True)
class StackReport:
    services: tuple[ServiceState, ...]

    @property
    def all_up(self) -> bool:
        return all(s.up for s in self.services)

    def get(self, name: str) -> ServiceState:
        for state in self.services:
            if state.name == name:
                return state
        raise KeyError(name)

    @property
    def kafka_bootstrap(self) -> str:
        return self.get("kafka").url

    @property
    def redis_url(self) -> str:
        return self.get("redis").url

    @property
    def prometheus_url(self) -> str:
        return self.get("prometheus").url


# --- small helpers ----------------------------------------------------------------------------


def _port_from_env(env: str, default: int) -> int:
    text = os.environ.get(env, "").strip()
    if not text:
        return default
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise StackError(f"{env} must be a TCP port number (1-65535), got {text!r}")
    return int(text)


def find_repo() -> Path | None:
    """The bordermon checkout: above this module (deploy/local/devstack/bordermon_devstack, an
    editable install) or above the working directory."""
    here, cwd = Path(__file__).resolve(), Path.cwd().resolve()
    for candidate in (*here.parents, cwd, *cwd.parents):
        if (candidate / "deploy" / "local" / "pom.xml").is_file():
            return candidate
    return None


def run_dir_path(run_dir: Path | str | None = None) -> Path:
    """The run folder: the argument, else $BORDERMON_RUN_DIR, else <repo>/run."""
    if run_dir is not None:
        return Path(run_dir).resolve()
    env = os.environ.get(RUN_DIR_ENV, "").strip()
    if env:
        return Path(env).resolve()
    repo = find_repo()
    if repo is None:
        raise StackError(
            f"cannot find the bordermon checkout (deploy/local/pom.xml) to put run/ in:"
            f" run from the checkout or set {RUN_DIR_ENV}"
        )
    return repo / "run"


def _log_tail(path: Path, lines: int = 5) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 8192))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    tail = [line for line in text.splitlines() if line.strip()][-lines:]
    return "".join(f"\n    {line[:300]}" for line in tail)


def _alive(pid: int, marker: str) -> bool:
    """Is `pid` running and still our service (not a zombie, not a reused pid)?"""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)  # reap it if it happens to be our child
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    proc = Path(f"/proc/{pid}")
    if not proc.exists():
        return True  # no /proc (macOS): trust kill(0)
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (OSError, IndexError):
        return False
    if state in ("Z", "X"):
        return False
    # While the process is inside execve() its cmdline can read empty: alive, not yet ours.
    return marker in cmdline or not cmdline.strip()


def _managed_pid(service: Service, ctx: Context) -> int | None:
    """The pid from the service's pid file when that process still runs; clears stale files."""
    pidfile = ctx.pidfile(service.name)
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    if _alive(pid, service.process_marker):
        return pid
    pidfile.unlink(missing_ok=True)
    return None


def _spawn(argv: Sequence[str], log: Path, cwd: Path) -> int:
    """Start argv detached (own session, stdin closed, output appended to log); its pid.

    A throw-away shell starts it in the background and exits, so the service is re-parented to
    init: it outlives this command (and pytest), and leaves no zombie or Popen behind.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    if log.exists() and log.stat().st_size > LOG_ROTATE_BYTES:
        log.replace(log.with_name(log.name + ".1"))
    script = '"$@" >>"$BORDERMON_SPAWN_LOG" 2>&1 </dev/null & echo $!'
    done = subprocess.run(
        ["/bin/sh", "-c", script, "sh", *argv],
        env={**os.environ, "BORDERMON_SPAWN_LOG": str(log)},
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        start_new_session=True,
        check=True,
        text=True,
    )
    return int(done.stdout.strip())


# --- Kafka ------------------------------------------------------------------------------------


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME", "").strip()
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    how = "install it with `sudo apt-get install -y openjdk-17-jre-headless` (or set JAVA_HOME)"
    if not java or not os.access(java, os.X_OK):
        raise StackError(f"Java {MIN_JAVA}+ is missing (Kafka needs it): {how}")
    try:
        done = subprocess.run(
            [java, "-version"], check=False, capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise StackError(f"cannot run {java} -version ({error}): {how}") from None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', done.stderr + done.stdout)
    if match is None:
        raise StackError(f"cannot tell the version of {java}: {how}")
    major = int(match[1]) if match[1] != "1" else int(match[2] or 0)
    if major < MIN_JAVA:
        raise StackError(f"{java} is Java {major}; Kafka 4 needs {MIN_JAVA}+: {how}")
    return java


def _kafka_controller_port(kafka_port: int) -> int:
    return _port_from_env("BORDERMON_STACK_KAFKA_CONTROLLER_PORT", kafka_port + 1)


KAFKA_LIBS_ENV = "BORDERMON_STACK_KAFKA_LIBS"


def _kafka_libs(ctx: Context) -> Path:
    return ctx.kafka_libs or ctx.run_dir / "kafka-libs"


def cached_kafka_jars(repo: Path | None = None) -> Path | None:
    """Jars Maven already resolved for this checkout's pom, for a private run folder to reuse:
    $BORDERMON_STACK_KAFKA_LIBS, else <repo>/run/kafka-libs, else the run/kafka-libs of the main
    checkout when this one is a git worktree. None when none matches the pom."""
    repo = repo or find_repo()
    if repo is None:
        return None
    digest = hashlib.sha256((repo / "deploy" / "local" / "pom.xml").read_bytes()).hexdigest()
    places = [os.environ.get(KAFKA_LIBS_ENV, "").strip(), str(repo / "run" / "kafka-libs")]
    git = repo / ".git"
    if git.is_file():  # a worktree: "gitdir: <main>/.git/worktrees/<name>"
        with contextlib.suppress(OSError, IndexError):
            gitdir = Path(git.read_text().split(":", 1)[1].strip())
            places.append(str(gitdir.parents[2] / "run" / "kafka-libs"))
    for place in filter(None, places):
        with contextlib.suppress(OSError):
            if (Path(place) / ".resolved-from").read_text().strip() == digest:
                return Path(place)
    return None


def resolve_kafka_jars(ctx: Context) -> Path:
    """Copy the broker's jars into <run>/kafka-libs with Maven, unless the pom did not change."""
    pom = ctx.deploy_file("pom.xml")
    libs = _kafka_libs(ctx)
    stamp = libs / ".resolved-from"
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()
    with contextlib.suppress(OSError):
        if stamp.read_text().strip() == digest and any(libs.glob("kafka_2.13-*.jar")):
            return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError(
            "Maven is missing (needed once, to fetch the Kafka jars):"
            " install it with `sudo apt-get install -y maven`"
        )
    maven_log = ctx.log("maven")
    partial = libs.with_name(libs.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    ctx.say(f"kafka: resolving the broker's jars with Maven into {_pretty(libs)} (once)...")
    argv = [mvn, "-B", "-q", "-Dstyle.color=never", "-f", str(pom), "dependency:copy-dependencies"]
    argv.append(f"-DoutputDirectory={partial}")
    code = _run_logged(argv, maven_log)
    if code != 0 or not any(partial.glob("kafka_2.13-*.jar")):
        raise StackError(
            f"Maven could not resolve the Kafka jars (exit {code}); see {_pretty(maven_log)}"
        )
    shutil.rmtree(libs, ignore_errors=True)
    partial.rename(libs)
    stamp.write_text(digest + "\n")
    return libs


def _kafka_cluster_id() -> str:
    """A KRaft cluster id as Kafka's Uuid.randomUuid makes it: 16 random bytes, base64url."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def _kafka_props(ctx: Context) -> Path:
    return ctx.data("kafka") / "server.properties"


def _kafka_java_cmd(ctx: Context, java: str, heap: Sequence[str]) -> list[str]:
    log4j2 = ctx.deploy_file("log4j2.xml")
    return [
        java,
        *heap,
        f"-Dlog4j2.configurationFile={log4j2}",
        f"-Dkafka.logs.dir={ctx.logs_dir}",
        "-cp",
        str(_kafka_libs(ctx) / "*"),
    ]


def _prepare_kafka(ctx: Context, port: int) -> None:
    java = _java()
    controller_port = _kafka_controller_port(port)
    if _tcp_open(controller_port):
        raise StackError(
            f"kafka: controller port {controller_port} is taken by another program:"
            " stop it or set BORDERMON_STACK_KAFKA_CONTROLLER_PORT to a free port"
        )
    resolve_kafka_jars(ctx)
    data = ctx.data("kafka")
    log_dir = data / "data"
    log_dir.mkdir(parents=True, exist_ok=True)
    template = string.Template(ctx.deploy_file("server.properties.template").read_text())
    format_args: list[str] = []
    try:
        props = template.substitute(
            kafka_port=port, controller_port=controller_port, log_dir=str(log_dir)
        )
        if ctx.secure:
            secure_stack.ensure_material(ctx)
            props += "\n" + secure_stack.kafka_properties(ctx, port, controller_port)
    except (KeyError, ValueError) as error:
        raise StackError(
            f"deploy/local/server*.properties.template: bad placeholder {error}"
        ) from None
    # Mode 0600: the secure variant holds the keystore and admin passwords.
    props_file = _kafka_props(ctx)
    props_file.unlink(missing_ok=True)
    fd = os.open(props_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(props)
    if (log_dir / "meta.properties").exists():
        return
    if ctx.secure:
        format_args = credentials.kafka_format_args(ctx.run_dir)
    ctx.say(f"kafka: formatting storage in {_pretty(log_dir)} (once)")
    argv = [
        *_kafka_java_cmd(ctx, java, ("-Xmx256m",)),
        "kafka.tools.StorageTool",
        "format",
        "--ignore-formatted",
        "-t",
        _kafka_cluster_id(),
        "-c",
        str(_kafka_props(ctx)),
        *format_args,
    ]
    log = ctx.log("kafka")
    code = _run_logged(argv, log)
    if code != 0:
        raise StackError(f"kafka: formatting storage failed (exit {code}); see {_pretty(log)}")


def _kafka_command(ctx: Context, port: int) -> list[str]:
    heap = tuple(os.environ.get("KAFKA_HEAP_OPTS", "").split()) or KAFKA_HEAP_OPTS
    return [
        *_kafka_java_cmd(ctx, _java(), (*heap, *KAFKA_JVM_OPTS)),
        "kafka.Kafka",
        str(_kafka_props(ctx)),
    ]


KAFKA = Service(
    name="kafka",
    default_port=9092,
    port_env="BORDERMON_STACK_KAFKA_PORT",
    process_marker="kafka.Kafka",
    probe=probe_kafka,
    prepare=_prepare_kafka,
    command=_kafka_command,
    url=lambda port: f"127.0.0.1:{port}",
)


# --- Redis ------------------------------------------------------------------------------------


def probe_redis(port: int, timeout: float) -> Probe:
    """UP when 127.0.0.1:port answers PING with +PONG (plain RESP: no client library needed)."""
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except OSError:
        return Probe(Answer.DOWN)
    try:
        with sock:
            sock.sendall(b"PING\r\n")
            reply = sock.recv(256)
    except OSError as error:
        return Probe(Answer.FOREIGN, f"no answer to PING: {error}")
    if reply.startswith(b"+PONG"):
        return Probe(Answer.UP)
    first = reply.split(b"\r\n", 1)[0].decode("utf-8", errors="replace")[:120]
    return Probe(Answer.FOREIGN, f"PING answered {first!r}")


def _prepare_redis(ctx: Context, port: int) -> None:
    ensure_debian_package("redis-server", "redis-server", ctx)
    ctx.data("redis").mkdir(parents=True, exist_ok=True)
    if ctx.secure:
        secure_stack.ensure_material(ctx)


def _redis_command(ctx: Context, port: int) -> list[str]:
    server = ensure_debian_package("redis-server", "redis-server", ctx)
    listen = secure_stack.redis_arguments(ctx, port) if ctx.secure else ["--port", str(port)]
    return [
        server,
        *listen,
        "--bind",
        "127.0.0.1",
        "--protected-mode",
        "yes",
        "--appendonly",
        "yes",
        # fsync every write: the worker commits its offsets once a save is acknowledged, so
        # the save must survive a Redis crash (SPEC §6; the chaos suite kills Redis).
        "--appendfsync",
        "always",
        "--dir",
        str(ctx.data("redis")),
        "--logfile",
        "",  # stdout, which _spawn appends to run/logs/redis.log
        "--daemonize",
        "no",  # _spawn detaches it and keeps the pid file
    ]


REDIS = Service(
    name="redis",
    default_port=6379,
    port_env="BORDERMON_STACK_REDIS_PORT",
    process_marker="redis-server",
    probe=probe_redis,
    prepare=_prepare_redis,
    command=_redis_command,
    url=lambda port: f"redis://127.0.0.1:{port}/0",
    start_timeout=30.0,
)

# --- Prometheus -------------------------------------------------------------------------------

PROMETHEUS_JOB = "bordermon-worker"
"""The scrape job of the workers; alert rules and dashboards select `up{job="bordermon-worker"}`."""
PROMETHEUS_TARGETS_ENV = "BORDERMON_STACK_PROMETHEUS_TARGETS"
DEFAULT_PROMETHEUS_TARGETS = ("127.0.0.1:9108",)
"""The worker's default metrics port; a second local worker needs its own port, listed here."""
PROMETHEUS_SCRAPE_INTERVAL_ENV = "BORDERMON_STACK_PROMETHEUS_SCRAPE_INTERVAL"
DEFAULT_PROMETHEUS_SCRAPE_INTERVAL = "5s"
PROMETHEUS_RETENTION = ("--storage.tsdb.retention.time=1d", "--storage.tsdb.retention.size=256MB")
"""A dev/CI Prometheus keeps a day, at most 256 MB: enough to watch a demo or a test run."""
PROMETHEUS_RULES = ("deploy", "prometheus", "rules", "bordermon.rules.yml")
_TARGET = re.compile(r"^[A-Za-z0-9.\-]+:\d{1,5}$|^\[[0-9A-Fa-f:]+\]:\d{1,5}$")
_DURATION = re.compile(r"^[1-9]\d*(ms|s|m)$")


def prometheus_targets() -> list[str]:
    """host:port of the workers to scrape: $BORDERMON_STACK_PROMETHEUS_TARGETS (comma-separated)
    or the local worker's default metrics port."""
    text = os.environ.get(PROMETHEUS_TARGETS_ENV, "").strip()
    if not text:
        return list(DEFAULT_PROMETHEUS_TARGETS)
    targets = [item.strip() for item in text.split(",") if item.strip()]
    bad = [target for target in targets if not _TARGET.match(target)]
    if bad or not targets:
        raise StackError(
            f"{PROMETHEUS_TARGETS_ENV} must be comma-separated host:port pairs"
            f" (e.g. 127.0.0.1:9108,127.0.0.1:9109), got {text!r}"
        )
    return targets


def prometheus_scrape_interval() -> str:
    text = os.environ.get(PROMETHEUS_SCRAPE_INTERVAL_ENV, "").strip()
    if not text:
        return DEFAULT_PROMETHEUS_SCRAPE_INTERVAL
    if not _DURATION.match(text):
        raise StackError(
            f"{PROMETHEUS_SCRAPE_INTERVAL_ENV} must be a duration like 1s, 5s, 500ms or 1m,"
            f" got {text!r}"
        )
    return text


def prometheus_config(targets: Sequence[str], rules: Path, scrape_interval: str) -> str:
    """The local Prometheus's config: the workers as job bordermon-worker, bordermon's rules.

    Written as JSON, which is YAML too: no YAML library needed, and quoting is always right.
    """
    config = {
        "global": {
            "scrape_interval": scrape_interval,
            "scrape_timeout": scrape_interval,
            "evaluation_interval": scrape_interval,
        },
        "rule_files": [str(rules)],
        "scrape_configs": [
            {"job_name": PROMETHEUS_JOB, "static_configs": [{"targets": list(targets)}]}
        ],
    }
    header = (
        "# Generated by `bordermon stack up` (deploy/local/devstack); edits are lost.\n"
        f"# Targets: ${PROMETHEUS_TARGETS_ENV}; scrape interval:"
        f" ${PROMETHEUS_SCRAPE_INTERVAL_ENV}.\n"
    )
    return header + json.dumps(config, indent=2) + "\n"


def _prometheus_rules(ctx: Context) -> Path:
    rules = ctx.repo.joinpath(*PROMETHEUS_RULES) if ctx.repo is not None else None
    if rules is None or not rules.is_file():
        raise StackError(
            f"cannot find {'/'.join(PROMETHEUS_RULES)}: run this from a bordermon checkout"
            " (an installed package does not carry deploy/)"
        )
    return rules


def _prometheus_config_file(ctx: Context) -> Path:
    return ctx.data("prometheus") / "prometheus.yml"


def _http_get(port: int, path: str, timeout: float) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read(1 << 20)
    finally:
        connection.close()


def probe_prometheus(port: int, timeout: float) -> Probe:
    """UP when 127.0.0.1:port answers Prometheus's readiness endpoint /-/ready with 200.

    A Prometheus that does not scrape job bordermon-worker (Debian's own prometheus service,
    started by the package on machines with systemd) is UP too, like any Redis is, with a
    detail saying that it will not see the workers.
    """
    if not _tcp_open(port, min(timeout, 1.0)):
        return Probe(Answer.DOWN)
    try:
        status, body = _http_get(port, "/-/ready", timeout)
    except (OSError, http.client.HTTPException) as error:
        return Probe(Answer.FOREIGN, f"no HTTP answer on /-/ready: {error}")
    if status != 200 or b"Prometheus" not in body:
        first = body.decode("utf-8", errors="replace").strip()[:80]
        return Probe(Answer.FOREIGN, f"/-/ready answered {status} {first!r}")
    try:
        status, body = _http_get(port, "/api/v1/status/config", timeout)
        loaded = str(json.loads(body)["data"]["yaml"])
    except (OSError, http.client.HTTPException, ValueError, KeyError, TypeError):
        return Probe(Answer.UP)
    if f"job_name: {PROMETHEUS_JOB}" not in loaded:
        return Probe(
            Answer.UP,
            f"but this Prometheus has no {PROMETHEUS_JOB} scrape job, so it does not see the"
            " workers (Debian's prometheus service? `sudo systemctl disable --now prometheus`,"
            " or set BORDERMON_STACK_PROMETHEUS_PORT)",
        )
    return Probe(Answer.UP)


def _prepare_prometheus(ctx: Context, port: int) -> None:
    prometheus = ensure_debian_package("prometheus", "prometheus", ctx)
    data = ctx.data("prometheus")
    (data / "data").mkdir(parents=True, exist_ok=True)
    config = _prometheus_config_file(ctx)
    config.write_text(
        prometheus_config(
            prometheus_targets(), _prometheus_rules(ctx), prometheus_scrape_interval()
        )
    )
    # Debian ships promtool beside prometheus; check the config (and rules) before starting.
    promtool = Path(prometheus).with_name("promtool")
    if not promtool.is_file():
        return
    done = subprocess.run(
        [str(promtool), "check", "config", str(config)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip().splitlines()[-5:]
        raise StackError(
            f"prometheus: {_pretty(config)} or its rules do not pass `promtool check config`:"
            + "".join(f"\n    {line[:300]}" for line in output)
        )


def _prometheus_command(ctx: Context, port: int) -> list[str]:
    prometheus = ensure_debian_package("prometheus", "prometheus", ctx)
    return [
        "env",
        "GOMAXPROCS=1",  # a light Prometheus on a 2-core box shared with Kafka, Redis, workers
        prometheus,
        f"--config.file={_prometheus_config_file(ctx)}",
        f"--storage.tsdb.path={ctx.data('prometheus') / 'data'}",
        *PROMETHEUS_RETENTION,
        f"--web.listen-address=127.0.0.1:{port}",
    ]


PROMETHEUS = Service(
    name="prometheus",
    default_port=9090,
    port_env="BORDERMON_STACK_PROMETHEUS_PORT",
    process_marker="--storage.tsdb.path=",
    probe=probe_prometheus,
    prepare=_prepare_prometheus,
    command=_prometheus_command,
    url=lambda port: f"http://127.0.0.1:{port}",
    start_timeout=60.0,
)

# To add a service: write its probe, prepare and command hooks, make a Service(...) like the
# ones above and append it here; up/down/status, pid files, logs and waiting come with it.
SERVICES: tuple[Service, ...] = (KAFKA, REDIS, PROMETHEUS)
"""Started in this order, stopped in reverse."""


# --- the commands -----------------------------------------------------------------------------


def _services(ctx: Context) -> tuple[Service, ...]:
    """SERVICES, or their secure variants (own default ports, probes that log in)."""
    if not ctx.secure:
        return SERVICES
    run_dir = ctx.run_dir
    return (
        replace(
            KAFKA,
            default_port=secure_stack.DEFAULT_KAFKA_PORT,
            probe=secure_stack.kafka_probe(run_dir),
        ),
        replace(
            REDIS,
            default_port=secure_stack.DEFAULT_REDIS_PORT,
            probe=secure_stack.redis_probe(run_dir),
            url=lambda port: secure_stack.redis_url(run_dir, port),
        ),
        PROMETHEUS,
    )


def _select(names: Sequence[str] | None, ctx: Context) -> list[Service]:
    services = _services(ctx)
    if not names:
        return list(services)
    known = {s.name: s for s in services}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise StackError(f"unknown service {', '.join(unknown)}; known: {', '.join(known)}")
    return [s for s in services if s.name in names]


def _context(run_dir: Path | str | None, quiet: bool, secure: bool | None = None) -> Context:
    def say(line: str) -> None:
        if not quiet:
            print(line, flush=True)

    repo = find_repo()
    wants_secure = secure_stack.requested(secure)
    libs_env = os.environ.get(KAFKA_LIBS_ENV, "").strip()
    kafka_libs = Path(libs_env).resolve() if libs_env else None
    if wants_secure and run_dir is None and not os.environ.get(RUN_DIR_ENV, "").strip():
        # The secure stack runs beside the plaintext one, sharing its jar cache.
        plain = run_dir_path()
        path = plain / "secure"
        kafka_libs = kafka_libs or plain / "kafka-libs"
    else:
        path = run_dir_path(run_dir)
    return Context(
        repo=repo,
        run_dir=path,
        say=say,
        secure=secure_stack.enabled(path, secure),
        kafka_libs=kafka_libs,
    )


@contextlib.contextmanager
def _lock(ctx: Context) -> Iterator[None]:
    """One `up`/`down` at a time per run folder (parallel test sessions call `up` too)."""
    ctx.run_dir.mkdir(parents=True, exist_ok=True)
    with (ctx.run_dir / ".stack.lock").open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            ctx.say("waiting for another `bordermon stack` command to finish...")
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _state(service: Service, ctx: Context, probe_timeout: float = 3.0) -> ServiceState:
    port = service.port()
    probe = service.probe(port, probe_timeout)
    return ServiceState(
        name=service.name,
        address=service.address(),
        url=service.url(port),
        up=probe.answer is Answer.UP,
        pid=_managed_pid(service, ctx),
        log=ctx.log(service.name),
        detail=probe.detail,
    )


def _still_running(pid: int, marker: str) -> bool:
    """`_alive`, asked twice a moment apart: one reading can fall between fork and exec."""
    if _alive(pid, marker):
        return True
    time.sleep(0.2)
    return _alive(pid, marker)


def _wait_ready(service: Service, ctx: Context, pid: int, timeout: float) -> None:
    port, log = service.port(), ctx.log(service.name)
    deadline = time.monotonic() + timeout
    while True:
        if service.probe(port, 2.0).answer is Answer.UP:
            return
        if not _still_running(pid, service.process_marker):
            ctx.pidfile(service.name).unlink(missing_ok=True)
            raise StackError(
                f"{service.name} exited while starting; see {_pretty(log)}, which ends with:"
                + _log_tail(log)
            )
        if time.monotonic() > deadline:
            raise StackError(
                f"{service.name} (pid {pid}) did not answer on {service.address()} within"
                f" {timeout:.0f}s; see {_pretty(log)}. It is left running: `bordermon stack up`"
                " waits for it again, `bordermon stack down` stops it"
            )
        time.sleep(0.5)


def _up_one(service: Service, ctx: Context, timeout: float | None) -> ServiceState:
    port = service.port()
    pid = _managed_pid(service, ctx)
    probe = service.probe(port, 3.0)
    if probe.answer is Answer.UP:
        note = "" if pid else " (not started by `bordermon stack`; left as it is)"
        if probe.detail:
            note += f"; {probe.detail}"
        ctx.say(f"{service.name}: already up at {service.address()}{note}")
        return _state(service, ctx)
    started = time.monotonic()
    if pid is None:
        if probe.answer is Answer.FOREIGN:
            raise StackError(
                f"{service.name}: port {port} is taken by something that does not answer like"
                f" {service.name} ({probe.detail}); stop it or set {service.port_env}"
                " to a free port"
            )
        service.prepare(ctx, port)
        argv = service.command(ctx, port)
        data = ctx.data(service.name)
        data.mkdir(parents=True, exist_ok=True)
        ctx.say(f"{service.name}: starting on {service.address()}")
        pid = _spawn(argv, ctx.log(service.name), cwd=data)
        ctx.pidfile(service.name).write_text(f"{pid}\n")
    else:
        ctx.say(f"{service.name}: pid {pid} is running but not answering yet; waiting for it")
    _wait_ready(service, ctx, pid, timeout or service.start_timeout)
    elapsed = time.monotonic() - started
    ctx.say(f"{service.name}: up at {service.address()} (pid {pid}, {elapsed:.1f}s)")
    return _state(service, ctx)


def _stop_pid(pid: int, marker: str, timeout: float) -> bool:
    """SIGTERM, wait, then SIGKILL; True when it stopped before the SIGKILL."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid, marker):
            return True
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while _alive(pid, marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    return False


def _down_one(service: Service, ctx: Context) -> ServiceState:
    pid = _managed_pid(service, ctx)
    if pid is None:
        if service.probe(service.port(), 2.0).answer is Answer.UP:
            ctx.say(
                f"{service.name}: up at {service.address()} but not started by"
                f" `bordermon stack` (no pid file in {_pretty(ctx.data(service.name))});"
                " left running"
            )
        else:
            ctx.say(f"{service.name}: already down")
        return _state(service, ctx, probe_timeout=1.0)
    ctx.say(f"{service.name}: stopping pid {pid}")
    clean = _stop_pid(pid, service.process_marker, STOP_TIMEOUT_S)
    ctx.pidfile(service.name).unlink(missing_ok=True)
    how = "stopped" if clean else f"killed (did not stop within {STOP_TIMEOUT_S:.0f}s of SIGTERM)"
    ctx.say(f"{service.name}: {how}")
    return _state(service, ctx, probe_timeout=1.0)


def up(
    services: Sequence[str] | None = None,
    *,
    run_dir: Path | str | None = None,
    timeout: float | None = None,
    quiet: bool = False,
    secure: bool | None = None,
) -> StackReport:
    """Start the services that are not up and wait until each answers; raises StackError."""
    ctx = _context(run_dir, quiet, secure)
    chosen = _select(services, ctx)
    with _lock(ctx):
        if ctx.secure:
            (ctx.run_dir / secure_stack.MARKER).touch()
        states = tuple(_up_one(service, ctx, timeout) for service in chosen)
        if ctx.secure:
            ports = {s.name: s.port() for s in _services(ctx)}
            clients = secure_stack.write_client_configs(ctx.run_dir, ports["kafka"], ports["redis"])
            ctx.say(
                f"secure: TLS + SCRAM + ACLs; passwords in {_pretty(ctx.run_dir / 'secrets')}/"
                f" (never printed); settings per user in {_pretty(clients)}/"
                " (e.g. `bordermon topics apply --config"
                f" {_pretty(clients / 'admin.toml')}`)"
            )
    ctx.say(f"logs: {_pretty(ctx.logs_dir)}/ ({', '.join(s.name + '.log' for s in chosen)})")
    return StackReport(states)


def down(
    services: Sequence[str] | None = None,
    *,
    run_dir: Path | str | None = None,
    quiet: bool = False,
    secure: bool | None = None,
) -> StackReport:
    """Stop the services this stack started (SIGTERM, then SIGKILL); others are left alone."""
    ctx = _context(run_dir, quiet, secure)
    chosen = _select(services, ctx)
    with _lock(ctx):
        states = [_down_one(service, ctx) for service in reversed(chosen)]
    return StackReport(tuple(reversed(states)))


def status(
    services: Sequence[str] | None = None,
    *,
    run_dir: Path | str | None = None,
    quiet: bool = False,
    secure: bool | None = None,
) -> StackReport:
    """Probe each service; prints one line per service unless quiet."""
    ctx = _context(run_dir, quiet, secure)
    report = StackReport(tuple(_state(s, ctx) for s in _select(services, ctx)))
    for state in report.services:
        line = f"{state.name:<6} {'up' if state.up else 'down':<5} {state.address:<16}"
        if state.up:
            if state.pid:
                line += f" pid {state.pid}  log {_pretty(state.log)}"
            else:
                line += " (not started by `bordermon stack`)"
            if state.detail:
                line += f"; {state.detail}"
        elif state.pid:
            line += f" pid {state.pid} is running but not answering; see {_pretty(state.log)}"
        elif state.detail:
            line += f" port taken by something else: {state.detail}"
        ctx.say(line.rstrip())
    if not report.all_up:
        ctx.say("start what is down with `bordermon stack up`")
    return report
