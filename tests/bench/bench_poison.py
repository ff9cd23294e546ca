"""Benchmark: what a poison message costs its batch (SPEC §6, docs/reliability.md).

    .venv/bin/python tests/bench/bench_poison.py                   # 500-message batches
    .venv/bin/python tests/bench/bench_poison.py --batch 2000 --repeat 20

The worker's batch step (`BatchProcessor` with the consignment stage) runs in-process over an
in-memory store and a producer that only collects records, so the numbers are the processing
cost alone, without Kafka or Redis round trips (each bisection level adds one load and one or
two saves per half in a real worker: about a millisecond each on loopback Redis). A bug is
planted the way tests/support/faulty_workers/poisoned_worker.py does: applying an event whose
id starts with `poison` raises. For 0, 1 and 3 poison messages per batch it reports the wall
time per batch (median of the repeats) and how many times events were applied (bisection
re-applies the good halves). Not a test: run it by hand, copy the table into docs/reliability.md.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parents[2]
if str(REPO / "services") not in sys.path:
    sys.path.insert(0, str(REPO / "services"))

from machine import describe_machine  # noqa: E402

from bordermon.core import DetectionConfig, load_watchlist, pipeline  # noqa: E402
from bordermon.core.pipeline import Message  # noqa: E402
from bordermon.processor.batch import BatchProcessor, Record, StageTopics  # noqa: E402
from bordermon.processor.stages import ConsignmentStage  # noqa: E402
from bordermon.stores.memory import MemoryStore  # noqa: E402


class Collecting:
    def __init__(self) -> None:
        self.records: list[Record] = []

    async def send_all(self, records: Sequence[Record]) -> None:
        self.records += records


def batch_of(size: int, poison: set[int]) -> list[Message]:
    """`size` messages: entries and exits of size/2 consignments; entries at `poison` fail."""
    messages = []
    for n in range(size // 2):
        cid = f"C{n}"
        base: dict[str, Any] = {
            "consignment_id": cid,
            "checkpoint": "KZ-KHORGOS",
            "goods": [{"hs_code": "8542.31"}],
        }
        entry = {**base, "event_id": f"poison-{n}" if n in poison else f"e{n}"}
        entry.update(from_country="CN", to_country="KZ", observed_at="2024-03-01T00:00:00Z")
        exit_ = {**base, "event_id": f"x{n}", "permit_id": "P-1"}
        exit_.update(from_country="KZ", to_country="RU", observed_at="2024-03-03T00:00:00Z")
        for offset, doc in ((2 * n, entry), (2 * n + 1, exit_)):
            messages.append(
                Message(orjson.dumps(doc), cid.encode(), True, partition=n % 6, offset=offset)
            )
    return messages


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=500, help="messages per batch (500)")
    parser.add_argument("--repeat", type=int, default=10, help="batches per case (10)")
    args = parser.parse_args(argv)

    real_apply = pipeline.apply
    applies = [0]

    def apply_with_a_bug(state: Any, event: Any, *rest: Any, **kwargs: Any) -> Any:
        applies[0] += 1
        if event.event_id.startswith("poison"):
            raise TypeError("Integer exceeds 64-bit range")
        return real_apply(state, event, *rest, **kwargs)

    pipeline.apply = apply_with_a_bug  # type: ignore[assignment]
    logging.disable(logging.CRITICAL)  # each poison message logs its traceback
    config = DetectionConfig(watchlist=load_watchlist(["builtin:chpl"]))
    topics = StageTopics("crossings", "flags", "dlq", "links")
    half = args.batch // 2
    print(f"machine: {describe_machine()}", file=sys.stderr)
    print(f"| poison per {args.batch} messages | ms per batch (median) | applies per message |")
    print("|---|---|---|")
    for poison in (set(), {half // 2}, {3, half // 2, half - 3}):
        times, counts = [], []
        for _ in range(args.repeat):
            producer = Collecting()
            processor = BatchProcessor(
                ConsignmentStage(config), MemoryStore(3600), producer, topics
            )
            messages = batch_of(args.batch, poison)
            applies[0] = 0
            started = time.perf_counter()
            asyncio.run(processor.process(messages))
            times.append(time.perf_counter() - started)
            counts.append(applies[0] / len(messages))
            dead = [r for r in producer.records if r.topic == "dlq"]
            assert len(dead) == len(poison), (len(dead), poison)
        print(
            f"| {len(poison)} | {statistics.median(times) * 1000:.1f}"
            f" | {statistics.median(counts):.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
