"""The chaos suite's worker: tests/support/faulty_workers/poisoned_worker.py (events whose id
starts with `poison` fail to apply), with every apply made slower by busy CPU work.

    BORDERMON_CHAOS_APPLY_MS=2 python tests/chaos/chaos_worker.py [worker options]

A few milliseconds per event stretch a batch's state phase (between the load and the save) to
a size that a SIGKILL or SIGSTOP lands in often, as on a loaded machine; otherwise a fault
nearly always hits a worker between batches and the interesting interleavings (a save fenced
after a pause, a flag produced but its state not yet cleared) are rarely exercised. The delay
is busy work, not a sleep, so the worker is on the CPU (and holds the GIL) as in a real apply.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for the support package

from bordermon.cli import main
from bordermon.core import pipeline
from support.faulty_workers.poisoned_worker import apply_with_a_bug

DELAY_S = float(os.environ.get("BORDERMON_CHAOS_APPLY_MS", "0") or 0) / 1000


def _slow_apply(*args: Any, **kwargs: Any) -> Any:
    until = time.perf_counter() + DELAY_S
    while time.perf_counter() < until:
        pass
    return apply_with_a_bug(*args, **kwargs)


if __name__ == "__main__":
    pipeline.apply = _slow_apply
    sys.exit(main(["worker", *sys.argv[1:]]))
