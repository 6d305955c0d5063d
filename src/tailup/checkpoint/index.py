"""The indexes of a scope in Redis (live set, ended index, path entries; tailup.keys) and the
object-key claims, kept by the Redis checkpoint store.

They live in other hash slots than a stream's record, so they are written after the record's
scripts (tailup.checkpoint.scripts): a crash in between leaves at worst an index entry without a
stream (ignored) or a stream missing from the live set, which the path entry still finds.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis

from tailup.checkpoint.redis_errors import guarded
from tailup.checkpoint.scripts import IF_OWNED, Scripts, ms
from tailup.keys import RedisKeys, index_path
from tailup.model import StreamState

_SCOPES_REMEMBERED = 20_000

# Ended index entries Redis looks at per ZSCAN call when a prefix is looked up: each call takes
# ~5 ms of the server, so the daemon's checkpoint writes wait no longer than that behind it.
_SCAN_COUNT = 5000


def _glob_escape(text: str) -> str:
    """``text`` as a literal in a Redis MATCH pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class ScopeIndexes:
    """The live set, ended index and path entries of each scope, and object-key claims.
    ``scope`` arguments default to the store's own."""

    def __init__(
        self,
        client: aioredis.Redis,
        keys: RedisKeys,
        scripts: Scripts,
        *,
        scope: str,
        keep_records_s: float,
    ) -> None:
        self._redis = client
        self._keys = keys
        self._scripts = scripts
        self._scope = scope
        self._keep_records_s = keep_records_s
        # Which scope each stream is indexed in (index keys sit in other slots than the record,
        # so scripts cannot look it up); filled by create and load, else read from the record.
        self._scopes: OrderedDict[str, str] = OrderedDict()

    def remember_scope(self, stream_id: str, scope: str) -> None:
        self._scopes[stream_id] = scope or self._scope
        self._scopes.move_to_end(stream_id)
        while len(self._scopes) > _SCOPES_REMEMBERED:
            self._scopes.popitem(last=False)

    async def scope_of(self, stream_id: str) -> str:
        known = self._scopes.get(stream_id)
        if known is not None:
            return known
        stored = await self._redis.hget(self._keys.stream_meta(stream_id), "scope")
        scope = str(stored) if stored else self._scope
        self.remember_scope(stream_id, scope)
        return scope

    async def index(
        self,
        stream_id: str,
        scope: str,
        state: StreamState,
        key: str,
        path: str,
        *,
        entries: Mapping[str, bool] | None = None,
    ) -> None:
        """Move the stream between its scope's indexes after a state write, and give its path
        entry and object claim the record's lifetime. ``entries``: keys to point at the stream
        first (True: only if no other stream has it, SET NX).

        One round trip: the commands were never one transaction (under Redis Cluster they live
        in other hash slots), only in this order, which a pipeline keeps on each connection.
        The scripts go as EVAL (Redis caches them by hash all the same): a pipeline of a
        RedisCluster cannot load a script an EVALSHA does not find."""
        idx = self._keys.scope(scope)
        async with self._redis.pipeline(transaction=False) as pipe:
            for name, only_new in (entries or {}).items():
                pipe.set(name, stream_id, nx=only_new)
            if state.is_resumable:
                pipe.sadd(idx.live, stream_id)
                pipe.zrem(idx.ended, stream_id)
                how = "persist"
            else:
                pipe.srem(idx.live, stream_id)
                pipe.zadd(idx.ended, {stream_id: time.time()})
                how = self._ended_lifetime()
                # Every entry is at most this old: once the index has had no new one for
                # --keep-records, trim_ended would drop them all (a node that stopped for good
                # leaves no index behind). With records kept forever, so is the index.
                if how == "persist":
                    pipe.persist(idx.ended)
                else:
                    pipe.pexpire(idx.ended, int(how))
            if path:
                pipe.eval(IF_OWNED, 1, idx.path(path), stream_id, how)
            if key:
                pipe.eval(IF_OWNED, 1, self._keys.object_claim(key), stream_id, how)
            await pipe.execute()

    async def after_update(
        self, stream_id: str, state: object, fields: Collection[str], reply: Sequence[Any]
    ) -> None:
        """Index what the UPDATE script wrote (its reply: key, path, watch root, the record's
        PTTL, the key before): a new state as index() does, else a new path entry or key claim
        with the record's lifetime; and a key the record no longer names is let go."""
        key, path, root, pttl_ms, key_before = (str(value) for value in reply)
        scope = await self.scope_of(stream_id)
        entry = index_path(scope, path, root)
        moved = entry if "path" in fields else ""
        if isinstance(state, StreamState):
            entries = {self._keys.scope(scope).path(moved): False} if moved else {}
            await self.index(stream_id, scope, state, key, entry, entries=entries)
        elif moved or "key" in fields:
            rekeyed = key if "key" in fields else ""
            await self.follow(stream_id, scope, path=moved, key=rekeyed, pttl_ms=int(pttl_ms))
        if key_before and key_before != key:
            # The record names another key now (a pending key claimed, a rekey): the old one's
            # claim is no longer the record's to hold, nor to keep forever.
            await self.release_key(key_before, stream_id)

    async def stream_for_path(self, path: str, scope: str | None = None) -> str | None:
        key = self._keys.scope(scope or self._scope).path(path)
        result = await guarded(lambda: self._redis.get(key))
        return str(result) if result else None

    def _ended_lifetime(self) -> str:
        """IF_OWNED's expiry for the entries of a record that ends now."""
        return str(ms(self._keep_records_s)) if self._keep_records_s > 0 else "persist"

    async def follow(
        self, stream_id: str, scope: str, *, path: str, key: str, pttl_ms: int
    ) -> None:
        """Give the entries a write outside a state change points at the stream (a new path
        entry: a rename; a new key's claim: a rekey) the record's own lifetime, ``pttl_ms``
        (Redis's PTTL of the record: -1 kept), so that none outlives an ended record."""
        how = str(pttl_ms) if pttl_ms > 0 else "persist"
        async with self._redis.pipeline(transaction=False) as pipe:
            if path:
                name = self._keys.scope(scope).path(path)
                pipe.set(name, stream_id, px=pttl_ms if pttl_ms > 0 else None)
            if key:
                pipe.eval(IF_OWNED, 1, self._keys.object_claim(key), stream_id, how)
            await pipe.execute()

    async def forget_path(self, path: str, stream_id: str, scope: str | None = None) -> None:
        key = self._keys.scope(scope or self._scope).path(path)
        await guarded(lambda: self._scripts.if_owned(keys=[key], args=[stream_id, "del"]))

    async def reserve_key(self, object_key: str, stream_id: str) -> str | None:
        claim = self._keys.object_claim(object_key)
        # A reservation no record comes to name (its holder crashed before writing the key)
        # expires like an ended record; the record's writes keep the one it names.
        px = ms(self._keep_records_s) if self._keep_records_s > 0 else None

        async def run() -> str | None:
            # A lost SET NX means the GET finds the winner (a claim is dropped by its expiry,
            # long after its stream ended, or by its own stream that found it taken).
            if await self._redis.set(claim, stream_id, nx=True, px=px):
                return None
            owner = await self._redis.get(claim)
            if owner is None:
                return await run()
            return None if owner == stream_id else str(owner)

        return await guarded(run)

    async def release_key(self, object_key: str, stream_id: str) -> None:
        claim = self._keys.object_claim(object_key)
        await guarded(lambda: self._scripts.if_owned(keys=[claim], args=[stream_id, "del"]))

    async def next_key_number(self, object_key: str) -> int:
        counter = self._keys.key_counter(object_key)

        async def run() -> int:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.incr(counter)
                if self._keep_records_s > 0:
                    pipe.pexpire(counter, ms(self._keep_records_s))
                number, *_ = await pipe.execute()
            return int(number)

        return await guarded(run)

    async def live_stream_ids(self, scope: str | None = None) -> list[str]:
        live = self._keys.scope(scope or self._scope).live
        members = await guarded(lambda: self._redis.smembers(live))
        return sorted(str(m) for m in members)

    async def ended_stream_ids(
        self, scope: str | None = None, *, limit: int = 100, offset: int = 0
    ) -> list[str]:
        ended = self._keys.scope(scope or self._scope).ended
        if limit <= 0:
            return []
        members = await guarded(
            lambda: self._redis.zrevrange(ended, offset, offset + max(0, limit) - 1)
        )
        return [str(m) for m in members]

    async def count_ended(self, scope: str | None = None) -> int:
        ended = self._keys.scope(scope or self._scope).ended
        return int(await guarded(lambda: self._redis.zcard(ended)))

    async def find_stream_ids(self, prefix: str, scope: str | None = None) -> list[str]:
        idx = self._keys.scope(scope or self._scope)
        pattern = _glob_escape(prefix) + "*"

        async def run() -> list[str]:
            found = {str(m) async for m in self._redis.sscan_iter(idx.live, match=pattern)}
            # ZSCAN walks the index in slices of _SCAN_COUNT on the server; an entry may come
            # twice while the index changes: the set keeps it once.
            async for member, _ in self._redis.zscan_iter(
                idx.ended, match=pattern, count=_SCAN_COUNT
            ):
                found.add(str(member))
            return sorted(found)

        return await guarded(run)

    async def trim_ended(self, before_unix_s: float, scope: str | None = None) -> int:
        ended = self._keys.scope(scope or self._scope).ended
        return int(
            await guarded(lambda: self._redis.zremrangebyscore(ended, "-inf", before_unix_s))
        )
