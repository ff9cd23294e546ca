"""`bordermon worker` with a bug planted, for the poison-isolation tests: applying an event whose
`event_id` starts with `poison` raises, as an unforeseen value would in real code. The bug is
planted in this test process only; the product has no fault-injection hook.

    python tests/support/faulty_workers/poisoned_worker.py [worker options]
"""

from __future__ import annotations

import sys
from typing import Any

from bordermon.cli import main
from bordermon.core import pipeline

_real_apply = pipeline.apply


def apply_with_a_bug(state: Any, event: Any, *args: Any, **kwargs: Any) -> Any:
    if event.event_id.startswith("poison"):
        raise TypeError("Integer exceeds 64-bit range")
    return _real_apply(state, event, *args, **kwargs)


if __name__ == "__main__":
    pipeline.apply = apply_with_a_bug
    sys.exit(main(["worker", *sys.argv[1:]]))
