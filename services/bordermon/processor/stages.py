"""The two processing stages of the worker, as `BatchProcessor` drives them.

A stage says how to read its topic's messages, which state key an item belongs to, and how a
batch of items changes states (the pure core does the work). The processor around it does
the I/O in the order SPEC §6 needs, identically for both:

- `ConsignmentStage` reads the crossings topic (keyed by consignment id): validation, the
  per-consignment rules (`transit-to-ru`, `export-without-permit`), and, for `relabel-to-ru`,
  one link sighting per link key of each qualifying crossing, forwarded to the links topic;
- `LinkStage` reads the links topic (keyed by link key: container, seal or goods batch) and
  matches entries and exits of different consignments through the same key.

`replay` runs the same core functions in-process (`bordermon.replay`), so there is one copy of
the logic.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, NamedTuple, Protocol, TypeVar

from bordermon.core.config import DetectionConfig
from bordermon.core.flag import Flag
from bordermon.core.link import LinkState
from bordermon.core.pipeline import (
    INTERNAL_ERROR,
    Accepted,
    Message,
    Reject,
    Tally,
    apply_batch,
    apply_link_batch,
    validate_batch,
)
from bordermon.core.sighting import InvalidLinkSighting, LinkSighting, decode_link_sighting
from bordermon.core.sighting import encode_link_sighting as encode_sighting
from bordermon.core.signatures import ScannerRegistry
from bordermon.core.state import ConsignmentState
from bordermon.processor.recorder import Recorder


class Forward(NamedTuple):
    """A record for the next stage's topic; keeps the scan's Kafka timestamp, so that the next
    stage measures scan-to-flag latency from the scan, not from the hand-over."""

    key: bytes
    value: bytes
    timestamp_ms: int | None


class Pending(Protocol):
    """A state that holds flags raised but not yet acknowledged by the flags topic."""

    pending: list[Flag]


class Item(Protocol):
    @property
    def message(self) -> Message: ...


I = TypeVar("I", bound=Item)  # noqa: E741 (the item type, as in "items")
S = TypeVar("S", bound=Pending)


@dataclass(slots=True)
class StageOutcome(Generic[S]):
    """What applying a batch changed: states to save, flags with the message that raised
    each, and records for the next stage."""

    touched: dict[str, S] = field(default_factory=dict)
    flags: list[tuple[Flag, Message]] = field(default_factory=list)
    forwards: list[Forward] = field(default_factory=list)


class Stage(Protocol[I, S]):
    name: str

    def validate(
        self, messages: Sequence[Message], tally: Tally
    ) -> tuple[list[I], list[Reject]]: ...

    def key_of(self, item: I) -> str: ...

    def apply(
        self, items: Sequence[I], states: dict[str, S], tally: Tally, clock: Callable[[], int]
    ) -> StageOutcome[S]: ...

    def record(self, items: Sequence[I], recorder: Recorder) -> None:
        """Metrics of a batch that was applied (called once, after the final save)."""


class ConsignmentStage:
    name = "consignments"

    def __init__(self, config: DetectionConfig, registry: ScannerRegistry | None = None) -> None:
        """`registry`: the scanner registry when `require_signatures` is on (signed scans
        only), else None."""
        self.config = config
        self.registry = registry

    def validate(
        self, messages: Sequence[Message], tally: Tally
    ) -> tuple[list[Accepted], list[Reject]]:
        return validate_batch(messages, self.config, tally, self.registry)

    def key_of(self, item: Accepted) -> str:
        return item.event.consignment_id

    def apply(
        self,
        items: Sequence[Accepted],
        states: dict[str, ConsignmentState],
        tally: Tally,
        clock: Callable[[], int] = time.time_ns,
    ) -> StageOutcome[ConsignmentState]:
        outcome = apply_batch(items, states, self.config, tally, clock)
        # The sightings' scan times: a sighting comes from exactly one accepted event. Built
        # only when there are sightings (relabel off, or a batch without link keys: none).
        scanned_at = (
            {
                (item.event.consignment_id, item.event.event_id): item.message.timestamp_ms
                for item in items
            }
            if outcome.sightings
            else {}
        )
        return StageOutcome(
            touched=outcome.touched,
            flags=[(flag, item.message) for flag, item in outcome.flags],
            forwards=[
                Forward(
                    sighting.link.encode(),
                    encode_sighting(sighting),
                    scanned_at.get((sighting.consignment_id, sighting.sighting.event_id)),
                )
                for sighting in outcome.sightings
            ],
        )

    def record(self, items: Sequence[Accepted], recorder: Recorder) -> None:
        recorder.events(item.event for item in items)


class LinkItem(NamedTuple):
    message: Message
    sighting: LinkSighting


class LinkStage:
    name = "links"

    def __init__(self, config: DetectionConfig) -> None:
        self.config = config

    def validate(
        self, messages: Sequence[Message], tally: Tally
    ) -> tuple[list[LinkItem], list[Reject]]:
        """The links topic is bordermon's own, but its bytes are still read back from Kafka:
        anything unreadable is dead-lettered as `internal_error`, never trusted."""
        items: list[LinkItem] = []
        rejects: list[Reject] = []
        for message in messages:
            tally.read += 1
            try:
                sighting = decode_link_sighting(message.value)
            except InvalidLinkSighting as error:
                rejects.append(Reject(message, INTERNAL_ERROR, f"not a link sighting: {error}"))
                continue
            if message.check_key and message.key != sighting.link.encode():
                rejects.append(
                    Reject(
                        message,
                        INTERNAL_ERROR,
                        f"link sighting under key {message.key!r}, not {sighting.link!r}",
                    )
                )
                continue
            items.append(LinkItem(message, sighting))
        for reject in rejects:
            tally.rejected[reject.reason] += 1
        return items, rejects

    def key_of(self, item: LinkItem) -> str:
        return item.sighting.link

    def apply(
        self,
        items: Sequence[LinkItem],
        states: dict[str, LinkState],
        tally: Tally,
        clock: Callable[[], int] = time.time_ns,
    ) -> StageOutcome[LinkState]:
        outcome = apply_link_batch([i.sighting for i in items], states, self.config, tally, clock)
        message_of = {id(item.sighting): item.message for item in items}
        return StageOutcome(
            touched=outcome.touched,
            flags=[(flag, message_of[id(sighting)]) for flag, sighting in outcome.flags],
        )

    def record(self, items: Sequence[LinkItem], recorder: Recorder) -> None:
        return None  # link sightings are not crossings: counted by the consignment stage
