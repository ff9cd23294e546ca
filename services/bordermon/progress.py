"""A one-line progress meter for long commands (replay, simulate, publish).

It writes only when its stream is a terminal, so pipes and CI logs stay clean, and at most
twice a second, so it costs nothing on the hot path.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import IO


class Progress:
    """`label: 12,345 events (6,789/s) <detail>` rewritten in place on stderr."""

    def __init__(
        self,
        label: str,
        unit: str = "events",
        stream: IO[str] | None = None,
        every_s: float = 0.5,
    ) -> None:
        self.stream = sys.stderr if stream is None else stream
        self.enabled = self.stream.isatty()
        self.label, self.unit, self.every_s = label, unit, every_s
        self.started = self.last = time.monotonic()
        self.shown = False

    def update(self, count: int, detail: str | Callable[[], str] = "") -> None:
        """Show `count`; `detail` may be a callable so it is only built when shown."""
        now = time.monotonic()
        if not self.enabled or now - self.last < self.every_s:
            return
        self.last = now
        rate = count / max(now - self.started, 1e-9)
        text = detail() if callable(detail) else detail
        self.stream.write(
            f"\r{self.label}: {count:,} {self.unit} ({rate:,.0f}/s) {text}".rstrip() + "\x1b[K"
        )
        self.stream.flush()
        self.shown = True

    def done(self) -> None:
        """Clear the line, so the summary that follows starts clean."""
        if self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.shown = False
