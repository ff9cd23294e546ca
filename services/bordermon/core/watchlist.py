"""Watchlists of HS codes and the severity they give a consignment (SPEC §4).

A watchlist is a CSV with columns `hs6,tier,description` (the CHPL's shape). Entries are HS
prefixes: an event's code matches a list code it starts with, so `8542310000` matches `854231`.
Several lists may be loaded; each reason names its list (`chpl:1:854231`).
"""

from __future__ import annotations

import csv
import enum
import io
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from bordermon.core.crossing import normalize_hs_code


class Severity(enum.IntEnum):
    """Ordered so that `max()` picks the worst."""

    LOW = 0
    MEDIUM = 1
    HIGH = 2

    @property
    def label(self) -> str:
        """The wire form (SPEC §5): `low`, `medium` or `high`."""
        return self.name.lower()

    @classmethod
    def from_label(cls, label: str) -> Severity:
        """The severity a wire label names; `ValueError` for any other text."""
        for severity in cls:
            if severity.label == label:
                return severity
        raise ValueError(f"unknown severity {label!r} (expected low, medium or high)")


# SPEC §4: tiers 1 and 2 are high, the rest of the CHPL is medium.
TIER_SEVERITY: dict[str, Severity] = {
    "1": Severity.HIGH,
    "2": Severity.HIGH,
    "3.A": Severity.MEDIUM,
    "3.B": Severity.MEDIUM,
    "4.A": Severity.MEDIUM,
    "4.B": Severity.MEDIUM,
}

BUILTIN_CHPL = "builtin:chpl"
# The default export-control list of SPEC §4.3: the CHPL's tiers 1 and 2 only.
BUILTIN_CHPL_TIERS_1_2 = "builtin:chpl-tiers-1-2"
# Builtin sources and the tiers each keeps (None: all).
_BUILTINS: dict[str, frozenset[str] | None] = {
    BUILTIN_CHPL: None,
    BUILTIN_CHPL_TIERS_1_2: frozenset({"1", "2"}),
}
# Reasons of the export-control list read `export-control:<tier>:<code>` whatever the file.
EXPORT_CONTROL_LIST_NAME = "export-control"


class WatchlistError(ValueError):
    """A watchlist file that cannot be used, with the file and line in the message."""


@dataclass(frozen=True, slots=True)
class WatchlistEntry:
    list_name: str
    code: str
    tier: str
    description: str

    @property
    def severity(self) -> Severity:
        return TIER_SEVERITY[self.tier]

    @property
    def reason(self) -> str:
        return f"{self.list_name}:{self.tier}:{self.code}"


class Watchlist:
    """HS prefixes to entries; lookups cost one dict probe per prefix length."""

    def __init__(self, entries: Iterable[WatchlistEntry]) -> None:
        self._by_code: dict[str, WatchlistEntry] = {}
        for entry in entries:
            known = self._by_code.get(entry.code)
            # The same code on two lists: keep the more severe listing.
            if known is None or entry.severity > known.severity:
                self._by_code[entry.code] = entry
        self._lengths = sorted({len(code) for code in self._by_code})

    def __len__(self) -> int:
        return len(self._by_code)

    def matches(self, hs_code: str) -> list[WatchlistEntry]:
        """Every listed prefix of `hs_code`, shortest first."""
        found = []
        for length in self._lengths:
            if length > len(hs_code):
                break
            entry = self._by_code.get(hs_code[:length])
            if entry is not None:
                found.append(entry)
        return found

    def assess(self, hs_codes: Iterable[str]) -> tuple[Severity, list[str]]:
        """Severity of a set of codes and the reasons behind it, most severe first."""
        hits = {entry for code in hs_codes for entry in self.matches(code)}
        ordered = sorted(hits, key=lambda e: (-e.severity, e.list_name, e.tier, e.code))
        severity = ordered[0].severity if ordered else Severity.LOW
        return severity, [entry.reason for entry in ordered]


_BOM = "\ufeff"


def decode_list_text(data: bytes | str, source: str) -> str:
    """The text of a CSV list file: UTF-8, with or without a byte-order mark (spreadsheets
    write one). Anything else is a `WatchlistError` naming the file and the line."""
    if isinstance(data, str):
        return data.removeprefix(_BOM)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise WatchlistError(
            f"{source}:{line}: not UTF-8 (byte 0x{data[error.start]:02x}); save the list as"
            " UTF-8 CSV"
        ) from None


def parse_watchlist(
    data: bytes | str, list_name: str, source: str = "<text>"
) -> list[WatchlistEntry]:
    """Entries of one CSV list, given as the file's bytes or its text."""
    reader = csv.DictReader(io.StringIO(decode_list_text(data, source)))
    missing = {"hs6", "tier"} - set(reader.fieldnames or ())
    if missing:
        raise WatchlistError(f"{source}: missing column(s) {', '.join(sorted(missing))}")
    entries = []
    for row in reader:
        code = normalize_hs_code(row["hs6"] or "")
        if code is None:
            # List codes may be shorter than event codes (a chapter or heading prefix).
            raw = (row["hs6"] or "").replace(".", "").replace(" ", "")
            if not (raw.isascii() and raw.isdigit() and 2 <= len(raw) <= 10):
                raise WatchlistError(f"{source}:{reader.line_num}: bad HS code {row['hs6']!r}")
            code = raw
        tier = (row["tier"] or "").strip()
        if tier not in TIER_SEVERITY:
            raise WatchlistError(
                f"{source}:{reader.line_num}: tier {tier!r} is not one of {sorted(TIER_SEVERITY)}"
            )
        entries.append(WatchlistEntry(list_name, code, tier, (row.get("description") or "")))
    return entries


def load_watchlist(sources: Iterable[str], *, list_name: str | None = None) -> Watchlist:
    """Load builtin lists (`builtin:chpl`, `builtin:chpl-tiers-1-2`) and/or CSV paths.

    A list's name (the first part of its reasons) is `list_name` when given, else `chpl` for
    the builtins and the file name without suffix for a path.
    """
    entries: list[WatchlistEntry] = []
    for source in sources:
        if source in _BUILTINS:
            data = (resources.files(__package__) / "data" / "chpl.csv").read_bytes()
            tiers = _BUILTINS[source]
            entries += [
                entry
                for entry in parse_watchlist(data, list_name or "chpl", source)
                if tiers is None or entry.tier in tiers
            ]
            continue
        path = Path(source)
        try:
            data = path.read_bytes()
        except OSError as error:
            raise WatchlistError(f"cannot read watchlist {source}: {error.strerror}") from None
        entries += parse_watchlist(data, list_name or path.stem, source)
    return Watchlist(entries)


def load_export_controls(sources: Iterable[str]) -> Watchlist:
    """The export-control list of SPEC §4.3; its reasons read `export-control:<tier>:<code>`."""
    return load_watchlist(sources, list_name=EXPORT_CONTROL_LIST_NAME)
