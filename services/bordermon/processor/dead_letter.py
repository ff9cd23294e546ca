"""Dead-letter records (SPEC §2): the original bytes untouched, the why and where in headers."""

from __future__ import annotations

from bordermon.core.pipeline import Reject

# Header values are bytes; Kafka headers carry no size limit of their own but the record does.
MAX_DETAIL_BYTES = 1024


def dead_letter_headers(reject: Reject, source_topic: str) -> list[tuple[str, bytes]]:
    message = reject.message
    return [
        ("error", reject.reason.encode()),
        ("detail", reject.detail.encode("utf-8", errors="replace")[:MAX_DETAIL_BYTES]),
        ("source_topic", source_topic.encode()),
        ("source_partition", str(message.partition).encode()),
        ("source_offset", str(message.offset).encode()),
    ]
