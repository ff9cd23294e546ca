"""`bordermon flags` shows flag/2 of the three rules (SPEC §5), and flag/1 still.

The table must not crash on what flag/2 leaves null (`entry`, `dwell_seconds`,
`window_seconds` of export-without-permit), shows the rule, and for relabel-to-ru both
consignments and the link; JSONL passes every flag through as published.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from bordermon.alerts.subscriber import (
    ReceivedFlag,
    _Output,
    consignments,
    dwell_days,
    route,
    table_header,
    table_row,
)

EXIT = {
    "event_id": "TAS-2024-05-20-000311",
    "consignment_id": "KZ-ALM-0042",
    "checkpoint": "KZ-TASKALA",
    "from_country": "KZ",
    "to_country": "RU",
    "observed_at": "2024-05-20T08:00:00Z",
}
RELABEL: dict[str, Any] = {
    "schema": "flag/2",
    "flag_id": "3f0c1b6a9e2d4c5b8a7f6e5d4c3b2a19",
    "rule": "relabel-to-ru",
    "consignment_id": "KZ-ALM-0042",
    "severity": "medium",
    "reasons": ["chpl:3.A:847150"],
    "entry": {
        "event_id": "KHO-2024-04-05-000042",
        "consignment_id": "TR-IST-7781",
        "checkpoint": "KZ-KHORGOS",
        "from_country": "TR",
        "to_country": "KZ",
        "observed_at": "2024-04-05T08:00:00Z",
    },
    "exit": EXIT,
    "link": "container:MSCU1234567",
    "linked_consignment_id": "TR-IST-7781",
    "dwell_seconds": 45 * 86_400,
    "window_seconds": 90 * 86_400,
    "hs_codes": ["847150"],
    "detected_at": "2024-05-20T08:00:00.412Z",
}
WITHOUT_PERMIT: dict[str, Any] = {
    **RELABEL,
    "rule": "export-without-permit",
    "consignment_id": "KZ-ALM-5521",
    "severity": "high",
    "reasons": ["export-control:2:852691"],
    "entry": None,
    "exit": {**EXIT, "consignment_id": "KZ-ALM-5521"},
    "link": None,
    "linked_consignment_id": None,
    "dwell_seconds": None,
    "window_seconds": None,
    "hs_codes": ["852691"],
}
TRANSIT_V2: dict[str, Any] = {
    **RELABEL,
    "rule": "transit-to-ru",
    "consignment_id": "CN-SZX-88231",
    "severity": "high",
    "reasons": ["chpl:1:854231"],
    "entry": {**RELABEL["entry"], "consignment_id": "CN-SZX-88231", "from_country": "CN"},
    "exit": {**EXIT, "consignment_id": "CN-SZX-88231"},
    "link": None,
    "linked_consignment_id": None,
    "dwell_seconds": 679_330,
    "window_seconds": 2_592_000,
}
TRANSIT_V1: dict[str, Any] = {
    "schema": "flag/1",
    "flag_id": "8f24e57cdbaba6ef554eed869d90adb1",
    "rule": "transit-to-ru",
    "consignment_id": "CN-SZX-88231",
    "severity": "high",
    "reasons": ["chpl:1:854231", "declared-destination:KZ"],
    "entry": {
        "event_id": "NUR-2024-03-01-000117",
        "checkpoint": "KZ-NUR-ZHOLY",
        "from_country": "CN",
        "to_country": "KZ",
        "observed_at": "2024-03-01T15:00:00+05:00",
    },
    "exit": {
        "event_id": "TAS-2024-03-09-004211",
        "checkpoint": "KZ-TASKALA",
        "from_country": "KZ",
        "to_country": "RU",
        "observed_at": "2024-03-09T06:42:10Z",
    },
    "dwell_seconds": 679330,
    "window_seconds": 2592000,
    "hs_codes": ["854231"],
    "detected_at": "2024-03-09T06:42:10.512345Z",
}


def test_relabel_row_shows_both_consignments_and_the_link() -> None:
    row = table_row(RELABEL)
    assert row.split() == [
        "medium",
        "relabel-to-ru",
        "KZ-ALM-0042",
        "←",
        "TR-IST-7781",
        "TR→KZ→RU",
        "45.0",
        "d",
        "container:MSCU1234567",
        "chpl:3.A:847150",
    ]
    header = table_header()
    assert header.index("LINK") == row.index("container:")
    assert header.index("REASONS") == row.index("chpl:")
    assert consignments(RELABEL, "->") == "KZ-ALM-0042 <- TR-IST-7781"


def test_export_without_permit_row_has_no_entry_dwell_or_link() -> None:
    row = table_row(WITHOUT_PERMIT)
    assert row.split() == [
        "high",
        "export-without-permit",
        "KZ-ALM-5521",
        "KZ→RU",
        "-",
        "-",
        "export-control:2:852691",
    ]
    header = table_header()
    for column, text in (("RULE", "export-without-permit"), ("ROUTE", "KZ→RU")):
        assert header.index(column) == row.index(text)
    assert header.index("REASONS") == row.index("export-control")
    assert route(WITHOUT_PERMIT, "->") == "KZ->RU"
    assert dwell_days(None) == "-"


@pytest.mark.parametrize("flag", [TRANSIT_V2, TRANSIT_V1], ids=["flag/2", "flag/1"])
def test_transit_rows_look_the_same_in_flag_2_and_flag_1(flag: dict[str, Any]) -> None:
    row = table_row(flag)
    assert row.split()[:7] == ["high", "transit-to-ru", "CN-SZX-88231", "CN→KZ→RU", "7.9", "d", "-"]
    assert row.index("CN→KZ→RU") == table_header().index("ROUTE")


def test_columns_line_up_across_rules() -> None:
    header = table_header()
    flags = (TRANSIT_V1, TRANSIT_V2, RELABEL, WITHOUT_PERMIT)
    for flag in flags:
        row = table_row(flag)
        assert row.index(flag["rule"]) == header.index("RULE")
        assert row.index(flag["consignment_id"]) == header.index("CONSIGNMENT")
        assert row.index(flag["reasons"][0]) == header.index("REASONS")


def test_hostile_link_and_linked_consignment_are_neutralised() -> None:
    flag = {**RELABEL, "link": "seal:\x1b[2J", "linked_consignment_id": "A\x07"}
    row = table_row(flag)
    assert "\x1b" not in row and "\x07" not in row


def _received(flag: dict[str, Any]) -> ReceivedFlag:
    return ReceivedFlag(flag, timestamp_ms=None, received_ns=0, partition=0, offset=0, key=None)


def test_jsonl_passes_every_flag_through_as_published() -> None:
    flags = [RELABEL, WITHOUT_PERMIT, TRANSIT_V2, TRANSIT_V1]
    published = [orjson.dumps(flag) for flag in flags]
    out = io.BytesIO()
    _Output(out, "jsonl", "utf-8").write([_received(orjson.loads(raw)) for raw in published])
    assert out.getvalue().splitlines() == published


def test_the_table_writes_every_rule_and_both_versions() -> None:
    out = io.BytesIO()
    output = _Output(out, "table", "ascii")
    output.write([_received(flag) for flag in (RELABEL, WITHOUT_PERMIT)])
    output.write([_received(flag) for flag in (TRANSIT_V2, TRANSIT_V1)])
    lines = out.getvalue().decode().splitlines()
    assert lines[0] == table_header()
    assert [line.split()[1] for line in lines[1:]] == [
        "relabel-to-ru",
        "export-without-permit",
        "transit-to-ru",
        "transit-to-ru",
    ]
    assert "KZ-ALM-0042 <- TR-IST-7781" in lines[1] and "KZ->RU" in lines[2]


def test_the_readme_shows_the_table_of_the_flag_v2_examples() -> None:
    """README "The three rules": its table is what `bordermon flags` prints for its flags."""
    repo = Path(__file__).resolve().parents[2]
    readme = (repo / "README.md").read_text("utf-8")
    section = readme.split("## The three rules", 1)[1].split("\n## ", 1)[0]
    shown = section.split("```\n")[-2].splitlines()
    schema = json.loads((repo / "topics/schemas/flag-v2.schema.json").read_text("utf-8"))
    assert shown == [table_header(), *(table_row(flag) for flag in schema["examples"])]
