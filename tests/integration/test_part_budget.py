"""Issue 17 (review #17): no part is larger than the memory budget. A part is read whole into
memory before it is sent, so a growing plan's parts stop growing at --max-inflight-bytes; the
real daemon, Redis and S3 server (SeaweedFS) upload the file byte for byte with every part buffer
within the budget."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import tailup.plan
from harness import content, object_bytes, running_daemon
from tailup.body import PART_BUFFERS, PartBody
from tailup.keys import metadata_key
from tailup.model import StreamState
from tailup.plan import MiB

pytestmark = pytest.mark.timeout(120)  # asyncio_mode = "auto" marks the async ones


async def test_parts_stop_growing_at_the_memory_budget(
    daemon_args: dict[str, Any],
    watch: Path,
    s3_client: Any,
    bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # One part per size instead of 500, so that parts outgrow a 12 MiB budget within 40 MiB: the
    # rule is the same, only its tiers are shorter.
    monkeypatch.setattr(tailup.plan, "PARTS_PER_TIER", 1)
    buffers: list[int] = []
    real_take = PART_BUFFERS.take

    def take(size: int) -> PartBody:
        buffers.append(size)
        return real_take(size)

    monkeypatch.setattr(PART_BUFFERS, "take", take)
    path = watch / "long.ts"
    data = content(40 * MiB, "long")
    async with running_daemon(**daemon_args, max_inflight_bytes="12MiB") as daemon:
        path.write_bytes(data)
        record = await daemon.wait_for_state(path, {StreamState.COMPLETED})
    assert max(buffers) <= 12 * MiB, f"part buffers of {sorted(set(buffers))} bytes"
    assert record.max_part_size == 12 * MiB  # kept with the stream, like its base part size
    assert object_bytes(s3_client, bucket, record.key) == data
    document = json.loads(object_bytes(s3_client, bucket, metadata_key(record.key)))
    sizes = [int(part["size_bytes"]) for part in document["parts"]]
    assert sizes == [5 * MiB, 10 * MiB, 12 * MiB, 12 * MiB, 1 * MiB]
