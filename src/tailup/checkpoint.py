"""The checkpoint store: stream records and acknowledged parts, in Redis.

A part's checkpoint (its record, next part, bytes sent, last activity) is one Lua script on
keys that share the stream's hash tag, so it is atomic also under Redis Cluster. The index keys
(live set, all-streams set, path lookup) live in other slots and are written after the stream's
own keys: a crash in between leaves at worst an index entry without a stream (ignored) or a stream
missing from the live set, which the path lookup still finds.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable
from contextlib import asynccontextmanager
from typing import Any, Protocol, TypeVar, cast

import redis.asyncio as aioredis
import redis.exceptions as rex

from tailup.errors import CheckpointRefused, CheckpointUnavailable
from tailup.keys import RedisKeys
from tailup.model import (
    PartRecord,
    StreamRecord,
    StreamState,
    encode_field,
    iso,
    lowest_gap,
    utc_now,
)
from tailup.redisconn import open_redis

T = TypeVar("T")


class CheckpointStore(Protocol):
    async def create(self, record: StreamRecord) -> None:
        """Store a new stream (or a new generation of one), with no parts, and index it."""

    async def load(self, stream_id: str) -> tuple[StreamRecord, dict[int, PartRecord]] | None: ...

    async def update(self, stream_id: str, **fields: Any) -> None:
        """Change meta fields; a change of ``state`` also moves the stream in or out of the live
        set."""

    async def set_state(
        self,
        stream_id: str,
        state: StreamState,
        *,
        allowed_from: Collection[StreamState],
        **fields: Any,
    ) -> StreamState | None:
        """Atomically: set ``state`` (and ``fields``) if the stored state is ``state`` already or
        one of ``allowed_from``. Returns None when written, else the stored state that refused
        it: a daemon that has not yet noticed a `tailup abort` must not bring the stream back."""

    async def commit_part(self, stream_id: str, part: PartRecord) -> None:
        """Atomically: the part, next part to upload (lowest gap), bytes sent, last activity."""

    async def drop_parts(self, stream_id: str, numbers: Iterable[int]) -> None:
        """Forget parts (past a shrunk end), keeping next part and bytes sent consistent."""

    async def stream_for_path(self, path: str) -> str | None: ...

    async def forget_path(self, path: str, stream_id: str) -> None:
        """Drop the path's entry if it still names ``stream_id`` (a rename moved the stream on;
        another stream may own the path by now)."""

    async def reserve_key(self, object_key: str, stream_id: str) -> str | None:
        """Claim an S3 key for a stream. None when it is the stream's (now or already), else the
        id of the stream that holds it: two recordings never share a key."""

    async def get_field(self, stream_id: str, name: str) -> str | None:
        """One meta field, without loading the parts (polled by failed streams)."""

    async def live_stream_ids(self) -> list[str]: ...

    async def all_stream_ids(self) -> list[str]: ...

    async def ping(self) -> None: ...


# Faults that pass: the server is down, loading its data, failing over, or out of memory until
# someone frees some. Anything else Redis refuses (credentials, ACLs, a wrong command) will not.
# Sentinel's MasterNotFoundError and SlaveNotFoundError are ConnectionErrors. RedisCluster raises
# RedisClusterException, which is no RedisError, when no node of the Cluster can be reached or a
# slot has no node (SlotNotCoveredError).
_REDIS_TRANSIENT: tuple[type[Exception], ...] = (
    rex.BusyLoadingError,
    rex.ReadOnlyError,
    rex.TryAgainError,
    rex.ClusterDownError,
    rex.OutOfMemoryError,
    rex.TimeoutError,
    rex.RedisClusterException,
)
_REDIS_ERRORS: tuple[type[Exception], ...] = (rex.RedisError, rex.RedisClusterException, OSError)
_REDIS_REFUSED: tuple[type[Exception], ...] = (
    rex.AuthenticationError,
    rex.AuthorizationError,
    rex.NoPermissionError,
    rex.AuthenticationWrongNumberOfArgsError,
)
_AUTH_REPLIES = ("NOAUTH", "WRONGPASS", "NOPERM")


def _is_refusal(exc: BaseException) -> bool:
    return isinstance(exc, _REDIS_REFUSED) or str(exc).startswith(_AUTH_REPLIES)


def translate_redis_error(exc: Exception) -> Exception:
    """Map a redis-py error to tailup's family. Messages never carry the password (redis-py
    does not put it in them, and URLs are not included)."""
    # RedisCluster wraps what its startup nodes answered (a refused password too) in a
    # RedisClusterException "cannot be connected": the refusal is what it wraps.
    wrapped = None
    if isinstance(exc, rex.RedisClusterException):
        wrapped = exc.__cause__ or exc.__context__
    if _is_refusal(exc) or (wrapped is not None and _is_refusal(wrapped)):
        return CheckpointRefused(f"Redis refused the credentials in --redis-url: {exc}")
    if isinstance(exc, _REDIS_TRANSIENT):
        return CheckpointUnavailable(f"Redis cannot take checkpoints now: {exc}")
    if isinstance(exc, rex.ConnectionError | OSError):
        return CheckpointUnavailable(f"Redis is unreachable: {exc}")
    # Anything else (MISCONF when Redis cannot write its disk, BUSY with a script running, a reply
    # this redis-py does not know) is something an operator or time fixes: back off and retry.
    # Only refused credentials stop a stream.
    return CheckpointUnavailable(f"Redis cannot take checkpoints now: {exc}")


async def _guarded(call: Callable[[], Awaitable[T]]) -> T:
    try:
        return await call()
    except _REDIS_ERRORS as exc:
        raise translate_redis_error(exc) from exc


# Atomic part commit: the parts hash and the meta fields derived from it change together, inside one
# script, so concurrent commits of out-of-order parts can never leave them inconsistent.
# KEYS: meta, parts. ARGV[1]: now.
_DERIVE_COUNTERS = """
local present = {}
for _, n in ipairs(redis.call('HKEYS', KEYS[2])) do present[tonumber(n)] = true end
local nxt = 1
while present[nxt] do nxt = nxt + 1 end
local total = 0
for _, v in ipairs(redis.call('HVALS', KEYS[2])) do total = total + cjson.decode(v)['size'] end
redis.call('HSET', KEYS[1], 'next_part_to_upload', nxt, 'total_bytes_sent', total,
           'last_activity_at_utc', ARGV[1])
return nxt
"""
# ARGV[2], ARGV[3]: part number and its JSON record. Incremental, so a commit costs the same at
# part 10,000 as at part 1: every part below next_part_to_upload is present by construction.
_COMMIT_PART = """
local old = redis.call('HGET', KEYS[2], ARGV[2])
local delta = cjson.decode(ARGV[3])['size']
if old then delta = delta - cjson.decode(old)['size'] end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('HINCRBY', KEYS[1], 'total_bytes_sent', delta)
local nxt = tonumber(redis.call('HGET', KEYS[1], 'next_part_to_upload') or '1')
while redis.call('HEXISTS', KEYS[2], nxt) == 1 do nxt = nxt + 1 end
redis.call('HSET', KEYS[1], 'next_part_to_upload', nxt, 'last_activity_at_utc', ARGV[1])
return nxt
"""
# A state change that a `tailup abort` (or any state outside the allowed ones) wins over. ARGV[1]
# is the new state, ARGV[2] the number of allowed current states, then those states, then field
# pairs.
_SET_STATE = """
local current = redis.call('HGET', KEYS[1], 'state')
local count = tonumber(ARGV[2])
if current and current ~= ARGV[1] then
  local allowed = false
  for i = 3, 2 + count do
    if ARGV[i] == current then allowed = true end
  end
  if not allowed then return current end
end
redis.call('HSET', KEYS[1], 'state', ARGV[1], unpack(ARGV, 3 + count))
return false
"""
# KEYS[1]: the path index. ARGV: path, stream id.
_FORGET_PATH = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
"""
# ARGV[2..]: part numbers to forget; rare (a file shrank), so the counters are derived afresh.
_DROP_PARTS = "for i = 2, #ARGV do redis.call('HDEL', KEYS[2], ARGV[i]) end" + _DERIVE_COUNTERS


class RedisCheckpointStore:
    def __init__(self, client: aioredis.Redis, keys: RedisKeys) -> None:
        self._redis = client
        self._keys = keys
        self._commit = client.register_script(_COMMIT_PART)
        self._drop = client.register_script(_DROP_PARTS)
        self._set_state = client.register_script(_SET_STATE)
        self._forget_path = client.register_script(_FORGET_PATH)

    @classmethod
    @asynccontextmanager
    async def connect(cls, url: str, prefix: str) -> AsyncIterator[RedisCheckpointStore]:
        # One server, a Cluster (named or found) or Sentinel's master: tailup.redisconn. A
        # RedisCluster serves every call below (tests/integration/test_redis_deployments.py)
        # though its type is not Redis's.
        async with open_redis(url) as client:
            yield cls(cast(aioredis.Redis, client), RedisKeys(prefix))

    async def ping(self) -> None:
        await _guarded(lambda: self._redis.ping())

    async def create(self, record: StreamRecord) -> None:
        keys, sid = self._keys, record.stream_id

        async def run() -> None:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(keys.stream_meta(sid), keys.stream_parts(sid))
                pipe.hset(keys.stream_meta(sid), mapping=dict[Any, Any](record.to_hash()))
                await pipe.execute()
            await self._redis.zadd(keys.all_streams, {sid: time.time()}, nx=True)
            await self._redis.hset(keys.paths, record.path, sid)
            if record.state.is_resumable:
                await self._redis.sadd(keys.live_streams, sid)

        await _guarded(run)

    async def load(self, stream_id: str) -> tuple[StreamRecord, dict[int, PartRecord]] | None:
        keys = self._keys

        async def run() -> tuple[dict[str, str], dict[str, str]]:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hgetall(keys.stream_meta(stream_id))
                pipe.hgetall(keys.stream_parts(stream_id))
                meta, parts = await pipe.execute()
            return meta, parts

        meta, raw_parts = await _guarded(run)
        if not meta:
            return None
        parts = {int(n): PartRecord.from_json(int(n), text) for n, text in raw_parts.items()}
        return StreamRecord.from_hash(meta), parts

    async def update(self, stream_id: str, **fields: Any) -> None:
        keys = self._keys
        mapping: dict[Any, Any] = {k: encode_field(v) for k, v in fields.items()}
        mapping.setdefault("last_activity_at_utc", iso(utc_now()))

        async def run() -> None:
            await self._redis.hset(keys.stream_meta(stream_id), mapping=mapping)
            state = fields.get("state")
            if isinstance(state, StreamState):
                if state.is_resumable:
                    await self._redis.sadd(keys.live_streams, stream_id)
                else:
                    await self._redis.srem(keys.live_streams, stream_id)
            if "path" in fields:
                await self._redis.hset(keys.paths, str(fields["path"]), stream_id)

        await _guarded(run)

    async def set_state(
        self,
        stream_id: str,
        state: StreamState,
        *,
        allowed_from: Collection[StreamState],
        **fields: Any,
    ) -> StreamState | None:
        keys = self._keys
        pairs: list[str] = []
        for name, value in {"last_activity_at_utc": iso(utc_now()), **fields}.items():
            pairs += [name, encode_field(value)]
        allowed = [s.value for s in allowed_from]

        async def run() -> StreamState | None:
            refused = await self._set_state(
                keys=[keys.stream_meta(stream_id)],
                args=[state.value, len(allowed), *allowed, *pairs],
            )
            if refused:
                return StreamState(str(refused))
            if state.is_resumable:
                await self._redis.sadd(keys.live_streams, stream_id)
            else:
                await self._redis.srem(keys.live_streams, stream_id)
            return None

        return await _guarded(run)

    async def commit_part(self, stream_id: str, part: PartRecord) -> None:
        keys = self._keys
        await _guarded(
            lambda: self._commit(
                keys=[keys.stream_meta(stream_id), keys.stream_parts(stream_id)],
                args=[iso(utc_now()), part.number, part.to_json()],
            )
        )

    async def drop_parts(self, stream_id: str, numbers: Iterable[int]) -> None:
        keys = self._keys
        numbers = list(numbers)
        if not numbers:
            return
        await _guarded(
            lambda: self._drop(
                keys=[keys.stream_meta(stream_id), keys.stream_parts(stream_id)],
                args=[iso(utc_now()), *numbers],
            )
        )

    async def stream_for_path(self, path: str) -> str | None:
        result = await _guarded(lambda: self._redis.hget(self._keys.paths, path))
        return str(result) if result else None

    async def forget_path(self, path: str, stream_id: str) -> None:
        await _guarded(lambda: self._forget_path(keys=[self._keys.paths], args=[path, stream_id]))

    async def reserve_key(self, object_key: str, stream_id: str) -> str | None:
        index = self._keys.object_keys

        async def run() -> str | None:
            # Claims are never released (a key keeps its recording), so HSETNX then HGET is
            # enough: a lost HSETNX means the HGET finds the winner.
            if await self._redis.hsetnx(index, object_key, stream_id):
                return None
            owner = await self._redis.hget(index, object_key)
            return None if owner == stream_id else str(owner)

        return await _guarded(run)

    async def get_field(self, stream_id: str, name: str) -> str | None:
        value = await _guarded(lambda: self._redis.hget(self._keys.stream_meta(stream_id), name))
        return None if value is None else str(value)

    async def live_stream_ids(self) -> list[str]:
        members = await _guarded(lambda: self._redis.smembers(self._keys.live_streams))
        return sorted(str(m) for m in members)

    async def all_stream_ids(self) -> list[str]:
        members = await _guarded(lambda: self._redis.zrange(self._keys.all_streams, 0, -1))
        return [str(m) for m in members]


class MemoryCheckpointStore:
    """In-process store for unit tests of stream logic; the contract suite holds it to Redis's
    behaviour."""

    def __init__(self) -> None:
        self.meta: dict[str, dict[str, str]] = {}
        self.parts: dict[str, dict[int, PartRecord]] = {}
        self.live: set[str] = set()
        self.order: list[str] = []
        self.paths: dict[str, str] = {}
        self.object_keys: dict[str, str] = {}
        self.available = True

    def _check(self) -> None:
        if not self.available:
            raise CheckpointUnavailable("memory store marked unavailable")

    async def ping(self) -> None:
        self._check()

    async def create(self, record: StreamRecord) -> None:
        self._check()
        sid = record.stream_id
        self.meta[sid] = record.to_hash()
        self.parts[sid] = {}
        if sid not in self.order:
            self.order.append(sid)
        self.paths[record.path] = sid
        if record.state.is_resumable:
            self.live.add(sid)

    async def load(self, stream_id: str) -> tuple[StreamRecord, dict[int, PartRecord]] | None:
        self._check()
        if stream_id not in self.meta:
            return None
        return StreamRecord.from_hash(dict(self.meta[stream_id])), dict(self.parts[stream_id])

    async def update(self, stream_id: str, **fields: Any) -> None:
        self._check()
        meta = self.meta.setdefault(stream_id, {})
        # Like Redis's update: every write refreshes it unless the caller gives it.
        for k, v in {"last_activity_at_utc": iso(utc_now()), **fields}.items():
            meta[k] = encode_field(v)
        state = fields.get("state")
        if isinstance(state, StreamState):
            (self.live.add if state.is_resumable else self.live.discard)(stream_id)
        if "path" in fields:
            self.paths[str(fields["path"])] = stream_id

    def _derive(self, stream_id: str) -> None:
        parts = self.parts[stream_id]
        self.meta[stream_id].update(
            next_part_to_upload=str(lowest_gap(set(parts))),
            total_bytes_sent=str(sum(p.size for p in parts.values())),
            last_activity_at_utc=iso(utc_now()),
        )

    async def set_state(
        self,
        stream_id: str,
        state: StreamState,
        *,
        allowed_from: Collection[StreamState],
        **fields: Any,
    ) -> StreamState | None:
        self._check()
        current = self.meta.get(stream_id, {}).get("state")
        if current not in (None, state.value) and StreamState(current) not in allowed_from:
            return StreamState(current)
        await self.update(stream_id, state=state, **fields)
        return None

    async def commit_part(self, stream_id: str, part: PartRecord) -> None:
        self._check()
        self.parts.setdefault(stream_id, {})[part.number] = part
        self._derive(stream_id)

    async def drop_parts(self, stream_id: str, numbers: Iterable[int]) -> None:
        self._check()
        for n in numbers:
            self.parts.get(stream_id, {}).pop(n, None)
        self._derive(stream_id)

    async def stream_for_path(self, path: str) -> str | None:
        self._check()
        return self.paths.get(path)

    async def forget_path(self, path: str, stream_id: str) -> None:
        self._check()
        if self.paths.get(path) == stream_id:
            del self.paths[path]

    async def reserve_key(self, object_key: str, stream_id: str) -> str | None:
        self._check()
        owner = self.object_keys.setdefault(object_key, stream_id)
        return None if owner == stream_id else owner

    async def get_field(self, stream_id: str, name: str) -> str | None:
        self._check()
        return self.meta.get(stream_id, {}).get(name)

    async def live_stream_ids(self) -> list[str]:
        self._check()
        return sorted(self.live)

    async def all_stream_ids(self) -> list[str]:
        self._check()
        return list(self.order)
