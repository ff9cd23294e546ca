"""`replay` of a simulated file agrees with the simulator's ground truth.

The simulator computes its truth from the events it generated, by brute force over pairs and
without importing the core, so agreement here is two independent readings of SPEC §4.
"""

from __future__ import annotations

import io

import orjson
import pytest

from bordermon.core import DetectionConfig, load_watchlist
from bordermon.core.pipeline import Reject
from bordermon.replay import replay
from bordermon.simulate import SimulationSpec, simulate


@pytest.mark.parametrize(
    ("seed", "malformed_rate"), [(3, 0.005), (4, 0.2)], ids=["default", "malformed-heavy"]
)
def test_replay_agrees_with_ground_truth(seed: int, malformed_rate: float) -> None:
    lines, truth = simulate(
        SimulationSpec(consignments=3000, seed=seed, malformed_rate=malformed_rate)
    )
    rejects: list[Reject] = []
    out = io.BytesIO()
    result = replay(
        io.BytesIO(b"\n".join(lines) + b"\n"),
        out,
        DetectionConfig(watchlist=load_watchlist(["builtin:chpl"])),
        on_reject=rejects.append,
    )
    flags = {f["consignment_id"]: f for f in map(orjson.loads, out.getvalue().splitlines())}

    expected = {cid for cid, record in truth.consignments.items() if record["flagged"]}
    assert len(expected) > 300
    assert set(flags) == expected
    for cid in expected:
        assert flags[cid]["severity"] == truth.consignments[cid]["severity"], cid
    assert {r.message.position: r.reason for r in rejects} == {
        line: record["reason"] for line, record in truth.malformed.items()
    }
    assert result.tally.read == len(lines)
    assert len(out.getvalue().splitlines()) == len(flags)  # one flag per consignment
