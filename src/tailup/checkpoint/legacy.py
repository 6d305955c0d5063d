"""Taking a node's entries over from the single index of tailup before nodes (one live set, one
path hash, one ended index and one object-key hash for every daemon on a Redis)."""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio as aioredis

from tailup.checkpoint.scripts import IF_OWNED, ms
from tailup.keys import RedisKeys
from tailup.model import StreamState


async def adopt_legacy(
    client: aioredis.Redis,
    keys: RedisKeys,
    scope: str,
    roots: Sequence[str],
    *,
    keep_records_s: float = 0.0,
) -> int:
    """Move into ``scope``'s indexes the legacy entries of streams whose files are under
    ``roots`` (their records get the scope), and every object-key claim; returns how many streams
    were taken over. Each entry is moved once: what another node took first is left to it.

    Tailup before nodes never expired a record: an ended one taken over expires from now, after
    ``keep_records_s`` (0: kept), and each entry moved expires with its record (with none, like
    an ended one), so that no key of the old index is kept forever."""
    idx = keys.scope(scope)
    prefixes = tuple(r.rstrip("/") + "/" for r in roots)
    if not await client.exists(
        keys.legacy_live_streams,
        keys.legacy_paths,
        keys.legacy_all_streams,
        keys.legacy_object_keys,
    ):
        return 0
    ended_ms = ms(keep_records_s) if keep_records_s > 0 else 0

    async def expire_with_record(entry: str, sid: str) -> None:
        """The entry's lifetime: its record's; with no record, an ended one's."""
        record_ms = int(await client.pttl(keys.stream_meta(sid)))
        lifetime_ms = ended_ms if record_ms == -2 else max(record_ms, 0)
        if lifetime_ms:
            await client.pexpire(entry, lifetime_ms)

    taken = 0
    async for sid, created in client.zscan_iter(keys.legacy_all_streams, count=1000):
        sid = str(sid)
        meta = await client.hmget(keys.stream_meta(sid), ["path", "state", "scope", "key"])
        path, state, owner, key = (str(v) if v is not None else "" for v in meta)
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
            if ended_ms:
                for name in (keys.stream_meta(sid), keys.stream_parts(sid), idx.ended):
                    await client.pexpire(name, ended_ms)
                if key:  # moved already by a node that started before this one
                    await client.eval(IF_OWNED, 1, keys.object_claim(key), sid, str(ended_ms))
        await client.srem(keys.legacy_live_streams, sid)
        await client.zrem(keys.legacy_all_streams, sid)
        taken += 1
    async for path, sid in client.hscan_iter(keys.legacy_paths, count=1000):
        if str(path).startswith(prefixes):
            if await client.set(idx.path(str(path)), str(sid), nx=True):
                await expire_with_record(idx.path(str(path)), str(sid))
            await client.hdel(keys.legacy_paths, path)
    async for object_key, sid in client.hscan_iter(keys.legacy_object_keys, count=1000):
        claim = keys.object_claim(str(object_key))
        if await client.set(claim, str(sid), nx=True):
            await expire_with_record(claim, str(sid))
        await client.hdel(keys.legacy_object_keys, object_key)
    return taken
