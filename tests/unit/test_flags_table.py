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

REPO = Path(__file__).resolve().parents[2]


def _examples(name: str) -> list[dict[str, Any]]:
    schema = json.loads((REPO / "topics" / "schemas" / name).read_text("utf-8"))
    return list(schema["examples"])


TRANSIT_V2, RELABEL, WITHOUT_PERMIT = _examples("flag-v2.schema.json")
"""The three flags of the crossing examples (README, "The three rules")."""
(TRANSIT_V1,) = _examples("flag-v1.schema.json")


def test_relabel_row_shows_both_consignments_and_the_link() -> None:
    row = table_row(RELABEL)
    assert row.split() == [
        "medium",
        "relabel-to-ru",
        "KZ-ALM-0042",
        "←",
        "CN-SZX-88231",
        "CN→KZ→RU",
        "41.8",
        "d",
        "container:MSKU1234565",
        "chpl:3.A:847150",
    ]
    header = table_header()
    assert header.index("LINK") == row.index("container:")
    assert header.index("REASONS") == row.index("chpl:")
    assert consignments(RELABEL, "->") == "KZ-ALM-0042 <- CN-SZX-88231"


def test_export_without_permit_row_has_no_entry_dwell_or_link() -> None:
    row = table_row(WITHOUT_PERMIT)
    assert row.split()[:6] == [
        "high",
        "export-without-permit",
        "CN-SZX-88231",
        "KZ→RU",
        "-",
        "-",
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
    assert "KZ-ALM-0042 <- CN-SZX-88231" in lines[1] and "KZ->RU" in lines[2]


def test_the_readme_shows_the_table_of_the_flag_v2_examples() -> None:
    """README "The three rules": its table is what `bordermon flags` prints for its flags."""
    readme = (REPO / "README.md").read_text("utf-8")
    section = readme.split("## The three rules", 1)[1].split("\n## ", 1)[0]
    shown = section.split("```\n")[-2].splitlines()
    flags = (TRANSIT_V2, RELABEL, WITHOUT_PERMIT)
    assert shown == [table_header(), *(table_row(flag) for flag in flags)]
