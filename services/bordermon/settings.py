"""One validated, immutable settings object for every bordermon command.

Each setting has one name, spelled three ways: `window` in a TOML config file,
`BORDERMON_WINDOW` in the environment, `--window` on the command line (where a command offers
it). Precedence: command line > environment > config file (`BORDERMON_CONFIG` or `--config`)
> defaults. Defaults work on a laptop with the local stack.

Secrets (a password inside `redis_url`, the Kafka and Redis passwords, `scanner_key_file`) are
masked by `describe()` and in `repr()`; nothing here is ever logged in clear. Passwords are never
settings themselves: `kafka_password_file` and `redis_password_file` name files (mode 0600) that
are read once, when the settings are built, into `Secret`s that print as `***`.

Transport security: `kafka_security_protocol` (PLAINTEXT by default, SASL_SSL for a secured
cluster), `kafka_sasl_mechanism`, `kafka_username`, `kafka_password_file` and `kafka_ca_file` are
turned into client configuration by `kafka_client_config()` (confluent-kafka: publish, the SDK,
flags, topics, the worker's preflight) and `faust_credentials()` / `aiokafka_security()` (the
worker's faust app), so every client speaks the same security.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from bordermon.core.config import DAY_NS, DetectionConfig
from bordermon.core.countries import normalize_country
from bordermon.core.rules import ALL_RULES, check_rule_names
from bordermon.core.signatures import (
    PrivateKeyError,
    RegistryError,
    check_scanner_id,
    parse_registry,
)
from bordermon.core.timestamps import NANOS_PER_SECOND
from bordermon.core.watchlist import (
    BUILTIN_CHPL,
    BUILTIN_CHPL_TIERS_1_2,
    WatchlistError,
    load_export_controls,
    load_watchlist,
)
from bordermon.scanner.keys import read_private_key

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from bordermon.core.signatures import ScannerRegistry

ENV_PREFIX = "BORDERMON_"


class SettingsError(ValueError):
    """A setting that cannot be used; the message names it and says what is expected."""


_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*", re.ASCII)
_UNIT_NS = {
    "ms": 1_000_000,
    "s": NANOS_PER_SECOND,
    "m": 60 * NANOS_PER_SECOND,
    "h": 3600 * NANOS_PER_SECOND,
    "d": DAY_NS,
    "w": 7 * DAY_NS,
}


def parse_duration_ns(text: str) -> int:
    """`30d`, `12h`, `90m`, `45s`, `250ms`, `1w`, or plain seconds (`2592000`)."""
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a duration (e.g. 30d, 12h, 90m, 45s or seconds)")
    number, unit = match.group(1), match.group(2) or "s"
    # Decimal arithmetic on the digits keeps '0.5d' exact.
    whole, _, frac = number.partition(".")
    scale: int = 10 ** len(frac)
    return (int(whole) * scale + int(frac or 0)) * _UNIT_NS[unit] // scale


_DISPLAY_UNITS = (
    ("d", DAY_NS),
    ("h", _UNIT_NS["h"]),
    ("m", _UNIT_NS["m"]),
    ("s", NANOS_PER_SECOND),
)


def format_duration(ns: int) -> str:
    """A duration as people write it, in the largest unit that is exact: `30d`, `12h`, `90s`,
    `250ms`; the inverse of `parse_duration_ns` (`format_duration(parse_duration_ns(t))` parses
    back to the same value)."""
    if ns == 0:
        return "0s"
    for unit, size in _DISPLAY_UNITS:
        if ns % size == 0:
            return f"{ns // size}{unit}"
    if ns % _UNIT_NS["ms"] == 0:
        return f"{ns // _UNIT_NS['ms']}ms"
    whole, rest = divmod(ns, NANOS_PER_SECOND)
    return f"{whole}.{rest:09d}".rstrip("0") + "s"


def _duration(value: object) -> int:
    if isinstance(value, bool):
        raise ValueError("a duration, not a boolean")
    if isinstance(value, int):
        return value * NANOS_PER_SECOND
    return parse_duration_ns(str(value))


def _country_list(value: object) -> frozenset[str]:
    items = value if isinstance(value, list) else str(value).split(",")
    codes = set()
    for item in items:
        code = normalize_country(str(item).strip())
        if code is None:
            raise ValueError(f"{item!r} is not an ISO 3166-1 alpha-2 code")
        codes.add(code)
    if not codes:
        raise ValueError("at least one country is needed")
    return frozenset(codes)


def _country(value: object) -> str:
    code = normalize_country(str(value).strip())
    if code is None:
        raise ValueError(f"{value!r} is not an ISO 3166-1 alpha-2 code")
    return code


def _string_list(value: object) -> tuple[str, ...]:
    items = value if isinstance(value, list) else str(value).split(",")
    return tuple(str(item).strip() for item in items if str(item).strip())


def _watchlists(value: object) -> tuple[str, ...]:
    sources = _string_list(value)
    if not sources:
        # No list would make every flag `low`: never what a person means by an empty value.
        raise ValueError(
            f"no watchlist given; name at least one: {BUILTIN_CHPL} and/or CSV files"
            " (hs6,tier,description), comma-separated"
        )
    return sources


REDIS_URL_FORMS = (
    "redis://[[user]:password@]host[:port][/db], rediss://... (TLS)"
    " or unix://[[user]:password@]/path/to/socket[?db=N]"
)


def _redis_url(value: object) -> str:
    """Checked here, as redis-py would read it, so that every command fails the same way and
    before connecting: redis-py raises a traceback-worthy ValueError for a bad scheme or port,
    and silently uses DB 0 for `redis://host:6379/abc`."""
    url = _text(value)

    def bad(why: str) -> ValueError:
        return ValueError(f"{mask_url(url)!r} {why}; expected {REDIS_URL_FORMS}")

    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix") or not url.startswith(f"{parts.scheme}://"):
        raise bad("is not a Redis URL")
    try:
        port_ok = parts.port != 0  # urllib checks the digits and the range when it is read
    except ValueError:
        port_ok = False
    if not port_ok:
        port = parts.netloc.rpartition("@")[2].rpartition(":")[2]
        raise bad(f"has port {port!r}, not a number from 1 to 65535")
    databases = parse_qs(parts.query).get("db", [])
    if parts.scheme == "unix":
        if not parts.path:
            raise bad("names no socket path")
    elif parts.path.strip("/"):
        databases.append(parts.path.strip("/"))
    for text in databases:
        if not (text.isascii() and text.isdigit()):
            raise bad(f"has database {text!r}, not a number")
    return url


def _rule_list(value: object) -> frozenset[str]:
    names = _string_list(value)
    check_rule_names(names)
    return frozenset(names)


def _port(value: object) -> int:
    port = int(str(value))
    if not 0 <= port <= 65535:
        raise ValueError(f"{port} is not a TCP port (0 disables)")
    return port


def _positive_int(value: object) -> int:
    number = int(str(value))
    if number < 1:
        raise ValueError(f"{number} must be at least 1")
    return number


_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


def _bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE | _FALSE:
        return text in _TRUE
    raise ValueError(f"{value!r} is not a boolean (true or false)")


def _scanner_id(value: object) -> str:
    return check_scanner_id(str(value).strip())


def _text(value: object) -> str:
    text = str(value).strip()
    if not text:
        raise ValueError("must not be empty")
    return text


_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
_SASL_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")


def _choice(choices: tuple[str, ...]) -> Callable[[object], str]:
    def parse(value: object) -> str:
        text = str(value).strip().upper()
        if text not in choices:
            raise ValueError(f"{value!r} is not one of {', '.join(choices)}")
        return text

    return parse


def _optional_text(value: object) -> str:
    return str(value).strip()


class Secret:
    """A password held in memory that never shows itself: `str()` and `repr()` are `***`, so
    logging the settings (or an object holding a Secret) cannot leak it. `reveal()` is the only
    way to the value, called where a client library is handed its configuration."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def read_secret_file(path: str, setting: str) -> Secret:
    """The secret in `path` (trailing newline stripped); SettingsError naming the setting (never
    the content) when it cannot be read or is empty."""
    try:
        text = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as error:
        raise SettingsError(f"{setting}: cannot read {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise SettingsError(f"{setting}: {path} is not UTF-8 text") from None
    if not text:
        raise SettingsError(f"{setting}: {path} is empty")
    return Secret(text)


_SENTINEL_TTL = -1

# name -> parser. The order is the order of `describe()`.
_PARSERS: dict[str, Callable[[Any], Any]] = {
    "kafka_bootstrap": _text,
    "redis_url": _redis_url,
    "crossings_topic": _text,
    "flags_topic": _text,
    "dead_letter_topic": _text,
    "links_topic": _text,
    "consumer_group": _text,
    "window": _duration,
    "monitored_country": _country,
    "destinations_of_concern": _country_list,
    "watchlists": _watchlists,
    "state_ttl": _duration,
    "rules": _rule_list,
    "relabel_window": _duration,
    "export_controls": _string_list,
    "link_state_ttl": _duration,
    "dedup_memory": _positive_int,
    "batch_max_events": _positive_int,
    "batch_max_wait": _duration,
    "metrics_port": _port,
    "require_signatures": _bool,
    "scanner_registry": _text,
    "scanner_id": _scanner_id,
    "scanner_key_file": _text,
    "kafka_security_protocol": _choice(_SECURITY_PROTOCOLS),
    "kafka_sasl_mechanism": _choice(_SASL_MECHANISMS),
    "kafka_username": _optional_text,
    "kafka_password_file": _optional_text,
    "kafka_ca_file": _optional_text,
    "redis_password_file": _optional_text,
}
_SECRETS = frozenset({"scanner_key_file"})  # shown as *** by describe() when set
_EMPTY_ENV_REFUSED = frozenset({"watchlists"})
_FIELD_ALIASES = {
    "window": "window_ns",
    "state_ttl": "state_ttl_ns",
    "relabel_window": "relabel_window_ns",
    "link_state_ttl": "link_state_ttl_ns",
    "batch_max_wait": "batch_max_wait_ns",
}


@dataclass(frozen=True)
class Settings:
    """All settings; build with `Settings.load()`. Durations are integer nanoseconds."""

    kafka_bootstrap: str = "localhost:9092"
    redis_url: str = field(default="redis://localhost:6379/0", repr=False)
    crossings_topic: str = "bordermon.crossings"
    flags_topic: str = "bordermon.flags"
    dead_letter_topic: str = "bordermon.crossings.dlq"
    links_topic: str = "bordermon.links"
    consumer_group: str = "bordermon-worker"
    window_ns: int = 30 * DAY_NS
    monitored_country: str = "KZ"
    destinations_of_concern: frozenset[str] = frozenset({"RU"})
    watchlists: tuple[str, ...] = (BUILTIN_CHPL,)
    # Default: the window plus 7 days after the consignment's last event (SPEC §6).
    state_ttl_ns: int = _SENTINEL_TTL
    rules: frozenset[str] = frozenset(ALL_RULES)
    relabel_window_ns: int = 90 * DAY_NS
    export_controls: tuple[str, ...] = (BUILTIN_CHPL_TIERS_1_2,)
    # Default: the relabel window plus 7 days after the link key's last sighting.
    link_state_ttl_ns: int = _SENTINEL_TTL
    dedup_memory: int = 1024
    batch_max_events: int = 500
    batch_max_wait_ns: int = 50_000_000
    metrics_port: int = 9108
    # Signed scans (core.signatures): the worker's side, then the scanner SDK's side.
    require_signatures: bool = False
    scanner_registry: str | None = None
    scanner_id: str | None = None
    # The path is masked too: a key pasted into the variable by mistake must not be shown.
    scanner_key_file: str | None = field(default=None, repr=False)
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = "SCRAM-SHA-512"
    kafka_username: str = ""
    kafka_password_file: str = ""
    kafka_ca_file: str = ""
    redis_password_file: str = ""
    # Read from the files above when the settings are built; never settings themselves.
    kafka_password: Secret | None = field(default=None, init=False, repr=False, compare=False)
    redis_password: Secret | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._check_transport_security()
        if self.state_ttl_ns == _SENTINEL_TTL:
            object.__setattr__(self, "state_ttl_ns", self.window_ns + 7 * DAY_NS)
        if self.state_ttl_ns < self.window_ns:
            raise SettingsError(
                "state_ttl must be at least the window, or an entry could expire before its exit"
            )
        if self.link_state_ttl_ns == _SENTINEL_TTL:
            object.__setattr__(self, "link_state_ttl_ns", self.relabel_window_ns + 7 * DAY_NS)
        if self.link_state_ttl_ns < self.relabel_window_ns:
            raise SettingsError(
                "link_state_ttl must be at least relabel_window, or an entry could expire"
                " before its exit"
            )
        if self.monitored_country in self.destinations_of_concern:
            raise SettingsError(
                f"monitored_country {self.monitored_country} cannot also be in"
                " destinations_of_concern"
            )
        if self.require_signatures and self.scanner_registry is None:
            raise SettingsError(
                "require_signatures is on but no scanner_registry is set: set"
                " BORDERMON_SCANNER_REGISTRY (or scanner_registry in the config file) to the"
                " scanner registry file"
            )

    def _check_transport_security(self) -> None:
        protocol = self.kafka_security_protocol
        if protocol.startswith("SASL_"):
            missing = [
                name
                for name in ("kafka_username", "kafka_password_file")
                if not getattr(self, name)
            ]
            if missing:
                raise SettingsError(
                    f"kafka_security_protocol {protocol} needs {' and '.join(missing)}"
                )
        if self.kafka_password_file:
            password = read_secret_file(self.kafka_password_file, "kafka_password_file")
            object.__setattr__(self, "kafka_password", password)
        if self.kafka_ca_file:
            if "SSL" not in protocol:
                raise SettingsError(
                    f"kafka_ca_file is set but kafka_security_protocol is {protocol}:"
                    " use SASL_SSL (or SSL) to connect with TLS"
                )
            if not Path(self.kafka_ca_file).is_file():
                raise SettingsError(f"kafka_ca_file: {self.kafka_ca_file} is not a file")
        if self.redis_password_file:
            password = read_secret_file(self.redis_password_file, "redis_password_file")
            object.__setattr__(self, "redis_password", password)

    # --- client configuration: the one place that turns settings into client arguments ---

    def kafka_client_config(self) -> dict[str, Any]:
        """confluent-kafka (librdkafka) configuration: bootstrap servers and security.

        Every confluent-kafka client of bordermon (publish and the SDK, flags, topics, the
        worker's preflight) starts from this dict and adds its own settings."""
        config: dict[str, Any] = {
            "bootstrap.servers": self.kafka_bootstrap,
            "security.protocol": self.kafka_security_protocol.lower(),
        }
        if self.kafka_security_protocol.startswith("SASL_"):
            config["sasl.mechanisms"] = self.kafka_sasl_mechanism
            config["sasl.username"] = self.kafka_username
            if self.kafka_password is not None:
                config["sasl.password"] = self.kafka_password.reveal()
        if self.kafka_ca_file:
            config["ssl.ca.location"] = self.kafka_ca_file
        return config

    def aiokafka_security(self) -> dict[str, Any]:
        """aiokafka keyword arguments for the same security (`AIOKafkaProducer(**...)`)."""
        args: dict[str, Any] = {"security_protocol": self.kafka_security_protocol}
        if "SSL" in self.kafka_security_protocol:
            args["ssl_context"] = self._ssl_context()
        if self.kafka_security_protocol.startswith("SASL_"):
            args["sasl_mechanism"] = self.kafka_sasl_mechanism
            args["sasl_plain_username"] = self.kafka_username
            if self.kafka_password is not None:
                args["sasl_plain_password"] = self.kafka_password.reveal()
        return args

    def faust_credentials(self) -> Any:
        """faust's `broker_credentials` for the same security; None for PLAINTEXT."""
        import faust

        protocol = self.kafka_security_protocol
        if protocol == "PLAINTEXT":
            return None
        if protocol == "SSL":
            return faust.SSLCredentials(self._ssl_context())
        # faust switches SASLCredentials to SASL_SSL when it is given an ssl_context.
        return faust.SASLCredentials(
            username=self.kafka_username,
            password=None if self.kafka_password is None else self.kafka_password.reveal(),
            mechanism=self.kafka_sasl_mechanism,
            ssl_context=self._ssl_context() if protocol == "SASL_SSL" else None,
        )

    def _ssl_context(self) -> Any:
        from aiokafka.helpers import create_ssl_context

        return create_ssl_context(cafile=self.kafka_ca_file or None)

    def redis_client_args(self) -> dict[str, Any]:
        """Keyword arguments for `redis.Redis.from_url(settings.redis_url, **...)`: the password
        from `redis_password_file`, which wins over one inside the URL."""
        if self.redis_password is None:
            return {}
        return {"password": self.redis_password.reveal()}

    def __repr__(self) -> str:
        return f"Settings({', '.join(f'{k}={v}' for k, v in self.describe().items())})"

    @classmethod
    def load(
        cls,
        overrides: Mapping[str, object] | None = None,
        environ: Mapping[str, str] | None = None,
        config_file: str | Path | None = None,
    ) -> Settings:
        """Defaults < config file < environment < `overrides` (command-line values; None: unset)."""
        environ = os.environ if environ is None else environ
        raw: dict[str, tuple[object, str]] = {}
        path = config_file or environ.get(ENV_PREFIX + "CONFIG")
        if path:
            for name, value in _read_config_file(Path(path)).items():
                raw[name] = (value, f"{name} in {path}")
        for name in _PARSERS:
            env_name = ENV_PREFIX + name.upper()
            # An empty variable counts as unset (`${VAR:-}` in scripts), except where the
            # default would silently replace what the person set: an empty list of watchlists.
            if environ.get(env_name, "") != "" or (
                name in _EMPTY_ENV_REFUSED and env_name in environ
            ):
                raw[name] = (environ[env_name], env_name)
        for name, value in (overrides or {}).items():
            if value is not None:
                if name not in _PARSERS:
                    raise SettingsError(f"unknown setting {name!r}")
                raw[name] = (value, f"--{name.replace('_', '-')}")
        values: dict[str, Any] = {}
        for name, (value, origin) in raw.items():
            try:
                values[_FIELD_ALIASES.get(name, name)] = _PARSERS[name](value)
            except (ValueError, TypeError) as error:
                raise SettingsError(f"{origin}: {error}") from None
        return cls(**values)

    def detection_config(self) -> DetectionConfig:
        """The core's configuration; reads the watchlist files."""
        try:
            watchlist = load_watchlist(self.watchlists)
            export_controls = load_export_controls(self.export_controls)
        except WatchlistError as error:
            raise SettingsError(str(error)) from None
        return DetectionConfig(
            watchlist=watchlist,
            window_ns=self.window_ns,
            monitored_country=self.monitored_country,
            destinations_of_concern=self.destinations_of_concern,
            dedup_memory=self.dedup_memory,
            rules=self.rules,
            relabel_window_ns=self.relabel_window_ns,
            export_controls=export_controls,
        )

    def load_scanner_registry(self) -> ScannerRegistry | None:
        """The scanner registry when `require_signatures` is on (reads the file), else None."""
        if not self.require_signatures or self.scanner_registry is None:
            return None
        path = self.scanner_registry
        try:
            text = Path(path).read_text("utf-8")
        except OSError as error:
            raise SettingsError(f"cannot read scanner_registry {path}: {error.strerror}") from None
        except UnicodeDecodeError:
            raise SettingsError(f"scanner registry {path} is not UTF-8 text") from None
        try:
            return parse_registry(text)
        except RegistryError as error:
            raise SettingsError(f"scanner registry {path}: {error}") from None

    def load_scanner_key(self) -> tuple[str, Ed25519PrivateKey] | None:
        """The scanner SDK's `(scanner_id, private key)` when `scanner_key_file` is set (reads
        it), else None. Errors never show the file's content or the setting's value."""
        if self.scanner_key_file is None and self.scanner_id is None:
            return None
        if self.scanner_key_file is None or self.scanner_id is None:
            have, need = (
                ("scanner_id", "scanner_key_file")
                if self.scanner_key_file is None
                else ("scanner_key_file", "scanner_id")
            )
            raise SettingsError(f"{have} is set but {need} is not: signing needs both")
        try:
            return self.scanner_id, read_private_key(self.scanner_key_file)
        except PrivateKeyError as error:
            raise SettingsError(f"scanner_key_file: {error}") from None

    @property
    def state_ttl_seconds(self) -> int:
        return max(1, -(-self.state_ttl_ns // NANOS_PER_SECOND))

    @property
    def link_state_ttl_seconds(self) -> int:
        return max(1, -(-self.link_state_ttl_ns // NANOS_PER_SECOND))

    def describe(self) -> dict[str, str]:
        """Every setting as text for people, with secrets masked."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Secret) or f.name in ("kafka_password", "redis_password"):
                continue  # the *_password_file settings say where they come from
            if f.name.endswith("_ns"):
                text = format_duration(value)
            elif isinstance(value, frozenset | tuple):
                text = ",".join(sorted(value) if isinstance(value, frozenset) else value)
            else:
                text = str(value)
            if f.name == "redis_url":
                text = mask_url(text)
            elif value is None:
                text = ""
            elif f.name in _SECRETS:
                text = "***"
            out[f.name] = text
        return out


def mask_url(url: str) -> str:
    """`redis://:secret@host:6379/0` -> `redis://:***@host:6379/0`.

    Works on text, not on a parsed URL, so that a malformed URL (a bad port, no scheme) is
    masked too before it is shown in an error message.
    """
    start = url.find("://")
    start = 0 if start < 0 else start + 3
    at = url.rfind("@", start)
    if at < 0:
        return url
    user, colon, _ = url[start:at].partition(":")
    if not colon:
        return url
    return f"{url[:start]}{user}:***{url[at:]}"


def _read_config_file(path: Path) -> dict[str, object]:
    try:
        with path.open("rb") as handle:
            doc = tomllib.load(handle)
    except OSError as error:
        raise SettingsError(f"cannot read config file {path}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise SettingsError(f"config file {path} is not valid TOML: {error}") from None
    unknown = sorted(set(doc) - set(_PARSERS))
    if unknown:
        raise SettingsError(
            f"config file {path}: unknown setting(s) {', '.join(unknown)};"
            f" known: {', '.join(_PARSERS)}"
        )
    return doc


SETTING_NAMES: tuple[str, ...] = tuple(_PARSERS)
