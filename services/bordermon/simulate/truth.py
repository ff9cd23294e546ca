"""The ground truth: what SPEC section 4 says about the generated lines, by brute force.

Computed from the lines as written (parsed back from their bytes), in file (arrival) order,
after dropping the malformed lines and the duplicates (by consignment and event_id), and
without importing the detection code. `--truth FILE` writes it as JSONL, three kinds of record:

- one per consignment, when it is generated (its pattern and case; `flagged` and `severity` say
  whether transit-to-ru flags it over all of its events, as in v1):
  {"consignment_id": "CSG-...", "pattern": "relabel", "case": "relabel-container",
   "flagged": false, "severity": "low"}
- one per expected flag, when the line that completes its first match is written
  (`detected_line`, 1-based); `entry_event_id`, `link` and `linked_consignment_id` are null
  where SPEC section 5 has no entry or link:
  {"flag_id": "3f0c...", "rule": "relabel-to-ru", "consignment_id": "CSG-B",
   "severity": "high", "entry_event_id": "...", "exit_event_id": "...",
   "link": "container:MSCU1234565", "linked_consignment_id": "CSG-A",
   "hs_codes": ["85423190", "854231"], "detected_line": 912}
- one per malformed line, just before it is written: its SPEC reject reason and the mutation
  that made it: {"line": 17, "reason": "invalid_field:goods", "kind": "bad-goods"}

The reported pair is the one of SPEC section 4 among the events known when the flag is raised,
i.e. when the line that completes the first match arrives (for relabel-to-ru: the earliest
matching exit of B through the link key and, for it, the latest matching entry; ties to the
smallest event_id). `hs_codes` are the normalised codes that count for severity (section 4.4).
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, TypedDict, cast

import orjson

from bordermon.simulate.reference import CONCERN, MONITORED, severity

TRANSIT: str = "transit-to-ru"
RELABEL: str = "relabel-to-ru"
PERMIT: str = "export-without-permit"
RULES: tuple[str, ...] = (TRANSIT, RELABEL, PERMIT)


class ConsignmentTruth(TypedDict):
    """One generated consignment: its pattern and case, and transit-to-ru over all its events."""

    consignment_id: str
    pattern: str
    case: str
    flagged: bool
    severity: str


class FlagTruth(TypedDict):
    """One flag SPEC section 4 expects, with the fields of flag/2 that the truth pins down."""

    flag_id: str
    rule: str
    consignment_id: str
    severity: str
    entry_event_id: str | None
    exit_event_id: str
    link: str | None
    linked_consignment_id: str | None
    hs_codes: list[str]
    detected_line: int


class MalformedTruth(TypedDict):
    """One malformed output line: its 1-based line number and the SPEC reject reason."""

    line: int
    reason: str
    kind: str  # which mutation made it (for debugging; not a SPEC reason)


TruthRecord = ConsignmentTruth | FlagTruth | MalformedTruth


@dataclass(slots=True)
class GroundTruth:
    """An in-memory truth sink for tests and small runs: pass `truth.add` to `generate`."""

    consignments: dict[str, ConsignmentTruth] = field(default_factory=dict)
    flags: dict[str, FlagTruth] = field(default_factory=dict)  # by flag_id
    malformed: dict[int, MalformedTruth] = field(default_factory=dict)

    def add(self, record: TruthRecord) -> None:
        if "line" in record:
            malformed = cast(MalformedTruth, record)
            self.malformed[malformed["line"]] = malformed
        elif "flag_id" in record:
            flag = cast(FlagTruth, record)
            self.flags[flag["flag_id"]] = flag
        else:
            self.consignments[record["consignment_id"]] = record


def flag_id(rule: str, consignment_id: str, link: str | None = None) -> str:
    """SPEC section 5: the first 32 hex digits of SHA-256 of rule, consignment (and link)."""
    text = f"{rule}\n{consignment_id}" if link is None else f"{rule}\n{consignment_id}\n{link}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


class Scan(NamedTuple):
    """An accepted event, as the truth reads it back from its line."""

    event_id: str
    consignment_id: str
    entry: bool  # to_country is KZ (else from_country is)
    country: str  # the other side, upper-cased
    t: int  # observed_at, microseconds since the epoch (UTC)
    codes: tuple[str, ...]  # normalised hs codes, per goods line
    keys: frozenset[str]  # SPEC section 4.2 link keys
    permit: bool

    @property
    def qualifying_entry(self) -> bool:
        return self.entry and self.country != CONCERN

    @property
    def qualifying_exit(self) -> bool:
        return not self.entry and self.country == CONCERN

    @property
    def hs6(self) -> frozenset[str]:
        return frozenset(code[:6] for code in self.codes)


def link_keys(event: dict[str, Any]) -> frozenset[str]:
    """SPEC section 4.2: container (upper, no spaces or dashes), seal (upper, no spaces), batch."""
    keys = set()
    transport = event.get("transport") or {}
    if "container_id" in transport:
        keys.add("container:" + transport["container_id"].upper().replace(" ", "").replace("-", ""))
    if "seal_id" in transport:
        keys.add("seal:" + transport["seal_id"].upper().replace(" ", ""))
    for line in event["goods"]:
        if "batch_id" in line:
            keys.add("batch:" + line["batch_id"].strip(" "))
    return frozenset(keys)


def read_scan(raw: bytes) -> Scan:
    """A valid line (per SPEC section 3) read back into what the rules look at."""
    event = orjson.loads(raw)
    entry = event["to_country"].upper() == MONITORED
    country = (event["from_country"] if entry else event["to_country"]).upper()
    at = datetime.fromisoformat(event["observed_at"].replace("Z", "+00:00"))
    t = int(at.timestamp()) * 1_000_000 + at.microsecond
    codes = tuple(
        sys.intern(line["hs_code"].replace(".", "").replace(" ", "")) for line in event["goods"]
    )
    return Scan(
        event["event_id"],
        sys.intern(event["consignment_id"]),
        entry,
        country,
        t,
        codes,
        link_keys(event),
        "permit_id" in event,
    )


def _earliest(scans: Iterable[Scan]) -> Scan:
    return min(scans, key=lambda s: (s.t, s.event_id))


def _latest(scans: Iterable[Scan]) -> Scan:
    return min(scans, key=lambda s: (-s.t, s.event_id))


class TruthEngine:
    """Brute force over the accepted scans, raising each flag when its first match is known.

    Scans are dropped once they can no longer matter: a scan older than `horizon_us` before
    the latest scan seen can neither be matched by a later line (the horizon exceeds both
    windows plus the lateness) nor see a duplicate of its line again (the feed bounds the delay
    of a duplicate). The raised flags are kept for the whole run, so that none is raised twice.
    """

    def __init__(
        self,
        emit: Callable[[TruthRecord], None],
        *,
        window_us: int,
        relabel_window_us: int,
        horizon_us: int,
        tiers: dict[str, str],
        controlled: frozenset[str],
        forget_every: int = 50_000,
    ) -> None:
        self.emit = emit
        self.window = window_us
        self.relabel_window = relabel_window_us
        self.horizon = horizon_us
        self.tiers = tiers
        self.controlled = controlled
        self.consignments: dict[str, list[Scan]] = {}
        self.by_key: dict[str, list[Scan]] = {}
        self.flagged: set[tuple[str, str, str]] = set()  # (rule, consignment, link or "")
        self.latest = 0
        self.count = 0
        self.forget_every = forget_every

    def observe(self, line: int, raw: bytes) -> None:
        """One valid line, in file order (duplicates included: they are dropped here)."""
        scan = read_scan(raw)
        known = self.consignments.setdefault(scan.consignment_id, [])
        if any(other.event_id == scan.event_id for other in known):
            return
        known.append(scan)
        if scan.qualifying_entry or scan.qualifying_exit:
            for key in scan.keys:
                self.by_key.setdefault(key, []).append(scan)
        self._transit(line, scan, known)
        self._permit(line, scan, known)
        self._relabel(line, scan)
        self.latest = max(self.latest, scan.t)
        self.count += 1
        if self.count % self.forget_every == 0:
            self._forget()

    # -- the rules ---------------------------------------------------------------------------

    def _consignment_flag(
        self, rule: str, line: int, known: list[Scan], entry: Scan | None, exit_: Scan
    ) -> None:
        codes = {code for scan in known for code in scan.codes}
        self.flagged.add((rule, exit_.consignment_id, ""))
        self.emit(
            FlagTruth(
                flag_id=flag_id(rule, exit_.consignment_id),
                rule=rule,
                consignment_id=exit_.consignment_id,
                severity=severity(sorted(codes), self.tiers),
                entry_event_id=entry.event_id if entry is not None else None,
                exit_event_id=exit_.event_id,
                link=None,
                linked_consignment_id=None,
                hs_codes=sorted(codes),
                detected_line=line,
            )
        )

    def _transit(self, line: int, scan: Scan, known: list[Scan]) -> None:
        if (TRANSIT, scan.consignment_id, "") in self.flagged:
            return
        pairs = [
            (e, x)
            for x in known
            if x.qualifying_exit
            for e in known
            if e.qualifying_entry and 0 <= x.t - e.t <= self.window
        ]
        if pairs:
            exit_ = _earliest(x for _, x in pairs)
            entry = _latest(e for e, x in pairs if x is exit_)
            self._consignment_flag(TRANSIT, line, known, entry, exit_)

    def _permit(self, line: int, scan: Scan, known: list[Scan]) -> None:
        if (PERMIT, scan.consignment_id, "") in self.flagged:
            return
        unlicensed = [
            x
            for x in known
            if x.qualifying_exit
            and not x.permit
            and any(code[:6] in self.controlled for code in x.codes)
        ]
        if unlicensed:
            self._consignment_flag(PERMIT, line, known, None, _earliest(unlicensed))

    def _relabel(self, line: int, scan: Scan) -> None:
        if not (scan.qualifying_entry or scan.qualifying_exit):
            return
        for key in sorted(scan.keys):
            carriers = self.by_key[key]
            exiting = {x.consignment_id for x in carriers if x.qualifying_exit}
            for consignment in sorted(exiting):
                if (RELABEL, consignment, key) not in self.flagged:
                    self._relabel_match(line, key, consignment, carriers)

    def _relabel_match(self, line: int, key: str, consignment: str, carriers: list[Scan]) -> None:
        pairs = [
            (e, x)
            for x in carriers
            if x.qualifying_exit and x.consignment_id == consignment
            for e in carriers
            if e.qualifying_entry
            and e.consignment_id != consignment
            and 0 <= x.t - e.t <= self.relabel_window
            and e.hs6 & x.hs6
        ]
        if not pairs:
            return
        exit_ = _earliest(x for _, x in pairs)
        entry = _latest(e for e, x in pairs if x is exit_)
        shared = entry.hs6 & exit_.hs6
        codes = sorted({code for code in (*entry.codes, *exit_.codes) if code[:6] in shared})
        self.flagged.add((RELABEL, consignment, key))
        self.emit(
            FlagTruth(
                flag_id=flag_id(RELABEL, consignment, key),
                rule=RELABEL,
                consignment_id=consignment,
                severity=severity(codes, self.tiers),
                entry_event_id=entry.event_id,
                exit_event_id=exit_.event_id,
                link=key,
                linked_consignment_id=entry.consignment_id,
                hs_codes=codes,
                detected_line=line,
            )
        )

    def _forget(self) -> None:
        """Drop the scans that are past the horizon, and what is left empty."""
        oldest = self.latest - self.horizon
        for index in (self.consignments, self.by_key):
            for name, scans in list(index.items()):
                kept = [scan for scan in scans if scan.t >= oldest]
                if not kept:
                    del index[name]
                elif len(kept) < len(scans):
                    index[name] = kept
