"""Flag v1 (SPEC §5): what alert subscribers receive.

The `flag_id` depends only on the rule and the consignment, so a flag re-sent after a crash,
or by a second replay of the topic, carries the same id and subscribers can dedupe on it.
"""

from __future__ import annotations

import hashlib
from typing import Any, NamedTuple

import orjson

SCHEMA_ID = "flag/1"


def flag_id_for(rule: str, consignment_id: str) -> str:
    """First 32 hex digits of SHA-256 of `rule + "\\n" + consignment_id` (UTF-8)."""
    return hashlib.sha256(f"{rule}\n{consignment_id}".encode()).hexdigest()[:32]


class Sighting(NamedTuple):
    """A crossing kept in state because the rule may still pair it, and reported in flags."""

    event_id: str
    checkpoint: str
    from_country: str
    to_country: str
    observed_at: str
    instant_ns: int

    def to_public(self) -> dict[str, str]:
        """The `entry` / `exit` object of a flag."""
        return {
            "event_id": self.event_id,
            "checkpoint": self.checkpoint,
            "from_country": self.from_country,
            "to_country": self.to_country,
            "observed_at": self.observed_at,
        }

    def to_row(self) -> list[str | int]:
        """Compact positional form for state storage."""
        return [
            self.event_id,
            self.checkpoint,
            self.from_country,
            self.to_country,
            self.observed_at,
            self.instant_ns,
        ]

    @classmethod
    def from_row(cls, row: list[Any]) -> Sighting:
        return cls(str(row[0]), str(row[1]), str(row[2]), str(row[3]), str(row[4]), int(row[5]))


class Flag(NamedTuple):
    """One flag of one rule on one consignment; `to_dict()` is the wire form."""

    flag_id: str
    rule: str
    consignment_id: str
    severity: str
    reasons: tuple[str, ...]
    entry: Sighting
    exit: Sighting
    dwell_seconds: int | float
    window_seconds: int | float
    hs_codes: tuple[str, ...]
    detected_at: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA_ID,
            "flag_id": self.flag_id,
            "rule": self.rule,
            "consignment_id": self.consignment_id,
            "severity": self.severity,
            "reasons": list(self.reasons),
            "entry": self.entry.to_public(),
            "exit": self.exit.to_public(),
            "dwell_seconds": self.dwell_seconds,
            "window_seconds": self.window_seconds,
            "hs_codes": list(self.hs_codes),
            "detected_at": self.detected_at,
        }

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    def to_record(self) -> dict[str, Any]:
        """Lossless form for state storage (keeps the instants the wire form leaves out)."""
        record = self.to_dict()
        record["entry"] = self.entry.to_row()
        record["exit"] = self.exit.to_row()
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Flag:
        return cls(
            flag_id=record["flag_id"],
            rule=record["rule"],
            consignment_id=record["consignment_id"],
            severity=record["severity"],
            reasons=tuple(record["reasons"]),
            entry=Sighting.from_row(record["entry"]),
            exit=Sighting.from_row(record["exit"]),
            dwell_seconds=record["dwell_seconds"],
            window_seconds=record["window_seconds"],
            hs_codes=tuple(record["hs_codes"]),
            detected_at=record["detected_at"],
        )
