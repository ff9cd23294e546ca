"""ISO 3166-1 alpha-2 codes that are officially assigned.

SPEC §3 accepts assigned codes only, so a regex of two letters is not enough: `XX`, `EU`
(exceptionally reserved) and `XK` (user-assigned) are all rejected. The list ships as a data
file so that updating it (ISO adds or withdraws a code every few years) is a data change.
"""

from __future__ import annotations

from importlib import resources


def _load() -> frozenset[str]:
    text = (resources.files(__package__) / "data" / "iso3166-alpha2.txt").read_text("ascii")
    return frozenset(
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    )


ASSIGNED_ALPHA2: frozenset[str] = _load()


def normalize_country(value: str) -> str | None:
    """Upper-cased code when `value` is an assigned alpha-2 code (any letter case), else None.

    The ASCII check matters: 'ıt'.upper() is 'IT' in Python, and a dotless i is not a code.
    """
    if len(value) != 2 or not value.isascii():
        return None
    code = value.upper()
    return code if code in ASSIGNED_ALPHA2 else None


ALPHA2_BY_SPELLING: dict[str, str] = {
    spelling: code
    for code in ASSIGNED_ALPHA2
    for spelling in (code, code.lower(), code[0] + code[1].lower(), code[0].lower() + code[1])
}
"""Every spelling `normalize_country` accepts, to its upper-cased code: one dict look-up for
the compiled crossing decoder (`normalize_country(s) == ALPHA2_BY_SPELLING.get(s)` for every
str; assigned codes are two ASCII letters, so these four spellings are all there are)."""
