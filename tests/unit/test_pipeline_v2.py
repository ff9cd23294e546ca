"""The batch steps of both stages, and replay running them in-process (SPEC §7)."""

from __future__ import annotations

import io

import orjson

from bordermon.core import DetectionConfig, LinkState, Severity
from bordermon.core.pipeline import (
    Message,
    Tally,
    apply_batch,
    apply_link_batch,
    validate_batch,
)
from bordermon.core.state import ConsignmentState
from bordermon.replay import replay
from support.builders import CHPL, crossing_doc

CONFIG = DetectionConfig(watchlist=CHPL)
BOX = {"container_id": "MSCU1234567"}


def docs() -> list[dict[str, object]]:
    return [
        crossing_doc(event_id="a1", consignment_id="A", transport=BOX),
        crossing_doc(
            event_id="b1",
            consignment_id="B",
            from_country="KZ",
            to_country="RU",
            observed_at="2024-03-20T10:00:00Z",
            transport=BOX,
        ),
    ]


def test_both_batch_steps_in_order() -> None:
    tally = Tally()
    messages = [Message(orjson.dumps(doc), line=n) for n, doc in enumerate(docs(), 1)]
    accepted, _ = validate_batch(messages, CONFIG, tally)
    states: dict[str, ConsignmentState] = {}
    outcome = apply_batch(accepted, states, CONFIG, tally, lambda: 0)
    assert [(f.rule, f.consignment_id) for f, _ in outcome.flags] == [
        ("export-without-permit", "B")
    ]
    assert [(s.consignment_id, s.direction) for s in outcome.sightings] == [
        ("A", "entry"),
        ("B", "exit"),
    ]
    link_states: dict[str, LinkState] = {}
    links = apply_link_batch(outcome.sightings, link_states, CONFIG, tally, lambda: 0)
    [(flag, trigger)] = links.flags
    assert (flag.rule, flag.consignment_id, flag.linked_consignment_id) == (
        "relabel-to-ru",
        "B",
        "A",
    )
    assert trigger is outcome.sightings[1]
    assert set(links.touched) == {"container:MSCU1234567"}
    assert links.touched["container:MSCU1234567"].pending == [flag]
    assert tally.sightings == 2
    assert tally.flags == {Severity.HIGH: 2}
    assert tally.flags_by_rule == {"export-without-permit": 1, "relabel-to-ru": 1}
    # Sightings again (a re-read): duplicates, nothing touched, no flag.
    again = apply_link_batch(outcome.sightings, link_states, CONFIG, tally, lambda: 0)
    assert again.flags == [] and again.touched == {}


def test_replay_runs_both_stages_and_writes_flags_in_detection_order() -> None:
    out = io.BytesIO()
    source = io.BytesIO(b"".join(orjson.dumps(doc) + b"\n" for doc in docs()))
    result = replay(source, out, CONFIG, clock=lambda: 0)
    flags = [orjson.loads(line) for line in out.getvalue().splitlines()]
    # Within a batch: the consignment stage's flags first, then the link stage's.
    assert [(f["rule"], f["consignment_id"]) for f in flags] == [
        ("export-without-permit", "B"),
        ("relabel-to-ru", "B"),
    ]
    assert all(f["schema"] == "flag/2" for f in flags)
    assert (result.consignments, result.link_keys) == (2, 1)
    assert result.tally.flags_by_rule == {"export-without-permit": 1, "relabel-to-ru": 1}


def test_replay_with_relabel_off_emits_no_sightings() -> None:
    config = DetectionConfig(watchlist=CHPL, rules=frozenset({"transit-to-ru"}))
    out = io.BytesIO()
    source = io.BytesIO(b"".join(orjson.dumps(doc) + b"\n" for doc in docs()))
    result = replay(source, out, config)
    assert out.getvalue() == b"" and result.tally.sightings == 0 and result.link_keys == 0
