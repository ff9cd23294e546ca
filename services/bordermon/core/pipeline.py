"""The batch step shared by `bordermon replay` and the stream worker.

A batch goes through pure steps, so both drivers hold exactly the same logic:

1. `validate_batch`: bytes -> accepted events, or rejects with a SPEC reason;
2. `apply_batch` (the consignment stage): accepted events -> state transitions, flags and
   link sightings, in arrival order;
3. `apply_link_batch` (the link stage of `relabel-to-ru`): link sightings -> link-state
   transitions and flags, in arrival order.

Before each apply step the driver loads the states the batch needs (the worker from Redis in
one round trip; replay from a dict); after it, it persists the touched states and delivers
the flags (and, in the worker, the sightings to the links topic). `Tally` counts what
happened, for the replay summary and the metrics.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from bordermon.core.config import DetectionConfig
from bordermon.core.crossing import CrossingEvent, InvalidCrossing, parse_crossing
from bordermon.core.flag import Flag
from bordermon.core.link import LinkState, apply_link
from bordermon.core.sighting import LinkSighting
from bordermon.core.signatures import ScannerRegistry, check_signature
from bordermon.core.state import ConsignmentState, apply
from bordermon.core.watchlist import Severity


class Message(NamedTuple):
    """One input message. `key` is checked against the payload only when `check_key` is set
    (Kafka input); JSONL lines in replay have no key. Where it came from, for reject reports
    and dead letters: a Kafka record's `partition` and `offset`, or a JSONL file's `line`
    (1-based), never both. `headers` are the Kafka headers (the scan's signature,
    `core.signatures`); replay's lines have none."""

    value: bytes
    key: bytes | None = None
    check_key: bool = False
    partition: int = -1
    offset: int = -1
    line: int = 0
    timestamp_ms: int | None = None
    headers: tuple[tuple[str, bytes], ...] = ()


class Reject(NamedTuple):
    message: Message
    reason: str
    detail: str


class Accepted(NamedTuple):
    message: Message
    event: CrossingEvent


@dataclass(slots=True)
class Tally:
    """Running counts; the replay summary and the worker's metrics read the same numbers."""

    read: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    flags: Counter[Severity] = field(default_factory=Counter)  # by severity
    flags_by_rule: Counter[str] = field(default_factory=Counter)
    sightings: int = 0  # link sightings emitted by the consignment stage

    def count_flag(self, flag: Flag) -> None:
        self.flags[flag.severity] += 1
        self.flags_by_rule[flag.rule] += 1

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())


# Not a SPEC reason: a validator bug met an input it did not foresee. The message is still
# dead-lettered with its bytes (nothing lost, the pipeline goes on) and the bug is visible.
INTERNAL_ERROR = "internal_error"


def validate(
    message: Message, config: DetectionConfig, verifier: ScannerRegistry | None = None
) -> Accepted | Reject:
    """Accept a message, or reject it with the first fault found, in this order: the payload
    (SPEC §3 fields), then `key_mismatch` (when `check_key`), then, when `verifier` is given
    (`require_signatures`), the signature (`unsigned`, `bad_signature`,
    `checkpoint_not_allowed`). Signatures come last because the checkpoint rule needs the
    parsed event, and a broken payload is the scanner's bug whoever signed it."""
    try:
        event = parse_crossing(message.value, config.monitored_country)
    except InvalidCrossing as error:
        return Reject(message, error.reason, error.detail)
    except Exception as error:  # a bug must not stop the pipeline on one message
        return Reject(message, INTERNAL_ERROR, f"validator failed: {error!r}")
    if message.check_key:
        key = _decode_key(message.key)
        if key != event.consignment_id:
            return Reject(
                message,
                "key_mismatch",
                f"Kafka key {key!r} is not the payload's consignment_id {event.consignment_id!r}",
            )
    if verifier is not None:
        fault = check_signature(message.value, message.headers, event, verifier)
        if fault is not None:
            return Reject(message, *fault)
    return Accepted(message, event)


def _decode_key(key: bytes | None) -> str | None:
    if key is None:
        return None
    try:
        return key.decode("utf-8")
    except UnicodeDecodeError:
        return repr(key)


def validate_batch(
    messages: Iterable[Message],
    config: DetectionConfig,
    tally: Tally,
    verifier: ScannerRegistry | None = None,
) -> tuple[list[Accepted], list[Reject]]:
    accepted: list[Accepted] = []
    rejects: list[Reject] = []
    for message in messages:
        tally.read += 1
        outcome = validate(message, config, verifier)
        if isinstance(outcome, Reject):
            tally.rejected[outcome.reason] += 1
            rejects.append(outcome)
        else:
            accepted.append(outcome)
    return accepted, rejects


@dataclass(slots=True)
class BatchOutcome:
    """What a batch changed: states to persist, flags in detection order with the message
    that raised each (for scan-to-flag latency), and link sightings for the link stage."""

    touched: dict[str, ConsignmentState] = field(default_factory=dict)
    flags: list[tuple[Flag, Accepted]] = field(default_factory=list)
    sightings: list[LinkSighting] = field(default_factory=list)


def apply_batch(
    accepted: Sequence[Accepted],
    states: MutableMapping[str, ConsignmentState],
    config: DetectionConfig,
    tally: Tally,
    clock: Callable[[], int] = time.time_ns,
) -> BatchOutcome:
    """Apply accepted events in order. `states` holds the loaded states (missing = new) and
    is updated in place."""
    outcome = BatchOutcome()
    for item in accepted:
        consignment_id = item.event.consignment_id
        transition = apply(states.get(consignment_id), item.event, config, clock)
        states[consignment_id] = transition.state
        if transition.duplicate:
            tally.duplicates += 1
            continue
        tally.accepted += 1
        outcome.touched[consignment_id] = transition.state
        for flag in transition.flags:
            tally.count_flag(flag)
            outcome.flags.append((flag, item))
        tally.sightings += len(transition.sightings)
        outcome.sightings += transition.sightings
    return outcome


@dataclass(slots=True)
class LinkBatchOutcome:
    """What a batch of link sightings changed: link states to persist, and flags in
    detection order with the sighting that raised each."""

    touched: dict[str, LinkState] = field(default_factory=dict)
    flags: list[tuple[Flag, LinkSighting]] = field(default_factory=list)


def apply_link_batch(
    sightings: Sequence[LinkSighting],
    states: MutableMapping[str, LinkState],
    config: DetectionConfig,
    tally: Tally,
    clock: Callable[[], int] = time.time_ns,
) -> LinkBatchOutcome:
    """Apply link sightings in order. `states` holds the loaded link states by key (missing =
    new) and is updated in place. Duplicate sightings change nothing and touch nothing."""
    outcome = LinkBatchOutcome()
    for sighting in sightings:
        transition = apply_link(states.get(sighting.link), sighting, config, clock)
        states[sighting.link] = transition.state
        if transition.duplicate:
            continue
        outcome.touched[sighting.link] = transition.state
        for flag in transition.flags:
            tally.count_flag(flag)
            outcome.flags.append((flag, sighting))
    return outcome
