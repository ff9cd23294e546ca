"""`bordermon publish`, the scanner SDK and `bordermon flags` on a real Kafka broker.

Each test works on topics of its own (the `unique_topics` fixture creates them from topics/
under unique names and deletes them afterwards). Commands are run through `bordermon.cli.main`
once the lead has registered them, and through the module's own parser until then.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.partitioner import DefaultPartitioner
from confluent_kafka import Message

import bordermon.alerts.subscriber as flags_command
from bordermon import cli
from bordermon.core import InvalidCrossing, flag_id_for
from bordermon.scanner.publisher import ScannerPublisher
from support.builders import crossing_line
from support.kafka_io import publish_keyed, read_to_end

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


# --- helpers ------------------------------------------------------------------------------------


def flag(consignment_id: str, severity: str = "high") -> dict[str, Any]:
    return {
        "schema": "flag/1",
        "flag_id": flag_id_for("transit-to-ru", consignment_id),
        "rule": "transit-to-ru",
        "consignment_id": consignment_id,
        "severity": severity,
        "reasons": ["chpl:1:854231"],
        "entry": {
            "event_id": "e1",
            "checkpoint": "KZ-NUR-ZHOLY",
            "from_country": "CN",
            "to_country": "KZ",
            "observed_at": "2024-03-01T10:00:00Z",
        },
        "exit": {
            "event_id": "e2",
            "checkpoint": "KZ-TASKALA",
            "from_country": "KZ",
            "to_country": "RU",
            "observed_at": "2024-03-04T10:00:00Z",
        },
        "dwell_seconds": 3 * 86_400,
        "window_seconds": 30 * 86_400,
        "hs_codes": ["854231"],
        "detected_at": "2024-03-04T10:00:01Z",
    }


def flag_v2(consignment_id: str, rule: str) -> dict[str, Any]:
    """A flag/2 of relabel-to-ru (from A-9 through a container) or export-without-permit."""
    base = flag(consignment_id)
    sighting = {"consignment_id": consignment_id}
    doc: dict[str, Any] = {
        "schema": "flag/2",
        "rule": rule,
        "consignment_id": consignment_id,
        "severity": "medium",
        "reasons": ["chpl:3.A:847150"],
        "entry": {**base["entry"], "consignment_id": "A-9", "from_country": "TR"},
        "exit": {**base["exit"], **sighting},
        "link": "container:MSKU1234565",
        "linked_consignment_id": "A-9",
        "dwell_seconds": 45 * 86_400,
        "window_seconds": 90 * 86_400,
        "hs_codes": ["847150"],
        "detected_at": base["detected_at"],
    }
    if rule == "export-without-permit":
        doc.update(
            severity="high",
            reasons=["export-control:1:854231"],
            entry=None,
            link=None,
            linked_consignment_id=None,
            dwell_seconds=None,
            window_seconds=None,
            hs_codes=["854231"],
        )
    key = "\n".join([rule, consignment_id, *([doc["link"]] if doc["link"] else [])])
    return {
        "schema": doc.pop("schema"),
        "flag_id": hashlib.sha256(key.encode()).hexdigest()[:32],
        **doc,
    }


def produce_flags(bootstrap: str, topic: str, flags: list[dict[str, Any]]) -> None:
    publish_keyed(
        bootstrap, topic, [(f["consignment_id"].encode(), orjson.dumps(f)) for f in flags]
    )


def keyed_values(messages: list[Message]) -> list[tuple[bytes | None, bytes | None]]:
    return sorted(((m.key(), m.value()) for m in messages), key=repr)


def invoke(
    command: str, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    """Run `bordermon COMMAND ARGV...` in-process: exit code, stdout, stderr."""
    code = cli.main([command, *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def topics(kafka_bootstrap: str, unique_topics: Any) -> dict[str, str]:
    return dict(unique_topics.names)


@pytest.fixture
def jsonl(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "events.jsonl"


# --- the SDK ------------------------------------------------------------------------------------


def test_published_events_land_keyed_by_consignment_with_the_original_bytes(
    kafka_bootstrap: str, topics: dict[str, str]
) -> None:
    # Odd spacing and an unknown field: the bytes must arrive exactly as given.
    raw = b'{"note":  "kept",  ' + crossing_line(consignment_id="CONS-\u00e9")[1:]
    doc = orjson.loads(crossing_line(consignment_id="CONS-2"))
    with ScannerPublisher(kafka_bootstrap, topics["crossings"]) as publisher:
        assert publisher.check_connection() == 6
        publisher.publish(raw)
        publisher.publish(doc)
        report = publisher.flush(30)
    assert report.ok and (report.sent, report.acknowledged) == (2, 2)
    messages = read_to_end(kafka_bootstrap, topics["crossings"])
    assert keyed_values(messages) == sorted(
        [("CONS-\u00e9".encode(), raw), (b"CONS-2", orjson.dumps(doc))], key=repr
    )


def test_each_consignment_lands_in_the_partition_the_java_client_gives_it(
    kafka_bootstrap: str, topics: dict[str, str]
) -> None:
    """SPEC §2: partitioned by murmur2 of the key whatever the client; aiokafka's
    DefaultPartitioner is the Java client's hash."""
    ids = [f"CONS-{n}" for n in range(150)] + [f"ТОО «Өскемен» 中国 📦 {n}" for n in range(60)]
    with ScannerPublisher(kafka_bootstrap, topics["crossings"]) as publisher:
        partitions = list(range(publisher.check_connection()))
        for consignment_id in ids:
            publisher.publish(crossing_line(consignment_id=consignment_id))
        assert publisher.flush(30).ok
    landed = {
        (m.key() or b"").decode(): m.partition()
        for m in read_to_end(kafka_bootstrap, topics["crossings"])
    }
    java = DefaultPartitioner()
    assert landed == {cid: java(cid.encode(), partitions, partitions) for cid in ids}


def test_an_invalid_event_raises_at_once_and_nothing_is_sent(
    kafka_bootstrap: str, topics: dict[str, str]
) -> None:
    with ScannerPublisher(kafka_bootstrap, topics["crossings"]) as publisher:
        with pytest.raises(InvalidCrossing) as caught:
            publisher.publish(crossing_line(observed_at="2024-03-01 10:00"))
        assert caught.value.reason == "invalid_field:observed_at"
        with pytest.raises(InvalidCrossing):
            publisher.publish(crossing_line(from_country="KZ", to_country="KZ"))
        report = publisher.flush(30)
    assert report.sent == 0
    assert read_to_end(kafka_bootstrap, topics["crossings"]) == []


def test_publish_raw_sends_bad_events_untouched_keyed_when_possible(
    kafka_bootstrap: str, topics: dict[str, str]
) -> None:
    bad_goods = crossing_line(consignment_id="CONS-RAW", goods=[])
    garbage = b"\x00\xffnot json"
    with ScannerPublisher(kafka_bootstrap, topics["crossings"]) as publisher:
        assert publisher.publish_raw(bad_goods) == "CONS-RAW"
        assert publisher.publish_raw(garbage) is None
        assert publisher.flush(30).ok
    messages = read_to_end(kafka_bootstrap, topics["crossings"])
    assert keyed_values(messages) == sorted([(b"CONS-RAW", bad_goods), (None, garbage)], key=repr)


# --- bordermon publish --------------------------------------------------------------------------


def test_publish_command_sends_valid_lines_and_reports_invalid_ones(
    kafka_bootstrap: str,
    topics: dict[str, str],
    jsonl: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    good = [crossing_line(consignment_id=f"C-{n}") for n in range(3)]
    lines = [good[0], good[1], crossing_line(goods=None), b"", b"{oops", good[2]]
    jsonl.write_bytes(b"\r\n".join(lines) + b"\r\n")
    code, out, err = invoke(
        "publish",
        [
            str(jsonl),
            "--kafka-bootstrap",
            kafka_bootstrap,
            "--crossings-topic",
            topics["crossings"],
        ],
        capsys,
    )
    assert code == 1
    assert out == ""
    err_lines = err.splitlines()
    assert err_lines[0] == "line 3: missing_field:goods: 'goods' is required"
    assert err_lines[1].startswith("line 5: invalid_json: ")
    assert "  sent          3" in err_lines
    assert "  acknowledged  3" in err_lines
    assert "  invalid       2 (invalid_json 1, missing_field:goods 1)" in err_lines
    assert "  failed        0" in err_lines
    messages = read_to_end(kafka_bootstrap, topics["crossings"])
    assert keyed_values(messages) == sorted(
        [(f"C-{n}".encode(), good[n]) for n in range(3)], key=repr
    )


def test_publish_command_exits_0_when_every_event_is_acknowledged_and_paces_with_rate(
    kafka_bootstrap: str,
    topics: dict[str, str],
    jsonl: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    jsonl.write_bytes(
        b"\n".join(crossing_line(consignment_id=f"C-{n}") for n in range(6)) + b"\n\n"
    )
    started = time.monotonic()
    code, _, err = invoke(
        "publish",
        [
            str(jsonl),
            "--rate",
            "20",
            "--kafka-bootstrap",
            kafka_bootstrap,
            "--crossings-topic",
            topics["crossings"],
        ],
        capsys,
    )
    elapsed = time.monotonic() - started
    assert code == 0, err
    assert "  acknowledged  6" in err.splitlines()
    assert elapsed >= 5 / 20  # six events at 20/s: the last one is due 0.25 s after the first
    assert len(read_to_end(kafka_bootstrap, topics["crossings"])) == 6


def test_publish_command_raw_sends_every_non_blank_line_byte_for_byte(
    kafka_bootstrap: str,
    topics: dict[str, str],
    jsonl: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    lines = [crossing_line(consignment_id="C-OK"), b'{"consignment_id": "C-BAD"}', b"   not json  "]
    jsonl.write_bytes(b"\n".join([lines[0], b"", lines[1], lines[2]]) + b"\n")
    code, _, err = invoke(
        "publish",
        [
            str(jsonl),
            "--raw",
            "--kafka-bootstrap",
            kafka_bootstrap,
            "--crossings-topic",
            topics["crossings"],
        ],
        capsys,
    )
    assert code == 0, err
    assert "  invalid       0" in err.splitlines()
    messages = read_to_end(kafka_bootstrap, topics["crossings"])
    assert keyed_values(messages) == sorted(
        [(b"C-OK", lines[0]), (b"C-BAD", lines[1]), (None, lines[2])], key=repr
    )


def test_publish_command_names_a_missing_topic(
    kafka_bootstrap: str, jsonl: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jsonl.write_bytes(crossing_line() + b"\n")
    missing = f"bordermon.test.missing-{uuid.uuid4().hex[:8]}"
    code, _, err = invoke(
        "publish",
        [str(jsonl), "--kafka-bootstrap", kafka_bootstrap, "--crossings-topic", missing],
        capsys,
    )
    assert code == 2
    assert err.count("\n") == 1
    assert f"topic '{missing}' does not exist" in err
    assert "bordermon topics apply" in err


@pytest.mark.parametrize("command", ["publish", "flags"])
def test_an_unreachable_broker_is_one_line_and_exit_2_within_seconds(
    command: str, jsonl: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jsonl.write_bytes(crossing_line() + b"\n")
    argv = [str(jsonl)] if command == "publish" else []
    started = time.monotonic()
    code, out, err = invoke(command, [*argv, "--kafka-bootstrap", "127.0.0.1:1"], capsys)
    assert code == 2
    assert time.monotonic() - started < 5
    assert out == ""
    assert err.count("\n") == 1, err
    assert err.startswith("bordermon: cannot reach Kafka at 127.0.0.1:1 (Connection refused)")
    assert "bordermon stack up" in err and "BORDERMON_KAFKA_BOOTSTRAP" in err


# --- the flags subscriber -----------------------------------------------------------------------


def test_subscriber_reads_flags_once_each_with_their_timestamps(
    kafka_bootstrap: str, topics: dict[str, str]
) -> None:
    flags = [flag("C-1"), flag("C-2", "medium"), flag("C-1")]  # C-1 re-delivered (SPEC §6)
    produce_flags(kafka_bootstrap, topics["flags"], flags)
    publish_keyed(kafka_bootstrap, topics["flags"], [(b"C-x", b"not a flag")])
    invalid: list[flags_command.InvalidFlagMessage] = []
    before_ms = int(time.time() * 1000) - 60_000
    with flags_command.FlagSubscriber(
        kafka_bootstrap, topics["flags"], from_beginning=True, on_invalid=invalid.append
    ) as subscriber:
        started = time.monotonic()
        received = list(subscriber.flags(idle_exit=1.0))
        assert time.monotonic() - started < 15
    assert sorted(r.flag["consignment_id"] for r in received) == ["C-1", "C-2"]
    assert all(r.flag == flag(r.flag["consignment_id"], r.flag["severity"]) for r in received)
    assert all(r.timestamp_ms is not None and r.timestamp_ms > before_ms for r in received)
    assert all(r.key == r.flag["consignment_id"] for r in received)
    assert subscriber.stats.duplicates == 1
    assert [bad.reason for bad in invalid] == ["not JSON"]


def test_subscriber_sees_flags_produced_after_it_is_assigned(
    kafka_bootstrap: str, topics: dict[str, str]
) -> None:
    produce_flags(kafka_bootstrap, topics["flags"], [flag("OLD")])
    with flags_command.FlagSubscriber(kafka_bootstrap, topics["flags"]) as subscriber:
        assert subscriber.wait_for_assignment(30)
        produce_flags(kafka_bootstrap, topics["flags"], [flag("NEW")])
        received = list(subscriber.flags(idle_exit=1.0))
    assert [r.flag["consignment_id"] for r in received] == ["NEW"]
    assert received[0].received_ns // 1_000_000 >= (received[0].timestamp_ms or 0)


def test_flags_command_with_a_group_shows_what_is_new_since_its_last_run(
    kafka_bootstrap: str, topics: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    produce_flags(kafka_bootstrap, topics["flags"], [flag("BEFORE-FIRST-RUN")])
    argv = [
        "--group",
        f"test-inbox-{uuid.uuid4().hex[:8]}",
        "--idle-exit",
        "1",
        "--kafka-bootstrap",
        kafka_bootstrap,
        "--flags-topic",
        topics["flags"],
    ]
    assert invoke("flags", argv, capsys)[:2] == (0, "")  # first run: starts at the end
    produce_flags(kafka_bootstrap, topics["flags"], [flag("BETWEEN-RUNS")])
    code, out, _ = invoke("flags", argv, capsys)
    assert code == 0
    assert [orjson.loads(line)["consignment_id"] for line in out.splitlines()] == ["BETWEEN-RUNS"]
    assert invoke("flags", argv, capsys)[:2] == (0, "")  # nothing new since


def test_flags_command_from_beginning_as_table_and_jsonl(
    kafka_bootstrap: str, topics: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    produced = [
        flag("C-1"),
        flag("C-2", "low"),
        flag("C-1"),
        flag_v2("C-3", "relabel-to-ru"),
        flag_v2("C-4", "export-without-permit"),
    ]
    produce_flags(kafka_bootstrap, topics["flags"], produced)
    common = ["--kafka-bootstrap", kafka_bootstrap, "--flags-topic", topics["flags"]]
    started = time.monotonic()
    code, out, err = invoke(
        "flags", ["--from-beginning", "--idle-exit", "1", "--format", "table", *common], capsys
    )
    assert time.monotonic() - started < 15
    assert code == 0, err
    rows = out.splitlines()
    header = ["SEVERITY", "RULE", "CONSIGNMENT", "ROUTE", "DWELL", "LINK", "REASONS"]
    assert rows[0].split() == header
    assert sorted(row.split()[:5] for row in rows[1:]) == [
        ["high", "export-without-permit", "C-4", "KZ→RU", "-"],
        ["high", "transit-to-ru", "C-1", "CN→KZ→RU", "3.0"],
        ["low", "transit-to-ru", "C-2", "CN→KZ→RU", "3.0"],
        ["medium", "relabel-to-ru", "C-3", "←", "A-9"],
    ]
    code, out, err = invoke(
        "flags", ["--from-beginning", "--idle-exit", "1", "--no-dedupe", *common], capsys
    )
    assert code == 0, err
    shown = [orjson.loads(line) for line in out.splitlines()]
    assert sorted(f["consignment_id"] for f in shown) == ["C-1", "C-1", "C-2", "C-3", "C-4"]
    by_consignment = {f["consignment_id"]: f for f in produced}
    assert all(f == by_consignment[f["consignment_id"]] for f in shown)  # flag/1 and flag/2


def test_flags_command_names_a_missing_topic(
    kafka_bootstrap: str, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = f"bordermon.test.missing-{uuid.uuid4().hex[:8]}"
    code, out, err = invoke(
        "flags", ["--kafka-bootstrap", kafka_bootstrap, "--flags-topic", missing], capsys
    )
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and "bordermon topics apply" in err
