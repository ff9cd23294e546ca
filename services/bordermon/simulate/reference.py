"""Reference data and geography of the simulation: checkpoints, goods, origins, routes, offsets.

The CHPL and checkpoint files are read as files from bordermon/core/data, never through
`bordermon.core`: the simulator's truth must stay independent of the detection code.
"""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Final


@dataclass(frozen=True, slots=True)
class Checkpoint:
    code: str
    neighbour: str  # ISO code of the country across the border, "*" for airports
    mode: str
    offsets: tuple[tuple[int, str], ...] = ()  # UTC offsets its scanners write
    scanner_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Item:
    hs6: str
    description: str
    unit: str
    price: tuple[float, float]  # plausible value per line, USD


@dataclass(frozen=True, slots=True)
class Reference:
    by_neighbour: dict[str, tuple[Checkpoint, ...]]
    tiers: dict[str, str]  # hs6 -> CHPL tier
    high: tuple[Item, ...]  # tier 1, 2
    medium: tuple[Item, ...]  # tier 3.A, 3.B, 4.A, 4.B
    items: dict[str, Item]  # hs6 -> item, for every code the simulator writes

    @property
    def controlled(self) -> frozenset[str]:
        """The default export-control list of SPEC section 4.3: CHPL tiers 1 and 2."""
        return frozenset(item.hs6 for item in self.high)


def _read_data(name: str) -> str:
    """Read a reference file shipped in bordermon/core/data, wherever the package lives.

    The files are package data of `bordermon` itself (see pyproject.toml), so they are reached
    from the top-level package: importing `bordermon.core` would load the detection code, which
    the simulator must stay independent of (and must keep working while it is being changed).
    """
    try:
        return (files("bordermon") / "core" / "data" / name).read_text(encoding="utf-8")
    except (OSError, TypeError, ValueError):
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
LOW_ITEMS: Final[tuple[Item, ...]] = (
    Item("610910", "cotton T-shirts", "pcs", (2_000, 60_000)),
    Item("640399", "leather footwear", "pcs", (5_000, 80_000)),
    Item("870323", "passenger cars 1.5-3.0L", "pcs", (20_000, 400_000)),
    Item("870899", "vehicle parts", "kg", (1_000, 90_000)),
    Item("847130", "laptops", "pcs", (10_000, 300_000)),
    Item("851712", "smartphones", "pcs", (20_000, 500_000)),
    Item("854290", "parts of integrated circuits", "kg", (500, 20_000)),
    Item("854141", "LED emitters", "pcs", (500, 30_000)),
    Item("848180", "valves and taps", "pcs", (1_000, 40_000)),
    Item("940360", "wooden furniture", "pcs", (2_000, 50_000)),
    Item("392690", "plastic articles", "kg", (500, 20_000)),
    Item("852872", "LCD televisions", "pcs", (5_000, 150_000)),
    Item("841810", "refrigerators", "pcs", (5_000, 120_000)),
    Item("401110", "car tyres", "pcs", (3_000, 80_000)),
    Item("300490", "medicaments, packaged", "kg", (2_000, 200_000)),
    Item("090230", "black tea", "kg", (1_000, 30_000)),
    Item("080810", "apples", "kg", (1_000, 25_000)),
    Item("730890", "steel structures", "kg", (5_000, 100_000)),
)

KZ_EXPORT_ITEMS: Final[tuple[Item, ...]] = (
    Item("100199", "wheat", "kg", (20_000, 400_000)),
    Item("740311", "refined copper cathodes", "kg", (50_000, 900_000)),
    Item("720241", "ferrochromium", "kg", (30_000, 600_000)),
    Item("260300", "copper ores and concentrates", "kg", (40_000, 800_000)),
    Item("271012", "light petroleum oils", "kg", (20_000, 500_000)),
    Item("110100", "wheat flour", "kg", (5_000, 120_000)),
    Item("760110", "unwrought aluminium", "kg", (30_000, 500_000)),
)


@cache
def reference() -> Reference:
    by_neighbour: dict[str, list[Checkpoint]] = {}
    for row in csv.DictReader(io.StringIO(_read_data("checkpoints.csv"))):
        code, neighbour = row["code"].strip(), row["neighbour"].strip()
        point = Checkpoint(
            code,
            neighbour,
            row["mode"].strip(),
            _OFFSETS.get(neighbour, _OFFSETS["*"]),
            tuple(f"{code}-{bank}{unit}" for bank in "ABC" for unit in range(1, 10)),
        )
        by_neighbour.setdefault(neighbour, []).append(point)
    tiers: dict[str, str] = {}
    high: list[Item] = []
    medium: list[Item] = []
    for row in csv.DictReader(io.StringIO(_read_data("chpl.csv"))):
        hs6, tier = row["hs6"].strip(), row["tier"].strip()
        tiers[hs6] = tier
        text = _PRODUCT_NAMES.get(hs6) or row["description"].split(":")[0].split(",")[0][:40]
        item = Item(hs6, text, "pcs", (1_000, 250_000))
        (high if tier in ("1", "2") else medium).append(item)
    if "*" not in by_neighbour:  # every non-neighbour route falls back to an airport
        by_neighbour["*"] = [
            Checkpoint("KZ-ALMATY-AIR", "*", "air", _OFFSETS["*"], ("KZ-ALMATY-AIR-A1",))
        ]
    items = {item.hs6: item for item in itertools.chain(LOW_ITEMS, KZ_EXPORT_ITEMS, high, medium)}
    return Reference(
        {key: tuple(value) for key, value in by_neighbour.items()},
        tiers,
        tuple(high),
        tuple(medium),
        items,
    )


def severity(codes: Sequence[str], tiers: dict[str, str]) -> str:
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
ROUTES: Final[dict[str, tuple[str, ...]]] = {
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
ALL_OFFSETS: Final[tuple[tuple[int, str], ...]] = (
    (0, "Z"), (300, "+05:00"), (360, "+06:00"), (180, "+03:00"), (240, "+04:00"), (480, "+08:00"),
)  # fmt: skip


def cumulative(weights: Sequence[tuple[str, float]]) -> tuple[tuple[str, ...], list[float]]:
    names = tuple(name for name, _ in weights)
    return names, list(itertools.accumulate(weight for _, weight in weights))


ORIGIN_NAMES, ORIGIN_CUM = cumulative(_ORIGINS)
DEST_NAMES, DEST_CUM = cumulative(_OTHER_DESTINATIONS)


def format_hs(digits: str, style: int) -> str:
    """Write an HS code as brokers do: 85423190, 8542.31.90 or 8542 31 90 (same digits)."""
    if style == 0:
        return digits
    parts = [digits[:4], digits[4:6]]
    if len(digits) > 6:
        parts.append(digits[6:8])
    if len(digits) > 8:
        parts.append(digits[8:])
    return ("." if style == 1 else " ").join(parts)
