"""What servers other than the one in tests differ in, against the real daemon, Redis and S3 server
(SeaweedFS): one part size for every part (--part-sizing uniform: Cloudflare R2, Backblaze B2 Live
Read)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import tailup.plan
from harness import content, object_bytes, running_daemon, wait_until
from tailup.keys import metadata_key
from tailup.model import StreamState
from tailup.plan import MiB, PartSizing

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(120)]


def part_sizes(s3_client: Any, bucket: str, key: str) -> list[int]:
    document = json.loads(object_bytes(s3_client, bucket, metadata_key(key)))
    return [int(part["size_bytes"]) for part in document["parts"]]


async def test_a_stream_keeps_its_part_sizing_across_a_restart_with_the_setting_changed(
    daemon_args: dict[str, Any],
    watch: Path,
    s3_client: Any,
    bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Two parts per size instead of 500, so that the growing and the uniform plan part ways within
    # a few MiB: the rule is the same, only its tiers are shorter.
    monkeypatch.setattr(tailup.plan, "PARTS_PER_TIER", 2)
    path = watch / "long.ts"
    first, rest = content(11 * MiB, "first half"), content(12 * MiB, "second half")
    with path.open("wb") as writer:
        async with running_daemon(**daemon_args, part_sizing="uniform") as daemon:
            writer.write(first)
            writer.flush()
            await wait_until(lambda: len(daemon.store.parts) == 2, "parts 1 and 2 sent")
            started = await daemon.record_for(path)
            assert started is not None and started.part_sizing is PartSizing.UNIFORM
        # The daemon is stopped, the recording goes on; the next start is growing (the default).
        writer.write(rest)
    async with running_daemon(**daemon_args, idle_timeout=2) as daemon:
        resumed = await daemon.wait_for_state(path, {StreamState.COMPLETED})
        assert [stream_id for stream_id, _ in daemon.resumes] == [started.stream_id]
        new = watch / "new.ts"
        new.write_bytes(content(23 * MiB, "a recording started after the change"))
        started_after = await daemon.wait_for_state(new, {StreamState.COMPLETED})

    assert resumed.part_sizing is PartSizing.UNIFORM
    assert part_sizes(s3_client, bucket, resumed.key) == [5 * MiB] * 4 + [3 * MiB]
    assert object_bytes(s3_client, bucket, resumed.key) == first + rest
    # A growing plan (two parts per size here) for what started after the change.
    assert started_after.part_sizing is PartSizing.GROWING
    assert part_sizes(s3_client, bucket, started_after.key) == [5 * MiB, 5 * MiB, 10 * MiB, 3 * MiB]
