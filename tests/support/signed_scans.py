"""Signed scans (issue 10): scanner keys made by `bordermon scanner-key new`, and the entry and
exit of a transit as the scanners registered for one checkpoint each report them."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

from bordermon.cli import main
from support.builders import crossing_line

ENTRY_CHECKPOINT = "KZ-NUR-ZHOLY"  # the entry scanner's only checkpoint
EXIT_CHECKPOINT = "KZ-TASKALA"  # the exit scanner's only checkpoint


def signed_scan_entry(consignment: str) -> bytes:
    """The entry of `consignment` (CN -> KZ, CHPL goods) at the entry scanner's checkpoint."""
    return crossing_line(
        event_id=f"{consignment}-in", consignment_id=consignment, checkpoint=ENTRY_CHECKPOINT
    )


def signed_scan_exit(consignment: str, **fields: Any) -> bytes:
    """The exit of `consignment` to RU at the exit scanner's checkpoint, with a permit: only
    transit-to-ru can flag it, and only if the exit is accepted."""
    exit_fields: dict[str, Any] = {
        "event_id": f"{consignment}-out",
        "consignment_id": consignment,
        "checkpoint": EXIT_CHECKPOINT,
        "from_country": "KZ",
        "to_country": "RU",
        "observed_at": "2024-03-05T10:00:00Z",
        "permit_id": "LIC-1",
    }
    return crossing_line(**(exit_fields | fields))


def make_key(tmp_path: Path, scanner_id: str, checkpoints: str) -> tuple[Path, str]:
    """`bordermon scanner-key new`: the key file and the registry line it printed."""
    out = tmp_path / f"{scanner_id}.key"
    command = ["scanner-key", "new", "--scanner-id", scanner_id, "--checkpoints", checkpoints]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main([*command, "--out", str(out)]) == 0
    return out, printed.getvalue().strip()
