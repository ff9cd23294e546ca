"""Test support: the builders, helpers and fixtures every test tier shares (see tests/README.md).

`tests/` is the import root (pytest's `pythonpath`), so tests write `from support.builders
import crossing_line`; the fixture modules (`fixtures_*.py`) are pytest plugins registered by
tests/conftest.py and are not imported by tests.
"""
