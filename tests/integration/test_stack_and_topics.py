"""The local stack answers, and `topics apply` creates, checks and reports drift for real.

Runs against a real Kafka and Redis (see conftest.py). Topic tests use names unique to the
test, so they never touch the real bordermon topics of a shared stack; stack tests that start
and stop things do it in a private run folder on a free port.
"""

from __future__ import annotations

import argparse
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from bordermon.admin.topics import ROLES, Status, TopicDeclarationError, apply_topics
from bordermon.cli import topics as topics_command
from bordermon_devstack import cli as stack_command
from bordermon_devstack import stack
from support.workers import free_port

pytestmark = pytest.mark.integration


def _stack_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    stack_command.configure_parser(parser)
    return parser.parse_args(list(argv))


def _topics_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    topics_command.configure_parser(parser)
    return parser.parse_args(list(argv))


def _name_flags(names: dict[str, str]) -> list[str]:
    return [
        arg for role, name in names.items() for arg in (f"--{role.replace('_', '-')}-topic", name)
    ]


def _topic_configs(admin: Any, name: str) -> dict[str, str]:
    from confluent_kafka.admin import ConfigResource, ResourceType  # type: ignore[attr-defined]

    resource = ConfigResource(ResourceType.TOPIC, name)
    entries = admin.describe_configs([resource])[resource].result(timeout=30)
    return {key: entry.value for key, entry in entries.items()}


def _partition_count(admin: Any, name: str) -> int:
    return len(admin.list_topics(topic=name, timeout=10).topics[name].partitions)


# --- the stack --------------------------------------------------------------------------------


def test_kafka_answers(kafka_admin: Any) -> None:
    metadata = kafka_admin.list_topics(timeout=10)
    assert metadata.brokers, "the broker lists no brokers"


def test_redis_answers_in_its_own_database(
    redis_client: redis.Redis[bytes], redis_test_db: int
) -> None:
    assert redis_client.ping()
    redis_client.set("bordermon:test", "1")
    assert redis_client.get("bordermon:test") == b"1"
    assert redis_client.connection_pool.connection_kwargs["db"] == redis_test_db != 0


def test_local_stack_reports_up_and_up_again_is_a_no_op(
    kafka_bootstrap: str, redis_url: str, service_origin: dict[str, str]
) -> None:
    if set(service_origin.values()) != {"stack"}:
        pytest.skip(f"services were not started by the local stack: {service_origin}")
    # The fixtures start only what they need; bring up the rest (Prometheus) first.
    assert stack.up(quiet=True).all_up
    report = stack.status(quiet=True)
    assert report.all_up, report
    assert report.kafka_bootstrap == kafka_bootstrap
    assert report.redis_url == redis_url
    pids = {s.name: s.pid for s in report.services}

    started = time.monotonic()
    again = stack.up(quiet=True)
    assert time.monotonic() - started < 15
    assert {s.name: s.pid for s in again.services} == pids
    assert stack_command.run(_stack_args("status")) == 0


def test_status_of_a_port_nobody_listens_on_is_down(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BORDERMON_STACK_KAFKA_PORT", str(free_port()))
    assert not stack.status(["kafka"], run_dir=tmp_path, quiet=True).all_up
    assert stack_command.run(_stack_args("status", "kafka", "--run-dir", str(tmp_path))) == 1
    out = capsys.readouterr().out
    assert "kafka  down" in out and "bordermon stack up" in out


@pytest.fixture
def private_redis(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[tuple[Path, int]]:
    """A run folder and a free port for a Redis of this test's own; stopped afterwards."""
    port = free_port()
    monkeypatch.setenv("BORDERMON_STACK_REDIS_PORT", str(port))
    yield tmp_path, port
    stack.down(["redis"], run_dir=tmp_path, quiet=True)


def test_up_down_cycle_in_a_private_run_folder(
    private_redis: tuple[Path, int], capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir, port = private_redis
    report = stack.up(["redis"], run_dir=run_dir)
    state = report.get("redis")
    assert state.up and state.pid and state.address == f"127.0.0.1:{port}"
    assert (run_dir / "redis" / "redis.pid").read_text().strip() == str(state.pid)
    assert (run_dir / "logs" / "redis.log").stat().st_size > 0
    out = capsys.readouterr().out
    assert "redis: up at" in out and "logs:" in out

    again = stack.up(["redis"], run_dir=run_dir)
    assert again.get("redis").pid == state.pid
    assert "already up" in capsys.readouterr().out

    with redis.Redis(port=port) as client:
        client.set("k", "v")
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("dir")["dir"] == str(run_dir / "redis")

    stopped = stack.down(["redis"], run_dir=run_dir)
    assert not stopped.get("redis").up
    assert not (run_dir / "redis" / "redis.pid").exists()
    assert "redis: stopped" in capsys.readouterr().out
    stack.down(["redis"], run_dir=run_dir)
    assert "already down" in capsys.readouterr().out

    # Restarted, it has kept its data (appendonly under the run folder).
    stack.up(["redis"], run_dir=run_dir, quiet=True)
    with redis.Redis(port=port) as client:
        assert client.get("k") == b"v"


def test_a_port_taken_by_something_else_is_a_clear_error(
    private_redis: tuple[Path, int],
) -> None:
    run_dir, port = private_redis
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen(8)  # accepts connections (backlog), never answers PING
        with pytest.raises(stack.StackError, match=r"taken by something.*BORDERMON_STACK_REDIS"):
            stack.up(["redis"], run_dir=run_dir, quiet=True)


def test_missing_java_or_maven_is_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BORDERMON_STACK_KAFKA_PORT", str(free_port()))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.delenv(stack.KAFKA_LIBS_ENV, raising=False)  # Maven must be needed
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    monkeypatch.setenv("PATH", str(empty_bin))
    run_dir = str(tmp_path / "run")
    assert stack_command.run(_stack_args("up", "kafka", "--run-dir", run_dir)) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Java 17+ is missing" in err[0] and "apt-get install" in err[0]

    java = Path("/usr/bin/java").resolve()
    if not java.exists():
        return
    (empty_bin / "java").symlink_to(java)
    assert stack_command.run(_stack_args("up", "kafka", "--run-dir", run_dir)) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Maven is missing" in err[0] and "apt-get install" in err[0]


# --- topics apply -----------------------------------------------------------------------------


def test_apply_creates_the_declared_topics_and_is_idempotent(
    kafka_bootstrap: str, kafka_admin: Any, unique_topic_names: Any
) -> None:
    names = unique_topic_names.names
    first = apply_topics(kafka_bootstrap, name_overrides=names)
    assert [r.status for r in first.results] == [Status.CREATED] * len(ROLES), first.lines()
    assert first.ok

    for declaration in unique_topic_names.declarations:
        assert _partition_count(kafka_admin, declaration.name) == declaration.partitions
        configs = _topic_configs(kafka_admin, declaration.name)
        for key, value in declaration.config.items():
            assert configs[key] == value, (declaration.name, key)

    second = apply_topics(kafka_bootstrap, name_overrides=names)
    assert [r.status for r in second.results] == [Status.OK] * len(ROLES), second.lines()
    checked = apply_topics(kafka_bootstrap, name_overrides=names, check_only=True)
    assert checked.ok and all(r.status is Status.OK for r in checked.results)


def test_check_reports_missing_topics_and_creates_nothing(
    kafka_bootstrap: str,
    kafka_admin: Any,
    unique_topic_names: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    names = unique_topic_names.names
    report = apply_topics(kafka_bootstrap, name_overrides=names, check_only=True)
    assert not report.ok
    assert [r.status for r in report.results] == [Status.MISSING] * len(ROLES)
    existing = kafka_admin.list_topics(timeout=10).topics
    assert not set(names.values()) & set(existing)

    args = _topics_args("apply", "--check", "--bootstrap", kafka_bootstrap, *_name_flags(names))
    assert topics_command.run(args) == 1
    out = capsys.readouterr().out
    assert "missing" in out and "bordermon topics apply" in out

    assert (
        topics_command.run(
            _topics_args("apply", "--bootstrap", kafka_bootstrap, *_name_flags(names))
        )
        == 0
    )
    assert topics_command.run(args) == 0
    assert f"{len(ROLES)} ok" in capsys.readouterr().out


def test_drift_is_reported_and_left_alone(
    kafka_bootstrap: str,
    kafka_admin: Any,
    unique_topic_names: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

    names = unique_topic_names.names
    crossings = unique_topic_names.declaration("crossings")
    wrong = NewTopic(
        crossings.name,
        num_partitions=crossings.partitions - 1,
        replication_factor=1,
        config={"retention.ms": "3600000", "cleanup.policy": "compact"},
    )
    kafka_admin.create_topics([wrong])[crossings.name].result(timeout=30)

    report = apply_topics(kafka_bootstrap, name_overrides=names)
    result = report.for_role("crossings")
    assert result.status is Status.DRIFT
    drifted = {d.setting: (d.declared, d.actual) for d in result.drift}
    assert drifted["partitions"] == (str(crossings.partitions), str(crossings.partitions - 1))
    assert drifted["retention.ms"] == (crossings.config["retention.ms"], "3600000")
    assert drifted["cleanup.policy"] == ("delete", "compact")
    assert "max.message.bytes" not in drifted
    assert report.for_role("flags").status is Status.CREATED
    assert not report.ok

    # Left as it was: apply never changes an existing topic.
    assert _partition_count(kafka_admin, crossings.name) == crossings.partitions - 1
    assert _topic_configs(kafka_admin, crossings.name)["retention.ms"] == "3600000"

    flags = _name_flags(names)
    assert topics_command.run(_topics_args("apply", "--bootstrap", kafka_bootstrap, *flags)) == 1
    assert (
        topics_command.run(_topics_args("apply", "--check", "--bootstrap", kafka_bootstrap, *flags))
        == 1
    )
    out = capsys.readouterr().out
    assert "drift" in out and "partitions declared 6, found 5" in out


def test_unreachable_broker_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    bootstrap = f"127.0.0.1:{free_port()}"
    args = _topics_args("apply", "--check", "--bootstrap", bootstrap, "--timeout", "2")
    assert topics_command.run(args) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and f"cannot reach Kafka at {bootstrap}" in lines[0]
    assert "bordermon stack up" in lines[0]


def test_bad_declarations_file_is_exit_2(
    kafka_bootstrap: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "topics.toml"
    bad.write_text('[[topics]]\nrole = "crossings"\n')
    args = _topics_args("apply", "--file", str(bad), "--bootstrap", kafka_bootstrap)
    assert topics_command.run(args) == 2
    assert "`name` is missing" in capsys.readouterr().err
    with pytest.raises(TopicDeclarationError):
        apply_topics(kafka_bootstrap, bad)
