"""One settings object: defaults < config file < environment < command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from bordermon.core.watchlist import WatchlistError, parse_watchlist
from bordermon.settings import (
    Settings,
    SettingsError,
    format_duration,
    mask_url,
    parse_duration_ns,
)

DAY = 86_400 * 10**9


def test_defaults_work_without_anything_set() -> None:
    settings = Settings.load(environ={})
    assert settings.kafka_bootstrap == "localhost:9092"
    assert settings.redis_url == "redis://localhost:6379/0"
    assert settings.window_ns == 30 * DAY
    assert settings.state_ttl_ns == 37 * DAY  # window + 7 days
    assert settings.destinations_of_concern == {"RU"}
    assert settings.detection_config().watchlist.matches("8542310000")


def test_precedence(tmp_path: Path) -> None:
    config = tmp_path / "bordermon.toml"
    config.write_text('window = "10d"\nmonitored_country = "kz"\nflags_topic = "from-file"\n')
    environ = {"BORDERMON_CONFIG": str(config), "BORDERMON_WINDOW": "12d"}
    settings = Settings.load(environ=environ)
    assert settings.window_ns == 12 * DAY  # env beats file
    assert settings.flags_topic == "from-file"
    assert settings.monitored_country == "KZ"
    settings = Settings.load({"window": "14d", "flags_topic": None}, environ=environ)
    assert settings.window_ns == 14 * DAY  # command line beats env; None means unset
    assert settings.state_ttl_ns == 21 * DAY


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("30d", 30 * DAY),
        ("72h", 3 * DAY),
        ("90m", 5400 * 10**9),
        ("45", 45 * 10**9),
        ("0.5d", DAY // 2),
        ("250ms", 250_000_000),
        ("1w", 7 * DAY),
    ],
)
def test_durations(text: str, ns: int) -> None:
    assert parse_duration_ns(text) == ns


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"BORDERMON_WINDOW": "thirty days"}, "BORDERMON_WINDOW"),
        ({"BORDERMON_DESTINATIONS_OF_CONCERN": "RU,XX"}, "XX"),
        ({"BORDERMON_DESTINATIONS_OF_CONCERN": "KZ"}, "monitored_country"),
        ({"BORDERMON_METRICS_PORT": "70000"}, "BORDERMON_METRICS_PORT"),
        ({"BORDERMON_STATE_TTL": "1d"}, "state_ttl"),
        ({"BORDERMON_CONFIG": "/nonexistent/bordermon.toml"}, "cannot read config file"),
    ],
)
def test_bad_settings_say_which_and_why(environ: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.load(environ=environ)


def test_unknown_key_in_config_file(tmp_path: Path) -> None:
    config = tmp_path / "bordermon.toml"
    config.write_text('windw = "10d"\n')
    with pytest.raises(SettingsError, match="unknown setting"):
        Settings.load(environ={}, config_file=config)


def test_missing_watchlist_file_is_a_settings_error() -> None:
    settings = Settings.load(environ={"BORDERMON_WATCHLISTS": "builtin:chpl,/nope.csv"})
    with pytest.raises(SettingsError, match=r"/nope\.csv"):
        settings.detection_config()


def test_secrets_are_masked() -> None:
    settings = Settings.load(environ={"BORDERMON_REDIS_URL": "redis://:s3cret@redis:6379/0"})
    assert "s3cret" not in repr(settings)
    assert "s3cret" not in str(settings.describe())
    assert mask_url("redis://user:pw@h:1/0") == "redis://user:***@h:1/0"


def test_settings_are_immutable() -> None:
    settings = Settings.load(environ={})
    with pytest.raises(AttributeError):
        settings.window_ns = 1  # type: ignore[misc]


def test_detection_v2_defaults() -> None:
    settings = Settings.load(environ={})
    assert settings.rules == {"transit-to-ru", "relabel-to-ru", "export-without-permit"}
    assert settings.relabel_window_ns == 90 * DAY
    assert settings.link_state_ttl_ns == 97 * DAY  # relabel window + 7 days
    assert settings.link_state_ttl_seconds == 97 * 86_400
    assert settings.links_topic == "bordermon.links"
    assert settings.export_controls == ("builtin:chpl-tiers-1-2",)
    config = settings.detection_config()
    assert config.rules == settings.rules and config.relabel_window_ns == 90 * DAY
    # CHPL tiers 1 and 2 only, reasons named export-control.
    assert [e.reason for e in config.export_controls.matches("8526910000")] == [
        "export-control:2:852691"
    ]
    assert config.export_controls.matches("847150") == []  # tier 3.A


def test_detection_v2_settings_from_the_environment(tmp_path: Path) -> None:
    controls = tmp_path / "licences.csv"
    controls.write_text("hs6,tier\n940360,4.B\n")
    settings = Settings.load(
        environ={
            "BORDERMON_RULES": "transit-to-ru, export-without-permit",
            "BORDERMON_RELABEL_WINDOW": "60d",
            "BORDERMON_EXPORT_CONTROLS": f"builtin:chpl-tiers-1-2,{controls}",
            "BORDERMON_LINKS_TOPIC": "links",
        }
    )
    assert settings.rules == {"transit-to-ru", "export-without-permit"}
    assert settings.link_state_ttl_ns == 67 * DAY
    assert settings.links_topic == "links"
    config = settings.detection_config()
    assert [e.reason for e in config.export_controls.matches("940360")] == [
        "export-control:4.B:940360"
    ]


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (
            {"BORDERMON_RULES": "transit-to-ru,relabel"},
            "unknown rule.*relabel; the rules are transit-to-ru, relabel-to-ru,"
            " export-without-permit",
        ),
        ({"BORDERMON_RELABEL_WINDOW": "soon"}, "BORDERMON_RELABEL_WINDOW"),
        ({"BORDERMON_LINK_STATE_TTL": "30d"}, "link_state_ttl"),
    ],
)
def test_bad_detection_v2_settings(environ: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.load(environ=environ)


def test_missing_export_control_file_is_a_settings_error() -> None:
    settings = Settings.load(environ={"BORDERMON_EXPORT_CONTROLS": "/nonexistent/x.csv"})
    with pytest.raises(SettingsError, match=r"/nonexistent/x\.csv"):
        settings.detection_config()


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("notaurl", "is not a Redis URL"),
        ("http://localhost:6379", "is not a Redis URL"),
        ("localhost:6379", "is not a Redis URL"),
        ("redis://localhost:99999/0", "has port '99999', not a number from 1 to 65535"),
        ("redis://localhost:0/0", "has port '0'"),
        ("redis://:s3cret@localhost:6379x/0", "has port '6379x'"),
        ("redis://localhost:6379/abc", "has database 'abc', not a number"),
        ("redis://localhost:6379?db=two", "has database 'two'"),
        ("unix://", "names no socket path"),
    ],
)
def test_a_malformed_redis_url_is_refused_with_the_accepted_forms(url: str, why: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.load(environ={"BORDERMON_REDIS_URL": url})
    message = str(caught.value)
    assert message.startswith(f"BORDERMON_REDIS_URL: '{mask_url(url)}' {why}")
    expected = message.partition("; expected ")[2]
    assert all(form in expected for form in ("redis://", "rediss://", "unix://"))
    assert "s3cret" not in message


@pytest.mark.parametrize(
    "url",
    [
        "redis://localhost:6379/0",
        "redis://redis",
        "redis://:pw@10.0.0.5:6380/15",
        "rediss://user:pw@cache.example:6380/2",
        "unix:///run/redis.sock?db=3",
        "unix://:pw@/run/redis.sock",
    ],
)
def test_the_usual_redis_urls_are_accepted(url: str) -> None:
    assert Settings.load(environ={"BORDERMON_REDIS_URL": url}).redis_url == url


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://user:pw@h:1/0", "redis://user:***@h:1/0"),
        ("redis://:pw@h:99999/0", "redis://:***@h:99999/0"),  # no port check needed to mask
        ("user:p@ss:w@host:6379", "user:***@host:6379"),  # no scheme at all
        ("redis://nopassword@h/0", "redis://nopassword@h/0"),
        ("notaurl", "notaurl"),
    ],
)
def test_mask_url_masks_any_password_even_in_a_malformed_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (30 * DAY, "30d"),
        (12 * 3600 * 10**9, "12h"),
        (90 * 10**9, "90s"),
        (90 * 60 * 10**9, "90m"),
        (50_000_000, "50ms"),
        (1_500_000_000, "1500ms"),
        (1_000_000_001, "1.000000001s"),
        (0, "0s"),
    ],
)
def test_durations_print_as_people_write_them(ns: int, text: str) -> None:
    assert format_duration(ns) == text
    assert parse_duration_ns(text) == ns


def test_describe_prints_durations_with_the_one_helper() -> None:
    described = Settings.load(environ={"BORDERMON_WINDOW": "2592000"}).describe()
    assert (described["window_ns"], described["state_ttl_ns"]) == ("30d", "37d")
    assert described["batch_max_wait_ns"] == "50ms"


def test_a_watchlist_saved_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    watchlist = tmp_path / "national.csv"
    watchlist.write_bytes(b"\xef\xbb\xbfhs6,tier,description\n940360,3.A,furniture\n")
    config = Settings.load(environ={"BORDERMON_WATCHLISTS": str(watchlist)}).detection_config()
    assert config.watchlist.assess(["9403600000"])[1] == ["national:3.A:940360"]


def test_a_watchlist_that_is_not_utf8_names_its_line() -> None:
    with pytest.raises(WatchlistError, match=r"^lists/x\.csv:2: not UTF-8 \(byte 0xe9\)"):
        parse_watchlist(b"hs6,tier\n\xe9\n", "x", "lists/x.csv")
