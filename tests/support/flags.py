"""What a run must flag, and checks of the flags it did: replay is the oracle of the stream."""

from __future__ import annotations

import io
from typing import Any

import orjson

from bordermon.core import DetectionConfig
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


def assert_flags_as_replayed(
    flags: list[dict[str, Any]], replayed: dict[str, dict[str, Any]]
) -> None:
    """Each streamed flag equals replay's flag of the same id, all but `detected_at`."""
    for flag in flags:
        expected = replayed[flag["flag_id"]]
        assert {k: v for k, v in flag.items() if k != "detected_at"} == {
            k: v for k, v in expected.items() if k != "detected_at"
        }
