"""Write realistic synthetic border-crossing events (crossing/1, JSONL), reproducible from a seed.

Consignments follow patterns that the transit-to-ru rule must get right: straight transit and
warehouse re-export to Russia (flagged), slow dwell, Kazakh exports, Russian goods returning to
Russia, other destinations (not flagged), re-entries, and window-boundary cases written with
different UTC offsets. Lines arrive out of event-time order within a bounded lateness; some are
re-sent duplicates and a few are malformed on purpose. --truth writes, per consignment, whether
SPEC section 4 flags it and at which severity, and, per malformed line, its expected reject reason;
the truth is computed from the generated events alone, independently of the detection code.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import csv
import gc
import heapq
import io
import itertools
import math
import os
import random
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import IO, Any, Final, NamedTuple, TypedDict, cast

import orjson

from bordermon.progress import Progress

__all__ = [
    "DEFAULT_MIX",
    "DEFAULT_START",
    "PATTERNS",
    "ConsignmentTruth",
    "GroundTruth",
    "MalformedTruth",
    "SimulationSpec",
    "TruthRecord",
    "configure_parser",
    "generate",
    "main",
    "run",
    "simulate",
]

# --- public types -----------------------------------------------------------------------------

PATTERNS: Final[tuple[str, ...]] = (
    "transit",  # entry from a non-Russian origin, exit to RU 1-7 days later: flagged
    "re-export",  # warehouse dwell of 8 days up to the window, then exit to RU: flagged
    "slow",  # dwell longer than the window before the exit to RU: not flagged
    "boundary",  # dwell exactly the window (flagged), window + 1 s / + 1 ms (not), 0 s, -1 s
    "export-only",  # Kazakh goods leaving, no entry at all: not flagged
    "ru-return",  # Russian goods crossing Kazakhstan back into Russia: not flagged
    "other-destination",  # entry, then exit to KG, UZ, CN, AZ...: not flagged
    "re-entry",  # several entries and exits; flagged or not, per the events
    "import-only",  # goods that enter and stay: not flagged
)

#: Default pattern weights: mostly ordinary traffic, enough of every edge case to test on.
DEFAULT_MIX: Final[tuple[tuple[str, float], ...]] = (
    ("transit", 0.22),
    ("re-export", 0.12),
    ("slow", 0.06),
    ("boundary", 0.04),
    ("export-only", 0.14),
    ("ru-return", 0.08),
    ("other-destination", 0.12),
    ("re-entry", 0.07),
    ("import-only", 0.15),
)

#: Fixed default start, so that a run without --start is reproducible (no wall clock).
DEFAULT_START: Final[datetime] = datetime(2024, 3, 1, tzinfo=UTC)
_EARLIEST: Final = datetime(1970, 1, 2, tzinfo=UTC)
_LATEST: Final = datetime(9000, 1, 1, tzinfo=UTC)


class ConsignmentTruth(TypedDict):
    """What SPEC section 4 says about one consignment, over all of its generated events."""

    consignment_id: str
    pattern: str
    flagged: bool
    severity: str


class MalformedTruth(TypedDict):
    """One malformed output line: its 1-based line number and the SPEC reject reason."""

    line: int
    reason: str
    kind: str  # which mutation made it (for debugging; not a SPEC reason)


TruthRecord = ConsignmentTruth | MalformedTruth


@dataclass(frozen=True, slots=True)
class SimulationSpec:
    """Everything that determines the output: equal specs give byte-identical output.

    `consignments` and `events` are both limits; generation stops at the first one reached
    (`events` is an approximate target of output lines, including duplicates and malformed
    lines). Rates are probabilities per emitted valid line. Times are in seconds.
    """

    consignments: int | None = 1000
    events: int | None = None
    seed: int = 42
    start: datetime = DEFAULT_START
    mix: tuple[tuple[str, float], ...] = DEFAULT_MIX
    duplicate_rate: float = 0.02
    malformed_rate: float = 0.005
    max_lateness_s: float = 2 * 86_400.0
    late_share: float = 0.12
    mean_interval_s: float = 60.0
    window_days: int = 30
    schema_omitted_rate: float = 0.15

    def __post_init__(self) -> None:
        if self.consignments is None and self.events is None:
            raise ValueError("give consignments or events (or both)")
        for name in ("consignments", "events"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or value < 0):
                raise ValueError(f"{name} must be >= 0")
        if self.start.tzinfo is None or self.start.utcoffset() is None:
            raise ValueError("start must carry a UTC offset")
        if not _EARLIEST <= self.start <= _LATEST:  # RFC 3339 years have four digits
            raise ValueError("start must be between 1970 and 9000")
        for name in ("duplicate_rate", "malformed_rate", "late_share", "schema_omitted_rate"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1)")
        if not (math.isfinite(self.max_lateness_s) and self.max_lateness_s >= 0):
            raise ValueError("max_lateness_s must be >= 0")
        if not (math.isfinite(self.mean_interval_s) and self.mean_interval_s > 0):
            raise ValueError("mean_interval_s must be > 0")
        if not 1 <= self.window_days <= 3650:
            raise ValueError("window_days must be in 1..3650")
        seen = set()
        for name, weight in self.mix:
            if name not in PATTERNS:
                raise ValueError(f"unknown pattern {name!r} (known: {', '.join(PATTERNS)})")
            if name in seen:
                raise ValueError(f"pattern {name!r} given twice")
            seen.add(name)
            if not (math.isfinite(weight) and weight >= 0):
                raise ValueError(f"weight of {name!r} must be >= 0")
        if not any(weight > 0 for _, weight in self.mix):
            raise ValueError("the pattern mix needs at least one positive weight")


@dataclass(slots=True)
class GroundTruth:
    """An in-memory truth sink for tests and small runs: pass `truth.add` to `generate`."""

    consignments: dict[str, ConsignmentTruth] = field(default_factory=dict)
    malformed: dict[int, MalformedTruth] = field(default_factory=dict)

    def add(self, record: TruthRecord) -> None:
        if "line" in record:
            malformed = cast(MalformedTruth, record)
            self.malformed[malformed["line"]] = malformed
        else:
            self.consignments[record["consignment_id"]] = record


def generate(
    spec: SimulationSpec, on_truth: Callable[[TruthRecord], None] | None = None
) -> Iterator[bytes]:
    """Yield output lines (bytes, no newline) in delivery order; report truth to `on_truth`.

    Streaming: only consignments still "in flight" (events not yet delivered) are held, so a
    million events need a few tens of MB. A consignment's truth is reported when it is generated,
    i.e. before its lines are yielded; a malformed line's truth just before it is yielded.
    """
    return _Generator(spec, on_truth).lines()


def simulate(spec: SimulationSpec) -> tuple[list[bytes], GroundTruth]:
    """Generate everything in memory: convenient for tests, not for millions of events."""
    truth = GroundTruth()
    lines = list(generate(spec, truth.add))
    return lines, truth


# --- reference data ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Checkpoint:
    code: str
    neighbour: str  # ISO code of the country across the border, "*" for airports
    mode: str
    offsets: tuple[tuple[int, str], ...] = ()  # UTC offsets its scanners write
    scanner_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class _Item:
    hs6: str
    description: str
    unit: str
    price: tuple[float, float]  # plausible value per line, USD


@dataclass(frozen=True, slots=True)
class _Reference:
    by_neighbour: dict[str, tuple[_Checkpoint, ...]]
    tiers: dict[str, str]  # hs6 -> CHPL tier
    high: tuple[_Item, ...]  # tier 1, 2
    medium: tuple[_Item, ...]  # tier 3.A, 3.B, 4.A, 4.B


def _read_data(name: str) -> str:
    """Read a reference file shipped in bordermon/core/data, wherever the package lives.

    The files are package data of `bordermon` itself (see pyproject.toml), so they are reached
    from the top-level package: importing `bordermon.core` would load the detection code, which
    the simulator must stay independent of (and must keep working while it is being changed).
    """
    try:
        from importlib.resources import files

        return (files("bordermon") / "core" / "data" / name).read_text(encoding="utf-8")
    except (ImportError, OSError, TypeError, ValueError):
        return (Path(__file__).resolve().parents[1] / "core" / "data" / name).read_text(
            encoding="utf-8"
        )


# Short declared descriptions, as a broker would type them; others fall back to the list's text.
_PRODUCT_NAMES: Final[dict[str, str]] = {
    "854231": "microcontrollers STM32F4",
    "854232": "DRAM DDR4 8Gb chips",
    "854233": "RF amplifier ICs",
    "854239": "FPGA Xilinx Artix-7",
    "851762": "network switches 24-port",
    "852691": "GNSS receiver modules",
    "853221": "tantalum capacitors",
    "853224": "MLCC capacitors 0402",
    "854800": "electrical parts n.e.s.",
    "847150": "server processing units",
    "850440": "DC-DC converters",
    "851769": "radio modems",
    "852589": "thermal imaging cameras",
    "852910": "antennas",
    "853690": "board connectors",
    "854110": "diodes",
    "854121": "transistors <1W",
    "854129": "power MOSFETs",
    "848210": "ball bearings",
    "848220": "tapered roller bearings",
    "880730": "UAV parts",
    "901380": "optical instruments",
    "901420": "aeronautical navigation units",
    "847180": "storage units",
    "853400": "printed circuit boards",
    "854320": "signal generators",
    "903020": "oscilloscopes",
    "845710": "CNC machining centres",
    "845811": "CNC lathes",
    "846693": "machine tool parts",
}

# Goods off the list, some of them near misses of listed codes (same heading, other subheading).
_LOW_ITEMS: Final[tuple[_Item, ...]] = (
    _Item("610910", "cotton T-shirts", "pcs", (2_000, 60_000)),
    _Item("640399", "leather footwear", "pcs", (5_000, 80_000)),
    _Item("870323", "passenger cars 1.5-3.0L", "pcs", (20_000, 400_000)),
    _Item("870899", "vehicle parts", "kg", (1_000, 90_000)),
    _Item("847130", "laptops", "pcs", (10_000, 300_000)),
    _Item("851712", "smartphones", "pcs", (20_000, 500_000)),
    _Item("854290", "parts of integrated circuits", "kg", (500, 20_000)),
    _Item("854141", "LED emitters", "pcs", (500, 30_000)),
    _Item("848180", "valves and taps", "pcs", (1_000, 40_000)),
    _Item("940360", "wooden furniture", "pcs", (2_000, 50_000)),
    _Item("392690", "plastic articles", "kg", (500, 20_000)),
    _Item("852872", "LCD televisions", "pcs", (5_000, 150_000)),
    _Item("841810", "refrigerators", "pcs", (5_000, 120_000)),
    _Item("401110", "car tyres", "pcs", (3_000, 80_000)),
    _Item("300490", "medicaments, packaged", "kg", (2_000, 200_000)),
    _Item("090230", "black tea", "kg", (1_000, 30_000)),
    _Item("080810", "apples", "kg", (1_000, 25_000)),
    _Item("730890", "steel structures", "kg", (5_000, 100_000)),
)

_KZ_EXPORT_ITEMS: Final[tuple[_Item, ...]] = (
    _Item("100199", "wheat", "kg", (20_000, 400_000)),
    _Item("740311", "refined copper cathodes", "kg", (50_000, 900_000)),
    _Item("720241", "ferrochromium", "kg", (30_000, 600_000)),
    _Item("260300", "copper ores and concentrates", "kg", (40_000, 800_000)),
    _Item("271012", "light petroleum oils", "kg", (20_000, 500_000)),
    _Item("110100", "wheat flour", "kg", (5_000, 120_000)),
    _Item("760110", "unwrought aluminium", "kg", (30_000, 500_000)),
)


@cache
def _reference() -> _Reference:
    by_neighbour: dict[str, list[_Checkpoint]] = {}
    for row in csv.DictReader(io.StringIO(_read_data("checkpoints.csv"))):
        code, neighbour = row["code"].strip(), row["neighbour"].strip()
        point = _Checkpoint(
            code,
            neighbour,
            row["mode"].strip(),
            _OFFSETS.get(neighbour, _OFFSETS["*"]),
            tuple(f"{code}-{bank}{unit}" for bank in "ABC" for unit in range(1, 10)),
        )
        by_neighbour.setdefault(neighbour, []).append(point)
    tiers: dict[str, str] = {}
    high: list[_Item] = []
    medium: list[_Item] = []
    for row in csv.DictReader(io.StringIO(_read_data("chpl.csv"))):
        hs6, tier = row["hs6"].strip(), row["tier"].strip()
        tiers[hs6] = tier
        text = _PRODUCT_NAMES.get(hs6) or row["description"].split(":")[0].split(",")[0][:40]
        item = _Item(hs6, text, "pcs", (1_000, 250_000))
        (high if tier in ("1", "2") else medium).append(item)
    if "*" not in by_neighbour:  # every non-neighbour route falls back to an airport
        by_neighbour["*"] = [
            _Checkpoint("KZ-ALMATY-AIR", "*", "air", _OFFSETS["*"], ("KZ-ALMATY-AIR-A1",))
        ]
    return _Reference(
        {key: tuple(value) for key, value in by_neighbour.items()},
        tiers,
        tuple(high),
        tuple(medium),
    )


def _severity(codes: Sequence[str], tiers: dict[str, str]) -> str:
    """SPEC section 4 severity: list codes are 6 digits, so a prefix match is a lookup of [:6]."""
    severity = "low"
    for code in codes:
        tier = tiers.get(code[:6])
        if tier in ("1", "2"):
            return "high"
        if tier is not None:
            severity = "medium"
    return severity


# --- geography --------------------------------------------------------------------------------

MONITORED: Final = "KZ"
CONCERN: Final = "RU"

# Origins of goods entering Kazakhstan (not Russia), weighted.
_ORIGINS: Final[tuple[tuple[str, int], ...]] = (
    ("CN", 40), ("TR", 10), ("AE", 7), ("DE", 6), ("KR", 6), ("IT", 3), ("PL", 3), ("JP", 3),
    ("IN", 3), ("US", 2), ("GB", 2), ("FR", 2), ("NL", 2), ("CZ", 2), ("VN", 2), ("KG", 2),
    ("UZ", 2),
)  # fmt: skip
# Destinations of exits other than Russia, weighted.
_OTHER_DESTINATIONS: Final[tuple[tuple[str, int], ...]] = (
    ("KG", 25), ("UZ", 25), ("CN", 15), ("AZ", 8), ("TM", 5), ("TR", 5), ("AE", 5), ("TJ", 4),
    ("MN", 3), ("DE", 3), ("AF", 2),
)  # fmt: skip
# How goods from a country that is not a neighbour reach a Kazakh checkpoint: the neighbour
# whose checkpoints they use ("*" = airport). Middle-Corridor goods come by sea over the Caspian.
_ROUTES: Final[dict[str, tuple[str, ...]]] = {
    "TR": ("AZ", "AZ", "*"), "DE": ("AZ", "*"), "IT": ("AZ", "*"), "PL": ("AZ", "*"),
    "FR": ("AZ", "*"), "NL": ("AZ", "*"), "CZ": ("AZ", "*"), "GB": ("*", "AZ"),
    "KR": ("CN", "CN", "*"), "JP": ("CN", "*"), "VN": ("CN",), "AE": ("*", "*", "AZ"),
    "IN": ("*",), "US": ("*",), "TJ": ("UZ", "KG"), "MN": ("CN", "*"), "AF": ("UZ", "TM"),
}  # fmt: skip

# UTC offsets (minutes, text) a scanner may write; the instant is what matters.
_OFFSETS: Final[dict[str, tuple[tuple[int, str], ...]]] = {
    "CN": ((300, "+05:00"), (300, "+05:00"), (360, "+06:00"), (480, "+08:00"), (0, "Z")),
    "RU": ((300, "+05:00"), (300, "+05:00"), (180, "+03:00"), (240, "+04:00"), (0, "Z")),
    "KG": ((360, "+06:00"), (300, "+05:00"), (0, "Z")),
    "UZ": ((300, "+05:00"), (300, "+05:00"), (0, "Z")),
    "TM": ((300, "+05:00"),),
    "AZ": ((300, "+05:00"), (240, "+04:00"), (0, "+00:00")),
    "*": ((300, "+05:00"), (360, "+06:00"), (0, "Z"), (0, "+00:00")),
}
_ALL_OFFSETS: Final[tuple[tuple[int, str], ...]] = (
    (0, "Z"), (300, "+05:00"), (360, "+06:00"), (180, "+03:00"), (240, "+04:00"), (480, "+08:00"),
)  # fmt: skip

_SECOND: Final = 1_000_000  # all times are integer microseconds since the epoch: exact arithmetic
_HOUR: Final = 3600 * _SECOND
_DAY: Final = 86_400 * _SECOND


def _cumulative(weights: Sequence[tuple[str, float]]) -> tuple[tuple[str, ...], list[float]]:
    names = tuple(name for name, _ in weights)
    return names, list(itertools.accumulate(weight for _, weight in weights))


_ORIGIN_NAMES, _ORIGIN_CUM = _cumulative(_ORIGINS)
_DEST_NAMES, _DEST_CUM = _cumulative(_OTHER_DESTINATIONS)


def _format_hs(digits: str, style: int) -> str:
    """Write an HS code as brokers do: 85423190, 8542.31.90 or 8542 31 90 (same digits)."""
    if style == 0:
        return digits
    parts = [digits[:4], digits[4:6]]
    if len(digits) > 6:
        parts.append(digits[6:8])
    if len(digits) > 8:
        parts.append(digits[8:])
    return ("." if style == 1 else " ").join(parts)


# --- generation -------------------------------------------------------------------------------


class _Leg(NamedTuple):
    t: int  # instant, microseconds since the epoch (UTC)
    entry: bool
    country: str  # the other side: from_country of an entry, to_country of an exit
    exact: bool = False  # True: keep t as is (no sub-second jitter), boundary cases
    offset: tuple[int, str] | None = None  # forced offset (boundary cases)
    force_fraction: bool = False


def _is_flagged(legs: Sequence[_Leg], window_us: int) -> bool:
    """SPEC section 4 by brute force over all (entry, exit) pairs of the consignment."""
    for e in legs:
        if not e.entry or e.country == CONCERN:
            continue
        for x in legs:
            if not x.entry and x.country == CONCERN and 0 <= x.t - e.t <= window_us:
                return True
    return False


class _Generator:
    """One run: a seeded RNG, a delivery-time heap of pending lines, and counters.

    Hot paths draw only `random()` and scale it (`int(r() * n)`): several times cheaper than
    randrange/choice, and just as deterministic for a given seed.
    """

    def __init__(self, spec: SimulationSpec, on_truth: Callable[[TruthRecord], None] | None):
        self.spec = spec
        self.on_truth = on_truth
        self.rng = random.Random(spec.seed)
        self.r = self.rng.random
        self.ref = _reference()
        self.window = spec.window_days * _DAY
        self.max_lateness = round(spec.max_lateness_s * _SECOND)
        self.pattern_names, self.pattern_cum = _cumulative(spec.mix)
        # (delivery time, sequence, line, is_duplicate): the sequence breaks ties
        # deterministically and keeps bytes from ever being compared.
        self.heap: list[tuple[int, int, bytes, bool]] = []
        self.seq = 0
        self.line_no = 0
        self.valid_events = 0
        self.hours: dict[int, str] = {}  # local hour number -> "YYYY-MM-DDTHH:" (a cache)
        self.builders: dict[str, Callable[[int], list[_Leg]]] = {
            "transit": self._transit,
            "re-export": self._reexport,
            "slow": self._slow,
            "boundary": self._boundary,
            "export-only": self._export_only,
            "ru-return": self._ru_return,
            "other-destination": self._other_destination,
            "re-entry": self._reentry,
            "import-only": self._import_only,
        }

    # -- driver ---------------------------------------------------------------------------------

    def lines(self) -> Iterator[bytes]:
        spec = self.spec
        t = int(spec.start.timestamp()) * _SECOND  # consignments start on whole seconds
        limit = spec.consignments if spec.consignments is not None else sys.maxsize
        # Expected output lines per generated valid event, to stop near an --events target.
        expansion = (1 + spec.duplicate_rate) * (1 + spec.malformed_rate)
        target = spec.events
        rate = 1.0 / spec.mean_interval_s
        for number in range(limit):
            if target is not None and self.valid_events * expansion >= target:
                break
            t += max(1, round(self.rng.expovariate(rate))) * _SECOND
            # Every later consignment's events lie at or after t, and delivery >= event time,
            # so whatever is due by t can be written now: this keeps the heap small.
            if self.heap and self.heap[0][0] <= t:
                yield from self._deliver(t)
            self._consignment(number, t)
        yield from self._deliver(None)

    def _deliver(self, until: int | None) -> Iterator[bytes]:
        heap = self.heap
        r = self.r
        malformed_rate = self.spec.malformed_rate
        duplicate_rate = self.spec.duplicate_rate
        max_delay = max(2 * _SECOND, self.max_lateness, _HOUR)
        while heap and (until is None or heap[0][0] <= until):
            delivery, _, line, duplicate = heapq.heappop(heap)
            if not duplicate:
                if r() < malformed_rate:
                    self.line_no += 1
                    bad, reason, kind = self._malformed(line)
                    if self.on_truth is not None:
                        self.on_truth(MalformedTruth(line=self.line_no, reason=reason, kind=kind))
                    yield bad
                if r() < duplicate_rate:  # re-sent later, byte for byte
                    self._push(delivery + _SECOND + int(r() * max_delay), line, True)
            self.line_no += 1
            yield line

    def _push(self, delivery: int, line: bytes, duplicate: bool) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (delivery, self.seq, line, duplicate))

    # -- one consignment -------------------------------------------------------------------------

    def _consignment(self, number: int, t0: int) -> None:
        r = self.r
        cum = self.pattern_cum
        pattern = self.pattern_names[bisect.bisect_right(cum, r() * cum[-1])]
        legs = [self._jitter(leg) for leg in self.builders[pattern](t0)]
        consignment_id = self._consignment_id(number)
        codes, rendered = self._goods(pattern)
        if self.on_truth is not None:
            self.on_truth(
                ConsignmentTruth(
                    consignment_id=consignment_id,
                    pattern=pattern,
                    flagged=_is_flagged(legs, self.window),
                    severity=_severity(codes, self.ref.tiers),
                )
            )
        dumps = orjson.dumps
        heap, heappush = self.heap, heapq.heappush
        late_share = self.spec.late_share
        short_lateness = min(self.max_lateness, 120 * _SECOND)
        for leg in legs:
            # Now and then another clerk writes the same codes another way (8542.31 vs 854231).
            this_goods = self._restyled(codes, rendered) if r() < 0.1 else rendered
            # orjson's result keeps a 4 KiB buffer; a compact copy makes pending lines ~10x smaller.
            line = bytes(memoryview(dumps(self._event(consignment_id, leg, this_goods))))
            # Lateness: most scanners publish within two minutes; a share buffer for longer.
            bound = self.max_lateness if r() < late_share else short_lateness
            self.seq += 1
            heappush(heap, (leg.t + int(r() * (bound + 1)), self.seq, line, False))
        self.valid_events += len(legs)

    def _consignment_id(self, number: int) -> str:
        r = self.r
        if r() < 0.03:  # any Unicode but controls is allowed: use it
            return f"ГРУЗ-{number:07d}-{int(r() * 46656):03x}"
        return f"CSG-{number:07d}-{int(r() * 65536):04X}"

    def _jitter(self, leg: _Leg) -> _Leg:
        """Give a share of scans sub-second precision (ms or us), except exact boundary legs."""
        r = self.r
        if leg.exact or r() >= 0.12:
            return leg
        if r() < 0.7:
            return _Leg(leg.t + (1 + int(r() * 999)) * 1000, leg.entry, leg.country)
        return _Leg(leg.t + 1 + int(r() * (_SECOND - 1)), leg.entry, leg.country)

    def _uniform(self, low: int, high: int) -> int:
        """A whole-second offset in [low, high] (microseconds in, microseconds out).

        With a short window a range can come out empty (high < low): then it is just low.
        """
        low_s = low // _SECOND
        span = max(0, high // _SECOND - low_s)
        return (low_s + int(self.r() * (span + 1))) * _SECOND

    def _pick(self, items: Sequence[Any]) -> Any:
        return items[int(self.r() * len(items))]

    def _origin(self) -> str:
        return _ORIGIN_NAMES[bisect.bisect_right(_ORIGIN_CUM, self.r() * _ORIGIN_CUM[-1])]

    def _other_destination_country(self) -> str:
        return _DEST_NAMES[bisect.bisect_right(_DEST_CUM, self.r() * _DEST_CUM[-1])]

    # -- patterns: each returns legs at or after t0 ------------------------------------------

    def _transit(self, t0: int) -> list[_Leg]:
        dwell = self._uniform(_DAY, min(7 * _DAY, self.window - _HOUR))
        return [_Leg(t0, True, self._origin()), _Leg(t0 + dwell, False, CONCERN)]

    def _reexport(self, t0: int) -> list[_Leg]:
        low = min(8 * _DAY, self.window // 2)
        dwell = self._uniform(low, self.window - _HOUR)
        legs = [_Leg(t0, True, self._origin()), _Leg(t0 + dwell, False, CONCERN)]
        if self.r() < 0.2:  # part of the lot left earlier for a neighbour
            legs.append(_Leg(t0 + dwell // 2, False, self._other_destination_country()))
        return legs

    def _slow(self, t0: int) -> list[_Leg]:
        dwell = self._uniform(self.window + _HOUR, self.window + 45 * _DAY)
        return [_Leg(t0, True, self._origin()), _Leg(t0 + dwell, False, CONCERN)]

    def _boundary(self, t0: int) -> list[_Leg]:
        """Dwell right at the edges of [0, window], with the two scans in different offsets."""
        entry_offset = self._pick(_ALL_OFFSETS)
        exit_offset = self._pick([o for o in _ALL_OFFSETS if o[1] != entry_offset[1]])
        fraction = self.r() < 0.3
        entry_t = t0 + (250_000 if fraction else 0) + self._uniform(0, 12 * _HOUR)
        delta: int = self._pick(
            (
                self.window,  # exactly the window: flagged (inclusive)
                self.window,
                self.window + _SECOND,  # one second too late: not flagged
                self.window + _SECOND,
                self.window + 1000,  # one millisecond too late: not flagged
                self.window - _SECOND,  # one second inside: flagged
                0,  # same instant: flagged (inclusive at 0)
                -_SECOND,  # exit one second before the entry: not flagged
            )
        )
        if delta < 0:  # keep every leg at or after t0
            entry_t += _SECOND
        return [
            _Leg(entry_t, True, self._origin(), True, entry_offset, fraction),
            _Leg(entry_t + delta, False, CONCERN, True, exit_offset, fraction),
        ]

    def _export_only(self, t0: int) -> list[_Leg]:
        r = self.r
        first = CONCERN if r() < 0.55 else self._other_destination_country()
        legs = [_Leg(t0, False, first)]
        if r() < 0.2:
            second = CONCERN if first != CONCERN else self._other_destination_country()
            legs.append(_Leg(t0 + self._uniform(_HOUR, 10 * _DAY), False, second))
        return legs

    def _ru_return(self, t0: int) -> list[_Leg]:
        dwell = self._uniform(_HOUR, min(20 * _DAY, self.window))
        return [_Leg(t0, True, CONCERN), _Leg(t0 + dwell, False, CONCERN)]

    def _other_destination(self, t0: int) -> list[_Leg]:
        dwell = self._uniform(_HOUR, min(25 * _DAY, self.window))
        return [
            _Leg(t0, True, self._origin()),
            _Leg(t0 + dwell, False, self._other_destination_country()),
        ]

    def _reentry(self, t0: int) -> list[_Leg]:
        """3-6 alternating crossings; goods often come back from where they went."""
        r = self.r
        legs: list[_Leg] = []
        t = t0
        entry = r() < 0.75
        previous: str | None = None
        for _ in range(3 + int(r() * 4)):
            if entry:
                if previous is not None and r() < 0.5:
                    country = previous
                elif r() < 0.15:
                    country = CONCERN
                else:
                    country = self._origin()
                legs.append(_Leg(t, True, country))
            else:
                previous = CONCERN if r() < 0.45 else self._other_destination_country()
                legs.append(_Leg(t, False, previous))
            entry = not entry
            t += self._uniform(12 * _HOUR, 25 * _DAY)
        return legs

    def _import_only(self, t0: int) -> list[_Leg]:
        r = self.r
        origin = CONCERN if r() < 0.1 else self._origin()
        legs = [_Leg(t0, True, origin)]
        if r() < 0.15:  # the second half of the lot
            legs.append(_Leg(t0 + self._uniform(_HOUR, 5 * _DAY), True, origin))
        return legs

    # -- goods -----------------------------------------------------------------------------------

    def _goods(self, pattern: str) -> tuple[list[str], list[dict[str, Any]]]:
        """1-5 lines; the whole consignment carries these same lines at every scan.

        Returns the codes' digits (for the truth's severity) and the lines as written.
        """
        r = self.r
        pick = self._pick
        ref = self.ref
        count = 1 + bisect.bisect_right(_GOODS_COUNT_CUM, r())  # mostly one line, up to 5
        if pattern == "export-only" and r() < 0.8:
            items = [pick(_KZ_EXPORT_ITEMS) for _ in range(count)]
        else:
            profile = r()
            items = [pick(_LOW_ITEMS) for _ in range(count)]
            if profile < 0.22:  # at least one tier 1/2 code
                items[int(r() * count)] = pick(ref.high)
                if count > 1 and r() < 0.5:
                    items[int(r() * count)] = pick(ref.medium + ref.high)
            elif profile < 0.47:  # at least one tier 3/4 code, none of tier 1/2
                items[int(r() * count)] = pick(ref.medium)
        codes = []
        lines = []
        for item in items:
            suffix = r()  # national subheadings: 6, 8 or 10 digits
            if suffix < 0.3:
                digits = item.hs6
            elif suffix < 0.75:
                digits = f"{item.hs6}{int(r() * 100):02d}"
            else:
                digits = f"{item.hs6}{int(r() * 10000):04d}"
            codes.append(digits)
            line: dict[str, Any] = {"hs_code": _format_hs(digits, self._hs_style())}
            if r() >= 0.08:
                line["description"] = item.description
            optional = r()
            if optional >= 0.05:
                low, high = item.price
                line["value_usd"] = 0 if r() < 0.02 else round(low + r() * (high - low), 2)
            if optional < 0.05 or optional >= 0.15:
                if item.unit == "pcs":
                    line["quantity"] = 1 + int(r() * 5000)
                else:
                    line["quantity"] = round(10 + r() * 20_000, 1)
                line["unit"] = item.unit
            lines.append(line)
        return codes, lines

    def _hs_style(self) -> int:
        """0: 85423190, 1: 8542.31.90, 2: 8542 31 90."""
        draw = self.r()
        return 0 if draw < 0.7 else 1 if draw < 0.9 else 2

    def _restyled(self, codes: list[str], lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The same lines with the codes written another way, as another clerk would."""
        return [
            {**line, "hs_code": _format_hs(digits, self._hs_style())}
            for digits, line in zip(codes, lines, strict=True)
        ]

    # -- one scan --------------------------------------------------------------------------------

    def _checkpoint(self, country: str) -> _Checkpoint:
        by_neighbour = self.ref.by_neighbour
        points = by_neighbour.get(country)
        if points is None:
            route = self._pick(_ROUTES.get(country, ("*",)))
            points = by_neighbour.get(route) or by_neighbour["*"]
        point: _Checkpoint = self._pick(points)
        return point

    def _event(self, consignment_id: str, leg: _Leg, goods: list[dict[str, Any]]) -> dict[str, Any]:
        r = self.r
        point = self._checkpoint(leg.country)
        offsets = point.offsets
        offset = leg.offset or offsets[int(r() * len(offsets))]
        if leg.entry:
            source, target = leg.country, MONITORED
        else:
            source, target = MONITORED, leg.country
        if r() < 0.01:  # lowercase codes are accepted and upper-cased
            source, target = source.lower(), target.lower()
        event: dict[str, Any] = {}
        if r() >= self.spec.schema_omitted_rate:
            event["schema"] = "crossing/1"
        event["event_id"] = self._uuid()
        event["consignment_id"] = consignment_id
        event["checkpoint"] = point.code
        event["from_country"] = source
        event["to_country"] = target
        event["observed_at"] = self._time(leg.t, offset, leg.force_fraction or r() < 0.02)
        event["goods"] = goods
        draw = r()
        if leg.entry and draw < 0.2:  # "for domestic use" or an EAEU neighbour, on paper
            event["declared_destination"] = self._pick(("KZ", "KZ", "KZ", "KG", "AM", "UZ"))
        elif not leg.entry and draw < 0.08:
            event["declared_destination"] = leg.country
        if r() < 0.6:
            event["transport"] = self._transport(point.mode)
        if r() < 0.4:
            scanners = point.scanner_ids
            event["scanner_id"] = scanners[int(r() * len(scanners))]
        if r() < 0.02:  # unknown fields are kept and ignored
            event.update(self._pick(_EXTRA_FIELDS))
        return event

    def _time(self, t_us: int, offset: tuple[int, str], force_fraction: bool) -> str:
        """RFC 3339 for instant `t_us` in local time at `offset`, exact to the microsecond.

        Seconds are always written; fractions only when the instant has them (3 or 6 digits,
        never losing precision) or when asked. The "YYYY-MM-DDTHH:" prefix is cached per local
        hour: formatting dates is a large share of the cost of a line.
        """
        seconds, micro = divmod(t_us + offset[0] * 60 * _SECOND, _SECOND)
        hour, rest = divmod(seconds, 3600)
        prefix = self.hours.get(hour)
        if prefix is None:
            if len(self.hours) > 100_000:
                self.hours.clear()
            tm = time.gmtime(hour * 3600)
            prefix = f"{tm.tm_year:04d}-{tm.tm_mon:02d}-{tm.tm_mday:02d}T{tm.tm_hour:02d}:"
            self.hours[hour] = prefix
        text = prefix + _MINUTES_SECONDS[rest]
        if micro % 1000:
            text += f".{micro:06d}"
        elif micro or force_fraction:
            text += f".{micro // 1000:03d}"
        return text + offset[1]

    def _uuid(self) -> str:
        """A version-4-shaped id from the seeded RNG (uuid4 would break reproducibility)."""
        h = f"{self.rng.getrandbits(128):032x}"
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"

    def _transport(self, mode: str) -> dict[str, Any]:
        r = self.r
        triples = _LETTER_TRIPLES
        n = len(triples)
        out: dict[str, Any] = {"mode": mode}
        if mode == "road":
            plate = triples[int(r() * n)]
            out["vehicle_id"] = f"{100 + int(r() * 900)}{plate}{1 + int(r() * 20):02d}"
            container = r() < 0.3
        elif mode == "rail":
            out["vehicle_id"] = f"{int(r() * 10**8):08d}"
            container = r() < 0.8
        elif mode == "sea":
            out["vehicle_id"] = f"IMO{9_000_000 + int(r() * 1_000_000)}"
            container = r() < 0.9
        else:
            out["vehicle_id"] = f"{self._pick(_AIRLINES)}{10 + int(r() * 990)}"
            container = r() < 0.3
        if container:
            out["container_id"] = f"{triples[int(r() * n)]}U{int(r() * 10**7):07d}"
        if r() < 0.5:
            out["seal_id"] = f"SL{int(r() * 10**7):07d}"
        return out

    # -- malformed lines ---------------------------------------------------------------------

    def _malformed(self, template: bytes) -> tuple[bytes, str, str]:
        """A line that breaks exactly one SPEC section 3 rule, made from a real event.

        The event gets a fresh event_id first, so a detector that wrongly accepted the line could
        not mistake it for a duplicate of the real scan.
        """
        event: dict[str, Any] = orjson.loads(template)
        event["event_id"] = self._uuid()
        kind = _MALFORMED_KINDS[bisect.bisect_right(_MALFORMED_CUM, self.r() * _MALFORMED_CUM[-1])]
        line, reason = _MUTATIONS[kind](event, self.rng)
        return line, reason, kind


_AIRLINES: Final = ("KC", "CZ", "TK", "EK", "LH")
_GOODS_COUNT_CUM: Final = (0.72, 0.88, 0.94, 0.97)  # P(1 line) = 72 %, ..., P(5 lines) = 3 %
_LETTERS: Final = "ABCDEFHKLMNPRSTUXZ"
_LETTER_TRIPLES: Final = tuple(a + b + c for a in _LETTERS for b in _LETTERS for c in _LETTERS)
# Precomputed text: formatting is a large share of the cost of a line.
_MINUTES_SECONDS: Final = tuple(f"{m:02d}:{s:02d}" for m in range(60) for s in range(60))
_VARIANT: Final = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}

_EXTRA_FIELDS: Final[tuple[dict[str, Any], ...]] = (
    {"x_scanner_firmware": "4.2.1"},
    {"operator_note": "re-scanned after seal check"},
    {"x_trace": {"gateway": "ala-gw-1", "hop": 2}},
    {"priority": None},
    {"images": ["img-0001.jpg", "img-0002.jpg"]},
)


# Each mutation takes a valid event (with a fresh event_id) and returns (line, reason). Each
# breaks one rule only, so the expected reason is unambiguous whatever order a validator checks in.
_Mutation = Callable[[dict[str, Any], random.Random], tuple[bytes, str]]


def _dumps(event: Any) -> bytes:
    return orjson.dumps(event)


def _entry_side(event: dict[str, Any]) -> tuple[str, str]:
    """(the monitored side's field, the other side's field) of a valid event."""
    if str(event["to_country"]).upper() == MONITORED:
        return "to_country", "from_country"
    return "from_country", "to_country"


def _truncated(event: dict[str, Any], rng: random.Random) -> tuple[bytes, str]:
    text = _dumps(event).decode()
    return text[: rng.randrange(1, len(text) - 1)].encode(), "invalid_json"


def _trailing_comma(event: dict[str, Any], rng: random.Random) -> tuple[bytes, str]:
    return _dumps(event)[:-1] + b",}", "invalid_json"


def _single_quotes(event: dict[str, Any], rng: random.Random) -> tuple[bytes, str]:
    return _dumps(event).replace(b'"', b"'"), "invalid_json"


def _two_objects(event: dict[str, Any], rng: random.Random) -> tuple[bytes, str]:
    return _dumps(event) + _dumps(event), "invalid_json"


def _noise(event: dict[str, Any], rng: random.Random) -> tuple[bytes, str]:
    return rng.choice((b"scanner 7 offline -- retrying", b"{", b"ok", b"<html>")), "invalid_json"


def _not_object(event: dict[str, Any], rng: random.Random) -> tuple[bytes, str]:
    value = rng.choice(([event], event["event_id"], 42, None, True, []))
    return _dumps(value), "not_an_object"


_REQUIRED: Final = (
    "event_id", "consignment_id", "checkpoint", "from_country", "to_country", "observed_at",
    "goods",
)  # fmt: skip


def _missing(event: dict[str, Any], rng: random.Random) -> tuple[bytes, str]:
    name = rng.choice(_REQUIRED)
    del event[name]
    return _dumps(event), f"missing_field:{name}"


def _bad_event_id(event: dict[str, Any], rng: random.Random) -> tuple[bytes, str]:
    event["event_id"] = rng.choice(("", "e" * 129, 12345))
    return _dumps(event), "invalid_field:event_id"


def _bad_consignment_id(event: dict[str, Any], rng: random.Random) -> tuple[bytes, str]:
    value = str(event["consignment_id"])
    event["consignment_id"] = rng.choice(("", value + "\u0007", value + "\n", "c" * 129, 7))
    return _dumps(event), "invalid_field:consignment_id"


def _bad_checkpoint(event: dict[str, Any], rng: random.Random) -> tuple[bytes, str]:
    event["checkpoint"] = rng.choice(("", "KZ-" + "X" * 62, ["KZ-DOSTYK"]))
    return _dumps(event), "invalid_field:checkpoint"


def _bad_country(event: dict[str, Any], rng: random.Random) -> tuple[bytes, str]:
    _, other = _entry_side(event)  # only the foreign side: the event stays a crossing
    event[other] = rng.choice(("XX", "EU", "UK", "RUS", "C1", "", "zz"))
    return _dumps(event), f"invalid_field:{other}"


def _bad_time(event: dict[str, Any], rng: random.Random) -> tuple[bytes, str]:
    text = str(event["observed_at"])
    bare = text[:-1] if text.endswith("Z") else text[:-6]
    choice = rng.randrange(6)
    if choice <= 1:
        value: Any = bare  # no offset
    elif choice == 2:
        value = text[:10]  # a date only
    elif choice == 3:
        value = text[:5] + "13" + text[7:]  # month 13
    elif choice == 4:
        value = 1_709_280_000  # epoch seconds, not a string
    else:
        # ISO 8601 basic offset "+0500", not RFC 3339 (which needs "+05:00")
        value = bare + "+0500"
    event["observed_at"] = value
    return _dumps(event), "invalid_field:observed_at"


def _bad_goods(event: dict[str, Any], rng: random.Random) -> tuple[bytes, str]:
    goods: list[dict[str, Any]] = [dict(line) for line in event["goods"]]
    line = goods[rng.randrange(len(goods))]
    choice = rng.randrange(12)
    if choice == 0:
        event["goods"] = []
        return _dumps(event), "invalid_field:goods"
    if choice == 1:
        event["goods"] = line["hs_code"]  # a string, not an array
        return _dumps(event), "invalid_field:goods"
    if choice == 2:
        event["goods"] = [{"hs_code": "854231"}] * 1001  # over the 1000-line limit
        return _dumps(event), "invalid_field:goods"
    if choice == 3:
        goods.append("854231")  # type: ignore[arg-type]  # a line that is not an object
    elif choice == 4:
        line["hs_code"] = "8542A1"
    elif choice == 5:
        line["hs_code"] = rng.choice(("85423", "8542.3", "8542 3"))
    elif choice == 6:
        line["hs_code"] = "85423190001"  # 11 digits
    elif choice == 7:
        line["hs_code"] = "8542-31"
    elif choice == 8:
        line["value_usd"] = -round(rng.uniform(1, 5000), 2)
    elif choice == 9:
        line["quantity"] = -rng.randint(1, 100)
    elif choice == 10:
        line["value_usd"] = rng.choice(("1200.50", True))  # a string or a boolean, not a number
    else:
        del line["hs_code"]
    event["goods"] = goods
    return _dumps(event), "invalid_field:goods"


def _bad_declared(event: dict[str, Any], rng: random.Random) -> tuple[bytes, str]:
    event["declared_destination"] = rng.choice(("XX", "EU", "KAZ", ""))
    return _dumps(event), "invalid_field:declared_destination"


def _bad_transport(event: dict[str, Any], rng: random.Random) -> tuple[bytes, str]:
    event["transport"] = rng.choice(({"mode": "hovercraft"}, "road", ["rail"], {"mode": 3}))
    return _dumps(event), "invalid_field:transport"


def _bad_scanner(event: dict[str, Any], rng: random.Random) -> tuple[bytes, str]:
    event["scanner_id"] = rng.choice(("", "S" * 65))
    return _dumps(event), "invalid_field:scanner_id"


def _bad_schema(event: dict[str, Any], rng: random.Random) -> tuple[bytes, str]:
    event["schema"] = rng.choice(("crossing/2", "crossing/2", "crossing/0", "flag/1", 1))
    return _dumps(event), "invalid_field:schema"


def _not_crossing(event: dict[str, Any], rng: random.Random) -> tuple[bytes, str]:
    home, other = _entry_side(event)
    if rng.random() < 0.5:  # both sides Kazakhstan (lowercase counts: it is upper-cased)
        event[other] = rng.choice(("KZ", "kz"))
    else:  # neither side: e.g. CN -> RU recorded at a Kazakh checkpoint
        foreign = str(event[other]).upper()
        event[home] = rng.choice([c for c in ("RU", "CN", "KG", "UZ", "TR") if c != foreign])
    return _dumps(event), "not_a_crossing"


def _too_large(event: dict[str, Any], rng: random.Random) -> tuple[bytes, str]:
    goods = [dict(line) for line in event["goods"]]
    goods[0]["description"] = "scanned manifest text " * 3200  # about 70 KB, over 64 KiB
    event["goods"] = goods
    return _dumps(event), "too_large"


_MUTATIONS: Final[dict[str, _Mutation]] = {
    "truncated": _truncated,
    "trailing-comma": _trailing_comma,
    "single-quotes": _single_quotes,
    "two-objects": _two_objects,
    "noise": _noise,
    "not-an-object": _not_object,
    "missing-field": _missing,
    "bad-event-id": _bad_event_id,
    "bad-consignment-id": _bad_consignment_id,
    "bad-checkpoint": _bad_checkpoint,
    "bad-country": _bad_country,
    "bad-observed-at": _bad_time,
    "bad-goods": _bad_goods,
    "bad-declared-destination": _bad_declared,
    "bad-transport": _bad_transport,
    "bad-scanner-id": _bad_scanner,
    "bad-schema": _bad_schema,
    "not-a-crossing": _not_crossing,
    "too-large": _too_large,
}
_MALFORMED_WEIGHTS: Final[tuple[tuple[str, float], ...]] = (
    ("truncated", 6), ("trailing-comma", 2), ("single-quotes", 1), ("two-objects", 1),
    ("noise", 1), ("not-an-object", 5), ("missing-field", 14), ("bad-event-id", 4),
    ("bad-consignment-id", 4), ("bad-checkpoint", 3), ("bad-country", 9), ("bad-observed-at", 10),
    ("bad-goods", 16), ("bad-declared-destination", 3), ("bad-transport", 3),
    ("bad-scanner-id", 2), ("bad-schema", 5), ("not-a-crossing", 8), ("too-large", 1),
)  # fmt: skip
_MALFORMED_KINDS, _MALFORMED_CUM = _cumulative(_MALFORMED_WEIGHTS)


# --- command line -----------------------------------------------------------------------------

_EPILOG = """\
Equal options give byte-identical output (default seed 42, default start 2024-03-01T00:00:00Z).
Lines are written in delivery order: out of event-time order within --max-lateness, with some
duplicates (the same line again) and some malformed lines. The truth file is JSONL:
  {"consignment_id": "...", "pattern": "transit", "flagged": true, "severity": "high"}
  {"line": 17, "reason": "invalid_field:goods", "kind": "bad-goods"}
Patterns (for --mix): transit, re-export, slow, boundary, export-only, ru-return,
other-destination, re-entry, import-only.

examples:
  bordermon simulate --consignments 1000 | bordermon replay
  bordermon simulate --events 1000000 --out scans.jsonl --truth truth.jsonl
  bordermon simulate --seed 7 --malformed-rate 0 --duplicate-rate 0 --mix transit=1,slow=1
  bordermon simulate --events 50000 --rate 200 | bordermon publish -
"""


class _ArgumentError(Exception):
    """A bad command-line value: reported as one line, exit 2."""


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Declare the `simulate` options. Values are parsed in `run`, to fail in one clear line."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = _EPILOG
    add = parser.add_argument
    add("--consignments", metavar="N", help="consignments to make (default 1000 if no --events)")
    add("--events", metavar="N", help="approximate number of output lines (first limit wins)")
    add("--seed", metavar="INT", default="42", help="random seed (default 42)")
    add("--out", metavar="FILE", default="-", help="write events to FILE (default: stdout)")
    add("--truth", metavar="FILE", help="write the ground truth as JSONL to FILE")
    add("--start", metavar="RFC3339", help="instant of the first consignment (default 2024-03-01Z)")
    add("--malformed-rate", metavar="P", default="0.005", help="share of malformed lines (0.005)")
    add("--duplicate-rate", metavar="P", default="0.02", help="share of lines re-sent (0.02)")
    add(
        "--max-lateness",
        metavar="DURATION",
        default="2d",
        help="how late a line may be delivered after its event time, e.g. 90s, 6h, 2d (2d)",
    )
    add("--window-days", metavar="DAYS", default="30", help="detection window of the truth (30)")
    add(
        "--interval",
        metavar="SECONDS",
        default="60",
        help="mean time between consignments, in event time (60)",
    )
    add("--mix", metavar="NAME=W,...", help="pattern weights; unlisted patterns get 0")
    add(
        "--rate",
        metavar="EVENTS_PER_S",
        default="0",
        help="pace output to this many lines per second for live feeds (0 = as fast as possible)",
    )


def _parse_int(name: str, text: str, low: int = 0) -> int:
    try:
        value = int(text)
    except ValueError:
        raise _ArgumentError(f"{name} must be an integer, not {text!r}") from None
    if value < low:
        raise _ArgumentError(f"{name} must be >= {low}, not {value}")
    return value


def _parse_float(name: str, text: str, low: float = 0.0, high: float = math.inf) -> float:
    try:
        value = float(text)
    except ValueError:
        raise _ArgumentError(f"{name} must be a number, not {text!r}") from None
    if not (math.isfinite(value) and low <= value < high):
        bound = f"in [{low:g}, {high:g})" if math.isfinite(high) else f">= {low:g}"
        raise _ArgumentError(f"{name} must be {bound}, not {text}")
    return value


def _parse_duration(name: str, text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
    stripped = text.strip().lower()
    scale = units.get(stripped[-1:], 0)
    number = stripped[:-1] if scale else stripped
    try:
        value = float(number) * (scale or 1)
    except ValueError:
        message = f"{name} must be a duration like 90s, 6h or 2d, not {text!r}"
        raise _ArgumentError(message) from None
    if not (math.isfinite(value) and value >= 0):
        raise _ArgumentError(f"{name} must be >= 0, not {text!r}")
    return value


def _parse_start(text: str) -> datetime:
    if "T" not in text.upper():
        raise _ArgumentError(f"--start must be RFC 3339 with an offset, not {text!r}")
    try:
        value = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise _ArgumentError(f"--start must be RFC 3339 with an offset, not {text!r}") from None
    if value.tzinfo is None:
        raise _ArgumentError(f"--start needs a UTC offset (e.g. Z or +05:00): {text!r}")
    return value


def _parse_mix(text: str) -> tuple[tuple[str, float], ...]:
    weights: dict[str, float] = {}
    for part in text.split(","):
        name, sep, weight = part.partition("=")
        name = name.strip()
        if not sep or name not in PATTERNS:
            raise _ArgumentError(
                f"--mix takes NAME=WEIGHT,... with NAME one of {', '.join(PATTERNS)}; got {part!r}"
            )
        weights[name] = _parse_float(f"--mix weight of {name}", weight)
    if not any(weights.values()):
        raise _ArgumentError("--mix needs at least one positive weight")
    return tuple(weights.items())


def _spec_from_args(args: argparse.Namespace) -> tuple[SimulationSpec, float]:
    consignments = (
        _parse_int("--consignments", args.consignments) if args.consignments is not None else None
    )
    events = _parse_int("--events", args.events) if args.events is not None else None
    if consignments is None and events is None:
        consignments = 1000
    spec = SimulationSpec(
        consignments=consignments,
        events=events,
        seed=_parse_int("--seed", args.seed, low=-(2**63)),
        start=_parse_start(args.start) if args.start is not None else DEFAULT_START,
        mix=_parse_mix(args.mix) if args.mix is not None else DEFAULT_MIX,
        duplicate_rate=_parse_float("--duplicate-rate", args.duplicate_rate, 0.0, 1.0),
        malformed_rate=_parse_float("--malformed-rate", args.malformed_rate, 0.0, 1.0),
        max_lateness_s=_parse_duration("--max-lateness", args.max_lateness),
        mean_interval_s=_parse_float("--interval", args.interval, 0.001),
        window_days=_parse_int("--window-days", args.window_days, low=1),
    )
    return spec, _parse_float("--rate", args.rate)


def run(args: argparse.Namespace) -> int:
    """Run `bordermon simulate`: 0 when done (or the reader left), 2 on a bad argument."""
    try:
        spec, rate = _spec_from_args(args)
    except (_ArgumentError, ValueError) as error:
        print(f"bordermon simulate: {error}", file=sys.stderr)
        return 2
    with contextlib.ExitStack() as stack:
        try:
            out = sys.stdout.buffer
            if args.out != "-":
                out = stack.enter_context(Path(args.out).open("wb"))
            truth_file = None
            if args.truth is not None:
                truth_file = stack.enter_context(Path(args.truth).open("wb"))
        except OSError as error:
            message = f"cannot write {error.filename}: {error.strerror}"
            print(f"bordermon simulate: {message}", file=sys.stderr)
            return 2
        on_truth: Callable[[TruthRecord], None] | None = None
        if truth_file is not None:
            write_truth = truth_file.write

            def on_truth(record: TruthRecord) -> None:
                write_truth(orjson.dumps(record) + b"\n")

        # The run allocates millions of short-lived, acyclic objects; the default collector
        # thresholds would re-scan the heap of pending lines over and over (~10 % of the time).
        thresholds = gc.get_threshold()
        gc.set_threshold(100_000, 50, 100)
        progress = Progress("simulate", unit="lines")
        try:
            _write(generate(spec, on_truth), out, rate, progress)
        except BrokenPipeError:
            # `bordermon simulate | head`: the reader has what it wanted; not an error. Point
            # stdout at /dev/null so that the interpreter's final flush does not complain.
            _silence_stdout()
            return 0
        except KeyboardInterrupt:
            progress.done()
            return 130
        finally:
            gc.set_threshold(*thresholds)
    return 0


def _write(lines: Iterator[bytes], out: IO[bytes], rate: float, progress: Progress) -> None:
    """Write lines in batches; with a rate, hold it, handing each line over when it is due."""
    batch: list[bytes] = []
    started = time.monotonic()
    for count, line in enumerate(lines):
        if rate > 0:
            due = started + count / rate
            now = time.monotonic()
            if due > now:  # ahead of schedule: hand over what we have, then wait
                if batch:
                    out.write(b"\n".join(batch) + b"\n")
                    batch.clear()
                out.flush()
                progress.update(count)
                time.sleep(due - now)
        batch.append(line)
        if len(batch) >= 2048:
            out.write(b"\n".join(batch) + b"\n")
            batch.clear()
            progress.update(count + 1)
    if batch:
        out.write(b"\n".join(batch) + b"\n")
    out.flush()


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry point: `python -m bordermon.scanner.simulator --help`."""
    parser = argparse.ArgumentParser(prog="bordermon simulate", description=__doc__)
    configure_parser(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
