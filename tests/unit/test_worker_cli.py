"""`bordermon worker` mistakes end as one line, before anything connects (no broker needed)."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

import bordermon.cli.worker as worker_command
from bordermon.cli import main
from bordermon.core.state import StateDecodeError
from bordermon.metrics import CONSIGNMENT_STORE, LINK_STORE, PROMETHEUS, STATE_STORES
from bordermon.processor.worker import quarantine_counter

BAD_REDIS_URLS = [
    "notaurl",
    "http://localhost:6379",
    "redis://localhost:99999/0",
    "redis://localhost:6379/abc",
    "redis://:s3cret@localhost:port/0",
]


def last_line(err: str) -> str:
    assert "Traceback" not in err and err.count("\n") == 1, err
    return err.rstrip("\n")


@pytest.mark.parametrize("url", BAD_REDIS_URLS)
def test_a_malformed_redis_url_is_one_line_naming_the_setting(
    url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["worker", "--redis-url", url]) == 2
    line = last_line(capsys.readouterr().err)
    assert line.startswith("bordermon: --redis-url: ")
    assert "redis://" in line and "rediss://" in line and "unix://" in line
    assert "s3cret" not in line
    monkeypatch.setenv("BORDERMON_REDIS_URL", url)
    assert main(["worker"]) == 2
    assert last_line(capsys.readouterr().err).startswith("bordermon: BORDERMON_REDIS_URL: ")


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        yield int(taken.getsockname()[1])


def test_a_metrics_port_in_use_says_which_setting_to_change(
    busy_port: int, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker_command, "preflight", lambda settings: None)  # no Redis, no Kafka
    monkeypatch.setattr(logging, "basicConfig", lambda **kwargs: None)  # keep the root logger
    assert main(["worker", "--metrics-port", str(busy_port)]) == 2
    line = last_line(capsys.readouterr().err)
    assert line.startswith(f"bordermon: cannot serve metrics on port {busy_port}: ")
    assert "BORDERMON_METRICS_PORT" in line and "--metrics-port" in line


def test_the_metrics_log_line_names_the_address_really_bound(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    log = logging.getLogger("test.worker")
    with caplog.at_level(logging.INFO, logger="test.worker"):
        server = worker_command.serve_metrics(port, log)
    try:
        assert caplog.messages == [f"metrics on http://0.0.0.0:{port}/metrics (all interfaces)"]
    finally:
        server.shutdown()
        server.server_close()


def test_the_faust_app_leaves_the_working_directory_alone(tmp_path: Path) -> None:
    """faust creates `<id>-data/v1/tables` on start, even with the memory store."""
    script = (
        "from bordermon.processor.app import new_faust_app\n"
        "app = new_faust_app('bordermon-worker', 'localhost:9092')\n"
        "app._create_directories()\n"  # what faust does when the app first starts
        "print(app.conf.tabledir)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert list(tmp_path.iterdir()) == []
    tabledir = Path(result.stdout.strip())
    assert tabledir.is_relative_to(tempfile.gettempdir())
    assert not tabledir.parent.parent.exists()  # removed at exit


def quarantined_by_store() -> dict[str, float]:
    return {
        store: REGISTRY.get_sample_value("bordermon_states_quarantined_total", {"store": store})
        or 0.0
        for store in STATE_STORES
    }


@pytest.mark.parametrize("store", [CONSIGNMENT_STORE, LINK_STORE])
def test_a_quarantined_state_is_counted_under_the_store_it_came_from(store: str) -> None:
    """What the worker passes its stores as `on_corrupt` (open_stores; the stores themselves
    call it: tests/contract), on the worker's real recorder."""
    on_corrupt = quarantine_counter(PROMETHEUS, store)
    before = quarantined_by_store()
    on_corrupt("container:MSCU1234567", StateDecodeError("not a state"))
    on_corrupt("container:MSCU1234567", StateDecodeError("not a state"))
    assert quarantined_by_store() == {**before, store: before[store] + 2}
