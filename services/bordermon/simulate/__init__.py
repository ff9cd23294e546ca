"""Write realistic synthetic border-crossing events (crossing/1, JSONL), reproducible from a seed,
and the ground truth of SPEC section 4 for them.

Consignments follow patterns that the three rules must get right. transit-to-ru: straight
transit and warehouse re-export to Russia (flagged), slow dwell, Kazakh exports, Russian goods
returning to Russia, other destinations (not flagged), re-entries, and window-boundary cases
written with different UTC offsets. relabel-to-ru: goods that enter under one consignment and
leave for Russia under another with the same container, seal or goods batch, spelled another
way, beyond or exactly at the window, without a shared HS-6, or through a container reused for
unrelated goods. export-without-permit: listed dual-use goods leaving for Russia with and
without a permit. Lines arrive out of event-time order within a bounded lateness; some are
re-sent duplicates and a few are malformed on purpose.

The truth (`--truth FILE`, JSONL; format in `bordermon.simulate.truth`) lists every expected flag
with its flag_id, rule, severity and reported events, and every malformed line with its reject
reason. It is computed by brute force from the lines as written, in file order, without
importing the detection code (`bordermon.core`): two independent readings of the SPEC.

Modules: `spec` (SimulationSpec, patterns, mix), `reference` (CHPL, checkpoints, geography),
`ids` (event, consignment, container, seal, batch and permit ids), `patterns` (what happens to
the goods, as plans of scans), `scan` (one scan as JSON), `feed` (delivery order, lateness,
duplicates), `malformed` (lines broken on purpose), `truth` (the ground truth), `generator`
(the run). The command line is `bordermon.cli.simulate` (`bordermon simulate`).
"""

from bordermon.simulate.generator import generate, simulate
from bordermon.simulate.spec import DEFAULT_MIX, DEFAULT_START, PATTERNS, SimulationSpec
from bordermon.simulate.truth import (
    RULES,
    ConsignmentTruth,
    FlagTruth,
    GroundTruth,
    MalformedTruth,
    TruthRecord,
    flag_id,
)

__all__ = [
    "DEFAULT_MIX",
    "DEFAULT_START",
    "PATTERNS",
    "RULES",
    "ConsignmentTruth",
    "FlagTruth",
    "GroundTruth",
    "MalformedTruth",
    "SimulationSpec",
    "TruthRecord",
    "flag_id",
    "generate",
    "simulate",
]
