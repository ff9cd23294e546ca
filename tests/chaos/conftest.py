"""The chaos suite is a command (`python tests/chaos/run.py`), not part of the pytest run."""

collect_ignore_glob = ["*.py"]
