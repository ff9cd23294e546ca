"""Where the stream worker keeps per-consignment state between events.

- `base`: the `StateStore` protocol (async `load` / `save` / `close`), `StoreUnavailable`, and
  the policy for undecodable stored state
- `memory`: `MemoryStore`, in-process, encoded bytes, injectable clock for expiry
- `redis_store`: `RedisStore`, production, one `MGET` per load and one pipeline per save
"""

from bordermon.stores.base import CorruptStateHandler, StateStore, StoreUnavailable
from bordermon.stores.memory import MemoryStore
from bordermon.stores.redis_store import DEFAULT_PREFIX, RedisStore

__all__ = [
    "DEFAULT_PREFIX",
    "CorruptStateHandler",
    "MemoryStore",
    "RedisStore",
    "StateStore",
    "StoreUnavailable",
]
