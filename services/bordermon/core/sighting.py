"""Crossings as detection keeps them: `Sighting` (what a flag reports, SPEC §5 `entry` /
`exit`) and `LinkSighting` (a qualifying crossing seen through one link key, SPEC §4.2), with
the wire codec of the internal topic that carries link sightings between the two stages.

A link sighting holds no processing-time value (no clock, no `detected_at`): the consignment
stage may emit the same one again after a crash or on a re-read of the crossings topic, and
it must then be the very same bytes, so that the link stage sees a plain duplicate.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import orjson

from bordermon.core.crossing import (
    BATCH_KEY_PREFIX,
    CONTAINER_KEY_PREFIX,
    SEAL_KEY_PREFIX,
    CrossingEvent,
    Direction,
    normalize_hs_code,
)
from bordermon.core.timestamps import InvalidTimestamp, parse_instant


class Sighting(NamedTuple):
    """One crossing: what a flag reports of it, plus its exact instant for window arithmetic.

    It carries no consignment id: the state or flag that holds it knows whose it is, and a
    consignment's state would otherwise repeat its own id in every kept crossing.
    """

    event_id: str
    checkpoint: str
    from_country: str
    to_country: str
    observed_at: str
    instant_ns: int

    def to_public(self, consignment_id: str) -> dict[str, str]:
        """The `entry` / `exit` object of a flag (SPEC §5)."""
        return {
            "event_id": self.event_id,
            "consignment_id": consignment_id,
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
    def of(cls, event: CrossingEvent) -> Sighting:
        return cls(
            event.event_id,
            event.checkpoint,
            event.from_country,
            event.to_country,
            event.observed_at,
            event.instant_ns,
        )

    @classmethod
    def from_row(cls, row: list[Any]) -> Sighting:
        return cls(str(row[0]), str(row[1]), str(row[2]), str(row[3]), str(row[4]), int(row[5]))


def exit_rank(exit_: Sighting) -> tuple[int, str]:
    """Sort key of the reported exit: the earliest; equal instants go to the smallest
    event_id, so the choice does not depend on arrival order (SPEC §4.1-4.3)."""
    return (exit_.instant_ns, exit_.event_id)


def entry_rank(entry: Sighting) -> tuple[int, str]:
    """Sort key of the reported entry: the latest (shortest dwell), then smallest event_id."""
    return (-entry.instant_ns, entry.event_id)


ENTRY = Direction.ENTRY.value
EXIT = Direction.EXIT.value
LINK_SIGHTING_VERSION = 1
_LINK_PREFIXES = (CONTAINER_KEY_PREFIX, SEAL_KEY_PREFIX, BATCH_KEY_PREFIX)


class LinkSighting(NamedTuple):
    """A qualifying entry or exit of one consignment, seen through one link key.

    `hs_codes` are the event's goods lines in line order: relabel severity counts the lines
    whose HS-6 the entry and the exit share.
    """

    link: str
    consignment_id: str
    direction: str  # ENTRY or EXIT
    sighting: Sighting
    hs_codes: tuple[str, ...]
    declared_destination: str | None

    def to_row(self) -> list[Any]:
        """Positional form without the link key (the state or message around it has it)."""
        return [
            self.consignment_id,
            self.direction,
            self.sighting.to_row(),
            list(self.hs_codes),
            self.declared_destination,
        ]

    @classmethod
    def from_row(cls, link: str, row: object) -> LinkSighting:
        """Inverse of `to_row`, checking every part: rows come back from Kafka and Redis.

        Raises ValueError (or TypeError, LookupError) on anything malformed.
        """
        if type(row) is not list or len(row) != 5:
            raise ValueError("a link sighting row is a list of 5 items")
        consignment_id, direction, sighting_row, hs_codes, declared = row
        _check_text(consignment_id, "consignment_id", 128)
        if direction not in (ENTRY, EXIT):
            raise ValueError(f"direction {direction!r} is neither {ENTRY!r} nor {EXIT!r}")
        sighting = _sighting_from_untrusted(sighting_row)
        if type(hs_codes) is not list or not hs_codes:
            raise ValueError("hs_codes must be a non-empty list")
        for code in hs_codes:
            if type(code) is not str or normalize_hs_code(code) != code:
                raise ValueError(f"hs_code {code!r} is not 6-10 digits")
        if declared is not None:
            _check_text(declared, "declared_destination", 2)
        return cls(link, consignment_id, direction, sighting, tuple(hs_codes), declared)


class InvalidLinkSighting(ValueError):
    """Bytes on the links topic that are not a link sighting this version wrote."""


def encode_link_sighting(sighting: LinkSighting) -> bytes:
    """Compact JSON array `[version, link, consignment_id, direction, sighting, codes,
    declared]`; deterministic, so re-emitting a sighting gives identical bytes."""
    return orjson.dumps([LINK_SIGHTING_VERSION, sighting.link, *sighting.to_row()])


def decode_link_sighting(raw: bytes) -> LinkSighting:
    """Read a link sighting back from Kafka, trusting nothing in it."""
    try:
        doc = orjson.loads(raw)
        if type(doc) is not list or len(doc) != 7:
            raise ValueError("expected a JSON array of 7 items")
        if type(doc[0]) is not int or doc[0] != LINK_SIGHTING_VERSION:
            raise ValueError(f"version {doc[0]!r}, expected {LINK_SIGHTING_VERSION}")
        link = doc[1]
        check_link_key(link)
        return LinkSighting.from_row(link, doc[2:])
    except (orjson.JSONDecodeError, ValueError, TypeError, LookupError) as error:
        raise InvalidLinkSighting(f"not a link sighting: {error}") from None


def check_link_key(link: object) -> None:
    """A link key as the consignment stage makes them: a known prefix and a non-empty rest."""
    _check_text(link, "link", 256)
    if not any(str(link).startswith(p) and len(str(link)) > len(p) for p in _LINK_PREFIXES):
        raise ValueError(f"link {link!r} is not a container:, seal: or batch: key")


def _check_text(value: object, name: str, max_len: int) -> None:
    if type(value) is not str or not 1 <= len(value) <= max_len:
        raise ValueError(f"{name} must be a string of 1-{max_len} characters")


def _sighting_from_untrusted(row: object) -> Sighting:
    if type(row) is not list or len(row) != 6:
        raise ValueError("a sighting is a list of 6 items")
    for index, name in enumerate(("event_id", "checkpoint", "from_country", "to_country")):
        _check_text(row[index], name, 128)
    observed_at, instant_ns = row[4], row[5]
    _check_text(observed_at, "observed_at", 64)
    if type(instant_ns) is not int:
        raise ValueError("instant_ns must be an integer")
    try:
        exact = parse_instant(observed_at)
    except InvalidTimestamp as error:
        raise ValueError(str(error)) from None
    # The instant is what windows compare: it must be the one its text says.
    if exact != instant_ns:
        raise ValueError(f"instant {instant_ns} is not that of {observed_at!r}")
    return Sighting(row[0], row[1], row[2], row[3], observed_at, instant_ns)
