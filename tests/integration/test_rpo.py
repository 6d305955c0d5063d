"""--rpo (issue 18 point 2) against a real SeaweedFS and a real Redis, through the daemon running
in this process, with a live writer: S3 holds the recording to within the RPO of a moment when
the recorder is cut off from S3 (every S3 call started after it fails, as for a smashed
recorder), and once the writer closes and the upload completes no staged segment is left."""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from harness import object_bytes, running_daemon, wait_until
from tailup.errors import StorageUnavailable
from tailup.keys import STAGING_INFIX
from tailup.model import StreamState
from tailup.plan import MiB
from tailup.rpo import list_tails, read_pieces, stitch_plan
from tailup.s3 import S3MultipartStore

pytestmark = pytest.mark.asyncio

RPO_S = 2.0
# What the done-when allows: the RPO plus the write cadence's margin.
ALLOWED_LAG_S = 2.5


class CutOff:
    """The real store, until ``cut`` is set: from then every call fails before it starts, as
    for a recorder whose network (or the recorder itself) is gone. Counts the calls under way,
    so the test can see S3 settle."""

    def __init__(self, inner: S3MultipartStore) -> None:
        self.inner = inner
        self.cut = False
        self.in_flight = 0

    def for_bucket(self, bucket: str) -> Any:
        return self

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)
        if not asyncio.iscoroutinefunction(method):
            return method

        async def call(*args: Any, **kwargs: Any) -> Any:
            if self.cut:
                raise StorageUnavailable(f"{name}: cut off (the recorder is gone)")
            self.in_flight += 1
            try:
                return await method(*args, **kwargs)
            finally:
                self.in_flight -= 1

        return call


async def write_live(
    out: BinaryIO,
    data: bytes,
    *,
    start: int,
    stop: int,
    bytes_per_s: float,
    log: list[tuple[float, int]],
) -> None:
    """Append data[start:stop] to ``out`` at ``bytes_per_s`` in 32 KiB writes (the writer's own
    pace), noting (time, size) after each write; the file stays open."""
    chunk = 32 * 1024
    for offset in range(start, stop, chunk):
        out.write(data[offset : min(offset + chunk, stop)])
        out.flush()
        log.append((time.monotonic(), min(offset + chunk, stop)))
        await asyncio.sleep(chunk / bytes_per_s)


def written_by(log: list[tuple[float, int]], moment: float) -> int:
    return max((size for at, size in log if at <= moment), default=0)


async def test_s3_holds_the_recording_to_within_the_rpo_and_nothing_staged_stays(
    daemon_args: dict[str, Any], watch: Path, s3_client: Any, bucket: str
) -> None:
    path = watch / "cam.ts"
    rate = 256 * 1024  # 2 Mbit/s: an 8 MiB part would take 32 s
    data = hashlib.shake_256(b"rpo").digest(3 * MiB)
    log: list[tuple[float, int]] = []
    cutoff: list[CutOff] = []

    def wrap(inner: S3MultipartStore) -> CutOff:
        cutoff.append(CutOff(inner))
        return cutoff[0]

    async with running_daemon(
        **daemon_args, part_size="8MiB", rpo=RPO_S, wrap_store=wrap
    ) as daemon:
        out = path.open("wb")
        await write_live(out, data, start=0, stop=2 * MiB, bytes_per_s=rate, log=log)
        moment = time.monotonic()  # the recorder is destroyed now
        cutoff[0].cut = True
        await wait_until(lambda: cutoff[0].in_flight == 0, "S3 calls under way to end", 10)

        record = await daemon.record_for(path)
        assert record is not None and record.upload_id
        store = cutoff[0].inner
        parts = [(p.number, p.size) for p in await store.list_parts(record.key, record.upload_id)]
        tails = await list_tails(store, record.key, record.upload_id)
        plan = stitch_plan(parts, tails)
        must_hold = written_by(log, moment - ALLOWED_LAG_S)
        assert must_hold > 0
        assert plan.end_bytes >= must_hold, (plan, must_hold, log[-1])
        # What salvage would make of it is the recording's start.
        assert parts == [] and plan.keep_parts == ()
        stitched = b"".join([bytes(await read_pieces(store, p)) for p in plan.final_parts])
        assert stitched == data[: plan.end_bytes]

        # The recorder comes back: the writer closes, the upload completes, nothing staged stays.
        cutoff[0].cut = False
        await write_live(out, data, start=2 * MiB, stop=3 * MiB, bytes_per_s=4 * rate, log=log)
        out.close()
        done = await daemon.wait_for_state(path, {StreamState.COMPLETED})

    assert object_bytes(s3_client, bucket, done.key) == data
    listed = s3_client.list_objects_v2(Bucket=bucket, Prefix=done.key + STAGING_INFIX)
    assert listed.get("KeyCount", 0) == 0, listed.get("Contents")


async def test_segments_a_part_holds_are_deleted_while_recording(
    daemon_args: dict[str, Any], watch: Path, s3_client: Any, bucket: str
) -> None:
    """Past a full part, the segments wholly under it go (storage stays about one part per
    camera), and those left reach from the part's end to the file's."""
    path = watch / "cam2.ts"
    data = hashlib.shake_256(b"rpo2").digest(7 * MiB)
    log: list[tuple[float, int]] = []
    async with running_daemon(**daemon_args, part_size="5MiB", rpo=1) as daemon:
        out = path.open("wb")
        await write_live(out, data, start=0, stop=7 * MiB, bytes_per_s=2 * MiB, log=log)
        record = await daemon.record_for(path)
        assert record is not None

        async def settled() -> bool:
            assert record is not None
            tails = await list_tails(daemon.store.inner, record.key, record.upload_id)
            parts = await daemon.store.inner.list_parts(record.key, record.upload_id)
            return (
                [p.number for p in parts] == [1]
                and bool(tails)
                and all(t.end > 5 * MiB for t in tails)
                and stitch_plan([(1, 5 * MiB)], tails).end_bytes == 7 * MiB
            )

        await wait_until(settled, "part 1 and segments from its end to the file's", 20)
        out.close()
        done = await daemon.wait_for_state(path, {StreamState.COMPLETED})

    assert object_bytes(s3_client, bucket, done.key) == data
    listed = s3_client.list_objects_v2(Bucket=bucket, Prefix=done.key + STAGING_INFIX)
    assert listed.get("KeyCount", 0) == 0, listed.get("Contents")


async def test_an_aborted_stream_leaves_no_segment(
    daemon_args: dict[str, Any], watch: Path, s3_client: Any, bucket: str
) -> None:
    """The file deleted mid-recording: the upload is aborted, and its segments deleted."""
    path = watch / "cam3.ts"
    data = hashlib.shake_256(b"rpo3").digest(MiB)
    log: list[tuple[float, int]] = []
    async with running_daemon(**daemon_args, part_size="8MiB", rpo=1) as daemon:
        with path.open("wb") as out:
            await write_live(out, data, start=0, stop=MiB // 2, bytes_per_s=MiB, log=log)
            record = await daemon.record_for(path)
            assert record is not None

            async def staged() -> bool:
                assert record is not None
                current = await daemon.record_for(path)
                assert current is not None
                return bool(await list_tails(daemon.store.inner, current.key, current.upload_id))

            await wait_until(staged, "a tail segment staged", 20)
            path.unlink()
        ended = await daemon.wait_for_state(path, {StreamState.ABORTED}, timeout_s=30)
    listed = s3_client.list_objects_v2(Bucket=bucket, Prefix=ended.key + STAGING_INFIX)
    assert listed.get("KeyCount", 0) == 0, listed.get("Contents")


async def test_segments_of_a_run_before_a_restart_are_deleted_at_completion(
    daemon_args: dict[str, Any], watch: Path, s3_client: Any, bucket: str
) -> None:
    """A daemon stopped mid-recording leaves its segments (the upload is resumed); the next run
    completes the recording and deletes them with its own."""
    path = watch / "cam4.ts"
    data = hashlib.shake_256(b"rpo4").digest(MiB)
    log: list[tuple[float, int]] = []
    with path.open("wb") as out:
        async with running_daemon(**daemon_args, part_size="8MiB", rpo=1) as daemon:
            await write_live(out, data, start=0, stop=MiB // 2, bytes_per_s=MiB, log=log)

            async def staged() -> bool:
                current = await daemon.record_for(path)
                assert current is not None
                return bool(await list_tails(daemon.store.inner, current.key, current.upload_id))

            await wait_until(staged, "a tail segment staged", 20)
        first = await daemon.record_for(path)
        assert first is not None and first.upload_id
        left = s3_client.list_objects_v2(Bucket=bucket, Prefix=first.key + STAGING_INFIX)
        assert left.get("KeyCount", 0) > 0  # kept for the resumed upload
        async with running_daemon(**daemon_args, part_size="8MiB", rpo=1) as daemon:
            await write_live(out, data, start=MiB // 2, stop=MiB, bytes_per_s=MiB, log=log)
            out.close()
            done = await daemon.wait_for_state(path, {StreamState.COMPLETED})
    assert done.key == first.key
    assert object_bytes(s3_client, bucket, done.key) == data
    listed = s3_client.list_objects_v2(Bucket=bucket, Prefix=done.key + STAGING_INFIX)
    assert listed.get("KeyCount", 0) == 0, listed.get("Contents")
