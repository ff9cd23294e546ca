"""Signed scans end to end (issue 10) on real Kafka and Redis: keys made by
`bordermon scanner-key new`, a registry of their lines, scans signed by the SDK and by
`bordermon publish --scanner-key`, and a `bordermon worker` with `require_signatures` on that
flags the good pair and dead-letters the rest with the exact reason."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
from confluent_kafka import Producer

from bordermon.cli import main
from bordermon.core.signatures import sign_headers
from bordermon.scanner.keys import read_private_key
from bordermon.scanner.publisher import ScannerPublisher
from bordermon.stores.base import CONSIGNMENTS
from bordermon.stores.redis_store import split_revision
from support.flags import flags_of
from support.kafka_io import QUIET, read_topic
from support.signed_scans import (
    ENTRY_CHECKPOINT,
    EXIT_CHECKPOINT,
    make_key,
    signed_scan_entry,
    signed_scan_exit,
)
from support.workers import running_worker, worker_env

pytestmark = pytest.mark.integration


def test_only_scans_signed_by_a_registered_scanner_at_its_checkpoint_are_processed(
    kafka_bootstrap: str,
    redis_test_url: str,
    redis_client: redis.Redis[bytes],
    unique_topics: Any,
    tmp_path: Path,
) -> None:
    entry_key_file, entry_line = make_key(tmp_path, "entry-scanner", ENTRY_CHECKPOINT)
    exit_key_file, exit_line = make_key(tmp_path, "exit-scanner", EXIT_CHECKPOINT)
    forger_key_file, _ = make_key(tmp_path, "forger", "*")  # never registered
    registry = tmp_path / "registry.csv"
    registry.write_text(f"# scanners of the test\n{entry_line}\n{exit_line}\n")
    entry_key, exit_key = read_private_key(entry_key_file), read_private_key(exit_key_file)
    topic = unique_topics.crossings

    # Every consignment gets a genuine signed entry; only G's exit is genuine as well.
    consignments = ["G", "UNSIGNED", "FORGED", "MISATTRIBUTED", "TAMPERED", "IMPOSTOR"]
    with ScannerPublisher(
        kafka_bootstrap, topic, config=QUIET, scanner_id="entry-scanner", signing_key=entry_key
    ) as publisher:
        for consignment in consignments:
            publisher.publish(signed_scan_entry(consignment))
        # A genuine key reporting a checkpoint it is not registered for.
        misattributed = signed_scan_exit("MISATTRIBUTED")
        publisher.publish(misattributed)
        assert publisher.flush(30).ok
    with ScannerPublisher(
        kafka_bootstrap,
        topic,
        config=QUIET,
        scanner_id="forger",
        signing_key=read_private_key(forger_key_file),
    ) as publisher:
        forged = signed_scan_exit("FORGED")
        publisher.publish(forged)
    with ScannerPublisher(kafka_bootstrap, topic, config=QUIET) as publisher:
        unsigned = signed_scan_exit("UNSIGNED")
        publisher.publish(unsigned)
    with ScannerPublisher(
        kafka_bootstrap, topic, config=QUIET, scanner_id="exit-scanner", signing_key=exit_key
    ) as publisher:
        # Signed by the exit scanner, but the payload says another scanner made the scan.
        impostor = signed_scan_exit("IMPOSTOR", scanner_id="entry-scanner")
        publisher.publish(impostor)
    # Signed, then one byte changed in transit (a permit number).
    original = signed_scan_exit("TAMPERED")
    tampered = original.replace(b"LIC-1", b"LIC-2")
    producer = Producer(
        {"bootstrap.servers": kafka_bootstrap, "partitioner": "murmur2_random", **QUIET}
    )
    producer.produce(
        topic,
        tampered,
        key=b"TAMPERED",
        headers=[*sign_headers(original, "exit-scanner", exit_key)],
    )
    assert producer.flush(30) == 0
    # The good exit through the command line, as an operator would send it.
    scans = tmp_path / "good-exit.jsonl"
    scans.write_bytes(signed_scan_exit("G") + b"\n")
    publish = ["publish", str(scans), "--kafka-bootstrap", kafka_bootstrap]
    signing = ["--scanner-key", str(exit_key_file), "--scanner-id", "exit-scanner"]
    assert main([*publish, "--crossings-topic", topic, *signing]) == 0

    env = worker_env(
        kafka_bootstrap,
        redis_test_url,
        unique_topics.names,
        f"g-{uuid.uuid4()}",
        BORDERMON_REQUIRE_SIGNATURES="true",
        BORDERMON_SCANNER_REGISTRY=str(registry),
    )
    with running_worker(env, tmp_path / "worker.log") as worker:
        dead = read_topic(kafka_bootstrap, unique_topics.dead_letter, until_count=5)
        flag_messages = read_topic(kafka_bootstrap, unique_topics.flags, until_count=1)
        log = worker.log()

    flags = flags_of(flag_messages)
    assert [(f["rule"], f["consignment_id"]) for f in flags] == [("transit-to-ru", "G")]
    assert (flags[0]["entry"]["event_id"], flags[0]["exit"]["event_id"]) == ("G-in", "G-out")

    by_key = {m.key().decode(): m for m in dead}
    assert sorted(by_key) == ["FORGED", "IMPOSTOR", "MISATTRIBUTED", "TAMPERED", "UNSIGNED"]
    assert len(dead) == 5
    headers = {key: dict(m.headers()) for key, m in by_key.items()}
    reasons = {key: h["error"].decode() for key, h in headers.items()}
    assert reasons == {
        "UNSIGNED": "unsigned",
        "FORGED": "bad_signature",
        "MISATTRIBUTED": "checkpoint_not_allowed",
        "TAMPERED": "bad_signature",
        "IMPOSTOR": "bad_signature",
    }
    details = {key: h["detail"].decode() for key, h in headers.items()}
    assert "not in the scanner registry" in details["FORGED"]
    assert "does not verify" in details["TAMPERED"]
    assert "'entry-scanner' may not report checkpoint 'KZ-TASKALA'" in details["MISATTRIBUTED"]
    assert "scanner_id 'entry-scanner' is not the signing scanner" in details["IMPOSTOR"]
    # The original bytes, untouched, as for every dead letter.
    assert by_key["TAMPERED"].value() == tampered
    assert by_key["UNSIGNED"].value() == unsigned
    assert by_key["FORGED"].value() == forged
    assert by_key["MISATTRIBUTED"].value() == misattributed
    assert by_key["IMPOSTOR"].value() == impostor

    # Rejected exits never reached state; their consignments hold the accepted entry only.
    events_in_state = {}
    for consignment in consignments:
        stored = redis_client.get(b"bordermon:state:" + consignment.encode())
        assert stored is not None, consignment
        state = CONSIGNMENTS.decode(consignment, split_revision(stored)[1])
        events_in_state[consignment] = state.accepted
    assert events_in_state == {c: 2 if c == "G" else 1 for c in consignments}
    assert "signed scans required: 2 scanner(s)" in log
    for key_file in (entry_key_file, exit_key_file, forger_key_file):
        secret = key_file.read_text().splitlines()[1]  # the PEM body
        assert secret not in log
