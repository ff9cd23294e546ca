"""Reading JSONL input the way every command does (replay, publish).

One definition of "a line", so that line numbers in replay's rejects and in publish's messages
match what an editor shows: `\n` or `\r\n` terminated, blank lines skipped but counted.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO


def iter_lines(source: IO[bytes], blank: list[int] | None = None) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, line without its `\\n` or `\\r\\n`) for every non-blank line.

    Blank lines are skipped (and counted in `blank[0]` when given), as `bordermon replay`
    does, so line numbers in messages match what an editor shows.
    """
    for number, line in enumerate(source, start=1):
        value = line[:-1] if line.endswith(b"\n") else line
        if value.endswith(b"\r"):
            value = value[:-1]
        if not value.strip():
            if blank is not None:
                blank[0] += 1
            continue
        yield number, value
