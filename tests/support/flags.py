"""What a run must flag, and checks of the flags it did: replay is the oracle of the stream."""

from __future__ import annotations

import io
from typing import Any

import orjson

from bordermon.core import DetectionConfig
from bordermon.core.rules import RULE_RELABEL
from bordermon.replay import replay
from support.builders import DEFAULT_DETECTION


def replay_flags(
    lines: list[bytes], config: DetectionConfig = DEFAULT_DETECTION
) -> dict[str, dict[str, Any]]:
    """The flags `bordermon replay` raises over `lines`, by flag id."""
    out = io.BytesIO()
    replay(io.BytesIO(b"\n".join(lines) + b"\n"), out, config)
    return {f["flag_id"]: f for f in map(orjson.loads, out.getvalue().splitlines())}


def flags_of(messages: list[Any]) -> list[dict[str, Any]]:
    """The flag documents of Kafka messages read from a flags topic."""
    return [orjson.loads(message.value()) for message in messages]


def assert_redeliveries_identical(flags: list[dict[str, Any]]) -> None:
    """SPEC §5/§6: a flag delivered again (after a crash) is the very same flag, detected_at
    included."""
    first_seen: dict[str, dict[str, Any]] = {}
    for flag in flags:
        assert first_seen.setdefault(flag["flag_id"], flag) == flag


RELABEL_FIXED = frozenset({"flag_id", "rule", "consignment_id", "exit", "link"})
"""What a relabel-to-ru flag must share with replay's. The rest (the reported entry, and what
follows from it) may differ: the pair depends on the order in which sightings from the
crossings partitions reach the link stage (docs/design.md, "Where the SPEC may be wrong")."""


def differing_fields(flag: dict[str, Any], replayed: dict[str, Any]) -> list[str]:
    """The fields in which a streamed flag differs from replay's, `detected_at` aside."""
    return sorted(
        key
        for key in {*flag, *replayed}
        if key != "detected_at" and flag.get(key) != replayed.get(key)
    )


def is_arrival_order_difference(flag: dict[str, Any], fields: list[str]) -> bool:
    """A relabel flag that reports another (valid) entry than replay: allowed."""
    return flag.get("rule") == RULE_RELABEL and not set(fields) & RELABEL_FIXED


def assert_flags_as_replayed(
    flags: list[dict[str, Any]], replayed: dict[str, dict[str, Any]]
) -> None:
    """Each streamed flag equals replay's flag of the same id, all but `detected_at` (and,
    for relabel-to-ru, all but the entry that the arrival order chose)."""
    for flag in flags:
        expected = replayed[flag["flag_id"]]
        fields = differing_fields(flag, expected)
        assert not fields or is_arrival_order_difference(flag, fields), (
            f"{flag['flag_id']} differs from replay in {fields}:\n{flag}\n{expected}"
        )
