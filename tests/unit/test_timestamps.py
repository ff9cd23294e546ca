"""RFC 3339 parsing to exact integer instants."""

from __future__ import annotations

from datetime import datetime

import pytest

from bordermon.core.timestamps import (
    InvalidTimestamp,
    format_utc,
    parse_instant,
    seconds_between,
)


@pytest.mark.parametrize(
    "text",
    [
        "2024-03-01T10:00:00Z",
        "2024-03-01T10:00:00+05:00",
        "2024-03-01T10:00:00-03:30",
        "1969-12-31T23:59:59Z",
        "2000-02-29T00:00:00Z",
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59Z",
        "2024-03-01T10:00:00.123456+06:00",
    ],
)
def test_agrees_with_datetime_where_datetime_can_answer(text: str) -> None:
    expected = datetime.fromisoformat(text.replace("Z", "+00:00"))
    seconds = (expected - datetime.fromisoformat("1970-01-01T00:00:00+00:00")).total_seconds()
    assert parse_instant(text) == round(seconds * 1_000_000) * 1000


def test_nanoseconds_are_exact_and_extra_digits_truncate() -> None:
    assert parse_instant("1970-01-01T00:00:00.000000001Z") == 1
    assert parse_instant("1970-01-01T00:00:00.1234567899Z") == 123_456_789


def test_leap_second_is_the_next_second() -> None:
    assert parse_instant("2016-12-31T23:59:60Z") == parse_instant("2017-01-01T00:00:00Z")


def test_offsets_beyond_the_date_line() -> None:
    assert parse_instant("9999-12-31T23:00:00-05:00") > parse_instant("9999-12-31T23:00:00Z")


@pytest.mark.parametrize(
    "text",
    [
        "2024-03-01T10:00:00",
        "2024-03-01T10:00Z",
        "0000-01-01T00:00:00Z",
        "2024-03-01T10:00:00.Z",
        "2024-03-01T10:00:00+5:00",
        "2024-03-01T10:00:00Z ",
        " 2024-03-01T10:00:00Z",
        "2024-03-01T10:00:00ZZ",
        "２０２４-03-01T10:00:00Z",
        "2024-03-01T10:00:00+00:60",
    ],
)
def test_rejects(text: str) -> None:
    with pytest.raises(InvalidTimestamp):
        parse_instant(text)


def test_missing_offset_message_says_what_to_do() -> None:
    with pytest.raises(InvalidTimestamp, match="no UTC offset"):
        parse_instant("2024-03-01T10:00:00")


def test_format_and_difference() -> None:
    assert format_utc(1_709_287_200_000_001_000) == "2024-03-01T10:00:00.000001Z"
    assert seconds_between(0, 3 * 10**9) == 3
    assert isinstance(seconds_between(0, 3 * 10**9), int)
    assert seconds_between(0, 1_500_000_000) == 1.5


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0000-01-01T00:00:00Z", "year 0000, out of range"),
        ("2024-13-01T00:00:00Z", "no such month"),
        ("2023-02-29T00:00:00Z", "no such day"),
    ],
)
def test_each_bad_date_says_which_part_is_wrong(text: str, message: str) -> None:
    with pytest.raises(InvalidTimestamp, match=message):
        parse_instant(text)
