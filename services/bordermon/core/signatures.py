"""Signed scans: which scanner sent an event, and whether it may report that checkpoint.

Kafka ACLs say who may write the crossings topic, not what a writer may say: a compromised
scanner at one checkpoint could publish events for every other. So each scanner holds an
Ed25519 key and signs the **exact payload bytes** it sends; the payload stays `crossing/1` and
the proof travels in two Kafka headers:

- `bordermon-scanner-id`: the scanner's id, UTF-8;
- `bordermon-signature`: the Ed25519 signature (64 bytes) of the Kafka value, in standard
  base64 with padding (88 ASCII characters). Base64, not raw bytes, so that the header reads
  and copies cleanly in every Kafka tool (kcat, console consumers, UIs show headers as text).

The worker (with `require_signatures` on) checks them against a **scanner registry**, a text
file of one scanner per line, CSV (`csv` module quoting, so any id or checkpoint can be
written):

    # scanner_id, public key (base64 of the 32 raw Ed25519 bytes), checkpoints it may report...
    nur-zholy-1,HEvCpgD4lN8sR7UzVFMpRpCB+YNSeFBc/prbnsh5jis=,KZ-NUR-ZHOLY
    khorgos-2,lZ624+rF+vTVWYFONHJnD//pAuJS2C153jWKWKY6Wvo=,KZ-KHORGOS,KZ-NUR-ZHOLY
    mobile-team,zZgjPcfri+BrFWGiQ4lOalfO/LB41jvxgn87p1ZaVCc=,*

Blank lines and lines starting with `#` are ignored, spaces around fields too. A scanner may
report one or more checkpoints (each a further field), or `*` alone: any checkpoint. A
scanner id appears once. `bordermon scanner-key new` prints a scanner's line.

`check_signature` returns None for a good event, else `(reason, detail)`, reasons in this
order of checks (SPEC §3):

1. `unsigned`: no `bordermon-signature` or no `bordermon-scanner-id` header (or an empty one);
2. `bad_signature`: a header given twice, a scanner id that is not UTF-8 or not in the
   registry, a signature that is not base64 of 64 bytes, a signature that does not verify
   over the payload bytes with the scanner's key (a tampered byte, another payload's
   signature, another key), or a payload `scanner_id` that is not the header's (below);
3. `checkpoint_not_allowed`: a valid signature, but the event's `checkpoint` is not one the
   scanner may report.

The payload's optional `scanner_id`, when present, must equal the header's, else
`bad_signature`. The signature proves who signed, and the payload then names someone else:
that is an identity failure (the event is attributed to a scanner whose key never vouched for
it), not a question of where the signer may report, which is all `checkpoint_not_allowed`
means. Keeping the two apart keeps `checkpoint_not_allowed` a precise alarm: a genuine scanner
reporting outside its checkpoints.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from bordermon.core.crossing import CrossingEvent

SIGNATURE_HEADER = "bordermon-signature"
SCANNER_ID_HEADER = "bordermon-scanner-id"
ANY_CHECKPOINT = "*"
PUBLIC_KEY_BYTES = 32
PRIVATE_KEY_BYTES = 32
SIGNATURE_BYTES = 64
MAX_SCANNER_ID_CHARS = 64  # SPEC §3 `scanner_id`
MAX_CHECKPOINT_CHARS = 64  # SPEC §3 `checkpoint`

UNSIGNED = "unsigned"
BAD_SIGNATURE = "bad_signature"
CHECKPOINT_NOT_ALLOWED = "checkpoint_not_allowed"

Headers = Sequence[tuple[str, bytes]]


class RegistryError(ValueError):
    """A registry that cannot be used; the message names the line (the caller adds the file)."""


class PrivateKeyError(ValueError):
    """A private key that cannot be read; the message never contains key material."""


@dataclass(frozen=True, slots=True)
class Scanner:
    scanner_id: str
    public_key: Ed25519PublicKey
    checkpoints: frozenset[str]  # empty: any checkpoint (`*`)

    def may_report(self, checkpoint: str) -> bool:
        return not self.checkpoints or checkpoint in self.checkpoints


@dataclass(frozen=True, slots=True)
class ScannerRegistry:
    scanners: Mapping[str, Scanner]

    def __len__(self) -> int:
        return len(self.scanners)

    def get(self, scanner_id: str) -> Scanner | None:
        return self.scanners.get(scanner_id)


# --- the registry -----------------------------------------------------------------------------


def parse_registry(text: str) -> ScannerRegistry:
    """Parse registry text (see the module docstring); `RegistryError` names the bad line."""
    scanners: dict[str, Scanner] = {}
    first_line: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            scanner = _parse_registry_line(stripped)
        except ValueError as error:
            raise RegistryError(f"line {number}: {error}") from None
        if scanner.scanner_id in scanners:
            raise RegistryError(
                f"line {number}: scanner {scanner.scanner_id!r} is already listed on line"
                f" {first_line[scanner.scanner_id]}"
            )
        scanners[scanner.scanner_id] = scanner
        first_line[scanner.scanner_id] = number
    if not scanners:
        raise RegistryError("lists no scanner: every signed event would be refused")
    return ScannerRegistry(scanners)


def _parse_registry_line(line: str) -> Scanner:
    try:
        fields = [field.strip() for field in next(csv.reader([line], strict=True))]
    except csv.Error as error:
        raise ValueError(f"not a CSV line: {error}") from None
    if len(fields) < 3:
        raise ValueError(
            "expected scanner_id,public_key,checkpoint[,checkpoint...] (or * for any"
            f" checkpoint), got {len(fields)} field(s)"
        )
    scanner_id, key_text, *checkpoints = fields
    check_scanner_id(scanner_id)
    public_key = _public_key(key_text)
    if ANY_CHECKPOINT in checkpoints:
        if len(checkpoints) > 1:
            raise ValueError(f"'{ANY_CHECKPOINT}' (any checkpoint) must be the only checkpoint")
        return Scanner(scanner_id, public_key, frozenset())
    for checkpoint in checkpoints:
        if not 1 <= len(checkpoint) <= MAX_CHECKPOINT_CHARS:
            raise ValueError(
                f"checkpoint {checkpoint!r} must be 1-{MAX_CHECKPOINT_CHARS} characters"
            )
    return Scanner(scanner_id, public_key, frozenset(checkpoints))


def check_scanner_id(scanner_id: str) -> str:
    """A scanner id as SPEC §3 bounds `scanner_id`, printable; ValueError otherwise."""
    if not 1 <= len(scanner_id) <= MAX_SCANNER_ID_CHARS:
        raise ValueError(f"scanner id {scanner_id!r} must be 1-{MAX_SCANNER_ID_CHARS} characters")
    if not scanner_id.isprintable():
        raise ValueError(f"scanner id {scanner_id!r} contains a non-printable character")
    return scanner_id


def _public_key(text: str) -> Ed25519PublicKey:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"public key {text!r} is not base64") from None
    if len(raw) != PUBLIC_KEY_BYTES:
        raise ValueError(
            f"public key {text!r} is {len(raw)} bytes, not the {PUBLIC_KEY_BYTES} of a raw"
            " Ed25519 public key"
        )
    return Ed25519PublicKey.from_public_bytes(raw)


def registry_line(scanner_id: str, public_key: Ed25519PublicKey, checkpoints: Iterable[str]) -> str:
    """The registry line of a scanner (no newline), quoted as CSV needs; parses back."""
    fields = [check_scanner_id(scanner_id), encode_public_key(public_key), *checkpoints]
    line = _csv_line(fields)
    _parse_registry_line(line)  # the same checks as the worker's, before anyone relies on it
    return line


def _csv_line(fields: Sequence[str]) -> str:
    out = io.StringIO()
    # A first field that starts with `#` would read as a comment: quote everything then.
    if fields[0].startswith("#"):
        csv.writer(out, lineterminator="", quoting=csv.QUOTE_ALL).writerow(fields)
    else:
        csv.writer(out, lineterminator="").writerow(fields)
    return out.getvalue()


def encode_public_key(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


# --- verifying --------------------------------------------------------------------------------


def check_signature(
    payload: bytes, headers: Headers, event: CrossingEvent, registry: ScannerRegistry
) -> tuple[str, str] | None:
    """None when `payload` is signed by a registered scanner that may report the event's
    checkpoint; else `(reason, detail)` (see the module docstring for the order)."""
    signature_values = _header_values(headers, SIGNATURE_HEADER)
    scanner_values = _header_values(headers, SCANNER_ID_HEADER)
    missing = [
        name
        for name, values in (
            (SIGNATURE_HEADER, signature_values),
            (SCANNER_ID_HEADER, scanner_values),
        )
        if not any(values)
    ]
    if missing:
        return UNSIGNED, f"no {' and no '.join(missing)} header"
    for name, values in ((SIGNATURE_HEADER, signature_values), (SCANNER_ID_HEADER, scanner_values)):
        if len(values) > 1:
            return BAD_SIGNATURE, f"{len(values)} {name} headers; exactly one is allowed"
    try:
        scanner_id = scanner_values[0].decode("utf-8")
    except UnicodeDecodeError:
        return BAD_SIGNATURE, f"{SCANNER_ID_HEADER} {scanner_values[0]!r} is not UTF-8"
    scanner = registry.get(scanner_id)
    if scanner is None:
        return BAD_SIGNATURE, f"scanner {scanner_id!r} is not in the scanner registry"
    signature = _decode_signature(signature_values[0])
    if signature is None:
        return BAD_SIGNATURE, (
            f"{SIGNATURE_HEADER} is not the base64 of a {SIGNATURE_BYTES}-byte Ed25519 signature"
        )
    try:
        scanner.public_key.verify(signature, payload)
    except InvalidSignature:
        return BAD_SIGNATURE, (
            f"the signature does not verify over the payload with scanner {scanner_id!r}'s key"
        )
    if event.scanner_id is not None and event.scanner_id != scanner_id:
        return BAD_SIGNATURE, (
            f"the payload's scanner_id {event.scanner_id!r} is not the signing scanner"
            f" {scanner_id!r}"
        )
    if not scanner.may_report(event.checkpoint):
        return CHECKPOINT_NOT_ALLOWED, (
            f"scanner {scanner_id!r} may not report checkpoint {event.checkpoint!r}"
            f" (registered: {', '.join(sorted(scanner.checkpoints))})"
        )
    return None


def _header_values(headers: Headers, name: str) -> list[bytes]:
    return [value or b"" for key, value in headers if key == name]


def _decode_signature(value: bytes) -> bytes | None:
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == SIGNATURE_BYTES else None


# --- signing (the scanner side) ---------------------------------------------------------------


def sign_headers(
    payload: bytes, scanner_id: str, key: Ed25519PrivateKey
) -> list[tuple[str, bytes]]:
    """The two headers that sign `payload` (the exact bytes sent as the Kafka value)."""
    signature = base64.b64encode(key.sign(payload))
    return [(SCANNER_ID_HEADER, scanner_id.encode("utf-8")), (SIGNATURE_HEADER, signature)]


def new_private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def encode_private_key(key: Ed25519PrivateKey) -> bytes:
    """PKCS#8 PEM, unencrypted (the file's mode protects it), as `openssl pkey` reads it."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_private_key(data: bytes) -> Ed25519PrivateKey:
    """An Ed25519 private key from PKCS#8 PEM or from the base64 of its 32 raw bytes.

    `PrivateKeyError` says what is wrong without quoting the data: it is a secret."""
    text = data.strip()
    if text.startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(text, password=None)
        except (ValueError, TypeError) as error:
            kind = "encrypted" if isinstance(error, TypeError) else "unreadable"
            raise PrivateKeyError(
                f"{kind} PEM private key (an unencrypted PKCS#8 key is needed)"
            ) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise PrivateKeyError(
                f"a PEM {type(key).__name__}, not an Ed25519 private key"
            ) from None
        return key
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise PrivateKeyError(
            "neither a PEM private key nor the base64 of a raw Ed25519 private key"
        ) from None
    if len(raw) != PRIVATE_KEY_BYTES:
        raise PrivateKeyError(
            f"base64 of {len(raw)} bytes, not the {PRIVATE_KEY_BYTES} of a raw Ed25519 private key"
        )
    return Ed25519PrivateKey.from_private_bytes(raw)
