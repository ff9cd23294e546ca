"""`bordermon replay` of a simulated file agrees with the simulator's ground truth, for all three
rules of SPEC section 4: the same flag ids and, per flag, the same rule, severity, reported
entry and exit, link, linked consignment and codes; and the same rejects.

The simulator computes its truth from the lines it wrote, by brute force in file order and
without importing the core, so agreement here is two independent readings of the SPEC. Replay
is run through its command line (SPEC section 7) with default settings (all three rules,
windows of 30 and 90 days, CHPL tiers 1 and 2 as the export-control list), as an analyst would.
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from bordermon.simulate import DEFAULT_MIX, GroundTruth, SimulationSpec, simulate

RULES = ("transit-to-ru", "relabel-to-ru", "export-without-permit")
WINDOW_SECONDS = {"transit-to-ru": 30 * 86_400, "relabel-to-ru": 90 * 86_400}
# Ten times the default share of relabelling, for many relabel-to-ru flags and non-flags.
RELABEL_HEAVY = tuple(
    (dict(DEFAULT_MIX) | {"relabel": 0.6, "container-reuse": 0.2, "controlled-export": 0.1}).items()
)


def run_replay(lines: list[bytes], tmp_path: Path) -> tuple[list[dict[str, Any]], dict[int, str]]:
    """`bordermon replay FILE --rejects R`: the flags in output order, and line -> reason."""
    scans, rejects = tmp_path / "scans.jsonl", tmp_path / "rejects.jsonl"
    scans.write_bytes(b"\n".join(lines) + b"\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BORDERMON_")}
    env["PYTHONPATH"] = os.pathsep.join(
        p
        for p in (str(Path(__file__).resolve().parents[2] / "services"), env.get("PYTHONPATH"))
        if p
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bordermon",
            "replay",
            str(scans),
            "--rejects",
            str(rejects),
            "--quiet",
        ],
        capture_output=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-2000:]
    flags = [orjson.loads(line) for line in result.stdout.splitlines()]
    reasons = {
        record["line"]: record["reason"]
        for record in map(orjson.loads, rejects.read_bytes().splitlines())
    }
    return flags, reasons


def check_agreement(lines: list[bytes], truth: GroundTruth, tmp_path: Path) -> None:
    flags, rejects = run_replay(lines, tmp_path)
    assert rejects == {line: record["reason"] for line, record in truth.malformed.items()}

    ids = [flag["flag_id"] for flag in flags]
    assert len(ids) == len(set(ids)), "replay emits each flag once"
    got = {flag["flag_id"]: flag for flag in flags}
    missing = {i: truth.flags[i] for i in truth.flags.keys() - got.keys()}
    extra = {i: got[i] for i in got.keys() - truth.flags.keys()}
    assert not missing and not extra, (list(missing.values())[:3], list(extra.values())[:3])

    instants = {
        event["event_id"]: datetime.fromisoformat(event["observed_at"].replace("Z", "+00:00"))
        for number, line in enumerate(lines, 1)
        if number not in truth.malformed
        for event in (orjson.loads(line),)
    }
    for flag_id, expected in truth.flags.items():
        flag = got[flag_id]
        context = (expected, flag)
        assert flag["schema"] == "flag/2", context
        assert flag["rule"] == expected["rule"], context
        assert flag["consignment_id"] == expected["consignment_id"], context
        assert flag["severity"] == expected["severity"], context
        assert flag["exit"]["event_id"] == expected["exit_event_id"], context
        assert flag["exit"]["consignment_id"] == expected["consignment_id"], context
        if expected["entry_event_id"] is None:
            assert flag["entry"] is None, context
            assert flag["dwell_seconds"] is None and flag["window_seconds"] is None, context
        else:
            assert flag["entry"]["event_id"] == expected["entry_event_id"], context
            dwell = instants[expected["exit_event_id"]] - instants[expected["entry_event_id"]]
            assert abs(flag["dwell_seconds"] - dwell.total_seconds()) < 1e-6, context
            assert flag["window_seconds"] == WINDOW_SECONDS[expected["rule"]], context
            entry_owner = expected["linked_consignment_id"] or expected["consignment_id"]
            assert flag["entry"]["consignment_id"] == entry_owner, context
        assert flag["link"] == expected["link"], context
        assert flag["linked_consignment_id"] == expected["linked_consignment_id"], context
        assert flag["hs_codes"] == expected["hs_codes"], context

    by_rule = collections.Counter(record["rule"] for record in truth.flags.values())
    assert all(by_rule[rule] > 0 for rule in RULES), by_rule


@pytest.mark.parametrize(
    ("seed", "malformed_rate", "mix"),
    [(3, 0.005, DEFAULT_MIX), (4, 0.2, DEFAULT_MIX), (5, 0.01, RELABEL_HEAVY)],
    ids=["default", "malformed-heavy", "relabel-heavy"],
)
def test_replay_agrees_with_ground_truth(
    seed: int, malformed_rate: float, mix: tuple[tuple[str, float], ...], tmp_path: Path
) -> None:
    lines, truth = simulate(
        SimulationSpec(consignments=3000, seed=seed, malformed_rate=malformed_rate, mix=mix)
    )
    assert sum(r["rule"] == "transit-to-ru" for r in truth.flags.values()) > 300
    check_agreement(lines, truth, tmp_path)
