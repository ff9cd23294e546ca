"""Pieces the rules share when they word a flag."""

from __future__ import annotations

from collections.abc import Iterable

from bordermon.core.sighting import Sighting


def declared_destination_reasons(declared: Iterable[str], exit_: Sighting) -> list[str]:
    """`declared-destination:<cc>` for every declared destination other than where the goods
    actually went: a declaration that says KZ or KG for goods seen leaving for RU."""
    return [
        f"declared-destination:{code}" for code in sorted(set(declared)) if code != exit_.to_country
    ]
