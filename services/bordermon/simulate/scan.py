"""One scan as a crossing/1 JSON object: goods lines, checkpoint, time text, transport, permit."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from typing import Any, Final

from bordermon.simulate.ids import Ids
from bordermon.simulate.patterns import Leg, Plan
from bordermon.simulate.reference import (
    CONCERN,
    MONITORED,
    ROUTES,
    Checkpoint,
    Reference,
    format_hs,
)
from bordermon.simulate.spec import SECOND

_AIRLINES: Final = ("KC", "CZ", "TK", "EK", "LH")
_LETTERS: Final = "ABCDEFHKLMNPRSTUXZ"
_LETTER_TRIPLES: Final = tuple(a + b + c for a in _LETTERS for b in _LETTERS for c in _LETTERS)
# Precomputed text: formatting is a large share of the cost of a line.
_MINUTES_SECONDS: Final = tuple(f"{m:02d}:{s:02d}" for m in range(60) for s in range(60))

_EXTRA_FIELDS: Final[tuple[dict[str, Any], ...]] = (
    {"x_scanner_firmware": "4.2.1"},
    {"operator_note": "re-scanned after seal check"},
    {"x_trace": {"gateway": "ala-gw-1", "hop": 2}},
    {"priority": None},
    {"images": ["img-0001.jpg", "img-0002.jpg"]},
)


class Scans:
    """Renders the scans of a run; draws only `random()` on hot paths (cheap, deterministic)."""

    def __init__(self, rng: random.Random, ref: Reference, ids: Ids, schema_omitted_rate: float):
        self.r = rng.random
        self.ref = ref
        self.ids = ids
        self.schema_omitted_rate = schema_omitted_rate
        self.hours: dict[int, str] = {}  # local hour number -> "YYYY-MM-DDTHH:" (a cache)

    def _pick(self, items: Sequence[Any]) -> Any:
        return items[int(self.r() * len(items))]

    # -- goods -----------------------------------------------------------------------------------

    def goods(self, plan: Plan) -> list[dict[str, Any]]:
        """The plan's lines as written: codes in a clerk's style, description, value, batch."""
        r = self.r
        lines = []
        for n, digits in enumerate(plan.codes):
            item = self.ref.items[digits[:6]]
            line: dict[str, Any] = {"hs_code": format_hs(digits, self._hs_style())}
            if r() >= 0.08:
                line["description"] = item.description
            optional = r()
            if optional >= 0.05:
                low, high = item.price
                line["value_usd"] = 0 if r() < 0.02 else round(low + r() * (high - low), 2)
            if optional < 0.05 or optional >= 0.15:
                if item.unit == "pcs":
                    line["quantity"] = 1 + int(r() * 5000)
                else:
                    line["quantity"] = round(10 + r() * 20_000, 1)
                line["unit"] = item.unit
            batch = plan.batches[n] if n < len(plan.batches) else None
            if batch is not None:
                line["batch_id"] = batch
            lines.append(line)
        return lines

    def _hs_style(self) -> int:
        """0: 85423190, 1: 8542.31.90, 2: 8542 31 90."""
        draw = self.r()
        return 0 if draw < 0.7 else 1 if draw < 0.9 else 2

    def restyled(self, codes: list[str], lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The same lines with the codes written another way, as another clerk would."""
        return [
            {**line, "hs_code": format_hs(digits, self._hs_style())}
            for digits, line in zip(codes, lines, strict=True)
        ]

    # -- one scan --------------------------------------------------------------------------------

    def _checkpoint(self, country: str) -> Checkpoint:
        by_neighbour = self.ref.by_neighbour
        points = by_neighbour.get(country)
        if points is None:
            route = self._pick(ROUTES.get(country, ("*",)))
            points = by_neighbour.get(route) or by_neighbour["*"]
        point: Checkpoint = self._pick(points)
        return point

    def event(
        self, consignment_id: str, plan: Plan, leg: Leg, goods: list[dict[str, Any]]
    ) -> dict[str, Any]:
        r = self.r
        point = self._checkpoint(leg.country)
        offsets = point.offsets
        offset = leg.offset or offsets[int(r() * len(offsets))]
        if leg.entry:
            source, target = leg.country, MONITORED
        else:
            source, target = MONITORED, leg.country
        if r() < 0.01:  # lowercase codes are accepted and upper-cased
            source, target = source.lower(), target.lower()
        event: dict[str, Any] = {}
        if r() >= self.schema_omitted_rate:
            event["schema"] = "crossing/1"
        event["event_id"] = self.ids.uuid()
        event["consignment_id"] = consignment_id
        event["checkpoint"] = point.code
        event["from_country"] = source
        event["to_country"] = target
        event["observed_at"] = self.time(leg.t, offset, leg.force_fraction or r() < 0.02)
        event["goods"] = goods
        draw = r()
        if leg.entry and draw < 0.2:  # "for domestic use" or an EAEU neighbour, on paper
            event["declared_destination"] = self._pick(("KZ", "KZ", "KZ", "KG", "AM", "UZ"))
        elif not leg.entry and draw < 0.08:
            event["declared_destination"] = leg.country
        if not leg.entry:
            permit = leg.permit
            if permit is None:
                permit = leg.country == CONCERN and r() < plan.permit_share
            if permit:
                event["permit_id"] = self.ids.permit(leg.t)
        if leg.container is not None or leg.seal is not None:
            event["transport"] = self._transport(point.mode, leg.container, leg.seal)
        elif r() < 0.6:
            event["transport"] = self._transport(point.mode, None, None)
        if r() < 0.4:
            scanners = point.scanner_ids
            event["scanner_id"] = scanners[int(r() * len(scanners))]
        if r() < 0.02:  # unknown fields are kept and ignored
            event.update(self._pick(_EXTRA_FIELDS))
        return event

    def time(self, t_us: int, offset: tuple[int, str], force_fraction: bool) -> str:
        """RFC 3339 for instant `t_us` in local time at `offset`, exact to the microsecond.

        Seconds are always written; fractions only when the instant has them (3 or 6 digits,
        never losing precision) or when asked. The "YYYY-MM-DDTHH:" prefix is cached per local
        hour: formatting dates is a large share of the cost of a line.
        """
        seconds, micro = divmod(t_us + offset[0] * 60 * SECOND, SECOND)
        hour, rest = divmod(seconds, 3600)
        prefix = self.hours.get(hour)
        if prefix is None:
            if len(self.hours) > 100_000:
                self.hours.clear()
            tm = time.gmtime(hour * 3600)
            prefix = f"{tm.tm_year:04d}-{tm.tm_mon:02d}-{tm.tm_mday:02d}T{tm.tm_hour:02d}:"
            self.hours[hour] = prefix
        text = prefix + _MINUTES_SECONDS[rest]
        if micro % 1000:
            text += f".{micro:06d}"
        elif micro or force_fraction:
            text += f".{micro // 1000:03d}"
        return text + offset[1]

    def _transport(self, mode: str, container: str | None, seal: str | None) -> dict[str, Any]:
        """Vehicle, and a container and seal: the given (shared) ones, or fresh unique ones."""
        r = self.r
        triples = _LETTER_TRIPLES
        n = len(triples)
        out: dict[str, Any] = {"mode": mode}
        if mode == "road":
            plate = triples[int(r() * n)]
            out["vehicle_id"] = f"{100 + int(r() * 900)}{plate}{1 + int(r() * 20):02d}"
            share = 0.3
        elif mode == "rail":
            out["vehicle_id"] = f"{int(r() * 10**8):08d}"
            share = 0.8
        elif mode == "sea":
            out["vehicle_id"] = f"IMO{9_000_000 + int(r() * 1_000_000)}"
            share = 0.9
        else:
            out["vehicle_id"] = f"{self._pick(_AIRLINES)}{10 + int(r() * 990)}"
            share = 0.3
        if container is None and seal is None:
            if r() < share:
                container = self.ids.container()
            if r() < 0.5:
                seal = self.ids.seal()
        if container is not None:
            out["container_id"] = container
        if seal is not None:
            out["seal_id"] = seal
        return out
