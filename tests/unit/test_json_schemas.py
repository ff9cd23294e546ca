"""topics/schemas/*.schema.json say what the core checks (SPEC v2 §3, §5).

The JSON Schemas are for scanner vendors and subscribers that do not run Python; the core's
`parse_crossing` is the reference. These tests hold the two together:

- a table of valid events that both accept, and of invalid ones that both reject (the core
  with the expected SPEC reason, the schema with an error on the same field);
- the few rules only the reference validator can check, listed explicitly
  (`VALIDATOR_ONLY`), where the core rejects and the schema cannot see why, and the one place
  where the schema is stricter (`SCHEMA_STRICTER`: mixed-case country codes);
- generated crossing-like documents (valid, then mutated): the schema accepts exactly when
  the core does, but for those documented gaps;
- every flag the core produces (from `apply` and from `bordermon replay` over a simulated
  file) validates against the flag/2 schema, and what the flag schema cannot say holds too;
  flag-v1.schema.json stays for consumers of old flags, checked on its own examples.

Cases marked `corev2` in their id (or name) check what SPEC v2 added to the core's
validation and flags (`permit_id`, `goods[].batch_id`, transport ids of 1-64 characters,
`observed_at` in [2000, 2100), flag/2): they fail against a core that predates it.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, ValidationError

from bordermon.core import ConsignmentState, DetectionConfig, Flag, apply, parse_crossing
from bordermon.core.config import DAY_NS
from bordermon.core.countries import ASSIGNED_ALPHA2
from bordermon.core.crossing import MAX_EVENT_BYTES, InvalidCrossing, validate_document
from bordermon.core.pipeline import Accepted, Message, Reject, validate
from bordermon.core.timestamps import NANOS_PER_SECOND, parse_instant
from bordermon.replay import replay
from bordermon.simulate import SimulationSpec, simulate
from support.builders import CHPL, crossing_doc, entry, exit_
from support.strategies import FOCUSED, crossing_like, focused_event

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = REPO / "topics" / "schemas"
CROSSING_SCHEMA: dict[str, Any] = json.loads(
    (SCHEMAS / "crossing-v1.schema.json").read_text("utf-8")
)
FLAG_SCHEMA: dict[str, Any] = json.loads((SCHEMAS / "flag-v2.schema.json").read_text("utf-8"))
FLAG_V1_SCHEMA: dict[str, Any] = json.loads((SCHEMAS / "flag-v1.schema.json").read_text("utf-8"))
CROSSING = Draft202012Validator(CROSSING_SCHEMA)
FLAG = Draft202012Validator(FLAG_SCHEMA)
FLAG_V1 = Draft202012Validator(FLAG_V1_SCHEMA)
ALL_SCHEMAS = {"crossing": CROSSING_SCHEMA, "flag/2": FLAG_SCHEMA, "flag/1": FLAG_V1_SCHEMA}
FLAG_SCHEMAS = {"flag/2": FLAG_SCHEMA, "flag/1": FLAG_V1_SCHEMA}
RULES = ("transit-to-ru", "relabel-to-ru", "export-without-permit")
LOWEST_NS = parse_instant("2000-01-01T00:00:00Z")
END_NS = parse_instant("2100-01-01T00:00:00Z")
"""SPEC §3: observed_at as a UTC instant in [2000-01-01T00:00:00Z, 2100-01-01T00:00:00Z)."""

REQUIRED = (
    "event_id",
    "consignment_id",
    "checkpoint",
    "from_country",
    "to_country",
    "observed_at",
    "goods",
)
ABSENT: Any = object()
"""A field value meaning: leave the field out."""

BASE: dict[str, Any] = crossing_doc()  # the valid entry CN -> KZ the core tests use


def event(**changes: Any) -> dict[str, Any]:
    """BASE (a valid entry CN -> KZ) with fields replaced; ABSENT removes one."""
    doc = copy.deepcopy(BASE)
    for key, value in changes.items():
        if value is ABSENT:
            doc.pop(key, None)
        else:
            doc[key] = value
    return doc


def line(**changes: Any) -> list[dict[str, Any]]:
    """`goods` of one line {"hs_code": "854231"} with members replaced (ABSENT removes)."""
    item: dict[str, Any] = {"hs_code": "854231"}
    for key, value in changes.items():
        if value is ABSENT:
            item.pop(key, None)
        else:
            item[key] = value
    return [item]


def core_reason(raw: bytes) -> str | None:
    """None when the core accepts the bytes, else its SPEC reason."""
    try:
        parse_crossing(raw)
    except InvalidCrossing as error:
        return error.reason
    return None


def schema_errors(doc: object) -> list[ValidationError]:
    return list(CROSSING.iter_errors(doc))


def _leaf_errors(errors: list[ValidationError]) -> Iterator[ValidationError]:
    for error in errors:
        yield error
        yield from _leaf_errors(list(error.context or []))


def blamed_fields(doc: object, errors: list[ValidationError]) -> set[str]:
    """Top-level fields the schema's errors point at ('' for the document as a whole)."""
    blamed: set[str] = set()
    for error in _leaf_errors(errors):
        path = list(error.absolute_path)
        if path:
            blamed.add(str(path[0]))
        elif error.validator == "required" and isinstance(doc, dict):
            blamed.update(name for name in error.validator_value if name not in doc)
        else:
            blamed.add("")
    return blamed


def assert_schema_blames(doc: object, reason: str) -> None:
    """The schema rejects `doc` for the rule the core named, not by coincidence."""
    errors = schema_errors(doc)
    assert errors, f"the schema accepts what the core rejects as {reason}"
    blamed = blamed_fields(doc, errors)
    if reason == "not_an_object":
        assert "" in blamed
    elif reason == "not_a_crossing":
        # The oneOf over the two sides; with a mixed-case code the enum of that side instead.
        assert blamed & {"", "from_country", "to_country"}, blamed
    else:
        field = reason.split(":", 1)[1]
        assert field in blamed, f"{reason}: the schema blames {sorted(blamed)}"


# --- the schemas themselves ---------------------------------------------------------------


@pytest.mark.parametrize("schema", list(ALL_SCHEMAS.values()), ids=list(ALL_SCHEMAS))
def test_schemas_are_valid_draft_2020_12_and_documented(schema: dict[str, Any]) -> None:
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].startswith("urn:bordermon:schema:")
    assert schema["title"] and schema["description"]
    undocumented = [name for name, sub in schema["properties"].items() if "description" not in sub]
    assert not undocumented, "vendors read these: every property says what it is"
    for example in schema["examples"]:
        Draft202012Validator(schema).validate(example)


def test_the_crossing_schema_lists_what_only_the_reference_validator_checks() -> None:
    description = CROSSING_SCHEMA["description"]
    for words in (
        "64 KiB",
        "invalid_json",
        "key_mismatch",
        "monitored country",
        "mixed case",
        "2100-01-01T00:00:00Z",
    ):
        assert words in description
    readme = (SCHEMAS / "README.md").read_text("utf-8")
    for words in (
        "64 KiB",
        "invalid_json",
        "key_mismatch",
        "monitored country",
        "Mixed-case",
        "2100-01-01T00:00:00Z",
        "internal_error",
        "murmur2",
    ):
        assert words in readme


def test_the_readme_lists_every_schema_and_keeps_flag_v1_for_old_consumers() -> None:
    readme = (SCHEMAS / "README.md").read_text("utf-8")
    for path in sorted(SCHEMAS.glob("*.schema.json")):
        assert f"`{path.name}`" in readme
    assert "flag/1" in readme and "flag/2" in readme


def test_country_lists_are_the_core_data_file() -> None:
    upper = sorted(ASSIGNED_ALPHA2)
    assert CROSSING_SCHEMA["$defs"]["country"]["enum"] == upper + [c.lower() for c in upper]
    for schema in FLAG_SCHEMAS.values():
        assert schema["$defs"]["country"]["enum"] == upper


def test_shared_definitions_are_the_same_in_every_file() -> None:
    def without_description(definition: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in definition.items() if k != "description"}

    for schema in FLAG_SCHEMAS.values():
        assert CROSSING_SCHEMA["$defs"]["rfc3339"] == schema["$defs"]["rfc3339"]
        crossing_id = without_description(CROSSING_SCHEMA["$defs"]["id"])
        assert crossing_id == without_description(schema["$defs"]["id"])
    assert FLAG_V1_SCHEMA["$defs"]["country"] == FLAG_SCHEMA["$defs"]["country"]


def test_flag_v2_lists_the_spec_fields_in_table_order() -> None:
    """SPEC §5's table, in order: `Flag.to_dict()` writes them so, and the examples too."""
    spec = (REPO / "docs" / "SPEC.md").read_text("utf-8")
    section = spec.split("## 5. Flag v2", 1)[1].split("\n## ", 1)[0]
    fields = re.findall(r"^\| `([a-z_]+)` \|", section, re.MULTILINE)
    assert fields == FLAG_SCHEMA["required"] == list(FLAG_SCHEMA["properties"])
    for example in FLAG_SCHEMA["examples"]:
        assert list(example) == fields


def test_flag_v2_examples_show_every_rule_and_keep_the_guarantees() -> None:
    examples = FLAG_SCHEMA["examples"]
    assert [example["rule"] for example in examples] == list(RULES)
    for example in examples:
        assert_flag_guarantees(example)
    transit_v2, transit_v1 = examples[0], FLAG_V1_SCHEMA["examples"][0]
    assert transit_v2["flag_id"] == transit_v1["flag_id"], "SPEC §5: flag/1 ids are kept"


def test_the_readme_shows_the_flag_v2_examples() -> None:
    readme = (REPO / "README.md").read_text("utf-8")
    section = readme.split("## The three rules", 1)[1].split("\n## ", 1)[0]
    shown = [json.loads(block) for block in re.findall(r"```json\n(.*?)```", section, re.DOTALL)]
    assert shown == FLAG_SCHEMA["examples"]


def test_the_crossing_examples_are_accepted_by_the_core() -> None:
    raws = [orjson.dumps(doc) for doc in CROSSING_SCHEMA["examples"]]
    assert [core_reason(raw) for raw in raws] == [None] * len(raws)


NOT_FIXED_BY_THE_SPEC = ("reasons", "detected_at")
"""Flag members the SPEC leaves to the implementation (the order and set of reasons) or to
the clock; the examples show plausible values."""


def test_corev2_the_crossing_examples_give_the_three_flag_examples() -> None:
    """The crossing examples: an entry of CN-SZX-88231 in a container, its exit to RU without
    a permit, and an exit of KZ-ALM-0042 to RU in the same container: one flag per rule."""
    raws = [orjson.dumps(doc) for doc in CROSSING_SCHEMA["examples"]]
    out = io.BytesIO()
    replay(io.BytesIO(b"\n".join(raws)), out, DetectionConfig(watchlist=CHPL))
    flags = [orjson.loads(text) for text in out.getvalue().splitlines()]

    def fixed(flag: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in flag.items() if k not in NOT_FIXED_BY_THE_SPEC}

    by_id = {flag["flag_id"]: fixed(flag) for flag in flags}
    assert by_id == {example["flag_id"]: fixed(example) for example in FLAG_SCHEMA["examples"]}
    for flag in flags:
        assert list(FLAG.iter_errors(flag)) == []


# --- crossing events: the table -----------------------------------------------------------

LONG_FRACTION = "2024-03-01T10:00:00." + "1" * 43 + "Z"  # 64 characters, the most the core takes

VALID: list[tuple[str, dict[str, Any]]] = [
    ("base entry", event()),
    ("exit to RU", event(from_country="KZ", to_country="RU")),
    ("exit elsewhere", event(from_country="KZ", to_country="CN")),
    ("minimal", {k: BASE[k] for k in REQUIRED} | {"goods": line()}),
    ("schema null", event(schema=None)),
    ("schema absent", event(schema=ABSENT)),
    ("lower-case countries", event(from_country="cn", to_country="kz")),
    ("lower-case exit", event(from_country="kz", to_country="ru")),
    ("declared RU", event(declared_destination="RU")),
    ("declared lower case", event(declared_destination="kz")),
    ("declared null", event(declared_destination=None)),
    ("unknown fields", event(extra={"a": [1, None]}, note="x", padding="y" * 1000)),
    ("event_id 1", event(event_id="e")),
    ("event_id 128", event(event_id="e" * 128)),
    ("event_id 128 astral", event(event_id="😀" * 128)),
    ("consignment_id unicode", event(consignment_id="Груз/№ 7 — 貨物 ✓")),
    ("consignment_id 128", event(consignment_id="c" * 128)),
    ("consignment_id nbsp", event(consignment_id="CONS\u00a01")),
    ("consignment_id line separator", event(consignment_id="CONS\u20281")),  # Zl, not Cc
    ("consignment_id zero width", event(consignment_id="CONS\u200b1")),  # Cf, not Cc
    ("checkpoint 64", event(checkpoint="K" * 64)),
    ("checkpoint with a tab", event(checkpoint="KZ\tNUR")),  # only ids refuse controls
    ("lower-case t and z", event(observed_at="2024-03-01t10:00:00z")),
    ("offset", event(observed_at="2024-03-01T15:00:00+05:00")),
    ("offset -00:00", event(observed_at="2024-03-01T10:00:00-00:00")),
    ("offset +23:59", event(observed_at="2024-03-01T10:00:00+23:59")),
    ("nanoseconds", event(observed_at="2024-03-01T10:00:00.123456789+05:00")),
    ("one fraction digit", event(observed_at="2024-03-01T10:00:00.5Z")),
    ("64 characters", event(observed_at=LONG_FRACTION)),
    ("leap second", event(observed_at="2024-02-29T23:59:60Z")),
    ("29 Feb 2000", event(observed_at="2000-02-29T00:00:00Z")),
    ("29 Feb 2096", event(observed_at="2096-02-29T00:00:00Z")),
    ("31 Jan", event(observed_at="2024-01-31T00:00:00Z")),
    ("30 Apr", event(observed_at="2024-04-30T00:00:00Z")),
    ("28 Feb 2023", event(observed_at="2023-02-28T00:00:00Z")),
    ("first instant", event(observed_at="2000-01-01T00:00:00Z")),
    ("first instant with offset", event(observed_at="2000-01-01T05:00:00+05:00")),
    ("last nanosecond", event(observed_at="2099-12-31T23:59:59.999999999Z")),
    ("last second with offset", event(observed_at="2099-12-31T23:59:59-00:00")),
    ("hs 6 digits", event(goods=line(hs_code="854231"))),
    ("hs 10 digits", event(goods=line(hs_code="8542310000"))),
    ("hs dotted", event(goods=line(hs_code="8542.31.00.00"))),
    ("hs spaced", event(goods=line(hs_code="8471 50 00 00"))),
    ("hs separators around", event(goods=line(hs_code=" .854231. "))),
    ("hs every digit apart", event(goods=line(hs_code="8 5 4 2 3 1"))),
    ("zero values", event(goods=line(value_usd=0, quantity=0.0))),
    ("big values", event(goods=line(value_usd=1e308, quantity=10**18))),
    ("null line members", event(goods=line(value_usd=None, quantity=None, unit=None))),
    ("null description", event(goods=line(description=None))),
    ("unknown line members", event(goods=line(colour="green", origin={"cc": "CN"}))),
    ("1000 lines", event(goods=line() * 1000)),
    ("several lines", event(goods=line() + line(hs_code="847150") + line(description="x"))),
    ("transport road", event(transport={"mode": "road", "vehicle_id": "777ABC02"})),
    ("transport rail", event(transport={"mode": "rail", "container_id": "MSKU1234565"})),
    ("transport air", event(transport={"mode": "air"})),
    ("transport sea", event(transport={"mode": "sea", "seal_id": "S1", "vessel": "IMO 1"})),
    ("transport empty", event(transport={})),
    ("transport nulls", event(transport={"mode": None, "vehicle_id": None, "seal_id": None})),
    ("transport null", event(transport=None)),
    ("scanner_id 1", event(scanner_id="s")),
    ("scanner_id 64", event(scanner_id="s" * 64)),
    ("scanner_id null", event(scanner_id=None)),
    ("permit_id 1", event(permit_id="P")),
    ("permit_id 64", event(permit_id="P" * 64)),
    ("permit_id 64 astral", event(permit_id="😀" * 64)),
    ("permit_id with a tab", event(permit_id="KZ\tLIC")),  # SPEC: no rule on controls here
    ("permit_id null", event(permit_id=None)),
    ("permit_id on an exit", event(from_country="KZ", to_country="RU", permit_id="KZ-LIC-1")),
    ("batch_id 1", event(goods=line(batch_id="B"))),
    ("batch_id 64", event(goods=line(batch_id="B" * 64))),
    ("batch_id RNPT", event(goods=line(batch_id="10702010/010324/0012345/1"))),
    ("batch_id spaces", event(goods=line(batch_id="  RNPT 1  "))),
    ("batch_id blank", event(goods=line(batch_id=" "))),  # valid; no link key once trimmed
    ("batch_id unicode", event(goods=line(batch_id="Партия №7"))),
    ("batch_id null", event(goods=line(batch_id=None))),
    ("batch_id per line", event(goods=line(batch_id="B1") + line(batch_id="B2") + line())),
    ("transport ids 1", event(transport={"vehicle_id": "V", "container_id": "C", "seal_id": "S"})),
    (
        "transport ids 64",
        event(transport={"vehicle_id": "V" * 64, "container_id": "C" * 64, "seal_id": "S" * 64}),
    ),
    ("container spaced", event(transport={"mode": "sea", "container_id": "mscu 123456-7"})),
    ("seal with a tab", event(transport={"seal_id": "S\t1"})),  # SPEC: 1-64 characters only
    ("all v2 fields", event(**CROSSING_SCHEMA["examples"][0])),
]


@pytest.mark.parametrize("doc", [doc for _, doc in VALID], ids=[name for name, _ in VALID])
def test_valid_events_are_accepted_by_both(doc: dict[str, Any]) -> None:
    assert core_reason(orjson.dumps(doc)) is None
    assert schema_errors(doc) == []


def _invalid_table() -> list[tuple[str, object, str]]:
    cases: list[tuple[str, object, str]] = [
        ("array", [BASE], "not_an_object"),
        ("string", "crossing", "not_an_object"),
        ("number", 42, "not_an_object"),
        ("null", None, "not_an_object"),
        ("CN to RU", event(from_country="CN", to_country="RU"), "not_a_crossing"),
        ("KZ to KZ", event(from_country="KZ", to_country="KZ"), "not_a_crossing"),
        ("kz to KZ", event(from_country="kz", to_country="KZ"), "not_a_crossing"),
        ("kz to kz", event(from_country="kz", to_country="kz"), "not_a_crossing"),
        ("TR to TR", event(from_country="TR", to_country="TR"), "not_a_crossing"),
    ]
    for name in REQUIRED:
        cases.append((f"{name} absent", event(**{name: ABSENT}), f"missing_field:{name}"))
        cases.append((f"{name} null", event(**{name: None}), f"invalid_field:{name}"))
    invalid_values: dict[str, list[object]] = {
        "schema": ["crossing/2", "CROSSING/1", "", 1, True, {}],
        "event_id": ["", "e" * 129, 12345, ["ev-1"], "ev\n1", "ev-1\n", "\t", "ev\x00", "ev\x7f"],
        "consignment_id": [
            "",
            "c" * 129,
            "CONS\x00-1",
            "CONS\x1f",
            "CONS\x7f",
            "CONS\u0085",  # C1 control (NEL)
            "CONS\u009f",
            "CONS-1\n",
            ["CONS-1"],
            1.5,
        ],
        "checkpoint": ["", "K" * 65, 7, False],
        "from_country": [
            "XX",
            "EU",  # exceptionally reserved
            "UK",
            "XK",  # user-assigned
            "ZZ",
            "CHN",
            "C",
            "",
            " CN",
            "CN\n",
            "ıt",  # dotless i upper-cases to I in Python
            "ＣＮ",  # fullwidth
            ["CN"],
        ],
        "to_country": [7, "KAZ", "Kazakhstan", "KZ "],
        "observed_at": [
            "2024-03-01T10:00:00",  # no offset
            "2024-03-01 10:00:00Z",
            "2024-03-01",
            "2024-02-30T10:00:00Z",
            "2024-02-31T10:00:00Z",
            "2023-02-29T10:00:00Z",
            "1900-02-29T10:00:00Z",
            "2100-02-29T10:00:00Z",
            "2024-04-31T10:00:00Z",
            "2024-06-31T10:00:00Z",
            "2024-09-31T10:00:00Z",
            "2024-11-31T10:00:00Z",
            "2024-01-32T10:00:00Z",
            "2024-01-00T10:00:00Z",
            "2024-13-01T10:00:00Z",
            "2024-00-01T10:00:00Z",
            "0000-01-01T00:00:00Z",
            "2024-03-01T24:00:00Z",
            "2024-03-01T10:60:00Z",
            "2024-03-01T10:00:61Z",
            "2024-03-01T10:00:00+0500",
            "2024-03-01T10:00:00+05",
            "2024-03-01T10:00:00+24:00",
            "2024-03-01T10:00:00+05:60",
            "2024-03-01T10:00:00.Z",
            "2024-03-01T10:00:00Z\n",
            " 2024-03-01T10:00:00Z",
            "２０２４-03-01T10:00:00Z",  # fullwidth digits
            "٢٠٢٤-03-01T10:00:00Z",  # Arabic-Indic digits
            LONG_FRACTION[:-1] + "1Z",  # 65 characters
            "1709287200",
            1709287200,
        ],
        "goods": [
            [],
            {"hs_code": "854231"},
            "854231",
            line() * 1001,
            [None],
            ["854231"],
            [[{"hs_code": "854231"}]],
            line(hs_code=ABSENT, description="chips"),
            line(hs_code=None),
            line(hs_code="85423"),  # 5 digits
            line(hs_code="85423100001"),  # 11 digits
            line(hs_code="8542.3"),
            line(hs_code="8542AB"),
            line(hs_code="8542-31"),
            line(hs_code="8542\t31"),
            line(hs_code="854231\n"),
            line(hs_code=""),
            line(hs_code=". ."),
            line(hs_code="٨٥٤٢٣١"),  # Arabic-Indic digits are not HS digits
            line(hs_code=854231),  # a number loses leading zeros
            line(value_usd=-1),
            line(value_usd=-0.001),
            line(value_usd="12"),
            line(value_usd=True),
            line(quantity=-0.5),
            line(quantity=False),
            line(quantity=[1]),
            line(description=5),
            line(unit=["pcs"]),
            [*line(), None],
        ],
        "declared_destination": ["ZZ", "Russia", "RUS", 7, "", ["RU"]],
        "transport": [
            "truck",
            5,
            [],
            {"mode": "truck"},
            {"mode": "Road"},
            {"mode": ""},
            {"mode": 1},
            {"mode": True},
            {"mode": "road", "seal_id": 5},
            {"vehicle_id": ["A"]},
            {"container_id": {}},
        ],
        "scanner_id": ["", "s" * 65, 5, ["s"], True],
    }
    for name, values in invalid_values.items():
        for number, value in enumerate(values):
            doc = event(**{name: value})
            cases.append((f"{name} #{number} {value!r:.30}", doc, f"invalid_field:{name}"))
    for name, values in SPEC_V2_INVALID.items():
        for number, value in enumerate(values):
            doc = event(**{name: value})
            cases.append((f"corev2 {name} #{number} {value!r:.30}", doc, f"invalid_field:{name}"))
    return cases


SPEC_V2_INVALID: dict[str, list[object]] = {
    "observed_at": [
        "1999-12-31T23:59:59.999999999Z",  # a nanosecond before the first instant
        "2100-01-01T00:00:00Z",  # the end is excluded
        "9999-12-31T23:59:59Z",  # a placeholder
        "9999-12-31T23:59:59+14:00",
        "0001-01-01T00:00:00Z",
        "0004-02-29T00:00:00Z",
        "1970-01-01T00:00:00Z",  # a scanner clock at the Unix epoch
        "1999-06-01T12:00:00+05:00",
        "2100-06-01T12:00:00Z",
        "2999-01-01T00:00:00Z",
    ],
    "permit_id": ["", "P" * 65, "😀" * 65, 5, 1.5, True, ["KZ-LIC-1"], {"id": "KZ-LIC-1"}],
    "goods": [
        line(batch_id=""),
        line(batch_id="B" * 65),
        line(batch_id="B\n1"),
        line(batch_id="B1\n"),
        line(batch_id="\tB1"),
        line(batch_id="B\x00"),
        line(batch_id="B\x7f"),
        line(batch_id="B\u0085"),  # C1 control (NEL)
        line(batch_id=5),
        line(batch_id=["B1"]),
        line(batch_id=True),
        [*line(), *line(batch_id="")],  # the second line
    ],
    "transport": [
        {"vehicle_id": ""},
        {"vehicle_id": "V" * 65},
        {"container_id": ""},
        {"container_id": "C" * 65},
        {"container_id": 1234567},
        {"seal_id": ""},
        {"seal_id": "S" * 65},
        {"mode": "rail", "container_id": "MSKU1234565", "seal_id": ""},
    ],
}
"""What SPEC v2 added to §3 (`corev2`): the core refuses these once it checks the new rules."""


INVALID = _invalid_table()


@pytest.mark.parametrize(
    ("doc", "reason"),
    [(doc, reason) for _, doc, reason in INVALID],
    ids=[name for name, _, _ in INVALID],
)
def test_invalid_events_are_rejected_by_both(doc: object, reason: str) -> None:
    assert core_reason(orjson.dumps(doc)) == reason
    assert_schema_blames(doc, reason)


def _spec_reasons() -> set[str]:
    """The reason codes SPEC §3 lists (`invalid_json` · `not_an_object` · ...)."""
    spec = (REPO / "docs" / "SPEC.md").read_text("utf-8")
    (listing,) = [part for part in spec.split("\n\n") if part.startswith("`invalid_json`")]
    first_codes = [re.search(r"`([a-z_]+)", item) for item in listing.split("·")]
    return {match.group(1) for match in first_codes if match}


NOT_ABOUT_THE_DOCUMENT = {"internal_error", "unsigned", "bad_signature", "checkpoint_not_allowed"}
"""SPEC §3 reasons no validator of the document gives: processing failed (`internal_error`,
§6), or the scan's signature, where signed scans are required."""


def test_the_tables_cover_every_spec_reason_and_field() -> None:
    reasons = {reason for _, _, reason in INVALID} | {r for _, _, r, _ in VALIDATOR_ONLY}
    reasons.add("key_mismatch")  # test_key_mismatch_is_only_in_the_reference_validator
    spec = _spec_reasons()
    assert spec >= {"invalid_json", "too_large", "key_mismatch", "missing_field"}
    assert spec >= NOT_ABOUT_THE_DOCUMENT
    assert spec - NOT_ABOUT_THE_DOCUMENT <= {reason.split(":")[0] for reason in reasons}
    fields = set(CROSSING_SCHEMA["properties"])
    assert {f"invalid_field:{name}" for name in fields} <= reasons
    assert {f"missing_field:{name}" for name in CROSSING_SCHEMA["required"]} <= reasons


# --- what only the reference validator checks ---------------------------------------------


def _too_large() -> bytes:
    return orjson.dumps(event(padding="x" * MAX_EVENT_BYTES))


def _lenient_decode(raw: bytes) -> object | None:
    """What a lenient JSON parser (Python's json) hands a schema validator, or None."""
    try:
        return json.loads(raw)
    except ValueError:
        return None


_BASE_JSON = orjson.dumps(BASE)
VALIDATOR_ONLY: list[tuple[str, bytes, str, str]] = [
    # (case, raw bytes, the core's reason, why the schema cannot say it)
    ("over 64 KiB", _too_large(), "too_large", "size is not in the decoded document"),
    ("not JSON", b"{not json", "invalid_json", "no document to validate"),
    ("empty", b"", "invalid_json", "no document to validate"),
    ("not UTF-8", _BASE_JSON.replace(b"CONS-1", b"CONS-\xff"), "invalid_json", "no document"),
    ("trailing data", _BASE_JSON + b" trailing", "invalid_json", "no document to validate"),
    (
        "NaN",
        _BASE_JSON.replace(b'"value_usd":1200.5', b'"value_usd":NaN'),
        "invalid_json",
        "lenient parsers read NaN, and NaN < 0 is false",
    ),
    (
        "1e400",
        _BASE_JSON.replace(b'"value_usd":1200.5', b'"value_usd":1e400'),
        "invalid_json",
        "lenient parsers read infinity, a number >= 0",
    ),
    (
        "lone surrogate",
        _BASE_JSON.replace(b'"unit":"pcs"', b'"unit":"\\ud800"'),
        "invalid_json",
        "lenient parsers read a lone surrogate as a string",
    ),
    (
        "Infinity",
        _BASE_JSON.replace(b'"quantity":10', b'"quantity":Infinity'),
        "invalid_json",
        "lenient parsers read infinity, a number >= 0",
    ),
]
"""Rejected by the core only: the schema cannot see bytes, sizes or Kafka keys."""


@pytest.mark.parametrize(
    ("raw", "reason"),
    [(raw, reason) for _, raw, reason, _ in VALIDATOR_ONLY],
    ids=[name for name, _, _, _ in VALIDATOR_ONLY],
)
def test_what_only_the_reference_validator_rejects(raw: bytes, reason: str) -> None:
    assert core_reason(raw) == reason
    decoded = _lenient_decode(raw)
    if decoded is not None:
        # What a lenient parser hands a schema validator: the schema has nothing against it.
        assert schema_errors(decoded) == []


def test_key_mismatch_is_only_in_the_reference_validator() -> None:
    raw = orjson.dumps(event())
    config = DetectionConfig(watchlist=CHPL)
    outcome = validate(Message(value=raw, key=b"CONS-2", check_key=True), config)
    assert isinstance(outcome, Reject)
    assert outcome.reason == "key_mismatch"
    assert isinstance(validate(Message(value=raw, key=b"CONS-1", check_key=True), config), Accepted)
    assert CROSSING.is_valid(orjson.loads(raw)), "the Kafka key is not in the document"


def test_the_monitored_country_is_configuration_the_schema_says_kz() -> None:
    doc = event(from_country="CN", to_country="KG")
    assert validate_document(doc, monitored_country="KG").to_country == "KG"
    assert not CROSSING.is_valid(doc)
    assert CROSSING.is_valid(event())


SCHEMA_STRICTER: list[tuple[str, dict[str, Any]]] = [
    ("from_country Cn", event(from_country="Cn")),
    ("to_country kZ", event(to_country="kZ")),
    ("exit to Ru", event(from_country="KZ", to_country="Ru")),
    ("declared_destination rU", event(declared_destination="rU")),
]
"""Mixed-case country codes: the core accepts them, the schema does not (upper or lower)."""


@pytest.mark.parametrize(
    "doc", [doc for _, doc in SCHEMA_STRICTER], ids=[name for name, _ in SCHEMA_STRICTER]
)
def test_mixed_case_countries_are_where_the_schema_is_stricter(doc: dict[str, Any]) -> None:
    assert core_reason(orjson.dumps(doc)) is None
    assert not CROSSING.is_valid(doc)


UNHASHABLE_MODES: list[object] = [["road"], {"kind": "road"}, []]


@pytest.mark.parametrize("mode", UNHASHABLE_MODES, ids=["list", "object", "empty list"])
def test_an_unhashable_transport_mode_is_invalid(mode: object) -> None:
    doc = event(transport={"mode": mode})
    assert not CROSSING.is_valid(doc)
    assert core_reason(orjson.dumps(doc)) == "invalid_field:transport"


OFFSET_ACROSS_A_BOUND: list[tuple[str, bool, bool]] = [
    # (observed_at, the schema accepts, the core accepts)
    ("2000-01-01T00:30:00+01:00", True, False),  # 1999-12-31T23:30Z
    ("2099-12-31T23:30:00-01:00", True, False),  # 2100-01-01T00:30Z
    ("2099-12-31T23:59:60Z", True, False),  # a leap second counts as the next: 2100-01-01
    ("1999-12-31T23:30:00-01:00", False, True),  # 2000-01-01T00:30Z
    ("2100-01-01T00:30:00+01:00", False, True),  # 2099-12-31T23:30Z
    ("2000-01-01T01:00:00+01:00", True, True),  # exactly the first instant
]
"""The one place the bound differs: the schema reads the year as written, the core the
instant (item 6 of the crossing schema's description; the README says so too)."""


@pytest.mark.parametrize(
    ("observed_at", "schema_accepts", "core_accepts"),
    OFFSET_ACROSS_A_BOUND,
    ids=[f"corev2 {value}" for value, _, _ in OFFSET_ACROSS_A_BOUND],
)
def test_an_offset_across_a_bound_is_where_schema_and_core_differ(
    observed_at: str, schema_accepts: bool, core_accepts: bool
) -> None:
    doc = event(observed_at=observed_at)
    assert CROSSING.is_valid(doc) == schema_accepts
    reason = core_reason(orjson.dumps(doc))
    assert reason == (None if core_accepts else "invalid_field:observed_at")
    assert _offset_crosses_a_bound(doc) == (schema_accepts != core_accepts)


# --- generated documents ------------------------------------------------------------------


def _mixed_case_country(doc: dict[str, Any]) -> bool:
    """Holds a code the core takes and the schema does not (documented: SCHEMA_STRICTER)."""
    for name in ("from_country", "to_country", "declared_destination"):
        value = doc.get(name)
        if (
            isinstance(value, str)
            and value.isascii()
            and value.upper() in ASSIGNED_ALPHA2
            and value not in (value.upper(), value.lower())
        ):
            return True
    return False


def _offset_crosses_a_bound(doc: dict[str, Any]) -> bool:
    """observed_at written in 2000-2099 and out of SPEC's range as an instant, or the other
    way round: only within a day of a bound, with an offset (documented, item 6 of the crossing
    schema's description)."""
    value = doc.get("observed_at")
    if not isinstance(value, str) or not value[:4].isascii() or not value[:4].isdigit():
        return False
    try:
        instant = parse_instant(value)
    except ValueError:
        return False
    return (2000 <= int(value[:4]) <= 2099) != (LOWEST_NS <= instant < END_NS)


def _unhashable_transport_mode(doc: dict[str, Any]) -> bool:
    transport = doc.get("transport")
    return isinstance(transport, dict) and isinstance(transport.get("mode"), list | dict)


def assert_agreement(doc: dict[str, Any]) -> None:
    """The schema accepts exactly what the core accepts, but for the documented gaps:

    - mixed-case country codes: the core accepts, the schema rejects (never the reverse);
    - an unhashable transport.mode: the core raises TypeError (the bug pinned by
      test_an_unhashable_transport_mode_is_invalid), the schema rejects;
    - an observed_at whose offset moves it across 2000-01-01 or 2100-01-01 UTC: the schema
      reads the year as written, the core the instant.
    The other validator-only rules (size, bytes, key) cannot arise here: documents are small,
    written by orjson, and have no key. When both reject, the schema blames the field the
    core names.
    """
    raw = orjson.dumps(doc)
    assert len(raw) <= MAX_EVENT_BYTES
    decoded = orjson.loads(raw)
    schema_ok = CROSSING.is_valid(decoded)
    try:
        reason = core_reason(raw)
    except TypeError:
        assert _unhashable_transport_mode(decoded), "a crash other than the known bug"
        assert not schema_ok
        return
    if schema_ok:
        if reason == "invalid_field:observed_at" and _offset_crosses_a_bound(decoded):
            return
        assert reason is None, f"the schema accepts what the core rejects as {reason}"
    elif reason is None:
        if _offset_crosses_a_bound(decoded):
            assert blamed_fields(decoded, schema_errors(decoded)) == {"observed_at"}
            return
        assert _mixed_case_country(decoded), "the core accepts what the schema rejects"
    else:
        assert_schema_blames(decoded, reason)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(crossing_like())
def test_generated_documents_schema_and_core_agree(doc: dict[str, Any]) -> None:
    assert_agreement(doc)


@pytest.mark.parametrize("field", sorted(FOCUSED))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_generated_values_one_rule_at_a_time(field: str, data: st.DataObject) -> None:
    assert_agreement(focused_event(field, data.draw(FOCUSED[field], label=field)))


def test_the_simulator_output_is_judged_alike() -> None:
    lines, _ = simulate(SimulationSpec(consignments=300, seed=1))
    verdicts = {"accepted": 0, "rejected": 0}
    for raw in lines:
        reason = core_reason(raw)
        decoded = _lenient_decode(raw)
        if reason in ("invalid_json", "too_large"):
            continue
        assert decoded is not None
        if reason is None:
            assert schema_errors(decoded) == [], raw
            verdicts["accepted"] += 1
        else:
            assert_schema_blames(decoded, reason)
            verdicts["rejected"] += 1
    assert verdicts["accepted"] > 500
    assert verdicts["rejected"] >= 1


# --- flags --------------------------------------------------------------------------------

WINDOW_30D = DetectionConfig(watchlist=CHPL)


def fixed_clock() -> int:
    return 1_709_900_000_123_456_789


def _flags_of(events: list[Any], config: DetectionConfig = WINDOW_30D) -> list[Flag]:
    state: ConsignmentState | None = None
    flags: list[Flag] = []
    for item in events:
        transition = apply(state, item, config, fixed_clock)
        state = transition.state
        flags.extend(transition.flags)
    return flags


def _applied_flags() -> list[dict[str, Any]]:
    def goods(*codes: str) -> list[dict[str, str]]:
        return [{"hs_code": code} for code in codes]

    scenarios: list[tuple[list[Any], DetectionConfig]] = [
        # high, with a declared destination that is not the exit's
        (
            [
                entry("e1", "2024-03-01T10:00:00Z", declared_destination="KZ"),
                exit_("x1", "2024-03-02T10:00:00Z"),
            ],
            WINDOW_30D,
        ),
        # medium (CHPL 3.A), exit first: matched when the entry arrives
        (
            [
                exit_("x1", "2024-03-05T10:00:00+05:00", goods=goods("8471.50")),
                entry("e1", "2024-03-01t10:00:00z", origin="tr", goods=goods("847150")),
            ],
            WINDOW_30D,
        ),
        # low: nothing on the watchlist; empty reasons
        (
            [
                entry("e1", "2024-03-01T10:00:00Z", goods=goods("0101 21 00 00")),
                exit_("x1", "2024-03-01T10:00:00Z", goods=goods("0101210000")),
            ],
            WINDOW_30D,
        ),
        # a dwell of exactly the window (inclusive), then a fractional dwell
        (
            [
                entry("e1", "2024-03-01T10:00:00.25Z"),
                exit_("x1", "2024-03-31T10:00:00.25Z", goods=goods("854231", "8542.31")),
            ],
            WINDOW_30D,
        ),
        (
            [entry("e1", "2024-03-01T10:00:00.5Z"), exit_("x1", "2024-03-01T10:00:01Z")],
            WINDOW_30D,
        ),
        # a window of a fraction of seconds
        (
            [entry("e1", "2024-03-01T10:00:00Z"), exit_("x1", "2024-03-01T10:00:01Z")],
            DetectionConfig(watchlist=CHPL, window_ns=3 * NANOS_PER_SECOND // 2),
        ),
        # unicode consignment, several entries: the latest before the exit is reported
        (
            [
                entry("e1", "2024-03-01T10:00:00Z", consignment_id="Груз/№ 7 — 貨物"),
                entry("e2", "2024-03-03T10:00:00Z", consignment_id="Груз/№ 7 — 貨物"),
                exit_("x1", "2024-03-04T10:00:00Z", consignment_id="Груз/№ 7 — 貨物"),
            ],
            DetectionConfig(watchlist=CHPL, window_ns=10 * DAY_NS),
        ),
    ]
    flags: list[dict[str, Any]] = []
    for events, config in scenarios:
        produced = [flag.to_dict() for flag in _flags_of(events, config)]
        transit = [flag for flag in produced if flag["rule"] == "transit-to-ru"]
        assert len(transit) == 1, events
        flags.append(transit[0])
    return flags


APPLIED = _applied_flags()


def assert_flag_guarantees(flag: dict[str, Any], monitored: str = "KZ") -> None:
    """What the flag schemas' descriptions list as beyond JSON Schema (flag/2 and flag/1)."""
    rule = flag["rule"]
    key = [rule, flag["consignment_id"], *([flag["link"]] if rule == "relabel-to-ru" else [])]
    assert flag["flag_id"] == hashlib.sha256("\n".join(key).encode()).hexdigest()[:32]
    exit_sighting = flag["exit"]
    assert exit_sighting["from_country"] == monitored and exit_sighting["to_country"] == "RU"
    assert exit_sighting.get("consignment_id", flag["consignment_id"]) == flag["consignment_id"]
    assert flag["hs_codes"] == sorted(flag["hs_codes"])
    entry_sighting = flag["entry"]
    if entry_sighting is None:
        assert rule == "export-without-permit"
        assert flag["dwell_seconds"] is None and flag["window_seconds"] is None
        return
    dwell_ns = parse_instant(exit_sighting["observed_at"]) - parse_instant(
        entry_sighting["observed_at"]
    )
    assert flag["dwell_seconds"] * NANOS_PER_SECOND == pytest.approx(dwell_ns, abs=1)
    assert 0 <= flag["dwell_seconds"] <= flag["window_seconds"]
    assert entry_sighting["to_country"] == monitored and entry_sighting["from_country"] != "RU"
    entered_as = entry_sighting.get("consignment_id", flag["consignment_id"])
    if rule == "relabel-to-ru":
        assert entered_as == flag["linked_consignment_id"] != flag["consignment_id"]
    else:
        assert entered_as == flag["consignment_id"]


@pytest.mark.parametrize("flag", APPLIED, ids=[f"corev2 {f['severity']}" for f in APPLIED])
def test_flags_from_apply_validate(flag: dict[str, Any]) -> None:
    assert list(FLAG.iter_errors(flag)) == []
    assert list(flag) == FLAG_SCHEMA["required"], "SPEC §5's fields, in table order"
    assert_flag_guarantees(flag)


def test_the_applied_flags_cover_the_variants() -> None:
    assert {f["severity"] for f in APPLIED} == {"high", "medium", "low"}
    assert any(isinstance(f["dwell_seconds"], float) for f in APPLIED)
    assert any(isinstance(f["window_seconds"], float) for f in APPLIED)
    assert any(f["reasons"] == [] for f in APPLIED)
    assert any("declared-destination:KZ" in f["reasons"] for f in APPLIED)


def test_corev2_flags_from_replay_of_a_simulated_file_validate() -> None:
    lines, _ = simulate(SimulationSpec(consignments=300, seed=1))
    out = io.BytesIO()
    replay(io.BytesIO(b"\n".join(lines) + b"\n"), out, WINDOW_30D, on_reject=lambda _: None)
    flags = [orjson.loads(text) for text in out.getvalue().splitlines()]
    assert len(flags) >= 10
    for flag in flags:
        assert list(FLAG.iter_errors(flag)) == [], flag
        assert_flag_guarantees(flag)
    assert len({f["flag_id"] for f in flags}) == len(flags)


def test_flag_v1_still_describes_the_flags_of_before() -> None:
    """Kept for consumers of old flags: a flag/1 is not a flag/2, nor the other way round."""
    for example in FLAG_V1_SCHEMA["examples"]:
        assert list(FLAG_V1.iter_errors(example)) == []
        assert_flag_guarantees(example)
        assert not FLAG.is_valid(example)
    for example in FLAG_SCHEMA["examples"]:
        assert not FLAG_V1.is_valid(example)


def _changed(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A deep copy of `base` with members replaced; ABSENT removes one (also in sightings)."""
    flag = copy.deepcopy(base)
    for key, value in changes.items():
        if value is ABSENT:
            flag.pop(key)
        elif isinstance(value, dict):
            flag[key] = {k: v for k, v in value.items() if v is not ABSENT}
        else:
            flag[key] = value
    return flag


TRANSIT, RELABEL, WITHOUT_PERMIT = FLAG_SCHEMA["examples"]
TRANSIT_V1 = FLAG_V1_SCHEMA["examples"][0]


def _sighting(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**base["entry"], **changes}


BAD_FLAGS: list[tuple[str, Any]] = [
    *[(f"{name} absent", _changed(RELABEL, **{name: ABSENT})) for name in FLAG_SCHEMA["required"]],
    ("schema flag/1", _changed(TRANSIT, schema="flag/1")),
    ("flag_id upper case", _changed(TRANSIT, flag_id=TRANSIT["flag_id"].upper())),
    ("flag_id 31", _changed(TRANSIT, flag_id=TRANSIT["flag_id"][:31])),
    ("flag_id newline", _changed(TRANSIT, flag_id=TRANSIT["flag_id"][:31] + "\n")),
    ("rule unknown", _changed(TRANSIT, rule="transit-to-kg")),
    ("rule empty", _changed(TRANSIT, rule="")),
    ("consignment_id control", _changed(TRANSIT, consignment_id="C\x00")),
    ("severity critical", _changed(TRANSIT, severity="critical")),
    ("reasons string", _changed(TRANSIT, reasons="chpl:1:854231")),
    ("reasons empty string", _changed(TRANSIT, reasons=[""])),
    ("dwell negative", _changed(TRANSIT, dwell_seconds=-1)),
    ("dwell string", _changed(TRANSIT, dwell_seconds="86400")),
    ("window boolean", _changed(TRANSIT, window_seconds=True)),
    ("hs_codes empty", _changed(TRANSIT, hs_codes=[])),
    ("hs_codes duplicate", _changed(TRANSIT, hs_codes=["854231", "854231"])),
    ("hs_codes dotted", _changed(TRANSIT, hs_codes=["8542.31"])),
    ("hs_codes newline", _changed(TRANSIT, hs_codes=["854231\n"])),
    ("detected_at offset", _changed(TRANSIT, detected_at="2024-03-09T11:42:10+05:00")),
    ("detected_at no such day", _changed(TRANSIT, detected_at="2024-02-30T00:00:00Z")),
    ("entry lower-case country", _changed(TRANSIT, entry=_sighting(TRANSIT, from_country="cn"))),
    ("entry without observed_at", _changed(TRANSIT, entry=_sighting(TRANSIT, observed_at=ABSENT))),
    (
        "entry without consignment_id",
        _changed(TRANSIT, entry=_sighting(TRANSIT, consignment_id=ABSENT)),
    ),
    ("exit as flag/1 wrote it", _changed(TRANSIT, exit=TRANSIT_V1["exit"])),
    ("exit null", _changed(WITHOUT_PERMIT, exit=None)),
    (
        "exit observed_at no offset",
        _changed(TRANSIT, exit=_sighting(TRANSIT, observed_at="2024-03-02T10:00:00")),
    ),
    ("exit event_id empty", _changed(TRANSIT, exit=_sighting(TRANSIT, event_id=""))),
    ("transit without entry", _changed(TRANSIT, entry=None)),
    ("transit with a link", _changed(TRANSIT, link="container:MSKU1234565")),
    ("transit with a linked consignment", _changed(TRANSIT, linked_consignment_id="A")),
    ("transit without dwell", _changed(TRANSIT, dwell_seconds=None)),
    ("transit without window", _changed(TRANSIT, window_seconds=None)),
    ("relabel without link", _changed(RELABEL, link=None)),
    ("relabel without linked consignment", _changed(RELABEL, linked_consignment_id=None)),
    ("relabel without entry", _changed(RELABEL, entry=None)),
    ("relabel link of vehicle", _changed(RELABEL, link="vehicle:512XYZ05")),
    ("relabel link without kind", _changed(RELABEL, link="MSKU1234565")),
    ("relabel link control", _changed(RELABEL, link="seal:S\n1")),
    ("relabel linked consignment empty", _changed(RELABEL, linked_consignment_id="")),
    ("relabel without dwell", _changed(RELABEL, dwell_seconds=None)),
    ("without permit with an entry", _changed(WITHOUT_PERMIT, entry=TRANSIT["entry"])),
    ("without permit with a dwell", _changed(WITHOUT_PERMIT, dwell_seconds=679330)),
    ("without permit with a window", _changed(WITHOUT_PERMIT, window_seconds=2592000)),
    ("without permit with a link", _changed(WITHOUT_PERMIT, link="batch:B1")),
    ("without permit linked", _changed(WITHOUT_PERMIT, linked_consignment_id="A")),
    ("not an object", [TRANSIT]),
]

BAD_FLAGS_V1: list[tuple[str, Any]] = [
    *[
        (f"{name} absent", _changed(TRANSIT_V1, **{name: ABSENT}))
        for name in FLAG_V1_SCHEMA["required"]
    ],
    ("schema flag/2", _changed(TRANSIT_V1, schema="flag/2")),
    ("entry null", _changed(TRANSIT_V1, entry=None)),
    ("dwell null", _changed(TRANSIT_V1, dwell_seconds=None)),
    ("hs_codes empty", _changed(TRANSIT_V1, hs_codes=[])),
    ("detected_at offset", _changed(TRANSIT_V1, detected_at="2024-03-09T11:42:10+05:00")),
]


@pytest.mark.parametrize(
    "flag", [flag for _, flag in BAD_FLAGS], ids=[name for name, _ in BAD_FLAGS]
)
def test_broken_flags_are_rejected(flag: Any) -> None:
    assert not FLAG.is_valid(flag)


@pytest.mark.parametrize(
    "flag", [flag for _, flag in BAD_FLAGS_V1], ids=[name for name, _ in BAD_FLAGS_V1]
)
def test_broken_flag_v1_are_rejected(flag: Any) -> None:
    assert not FLAG_V1.is_valid(flag)
