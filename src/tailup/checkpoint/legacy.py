"""Taking a node's entries over from the single index of tailup before nodes (one live set, one
path hash, one ended index and one object-key hash for every daemon on a Redis)."""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio as aioredis

from tailup.keys import RedisKeys
from tailup.model import StreamState


async def adopt_legacy(
    client: aioredis.Redis, keys: RedisKeys, scope: str, roots: Sequence[str]
) -> int:
    """Move into ``scope``'s indexes the legacy entries of streams whose files are under
    ``roots`` (their records get the scope), and every object-key claim; returns how many streams
    were taken over. Each entry is moved once: what another node took first is left to it."""
    idx = keys.scope(scope)
    prefixes = tuple(r.rstrip("/") + "/" for r in roots)
    if not await client.exists(
        keys.legacy_live_streams,
        keys.legacy_paths,
        keys.legacy_all_streams,
        keys.legacy_object_keys,
    ):
        return 0
    taken = 0
    async for path, sid in client.hscan_iter(keys.legacy_paths, count=1000):
        if str(path).startswith(prefixes):
            await client.set(idx.path(str(path)), str(sid), nx=True)
            await client.hdel(keys.legacy_paths, path)
    async for object_key, sid in client.hscan_iter(keys.legacy_object_keys, count=1000):
        await client.set(keys.object_claim(str(object_key)), str(sid), nx=True)
        await client.hdel(keys.legacy_object_keys, object_key)
    async for sid, created in client.zscan_iter(keys.legacy_all_streams, count=1000):
        sid = str(sid)
        meta = await client.hmget(keys.stream_meta(sid), ["path", "state", "scope"])
        path, state, owner = (str(v) if v is not None else "" for v in meta)
        if not path.startswith(prefixes) or owner:
            continue
        await client.hset(keys.stream_meta(sid), mapping={"scope": scope})
        try:
            resumable = StreamState(state).is_resumable
        except ValueError:
            continue
        if resumable:
            await client.sadd(idx.live, sid)
        else:
            await client.zadd(idx.ended, {sid: float(created)})
        await client.srem(keys.legacy_live_streams, sid)
        await client.zrem(keys.legacy_all_streams, sid)
        taken += 1
    return taken
