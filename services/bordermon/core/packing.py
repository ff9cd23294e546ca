"""Compact binary forms of what states keep: crossings, flags, codes (state format 2).

Stored state is most of bordermon's Redis memory: one value per consignment in flight, tens of
thousands of them. This module turns the values a state holds into small msgpack-ready parts
(tuples of ints, short strings and raw bytes, no field names), and back, exactly. Each part
has a compact form for what real scans look like and a plain form for anything else, so any
value round-trips and the compact forms only decide the size:

- an `event_id` that is a lowercase UUID (what scanners send) is its 16 raw bytes (a msgpack
  extension), else text;
- a `checkpoint` of the frozen table `CHECKPOINTS` is its index, else text;
- `observed_at` with its instant is two integers, whole seconds since the epoch and a `detail`
  that says how the scanner wrote it (offset, fraction digits, `T`/`t`), when the text is one
  `unpack_time` writes back character for character; else the text and the instant;
- HS codes (6-10 digits) are packed two digits a byte (`f` between codes), else text;
- a rule name of `RULES` is its index, else text.

The tables are part of the format: entries may be appended, never changed or reordered (a
stored index must keep naming the same thing). Changing one means a new format version.
"""

from __future__ import annotations

import re
import time
from collections.abc import Collection, Iterable
from typing import cast

import msgspec
from msgspec.msgpack import Ext

from bordermon.core.flag import Flag
from bordermon.core.sighting import Sighting

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


PackedSighting = tuple[Ext | str, int | str, str | list[str], int, int | str]
"""A `Sighting` as stored: `(event_id, checkpoint, countries, when, detail)`.

`countries` is `from_country + to_country` when both are two characters long (always, for a
validated crossing), else `[from_country, to_country]`. `detail` is an int when the time is
compact (`when` in whole seconds), else the `observed_at` text (`when` in nanoseconds).
"""


class PackedFlag(msgspec.Struct, array_like=True, forbid_unknown_fields=True):
    """A pending `Flag`: its fields in order, the two crossings packed, the rule by index."""

    flag_id: str
    rule: int | str
    consignment_id: str
    severity: str
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

_LOWER_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.ASCII)


_UUID_EXT = 0
"""The msgpack extension type of a UUID's 16 bytes (msgspec has no bytes-or-text union)."""


def pack_event_id(event_id: str) -> Ext | str:
    # Only the lowercase hyphenated form: it is the one `unpack_event_id` writes back.
    if len(event_id) == 36 and _LOWER_UUID.fullmatch(event_id):
        return Ext(_UUID_EXT, bytes.fromhex(event_id.replace("-", "")))
    return event_id


def unpack_event_id(packed: Ext) -> str:
    data = cast(bytes, packed.data)  # msgspec's decoder gives bytes
    if packed.code != _UUID_EXT or len(data) != 16:
        raise ValueError(f"extension {packed.code} of {len(data)} bytes is not a UUID")
    h = data.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


# --- observed_at and its instant ---------------------------------------------------------------

_NANOS = 1_000_000_000
_FRACTION_DIGITS = 10  # 0 (no fraction) to 9
# Zones: 'Z', 'z', then every ±hh:mm on a quarter hour from 00:00 to 23:45 ('+' then '-').
_ZONE_TEXT = ("Z", "z", *(f"{s}{q // 4:02d}:{q % 4 * 15:02d}" for q in range(96) for s in "+-"))
_ZONE_OFFSET = (0, 0, *(sign * q * 900 for q in range(96) for sign in (1, -1)))
_ZONE_CODE = {text: code for code, text in enumerate(_ZONE_TEXT)}
_ZONES = len(_ZONE_TEXT)
_TWO_DIGITS = tuple(f"{n:02d}" for n in range(60))
_DATE_LENGTH = 10  # YYYY-MM-DD
_SECONDS_END = 19  # YYYY-MM-DDTHH:MM:SS
# `YYYY-MM-DD` of day numbers already met: scans cluster on few days. Bounded.
_DATES: dict[int, str] = {}
_DATES_MAX = 100_000


def pack_time(observed_at: str, instant_ns: int) -> tuple[int, int | str]:
    """`(seconds, detail)` when `unpack_time` gives `observed_at` and `instant_ns` back
    exactly, else `(instant_ns, observed_at)`. The common case (whole seconds, `T`, an offset
    of at most 15:45 or `Z`) has a detail below 128: one msgpack byte.

    The text is read only as far as its layout (separator, fraction, zone); `unpack_time`
    then writes it back from the instant, and only an identical text is packed: a leap
    second (:60), an impossible date or an instant that is not the text's stay as text.
    """
    zone = observed_at[-1:] if observed_at[-1:] in ("Z", "z") else observed_at[-6:]
    zone_code = _ZONE_CODE.get(zone)
    if zone_code is None:
        return instant_ns, observed_at
    fraction = observed_at[_SECONDS_END + 1 : -len(zone)]  # after the '.', if any
    digits = len(fraction)
    if digits > 9 or (digits and not (fraction.isascii() and fraction.isdigit())):
        return instant_ns, observed_at
    lowercase = observed_at[_DATE_LENGTH : _DATE_LENGTH + 1] == "t"
    seconds = instant_ns // _NANOS
    detail = zone_code + _ZONES * (lowercase + 2 * (digits + 10 * int(fraction or 0)))
    try:
        if unpack_time(seconds, detail) == (observed_at, instant_ns):
            return seconds, detail
    except (OverflowError, OSError, ValueError):
        pass
    return instant_ns, observed_at


def unpack_time(seconds: int, detail: int) -> tuple[str, int]:
    """The `observed_at` text and the instant in nanoseconds of a compact time."""
    if 0 <= detail < _ZONES:  # whole seconds and 'T', nearly every scan
        zone_code, separator, fraction, nanos = detail, "T", "", 0
    elif detail > 0:
        zone_code, rest = detail % _ZONES, detail // _ZONES
        separator = "t" if rest & 1 else "T"
        digits, fraction_value = (rest >> 1) % _FRACTION_DIGITS, (rest >> 1) // _FRACTION_DIGITS
        if fraction_value >= 10**digits:
            raise ValueError(f"fraction {fraction_value} has more than {digits} digits")
        fraction = f".{fraction_value:0{digits}d}" if digits else ""
        nanos = fraction_value * 10 ** (9 - digits)
    else:
        raise ValueError("negative time detail")
    day, second_of_day = divmod(seconds + _ZONE_OFFSET[zone_code], 86400)
    date = _DATES.get(day)
    if date is None:
        date = time.strftime("%Y-%m-%d", time.gmtime(day * 86400))
        if len(date) != _DATE_LENGTH:
            raise ValueError(f"day {day} has no four-digit year")
        if len(_DATES) < _DATES_MAX:
            _DATES[day] = date
    hour, second_of_hour = divmod(second_of_day, 3600)
    minute, second = divmod(second_of_hour, 60)
    text = (
        f"{date}{separator}{_TWO_DIGITS[hour]}:{_TWO_DIGITS[minute]}:"
        f"{_TWO_DIGITS[second]}{fraction}{_ZONE_TEXT[zone_code]}"
    )
    return text, seconds * _NANOS + nanos


# --- sightings and flags ----------------------------------------------------------------------


def pack_sighting(sighting: Sighting) -> PackedSighting:
    event_id, checkpoint, from_country, to_country, observed_at, instant_ns = sighting
    when, detail = pack_time(observed_at, instant_ns)
    return (
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


def unpack_sighting(packed: PackedSighting) -> Sighting:
    event_id, checkpoint, countries, when, detail = packed
    if isinstance(countries, str):
        if len(countries) != 4:
            raise ValueError(f"packed countries {countries!r} are not two codes")
        from_country, to_country = countries[:2], countries[2:]
    else:
        from_country, to_country = countries
    observed_at, instant_ns = (
        (detail, when) if isinstance(detail, str) else unpack_time(when, detail)
    )
    return Sighting(
        event_id if isinstance(event_id, str) else unpack_event_id(event_id),
        checkpoint if isinstance(checkpoint, str) else _named(CHECKPOINTS, checkpoint),
        from_country,
        to_country,
        observed_at,
        instant_ns,
    )


def pack_flag(flag: Flag) -> tuple[object, ...]:
    """The fields of a `PackedFlag`, as a tuple (msgspec encodes it as the same array)."""
    return (
        flag.flag_id,
        _RULE_INDEX.get(flag.rule, flag.rule),
        flag.consignment_id,
        flag.severity,
        list(flag.reasons),
        None if flag.entry is None else pack_sighting(flag.entry),
        pack_sighting(flag.exit),
        flag.link,
        flag.linked_consignment_id,
        flag.dwell_seconds,
        flag.window_seconds,
        list(flag.hs_codes),
        flag.detected_at,
    )


def unpack_flag(packed: PackedFlag) -> Flag:
    return Flag(
        packed.flag_id,
        unpack_rule(packed.rule),
        packed.consignment_id,
        packed.severity,
        tuple(packed.reasons),
        None if packed.entry is None else unpack_sighting(packed.entry),
        unpack_sighting(packed.exit),
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


def unpack_rule(packed: int | str) -> str:
    return _named(RULES, packed)


def _named(table: tuple[str, ...], packed: int | str) -> str:
    if isinstance(packed, str):
        return packed
    if not 0 <= packed < len(table):
        raise ValueError(f"index {packed} is not in the table of {len(table)}")
    return table[packed]


def pack_hs_codes(codes: Iterable[str]) -> bytes | list[str]:
    """Digits two a byte, `f` between codes (and after the last when the length is odd)."""
    ordered = sorted(codes)
    digits = "".join(ordered)
    if not (digits.isascii() and digits.isdigit() and all(ordered)):
        return ordered  # (also when there are none: an empty list)
    text = "f".join(ordered)
    return bytes.fromhex(text + "f" if len(text) % 2 else text)


def unpack_hs_codes(packed: bytes | list[str]) -> set[str]:
    if isinstance(packed, list):
        return set(packed)
    codes = packed.hex().split("f")
    if codes[-1] == "":
        codes.pop()
    if not (all(codes) and "".join(codes).isdigit()):
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
