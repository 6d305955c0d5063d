"""--bwlimit against the real Redis and S3 server: a throttled upload ends byte-exact, and every
chunk of every part body sent went through the one bucket. Elapsed seconds are never asserted: the
bucket runs on a fake clock that moves only when it pauses, so what it made the upload wait is
exact and the test takes no longer than an unthrottled upload."""

from __future__ import annotations

import asyncio
import hashlib
import math
import os
from pathlib import Path
from typing import Any

import pytest

from harness import IsolatedSettings, content, object_bytes, running_daemon
from tailup.bandwidth import BandwidthLimit, burst_bytes_for, chunk_bytes_for, parse_bwlimit
from tailup.model import StreamState
from tailup.plan import MiB
from tailup.supervisor import Supervisor

RATE = 4 * MiB


class VirtualTime:
    """A monotonic clock for the bucket that moves only by the pauses the bucket asks for."""

    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    async def pause(self, seconds: float, woken: asyncio.Event) -> None:
        self.now += seconds
        await asyncio.sleep(0)


class CountingLimit(BandwidthLimit):
    """The real limit, noting each chunk it is asked for."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.takes: list[int] = []

    async def take(self, n: int) -> None:
        self.takes.append(n)
        await super().take(n)


def drop_in(tmp_path: Path, watch: Path, name: str, data: bytes) -> Path:
    staging = tmp_path / name
    staging.write_bytes(data)
    dest = watch / name
    os.rename(staging, dest)
    return dest


def note_part_bodies(daemon: Any) -> list[int]:
    """The body length of every UploadPart request put on the wire, botocore's retries included."""
    sent: list[int] = []

    def before_send(request: Any, **_: Any) -> None:
        sent.append(len(request.body))

    daemon.store.inner._s3.meta.events.register("before-send.s3.UploadPart", before_send)
    return sent


async def test_a_throttled_upload_is_exact_and_every_chunk_went_through_the_bucket(
    daemon_args: dict[str, Any], watch: Path, tmp_path: Path, s3_client: Any, bucket: str
) -> None:
    time = VirtualTime()
    limit = CountingLimit(parse_bwlimit("4MiB"), clock=time.clock, pause=time.pause)
    data = content(12 * MiB + 54_321, "bwlimit")  # 2 full 5 MiB parts and a tail
    async with running_daemon(**daemon_args, bandwidth=limit) as daemon:
        sent = note_part_bodies(daemon)
        path = drop_in(tmp_path, watch, "throttled.ts", data)
        record = await daemon.wait_for_state(path, {StreamState.COMPLETED})
    assert object_bytes(s3_client, bucket, record.key) == data
    assert record.sha256 == hashlib.sha256(data).hexdigest()

    chunk = chunk_bytes_for(RATE)
    # Every byte of every part request sent was taken from the bucket first, in chunks.
    assert sum(limit.takes) == sum(sent) >= len(data)
    assert max(limit.takes) == chunk
    parts = [5 * MiB, 5 * MiB, len(data) - 10 * MiB]
    assert len(limit.takes) >= sum(math.ceil(size / chunk) for size in parts)
    # And each was paid for at the rate: all but the first full bucket waited for its tokens.
    assert limit.bucket.pauses > 0
    assert time.now == pytest.approx((sum(limit.takes) - burst_bytes_for(RATE)) / RATE, abs=0.01)


async def test_the_setting_makes_one_limit_for_every_stream(
    daemon_args: dict[str, Any], watch: Path, tmp_path: Path, s3_client: Any, bucket: str
) -> None:
    files = {f"cam{i}.ts": content(6 * MiB + 1000 * i, f"cam{i}") for i in range(2)}
    async with running_daemon(**daemon_args, bwlimit="16MiB") as daemon:
        limit = daemon.supervisor.bandwidth
        assert limit is not None and limit.bytes_per_second == 16 * MiB
        takes: list[int] = []
        real_take = limit.take

        async def counted(n: int) -> None:
            takes.append(n)
            await real_take(n)

        limit.take = counted  # type: ignore[method-assign]
        sent = note_part_bodies(daemon)
        paths = [drop_in(tmp_path, watch, name, data) for name, data in files.items()]
        records = [await daemon.wait_for_state(p, {StreamState.COMPLETED}) for p in paths]
    for record, data in zip(records, files.values(), strict=True):
        assert object_bytes(s3_client, bucket, record.key) == data
    # Both streams' parts went through the same bucket, every byte of them.
    assert sum(takes) == sum(sent) >= sum(len(d) for d in files.values())


def test_no_limit_means_no_limiter(tmp_path: Path) -> None:
    for off in ("off", "0", "00:00,off 12:00,0"):
        settings = IsolatedSettings(watch=[tmp_path], bucket="unused", bwlimit=off)
        supervisor = Supervisor(settings, store=None, checkpoints=None)  # type: ignore[arg-type]
        assert supervisor.bandwidth is None
        assert supervisor._deps.bandwidth is None  # bodies carry no throttle: sent as before
