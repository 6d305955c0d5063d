"""The daemon trims its ended index to --keep-records (tailup.supervisor, in its lease rounds):
the store's trim_ended is held by the store contracts; this is the daemon using it, on a real
Redis. The records themselves expire by their own TTL; the index is the daemon's to trim."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from harness import content, running_daemon, wait_until
from tailup.model import StreamState

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(120)]

KEEP_S = 3600.0


async def test_the_daemon_trims_its_ended_index_to_keep_records(
    daemon_args: dict[str, Any], watch: Path
) -> None:
    paths = [watch / f"ended-{i}.ts" for i in range(3)]
    async with running_daemon(**daemon_args, keep_records=KEEP_S) as daemon:
        for i, path in enumerate(paths):
            path.write_bytes(content(1000 + i, path.name))
        ids = [(await daemon.wait_for_state(p, {StreamState.COMPLETED})).stream_id for p in paths]
        store = daemon.checkpoints.inner
        ended_key = store.keys.scope(store.scope).ended
    # Between two runs (this daemon trimmed at its first lease round, and would only again in
    # ten minutes): one entry ended past the bound, one just inside it, one now.
    now = time.time()
    ages = {ids[0]: KEEP_S + 600, ids[1]: KEEP_S - 600, ids[2]: 0.0}
    client = aioredis.Redis.from_url(daemon_args["redis_url"], decode_responses=True)
    try:
        assert await client.zadd(ended_key, {s: now - age for s, age in ages.items()}, xx=True) == 0
        assert set(await client.zrange(ended_key, 0, -1)) == set(ids)

        # The shortest lease: its first round, which trims, comes a second after the start.
        async with running_daemon(**daemon_args, keep_records=KEEP_S, lease_ttl=3):

            async def trimmed() -> bool:
                return ids[0] not in await client.zrange(ended_key, 0, -1)

            await wait_until(trimmed, "the entry past --keep-records dropped from the index")
            assert await client.zrange(ended_key, 0, -1) == [ids[1], ids[2]]  # oldest first
            # The record itself is not the index's: it stays until its own TTL.
            assert await client.exists(store.keys.stream_meta(ids[0])) == 1
    finally:
        await client.aclose()
