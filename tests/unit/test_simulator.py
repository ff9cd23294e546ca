"""Tests of `bordermon simulate`: the feed must be reproducible, valid per SPEC section 3 where it
claims to be, broken in exactly the stated way where it claims not to be, and its ground truth
must agree with SPEC section 4 evaluated here, independently, from the lines themselves.

Nothing here imports the detection code: the validator and the rule below are written from the
SPEC alone, so that the simulator, these checks and the detector are three separate readings.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import re
import subprocess
import sys
import time
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bordermon import simulate as simulator
from bordermon.cli import simulate as simulate_command
from bordermon.simulate import (
    DEFAULT_MIX,
    PATTERNS,
    GroundTruth,
    SimulationSpec,
    flag_id,
    generate,
    simulate,
)
from bordermon.simulate.generator import truth_engine

DATA = Path(simulator.__file__).resolve().parents[1] / "core" / "data"
WINDOW = timedelta(days=30)
RELABEL_WINDOW = timedelta(days=90)
LOW_INSTANT = datetime(2000, 1, 1, tzinfo=UTC)
HIGH_INSTANT = datetime(2100, 1, 1, tzinfo=UTC)
MAX_BYTES = 64 * 1024

# --- an independent reading of SPEC section 3 ----------------------------------------------------

ISO = {
    line.strip()
    for line in (DATA / "iso3166-alpha2.txt").read_text(encoding="utf-8").splitlines()
    if line.strip() and not line.startswith("#")
}
with (DATA / "checkpoints.csv").open(encoding="utf-8") as handle:
    CHECKPOINTS = {row["code"]: row for row in csv.DictReader(handle)}
with (DATA / "chpl.csv").open(encoding="utf-8") as handle:
    CHPL = {row["hs6"]: row["tier"] for row in csv.DictReader(handle)}
NEIGHBOURS = {row["neighbour"] for row in CHECKPOINTS.values()}

REQUIRED = (
    "event_id", "consignment_id", "checkpoint", "from_country", "to_country", "observed_at",
    "goods",
)  # fmt: skip
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"not JSON: {name}")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _text(value: Any, longest: int) -> bool:
    return isinstance(value, str) and 1 <= len(value) <= longest


def _country(value: Any) -> bool:
    return isinstance(value, str) and value.upper() in ISO


def _instant(value: Any) -> datetime | None:
    if not isinstance(value, str) or not RFC3339.fullmatch(value):
        return None
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return at if LOW_INSTANT <= at < HIGH_INSTANT else None


def _no_controls(value: Any, longest: int) -> bool:
    return _text(value, longest) and not any(unicodedata.category(c) == "Cc" for c in value)


def _transport_ok(value: Any) -> bool:
    if not isinstance(value, dict) or value.get("mode", "road") not in (
        "road",
        "rail",
        "air",
        "sea",
    ):
        return False
    names = ("vehicle_id", "container_id", "seal_id")
    return all(_text(value[name], 64) for name in names if name in value)


def _goods_ok(goods: Any) -> bool:
    if not isinstance(goods, list) or not 1 <= len(goods) <= 1000:
        return False
    for line in goods:
        if not isinstance(line, dict):
            return False
        code = line.get("hs_code")
        if not isinstance(code, str) or not re.fullmatch(r"\d{6,10}", re.sub(r"[. ]", "", code)):
            return False
        for name in ("value_usd", "quantity"):
            if name in line and not (_is_number(line[name]) and line[name] >= 0):
                return False
        if "batch_id" in line and not _no_controls(line["batch_id"], 64):
            return False
    return True


def problems(raw: bytes) -> list[str]:
    """Every SPEC reason that applies to one line (a valid line has none)."""
    found = ["too_large"] if len(raw) > MAX_BYTES else []
    try:
        event = json.loads(raw, parse_constant=_reject_constant)
    except ValueError:
        return [*found, "invalid_json"]
    if not isinstance(event, dict):
        return [*found, "not_an_object"]
    found += [f"missing_field:{name}" for name in REQUIRED if name not in event]
    checks: dict[str, Callable[[Any], bool]] = {
        "schema": lambda v: v == "crossing/1",
        "event_id": lambda v: _text(v, 128),
        "consignment_id": lambda v: _no_controls(v, 128),
        "checkpoint": lambda v: _text(v, 64),
        "from_country": _country,
        "to_country": _country,
        "observed_at": lambda v: _instant(v) is not None,
        "goods": _goods_ok,
        "declared_destination": _country,
        "permit_id": lambda v: _text(v, 64),
        "transport": _transport_ok,
        "scanner_id": lambda v: _text(v, 64),
    }
    found += [f"invalid_field:{k}" for k, ok in checks.items() if k in event and not ok(event[k])]
    sides = (event.get("from_country"), event.get("to_country"))
    # Strict on purpose: with a side that is not KZ written badly, the event is still a crossing;
    # with KZ itself written badly it is not one either, and that would be two broken rules.
    monitored = sum(isinstance(side, str) and side.upper() == "KZ" for side in sides)
    if None not in sides and monitored != 1:
        found.append("not_a_crossing")
    return found


# --- an independent reading of SPEC section 4 ---------------------------------------------------


@dataclass(frozen=True)
class Scan:
    line: int  # 1-based position in the output
    event_id: str
    consignment_id: str
    entry: bool
    country: str  # the other side
    at: datetime
    codes: frozenset[str]
    raw: dict[str, Any]

    @property
    def qualifying_entry(self) -> bool:
        return self.entry and self.country != "RU"

    @property
    def qualifying_exit(self) -> bool:
        return not self.entry and self.country == "RU"

    @property
    def hs6(self) -> set[str]:
        return {code[:6] for code in self.codes}

    @property
    def keys(self) -> set[str]:
        """SPEC section 4.2, read independently."""
        transport = self.raw.get("transport", {})
        keys = {
            "batch:" + line["batch_id"].strip() for line in self.raw["goods"] if "batch_id" in line
        }
        if "container_id" in transport:
            keys.add("container:" + re.sub(r"[ -]", "", transport["container_id"]).upper())
        if "seal_id" in transport:
            keys.add("seal:" + transport["seal_id"].replace(" ", "").upper())
        return keys


def scans(lines: list[bytes], truth: GroundTruth) -> list[Scan]:
    """The accepted events, first occurrence only (duplicates ignored), in delivery order."""
    seen: set[str] = set()
    out = []
    for number, raw in enumerate(lines, 1):
        if number in truth.malformed:
            continue
        event = json.loads(raw)
        if event["event_id"] in seen:
            continue
        seen.add(event["event_id"])
        source, target = event["from_country"].upper(), event["to_country"].upper()
        at = _instant(event["observed_at"])
        assert at is not None
        codes = frozenset(re.sub(r"[. ]", "", line["hs_code"]) for line in event["goods"])
        entry = target == "KZ"
        country = source if entry else target
        out.append(
            Scan(
                number, event["event_id"], event["consignment_id"], entry, country, at, codes, event
            )
        )
    return out


def matching_pairs(events: Iterable[Scan], window: timedelta = WINDOW) -> list[tuple[Scan, Scan]]:
    events = list(events)
    return [
        (e, x)
        for e in events
        if e.entry and e.country != "RU"
        for x in events
        if not x.entry and x.country == "RU" and timedelta(0) <= x.at - e.at <= window
    ]


def relabel_pairs(all_scans: list[Scan]) -> dict[tuple[str, str], list[tuple[Scan, Scan]]]:
    """(B, link key) -> its matching (entry, exit) pairs over the whole run (SPEC section 4.2)."""
    carriers: dict[str, list[Scan]] = defaultdict(list)
    for scan in all_scans:
        for key in scan.keys:
            carriers[key].append(scan)
    found: dict[tuple[str, str], list[tuple[Scan, Scan]]] = defaultdict(list)
    for key, events in carriers.items():
        for x in events:
            for e in events:
                if (
                    x.qualifying_exit
                    and e.qualifying_entry
                    and e.consignment_id != x.consignment_id
                    and timedelta(0) <= x.at - e.at <= RELABEL_WINDOW
                    and e.hs6 & x.hs6
                ):
                    found[(x.consignment_id, key)].append((e, x))
    return found


def unlicensed_exits(events: Iterable[Scan]) -> list[Scan]:
    """SPEC section 4.3 with the default list, CHPL tiers 1 and 2."""
    listed = {code for code, tier in CHPL.items() if tier in ("1", "2")}
    return [
        x
        for x in events
        if x.qualifying_exit and "permit_id" not in x.raw and {c[:6] for c in x.codes} & listed
    ]


def severity(codes: Iterable[str]) -> str:
    tiers = {CHPL[code[:6]] for code in codes if code[:6] in CHPL}
    if tiers & {"1", "2"}:
        return "high"
    return "medium" if tiers else "low"


def by_consignment(all_scans: list[Scan]) -> dict[str, list[Scan]]:
    grouped: dict[str, list[Scan]] = defaultdict(list)
    for scan in all_scans:
        grouped[scan.consignment_id].append(scan)
    return grouped


# --- fixtures -----------------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)  # a repr of thousands of lines helps no failure report
class Run:
    spec: SimulationSpec
    lines: list[bytes]
    truth: GroundTruth
    scans: list[Scan]
    grouped: dict[str, list[Scan]]


def make_run(spec: SimulationSpec) -> Run:
    lines, truth = simulate(spec)
    all_scans = scans(lines, truth)
    return Run(spec, lines, truth, all_scans, by_consignment(all_scans))


@pytest.fixture(scope="module")
def default_run() -> Run:
    return make_run(SimulationSpec(consignments=3000))


@pytest.fixture(scope="module")
def noisy_run() -> Run:
    """Many malformed lines and duplicates, so that every kind of damage shows up."""
    return make_run(
        SimulationSpec(consignments=2500, seed=7, malformed_rate=0.25, duplicate_rate=0.1)
    )


# --- reproducibility ----------------------------------------------------------------------------


def test_same_seed_gives_identical_bytes_and_truth() -> None:
    spec = SimulationSpec(consignments=400, seed=1234)
    first_lines, first_truth = simulate(spec)
    second_lines, second_truth = simulate(spec)
    assert first_lines == second_lines
    assert first_truth == second_truth
    assert len(first_lines) > 400


def test_different_seed_gives_different_output() -> None:
    first, _ = simulate(SimulationSpec(consignments=200, seed=1))
    second, _ = simulate(SimulationSpec(consignments=200, seed=2))
    assert first != second
    assert not set(first) & set(second)  # not even one identical line (event ids differ)


def test_truth_sink_does_not_change_the_output() -> None:
    spec = SimulationSpec(consignments=300, seed=5)
    assert list(generate(spec)) == simulate(spec)[0]


def test_lines_are_single_json_lines_without_newline(default_run: Run) -> None:
    assert all(b"\n" not in line and line for line in default_run.lines)


# --- SPEC section 3: valid lines are valid, malformed lines break exactly one rule --------------


def test_every_valid_line_meets_spec_section_3(default_run: Run, noisy_run: Run) -> None:
    for run in (default_run, noisy_run):
        for number, raw in enumerate(run.lines, 1):
            if number not in run.truth.malformed:
                assert problems(raw) == [], (number, raw[:300])


def test_malformed_lines_have_exactly_the_stated_reason(default_run: Run, noisy_run: Run) -> None:
    for run in (default_run, noisy_run):
        assert run.truth.malformed, "expected some malformed lines"
        for number, record in run.truth.malformed.items():
            assert record["line"] == number
            assert problems(run.lines[number - 1]) == [record["reason"]], (number, record)


def test_malformed_share_is_close_to_the_rate(default_run: Run, noisy_run: Run) -> None:
    share = len(noisy_run.truth.malformed) / len(noisy_run.lines)
    assert 0.15 < share < 0.25  # rate 0.25 per valid line, i.e. 0.2 of all lines
    share = len(default_run.truth.malformed) / len(default_run.lines)
    assert 0.001 < share < 0.012


def test_every_kind_of_damage_shows_up(noisy_run: Run) -> None:
    reasons = {record["reason"] for record in noisy_run.truth.malformed.values()}
    expected = {
        "invalid_json",
        "not_an_object",
        "not_a_crossing",
        "too_large",
        "invalid_field:goods",
        "invalid_field:observed_at",
        "invalid_field:schema",
        "invalid_field:event_id",
        "invalid_field:consignment_id",
        "invalid_field:checkpoint",
        "invalid_field:transport",
        "invalid_field:declared_destination",
        "invalid_field:scanner_id",
        "invalid_field:permit_id",
    }
    assert expected <= reasons
    assert {r for r in reasons if r.startswith("missing_field:")} >= {
        f"missing_field:{name}" for name in ("event_id", "observed_at", "goods")
    }
    assert {"invalid_field:from_country", "invalid_field:to_country"} & reasons


def test_valid_lines_use_the_allowed_variety(default_run: Run) -> None:
    """Offsets, fractions, hs-code spellings, optional and unknown fields all occur."""
    texts = [scan.raw["observed_at"] for scan in default_run.scans]
    for suffix in ("Z", "+05:00", "+06:00", "+03:00"):
        assert any(text.endswith(suffix) for text in texts), suffix
    assert any("." in text for text in texts)
    codes = [line["hs_code"] for scan in default_run.scans for line in scan.raw["goods"]]
    assert any("." in code for code in codes)
    assert any(" " in code for code in codes)
    assert any(re.fullmatch(r"\d{10}", code) for code in codes)
    raws = [scan.raw for scan in default_run.scans]
    assert any("schema" not in raw for raw in raws)
    assert any(raw.get("schema") == "crossing/1" for raw in raws)
    for name in ("declared_destination", "transport", "scanner_id"):
        assert any(name in raw for raw in raws), name
    known = {"schema", *REQUIRED, "declared_destination", "transport", "scanner_id"}
    assert any(set(raw) - known for raw in raws), "expected some unknown extra fields"
    assert any(raw.get("declared_destination") == "KZ" for raw in raws if raw["to_country"] == "KZ")
    assert all(1 <= len(raw["goods"]) <= 6 for raw in raws)  # 5, + 1 on relabelling


def test_event_ids_are_unique_apart_from_duplicates(default_run: Run) -> None:
    ids = [scan.event_id for scan in default_run.scans]
    assert len(ids) == len(set(ids))
    shape = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
    assert all(shape.fullmatch(event_id) for event_id in ids)


def test_checkpoints_match_the_country_across_the_border(default_run: Run) -> None:
    for scan in default_run.scans:
        point = CHECKPOINTS[scan.raw["checkpoint"]]
        if scan.country in NEIGHBOURS:
            assert point["neighbour"] == scan.country, scan.raw
        else:  # e.g. TR, DE, KR, TJ: by sea, by air, via CN/KG/UZ; never through Russia
            assert point["neighbour"] != "RU", scan.raw
        transport = scan.raw.get("transport")
        if transport is not None:
            assert transport["mode"] == point["mode"]


# --- duplicates and delivery order -----------------------------------------------------------


def test_duplicates_repeat_an_earlier_line_byte_for_byte(noisy_run: Run) -> None:
    first_seen: dict[str, bytes] = {}
    duplicates = 0
    for number, raw in enumerate(noisy_run.lines, 1):
        if number in noisy_run.truth.malformed:
            continue
        event_id = json.loads(raw)["event_id"]
        if event_id in first_seen:
            assert raw == first_seen[event_id]
            duplicates += 1
        else:
            first_seen[event_id] = raw
    assert duplicates > 0.05 * len(first_seen)


def test_some_exits_arrive_before_their_matching_entries(default_run: Run) -> None:
    early = [
        (entry, exit_)
        for events in default_run.grouped.values()
        for entry, exit_ in matching_pairs(events)
        if exit_.line < entry.line
    ]
    assert len(early) >= 5


def test_lateness_is_bounded(default_run: Run) -> None:
    """Delivered in order of event time + lateness, so no line is older than what came before
    by more than max_lateness."""
    bound = timedelta(seconds=default_run.spec.max_lateness_s)
    latest = datetime(2000, 1, 1, tzinfo=UTC)
    out_of_order = 0
    for scan in default_run.scans:  # first occurrences only
        assert scan.at >= latest - bound, scan
        out_of_order += scan.at < latest
        latest = max(latest, scan.at)
    assert latest > datetime(2024, 3, 1, tzinfo=UTC)
    assert out_of_order > 0


# --- SPEC section 4: the truth --------------------------------------------------------------


def test_truth_covers_exactly_the_generated_consignments(default_run: Run) -> None:
    assert set(default_run.truth.consignments) == set(default_run.grouped)
    assert len(default_run.truth.consignments) == default_run.spec.consignments


def test_truth_flag_agrees_with_spec_section_4(default_run: Run, noisy_run: Run) -> None:
    for run in (default_run, noisy_run):
        for consignment_id, record in run.truth.consignments.items():
            events = run.grouped[consignment_id]
            assert record["flagged"] == bool(matching_pairs(events)), (record, events)


def test_truth_severity_agrees_with_the_chpl(default_run: Run) -> None:
    seen = set()
    for consignment_id, record in default_run.truth.consignments.items():
        codes = {code for scan in default_run.grouped[consignment_id] for code in scan.codes}
        assert record["severity"] == severity(codes)
        seen.add(record["severity"])
    assert seen == {"high", "medium", "low"}


TRANSIT, RELABEL, PERMIT = "transit-to-ru", "relabel-to-ru", "export-without-permit"


def expected_flag_ids(run: Run, window: timedelta = WINDOW) -> dict[str, str]:
    """flag_id -> rule, by an independent reading of SPEC section 4 over the whole run."""
    out = {}
    for cid, events in run.grouped.items():
        if matching_pairs(events, window):
            out[flag_id(TRANSIT, cid)] = TRANSIT
        if unlicensed_exits(events):
            out[flag_id(PERMIT, cid)] = PERMIT
    for consignment, key in relabel_pairs(run.scans):
        out[flag_id(RELABEL, consignment, key)] = RELABEL
    return out


def _first(events: Iterable[Scan], latest: bool = False) -> Scan:
    return min(
        events, key=lambda s: (-s.at.timestamp() if latest else s.at.timestamp(), s.event_id)
    )


def test_flag_truth_agrees_with_spec_section_4(default_run: Run, noisy_run: Run) -> None:
    """The same flags, and for each the pair SPEC section 4 reports among the events known when
    the line that raises it arrives."""
    for run in (default_run, noisy_run):
        assert {f: r["rule"] for f, r in run.truth.flags.items()} == expected_flag_ids(run)
        by_id = {scan.event_id: scan for scan in run.scans}
        for record in run.truth.flags.values():
            known = [s for s in run.scans if s.line <= record["detected_line"]]
            exit_ = by_id[record["exit_event_id"]]
            assert exit_.consignment_id == record["consignment_id"]
            if record["rule"] == TRANSIT:
                pairs = matching_pairs(
                    [s for s in known if s.consignment_id == exit_.consignment_id]
                )
                codes = {
                    c for s in known if s.consignment_id == exit_.consignment_id for c in s.codes
                }
            elif record["rule"] == PERMIT:
                mine = [s for s in known if s.consignment_id == exit_.consignment_id]
                pairs = [(None, x) for x in unlicensed_exits(mine)]  # type: ignore[misc]
                codes = {c for s in mine for c in s.codes}
            else:
                link = record["link"]
                assert link is not None
                pairs = relabel_pairs(known)[(exit_.consignment_id, link)]
            assert pairs, record
            expected_exit = _first(x for _, x in pairs)
            assert expected_exit.event_id == record["exit_event_id"], record
            if record["rule"] == PERMIT:
                assert record["entry_event_id"] is None and record["link"] is None
            else:
                entry = _first((e for e, x in pairs if x is expected_exit), latest=True)
                assert entry.event_id == record["entry_event_id"], record
            if record["rule"] == RELABEL:
                assert record["linked_consignment_id"] == entry.consignment_id
                shared = entry.hs6 & expected_exit.hs6
                codes = {c for c in entry.codes | expected_exit.codes if c[:6] in shared}
            else:
                assert record["linked_consignment_id"] is None
            assert record["hs_codes"] == sorted(codes)
            assert record["severity"] == severity(codes)
        # Each flag is raised by the line that completes its first match, never earlier.
        for record in run.truth.flags.values():
            assert run.lines[record["detected_line"] - 1]
            assert record["detected_line"] not in run.truth.malformed


def _flags_of(run: Run, consignment_id: str, rule: str) -> list[dict[str, Any]]:
    return [
        dict(f)
        for f in run.truth.flags.values()
        if f["consignment_id"] == consignment_id and f["rule"] == rule
    ]


def test_relabel_cases_flag_as_named(default_run: Run) -> None:
    counts = {
        "relabel-container": 1, "relabel-spelled": 1, "relabel-seal": 1, "relabel-batch": 1,
        "relabel-two-keys": 2, "relabel-two-entries": 1, "relabel-window-edge": 1,
        "relabel-beyond-window": 0, "relabel-no-shared-hs6": 0, "relabel-seal-dash": 0,
        "relabel-russian-origin": 0, "relabel-not-russia": 0, "container-reuse-exit": 0,
        "relabel-entry": 0, "container-reuse-entry": 0,
    }  # fmt: skip
    seen: dict[str, int] = defaultdict(int)
    lower_severity = 0
    for cid, record in default_run.truth.consignments.items():
        if record["case"] not in counts:
            assert not _flags_of(default_run, cid, RELABEL), record
            continue
        seen[record["case"]] += 1
        flags = _flags_of(default_run, cid, RELABEL)
        assert len(flags) == counts[record["case"]], (record, flags)
        kinds = {f["link"].split(":")[0] for f in flags}
        if record["case"] in ("relabel-container", "relabel-spelled", "relabel-two-entries"):
            assert kinds == {"container"}
        elif record["case"] == "relabel-seal":
            assert kinds == {"seal"}
        elif record["case"] == "relabel-batch":
            assert kinds == {"batch"}
        elif record["case"] == "relabel-two-keys":
            assert kinds == {"container", "batch"}
            assert len({f["linked_consignment_id"] for f in flags}) == 1
        lower_severity += any(f["severity"] != record["severity"] for f in flags)
        case = record["case"]
        if case == "relabel-spelled":
            (exit_,) = default_run.grouped[cid]
            written = exit_.raw["transport"]["container_id"]
            assert written != flags[0]["link"].removeprefix("container:")
        elif case == "relabel-window-edge":
            (exit_,) = default_run.grouped[cid]
            (entry,) = [s for s in default_run.scans if s.event_id == flags[0]["entry_event_id"]]
            assert exit_.at - entry.at == RELABEL_WINDOW
        elif case == "relabel-beyond-window":
            (exit_,) = default_run.grouped[cid]
            sharing = [s for s in default_run.scans if s.entry and s.keys & exit_.keys]
            assert sharing and all(exit_.at - s.at > RELABEL_WINDOW for s in sharing)
    assert set(seen) == set(counts), set(counts) - set(seen)
    assert lower_severity, "only the lines that share an HS-6 count for a relabel flag"


def test_controlled_exports_flag_without_a_permit_only(default_run: Run) -> None:
    expected = {
        "controlled-no-permit": True, "controlled-one-unpermitted": True,
        "controlled-permit": False, "controlled-not-russia": False, "controlled-tier-3-4": False,
    }  # fmt: skip
    seen = set()
    for cid, record in default_run.truth.consignments.items():
        if record["case"] in expected:
            seen.add(record["case"])
            flags = _flags_of(default_run, cid, PERMIT)
            assert bool(flags) == expected[record["case"]], record
            for flag in flags:
                assert flag["severity"] == "high"
                (exit_,) = [
                    s for s in default_run.grouped[cid] if s.event_id == flag["exit_event_id"]
                ]
                assert "permit_id" not in exit_.raw
    assert seen == set(expected)
    permitted = [s for s in default_run.scans if "permit_id" in s.raw]
    assert permitted and all(
        re.fullmatch(r"KZ-EL-\d{4}-\d{6}", s.raw["permit_id"]) for s in permitted
    )


def _iso6346_ok(container: str) -> bool:
    values, value = {}, 10
    for letter in "ABCDEFGHIJKLMNOPQRSTUVWXYZ":
        value += value % 11 == 0
        values[letter] = value
        value += 1
    digits = [values[c] if c.isalpha() else int(c) for c in container[:10]]
    return sum(d * 2**i for i, d in enumerate(digits)) % 11 % 10 == int(container[10])


def test_link_keys_look_real_and_are_shared_only_on_purpose(default_run: Run) -> None:
    carriers: dict[str, set[str]] = defaultdict(set)
    scans_per_key: dict[str, int] = defaultdict(int)
    for scan in default_run.scans:
        for key in scan.keys:
            carriers[key].add(scan.consignment_id)
            scans_per_key[key] += 1
            kind, value = key.split(":", 1)
            if kind == "container":
                assert re.fullmatch(r"[A-Z]{3}U\d{7}", value) and _iso6346_ok(value), key
            elif kind == "seal":
                assert re.fullmatch(r"[A-Z]{2}-?\d{6}", value), key
            else:
                assert re.fullmatch(r"\d{8}/\d{6}/\d{7}/\d{3}", value), key
    assert max(scans_per_key.values()) < 16  # far below the 64 entries a key remembers
    shared = {key: cids for key, cids in carriers.items() if len(cids) > 1}
    assert shared
    for cids in shared.values():
        cases = {default_run.truth.consignments[c]["pattern"] for c in cids}
        assert cases <= {"relabel", "container-reuse"}, cases
    kinds = {key.split(":")[0] for key in shared}
    assert kinds == {"container", "seal", "batch"}


def test_out_of_range_instants_are_malformed(noisy_run: Run) -> None:
    out_of_range = 0
    for number, record in noisy_run.truth.malformed.items():
        if record["reason"] != "invalid_field:observed_at":
            continue
        text = json.loads(noisy_run.lines[number - 1])["observed_at"]
        out_of_range += isinstance(text, str) and bool(RFC3339.fullmatch(text))
    assert out_of_range


def test_every_scan_of_a_consignment_carries_the_same_goods(default_run: Run) -> None:
    for events in default_run.grouped.values():
        assert len({scan.codes for scan in events}) == 1


def test_every_pattern_appears_with_its_expected_outcome(default_run: Run) -> None:
    outcomes: dict[str, set[bool]] = defaultdict(set)
    for record in default_run.truth.consignments.values():
        outcomes[record["pattern"]].add(record["flagged"])
    assert set(outcomes) == set(PATTERNS)
    assert outcomes["transit"] == {True}
    assert outcomes["re-export"] == {True}
    for never in ("slow", "export-only", "ru-return", "other-destination", "import-only"):
        assert outcomes[never] == {False}, never
    assert outcomes["boundary"] == {True, False}
    assert outcomes["re-entry"] == {True, False}
    for other_rules in ("relabel", "container-reuse", "controlled-export"):
        assert outcomes[other_rules] == {False}, other_rules  # no transit: see the cases


def test_patterns_look_like_their_names(default_run: Run) -> None:
    for consignment_id, record in default_run.truth.consignments.items():
        events = default_run.grouped[consignment_id]
        entries = [e for e in events if e.entry]
        exits = [e for e in events if not e.entry]
        pattern = record["pattern"]
        if pattern == "export-only":
            assert not entries and exits
        elif pattern == "import-only":
            assert entries and not exits
        elif pattern == "ru-return":
            assert all(e.country == "RU" for e in events)
        elif pattern == "other-destination":
            assert all(x.country != "RU" for x in exits)
        elif pattern == "transit":
            (entry,) = entries
            (exit_,) = exits
            assert timedelta(days=1) <= exit_.at - entry.at <= timedelta(days=7)
        elif pattern == "slow":
            assert min(x.at for x in exits) - max(e.at for e in entries) > WINDOW
        elif pattern == "re-entry":
            assert len(events) >= 3


def test_boundary_cases_sit_on_both_edges_in_different_offsets(default_run: Run) -> None:
    dwells: dict[timedelta, list[bool]] = defaultdict(list)
    for consignment_id, record in default_run.truth.consignments.items():
        if record["pattern"] != "boundary":
            continue
        (entry,) = [e for e in default_run.grouped[consignment_id] if e.entry]
        (exit_,) = [e for e in default_run.grouped[consignment_id] if not e.entry]
        assert entry.raw["observed_at"][-6:] != exit_.raw["observed_at"][-6:]
        dwells[exit_.at - entry.at].append(record["flagged"])
    assert set(dwells[WINDOW]) == {True}
    assert set(dwells[WINDOW + timedelta(seconds=1)]) == {False}
    assert set(dwells[WINDOW + timedelta(milliseconds=1)]) == {False}
    assert set(dwells[timedelta(0)]) == {True}
    assert set(dwells[timedelta(seconds=-1)]) == {False}


def test_the_window_is_configurable() -> None:
    run = make_run(SimulationSpec(consignments=600, window_days=10, mix=(("boundary", 1.0),)))
    for consignment_id, record in run.truth.consignments.items():
        events = run.grouped[consignment_id]
        assert record["flagged"] == bool(matching_pairs(events, timedelta(days=10)))
    assert {r["flagged"] for r in run.truth.consignments.values()} == {True, False}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(min_value=0, max_value=2**32),
    weights=st.lists(
        st.sampled_from([0.0, 0.5, 1.0, 3.0]), min_size=len(PATTERNS), max_size=len(PATTERNS)
    ).filter(any),
    lateness=st.sampled_from([0.0, 60.0, 86_400.0, 5 * 86_400.0]),
    window_days=st.integers(min_value=1, max_value=45),
)
def test_truth_and_validity_hold_for_any_spec(
    seed: int, weights: list[float], lateness: float, window_days: int
) -> None:
    spec = SimulationSpec(
        consignments=60,
        seed=seed,
        mix=tuple(zip(PATTERNS, weights, strict=True)),
        max_lateness_s=lateness,
        window_days=window_days,
        malformed_rate=0.1,
        duplicate_rate=0.1,
    )
    run = make_run(spec)
    for number, raw in enumerate(run.lines, 1):
        record = run.truth.malformed.get(number)
        assert problems(raw) == ([record["reason"]] if record else [])
    for consignment_id, truth in run.truth.consignments.items():
        events = run.grouped[consignment_id]
        assert truth["flagged"] == bool(matching_pairs(events, timedelta(days=window_days)))
        assert truth["pattern"] in dict(spec.mix) and dict(spec.mix)[truth["pattern"]] > 0
    flags = {f: r["rule"] for f, r in run.truth.flags.items()}
    assert flags == expected_flag_ids(run, timedelta(days=window_days))


# --- size, speed, laziness ----------------------------------------------------------------------


def test_events_target_is_approximate() -> None:
    lines = list(generate(SimulationSpec(consignments=None, events=20_000)))
    assert 19_000 <= len(lines) <= 21_000


def test_lines_have_a_realistic_size(default_run: Run) -> None:
    sizes = sorted(len(scan_line) for scan_line in default_run.lines)
    median = sizes[len(sizes) // 2]
    assert 150 <= median <= 450


def test_generation_is_lazy() -> None:
    """The first lines of a huge run come at once: nothing is generated ahead of need."""
    started = time.monotonic()
    first = list(itertools.islice(generate(SimulationSpec(consignments=None, events=10**9)), 50))
    assert len(first) == 50
    assert time.monotonic() - started < 5


def test_simulator_does_not_load_the_detection_code() -> None:
    """The truth must be an independent reading of the SPEC: bordermon.core stays unimported."""
    code = (
        "import sys\n"
        "from bordermon.simulate import SimulationSpec, simulate\n"
        "lines, truth = simulate(SimulationSpec(consignments=50))\n"
        "assert lines and truth.consignments\n"
        "print(sorted(m for m in sys.modules if m.startswith('bordermon.core')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"


def test_spec_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="malformed_rate"):
        SimulationSpec(malformed_rate=1.0)
    with pytest.raises(ValueError, match="unknown pattern"):
        SimulationSpec(mix=(("teleport", 1.0),))
    with pytest.raises(ValueError, match="positive weight"):
        SimulationSpec(mix=(("transit", 0.0),))
    with pytest.raises(ValueError, match="offset"):
        SimulationSpec(start=datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="between 2000 and 2090"):
        SimulationSpec(start=datetime(2095, 1, 1, tzinfo=UTC))
    with pytest.raises(ValueError, match="consignments or events"):
        SimulationSpec(consignments=None, events=None)
    assert dict(DEFAULT_MIX).keys() == set(PATTERNS)


# --- the command line ---------------------------------------------------------------------------


def _cli(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bordermon simulate")
    simulate_command.configure_parser(parser)
    return parser.parse_args(argv)


def test_cli_writes_events_and_truth(tmp_path: Path) -> None:
    out, truth = tmp_path / "scans.jsonl", tmp_path / "truth.jsonl"
    code = simulate_command.run(
        _cli("--consignments", "150", "--seed", "9", "--out", str(out), "--truth", str(truth))
    )
    assert code == 0
    lines, expected = simulate(SimulationSpec(consignments=150, seed=9))
    assert out.read_bytes() == b"".join(line + b"\n" for line in lines)
    records = [json.loads(line) for line in truth.read_text(encoding="utf-8").splitlines()]
    consignments = {r["consignment_id"]: r for r in records if "pattern" in r}
    malformed = {r["line"]: r for r in records if "line" in r}
    assert consignments == expected.consignments
    assert malformed == expected.malformed
    assert all(
        set(r) == {"consignment_id", "pattern", "case", "flagged", "severity"}
        for r in consignments.values()
    )
    flags = {r["flag_id"]: r for r in records if "flag_id" in r}
    assert flags == expected.flags and flags


def test_cli_start_moves_the_timeline(tmp_path: Path) -> None:
    out = tmp_path / "scans.jsonl"
    args = _cli("--consignments", "20", "--start", "2025-06-01T12:00:00+05:00", "--out", str(out))
    assert simulate_command.run(args) == 0
    instants = [_instant(json.loads(line)["observed_at"]) for line in out.read_bytes().splitlines()]
    start = datetime(2025, 6, 1, 7, tzinfo=UTC)
    assert all(at is not None and start <= at <= start + timedelta(days=120) for at in instants)


@pytest.mark.parametrize(
    "argv",
    [
        ["--consignments", "many"],
        ["--events", "-5"],
        ["--seed", "4.2"],
        ["--malformed-rate", "2"],
        ["--duplicate-rate", "nan"],
        ["--start", "2024-03-01T00:00:00"],
        ["--start", "yesterday"],
        ["--mix", "transit"],
        ["--mix", "warp=1"],
        ["--max-lateness", "soon"],
        ["--window-days", "0"],
        ["--relabel-window-days", "soon"],
        ["--rate", "-1"],
        ["--out", "/nonexistent-dir/x.jsonl"],
    ],
)
def test_cli_bad_arguments_give_one_line_and_exit_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert simulate_command.run(_cli(*argv)) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.strip().splitlines()) == 1
    assert "Traceback" not in captured.err


def test_cli_rate_paces_the_output(tmp_path: Path) -> None:
    out = tmp_path / "scans.jsonl"
    started = time.monotonic()
    args = _cli("--consignments", "20", "--rate", "100", "--out", str(out), "--malformed-rate", "0")
    assert simulate_command.run(args) == 0
    count = len(out.read_bytes().splitlines())
    assert time.monotonic() - started >= (count - 1) / 100 * 0.9


def test_cli_survives_a_reader_that_leaves() -> None:
    """`bordermon simulate | head -1`: exit 0, nothing on stderr, no traceback."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bordermon.simulate", "--events", "2000000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    assert json.loads(process.stdout.readline())["event_id"]
    process.stdout.close()
    errors = process.stderr.read()
    assert process.wait(timeout=60) == 0
    assert errors == b""


def test_cli_help_mentions_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _cli("--help")
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "examples:" in text and "--truth" in text and "--rate" in text


def test_the_truth_forgets_only_what_can_no_longer_matter() -> None:
    """Short windows over half a year: the streaming truth drops old scans as it goes, and still
    gives the flags of a truth that remembers everything."""
    spec = SimulationSpec(
        consignments=3000,
        seed=11,
        window_days=3,
        relabel_window_days=5,
        mean_interval_s=5000,
        max_lateness_s=3600,
        duplicate_rate=0.1,
    )
    lines, truth = simulate(spec)
    forgetful, total = GroundTruth(), GroundTruth()
    engines = [truth_engine(spec, forgetful.add, forget_every=200)]
    engines.append(truth_engine(spec, total.add, forget_every=10**9))
    for number, line in enumerate(lines, 1):
        if number not in truth.malformed:
            for engine in engines:
                engine.observe(number, line)
    assert len(engines[0].consignments) < len(engines[1].consignments) / 5
    assert forgetful.flags == total.flags == truth.flags
    assert {f["rule"] for f in truth.flags.values()} == {
        "transit-to-ru", "relabel-to-ru", "export-without-permit"
    }  # fmt: skip
