"""`bordermon worker` that SIGKILLs itself once, at the worst moment between the two stages:
right after the consignment stage's link sightings are acknowledged by the links topic, before
that batch's consignment states are saved and its offsets committed. The file named by
`BORDERMON_TEST_DIE_ONCE` records that it died, so a restart runs normally. Planted in this
test process only; the product has no fault-injection hook.

    BORDERMON_TEST_DIE_ONCE=/tmp/marker \
        python tests/support/faulty_workers/dying_worker.py [options]
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bordermon.cli import main
from bordermon.processor.batch import BatchProcessor
from bordermon.processor.stages import Forward

_real_forward = BatchProcessor._forward


async def _forward_then_die(self: Any, forwards: Sequence[Forward]) -> None:
    await _real_forward(self, forwards)
    marker = Path(os.environ["BORDERMON_TEST_DIE_ONCE"])
    if not marker.exists():
        marker.write_text(f"{len(forwards)} sightings handed over\n")
        os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    BatchProcessor._forward = _forward_then_die  # type: ignore[method-assign]
    sys.exit(main(["worker", *sys.argv[1:]]))
