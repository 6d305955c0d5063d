"""Records written by tailup before nodes (one index for every daemon) are taken over by the node
whose folders hold their files, once, at its start; nothing of another node's folders is."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from tailup.checkpoint import RedisCheckpointStore
from tailup.dev import RedisServer
from tailup.keys import RedisKeys, node_scope
from tailup.model import StreamRecord, StreamState


def _legacy_record(sid: str, path: str, state: StreamState) -> dict[str, str]:
    record = StreamRecord(
        stream_id=sid,
        path=path,
        watch_root=path.rsplit("/", 1)[0],
        bucket="b",
        key=f"streams/{sid}/x.ts",
        base_part_size=5 << 20,
        state=state,
        created_at="2026-01-01T00:00:00+00:00",
    )
    data = record.to_hash()
    del data["owner"], data["scope"]  # fields that did not exist
    return data


async def test_a_node_takes_over_the_legacy_entries_of_its_own_folders_only(
    redis_server: RedisServer, key_prefix: str
) -> None:
    keys = RedisKeys(key_prefix)
    client: Any = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    streams = {
        "live-mine": ("/rec/a/cam1.ts", StreamState.UPLOADING),
        "done-mine": ("/rec/a/cam0.ts", StreamState.COMPLETED),
        "live-other": ("/rec/b/cam9.ts", StreamState.UPLOADING),  # another host's folder
    }
    try:
        for sid, (path, state) in streams.items():
            await client.hset(keys.stream_meta(sid), mapping=_legacy_record(sid, path, state))
            await client.zadd(keys.legacy_all_streams, {sid: 1_700_000_000})
            await client.hset(keys.legacy_paths, path, sid)
            await client.hset(keys.legacy_object_keys, f"streams/{sid}/x.ts", sid)
            if state.is_live:
                await client.sadd(keys.legacy_live_streams, sid)
        async with RedisCheckpointStore.connect(
            redis_server.url, key_prefix, scope=node_scope("a")
        ) as cps:
            assert await cps.adopt_legacy(["/rec/a"]) == 2
            assert await cps.live_stream_ids() == ["live-mine"]
            assert await cps.ended_stream_ids() == ["done-mine"]
            assert await cps.stream_for_path("/rec/a/cam1.ts") == "live-mine"
            assert await cps.stream_for_path("/rec/b/cam9.ts") is None
            loaded = await cps.load("live-mine")
            assert loaded is not None and loaded[0].scope == node_scope("a")
            # Every key claim moved (keys are global in S3): no key is ever handed out twice.
            assert await cps.reserve_key("streams/live-other/x.ts", "someone") == "live-other"
            assert await cps.adopt_legacy(["/rec/a"]) == 0, "once"
        assert await client.smembers(keys.legacy_live_streams) == {"live-other"}
        assert await client.hgetall(keys.legacy_paths) == {"/rec/b/cam9.ts": "live-other"}
        async with RedisCheckpointStore.connect(
            redis_server.url, key_prefix, scope=node_scope("b")
        ) as other:
            assert await other.adopt_legacy(["/rec/b"]) == 1
            assert await other.live_stream_ids() == ["live-other"]
    finally:
        await client.aclose()


async def test_legacy_records_taken_over_expire_like_any_other(
    redis_server: RedisServer, key_prefix: str
) -> None:
    """N12: tailup before nodes never expired a record. Once the nodes have taken the old index
    over, every key left is a live record's; ended ones, their path entries and key claims
    expire after --keep-records, and so does a claim whose record is gone."""
    keep_s = 3600.0
    keys = RedisKeys(key_prefix)
    client: Any = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    streams = {
        "live-mine": ("/rec/a/cam1.ts", StreamState.UPLOADING),
        "done-mine": ("/rec/a/cam0.ts", StreamState.COMPLETED),
        "done-other": ("/rec/b/cam9.ts", StreamState.ABORTED),
    }
    try:
        for sid, (path, state) in streams.items():
            await client.hset(keys.stream_meta(sid), mapping=_legacy_record(sid, path, state))
            await client.hset(keys.stream_parts(sid), "1", '{"size": 1}')
            await client.zadd(keys.legacy_all_streams, {sid: 1_700_000_000})
            await client.hset(keys.legacy_paths, path, sid)
            await client.hset(keys.legacy_object_keys, f"streams/{sid}/x.ts", sid)
            if state.is_live:
                await client.sadd(keys.legacy_live_streams, sid)
        await client.hset(keys.legacy_object_keys, "streams/gone/x.ts", "gone")  # no record
        for node, root in (("a", "/rec/a"), ("b", "/rec/b")):
            async with RedisCheckpointStore.connect(
                redis_server.url, key_prefix, scope=node_scope(node), keep_records_s=keep_s
            ) as cps:
                assert await cps.adopt_legacy([root]) == (2 if node == "a" else 1)
        lifetimes_ms = {
            str(name): int(await client.pttl(name))
            async for name in client.scan_iter(match=f"{key_prefix}:*")
        }
        kept = sorted(name for name, ms in lifetimes_ms.items() if ms == -1)
        mine = keys.scope(node_scope("a"))
        assert kept == sorted(
            [
                keys.stream_meta("live-mine"),
                keys.stream_parts("live-mine"),
                mine.live,
                mine.path("/rec/a/cam1.ts"),
                keys.object_claim("streams/live-mine/x.ts"),
            ]
        )
        assert all(ms <= keep_s * 1000 for ms in lifetimes_ms.values())
        for sid in ("done-mine", "done-other", "gone"):
            assert lifetimes_ms[keys.object_claim(f"streams/{sid}/x.ts")] > 0
    finally:
        await client.aclose()
