"""Transport security on the real secure stack: TLS + SCRAM + ACLs on Kafka, ACL users on Redis.

The module starts its own `bordermon stack up --secure` (Kafka and Redis only) in a private run
folder on free ports, with the stack.py machinery, applies topics/topics.toml and
topics/acls.toml as admin, and stops it at the end. The broker's jars are those already
resolved (`stack.cached_kafka_jars`: $BORDERMON_STACK_KAFKA_LIBS, run/kafka-libs of this
checkout or of the main checkout of this worktree), else Maven's. Under
CI=true a secure stack that cannot be started FAILS these tests (never skips them).
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from bordermon.admin import credentials
from bordermon.admin.acls import load_acls
from bordermon.admin.topics import (
    admin_client,
    apply_topics,
    default_topics_file,
    load_declarations,
)
from bordermon.alerts.subscriber import FlagSubscriber
from bordermon.scanner.publisher import DEFAULT_PRODUCER_CONFIG, ScannerPublisher
from bordermon_devstack import secure_stack, stack
from support.builders import crossing_line
from support.kafka_io import QUIET
from support.services import unavailable
from support.signed_scans import (
    ENTRY_CHECKPOINT,
    EXIT_CHECKPOINT,
    make_key,
    signed_scan_entry,
    signed_scan_exit,
)
from support.workers import free_port, running_worker

pytestmark = pytest.mark.integration

TOPICS = {d.role: d.name for d in load_declarations()}


@dataclass(frozen=True)
class SecureStack:
    run_dir: Path
    bootstrap: str
    redis_port: int
    up_output: str

    def kafka(self, user: str) -> dict[str, Any]:
        """librdkafka settings to connect as `user` (quiet)."""
        return {
            **secure_stack.kafka_client_config(self.run_dir, user),
            "bootstrap.servers": self.bootstrap,
            **QUIET,
        }

    def config_file(self, user: str) -> Path:
        return self.run_dir / "clients" / f"{user}.toml"

    def redis(self, user: str | None = credentials.REDIS_USER, **kwargs: Any) -> redis.Redis:
        password = None if user is None else credentials.read_password(self.run_dir, user)
        return redis.Redis(
            host="127.0.0.1",
            port=self.redis_port,
            username=user,
            password=password,
            ssl=True,
            ssl_ca_certs=str(secure_stack.ca_file(self.run_dir)),
            socket_timeout=5,
            **kwargs,
        )

    def secrets(self) -> dict[str, str]:
        folder = credentials.secrets_dir(self.run_dir)
        return {p.name: p.read_text().strip() for p in folder.glob("*.password")}


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(scope="module")
def secure() -> Iterator[SecureStack]:
    run_dir = Path(tempfile.mkdtemp(prefix="bordermon-secure-"))
    kafka_port, redis_port = free_port(), free_port()
    env = {
        "BORDERMON_STACK_KAFKA_PORT": str(kafka_port),
        "BORDERMON_STACK_KAFKA_CONTROLLER_PORT": str(free_port()),
        "BORDERMON_STACK_REDIS_PORT": str(redis_port),
    }
    libs = stack.cached_kafka_jars()
    if libs is not None:
        env[stack.KAFKA_LIBS_ENV] = str(libs)
    output = io.StringIO()
    try:
        with _environ(env):
            try:
                with contextlib.redirect_stdout(output):
                    report = stack.up(["kafka", "redis"], run_dir=run_dir, secure=True)
            except stack.StackError as error:
                unavailable(f"the secure stack could not start: {error}")
            if not report.all_up:
                unavailable(f"the secure stack is not up: {report}")
            bootstrap = report.kafka_bootstrap
            admin = secure_stack.kafka_client_config(run_dir, "admin")
            topics_file = default_topics_file()
            acls = load_acls(
                topics_file.with_name("acls.toml"), TOPICS, {"consumer_group": "bordermon-worker"}
            )
            applied = apply_topics(bootstrap, topics_file, client_config=admin, acls=acls)
            if not applied.ok or applied.acls is None or applied.acls.skipped:
                pytest.fail("topics apply as admin:\n" + "\n".join(applied.lines()))
            secured = SecureStack(run_dir, bootstrap, redis_port, output.getvalue())
            _wait_for_acls(secured)
            yield secured
    finally:
        with _environ(env), contextlib.redirect_stdout(io.StringIO()):
            stack.down(["kafka", "redis"], run_dir=run_dir, secure=True)
        shutil.rmtree(run_dir, ignore_errors=True)


@pytest.fixture(autouse=True)
def _settings_from_the_clients_files_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Commands run here read the secure stack's clients/<user>.toml: BORDERMON_* variables of
    the session (pointing at the plaintext stack) would win over the file."""
    for name in [name for name in os.environ if name.startswith("BORDERMON_")]:
        monkeypatch.delenv(name)


# --- helpers --------------------------------------------------------------------------------


def _wait_for_acls(secure: SecureStack, timeout: float = 30.0) -> None:
    """New ACLs reach the broker's authorizer through the metadata log a moment after the
    controller accepted them: wait until each principal may describe a topic it is granted."""
    granted = {"scanner": "crossings", "worker": "crossings", "subscriber": "flags"}
    deadline = time.monotonic() + timeout
    for user, role in granted.items():
        admin = admin_client(secure.bootstrap, secure.kafka(user))
        while True:
            topic = admin.list_topics(TOPICS[role], timeout=10).topics[TOPICS[role]]
            if topic.error is None:
                break
            if time.monotonic() > deadline:
                pytest.fail(f"the ACLs of {user} did not take effect: {topic.error}")
            time.sleep(0.2)


def _refusal(config: dict[str, Any], timeout: float = 8.0) -> list[KafkaError]:
    """Ask for metadata with `config`; the errors librdkafka reported (it must not succeed)."""
    errors: list[KafkaError] = []
    client = admin_client(config["bootstrap.servers"], {**config, "error_cb": errors.append})
    with pytest.raises(KafkaException):
        client.list_topics(timeout=timeout)
    client.poll(1.0)  # serve error_cb
    return errors


def _produce(config: dict[str, Any], topic: str, idempotent: bool = False) -> KafkaError | None:
    """Send one record; the delivery error (None when it was written)."""
    outcome: list[KafkaError | None] = []
    extra = dict(DEFAULT_PRODUCER_CONFIG) if idempotent else {}
    producer = Producer({**extra, **config, "message.timeout.ms": 10_000})
    producer.produce(topic, b"{}", key=b"k", on_delivery=lambda err, msg: outcome.append(err))
    producer.flush(20)
    assert outcome, "no delivery report"
    return outcome[0]


def _codes(*codes: int) -> set[int]:
    return set(codes)


AUTHZ = _codes(
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError.CLUSTER_AUTHORIZATION_FAILED,
    KafkaError.GROUP_AUTHORIZATION_FAILED,
)


# --- Kafka: who gets in -----------------------------------------------------------------------


def test_anonymous_clients_are_refused(secure: SecureStack) -> None:
    plain = {"bootstrap.servers": secure.bootstrap, **QUIET}
    _refusal(plain)
    tls_without_login = {
        **plain,
        "security.protocol": "ssl",
        "ssl.ca.location": str(secure_stack.ca_file(secure.run_dir)),
    }
    _refusal(tls_without_login)


def test_a_wrong_password_is_refused(secure: SecureStack) -> None:
    config = {**secure.kafka("scanner"), "sasl.password": "not-the-password"}
    errors = _refusal(config)
    assert any("Authentication failed" in error.str() for error in errors), errors


def test_a_client_that_does_not_trust_the_ca_is_refused(secure: SecureStack) -> None:
    config = secure.kafka("admin")
    del config["ssl.ca.location"]
    errors = _refusal(config)
    assert any("certificate verify failed" in error.str() for error in errors), errors


def test_the_right_password_gets_in(secure: SecureStack) -> None:
    for user in credentials.KAFKA_USERS:
        metadata = admin_client(secure.bootstrap, secure.kafka(user)).list_topics(timeout=15)
        assert metadata.brokers, user


# --- Kafka: what each principal may do ---------------------------------------------------------


def test_the_scanner_writes_crossings_idempotently_and_nothing_else(secure: SecureStack) -> None:
    scanner = secure.kafka("scanner")
    assert _produce(scanner, TOPICS["crossings"], idempotent=True) is None
    for topic in (TOPICS["flags"], TOPICS["dead_letter"], TOPICS["links"]):
        error = _produce(scanner, topic)
        assert error is not None and error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_the_scanner_cannot_read_crossings(secure: SecureStack) -> None:
    """Fetching by assignment needs no group rights, only READ on the topic: the broker says
    TOPIC_AUTHORIZATION_FAILED (librdkafka may also report its group lookup refused)."""
    consumer = Consumer(
        {
            **secure.kafka("scanner"),
            "group.id": f"scanner-{uuid.uuid4()}",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(TOPICS["crossings"], p, 0) for p in range(6)])
    codes: set[int] = set()
    try:
        deadline = time.monotonic() + 20
        while KafkaError.TOPIC_AUTHORIZATION_FAILED not in codes and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None:
                assert message.error() is not None, "the scanner read a crossing"
                codes.add(message.error().code())
    finally:
        consumer.close()
    assert KafkaError.TOPIC_AUTHORIZATION_FAILED in codes, codes


def _admin_refused(future: Any) -> int:
    with pytest.raises(KafkaException) as raised:
        future.result()
    code: int = raised.value.args[0].code()
    return code


def test_only_admin_creates_or_alters_topics(secure: SecureStack) -> None:
    from confluent_kafka.admin import (  # type: ignore[attr-defined]
        AlterConfigOpType,
        ConfigEntry,
        ConfigResource,
        NewPartitions,
        NewTopic,
        ResourceType,
    )

    name = f"bordermon.intruder-{uuid.uuid4().hex[:8]}"
    for user in ("scanner", "worker", "subscriber"):
        admin = admin_client(secure.bootstrap, secure.kafka(user))
        created = admin.create_topics([NewTopic(name, 1, 1)], request_timeout=15)
        assert _admin_refused(created[name]) in AUTHZ, user
    worker = admin_client(secure.bootstrap, secure.kafka("worker"))
    crossings = TOPICS["crossings"]
    retention = ConfigEntry("retention.ms", "1000", incremental_operation=AlterConfigOpType.SET)
    resource = ConfigResource(ResourceType.TOPIC, crossings, incremental_configs=[retention])
    altered = worker.incremental_alter_configs([resource], request_timeout=15)
    assert _admin_refused(altered[resource]) in AUTHZ
    grown = worker.create_partitions([NewPartitions(crossings, 12)], request_timeout=15)
    assert _admin_refused(grown[crossings]) in AUTHZ
    deleted = worker.delete_topics([crossings], request_timeout=15)
    assert _admin_refused(deleted[crossings]) in AUTHZ
    # And nothing changed.
    metadata = admin_client(secure.bootstrap, secure.kafka("admin")).list_topics(timeout=15)
    assert len(metadata.topics[crossings].partitions) == 6 and name not in metadata.topics


def test_the_subscriber_cannot_write_crossings_or_flags(secure: SecureStack) -> None:
    subscriber = secure.kafka("subscriber")
    for topic in (TOPICS["crossings"], TOPICS["flags"]):
        error = _produce(subscriber, topic)
        assert error is not None and error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


# --- Redis ------------------------------------------------------------------------------------


def test_redis_refuses_the_default_user_and_wrong_passwords(secure: SecureStack) -> None:
    with pytest.raises(redis.AuthenticationError):
        secure.redis(None).ping()
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(
            host="127.0.0.1",
            port=secure.redis_port,
            username="bordermon",
            password="wrong",
            ssl=True,
            ssl_ca_certs=str(secure_stack.ca_file(secure.run_dir)),
        ).ping()
    with pytest.raises(redis.ConnectionError):  # TLS only: no plaintext port
        redis.Redis(host="127.0.0.1", port=secure.redis_port, socket_timeout=3).ping()


def test_the_redis_user_stays_in_its_prefix_and_cannot_flush(secure: SecureStack) -> None:
    client = secure.redis()
    key = f"bordermon:state:test-{uuid.uuid4()}"
    assert client.set(key, b"x", ex=60)
    assert client.get(key) == b"x"
    for forbidden in (
        lambda: client.set("other:key", b"x"),
        lambda: client.get("session:abc"),
        client.flushall,
        client.flushdb,
        lambda: client.keys("*"),
        lambda: client.config_get("*"),
        lambda: client.delete(key),
        lambda: client.eval("return 1", 0),
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            forbidden()
    # Not even through a script: EVALSHA checks the keys the script touches.
    sha = client.script_load("return redis.call('SET', KEYS[1], 'x')")
    with pytest.raises(redis.exceptions.ResponseError, match=r"permission|NOPERM"):
        client.evalsha(sha, 1, "outside:key")
    assert secure.redis(credentials.REDIS_ADMIN).get(key) == b"x"


# --- the whole path, and the logs ---------------------------------------------------------------


def test_a_worker_on_the_secure_stack_turns_a_scan_pair_into_a_flag(
    secure: SecureStack, tmp_path: Path
) -> None:
    consignment = f"SEC-{uuid.uuid4().hex[:10]}"
    entry = crossing_line(
        event_id=f"{consignment}-e", consignment_id=consignment, observed_at="2024-03-01T10:00:00Z"
    )
    leave = crossing_line(
        event_id=f"{consignment}-x",
        consignment_id=consignment,
        checkpoint="KZ-TASKALA",
        from_country="KZ",
        to_country="RU",
        observed_at="2024-03-04T09:00:00Z",
    )
    scanner = secure_stack.kafka_client_config(secure.run_dir, "scanner") | QUIET
    with ScannerPublisher(secure.bootstrap, TOPICS["crossings"], config=scanner) as publisher:
        publisher.check_connection()
        publisher.publish(entry)
        publisher.publish(leave)
        assert publisher.flush(30).ok
    env = {k: v for k, v in os.environ.items() if not k.startswith("BORDERMON_")}
    env |= {
        "BORDERMON_CONFIG": str(secure.config_file("worker")),
        "BORDERMON_METRICS_PORT": "0",
    }
    subscriber = secure_stack.kafka_client_config(secure.run_dir, "subscriber") | QUIET
    log = tmp_path / "worker.log"
    found: list[dict[str, Any]] = []
    with (
        running_worker(env, log),
        FlagSubscriber(
            secure.bootstrap, TOPICS["flags"], from_beginning=True, config=subscriber
        ) as flags,
    ):
        flags.check_connection()
        deadline = time.monotonic() + 60
        while not found and time.monotonic() < deadline:
            found = [
                received.flag
                for received in flags.poll(1.0)
                if received.flag.get("consignment_id") == consignment
            ]
    assert found and found[0]["rule"] == "transit-to-ru", log.read_text()[-3000:]
    assert found[0]["severity"] == "high"
    text = log.read_text()
    assert "SASL_SSL" in text or "kafka_security_protocol=SASL_SSL" in text
    for name, secret in secure.secrets().items():
        assert secret not in text, f"{name} in the worker's log"


def test_no_secret_in_any_log_or_output_of_the_run(secure: SecureStack) -> None:
    secrets = secure.secrets()
    assert len(secrets) == len(credentials.KAFKA_USERS) + 3
    texts = {"stack up output": secure.up_output}
    for path in (secure.run_dir / "logs").rglob("*"):
        if path.is_file():
            texts[str(path)] = path.read_text(errors="replace")
    for path in (secure.run_dir / "clients").glob("*.toml"):
        texts[str(path)] = path.read_text()
    texts[str(secure.run_dir / "redis" / "users.acl")] = (
        secure.run_dir / "redis" / "users.acl"
    ).read_text()
    assert any("kafka.log" in name for name in texts)
    for where, text in texts.items():
        for name, secret in secrets.items():
            assert secret not in text, f"{name} appears in {where}"


def test_a_new_user_is_added_and_its_password_rotated(secure: SecureStack, tmp_path: Path) -> None:
    from bordermon.cli import main

    user = f"scanner-{uuid.uuid4().hex[:6]}"
    password_file = tmp_path / f"{user}.password"
    admin_config = ["--config", str(secure.config_file("admin"))]
    command = ["users", "set-password", user, "--password-file", str(password_file)]
    assert main([*command, "--generate", *admin_config]) == 0
    first = password_file.read_text().strip()
    assert oct(password_file.stat().st_mode & 0o777) == "0o600"
    as_user = {**secure.kafka("scanner"), "sasl.username": user, "sasl.password": first}
    assert admin_client(secure.bootstrap, as_user).list_topics(timeout=15).brokers
    assert main([*command, "--generate", *admin_config]) == 0
    second = password_file.read_text().strip()
    assert second != first
    errors = _refusal(as_user)
    assert any("Authentication failed" in error.str() for error in errors), errors
    as_user["sasl.password"] = second
    assert admin_client(secure.bootstrap, as_user).list_topics(timeout=15).brokers
    # Only admin may do it: the scanner is refused.
    scanner_config = ["--config", str(secure.config_file("scanner"))]
    assert main([*command, *scanner_config]) == 2


def test_refusals_are_one_line_that_says_what_to_check(
    secure: SecureStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bordermon.cli import main

    scanner = ["--config", str(secure.config_file("scanner"))]
    events = tmp_path / "none.jsonl"
    events.write_text("")
    assert main(["publish", str(events), "--crossings-topic", TOPICS["flags"], *scanner]) == 2
    line = capsys.readouterr().err.strip()
    assert "does not authorize this user to use topic" in line and "acls.toml" in line, line
    wrong = tmp_path / "wrong.password"
    wrong.write_text("not-the-password\n")
    subscriber = ["--config", str(secure.config_file("subscriber"))]
    assert main(["flags", *subscriber, "--kafka-password-file", str(wrong)]) == 2
    line = capsys.readouterr().err.strip()
    assert "refused the login" in line and "kafka_password_file" in line, line
    assert "\n" not in line and "not-the-password" not in line


def test_both_layers_together_acls_admit_the_scanner_signatures_pin_its_checkpoint(
    secure: SecureStack, tmp_path: Path
) -> None:
    """On the secure stack, with require_signatures on: a pair signed by registered scanners
    is flagged; an unsigned exit and one signed by a genuine scanner for a checkpoint it may
    not report (what Kafka ACLs cannot tell apart) are dead-lettered with their reasons."""
    from bordermon.scanner.keys import read_private_key

    tag = uuid.uuid4().hex[:8]
    good, unsigned, misattributed = f"S-{tag}-GOOD", f"S-{tag}-UNSIGNED", f"S-{tag}-MISATTR"
    entry_file, entry_line = make_key(tmp_path, f"in-{tag}", ENTRY_CHECKPOINT)
    exit_file, exit_line = make_key(tmp_path, f"out-{tag}", EXIT_CHECKPOINT)
    registry = tmp_path / "registry.csv"
    registry.write_text(f"{entry_line}\n{exit_line}\n")
    scanner = secure_stack.kafka_client_config(secure.run_dir, "scanner") | QUIET
    crossings = TOPICS["crossings"]

    def publisher(key_file: Path | None, scanner_id: str | None) -> ScannerPublisher:
        key = None if key_file is None else read_private_key(key_file)
        return ScannerPublisher(
            secure.bootstrap, crossings, config=scanner, scanner_id=scanner_id, signing_key=key
        )

    with publisher(entry_file, f"in-{tag}") as signed_entries:
        for consignment in (good, unsigned, misattributed):
            signed_entries.publish(signed_scan_entry(consignment))
        signed_entries.publish(signed_scan_exit(misattributed))  # the entry scanner, at the exit
        assert signed_entries.flush(30).ok
    with publisher(exit_file, f"out-{tag}") as signed_exits:
        signed_exits.publish(signed_scan_exit(good))
        assert signed_exits.flush(30).ok
    with publisher(None, None) as unsigned_exits:
        unsigned_exits.publish(signed_scan_exit(unsigned))
        assert unsigned_exits.flush(30).ok

    env = {k: v for k, v in os.environ.items() if not k.startswith("BORDERMON_")}
    env |= {
        "BORDERMON_CONFIG": str(secure.config_file("worker")),
        "BORDERMON_METRICS_PORT": "0",
        "BORDERMON_REQUIRE_SIGNATURES": "true",
        "BORDERMON_SCANNER_REGISTRY": str(registry),
    }
    ours = {good, unsigned, misattributed}
    flags: dict[str, str] = {}
    dead: dict[str, str] = {}
    admin = secure.kafka("admin")
    with running_worker(env, tmp_path / "worker.log"):
        reader = Consumer({**admin, "group.id": f"admin-{tag}", "auto.offset.reset": "earliest"})
        reader.subscribe([TOPICS["flags"], TOPICS["dead_letter"]])
        deadline = time.monotonic() + 60
        try:
            while (len(flags) < 1 or len(dead) < 2) and time.monotonic() < deadline:
                message = reader.poll(0.5)
                if message is None or message.error() is not None:
                    continue
                if message.topic() == TOPICS["flags"]:
                    flag = orjson.loads(message.value())
                    if flag["consignment_id"] in ours:
                        flags[flag["consignment_id"]] = flag["rule"]
                elif (message.key() or b"").decode() in ours:
                    headers = dict(message.headers() or [])
                    dead[message.key().decode()] = headers["error"].decode()
        finally:
            reader.close()
    assert flags == {good: "transit-to-ru"}
    assert dead == {unsigned: "unsigned", misattributed: "checkpoint_not_allowed"}
