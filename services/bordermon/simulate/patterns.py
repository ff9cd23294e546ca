"""The patterns: what happens to the goods of one draw, as plans of scans (no JSON here).

A draw of a pattern gives one or more `Plan`s, one per consignment: its scans (`Leg`s, in event
time), its goods (the same lines at every scan of the consignment) and, for SPEC section 4.2,
the containers, seals and goods batches it shares with the other consignments of the draw.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

from bordermon.simulate.ids import Ids
from bordermon.simulate.reference import (
    ALL_OFFSETS,
    CONCERN,
    DEST_CUM,
    DEST_NAMES,
    KZ_EXPORT_ITEMS,
    LOW_ITEMS,
    ORIGIN_CUM,
    ORIGIN_NAMES,
    Item,
    Reference,
    cumulative,
)
from bordermon.simulate.spec import DAY, HOUR, SECOND, SimulationSpec


class Leg(NamedTuple):
    """One scan of a plan."""

    t: int  # instant, microseconds since the epoch (UTC)
    entry: bool
    country: str  # the other side: from_country of an entry, to_country of an exit
    exact: bool = False  # True: keep t as is (no sub-second jitter), boundary cases
    offset: tuple[int, str] | None = None  # forced offset (boundary cases)
    force_fraction: bool = False
    container: str | None = None  # transport.container_id as written (a shared link key)
    seal: str | None = None  # transport.seal_id as written (a shared link key)
    permit: bool | None = None  # an exit's permit_id: None leaves it to the plan's policy


@dataclass(slots=True)
class Plan:
    """One consignment: its case (a finer name than the pattern), scans and goods."""

    case: str
    legs: list[Leg]
    codes: list[str]  # digits of the goods lines, 6, 8 or 10 of them
    batches: list[str | None] = field(default_factory=list)  # batch_id per line, as written
    permit_share: float = 0.15  # chance that an exit to RU carries a permit_id


#: The cases of the `relabel` pattern, weighted. Flagged (relabel-to-ru): container, seal,
#: batch, spelled, two-keys, two-entries, window-edge. Not flagged: the others.
RELABEL_CASES: Final[tuple[tuple[str, float], ...]] = (
    ("container", 4),  # B leaves with A's container, shared HS-6, inside the window
    ("spelled", 2),  # ... the container written with another case, spaces and dashes
    ("seal", 2),  # ... A's seal (upper-cased, spaces removed: "kz 123456" is KZ123456)
    ("batch", 3),  # ... A's goods batch (RNPT), sometimes with surrounding spaces
    ("two-keys", 2),  # container and batch both shared: two flags for B
    ("two-entries", 1),  # A1 and A2 entered with the same container; the latest is reported
    ("window-edge", 1),  # dwell exactly the relabel window: flagged (inclusive)
    ("beyond-window", 1),  # dwell over the relabel window (by 1 s or days): not flagged
    ("no-shared-hs6", 1),  # A's batch and seal, but no HS-6 in common: not flagged
    ("seal-dash", 1),  # the seal written "KZ-123456": another key (dashes count): not flagged
    ("russian-origin", 1),  # A came from RU: not a qualifying entry, not flagged
    ("not-russia", 1),  # B leaves for KG with A's container: not a qualifying exit
)
#: The cases of `controlled-export`: CHPL tier 1/2 goods (the default export-control list).
CONTROLLED_CASES: Final[tuple[tuple[str, float], ...]] = (
    ("no-permit", 4),  # exit to RU without a permit_id: flagged export-without-permit
    ("permit", 3),  # with a permit_id: not flagged
    ("one-unpermitted", 2),  # two exits to RU, one with a permit, one without: flagged
    ("not-russia", 1),  # controlled goods to KG without a permit: not flagged
    ("tier-3-4", 1),  # tier 3/4 goods only: off the default list, not flagged
)

#: Which of A's link keys B's exit carries, per relabel case: container, seal, batch.
_RELABEL_SHARES: Final[dict[str, str]] = {
    "container": "c", "spelled": "c", "seal": "s", "batch": "b", "two-keys": "cb",
    "two-entries": "c", "window-edge": "c", "beyond-window": "c", "no-shared-hs6": "sb",
    "seal-dash": "s", "russian-origin": "c", "not-russia": "c",
}  # fmt: skip

_GOODS_COUNT_CUM: Final = (0.72, 0.88, 0.94, 0.97)  # P(1 line) = 72 %, ..., P(5 lines) = 3 %


def transit_flagged(legs: Sequence[Leg], window_us: int) -> bool:
    """SPEC section 4.1 by brute force over all (entry, exit) pairs of one consignment."""
    for e in legs:
        if not e.entry or e.country == CONCERN:
            continue
        for x in legs:
            if not x.entry and x.country == CONCERN and 0 <= x.t - e.t <= window_us:
                return True
    return False


class Goods:
    """Draws the codes (digits) a consignment carries."""

    def __init__(self, rng: random.Random, ref: Reference) -> None:
        self.r = rng.random
        self.ref = ref

    def _pick(self, items: Sequence[Any]) -> Any:
        return items[int(self.r() * len(items))]

    def digits(self, item: Item) -> str:
        suffix = self.r()  # national subheadings: 6, 8 or 10 digits
        if suffix < 0.3:
            return item.hs6
        if suffix < 0.75:
            return f"{item.hs6}{int(self.r() * 100):02d}"
        return f"{item.hs6}{int(self.r() * 10000):04d}"

    def draw(self, pattern: str, profile: float | None = None) -> list[str]:
        """1-5 lines: tier 1/2 goods in 22 %, tier 3/4 in 25 % (or as `profile` says)."""
        r, pick, ref = self.r, self._pick, self.ref
        count = 1 + bisect.bisect_right(_GOODS_COUNT_CUM, r())  # mostly one line, up to 5
        if pattern == "export-only" and r() < 0.8:
            items = [pick(KZ_EXPORT_ITEMS) for _ in range(count)]
        else:
            draw = r() if profile is None else profile
            items = [pick(LOW_ITEMS) for _ in range(count)]
            if draw < 0.22:  # at least one tier 1/2 code
                items[int(r() * count)] = pick(ref.high)
                if count > 1 and r() < 0.5:
                    items[int(r() * count)] = pick(ref.medium + ref.high)
            elif draw < 0.47:  # at least one tier 3/4 code, none of tier 1/2
                items[int(r() * count)] = pick(ref.medium)
        return [self.digits(item) for item in items]

    def related(self, codes: Sequence[str]) -> list[str]:
        """Relabelled goods: some of the same HS-6 (other national digits), maybe one more line."""
        r = self.r
        kept = [code for code in codes if r() < 0.7] or [codes[int(r() * len(codes))]]
        out = [self.digits(self.ref.items[code[:6]]) for code in kept]
        if r() < 0.3:
            out.extend(self.unrelated(codes, 1))
        return out

    def unrelated(
        self, codes: Sequence[str], count: int | None = None, listed: bool = True
    ) -> list[str]:
        """Goods that share no HS-6 with `codes` (off the CHPL unless `listed`)."""
        taken = {code[:6] for code in codes}
        choices = (*LOW_ITEMS, *self.ref.high) if listed else LOW_ITEMS
        pool = [item for item in choices if item.hs6 not in taken]
        n = count if count is not None else 1 + int(self.r() * 2)
        return [self.digits(self._pick(pool)) for _ in range(n)]


class Patterns:
    """The pattern builders of a run: `draw(pattern, t0)` gives its plans, scans at or after t0."""

    def __init__(self, spec: SimulationSpec, rng: random.Random, ref: Reference, ids: Ids):
        self.r = rng.random
        self.ref = ref
        self.ids = ids
        self.goods = Goods(rng, ref)
        self.window = spec.window_us
        self.relabel_window = spec.relabel_window_us
        self.relabel_names, self.relabel_cum = cumulative(RELABEL_CASES)
        self.controlled_names, self.controlled_cum = cumulative(CONTROLLED_CASES)
        single: dict[str, Callable[[int], list[Leg]]] = {
            "transit": self._transit,
            "re-export": self._reexport,
            "slow": self._slow,
            "boundary": self._boundary,
            "export-only": self._export_only,
            "ru-return": self._ru_return,
            "other-destination": self._other_destination,
            "re-entry": self._reentry,
            "import-only": self._import_only,
        }
        self.single = single
        self.multi: dict[str, Callable[[int], list[Plan]]] = {
            "relabel": self._relabel,
            "container-reuse": self._container_reuse,
            "controlled-export": self._controlled_export,
        }

    #: The most consignments one draw of a pattern makes.
    SIZES: Final = {"relabel": 3, "container-reuse": 2}

    def draw(self, pattern: str, t0: int) -> list[Plan]:
        build = self.single.get(pattern)
        if build is None:
            return self.multi[pattern](t0)
        legs = build(t0)
        codes = self.goods.draw(pattern)
        batches: list[str | None] = [None] * len(codes)
        if legs[0].entry and self.r() < 0.25:  # an import registered with batch numbers
            batches = [self.ids.batch(t0, n) for n in range(1, len(codes) + 1)]
        return [Plan(pattern, legs, codes, batches)]

    # -- helpers -----------------------------------------------------------------------------

    def _uniform(self, low: int, high: int) -> int:
        """A whole-second offset in [low, high] (microseconds in, microseconds out).

        With a short window a range can come out empty (high < low): then it is just low.
        """
        low_s = low // SECOND
        span = max(0, high // SECOND - low_s)
        return (low_s + int(self.r() * (span + 1))) * SECOND

    def _pick(self, items: Sequence[Any]) -> Any:
        return items[int(self.r() * len(items))]

    def origin(self) -> str:
        return ORIGIN_NAMES[bisect.bisect_right(ORIGIN_CUM, self.r() * ORIGIN_CUM[-1])]

    def other_destination(self) -> str:
        return DEST_NAMES[bisect.bisect_right(DEST_CUM, self.r() * DEST_CUM[-1])]

    def _case(self, names: tuple[str, ...], cum: list[float]) -> str:
        return names[bisect.bisect_right(cum, self.r() * cum[-1])]

    # -- one consignment each ----------------------------------------------------------------

    def _transit(self, t0: int) -> list[Leg]:
        dwell = self._uniform(DAY, min(7 * DAY, self.window - HOUR))
        return [Leg(t0, True, self.origin()), Leg(t0 + dwell, False, CONCERN)]

    def _reexport(self, t0: int) -> list[Leg]:
        low = min(8 * DAY, self.window // 2)
        dwell = self._uniform(low, self.window - HOUR)
        legs = [Leg(t0, True, self.origin()), Leg(t0 + dwell, False, CONCERN)]
        if self.r() < 0.2:  # part of the lot left earlier for a neighbour
            legs.append(Leg(t0 + dwell // 2, False, self.other_destination()))
        return legs

    def _slow(self, t0: int) -> list[Leg]:
        dwell = self._uniform(self.window + HOUR, self.window + 45 * DAY)
        return [Leg(t0, True, self.origin()), Leg(t0 + dwell, False, CONCERN)]

    def _edge_pair(self, t0: int, delta: int, entry_country: str, exit_country: str) -> list[Leg]:
        """An entry and an exit `delta` apart exactly, the two scans in different offsets."""
        entry_offset = self._pick(ALL_OFFSETS)
        exit_offset = self._pick([o for o in ALL_OFFSETS if o[1] != entry_offset[1]])
        fraction = self.r() < 0.3
        entry_t = t0 + (250_000 if fraction else 0) + self._uniform(0, 12 * HOUR)
        if delta < 0:  # keep every leg at or after t0
            entry_t += SECOND
        return [
            Leg(entry_t, True, entry_country, True, entry_offset, fraction),
            Leg(entry_t + delta, False, exit_country, True, exit_offset, fraction),
        ]

    def _boundary(self, t0: int) -> list[Leg]:
        """Dwell right at the edges of [0, window]."""
        delta: int = self._pick(
            (
                self.window,  # exactly the window: flagged (inclusive)
                self.window,
                self.window + SECOND,  # one second too late: not flagged
                self.window + SECOND,
                self.window + 1000,  # one millisecond too late: not flagged
                self.window - SECOND,  # one second inside: flagged
                0,  # same instant: flagged (inclusive at 0)
                -SECOND,  # exit one second before the entry: not flagged
            )
        )
        return self._edge_pair(t0, delta, self.origin(), CONCERN)

    def _export_only(self, t0: int) -> list[Leg]:
        r = self.r
        first = CONCERN if r() < 0.55 else self.other_destination()
        legs = [Leg(t0, False, first)]
        if r() < 0.2:
            second = CONCERN if first != CONCERN else self.other_destination()
            legs.append(Leg(t0 + self._uniform(HOUR, 10 * DAY), False, second))
        return legs

    def _ru_return(self, t0: int) -> list[Leg]:
        dwell = self._uniform(HOUR, min(20 * DAY, self.window))
        return [Leg(t0, True, CONCERN), Leg(t0 + dwell, False, CONCERN)]

    def _other_destination(self, t0: int) -> list[Leg]:
        dwell = self._uniform(HOUR, min(25 * DAY, self.window))
        return [Leg(t0, True, self.origin()), Leg(t0 + dwell, False, self.other_destination())]

    def _reentry(self, t0: int) -> list[Leg]:
        """3-6 alternating crossings; goods often come back from where they went."""
        r = self.r
        legs: list[Leg] = []
        t = t0
        entry = r() < 0.75
        previous: str | None = None
        for _ in range(3 + int(r() * 4)):
            if entry:
                if previous is not None and r() < 0.5:
                    country = previous
                elif r() < 0.15:
                    country = CONCERN
                else:
                    country = self.origin()
                legs.append(Leg(t, True, country))
            else:
                previous = CONCERN if r() < 0.45 else self.other_destination()
                legs.append(Leg(t, False, previous))
            entry = not entry
            t += self._uniform(12 * HOUR, 25 * DAY)
        return legs

    def _import_only(self, t0: int) -> list[Leg]:
        r = self.r
        origin = CONCERN if r() < 0.1 else self.origin()
        legs = [Leg(t0, True, origin)]
        if r() < 0.15:  # the second half of the lot
            legs.append(Leg(t0 + self._uniform(HOUR, 5 * DAY), True, origin))
        return legs

    # -- several consignments: SPEC section 4.2 -----------------------------------------------

    def _spelled_container(self, container: str) -> str:
        """The same container as another clerk types it: mscu 123456-7, MSCU-1234567..."""
        owner, serial, check = container[:4], container[4:10], container[10:]
        spelled: str = self._pick(
            (
                container.lower(),
                f"{owner} {serial}-{check}",
                f"{owner.lower()} {serial} {check}",
                f"{owner}-{serial}-{check}",
                f" {owner}{serial}{check}",
                f"{owner} {serial[:3]} {serial[3:]} {check}",
            )
        )
        return spelled

    def _relabel(self, t0: int) -> list[Plan]:
        """Consignment A enters with a container, seal and batches; B leaves with some of them."""
        case = self._case(self.relabel_names, self.relabel_cum)
        goods = self.goods
        entry_codes = goods.draw("relabel", profile=self.r() * 0.5)  # mostly listed goods
        if case == "no-shared-hs6":
            exit_codes = goods.unrelated(entry_codes)
        else:
            exit_codes = goods.related(entry_codes)
        entry, exit_ = self._relabel_legs(case, t0)
        container, seal = self.ids.container(), self.ids.seal()
        # The importer's declaration registers every line; the seal is not always scanned.
        batches: list[str | None] = [self.ids.batch(t0, n) for n in range(1, len(entry_codes) + 1)]
        shared = _RELABEL_SHARES[case]
        entry = entry._replace(
            container=container, seal=seal if "s" in shared or self.r() < 0.7 else None
        )
        exit_batches: list[str | None] = [None] * len(exit_codes)
        if "b" in shared:
            batch = batches[0]
            assert batch is not None
            exit_batches[0] = self._pick((batch, batch, f" {batch} ", f"{batch} "))
        exit_ = exit_._replace(
            container=self._exit_container(case, container) if "c" in shared else None,
            seal=self._exit_seal(case, seal) if "s" in shared else None,
        )
        plans = [
            Plan("relabel-entry", [entry], entry_codes, batches),
            Plan(f"relabel-{case}", [exit_], exit_codes, exit_batches, permit_share=0.3),
        ]
        if case == "two-entries":  # the container came back with A2's lot, same supplier
            gap = self._uniform(DAY, max(DAY, (exit_.t - entry.t) // 2))
            second = Leg(entry.t + gap, True, self.origin(), container=container)
            no_batches: list[str | None] = [None] * len(entry_codes)
            plans.insert(1, Plan("relabel-entry", [second], list(entry_codes), no_batches))
        return plans

    def _relabel_legs(self, case: str, t0: int) -> tuple[Leg, Leg]:
        """A's entry and B's exit: weeks apart inside the window, at its edge, or beyond it."""
        wr = self.relabel_window
        origin = CONCERN if case == "russian-origin" else self.origin()
        destination = self.other_destination() if case == "not-russia" else CONCERN
        if case == "window-edge":
            entry, exit_ = self._edge_pair(t0, wr, origin, destination)
            return entry, exit_
        if case == "beyond-window":
            dwell = wr + self._pick((SECOND, SECOND, self._uniform(DAY, 20 * DAY)))
        else:
            dwell = self._uniform(min(7 * DAY, wr // 2), wr - HOUR)
        return Leg(t0, True, origin), Leg(t0 + dwell, False, destination)

    def _exit_container(self, case: str, container: str) -> str:
        if case == "spelled" or self.r() < 0.4:
            return self._spelled_container(container)
        return container

    def _exit_seal(self, case: str, seal: str) -> str:
        """The seal as B's clerk writes it: with a dash it is another key (SPEC removes spaces)."""
        if case == "seal-dash":
            return f"{seal[:2]}-{seal[2:]}"
        spelled: str = self._pick((seal, seal, seal.lower(), f"{seal[:2]} {seal[2:]}"))
        return spelled

    def _container_reuse(self, t0: int) -> list[Plan]:
        """The same container, emptied, later carries unrelated goods to RU: not flagged."""
        goods, container = self.goods, self.ids.container()
        entry_codes = goods.draw("container-reuse")
        entry = Leg(t0, True, self.origin(), container=container)
        dwell = self._uniform(DAY, self.relabel_window - HOUR)
        spelled = container if self.r() < 0.5 else self._spelled_container(container)
        exit_ = Leg(t0 + dwell, False, CONCERN, container=spelled)
        batches: list[str | None] = [None] * len(entry_codes)
        return [
            Plan("container-reuse-entry", [entry], entry_codes, batches),
            Plan("container-reuse-exit", [exit_], goods.unrelated(entry_codes), []),
        ]

    def _controlled_export(self, t0: int) -> list[Plan]:
        """Listed dual-use goods leaving Kazakhstan, with or without an export permit."""
        case = self._case(self.controlled_names, self.controlled_cum)
        goods = self.goods
        if case == "tier-3-4":
            codes = goods.digits(self._pick(self.ref.medium))
        else:
            codes = goods.digits(self._pick(self.ref.high))
        lines = [codes, *goods.unrelated([codes], int(self.r() * 2), listed=False)]
        if case == "one-unpermitted":
            later = t0 + self._uniform(HOUR, 10 * DAY)
            first_permitted = self.r() < 0.5
            legs = [
                Leg(t0, False, CONCERN, permit=first_permitted),
                Leg(later, False, CONCERN, permit=not first_permitted),
            ]
        elif case == "not-russia":
            legs = [Leg(t0, False, self.other_destination(), permit=False)]
        else:
            legs = [Leg(t0, False, CONCERN, permit=case == "permit")]
        if self.r() < 0.4:  # imported first, a month or more before: no transit flag
            legs.insert(0, Leg(t0 - self._uniform(self.window + DAY, 2 * self.window), True, "CN"))
            legs = [leg._replace(t=leg.t - legs[0].t + t0) for leg in legs]
        return [Plan(f"controlled-{case}", legs, lines, [None] * len(lines))]
