"""What the worker records, as an interface: its batch step, and the `on_corrupt` callbacks of
its state stores (`bordermon.processor.worker.open_stores`), are handed a recorder
(`PrometheusRecorder` of `bordermon.metrics` in the worker, a double in tests) instead of
reaching for the metric globals, so what they record is tested like everything else they do."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Protocol

from bordermon.core.crossing import CrossingEvent
from bordermon.core.flag import Flag


class Recorder(Protocol):
    def batch(self, stage: str, size: int, seconds: float) -> None:
        """One batch of `size` messages went through `stage` in `seconds`."""

    def rejects(self, reasons: Iterable[str], *, dead_lettered: bool) -> None:
        """Messages refused, one reason each (dead-lettered by the worker, not by replay)."""

    def events(self, events: Iterable[CrossingEvent]) -> None:
        """Valid crossings applied."""

    def duplicates(self, count: int) -> None: ...

    def flags(self, flags: Sequence[tuple[Flag, float | None]]) -> None:
        """Flags acknowledged by the flags topic (a batch's), each with how long after its
        scan (None when the scan's time is unknown)."""

    def store_unavailable(self) -> None:
        """The state store could not be reached; the batch is retried."""

    def save_refused(self, reason: str, count: int = 1) -> None:
        """A save refused by the single-writer checks: `fenced` or `conflict`."""

    def state_quarantined(self, store: str) -> None:
        """A stored state of `store` (`consignments`, `links`) could not be decoded: it was
        treated as absent and its raw bytes quarantined."""

    def round_trip(self, operation: str) -> AbstractContextManager[object]:
        """Times one store round trip (`load`, `save`)."""
