"""The upload path against a real Redis and a real S3 server (SeaweedFS), through the real daemon
(supervisor, watcher, streams) running in this process."""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from pathlib import Path
from typing import Any

import pytest

from harness import object_bytes, running_daemon, wait_until, write_slowly
from tailup import hashplan
from tailup.integrity import crc32_header
from tailup.keys import metadata_key
from tailup.model import StreamState
from tailup.plan import MIN_PART_SIZE_BYTES, MiB, PartPlan

pytestmark = pytest.mark.asyncio


async def test_slow_writer_never_sends_a_short_part_and_completes(
    daemon_args: dict[str, Any], watch: Path, s3_client: Any, bucket: str
) -> None:
    path = watch / "slow.ts"
    total = 15 * MiB + 4321  # three full parts and a tail: parts 1 and 2 while writing
    async with running_daemon(**daemon_args) as daemon:
        seen_during_write: list[int] = []

        async def note_parts(_written: int) -> None:
            seen_during_write.append(len(daemon.store.parts))

        data = await write_slowly(path, total, bytes_per_s=3_000_000, on_chunk=note_parts)
        record = await daemon.wait_for_state(path, {StreamState.COMPLETED})

    # Streaming, not batch: parts went up while the writer was still writing (part 2 had
    # 5 MiB of writing, 1.7 s, to go up in).
    assert seen_during_write[-1] >= 2, seen_during_write
    layout = PartPlan(MIN_PART_SIZE_BYTES).final_layout(total)
    calls = [c for c in daemon.store.parts if c.key == record.key]
    last_number = layout[-1].number
    for call in calls:
        if call.number != last_number:
            assert call.size >= MIN_PART_SIZE_BYTES, f"part {call.number} is {call.size} bytes"
    # Every full part went up exactly once; only the final tail at finalize.
    assert sorted(c.number for c in calls) == [r.number for r in layout]
    body = object_bytes(s3_client, bucket, record.key)
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(data).hexdigest()
    assert record.sha256 == hashlib.sha256(data).hexdigest()
    assert record.final_size == total


async def test_checkpoint_after_each_part_is_consistent_and_lower_bound_of_s3(
    daemon_args: dict[str, Any], watch: Path
) -> None:
    path = watch / "cp.mkv"
    async with running_daemon(**daemon_args) as daemon:
        await write_slowly(path, 17 * MiB, bytes_per_s=20_000_000)
        record = await daemon.wait_for_state(path, {StreamState.COMPLETED})
    snapshots = daemon.checkpoints.after_commit
    assert len(snapshots) >= 4  # 3 full parts of 5 MiB while writing + the 2 MiB tail
    assert len(daemon.checkpoints.acked_at_commit) == len(snapshots)
    sent_so_far: set[int] = set()
    for (meta, parts), acknowledged in zip(
        snapshots, daemon.checkpoints.acked_at_commit, strict=True
    ):
        assert meta.stream_id == record.stream_id
        # The part hash and the derived meta fields agree in every snapshot (one transaction).
        assert meta.total_bytes_sent == sum(p.size for p in parts.values())
        expected_next = 1
        while expected_next in parts:
            expected_next += 1
        assert meta.next_part_to_upload == expected_next
        # Every checkpointed part, with its ETag, had been acknowledged by S3 when the commit
        # that wrote this snapshot started (not merely by the end of the run).
        assert {(meta.key, n, p.etag) for n, p in parts.items()} <= acknowledged
        assert set(parts) >= sent_so_far  # the checkpoint never loses a part
        sent_so_far = set(parts)
        for part in parts.values():
            assert part.etag and part.size > 0


@pytest.mark.parametrize("sha256_follows", [False, True], ids=["inline", "follows"])
async def test_part_changed_after_upload_is_sent_again(
    daemon_args: dict[str, Any],
    watch: Path,
    s3_client: Any,
    bucket: str,
    sha256_follows: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if sha256_follows:  # as for a long recording: hashing the file again at close costs too much
        monkeypatch.setattr(hashplan, "INLINE_MAX_BYTES", 1 * MiB)
    path = watch / "patched.mp4"
    async with running_daemon(**daemon_args) as daemon:
        # Write 12 MiB but keep the file open, like a muxer that patches its header at close.
        data = bytearray(hashlib.shake_256(b"patched").digest(12 * MiB))
        with path.open("w+b") as out:
            out.write(data)
            out.flush()
            await wait_until(lambda: len(daemon.store.parts) >= 2, "parts 1-2 uploaded")
            out.seek(0x28)
            out.write(b"\x00\x01\x02\x03")  # the mdat-size patch an MP4 muxer writes at close
            data[0x28:0x2C] = b"\x00\x01\x02\x03"
        record = await daemon.wait_for_state(path, {StreamState.COMPLETED})
        # The SHA-256 kept up while uploading covered the old part 1. A small file is hashed
        # again at finalize; a big one's SHA-256 follows the published object (tailup.hashplan),
        # into the record and metadata.json, which names the whole-object CRC32 at once.
        await wait_until(
            lambda: _sha256_recorded(s3_client, bucket, record.key), "the sha256 that follows"
        )
        record = await daemon.wait_for_state(path, {StreamState.COMPLETED})
    part1_uploads = [c for c in daemon.store.parts if c.key == record.key and c.number == 1]
    assert len(part1_uploads) == 2, "part 1 changed after its upload and must be sent again"
    part2_uploads = [c for c in daemon.store.parts if c.key == record.key and c.number == 2]
    assert len(part2_uploads) == 1, "an unchanged part is not sent again"
    assert object_bytes(s3_client, bucket, record.key) == bytes(data)
    assert record.sha256 == hashlib.sha256(data).hexdigest()
    # Following, metadata.json is written once without the SHA-256, then again with it.
    sidecar_puts = daemon.store.puts.count(metadata_key(record.key))
    assert sidecar_puts == (2 if sha256_follows else 1)
    meta = json.loads(object_bytes(s3_client, bucket, metadata_key(record.key)))
    assert meta["checksums"]["sha256"] == record.sha256
    # The whole-object CRC32 was in metadata.json from the start: combined from the parts',
    # and the one S3 itself reports on HEAD.
    head = s3_client.head_object(Bucket=bucket, Key=record.key, ChecksumMode="ENABLED")
    assert meta["checksums"]["object"] == {
        "algorithm": "crc32",
        "type": "full_object",
        "value": head["ChecksumCRC32"],
    }
    assert head["ChecksumCRC32"] == crc32_header(zlib.crc32(bytes(data)))


def _sha256_recorded(s3_client: Any, bucket: str, key: str) -> bool:
    meta = json.loads(object_bytes(s3_client, bucket, metadata_key(key)))
    return bool(meta["checksums"]["sha256"])


async def test_append_only_recording_has_its_sha256_at_completion(
    daemon_args: dict[str, Any], watch: Path, s3_client: Any, bucket: str
) -> None:
    path = watch / "appended.ts"
    async with running_daemon(**daemon_args) as daemon:
        data = await write_slowly(path, 17 * MiB, bytes_per_s=20_000_000)
        record = await daemon.wait_for_state(path, {StreamState.COMPLETED})
    # Hashed while it was uploaded; finalize hashed only the tail: nothing follows.
    assert record.sha256 == hashlib.sha256(data).hexdigest()
    meta = json.loads(object_bytes(s3_client, bucket, metadata_key(record.key)))
    assert meta["checksums"]["sha256"] == record.sha256
    assert meta["checksums"]["object"]["value"] == crc32_header(zlib.crc32(data))


async def test_sha256_off_names_only_the_whole_object_crc(
    daemon_args: dict[str, Any], watch: Path, s3_client: Any, bucket: str
) -> None:
    big, small = watch / "big.ts", watch / "small.ts"
    async with running_daemon(**daemon_args, sha256="off") as daemon:
        data = await write_slowly(big, 12 * MiB, bytes_per_s=20_000_000)
        small.write_bytes(b"x" * 100_000)
        records = [await daemon.wait_for_state(p, {StreamState.COMPLETED}) for p in (big, small)]
    for record, body in zip(records, (data, b"x" * 100_000), strict=True):
        assert record.sha256 == ""
        meta = json.loads(object_bytes(s3_client, bucket, metadata_key(record.key)))
        assert meta["checksums"]["sha256"] == ""
        assert meta["checksums"]["object"] == {
            "algorithm": "crc32",
            "type": "full_object",
            "value": crc32_header(zlib.crc32(body)),
        }
        head = s3_client.head_object(Bucket=bucket, Key=record.key, ChecksumMode="ENABLED")
        assert head["ChecksumCRC32"] == meta["checksums"]["object"]["value"]


async def test_file_that_shrinks_before_close_leaves_out_parts_past_the_end(
    daemon_args: dict[str, Any], watch: Path, s3_client: Any, bucket: str
) -> None:
    path = watch / "shrunk.mkv"
    async with running_daemon(**daemon_args) as daemon:
        data = hashlib.shake_256(b"shrink").digest(16 * MiB)
        with path.open("wb") as out:
            out.write(data)
            out.flush()
            await wait_until(lambda: len(daemon.store.parts) >= 3, "parts 1-3 uploaded")
            out.truncate(7 * MiB)
        record = await daemon.wait_for_state(path, {StreamState.COMPLETED})
    assert object_bytes(s3_client, bucket, record.key) == data[: 7 * MiB]
    assert record.final_size == 7 * MiB
    assert record.sha256 == hashlib.sha256(data[: 7 * MiB]).hexdigest()


async def test_deleted_file_aborts_its_upload_and_others_go_on(
    daemon_args: dict[str, Any], watch: Path, s3_client: Any, bucket: str
) -> None:
    doomed = watch / "doomed.ts"
    survivor = watch / "survivor.ts"
    async with running_daemon(**daemon_args) as daemon:
        with doomed.open("wb") as out:
            out.write(os.urandom(11 * MiB))
            out.flush()
            await wait_until(lambda: len(daemon.store.parts) >= 2, "parts of doomed uploaded")
            doomed_record = await daemon.record_for(doomed)
            assert doomed_record is not None and doomed_record.upload_id
            doomed.unlink()
            kept = os.urandom(6 * MiB)
            survivor.write_bytes(kept)
            aborted = await daemon.wait_for_state(doomed, {StreamState.ABORTED})
        done = await daemon.wait_for_state(survivor, {StreamState.COMPLETED})
    assert "deleted" in aborted.error
    uploads = s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert [u for u in uploads if u["Key"] == doomed_record.key] == []
    assert object_bytes(s3_client, bucket, done.key) == kept


async def test_small_file_goes_up_in_one_request_with_metadata(
    daemon_args: dict[str, Any], watch: Path, s3_client: Any, bucket: str
) -> None:
    path = watch / "small clip #1 é.mov"
    body = b"tailup test bytes, not media. " * 10_000  # random bytes can probe as h263
    async with running_daemon(**daemon_args) as daemon:
        path.write_bytes(body)
        record = await daemon.wait_for_state(path, {StreamState.COMPLETED})
    assert daemon.store.parts == [], "no multipart upload for a file under one part"
    assert record.key.endswith("/small clip #1 é.mov")
    assert object_bytes(s3_client, bucket, record.key) == body
    meta = json.loads(object_bytes(s3_client, bucket, metadata_key(record.key)))
    assert meta["size_bytes"] == len(body)
    assert meta["checksums"]["sha256"] == hashlib.sha256(body).hexdigest()
    assert meta["part_count"] == 1
    assert meta["media"] is None  # random bytes do not probe as media


async def test_empty_file_is_skipped_with_a_reason(
    daemon_args: dict[str, Any], watch: Path
) -> None:
    path = watch / "empty.mp4"
    async with running_daemon(**daemon_args) as daemon:
        path.write_bytes(b"")
        record = await daemon.wait_for_state(path, {StreamState.SKIPPED})
    assert "empty" in record.error
    assert daemon.store.parts == [] and daemon.store.puts == []


async def test_completed_file_changed_later_is_uploaded_again_unchanged_never(
    daemon_args: dict[str, Any], watch: Path, s3_client: Any, bucket: str
) -> None:
    path = watch / "again.ts"
    first = os.urandom(2 * MiB)
    async with running_daemon(**daemon_args) as daemon:
        path.write_bytes(first)
        record = await daemon.wait_for_state(path, {StreamState.COMPLETED})
        assert record.generation == 1
        with path.open("ab") as out:  # the recorder appends more under the same name
            out.write(b"more bytes")
        await wait_until(
            lambda: _generation_completed(daemon, path, 2), "second generation completed"
        )
    again = await _record(daemon_args, path)
    assert again.key == record.key and again.stream_id == record.stream_id
    assert object_bytes(s3_client, bucket, record.key) == first + b"more bytes"
    puts_before = len(daemon.store.puts)

    # A restart with the file unchanged uploads nothing.
    async with running_daemon(**daemon_args) as daemon2:
        # The startup scan reports the file; wait until the supervisor has acted on it.
        await wait_until(lambda: daemon2.supervisor.events_routed >= 1, "startup scan routed")
        still = await daemon2.record_for(path)
    assert still is not None and still.generation == 2
    assert daemon2.store.puts == [] and daemon2.store.parts == []
    assert puts_before >= 4  # object + metadata, twice


async def test_after_upload_delete_removes_only_verified_files(
    daemon_args: dict[str, Any], watch: Path, s3_client: Any, bucket: str
) -> None:
    path = watch / "gone-after.ts"
    body = os.urandom(6 * MiB)
    async with running_daemon(**daemon_args, after_upload="delete") as daemon:
        path.write_bytes(body)
        record = await daemon.wait_for_state(path, {StreamState.COMPLETED})
        await wait_until(lambda: not path.exists(), "source deleted after upload")
    assert object_bytes(s3_client, bucket, record.key) == body


async def _record(daemon_args: dict[str, Any], path: Path) -> Any:
    from tailup.checkpoint import RedisCheckpointStore

    async with RedisCheckpointStore.connect(
        daemon_args["redis_url"], daemon_args["key_prefix"]
    ) as cps:
        stream_id = await cps.stream_for_path(str(path))
        assert stream_id
        loaded = await cps.load(stream_id)
        assert loaded
        return loaded[0]


async def _generation_completed(daemon: Any, path: Path, generation: int) -> bool:
    record = await daemon.record_for(path)
    return bool(
        record and record.generation == generation and record.state is StreamState.COMPLETED
    )


async def test_retryable_faults_stall_then_complete_and_the_end_state_sticks(
    daemon_args: dict[str, Any], watch: Path, s3_client: Any, bucket: str
) -> None:
    path = watch / "flaky.ts"
    body = os.urandom(12 * MiB)
    faults = {"upload_part": 2, "complete_upload": 1}
    async with running_daemon(**daemon_args, faults=faults) as daemon:
        path.write_bytes(body)
        record = await daemon.wait_for_state(path, {StreamState.COMPLETED})
        assert daemon.store.faults_raised == 3
        # Nothing flips a finished stream back to uploading after its recovery.
        await wait_until(lambda: daemon.supervisor.streams == {}, "stream task ended")
        again = await daemon.record_for(path)
    assert again is not None and again.state is StreamState.COMPLETED and again.error == ""
    assert object_bytes(s3_client, bucket, record.key) == body


async def test_after_upload_move_keeps_the_relative_name(
    daemon_args: dict[str, Any], watch: Path, tmp_path: Path, s3_client: Any, bucket: str
) -> None:
    archive = tmp_path / "archive"
    paths = [watch / "cam1" / "rec.ts", watch / "cam2" / "rec.ts"]
    bodies = [os.urandom(1 * MiB), os.urandom(1 * MiB)]
    async with running_daemon(**daemon_args, after_upload=f"move:{archive}") as daemon:
        for path, body in zip(paths, bodies, strict=True):
            path.parent.mkdir()
            path.write_bytes(body)
        records = [await daemon.wait_for_state(p, {StreamState.COMPLETED}) for p in paths]
        moved = [archive / "cam1" / "rec.ts", archive / "cam2" / "rec.ts"]
        await wait_until(lambda: all(m.exists() for m in moved), "sources moved after upload")
    for path, target, body, record in zip(paths, moved, bodies, records, strict=True):
        assert not path.exists()
        assert target.read_bytes() == body
        assert object_bytes(s3_client, bucket, record.key) == body


async def test_poll_mode_finalizes_on_idle_timeout(
    daemon_args: dict[str, Any], watch: Path, s3_client: Any, bucket: str
) -> None:
    path = watch / "nfs" / "polled.mkv"
    path.parent.mkdir()
    body = os.urandom(6 * MiB)
    async with running_daemon(
        **daemon_args, poll=True, poll_interval=0.2, idle_timeout=1.5
    ) as daemon:
        path.write_bytes(body)
        record = await daemon.wait_for_state(path, {StreamState.COMPLETED})
    assert record.key.endswith("/polled.mkv")
    assert object_bytes(s3_client, bucket, record.key) == body
