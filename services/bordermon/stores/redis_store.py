"""The production `StateStore`: one Redis string per consignment, `redis.asyncio`.

Layout: key `<prefix><consignment id as UTF-8>` (prefix default `bordermon:state:`), value the
revision header `R<revision>\n` and the codec's bytes (`encode_state`: state format 2, binary;
format 1 JSON values, with or without the header, still load), expiry `ttl_seconds` reset by
every save.

Keys: Redis keys are binary-safe, so the id's UTF-8 bytes are used as they are: any id the
crossing schema accepts (arbitrary Unicode, up to 128 characters: spaces, colons, `*`, emoji...)
maps to exactly one key and no two ids share one (UTF-8 is injective and the prefix is fixed).
Nothing here uses key patterns (`KEYS`/`SCAN MATCH`), so glob characters in ids are harmless;
tools that scan must escape them. Ids are not hashed so that `redis-cli GET` finds a
consignment by its id.

Round trips: `load` is one `MGET`; `save` is one `EVALSHA` of a small Lua script that runs
`SET key value EX ttl` for every state of the batch. One command with one reply, rather than a
pipeline of N `SET`s with N replies: the benchmark measured 500 states saved in 3-4 ms this way
against 14 ms pipelined, the client's per-command packing and reply handling being the cost
(`tests/bench/bench_pipeline.py`). Nothing relies on the script being atomic: states of
different consignments are independent and a failed save is retried with the whole batch (and
re-applying an event changes nothing). Redis runs the script in one go (sub-millisecond for a
batch), which other clients notice as little as a pipeline. The keys of one script must live on
one node: this store targets a single Redis (or a primary with replicas), not Redis Cluster.

Undecodable stored state: treated as absent, logged, reported to `on_corrupt` (the worker
counts it in `bordermon_states_quarantined_total{store}`), and its raw bytes copied to
`<quarantine prefix><id>` with the same TTL (`bordermon:state-corrupt:<id>`, and
`bordermon:link-corrupt:<link key>` for the link stage; see `bordermon.stores.base`). That copy
costs one extra round trip, only in a `load` that found such a value.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any, Generic, Protocol, cast
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError

from bordermon.core.state import StateDecodeError
from bordermon.settings import Secret, mask_url
from bordermon.stores.base import (
    CONSIGNMENTS,
    CorruptStateHandler,
    Fenced,
    S,
    SaveConflict,
    Snapshot,
    StateCodec,
    StoreUnavailable,
    last_per_key,
    report_corrupt,
    validate_ttl,
)

DEFAULT_PREFIX = "bordermon:state:"
LINK_PREFIX = "bordermon:link:"
"""Where the link stage keeps its states (`bordermon:link:container:MSCU1234567`)."""
DEFAULT_OWNER_PREFIX = "bordermon:owner:"
QUARANTINE_SUFFIX = "-corrupt:"
"""The default quarantine prefix is the key prefix without its trailing colons, plus this:
`bordermon:state:` -> `bordermon:state-corrupt:`."""


# One atomic step per batch: check every owner token, then every expected revision, and only
# if all hold, write every state with its bumped revision and TTL. Nothing is written otherwise.
# KEYS[1..nf]: owner keys; KEYS[nf+1..]: state keys.
# ARGV[1]: TTL in seconds; ARGV[2]: nf; ARGV[2+i]: token for KEYS[i];
# then per state j: ARGV[2+nf+2j-1] expected revision ('' = unchecked), ARGV[2+nf+2j] value.
# Returns {'ok', revisions} | {'fenced', indices of lost owners} | {'conflict', state indices}.
SAVE_SCRIPT = """
local ttl = ARGV[1]
local nf = tonumber(ARGV[2])
local lost = {}
for i = 1, nf do
  if redis.call('GET', KEYS[i]) ~= ARGV[2 + i] then lost[#lost + 1] = i end
end
if #lost > 0 then return {'fenced', lost} end
local n = #KEYS - nf
local revisions = {}
local moved = {}
for j = 1, n do
  -- The revision header `R<digits>\\n` fits in the first 24 bytes (digits < 2**63).
  local head = redis.call('GETRANGE', KEYS[nf + j], 0, 23)
  local revision = 0
  if head ~= '' then
    -- A value without the header was written before revisions existed: revision 1.
    revision = tonumber(string.match(head, '^R(%d+)\\n') or '1')
  end
  revisions[j] = revision + 1
  local expected = ARGV[1 + nf + 2 * j]
  if expected ~= '' and tonumber(expected) ~= revision then moved[#moved + 1] = j end
end
if #moved > 0 then return {'conflict', moved} end
for j = 1, n do
  redis.call('SET', KEYS[nf + j], 'R' .. revisions[j] .. '\\n' .. ARGV[2 + nf + 2 * j], 'EX', ttl)
end
return {'ok', revisions}
"""


def split_revision(raw: bytes) -> tuple[int, bytes]:
    """A stored value is `R<revision>\\n<encoded state>`; values from before revisions: 1."""
    if raw[:1] == b"R":
        head, separator, state = raw.partition(b"\n")
        if separator and head[1:].isdigit():
            return int(head[1:]), state
    return 1, raw


class RedisScript(Protocol):
    async def __call__(
        self, keys: list[bytes] | None = ..., args: list[bytes | int | str] | None = ...
    ) -> object: ...


class RedisPipeline(Protocol):
    def set(self, name: bytes, value: bytes, *, ex: int) -> object: ...

    def incr(self, name: bytes) -> object: ...

    async def execute(self) -> list[object]: ...


class RedisClient(Protocol):
    """The calls the store makes on a `redis.asyncio.Redis` (built with decode_responses=False).

    Spelled out here because redis-py's own annotations and the types-redis stubs disagree on
    them (generics, `aclose`); the store needs no more than this.
    """

    async def mget(self, keys: list[bytes]) -> list[bytes | None]: ...

    async def incr(self, key: bytes) -> int: ...

    def pipeline(self, transaction: bool = ...) -> RedisPipeline: ...

    def register_script(self, script: str) -> RedisScript: ...

    async def aclose(self) -> None: ...

    async def dbsize(self) -> int: ...


class RedisStore(Generic[S]):
    """A `StateStore` on Redis: one `MGET` per `snapshot`, one `EVALSHA` per `save`.

    Build it with `RedisStore.from_url(settings.redis_url, settings.state_ttl_seconds)`. The
    store owns its client and closes it in `close()`. Every Redis or socket error surfaces as
    `StoreUnavailable`, naming the (password-masked) URL.
    """

    def __init__(
        self,
        client: RedisClient,
        ttl_seconds: int,
        prefix: str = DEFAULT_PREFIX,
        *,
        codec: StateCodec[S] = CONSIGNMENTS,  # type: ignore[assignment]
        owner_prefix: str = DEFAULT_OWNER_PREFIX,
        quarantine_prefix: str | None = None,
        on_corrupt: CorruptStateHandler | None = None,
        where: str = "redis",
    ) -> None:
        if not prefix:
            raise ValueError("the key prefix must not be empty")
        if quarantine_prefix is None:
            quarantine_prefix = prefix.rstrip(":") + QUARANTINE_SUFFIX
        if quarantine_prefix.startswith(prefix) or prefix.startswith(quarantine_prefix):
            # Either way some consignment id would map to a key of the other area.
            raise ValueError(
                f"quarantine prefix {quarantine_prefix!r} and key prefix {prefix!r} overlap"
            )
        self.ttl_seconds = validate_ttl(ttl_seconds)
        self.prefix = prefix
        self.quarantine_prefix = quarantine_prefix
        self._codec = codec
        self._owner_prefix = owner_prefix.encode()
        self._client = client
        self._save_script = client.register_script(SAVE_SCRIPT)
        self._prefix = prefix.encode()
        self._quarantine_prefix = quarantine_prefix.encode()
        self._on_corrupt = on_corrupt
        self._where = where
        self._secret: str | None = None

    @classmethod
    def from_url(
        cls,
        url: str,
        ttl_seconds: int,
        prefix: str = DEFAULT_PREFIX,
        *,
        codec: StateCodec[S] = CONSIGNMENTS,  # type: ignore[assignment]
        owner_prefix: str = DEFAULT_OWNER_PREFIX,
        on_corrupt: CorruptStateHandler | None = None,
        connect_timeout: float = 2.0,
        timeout: float = 5.0,
        password: Secret | None = None,
    ) -> RedisStore[S]:
        """A store on the Redis at `url` (`redis://[:password@]host:port/db`, `rediss://`...).

        `password` (the `redis_password_file` setting) wins over a password in the URL; the
        user name, if any, comes from the URL (`redis://bordermon@host:6379/0`).

        No connection is made until the first `load`/`save`. Timeouts are in seconds. A failed
        command is retried once, after 100 ms, on a fresh connection (a pooled connection may
        have been cut by a Redis restart); longer outages are the worker's to back off from.
        """
        validate_ttl(ttl_seconds)
        where = mask_url(url)
        try:
            client = aioredis.Redis.from_url(
                url,
                decode_responses=False,
                socket_connect_timeout=connect_timeout,
                socket_timeout=timeout,
                retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=1),
                **_password_override(password),
            )
        except ValueError:
            raise ValueError(f"not a usable Redis URL: {where}") from None
        store = cls(
            cast(RedisClient, client),
            ttl_seconds,
            prefix,
            codec=codec,
            owner_prefix=owner_prefix,
            on_corrupt=on_corrupt,
            where=where,
        )
        store._secret = password.reveal() if password is not None else _password_of(url)
        return store

    def key(self, key: str) -> bytes:
        """The Redis key of a state (its consignment id or link key, UTF-8, after the prefix)."""
        return self._prefix + key.encode()

    def owner_key(self, owner: str) -> bytes:
        """The Redis key of an owner token (e.g. `bordermon:owner:bordermon.crossings:3`)."""
        return self._owner_prefix + owner.encode()

    def quarantine_key(self, key: str) -> bytes:
        """Where `snapshot` keeps the raw bytes of a key's undecodable state."""
        return self._quarantine_prefix + key.encode()

    async def load(self, keys: Collection[str]) -> dict[str, S]:
        return (await self.snapshot(keys)).states

    async def snapshot(self, keys: Collection[str]) -> Snapshot[S]:
        ids = list(dict.fromkeys(keys))
        snapshot: Snapshot[S] = Snapshot()
        if not ids:
            return snapshot
        try:
            values = await self._client.mget([self.key(i) for i in ids])
        except (RedisError, OSError) as error:
            raise self._unavailable("load", error) from error
        corrupt: list[tuple[str, bytes, StateDecodeError]] = []
        for key, raw in zip(ids, values, strict=True):
            if raw is None:
                snapshot.revisions[key] = 0
                continue
            revision, encoded = split_revision(raw)
            snapshot.revisions[key] = revision
            try:
                snapshot.states[key] = self._codec.decode(key, encoded)
            except StateDecodeError as error:
                corrupt.append((key, raw, error))
        if corrupt:
            await self._quarantine(corrupt)
        return snapshot

    async def save(
        self,
        states: Iterable[S],
        *,
        expected: Mapping[str, int] | None = None,
        fence: Mapping[str, int] | None = None,
    ) -> dict[str, int]:
        # Encode everything first: a state that cannot be encoded is a bug, and should fail the
        # save before anything is written.
        writes = [
            (key, self._codec.encode(state))
            for key, state in last_per_key(states, self._codec).items()
        ]
        if not writes:
            return {}
        owners = list(fence or {})
        keys = [self.owner_key(owner) for owner in owners] + [self.key(k) for k, _ in writes]
        args: list[bytes | int | str] = [self.ttl_seconds, len(owners)]
        args += [(fence or {})[owner] for owner in owners]
        for key, raw in writes:
            revision = None if expected is None else expected.get(key)
            args += ["" if revision is None else revision, raw]
        try:
            # EVALSHA; on a server that lacks the script (first use, restart) redis-py loads
            # it and retries once.
            outcome, indices = cast(
                "tuple[bytes, list[int]]", await self._save_script(keys=keys, args=args)
            )
        except (RedisError, OSError) as error:
            raise self._unavailable("save", error) from error
        if outcome == b"fenced":
            raise Fenced([owners[i - 1] for i in indices])
        if outcome == b"conflict":
            raise SaveConflict([writes[i - 1][0] for i in indices])
        return {key: revision for (key, _), revision in zip(writes, indices, strict=True)}

    async def claim(self, owners: Collection[str]) -> dict[str, int]:
        names = list(dict.fromkeys(owners))
        pipe = self._client.pipeline(transaction=False)
        for owner in names:
            pipe.incr(self.owner_key(owner))
        try:
            tokens = await pipe.execute()
        except (RedisError, OSError) as error:
            raise self._unavailable("claim", error) from error
        return {owner: int(cast(int, token)) for owner, token in zip(names, tokens, strict=True)}

    async def size(self) -> int:
        """Keys in the store's database (DBSIZE: O(1)); the `consignments in state` gauge.

        Counts every key of the database, so give bordermon a database of its own.
        """
        try:
            return int(await self._client.dbsize())
        except (RedisError, OSError) as error:
            raise self._unavailable("size", error) from error

    async def close(self) -> None:
        await self._client.aclose()

    async def _quarantine(self, corrupt: list[tuple[str, bytes, StateDecodeError]]) -> None:
        """Copy undecodable values aside, then report them; the load fails if the copy does."""
        pipe = self._client.pipeline(transaction=False)
        for key, raw, _ in corrupt:
            pipe.set(self.quarantine_key(key), raw, ex=self.ttl_seconds)
        try:
            await pipe.execute()
        except (RedisError, OSError) as error:
            raise self._unavailable("load (quarantining undecodable state)", error) from error
        for key, _, decode_error in corrupt:
            report_corrupt(
                key,
                decode_error,
                f"{self._where} key {self.key(key)!r}",
                f"key {self.quarantine_key(key)!r}",
                self._on_corrupt,
            )

    def _unavailable(self, operation: str, error: BaseException) -> StoreUnavailable:
        detail = str(error) or "no detail"
        if self._secret:
            # redis-py does not echo passwords in its errors; this makes sure of it.
            detail = detail.replace(self._secret, "***")
        return StoreUnavailable(
            f"Redis state store at {self._where} unavailable during {operation}:"
            f" {type(error).__name__}: {detail}"
        )


def _password_override(password: Secret | None) -> dict[str, Any]:
    return {} if password is None else {"password": password.reveal()}


def _password_of(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None
