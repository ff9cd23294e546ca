"""Compact binary forms of what states keep: crossings, flags, codes (state format 2).

Stored state is most of bordermon's Redis memory: one value per consignment in flight, tens of
thousands of them. This module turns the values a state holds into small msgpack-ready parts
(tuples of ints, short strings and raw bytes, no field names), and back, exactly. Each part
has a compact form for what real scans look like and a plain form for anything else, so any
value round-trips and the compact forms only decide the size:

- an `event_id` that is a lowercase UUID (what scanners send) is its 16 raw bytes, else the
  text in a list of one;
- a `checkpoint` of the frozen table `CHECKPOINTS` is its index, else text;
- `observed_at` with its instant is two integers, whole seconds since the epoch and a
  `detail` that says how the scanner wrote it (offset, fraction digits, `T`/`t`), when the
  text is one `unpack_time` writes back character for character; else the text and the
  instant;
- HS codes (6-10 digits) are packed two digits a byte (`f` between codes), else text;
- a rule name of `RULES` is its index, else text.

The types below say every range and length a packed part may have, and msgspec's decoder
checks them: what it lets through, `unpack_sightings` unpacks without fail, so a state's kept
crossings can be unpacked when first used rather than when the state is read.

The tables are part of the format: entries may be appended, never changed or reordered (a
stored index must keep naming the same thing). Changing one means a new format version.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Annotated, Literal

import msgspec

from bordermon.core.flag import Flag
from bordermon.core.sighting import Sighting
from bordermon.core.watchlist import Severity

CHECKPOINTS = (
    # Kazakhstan's checkpoints as listed in core/data/checkpoints.csv when format 2 was made.
    "KZ-NUR-ZHOLY",
    "KZ-ALTYNKOL",
    "KZ-DOSTYK",
    "KZ-BAKHTY",
    "KZ-MAIKAPCHAGAI",
    "KZ-KALZHAT",
    "KZ-TASKALA",
    "KZ-AKSAI",
    "KZ-SYRYM",
    "KZ-ZHAISAN",
    "KZ-ALIMBET",
    "KZ-KAIRAK",
    "KZ-UBAGAN",
    "KZ-ZHANA-ZHOL",
    "KZ-KARAKOGA",
    "KZ-SHARBAKTY",
    "KZ-KOSAK",
    "KZ-KURMANGAZY",
    "KZ-PETROPAVL",
    "KZ-SEMIGLAVY-MAR",
    "KZ-KORDAY",
    "KZ-KARASU",
    "KZ-ZHIBEK-ZHOLY",
    "KZ-SARYAGASH",
    "KZ-TEMIR-BABA",
    "KZ-AKTAU",
    "KZ-KURYK",
    "KZ-ALMATY-AIR",
)
RULES = ("transit-to-ru", "export-without-permit", "relabel-to-ru")
_CHECKPOINT_INDEX = {name: index for index, name in enumerate(CHECKPOINTS)}
_RULE_INDEX = {name: index for index, name in enumerate(RULES)}


_CheckpointIndex = Annotated[int, msgspec.Meta(ge=0, lt=len(CHECKPOINTS))]
PackedRule = Annotated[int, msgspec.Meta(ge=0, lt=len(RULES))] | str
"""A rule as stored: its index in `RULES`, else its name."""
_Uuid = Annotated[bytes, msgspec.Meta(min_length=16, max_length=16)]
_OtherId = Annotated[list[str], msgspec.Meta(min_length=1, max_length=1)]
_TwoCodes = Annotated[str, msgspec.Meta(min_length=4, max_length=4)]
_TwoTexts = Annotated[list[str], msgspec.Meta(min_length=2, max_length=2)]

# --- observed_at and its instant: the tables ---------------------------------------------------

_NANOS = 1_000_000_000
# Zones: 'Z', 'z', then every ±hh:mm on a quarter hour from 00:00 to 23:45 ('+' then '-').
_ZONE_TEXT = ("Z", "z", *(f"{s}{q // 4:02d}:{q % 4 * 15:02d}" for q in range(96) for s in "+-"))
_ZONE_OFFSET = (0, 0, *(sign * q * 900 for q in range(96) for sign in (1, -1)))
_ZONE_CODE = {text: code for code, text in enumerate(_ZONE_TEXT)}
_ZONES = len(_ZONE_TEXT)
_FRACTION_DIGITS = 10  # 0 (no fraction) to 9
_Detail = Annotated[int, msgspec.Meta(ge=0)]


PackedSighting = tuple[
    _Uuid | _OtherId, _CheckpointIndex | str, _TwoCodes | _TwoTexts, int, _Detail | str
]
"""A `Sighting` as stored: `(event_id, checkpoint, countries, when, detail)`.

`countries` is `from_country + to_country` when both are two characters long (always, for a
validated crossing), else `[from_country, to_country]`. `detail` is an int when the time is
compact (`when` in whole seconds): how the text is written (`unpack_time`); else the
`observed_at` text (`when` in nanoseconds).
"""


class PackedFlag(msgspec.Struct, array_like=True, forbid_unknown_fields=True):
    """A pending `Flag`: its fields in order, the two crossings packed, the rule by index."""

    flag_id: str
    rule: PackedRule
    consignment_id: str
    severity: Literal["low", "medium", "high"]
    reasons: list[str]
    entry: PackedSighting | None
    exit: PackedSighting
    link: str | None
    linked_consignment_id: str | None
    dwell_seconds: int | float | None
    window_seconds: int | float | None
    hs_codes: list[str]
    detected_at: str


# --- event ids --------------------------------------------------------------------------------

_UUID_HYPHENS = slice(8, 24, 5)
"""Where a UUID's text has its hyphens: `event_id[_UUID_HYPHENS] == "----"`."""


def pack_event_id(event_id: str) -> bytes | list[str]:
    """Its 16 bytes when the id is a lowercase hyphenated UUID (the form `unpack_sightings`
    writes back), else `[event_id]`.

    No regex: 36 characters with hyphens at 8, 13, 18 and 23, whose 32 others `bytes.fromhex`
    reads as 16 bytes that `bytes.hex` writes back the same, are 32 lowercase hex digits
    (`fromhex` refuses anything else but whitespace, and `hex` writes none, nor `A`-`F`).
    """
    if len(event_id) == 36 and event_id[_UUID_HYPHENS] == "----":
        digits = event_id.replace("-", "")
        try:
            data = bytes.fromhex(digits)
        except ValueError:
            return [event_id]
        if data.hex() == digits:
            return data
    return [event_id]


# --- observed_at and its instant ---------------------------------------------------------------

_TWO_DIGITS = tuple(f"{n:02d}" for n in range(60))
_MINUTE_TEXT = tuple(f"{hour:02d}:{minute:02d}:" for hour in range(24) for minute in range(60))
"""`hh:mm:` of every minute of a day, so that writing a time of day is two look-ups."""
_DATE_LENGTH = 10  # YYYY-MM-DD
_SECONDS_END = 19  # YYYY-MM-DDTHH:MM:SS
_WHOLE_SECONDS_LENGTHS = (_SECONDS_END + 1, _SECONDS_END + 6)  # ...SS then 'Z' or '+hh:mm'
# `YYYY-MM-DD` of day numbers already met: scans cluster on few days. Bounded.
_DATES: dict[int, str] = {}
_DATES_MAX = 100_000


def pack_time(observed_at: str, instant_ns: int) -> tuple[int, int | str]:
    """`(seconds, detail)` when `unpack_time` gives `observed_at` and `instant_ns` back
    exactly, else `(instant_ns, observed_at)`. The common case (whole seconds, `T`, an offset
    of at most 15:45 or `Z`) has a detail below 128: one msgpack byte.

    The text is read only as far as its layout (zone, separator, fraction); the text written
    back from the instant is then compared with it, and only an identical text is packed: a
    leap second (:60), an impossible date or an instant that is not the text's stay as text.
    (`pack_sightings` tries the common case first, without this.)
    """
    detail = _detail_of(observed_at)
    seconds = instant_ns // _NANOS
    if detail is None or unpack_time(seconds, detail) != (observed_at, instant_ns):
        return instant_ns, observed_at
    return seconds, detail


def _detail_of(observed_at: str) -> int | None:
    """The detail of `observed_at`'s layout (zone, separator, fraction), if it has one."""
    zone = observed_at[-1:] if observed_at[-1:] in ("Z", "z") else observed_at[-6:]
    zone_code = _ZONE_CODE.get(zone)
    separator = observed_at[_DATE_LENGTH : _DATE_LENGTH + 1]
    fraction = observed_at[_SECONDS_END + 1 : -len(zone)]  # after the '.', if any
    if zone_code is None or separator not in ("T", "t"):
        return None
    if len(fraction) > 9 or (fraction and not (fraction.isascii() and fraction.isdecimal())):
        return None
    lowercase = separator == "t"
    return zone_code + _ZONES * (lowercase + 2 * (len(fraction) + 10 * int(fraction or 0)))


def unpack_time(seconds: int, detail: int) -> tuple[str, int]:
    """The `observed_at` text and the instant in nanoseconds of a compact time: the zone is
    `detail % _ZONES`; the rest says `t` (odd) or `T`, then the fraction's digits (0 to 9)
    and its value. Any detail of at least 0 gives a text (the decoder checks that much)."""
    if detail < _ZONES:  # whole seconds and 'T', nearly every scan
        return _time_text(seconds, detail), seconds * _NANOS
    zone_code, rest = detail % _ZONES, detail // _ZONES
    digits, fraction_value = (rest >> 1) % _FRACTION_DIGITS, (rest >> 1) // _FRACTION_DIGITS
    text = _time_text(
        seconds,
        zone_code,
        "t" if rest & 1 else "T",
        f".{fraction_value:0{digits}d}" if digits else "",
    )
    return text, seconds * _NANOS + fraction_value * 10 ** (9 - digits)


def _time_text(seconds: int, zone_code: int, separator: str = "T", fraction: str = "") -> str:
    """The RFC 3339 text of `seconds` since the epoch in zone `zone_code`."""
    day, second_of_day = divmod(seconds + _ZONE_OFFSET[zone_code], 86400)
    minute, second = divmod(second_of_day, 60)
    date = _DATES.get(day) or _date_text(day)
    return (
        f"{date}{separator}{_MINUTE_TEXT[minute]}{_TWO_DIGITS[second]}{fraction}"
        f"{_ZONE_TEXT[zone_code]}"
    )


def _date_text(day: int) -> str:
    """`YYYY-MM-DD` of the proleptic Gregorian date `day` days after 1970-01-01 (H. Hinnant's
    algorithm), for any day: the year is written with at least four digits, and a sign when
    negative. Remembered, while there is room, for the next time."""
    shifted = day + 719468  # days since 0000-03-01
    era = shifted // 146097
    day_of_era = shifted - era * 146097
    year_of_era = (
        day_of_era - day_of_era // 1460 + day_of_era // 36524 - day_of_era // 146096
    ) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    month_from_march = (5 * day_of_year + 2) // 153
    day_of_month = day_of_year - (153 * month_from_march + 2) // 5 + 1
    month = month_from_march + 3 if month_from_march < 10 else month_from_march - 9
    year = year_of_era + era * 400 + (month <= 2)
    date = f"{year:04d}-{month:02d}-{day_of_month:02d}"
    if len(_DATES) < _DATES_MAX:
        _DATES[day] = date
    return date


# --- sightings and flags ----------------------------------------------------------------------


def pack_sightings(sightings: Iterable[Sighting]) -> list[PackedSighting]:
    """Crossings packed. The hot path of a first save: the common time (whole seconds, `T`,
    a zone of the table) is tried here, without a call, before `pack_time`."""
    packed: list[PackedSighting] = []
    for event_id, checkpoint, from_country, to_country, observed_at, instant_ns in sightings:
        seconds, nanos = divmod(instant_ns, _NANOS)
        zone_code = (
            _ZONE_CODE.get(observed_at[_SECONDS_END:])
            if not nanos and len(observed_at) in _WHOLE_SECONDS_LENGTHS
            else None
        )
        when: int
        detail: int | str
        if zone_code is not None and observed_at == _time_text(seconds, zone_code):
            when, detail = seconds, zone_code
        else:
            when, detail = pack_time(observed_at, instant_ns)
        packed.append(
            (
                pack_event_id(event_id),
                _CHECKPOINT_INDEX.get(checkpoint, checkpoint),
                (
                    from_country + to_country
                    if len(from_country) == 2 and len(to_country) == 2
                    else [from_country, to_country]
                ),
                when,
                detail,
            )
        )
    return packed


def unpack_sightings(packed: Iterable[PackedSighting]) -> list[Sighting]:
    """The `Sighting`s of packed ones: any that msgspec's decoder let through (it checked
    the ranges and lengths `PackedSighting` says) unpack, and exactly. The hot path of using
    kept crossings: written out in one loop, a call only for an uncommon time."""
    sightings: list[Sighting] = []
    for packed_id, checkpoint, countries, when, detail in packed:
        if isinstance(packed_id, bytes):
            # 8-4-4-4-12 digits: `hex` writes 4-digit groups, and the first and last two
            # hyphens go (C calls, no slices: a slice costs as much as a call here).
            event_id = "".join(packed_id.hex("-", 2).replace("-", "", 1).rsplit("-", 2))
        else:
            event_id = packed_id[0]
        if isinstance(countries, str):
            pair = _COUNTRY_PAIRS.get(countries) or _country_pair(countries)
            from_country, to_country = pair
        else:
            from_country, to_country = countries
        if isinstance(detail, str):
            observed_at, instant_ns = detail, when
        elif detail < _ZONES:  # whole seconds and 'T', nearly every scan
            observed_at, instant_ns = _time_text(when, detail), when * _NANOS
        else:
            observed_at, instant_ns = unpack_time(when, detail)
        # `tuple.__new__` is what `Sighting(...)` runs, without its Python-level `__new__`.
        sightings.append(
            _new_tuple(
                Sighting,
                (
                    event_id,
                    CHECKPOINTS[checkpoint] if isinstance(checkpoint, int) else checkpoint,
                    from_country,
                    to_country,
                    observed_at,
                    instant_ns,
                ),
            )
        )
    return sightings


_new_tuple = tuple.__new__
# The two codes of packed country pairs already met (a few dozen): a look-up, not two slices,
# and one string of each code shared by every crossing. Bounded.
_COUNTRY_PAIRS: dict[str, tuple[str, str]] = {}
_COUNTRY_PAIRS_MAX = 10_000


def _country_pair(countries: str) -> tuple[str, str]:
    pair = countries[:2], countries[2:]
    if len(_COUNTRY_PAIRS) < _COUNTRY_PAIRS_MAX:
        _COUNTRY_PAIRS[countries] = pair
    return pair


def pack_flag(flag: Flag) -> tuple[object, ...]:
    """The fields of a `PackedFlag`, as a tuple (msgspec encodes it as the same array)."""
    crossings = pack_sightings([flag.exit] if flag.entry is None else [flag.entry, flag.exit])
    return (
        flag.flag_id,
        _RULE_INDEX.get(flag.rule, flag.rule),
        flag.consignment_id,
        flag.severity.label,
        list(flag.reasons),
        None if flag.entry is None else crossings[0],
        crossings[-1],
        flag.link,
        flag.linked_consignment_id,
        flag.dwell_seconds,
        flag.window_seconds,
        list(flag.hs_codes),
        flag.detected_at,
    )


def unpack_flag(packed: PackedFlag) -> Flag:
    crossings = unpack_sightings(
        [packed.exit] if packed.entry is None else [packed.entry, packed.exit]
    )
    return Flag(
        packed.flag_id,
        RULES[packed.rule] if isinstance(packed.rule, int) else packed.rule,
        packed.consignment_id,
        Severity.from_label(packed.severity),
        tuple(packed.reasons),
        None if packed.entry is None else crossings[0],
        crossings[-1],
        packed.link,
        packed.linked_consignment_id,
        packed.dwell_seconds,
        packed.window_seconds,
        tuple(packed.hs_codes),
        packed.detected_at,
    )


# --- sets of short texts ----------------------------------------------------------------------


def pack_rules(rules: Collection[str]) -> list[int | str]:
    if not rules:  # (most states)
        return []
    return [_RULE_INDEX.get(rule, rule) for rule in sorted(rules)]


def unpack_rules(packed: list[PackedRule]) -> set[str]:
    """The rules of `pack_rules` (the decoder has checked the indexes: `PackedRule`)."""
    return {RULES[rule] if isinstance(rule, int) else rule for rule in packed}


def pack_hs_codes(codes: Iterable[str]) -> bytes | list[str]:
    """Digits two a byte, `f` between codes (and after the last when the length is odd)."""
    ordered = sorted(codes)
    digits = "".join(ordered)
    # (Sorted, an empty code would come first.)
    if not (ordered and ordered[0] and digits.isdigit() and digits.isascii()):
        return ordered  # (also when there are none: an empty list)
    text = "f".join(ordered)
    return bytes.fromhex(text + "f" if len(text) % 2 else text)


def unpack_hs_codes(packed: bytes | list[str]) -> set[str]:
    if isinstance(packed, list):
        return set(packed)
    text = packed.hex()
    codes = (text[:-1] if text[-1:] == "f" else text).split("f")
    # Hex digits but `f` are digits or `a`-`e`; an empty code is two `f` in a row (or none).
    if "" in codes or not text.replace("f", "").isdigit():
        raise ValueError("packed HS codes hold something else than digits")
    return set(codes)


def pack_pairs(texts: Collection[str]) -> str | list[str]:
    """Two-character texts (country codes) joined into one string, else a list."""
    if not texts:
        return ""
    if len(texts) == 1:  # most consignments declare one destination or none
        (only,) = texts
        return only if len(only) == 2 else [only]
    ordered = sorted(texts)
    if all(len(text) == 2 for text in ordered):
        return "".join(ordered)
    return ordered


def unpack_pairs(packed: str | list[str]) -> set[str]:
    if isinstance(packed, list):
        return set(packed)
    if len(packed) <= 2:  # most consignments declare one destination or none
        if len(packed) == 1:
            raise ValueError(f"{packed!r} is not two-character codes")
        return {packed} if packed else set()
    if len(packed) % 2:
        raise ValueError(f"{packed!r} is not two-character codes")
    return {packed[i : i + 2] for i in range(0, len(packed), 2)}
