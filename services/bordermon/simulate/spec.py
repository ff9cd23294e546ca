"""What a simulation run is made of: the patterns, their default mix, and `SimulationSpec`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

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
    # SPEC v2 section 4.2: consignment A enters, consignment B leaves for RU with A's container,
    # seal or goods batch (2-3 consignments per draw; see patterns.RELABEL_CASES)
    "relabel",
    "container-reuse",  # the same container later leaves for RU with unrelated goods: no flag
    # SPEC v2 section 4.3: exits of listed dual-use goods to RU with or without a permit
    "controlled-export",
)

#: Default pattern weights: mostly ordinary traffic, enough of every edge case to test on.
DEFAULT_MIX: Final[tuple[tuple[str, float], ...]] = (
    ("transit", 0.20),
    ("re-export", 0.10),
    ("slow", 0.05),
    ("boundary", 0.04),
    ("export-only", 0.12),
    ("ru-return", 0.07),
    ("other-destination", 0.11),
    ("re-entry", 0.06),
    ("import-only", 0.13),
    ("relabel", 0.06),
    ("container-reuse", 0.02),
    ("controlled-export", 0.04),
)

#: Fixed default start, so that a run without --start is reproducible (no wall clock).
DEFAULT_START: Final[datetime] = datetime(2024, 3, 1, tzinfo=UTC)
#: SPEC section 3 accepts instants in [2000, 2100): starts are kept well inside, and a run stops
#: making consignments when their scans could cross the upper bound (see `last_start_us`).
EARLIEST_START: Final = datetime(2000, 1, 1, tzinfo=UTC)
LATEST_START: Final = datetime(2090, 1, 1, tzinfo=UTC)
INSTANT_END: Final = datetime(2100, 1, 1, tzinfo=UTC)

SECOND: Final = 1_000_000  # all times are integer microseconds since the epoch: exact arithmetic
HOUR: Final = 3600 * SECOND
DAY: Final = 86_400 * SECOND
#: The longest a pattern spreads its scans after its first one, beyond the larger window.
PATTERN_SPAN: Final = 200 * DAY


@dataclass(frozen=True, slots=True)
class SimulationSpec:
    """Everything that determines the output: equal specs give byte-identical output.

    `consignments` and `events` are both limits; generation stops at the first one reached
    (`events` is an approximate target of output lines, including duplicates and malformed
    lines). Rates are probabilities per emitted valid line. Times are in seconds. The truth uses
    `window_days` for transit-to-ru and `relabel_window_days` for relabel-to-ru (SPEC section 4).
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
    relabel_window_days: int = 90
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
        if not EARLIEST_START <= self.start <= LATEST_START:  # SPEC: instants in [2000, 2100)
            raise ValueError("start must be between 2000 and 2090")
        for name in ("duplicate_rate", "malformed_rate", "late_share", "schema_omitted_rate"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1)")
        if not (math.isfinite(self.max_lateness_s) and self.max_lateness_s >= 0):
            raise ValueError("max_lateness_s must be >= 0")
        if not (math.isfinite(self.mean_interval_s) and self.mean_interval_s > 0):
            raise ValueError("mean_interval_s must be > 0")
        for name in ("window_days", "relabel_window_days"):
            if not 1 <= getattr(self, name) <= 3650:
                raise ValueError(f"{name} must be in 1..3650")
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

    @property
    def window_us(self) -> int:
        return self.window_days * DAY

    @property
    def relabel_window_us(self) -> int:
        return self.relabel_window_days * DAY

    @property
    def last_start_us(self) -> int:
        """No consignment starts after this: all of its scans stay before 2100 (SPEC section 3)."""
        end = int(INSTANT_END.timestamp()) * SECOND
        return end - max(self.window_us, self.relabel_window_us) - PATTERN_SPAN
