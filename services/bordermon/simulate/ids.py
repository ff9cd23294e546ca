"""Identifiers the scans carry: event and consignment ids, containers, seals, batches, permits.

Containers, seals, batches and permits come from counters, not from the RNG, so that two
unrelated consignments never share a link key by accident (SPEC section 4.2): the only shared
keys of a run are those a pattern shares on purpose, and each is carried by a handful of scans,
far below the 64 entries a link key must remember. The counters are permuted so that numbers
look random; they repeat only after millions of containers (16 owners x 10^6 serials), seals
(20 prefixes x 10^6) or batches (10^7 declarations per post and day).
"""

from __future__ import annotations

import random
import time
from typing import Final

_VARIANT: Final = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}

# ISO 6346 owner codes (three letters and the category U) of lines that call at Kazakh terminals.
_OWNERS: Final = (
    "MSCU", "MAEU", "CMAU", "COSU", "HLXU", "OOLU", "EGLU", "TGHU", "TCLU", "SEGU", "FCIU",
    "TRHU", "BMOU", "CAIU", "GESU", "KZTU",
)  # fmt: skip
_SEAL_PREFIXES: Final = (
    "KZ", "CN", "TR", "AE", "DE", "KR", "KG", "UZ", "AZ", "IT", "PL", "JP", "IN", "US", "GB",
    "FR", "NL", "CZ", "VN", "TM",
)  # fmt: skip
# Customs posts (8 digits) that register goods batches (RNPT: post/DDMMYY/declaration/line).
_POSTS: Final = ("55205000", "55201200", "55208100", "55204100", "55209300", "10702070")
_MILLION: Final = 1_000_000


def _letter_values() -> dict[str, int]:
    """ISO 6346 letter values: A=10 upwards, skipping the multiples of 11."""
    values: dict[str, int] = {}
    value = 10
    for letter in "ABCDEFGHIJKLMNOPQRSTUVWXYZ":
        if value % 11 == 0:
            value += 1
        values[letter] = value
        value += 1
    return values


_LETTER_VALUES: Final = _letter_values()


def check_digit(owner_and_serial: str) -> int:
    """The ISO 6346 check digit of e.g. "MSCU123456" (4 letters, 6 digits)."""
    total = sum(
        (_LETTER_VALUES[char] if char.isalpha() else int(char)) << position
        for position, char in enumerate(owner_and_serial)
    )
    return total % 11 % 10


# Weighted sums of the check digit, precomputed: owners, and the two halves of the serial.
_OWNER_SUMS: Final = {
    owner: sum(_LETTER_VALUES[c] << i for i, c in enumerate(owner)) for owner in _OWNERS
}
_SERIAL_HIGH: Final = tuple(
    sum(int(d) << (4 + i) for i, d in enumerate(f"{n:03d}")) for n in range(1000)
)
_SERIAL_LOW: Final = tuple(
    sum(int(d) << (7 + i) for i, d in enumerate(f"{n:03d}")) for n in range(1000)
)


def _permuted(counter: int, modulus: int, salt: int) -> int:
    """A bijection of [0, modulus) (7919 is prime to 10^k) that makes counters look random."""
    return (counter * 7919 + salt) % modulus


class Ids:
    """Identifiers of one run. Event ids and consignment suffixes come from the seeded RNG."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.containers = 0
        self.seals = 0
        self.batches = 0
        self.permits = 0
        self.salt = rng.randrange(_MILLION)

    def uuid(self) -> str:
        """A version-4-shaped id from the seeded RNG (uuid4 would break reproducibility)."""
        h = f"{self.rng.getrandbits(128):032x}"
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"

    def consignment(self, number: int) -> str:
        r = self.rng.random
        if r() < 0.03:  # any Unicode but controls is allowed: use it
            return f"ГРУЗ-{number:07d}-{int(r() * 46656):03x}"
        return f"CSG-{number:07d}-{int(r() * 65536):04X}"

    def container(self) -> str:
        """ISO 6346, e.g. MSCU1234565: owner, category U, six digits and the check digit."""
        n = self.containers
        self.containers += 1
        owner = _OWNERS[(n // _MILLION + self.salt) % len(_OWNERS)]
        serial = _permuted(n % _MILLION, _MILLION, self.salt)
        total = _OWNER_SUMS[owner] + _SERIAL_HIGH[serial // 1000] + _SERIAL_LOW[serial % 1000]
        return f"{owner}{serial:06d}{total % 11 % 10}"  # == check_digit(owner + serial)

    def seal(self) -> str:
        """A seal number like KZ123456."""
        n = self.seals
        self.seals += 1
        prefix = _SEAL_PREFIXES[(n // _MILLION) % len(_SEAL_PREFIXES)]
        return f"{prefix}{_permuted(n % _MILLION, _MILLION, self.salt):06d}"

    def batch(self, t_us: int, line: int = 1) -> str:
        """An RNPT-shaped goods-batch number, e.g. 55205000/210324/0012345/001."""
        n = self.batches
        self.batches += 1
        tm = time.gmtime(t_us // _MILLION)
        post = _POSTS[n % len(_POSTS)]
        day = f"{tm.tm_mday:02d}{tm.tm_mon:02d}{tm.tm_year % 100:02d}"
        declaration = _permuted(n // len(_POSTS), 10_000_000, self.salt)
        return f"{post}/{day}/{declaration:07d}/{line:03d}"

    def permit(self, t_us: int) -> str:
        """An export licence number, e.g. KZ-EL-2024-004211."""
        n = self.permits
        self.permits += 1
        year = time.gmtime(t_us // _MILLION).tm_year
        return f"KZ-EL-{year}-{_permuted(n, _MILLION, self.salt):06d}"
