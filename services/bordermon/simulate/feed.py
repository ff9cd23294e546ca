"""Delivery: lines leave in order of delivery time (event time plus a bounded lateness), some
are re-sent later byte for byte (duplicates), and now and then a malformed line slips in."""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterator

import orjson

from bordermon.simulate.ids import Ids
from bordermon.simulate.malformed import malformed
from bordermon.simulate.spec import HOUR, SECOND, SimulationSpec
from bordermon.simulate.truth import MalformedTruth, TruthRecord


class Feed:
    """A delivery-time heap of pending lines, and the line numbers of what it delivered."""

    def __init__(
        self,
        spec: SimulationSpec,
        rng: random.Random,
        ids: Ids,
        on_truth: Callable[[TruthRecord], None] | None,
        on_line: Callable[[int, bytes], None] | None,
    ) -> None:
        self.rng = rng
        self.r = rng.random
        self.ids = ids
        self.on_truth = on_truth
        self.on_line = on_line  # each valid line delivered, with its line number
        self.malformed_rate = spec.malformed_rate
        self.duplicate_rate = spec.duplicate_rate
        self.late_share = spec.late_share
        self.max_lateness = round(spec.max_lateness_s * SECOND)
        self.short_lateness = min(self.max_lateness, 120 * SECOND)
        # (delivery time, sequence, line, is_duplicate): the sequence breaks ties
        # deterministically and keeps bytes from ever being compared.
        self.heap: list[tuple[int, int, bytes, bool]] = []
        self.seq = 0
        self.line_no = 0
        self.max_delay = self.duplicate_delay(spec) - SECOND

    @staticmethod
    def duplicate_delay(spec: SimulationSpec) -> int:
        """The longest a duplicate comes after its original (microseconds)."""
        return SECOND + max(2 * SECOND, round(spec.max_lateness_s * SECOND), HOUR)

    def push(self, t: int, line: bytes) -> None:
        """A valid line of event time `t`: most scanners publish within two minutes; a share
        buffer for longer, up to the maximum lateness."""
        bound = self.max_lateness if self.r() < self.late_share else self.short_lateness
        self.seq += 1
        heapq.heappush(self.heap, (t + int(self.r() * (bound + 1)), self.seq, line, False))

    def due(self, t: int) -> bool:
        return bool(self.heap) and self.heap[0][0] <= t

    def deliver(self, until: int | None) -> Iterator[bytes]:
        """Yield the lines due by `until` (all of them with None)."""
        heap, r = self.heap, self.r
        max_delay = self.max_delay
        while heap and (until is None or heap[0][0] <= until):
            delivery, _, line, duplicate = heapq.heappop(heap)
            if not duplicate:
                if r() < self.malformed_rate:
                    self.line_no += 1
                    event = orjson.loads(line)
                    event["event_id"] = self.ids.uuid()
                    bad, reason, kind = malformed(event, self.rng)
                    if self.on_truth is not None:
                        self.on_truth(MalformedTruth(line=self.line_no, reason=reason, kind=kind))
                    yield bad
                if r() < self.duplicate_rate:  # re-sent later, byte for byte
                    self.seq += 1
                    item = (delivery + SECOND + int(r() * max_delay), self.seq, line, True)
                    heapq.heappush(heap, item)
            self.line_no += 1
            if self.on_line is not None:
                self.on_line(self.line_no, line)
            yield line
