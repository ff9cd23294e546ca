"""The chaos suite's workload: simulated crossings, planted poison, and what must come out.

The simulator is imported here and nowhere else in the suite, so a move of the module is a
one-line change.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass
from typing import Any

import orjson

from bordermon.core import DetectionConfig, load_watchlist
from bordermon.replay import replay
from bordermon.simulate import SimulationSpec, simulate

CONFIG = DetectionConfig(watchlist=load_watchlist(["builtin:chpl"]))
"""The worker's detection settings (its defaults: window 30 days, the builtin CHPL list)."""
POISON_PREFIX = "poison"
"""support/faulty_workers/poisoned_worker.py fails to apply events whose id starts with this."""


@dataclass(frozen=True)
class Workload:
    lines: list[bytes]
    """What is published, in order, one Kafka message per line."""
    expected_reasons: dict[bytes, str]
    """Dead-letter reason of every line that must be dead-lettered (malformed and poison)."""
    poison: list[bytes]
    expected_flags: dict[str, dict[str, Any]]
    """flag_id -> the flag replay raises over the non-poison lines."""
    consignments: int
    malformed: int


def build(consignments: int, seed: int, poison: int, malformed_rate: float) -> Workload:
    """Simulated lines with `poison` valid events turned into poison (their event_id renamed),
    and the flags that `replay` raises over everything else."""
    spec = SimulationSpec(consignments=consignments, seed=seed, malformed_rate=malformed_rate)
    lines, truth = simulate(spec)
    reasons = {lines[m["line"] - 1]: m["reason"] for m in truth.malformed.values()}
    rng = random.Random(seed)
    candidates = [n for n, line in enumerate(lines) if line not in reasons]
    planted: list[bytes] = []
    for number in sorted(rng.sample(candidates, min(poison, len(candidates)))):
        doc = orjson.loads(lines[number])
        doc["event_id"] = f"{POISON_PREFIX}-{seed}-{number}"
        lines[number] = orjson.dumps(doc)
        planted.append(lines[number])
        reasons[lines[number]] = "internal_error"
    poison_set = set(planted)
    out = io.BytesIO()
    replay(io.BytesIO(b"\n".join(x for x in lines if x not in poison_set) + b"\n"), out, CONFIG)
    expected = {f["flag_id"]: f for f in map(orjson.loads, out.getvalue().splitlines())}
    return Workload(
        lines, reasons, planted, expected, len(truth.consignments), len(truth.malformed)
    )
