"""The run: draws patterns on a timeline, renders their scans and hands them to the feed."""

from __future__ import annotations

import bisect
import random
import sys
from collections.abc import Callable, Iterator

import orjson

from bordermon.simulate.feed import Feed
from bordermon.simulate.ids import Ids
from bordermon.simulate.patterns import Leg, Patterns, Plan, transit_flagged
from bordermon.simulate.reference import cumulative, reference, severity
from bordermon.simulate.scan import Scans
from bordermon.simulate.spec import HOUR, SECOND, SimulationSpec
from bordermon.simulate.truth import ConsignmentTruth, GroundTruth, TruthEngine, TruthRecord


def generate(
    spec: SimulationSpec, on_truth: Callable[[TruthRecord], None] | None = None
) -> Iterator[bytes]:
    """Yield output lines (bytes, no newline) in delivery order; report truth to `on_truth`.

    Streaming: only consignments still "in flight" (lines not yet delivered) are held, and the
    truth forgets what can no longer match, so a million events need a few tens of MB. A
    consignment's record is reported when it is generated, a flag's when the line that raises
    it is yielded (just before), a malformed line's just before it is yielded. Without
    `on_truth` the lines are the same, only faster (the truth reads every line back).
    """
    return _Run(spec, on_truth).lines()


def simulate(spec: SimulationSpec) -> tuple[list[bytes], GroundTruth]:
    """Generate everything in memory: convenient for tests, not for millions of events."""
    truth = GroundTruth()
    lines = list(generate(spec, truth.add))
    return lines, truth


def truth_engine(
    spec: SimulationSpec, emit: Callable[[TruthRecord], None], forget_every: int = 50_000
) -> TruthEngine:
    """The truth of a run of `spec`: feed it the valid lines in file order."""
    ref = reference()
    horizon = max(spec.window_us, spec.relabel_window_us) + 2 * Feed.duplicate_delay(spec) + HOUR
    return TruthEngine(
        emit,
        window_us=spec.window_us,
        relabel_window_us=spec.relabel_window_us,
        horizon_us=horizon,
        tiers=ref.tiers,
        controlled=ref.controlled,
        forget_every=forget_every,
    )


class _Run:
    """One run: a seeded RNG shared, in a fixed order, by patterns, scans and the feed."""

    def __init__(self, spec: SimulationSpec, on_truth: Callable[[TruthRecord], None] | None):
        self.spec = spec
        self.on_truth = on_truth
        self.rng = random.Random(spec.seed)
        self.r = self.rng.random
        ref = reference()
        self.ref = ref
        ids = Ids(self.rng)
        self.ids = ids
        self.patterns = Patterns(spec, self.rng, ref, ids)
        self.scans = Scans(self.rng, ref, ids, spec.schema_omitted_rate)
        self.feed = Feed(spec, self.rng, ids, on_truth, None)
        if on_truth is not None:
            self.feed.on_line = truth_engine(spec, on_truth).observe
        self.pattern_names, self.pattern_cum = cumulative(spec.mix)
        self.valid_events = 0
        self.number = 0  # consignments made

    def lines(self) -> Iterator[bytes]:
        spec, feed = self.spec, self.feed
        t = int(spec.start.timestamp()) * SECOND  # draws start on whole seconds
        limit = spec.consignments if spec.consignments is not None else sys.maxsize
        # Expected output lines per generated valid event, to stop near an --events target.
        expansion = (1 + spec.duplicate_rate) * (1 + spec.malformed_rate)
        target = spec.events
        rate = 1.0 / spec.mean_interval_s
        last_start = spec.last_start_us
        while self.number < limit:
            if target is not None and self.valid_events * expansion >= target:
                break
            t += max(1, round(self.rng.expovariate(rate))) * SECOND
            if t > last_start:
                break
            # Every later draw's scans lie at or after t, and delivery >= event time, so
            # whatever is due by t can be written now: this keeps the heap small.
            if feed.due(t):
                yield from feed.deliver(t)
            self._draw(t, limit - self.number)
        yield from feed.deliver(None)

    def _pattern(self, room: int) -> str:
        """A pattern by weight; one that makes more consignments than `room` is drawn again."""
        cum = self.pattern_cum
        for _ in range(20):
            pattern = self.pattern_names[bisect.bisect_right(cum, self.r() * cum[-1])]
            if Patterns.SIZES.get(pattern, 1) <= room:
                break
        return pattern

    def _draw(self, t0: int, room: int) -> None:
        pattern = self._pattern(room)
        for plan in self.patterns.draw(pattern, t0):
            self._consignment(pattern, plan)

    def _consignment(self, pattern: str, plan: Plan) -> None:
        consignment_id = self.ids.consignment(self.number)
        self.number += 1
        legs = [self._jitter(leg) for leg in plan.legs]
        if self.on_truth is not None:
            self.on_truth(
                ConsignmentTruth(
                    consignment_id=consignment_id,
                    pattern=pattern,
                    case=plan.case,
                    flagged=transit_flagged(legs, self.spec.window_us),
                    severity=severity(plan.codes, self.ref.tiers),
                )
            )
        dumps, r, scans = orjson.dumps, self.r, self.scans
        lines = scans.goods(plan)
        for leg in legs:
            # Now and then another clerk writes the same codes another way (8542.31 vs 854231).
            goods = scans.restyled(plan.codes, lines) if r() < 0.1 else lines
            # orjson's result keeps a 4 KiB buffer; a compact copy makes pending lines ~10x smaller.
            line = bytes(memoryview(dumps(scans.event(consignment_id, plan, leg, goods))))
            self.feed.push(leg.t, line)
        self.valid_events += len(legs)

    def _jitter(self, leg: Leg) -> Leg:
        """Give a share of scans sub-second precision (ms or us), except exact boundary legs."""
        r = self.r
        if leg.exact or r() >= 0.12:
            return leg
        if r() < 0.7:
            return leg._replace(t=leg.t + (1 + int(r() * 999)) * 1000)
        return leg._replace(t=leg.t + 1 + int(r() * (SECOND - 1)))
