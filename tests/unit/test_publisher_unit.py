"""The broker-free parts of `bordermon publish` and `bordermon flags`: line handling, keying,
delivery accounting, pacing, exit codes and the flag table. A fake stands in for the
confluent-kafka Producer; the real one is exercised in tests/integration."""

from __future__ import annotations

import argparse
import io
from collections.abc import Callable
from typing import Any

import orjson
import pytest

import bordermon.cli.flags as flags_command
import bordermon.cli.publish as publish_command
from bordermon.alerts.subscriber import (
    _SeenIds,
    decode_flag,
    dwell_days,
    printable,
    route,
    table_header,
    table_row,
)
from bordermon.cli.publish import Pacer, PublishStats, exit_code, summary
from bordermon.core import InvalidCrossing
from bordermon.jsonl import iter_lines
from bordermon.kafka import NotAuthorized, _short_reason, unreachable_hint
from bordermon.scanner.publisher import (
    BrokerUnreachable,
    Delivery,
    DeliveryReport,
    ScannerPublisher,
    TopicNotFound,
)
from support.builders import crossing_doc, crossing_line
from support.fakes import FakeProducer

# --- reading lines ------------------------------------------------------------------------------


def test_iter_lines_numbers_lines_as_an_editor_does_and_skips_blank_ones() -> None:
    source = io.BytesIO(b'{"a":1}\n\n   \n{"b":2}\r\n\t\n{"c":3}')
    blank = [0]
    assert list(iter_lines(source, blank)) == [(1, b'{"a":1}'), (4, b'{"b":2}'), (6, b'{"c":3}')]
    assert blank == [3]


def test_iter_lines_keeps_inner_bytes_untouched() -> None:
    line = b'  {"x": "caf\xc3\xa9\\n", "y": 1}  '
    assert list(iter_lines(io.BytesIO(line + b"\n"))) == [(1, line)]


# --- publishing and keying ----------------------------------------------------------------------


def test_publish_sends_the_original_bytes_keyed_by_consignment_id() -> None:
    fake = FakeProducer()
    publisher = ScannerPublisher(topic="t", producer=fake)
    raw = b'{ "extra": [1, 2],  ' + crossing_line(consignment_id="CONS-\u00e9")[1:]
    event = publisher.publish(raw)
    assert event.consignment_id == "CONS-\u00e9"
    assert fake.produced == [("t", "CONS-\u00e9".encode(), raw)]


def test_publish_serialises_a_mapping() -> None:
    fake = FakeProducer()
    publisher = ScannerPublisher(topic="t", producer=fake)
    doc = crossing_doc(consignment_id="C-2")
    publisher.publish(doc)
    assert fake.produced == [("t", b"C-2", orjson.dumps(doc))]


def test_publish_of_an_invalid_event_raises_and_sends_nothing() -> None:
    fake = FakeProducer()
    publisher = ScannerPublisher(producer=fake)
    with pytest.raises(InvalidCrossing) as caught:
        publisher.publish(crossing_doc(goods=None))
    assert caught.value.reason == "missing_field:goods"
    with pytest.raises(InvalidCrossing) as caught:
        publisher.publish({"event_id": object()})
    assert caught.value.reason == "invalid_json"
    with pytest.raises(InvalidCrossing) as caught:
        publisher.publish(b"{nope")
    assert caught.value.reason == "invalid_json"
    assert fake.produced == []
    assert publisher.flush(1).sent == 0


def test_publish_accepts_bytes_like_values_and_refuses_text() -> None:
    fake = FakeProducer()
    publisher = ScannerPublisher(topic="t", producer=fake)
    raw = crossing_line()
    publisher.publish(bytearray(raw))  # type: ignore[arg-type]
    assert fake.produced == [("t", b"CONS-1", raw)]
    with pytest.raises(TypeError, match="mapping or JSON bytes"):
        publisher.publish(raw.decode())  # type: ignore[arg-type]


def test_publish_uses_the_monitored_country_of_the_publisher() -> None:
    publisher = ScannerPublisher(producer=FakeProducer(), monitored_country="UZ")
    with pytest.raises(InvalidCrossing) as caught:
        publisher.publish(crossing_doc())  # CN -> KZ does not touch UZ
    assert caught.value.reason == "not_a_crossing"


@pytest.mark.parametrize(
    ("value", "key"),
    [
        (b'{"consignment_id": "C-9", "goods": "bad"}', b"C-9"),
        (b"not json at all", None),
        (b'{"consignment_id": 42}', None),
        (b'["consignment_id"]', None),
        (b"", None),
    ],
)
def test_publish_raw_sends_untouched_and_keys_when_it_can(value: bytes, key: bytes | None) -> None:
    fake = FakeProducer()
    publisher = ScannerPublisher(topic="t", producer=fake)
    returned = publisher.publish_raw(value)
    assert fake.produced == [("t", key, value)]
    assert returned == (None if key is None else key.decode())


def test_a_full_local_queue_is_drained_by_polling_then_the_event_is_sent() -> None:
    fake = FakeProducer(buffer_errors=3)
    publisher = ScannerPublisher(producer=fake)
    publisher.publish(crossing_line())
    assert len(fake.produced) == 1
    assert fake.polls[:3] == [0.1, 0.1, 0.1]


def test_deliveries_are_counted_and_failures_grouped_by_reason() -> None:
    bad = crossing_line(event_id="ev-bad")
    fake = FakeProducer(fail=frozenset({bad}))
    outcomes: list[Delivery] = []
    publisher = ScannerPublisher(producer=fake, on_delivery=outcomes.append)
    publisher.publish(crossing_line(event_id="ev-1"))
    publisher.publish(bad)
    publisher.publish_raw(b"junk")
    report = publisher.flush(5)
    assert report == DeliveryReport(
        sent=3, acknowledged=2, failed=1, pending=0, errors={"Broker: Message too large": 1}
    )
    assert not report.ok
    assert [o.ok for o in outcomes] == [True, False, True]
    assert outcomes[0].key == "CONS-1" and outcomes[2].key is None


def test_leaving_the_with_block_flushes() -> None:
    with ScannerPublisher(producer=FakeProducer(lazy=True)) as publisher:
        publisher.publish(crossing_line())
        assert publisher.report().pending == 1
    report = publisher.report()
    assert (report.acknowledged, report.pending) == (1, 0)


# --- the command's accounting -------------------------------------------------------------------


def test_exit_code_is_zero_only_when_everything_read_was_acknowledged() -> None:
    ok = DeliveryReport(sent=2, acknowledged=2, failed=0, pending=0)
    assert exit_code(PublishStats(lines=2), ok) == 0
    invalid = PublishStats(lines=3)
    invalid.invalid["invalid_json"] += 1
    assert exit_code(invalid, ok) == 1
    failed = DeliveryReport(sent=2, acknowledged=1, failed=1, pending=0, errors={"x": 1})
    assert exit_code(PublishStats(lines=2), failed) == 1
    pending = DeliveryReport(sent=2, acknowledged=1, failed=0, pending=1)
    assert exit_code(PublishStats(lines=2), pending) == 1
    assert exit_code(PublishStats(lines=2, stopped=130), ok) == 130


def test_summary_names_every_count() -> None:
    stats = PublishStats(lines=5, blank=1)
    stats.invalid.update({"missing_field:goods": 2, "invalid_json": 1})
    report = DeliveryReport(
        sent=2, acknowledged=1, failed=1, pending=0, errors={"Local: Message timed out": 1}
    )
    text = summary(stats, report, topic="bordermon.crossings", seconds=1.5)
    assert "5 events read in 1.50 s to bordermon.crossings" in text
    assert "sent          2" in text
    assert "acknowledged  1" in text
    assert "invalid       3 (missing_field:goods 2, invalid_json 1)" in text
    assert "failed        1 (Local: Message timed out 1)" in text
    assert "blank lines skipped 1" in text


def test_pacer_spreads_events_evenly_and_restarts_after_a_stall() -> None:
    now = [100.0]
    pacer = Pacer(10, clock=lambda: now[0])
    assert pacer.delay() == 0.0
    assert pacer.delay() == pytest.approx(0.1)
    now[0] += 0.15  # time passes while sending
    assert pacer.delay() == pytest.approx(0.05)
    now[0] += 5.0  # a stall: no burst of catch-up events afterwards
    assert pacer.delay() == 0.0
    assert pacer.delay() == pytest.approx(0.1)
    assert Pacer(0).delay() == 0.0


def test_connection_errors_read_as_one_actionable_line() -> None:
    refused = (
        "127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused"
        " (after 0ms in state CONNECT)"
    )
    assert _short_reason(refused) == "Connection refused"
    hint = unreachable_hint(BrokerUnreachable("cannot reach Kafka at h:1 (x)"), "crossings_topic")
    assert "bordermon stack up" in hint and "BORDERMON_KAFKA_BOOTSTRAP" in hint
    assert "\n" not in hint
    hint = unreachable_hint(TopicNotFound("topic 't' does not exist"), "flags_topic")
    assert "bordermon topics apply" in hint and "BORDERMON_FLAGS_TOPIC" in hint
    hint = unreachable_hint(NotAuthorized("Kafka at h:1 refused the login (x)"), "flags_topic")
    assert "kafka_password_file" in hint and "acls.toml" in hint and "stack up" not in hint
    tls = BrokerUnreachable("cannot reach Kafka at h:1 (SSL handshake failed: certificate ...)")
    assert "kafka_ca_file" in unreachable_hint(tls, "crossings_topic")


def _parser(configure: Callable[[argparse.ArgumentParser], None]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bordermon x")
    configure(parser)
    return parser


def test_publish_options() -> None:
    parser = _parser(publish_command.configure_parser)
    args = parser.parse_args(["in.jsonl", "--raw", "--rate", "2.5", "--kafka-bootstrap", "h:1"])
    assert (args.file, args.raw, args.rate, args.setting_kafka_bootstrap) == (
        "in.jsonl",
        True,
        2.5,
        "h:1",
    )
    assert parser.parse_args([]).file == "-"
    for bad in (["--rate", "-1"], ["--rate", "fast"], ["--timeout", "0"]):
        with pytest.raises(SystemExit) as caught:
            parser.parse_args(bad)
        assert caught.value.code == 2


def test_flags_options() -> None:
    parser = _parser(flags_command.configure_parser)
    args = parser.parse_args([])
    assert (args.follow, args.idle_exit, args.format, args.dedupe, args.group) == (
        False,
        None,
        None,
        True,
        None,
    )
    args = parser.parse_args(["--no-dedupe", "--format", "table", "--idle-exit", "0.5", "-f"])
    assert (args.dedupe, args.format, args.idle_exit, args.follow) == (False, "table", 0.5, True)
    for bad in (["--idle-exit", "0"], ["--format", "csv"]):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)


# --- reading flags ------------------------------------------------------------------------------


def flag(**fields: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schema": "flag/1",
        "flag_id": "0" * 32,
        "rule": "transit-to-ru",
        "consignment_id": "CONS-1",
        "severity": "high",
        "reasons": ["chpl:1:854231", "declared-destination:KZ"],
        "entry": {"from_country": "CN", "to_country": "KZ"},
        "exit": {"from_country": "KZ", "to_country": "RU"},
        "dwell_seconds": 3 * 86_400 + 4 * 3600,
    }
    doc.update(fields)
    return doc


def test_decode_flag_requires_an_object_with_a_flag_id() -> None:
    assert decode_flag(orjson.dumps(flag()))["flag_id"] == "0" * 32  # type: ignore[index]
    assert decode_flag(None) == "empty message"
    assert decode_flag(b"{") == "not JSON"
    assert decode_flag(b"[1]") == "not a JSON object"
    assert decode_flag(b'{"flag_id": ""}') == "no flag_id"
    assert decode_flag(b'{"flag_id": 7}') == "no flag_id"


def test_seen_ids_dedupe_and_forget_the_oldest_past_capacity() -> None:
    seen = _SeenIds(2)
    assert seen.add("a") and seen.add("b")
    assert not seen.add("a")
    assert seen.add("c")  # forgets "a"
    assert len(seen) == 2
    assert seen.add("a")


def test_table_row_shows_severity_rule_consignment_route_dwell_and_reasons() -> None:
    row = table_row(flag())
    assert row.split() == [
        "high",
        "transit-to-ru",
        "CONS-1",
        "CN→KZ→RU",
        "3.2",
        "d",
        "-",
        "chpl:1:854231,",
        "declared-destination:KZ",
    ]
    header = table_header()
    assert header.index("RULE") == row.index("transit-to-ru")
    assert header.index("CONSIGNMENT") == row.index("CONS-1")
    assert header.index("ROUTE") == row.index("CN→KZ→RU")
    assert header.index("REASONS") == row.index("chpl")


def test_table_row_survives_missing_fields_and_ascii_terminals() -> None:
    row = table_row({"flag_id": "x"}, arrow="->")
    assert row.split() == ["?", "?", "?", "?->?->?", "?", "-", "-"]
    assert route(flag(), arrow="->") == "CN->KZ->RU"
    assert dwell_days(0) == "0.0 d"
    assert dwell_days(30 * 86_400) == "30.0 d"
    assert dwell_days(True) == "?"


def test_terminal_escape_sequences_in_flags_are_neutralised() -> None:
    assert printable("KZ\x1b[2J") == "KZ\\x1b[2J"
    assert "\x1b" not in table_row(flag(consignment_id="C\x1b]0;owned\x07"))
