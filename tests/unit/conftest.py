"""Fixtures for unit tests of the pure core."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from builders import CHPL

from bordermon.core import DetectionConfig


@pytest.fixture
def config() -> DetectionConfig:
    return DetectionConfig(watchlist=CHPL)


@pytest.fixture
def fixed_clock() -> Callable[[], int]:
    return lambda: 1_700_000_000_000_000_000
