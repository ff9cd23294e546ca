"""Reading JSONL input the way every command does (replay, publish).

One definition of "a line", so that line numbers in replay's rejects and in publish's messages
match what an editor shows: `\n` or `\r\n` terminated, blank lines skipped but counted, and a
UTF-8 byte-order mark at the start of the input (Windows editors write one) ignored.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO

UTF8_BOM = b"\xef\xbb\xbf"


class InputError(Exception):
    """The input could not be read (an I/O error, not a bad line); the message says which."""


def iter_lines(source: IO[bytes], blank: list[int] | None = None) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, line without its `\\n` or `\\r\\n`) for every non-blank line.

    Blank lines are skipped (and counted in `blank[0]` when given), as `bordermon replay`
    does, so line numbers in messages match what an editor shows. An error reading `source`
    raises `InputError` naming the line that could not be read.
    """
    number = 0
    try:
        for number, line in enumerate(source, start=1):
            value = line[:-1] if line.endswith(b"\n") else line
            if value.endswith(b"\r"):
                value = value[:-1]
            if number == 1:
                value = value.removeprefix(UTF8_BOM)
            if not value.strip():
                if blank is not None:
                    blank[0] += 1
                continue
            yield number, value
    except OSError as error:
        # Only reading `source` can raise it here: the loop body does no I/O.
        raise read_error(source, number + 1, error) from None


def read_error(source: IO[bytes], line: int, error: OSError) -> InputError:
    """The error for an input that failed while reading `line` (1-based)."""
    name = getattr(source, "name", "the input")
    return InputError(f"cannot read {name} at line {line}: {error.strerror or error}")
