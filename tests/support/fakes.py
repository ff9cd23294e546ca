"""Test doubles that stand in for clients of real services in the unit tier."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class _FakeError:
    def __init__(self, text: str) -> None:
        self.text = text

    def str(self) -> str:
        return self.text


class _FakeMessage:
    def __init__(self, key: bytes | None, offset: int) -> None:
        self._key, self._offset = key, offset

    def key(self) -> bytes | None:
        return self._key

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset


class FakeProducer:
    """Records what is produced; answers every queued message on the next poll (only on flush
    when `lazy`), with an error for the values listed in `fail`."""

    def __init__(
        self, *, buffer_errors: int = 0, fail: frozenset[bytes] = frozenset(), lazy: bool = False
    ) -> None:
        self.lazy = lazy
        self.produced: list[tuple[str, bytes | None, bytes]] = []
        self.headers: list[list[tuple[str, Any]] | None] = []  # per produced message
        self.queue: list[tuple[bytes | None, bytes, Callable[..., None]]] = []
        self.buffer_errors = buffer_errors
        self.fail = fail
        self.polls: list[float] = []

    def produce(
        self,
        topic: str,
        *,
        value: bytes,
        key: bytes | None,
        on_delivery: Callable[..., None],
        headers: list[tuple[str, Any]] | None = None,
    ) -> None:
        if self.buffer_errors:
            self.buffer_errors -= 1
            raise BufferError("Local: Queue full")
        self.produced.append((topic, key, value))
        self.headers.append(headers)
        self.queue.append((key, value, on_delivery))

    def poll(self, timeout: float) -> int:
        self.polls.append(timeout)
        return 0 if self.lazy else self._answer()

    def _answer(self) -> int:
        answered, self.queue = self.queue, []
        for offset, (key, value, callback) in enumerate(answered):
            error = _FakeError("Broker: Message too large") if value in self.fail else None
            callback(error, _FakeMessage(key, offset))
        return len(answered)

    def flush(self, timeout: float) -> int:
        self._answer()
        return 0

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.queue)
