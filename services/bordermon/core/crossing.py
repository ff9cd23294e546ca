"""Crossing event v1 (SPEC §3): the typed value and its validation.

`parse_crossing` is the single gate between bytes from a scanner and the detection core: the
replay command, the scanner SDK (which validates before publishing) and the stream worker all
call it, so a rule written here holds everywhere. An event that breaks a rule raises
`InvalidCrossing` carrying one SPEC reason code (`missing_field:goods`, ...) for machines and a
sentence for people; nothing is half-accepted.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from typing import Any, NamedTuple

import orjson

from bordermon.core.countries import normalize_country
from bordermon.core.timestamps import InvalidTimestamp, parse_instant

SCHEMA_ID = "crossing/1"
MAX_EVENT_BYTES = 64 * 1024
MAX_GOODS_LINES = 1000
TRANSPORT_MODES = frozenset({"road", "rail", "air", "sea"})
MAX_ID_CHARS = 64  # permit, batch, vehicle, container and seal ids (SPEC §3)

# SPEC §3: `observed_at` as a UTC instant in [2000-01-01T00:00:00Z, 2100-01-01T00:00:00Z).
# A broken scanner clock or a 9999-12-31 placeholder must never reach state, where it would
# pair with nothing and sit until expiry, or worse, pin a window open.
OBSERVED_AT_MIN = "2000-01-01T00:00:00Z"
OBSERVED_AT_END = "2100-01-01T00:00:00Z"
OBSERVED_AT_MIN_NS = parse_instant(OBSERVED_AT_MIN)
OBSERVED_AT_END_NS = parse_instant(OBSERVED_AT_END)

# SPEC §4.2 link keys.
CONTAINER_KEY_PREFIX = "container:"
SEAL_KEY_PREFIX = "seal:"
BATCH_KEY_PREFIX = "batch:"

_HS_DIGITS = re.compile(r"[0-9]{6,10}", re.ASCII)
# Cc is Unicode's "control" category: C0 (U+0000-001F), DEL and C1 (U+0080-009F).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class Direction(enum.Enum):
    """Seen from the monitored country: goods coming in or going out."""

    ENTRY = "entry"
    EXIT = "exit"


class InvalidCrossing(ValueError):
    """An event that breaks a SPEC §3 rule.

    `reason` is the SPEC code (stable, for counters and dead-letter headers); `detail` says
    what exactly is wrong, for the person who has to fix the scanner.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class CrossingEvent(NamedTuple):
    """One accepted scan of one consignment at one checkpoint, normalised.

    Only what detection, flags and metrics use is typed here; unknown and descriptive fields
    stay in the original bytes, which callers keep (publish sends them untouched).
    """

    event_id: str
    consignment_id: str
    checkpoint: str
    from_country: str
    to_country: str
    observed_at: str
    instant_ns: int
    direction: Direction
    # One code per goods line, in line order (not de-duplicated): relabel matching needs the
    # lines, severity needs the codes.
    hs_codes: tuple[str, ...]
    declared_destination: str | None
    permit_id: str | None = None
    # SPEC §4.2 link keys (`container:…`, `seal:…`, `batch:…`), de-duplicated, stable order.
    link_keys: tuple[str, ...] = ()
    # Checked against the signing scanner where signed scans are required (core.signatures).
    scanner_id: str | None = None

    @property
    def origin(self) -> str:
        """The country on the far side of the border (where an entry came from / an exit goes)."""
        return self.from_country if self.direction is Direction.ENTRY else self.to_country


def _missing(name: str) -> InvalidCrossing:
    return InvalidCrossing(f"missing_field:{name}", f"'{name}' is required")


def _invalid(name: str, detail: str) -> InvalidCrossing:
    return InvalidCrossing(f"invalid_field:{name}", detail)


def _required_text(doc: Mapping[str, Any], name: str, max_len: int, *, ids: bool = False) -> str:
    """A required string of 1..max_len characters (`ids`: no control characters either)."""
    if name not in doc:
        raise _missing(name)
    value = doc[name]
    if type(value) is not str:
        raise _invalid(name, f"'{name}' must be a string, got {_json_type(value)}")
    if not 1 <= len(value) <= max_len:
        raise _invalid(name, f"'{name}' must be 1-{max_len} characters, got {len(value)}")
    if ids and _CONTROL.search(value):
        raise _invalid(name, f"'{name}' contains a control character")
    return value


def _optional_text(doc: Mapping[str, Any], name: str, max_len: int) -> str | None:
    """An optional string; JSON null counts as absent, as most producers write None."""
    if doc.get(name) is None:
        return None
    return _required_text(doc, name, max_len)


def _country(doc: Mapping[str, Any], name: str) -> str:
    if name not in doc:
        raise _missing(name)
    value = doc[name]
    code = normalize_country(value) if type(value) is str else None
    if code is None:
        raise _invalid(name, f"'{name}' {value!r} is not an assigned ISO 3166-1 alpha-2 code")
    return code


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _is_number(value: object) -> bool:
    # bool is an int subclass in Python, but JSON true is not a number.
    return type(value) is int or type(value) is float


def normalize_hs_code(raw: object) -> str | None:
    """`8542.31` and `8542 31 00` become `854231` / `85423100`; None when not 6-10 digits."""
    if type(raw) is not str:
        return None
    # Fast path, most scanners: digits only. isascii() matters: '٣'.isdigit() is True.
    if 6 <= len(raw) <= 10 and raw.isascii() and raw.isdigit():
        return raw
    digits = raw.replace(".", "").replace(" ", "")
    return digits if _HS_DIGITS.fullmatch(digits) else None


def _goods(doc: Mapping[str, Any]) -> tuple[tuple[str, ...], list[str]]:
    """The per-line HS codes and the batch ids of the lines that carry one."""
    if "goods" not in doc:
        raise _missing("goods")
    lines = doc["goods"]
    if type(lines) is not list:
        raise _invalid("goods", f"'goods' must be an array, got {_json_type(lines)}")
    if not 1 <= len(lines) <= MAX_GOODS_LINES:
        raise _invalid("goods", f"'goods' must have 1-{MAX_GOODS_LINES} lines, got {len(lines)}")
    codes: list[str] = []
    batch_ids: list[str] = []
    for index, line in enumerate(lines):
        if type(line) is not dict:
            raise _invalid("goods", f"goods[{index}] must be an object, got {_json_type(line)}")
        raw_code = line.get("hs_code")
        code = None if raw_code is None else normalize_hs_code(raw_code)
        if code is None:
            raise _invalid(
                "goods",
                f"goods[{index}].hs_code {raw_code!r} must be a string of 6-10 digits"
                " (dots and spaces are ignored)",
            )
        codes.append(code)
        if len(line) > 1:  # only the code: nothing else to check (the common scanner line)
            batch_id = _check_goods_extras(line, index)
            if batch_id is not None:
                batch_ids.append(batch_id)
    return tuple(codes), batch_ids


_NUMBER_TYPES = (int, float)


def _check_goods_extras(line: Mapping[str, Any], index: int) -> str | None:
    """Check a goods line's optional fields; return its `batch_id` when it has one."""
    # Written out field by field: this runs for every goods line of every event.
    get = line.get
    value = get("value_usd")
    if value is not None and (type(value) not in _NUMBER_TYPES or value < 0):
        raise _invalid("goods", f"goods[{index}].value_usd must be a number >= 0")
    value = get("quantity")
    if value is not None and (type(value) not in _NUMBER_TYPES or value < 0):
        raise _invalid("goods", f"goods[{index}].quantity must be a number >= 0")
    value = get("description")
    if value is not None and type(value) is not str:
        raise _invalid("goods", f"goods[{index}].description must be a string")
    value = get("unit")
    if value is not None and type(value) is not str:
        raise _invalid("goods", f"goods[{index}].unit must be a string")
    batch_id = get("batch_id")
    if batch_id is not None:
        if type(batch_id) is not str or not 1 <= len(batch_id) <= MAX_ID_CHARS:
            raise _invalid(
                "goods", f"goods[{index}].batch_id must be a string of 1-{MAX_ID_CHARS} characters"
            )
        if _CONTROL.search(batch_id):
            raise _invalid("goods", f"goods[{index}].batch_id contains a control character")
    return batch_id


def _transport(doc: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """Check `transport`; return its (container_id, seal_id), the two that follow the goods."""
    transport = doc.get("transport")
    if transport is None:
        return None, None
    if type(transport) is not dict:
        raise _invalid("transport", f"'transport' must be an object, got {_json_type(transport)}")
    mode = transport.get("mode")
    if mode is not None and (type(mode) is not str or mode not in TRANSPORT_MODES):
        raise _invalid(
            "transport", f"transport.mode {mode!r} must be one of {sorted(TRANSPORT_MODES)}"
        )
    for key in ("vehicle_id", "container_id", "seal_id"):
        value = transport.get(key)
        if value is not None and (type(value) is not str or not 1 <= len(value) <= MAX_ID_CHARS):
            raise _invalid(
                "transport", f"transport.{key} must be a string of 1-{MAX_ID_CHARS} characters"
            )
    return transport.get("container_id"), transport.get("seal_id")


def container_key(container_id: str) -> str | None:
    """`mscu 123456-7` -> `container:MSCU1234567`; None when nothing is left to match on."""
    normalised = container_id.upper().replace(" ", "").replace("-", "")
    return CONTAINER_KEY_PREFIX + normalised if normalised else None


def seal_key(seal_id: str) -> str | None:
    """`kz 0042 17` -> `seal:KZ004217`; None when nothing is left to match on."""
    normalised = seal_id.upper().replace(" ", "")
    return SEAL_KEY_PREFIX + normalised if normalised else None


def batch_key(batch_id: str) -> str | None:
    """The batch number as given, trimmed of surrounding spaces; None when only spaces."""
    trimmed = batch_id.strip(" ")
    return BATCH_KEY_PREFIX + trimmed if trimmed else None


def link_keys_of(
    container_id: str | None, seal_id: str | None, batch_ids: list[str]
) -> tuple[str, ...]:
    """SPEC §4.2 link keys: container, seal, then batches in line order; no repeats.

    `vehicle_id` is deliberately not a key: trucks shuttle the same road every week.
    """
    keys: list[str] = []
    candidates = [
        None if container_id is None else container_key(container_id),
        None if seal_id is None else seal_key(seal_id),
    ]
    candidates += [batch_key(batch_id) for batch_id in batch_ids]
    for key in candidates:
        if key is not None and key not in keys:
            keys.append(key)
    return tuple(keys)


def validate_document(doc: object, monitored_country: str = "KZ") -> CrossingEvent:
    """Check a decoded JSON value against SPEC §3 and return the normalised event.

    Fields are checked in the order of SPEC's table, so an event with several faults reports
    the first one; `not_a_crossing` comes last because it needs both countries valid.
    """
    if type(doc) is not dict:
        raise InvalidCrossing("not_an_object", f"expected a JSON object, got {_json_type(doc)}")
    schema = doc.get("schema")
    if schema is not None and schema != SCHEMA_ID:
        raise _invalid("schema", f"'schema' must be {SCHEMA_ID!r} when present, got {schema!r}")
    event_id = _required_text(doc, "event_id", 128, ids=True)
    consignment_id = _required_text(doc, "consignment_id", 128, ids=True)
    checkpoint = _required_text(doc, "checkpoint", 64)
    from_country = _country(doc, "from_country")
    to_country = _country(doc, "to_country")
    observed_at = _required_text(doc, "observed_at", 64)
    try:
        instant_ns = parse_instant(observed_at)
    except InvalidTimestamp as error:
        raise _invalid("observed_at", str(error)) from None
    if not OBSERVED_AT_MIN_NS <= instant_ns < OBSERVED_AT_END_NS:
        raise _invalid(
            "observed_at",
            f"{observed_at!r} is outside [{OBSERVED_AT_MIN}, {OBSERVED_AT_END}) as a UTC instant",
        )
    hs_codes, batch_ids = _goods(doc)
    permit_id = _optional_text(doc, "permit_id", MAX_ID_CHARS)
    declared_destination = (
        None if doc.get("declared_destination") is None else _country(doc, "declared_destination")
    )
    container_id, seal_id = _transport(doc)
    # Most events carry no link key: skip the normalisation entirely for them.
    link_keys = (
        link_keys_of(container_id, seal_id, batch_ids)
        if container_id is not None or seal_id is not None or batch_ids
        else ()
    )
    scanner_id = _optional_text(doc, "scanner_id", 64)

    entering = to_country == monitored_country
    leaving = from_country == monitored_country
    if entering == leaving:
        side = "both" if entering else "neither"
        raise InvalidCrossing(
            "not_a_crossing",
            f"{side} of from_country={from_country} and to_country={to_country}"
            f" is the monitored country {monitored_country}",
        )
    return CrossingEvent(
        event_id=event_id,
        consignment_id=consignment_id,
        checkpoint=checkpoint,
        from_country=from_country,
        to_country=to_country,
        observed_at=observed_at,
        instant_ns=instant_ns,
        direction=Direction.ENTRY if entering else Direction.EXIT,
        hs_codes=hs_codes,
        declared_destination=declared_destination,
        permit_id=permit_id,
        link_keys=link_keys,
        scanner_id=scanner_id,
    )


def parse_crossing(raw: bytes, monitored_country: str = "KZ") -> CrossingEvent:
    """Validate the bytes of one crossing event (a Kafka value or a JSONL line)."""
    if len(raw) > MAX_EVENT_BYTES:
        raise InvalidCrossing(
            "too_large", f"{len(raw)} bytes; a crossing event is at most {MAX_EVENT_BYTES} bytes"
        )
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise InvalidCrossing("invalid_json", _json_error_detail(raw, error)) from None
    return validate_document(doc, monitored_country)


def _json_error_detail(raw: bytes, error: orjson.JSONDecodeError) -> str:
    # orjson reports bad UTF-8 as "surrogates not allowed" or similar; say what is wrong in
    # the scanner operator's words. Only failed input pays for this second decode.
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as bad:
        return f"not valid UTF-8: byte {bad.start} (0x{raw[bad.start]:02x}) cannot be decoded"
    return f"not valid JSON: {error}"


def consignment_id_of(raw: bytes) -> str | None:
    """The `consignment_id` of a message when one can be read, even if the event is invalid.

    Used to key raw and dead-lettered messages so they land next to their consignment.
    """
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if type(doc) is dict and type(doc.get("consignment_id")) is str:
        return str(doc["consignment_id"])
    return None
