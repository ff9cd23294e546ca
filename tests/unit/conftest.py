"""Fixtures for unit tests of the pure core."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bordermon.core import DetectionConfig
from support.builders import CHPL, TRANSIT_ONLY


@pytest.fixture
def config() -> DetectionConfig:
    """`transit-to-ru` alone: the tests that take this fixture are about that rule."""
    return DetectionConfig(watchlist=CHPL, rules=TRANSIT_ONLY)


@pytest.fixture
def fixed_clock() -> Callable[[], int]:
    return lambda: 1_700_000_000_000_000_000
