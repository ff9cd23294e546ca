"""RFC 3339 timestamps as exact integer instants.

Windows are compared as UTC instants and are inclusive at both ends, so a dwell of exactly
30 days flags and 30 days plus one nanosecond does not. Floats and `datetime` (microseconds,
years 1..9999) would blur that edge, so an instant here is an `int` of nanoseconds since the
Unix epoch, computed with integer arithmetic. Digits beyond nanoseconds are truncated; that is
the one place precision ends, and no scanner clock is that precise.
"""

from __future__ import annotations

import re
import time

NANOS_PER_SECOND = 1_000_000_000

# Date, 'T' (or 't'), time, optional fraction, and a mandatory offset: 'Z'/'z' or ±hh:mm.
# RFC 3339 §5.6; the space separator of its §5.6 NOTE is not accepted, nor are offsets
# without a colon: scanners must send the interchange form.
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)

_DAYS_IN_MONTH = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


class InvalidTimestamp(ValueError):
    """The text is not an RFC 3339 date-time with an offset."""


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    year -= month <= 2
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146097 + day_of_era - 719468


# Day numbers of dates already seen: scans cluster on few dates, and this skips the calendar
# arithmetic for all but the first scan of a day. Bounded so hostile input cannot grow it.
_DAY_NUMBERS: dict[str, int] = {}
_DAY_CACHE_MAX = 100_000


def _day_number(text: str) -> int:
    """Days since the epoch of the `YYYY-MM-DD` that starts `text`, validated."""
    year, month, day = int(text[0:4]), int(text[5:7]), int(text[8:10])
    if year < 1:
        raise InvalidTimestamp(f"{text!r} has year {text[0:4]}, out of range")
    if not 1 <= month <= 12:
        raise InvalidTimestamp(f"{text!r} has no such month")
    days_in_month = 29 if month == 2 and _is_leap(year) else _DAYS_IN_MONTH[month - 1]
    if not 1 <= day <= days_in_month:
        raise InvalidTimestamp(f"{text!r} has no such day")
    days = _days_from_civil(year, month, day)
    if len(_DAY_NUMBERS) < _DAY_CACHE_MAX:
        _DAY_NUMBERS[text[:10]] = days
    return days


def parse_instant(text: str) -> int:
    """Return the UTC instant of an RFC 3339 date-time, in nanoseconds since the epoch.

    Raises InvalidTimestamp with a sentence a scanner operator can act on.
    """
    match = _RFC3339.fullmatch(text)
    if match is None:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?", text):
            raise InvalidTimestamp(f"{text!r} has no UTC offset; add 'Z' or ±hh:mm")
        raise InvalidTimestamp(
            f"{text!r} is not RFC 3339 (expected e.g. 2024-03-01T12:00:00Z or ...+05:00)"
        )
    (_, _, _, hour, minute, second, fraction, zulu, sign, off_h, off_m) = match.groups()
    days = _DAY_NUMBERS.get(text[:10])
    if days is None:
        days = _day_number(text)
    hour, minute, second = int(hour), int(minute), int(second)
    # Second 60 is a leap second (RFC 3339 allows it); it counts as the next second's start.
    if hour > 23 or minute > 59 or second > 60:
        raise InvalidTimestamp(f"{text!r} has no such time of day")
    offset_seconds = 0
    if zulu is None:
        off_hours, off_minutes = int(off_h), int(off_m)
        if off_hours > 23 or off_minutes > 59:
            raise InvalidTimestamp(f"{text!r} has an offset out of range")
        offset_seconds = (off_hours * 3600 + off_minutes * 60) * (-1 if sign == "-" else 1)
    nanos = int((fraction + "000000000")[:9]) if fraction else 0
    seconds = days * 86400 + hour * 3600 + minute * 60 + second - offset_seconds
    return seconds * NANOS_PER_SECOND + nanos


def format_utc(instant_ns: int) -> str:
    """RFC 3339 in UTC with microseconds, e.g. for `detected_at`."""
    seconds, nanos = divmod(instant_ns, NANOS_PER_SECOND)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos // 1000:06d}Z"


def seconds_between(earlier_ns: int, later_ns: int) -> int | float:
    """Whole seconds as an int when exact, else a float (for `dwell_seconds`)."""
    whole, rest = divmod(later_ns - earlier_ns, NANOS_PER_SECOND)
    return whole if rest == 0 else (later_ns - earlier_ns) / NANOS_PER_SECOND
