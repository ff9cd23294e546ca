"""Flag v2 (SPEC §5): what alert subscribers receive.

The `flag_id` depends only on the rule, the consignment and (for `relabel-to-ru`) the link
key, so a flag re-sent after a crash, or by a second replay of the topic, carries the same id
and subscribers can dedupe on it. Transit ids are those of flag/1.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any, NamedTuple

import orjson

from bordermon.core.sighting import Sighting
from bordermon.core.timestamps import format_utc, seconds_between
from bordermon.core.watchlist import Severity

SCHEMA_ID = "flag/2"


def flag_id_for(rule: str, consignment_id: str, link: str | None = None) -> str:
    """First 32 hex digits of SHA-256 (UTF-8) of `rule\\nconsignment_id[\\nlink]`."""
    text = f"{rule}\n{consignment_id}" if link is None else f"{rule}\n{consignment_id}\n{link}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class Flag(NamedTuple):
    """One flag of one rule on one consignment (and link key); `to_dict()` is the wire form.

    Fields are in SPEC §5's order.
    """

    flag_id: str
    rule: str
    consignment_id: str
    severity: Severity
    reasons: tuple[str, ...]
    entry: Sighting | None
    exit: Sighting
    link: str | None
    linked_consignment_id: str | None
    dwell_seconds: int | float | None
    window_seconds: int | float | None
    hs_codes: tuple[str, ...]
    detected_at: str

    @classmethod
    def build(
        cls,
        *,
        rule: str,
        consignment_id: str,
        severity: Severity,
        reasons: Iterable[str],
        entry: Sighting | None,
        exit_: Sighting,
        window_ns: int | None,
        hs_codes: Iterable[str],
        now_ns: int,
        link: str | None = None,
        linked_consignment_id: str | None = None,
    ) -> Flag:
        """A flag with its derived fields (id, dwell, window, sorted codes, detected_at)."""
        return cls(
            flag_id=flag_id_for(rule, consignment_id, link),
            rule=rule,
            consignment_id=consignment_id,
            severity=severity,
            reasons=tuple(reasons),
            entry=entry,
            exit=exit_,
            link=link,
            linked_consignment_id=linked_consignment_id,
            dwell_seconds=(
                None if entry is None else seconds_between(entry.instant_ns, exit_.instant_ns)
            ),
            window_seconds=None if window_ns is None else seconds_between(0, window_ns),
            hs_codes=tuple(sorted(set(hs_codes))),
            detected_at=format_utc(now_ns),
        )

    @property
    def entry_consignment_id(self) -> str:
        """The entry's consignment: A for relabel, else the flagged consignment itself."""
        return self.linked_consignment_id or self.consignment_id

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA_ID,
            "flag_id": self.flag_id,
            "rule": self.rule,
            "consignment_id": self.consignment_id,
            "severity": self.severity.label,
            "reasons": list(self.reasons),
            "entry": (
                None if self.entry is None else self.entry.to_public(self.entry_consignment_id)
            ),
            "exit": self.exit.to_public(self.consignment_id),
            "link": self.link,
            "linked_consignment_id": self.linked_consignment_id,
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
        record["entry"] = None if self.entry is None else self.entry.to_row()
        record["exit"] = self.exit.to_row()
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Flag:
        """Read a stored flag: flag/2, or a flag/1 pending in state written by the previous
        version (transit only; it has no link fields and always an entry)."""
        entry_row = record["entry"]
        return cls(
            flag_id=record["flag_id"],
            rule=record["rule"],
            consignment_id=record["consignment_id"],
            severity=Severity.from_label(record["severity"]),
            reasons=tuple(record["reasons"]),
            entry=None if entry_row is None else Sighting.from_row(entry_row),
            exit=Sighting.from_row(record["exit"]),
            link=record.get("link"),
            linked_consignment_id=record.get("linked_consignment_id"),
            dwell_seconds=record["dwell_seconds"],
            window_seconds=record["window_seconds"],
            hs_codes=tuple(record["hs_codes"]),
            detected_at=record["detected_at"],
        )
