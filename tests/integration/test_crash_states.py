"""Resume against a real Redis and a real S3 server (SeaweedFS): the state a crash leaves is built
by hand, exactly (which parts S3 has, in which versions, which the checkpoint has), then the daemon
starts on it. The kill -9 trials in tests/e2e reach these states at random; these reach each one
on purpose."""

# Blocking file writes in async tests are the point: they set the scene before the daemon runs.
# ruff: noqa: ASYNC240

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

import tailup.stream.context
from harness import content, object_bytes, running_daemon, wait_until
from tailup.checkpoint import RedisCheckpointStore
from tailup.integrity import crc32_of
from tailup.keys import RedisKeys, metadata_key
from tailup.model import PartRecord, StreamRecord, StreamState, iso, utc_now
from tailup.plan import MiB, PartPlan
from tailup.resume import Verdict
from tailup.s3 import S3MultipartStore

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(120)]

PLAN = PartPlan(5 * MiB)


def part_bytes(data: bytes, number: int) -> bytes:
    rng = PLAN.part_range(number)
    return data[rng.start : min(rng.end, len(data))]


@dataclass
class Crash:
    """What a crash left: a stream record, its upload and the checkpointed parts."""

    record: StreamRecord
    upload_id: str


async def crashed_stream(
    args: dict[str, Any],
    path: Path,
    *,
    sent: Mapping[int, Sequence[bytes]],
    checkpointed: set[int],
    state: StreamState = StreamState.UPLOADING,
    complete: bool = False,
) -> Crash:
    """Build the state a crash leaves: ``sent`` has, per part number, the bodies S3 received in
    order (several: SeaweedFS keeps them all); ``checkpointed`` parts are recorded with the last
    one."""
    st = path.stat()
    stream_id = uuid.uuid4().hex[:16]
    record = StreamRecord(
        stream_id=stream_id,
        path=str(path),
        watch_root=str(path.parent),
        bucket=args["bucket"],
        key=f"streams/{stream_id}/{path.name}",
        base_part_size=PLAN.base_part_size_bytes,
        device=st.st_dev,
        inode=st.st_ino,
        created_at=iso(utc_now()),
    )
    async with (
        RedisCheckpointStore.connect(args["redis_url"], args["key_prefix"]) as cps,
        S3MultipartStore.connect(
            args["bucket"], endpoint_url=args["endpoint_url"], region="us-east-1"
        ) as store,
    ):
        await cps.create(record)
        upload_id = await store.create_upload(record.key, "video/mp2t")
        await cps.update(stream_id, upload_id=upload_id)
        records: dict[int, PartRecord] = {}
        for number, bodies in sent.items():
            for body in bodies:
                etag = await store.upload_part(record.key, upload_id, number, body, crc32_of(body))
                records[number] = PartRecord(number, len(body), crc32_of(body), etag)
        for number in sorted(checkpointed):
            await cps.commit_part(stream_id, records[number])
        if complete:
            named = [(n, records[n].etag, records[n].crc32) for n in sorted(records)]
            await store.complete_upload(record.key, upload_id, named)
        if state is not StreamState.UPLOADING:
            await cps.update(stream_id, state=state)
    return Crash(record.with_changes(upload_id=upload_id), upload_id)


def parts_sent(daemon: Any, key: str) -> list[int]:
    return sorted(c.number for c in daemon.store.parts if c.key == key)


def open_uploads(s3_client: Any, bucket: str, key: str) -> list[str]:
    uploads = s3_client.list_multipart_uploads(Bucket=bucket, Prefix=key).get("Uploads", [])
    return [u["UploadId"] for u in uploads if u["Key"] == key]


async def test_parts_s3_has_beyond_the_checkpoint_are_adopted_when_their_md5_matches(
    daemon_args: dict[str, Any], watch: Path, s3_client: Any, bucket: str
) -> None:
    path = watch / "adopt.ts"
    data = content(17 * MiB, "adopt")
    path.write_bytes(data)
    wrong = content(5 * MiB, "a stale version of part 2")
    crash = await crashed_stream(
        daemon_args,
        path,
        # Part 2 went up twice (SeaweedFS lists both); part 3 was acknowledged, then the kill.
        sent={1: [part_bytes(data, 1)], 2: [wrong, part_bytes(data, 2)], 3: [part_bytes(data, 3)]},
        checkpointed={1},
    )
    async with running_daemon(**daemon_args) as daemon:
        record = await daemon.wait_for_state(path, {StreamState.COMPLETED})
    assert record.stream_id == crash.record.stream_id and record.key == crash.record.key
    [(_, decision)] = daemon.resumes
    assert decision.verdict is Verdict.CONTINUE
    assert [p.number for p in decision.adopt] == [2, 3] and decision.forget == ()
    assert parts_sent(daemon, record.key) == [4], "only the part S3 did not have is sent"
    assert object_bytes(s3_client, bucket, record.key) == data
    assert open_uploads(s3_client, bucket, record.key) == []


@pytest.mark.parametrize(
    ("s3_has_part_2", "expected_sent"),
    [(False, [2, 3]), (True, [3])],
    ids=["s3 lacks it: sent again", "s3 has the file's version: adopted"],
)
async def test_a_checkpointed_etag_s3_does_not_list_is_forgotten(
    daemon_args: dict[str, Any],
    watch: Path,
    s3_client: Any,
    bucket: str,
    s3_has_part_2: bool,
    expected_sent: list[int],
) -> None:
    path = watch / "forget.ts"
    data = content(12 * MiB, "forget")
    path.write_bytes(data)
    sent = {n: [part_bytes(data, n)] for n in ((1, 2) if s3_has_part_2 else (1,))}
    crash = await crashed_stream(daemon_args, path, sent=sent, checkpointed={1})
    # The checkpoint names an ETag S3 does not list for part 2 (S3 is the truth).
    async with RedisCheckpointStore.connect(
        daemon_args["redis_url"], daemon_args["key_prefix"]
    ) as cps:
        bogus = PartRecord(2, 5 * MiB, crc32_of(part_bytes(data, 2)), '"' + "0" * 32 + '"')
        await cps.commit_part(crash.record.stream_id, bogus)
    async with running_daemon(**daemon_args) as daemon:
        record = await daemon.wait_for_state(path, {StreamState.COMPLETED})
    assert parts_sent(daemon, record.key) == expected_sent
    assert object_bytes(s3_client, bucket, record.key) == data


async def test_an_upload_that_vanished_is_started_again_from_part_one(
    daemon_args: dict[str, Any], watch: Path, s3_client: Any, bucket: str
) -> None:
    path = watch / "expired.mkv"
    data = content(13 * MiB, "expired")
    path.write_bytes(data)
    crash = await crashed_stream(
        daemon_args,
        path,
        sent={1: [part_bytes(data, 1)], 2: [part_bytes(data, 2)]},
        checkpointed={1, 2},
    )
    s3_client.abort_multipart_upload(Bucket=bucket, Key=crash.record.key, UploadId=crash.upload_id)
    async with running_daemon(**daemon_args) as daemon:
        record = await daemon.wait_for_state(path, {StreamState.COMPLETED})
    assert record.stream_id == crash.record.stream_id
    # The resume itself found the upload gone (ListParts: NoSuchUpload, no object at the key),
    # not a later UploadPart or Complete that would have led to the same object.
    assert [(sid, d.verdict) for sid, d in daemon.resumes] == [
        (crash.record.stream_id, Verdict.RESTART_UPLOAD)
    ]
    assert "no longer exists" in daemon.resumes[0][1].reason
    assert parts_sent(daemon, record.key) == [1, 2, 3]
    assert len(daemon.store.completes) == 1, "one Complete, of the new upload"
    assert object_bytes(s3_client, bucket, record.key) == data


async def test_finalizing_stream_whose_complete_succeeded_before_the_crash(
    daemon_args: dict[str, Any], watch: Path, s3_client: Any, bucket: str
) -> None:
    path = watch / "completed.mp4"
    data = content(12 * MiB, "completed")
    path.write_bytes(data)
    sent = {n: [part_bytes(data, n)] for n in (1, 2, 3)}
    crash = await crashed_stream(
        daemon_args,
        path,
        sent=sent,
        checkpointed={1, 2, 3},
        state=StreamState.FINALIZING,
        complete=True,  # then the kill, before metadata.json and the completed record
    )
    async with running_daemon(**daemon_args) as daemon:
        record = await daemon.wait_for_state(path, {StreamState.COMPLETED})
    assert record.stream_id == crash.record.stream_id
    # ListParts found NoSuchUpload and the object's ETag matched the checkpoint: the resume
    # recognised the completed upload (had it not, the upload would have started again from
    # part 1; a "same file, continue" verdict would reach the same object on SeaweedFS, which
    # accepts a second Complete, so the verdict itself is what is checked).
    [(stream_id, decision)] = daemon.resumes
    assert stream_id == crash.record.stream_id
    assert decision.verdict is Verdict.CONTINUE
    assert "completed just before tailup stopped" in decision.reason
    assert daemon.store.parts == [], "nothing is sent again"
    # Whether the second Complete succeeds again (SeaweedFS accepts it) or finds NoSuchUpload
    # (then the object's ETag decides; tests/unit/test_stream_faults.py) is the server's choice.
    assert record.sha256 == hashlib.sha256(data).hexdigest()
    assert object_bytes(s3_client, bucket, record.key) == data
    assert object_bytes(s3_client, bucket, metadata_key(record.key))


async def test_file_rewritten_in_place_while_down_is_a_new_stream(
    daemon_args: dict[str, Any], watch: Path, s3_client: Any, bucket: str
) -> None:
    path = watch / "rewritten.ts"
    old = content(11 * MiB, "old recording")
    path.write_bytes(old)
    crash = await crashed_stream(
        daemon_args,
        path,
        sent={1: [part_bytes(old, 1)], 2: [part_bytes(old, 2)]},
        checkpointed={1, 2},
    )
    new = content(14 * MiB, "new recording")
    with path.open("r+b") as out:  # same inode: a recorder restarted in place
        out.write(new)
    async with running_daemon(**daemon_args) as daemon:
        await daemon.wait_for_state(path, {StreamState.COMPLETED})
        fresh = await daemon.record_for(path)
        old_state = await daemon.checkpoints.inner.load(crash.record.stream_id)
    assert fresh is not None and fresh.stream_id != crash.record.stream_id
    assert object_bytes(s3_client, bucket, fresh.key) == new
    assert old_state is not None
    assert old_state[0].state is StreamState.ABORTED
    assert "changed where part 2 was uploaded" in old_state[0].error
    assert open_uploads(s3_client, bucket, crash.record.key) == []


@pytest.mark.parametrize("how", ["other inode", "truncated"])
async def test_file_replaced_while_down_is_a_new_stream(
    daemon_args: dict[str, Any], watch: Path, s3_client: Any, bucket: str, how: str
) -> None:
    path = watch / "replaced.ts"
    old = content(11 * MiB, "old")
    path.write_bytes(old)
    crash = await crashed_stream(
        daemon_args,
        path,
        sent={1: [part_bytes(old, 1)], 2: [part_bytes(old, 2)]},
        checkpointed={1, 2},
    )
    new = content(3 * MiB, "new")
    if how == "other inode":
        tmp = watch / "incoming.tmp"
        tmp.write_bytes(new)
        os.replace(tmp, path)
        words = "another file"
    else:
        with path.open("r+b") as out:
            out.truncate(0)
            out.write(new)
        words = "shorter than the"
    async with running_daemon(**daemon_args) as daemon:
        await daemon.wait_for_state(path, {StreamState.COMPLETED})
        fresh = await daemon.record_for(path)
        old_state = await daemon.checkpoints.inner.load(crash.record.stream_id)
    assert fresh is not None and fresh.stream_id != crash.record.stream_id
    assert object_bytes(s3_client, bucket, fresh.key) == new
    assert old_state is not None and old_state[0].state is StreamState.ABORTED
    assert words in old_state[0].error
    assert open_uploads(s3_client, bucket, crash.record.key) == []


async def test_file_gone_while_down_is_aborted_with_the_reason(
    daemon_args: dict[str, Any],
    watch: Path,
    s3_client: Any,
    bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Found gone by a stat, the path is given PATH_SETTLE_S (5 s) for a rename event to come;
    # none can come here (the file went while no daemon ran), so a shorter wait says as much.
    monkeypatch.setattr(tailup.stream.context, "PATH_SETTLE_S", 0.5)
    path = watch / "gone.ts"
    data = content(6 * MiB, "gone")
    path.write_bytes(data)
    crash = await crashed_stream(
        daemon_args, path, sent={1: [part_bytes(data, 1)]}, checkpointed={1}
    )
    path.unlink()
    async with running_daemon(**daemon_args) as daemon:
        record = await daemon.wait_for_state(path, {StreamState.ABORTED})
    assert record.stream_id == crash.record.stream_id
    assert "gone when tailup started again" in record.error
    assert open_uploads(s3_client, bucket, crash.record.key) == []


async def test_orphan_uploads_of_the_streams_key_are_aborted(
    daemon_args: dict[str, Any], watch: Path, s3_client: Any, bucket: str
) -> None:
    path = watch / "orphans.ts"
    data = content(7 * MiB, "orphans")
    path.write_bytes(data)
    crash = await crashed_stream(
        daemon_args, path, sent={1: [part_bytes(data, 1)]}, checkpointed={1}
    )
    # Killed between CreateMultipartUpload and its checkpoint, on an earlier run.
    orphan = s3_client.create_multipart_upload(Bucket=bucket, Key=crash.record.key)["UploadId"]
    assert orphan in open_uploads(s3_client, bucket, crash.record.key)
    async with running_daemon(**daemon_args) as daemon:
        record = await daemon.wait_for_state(path, {StreamState.COMPLETED})
    assert parts_sent(daemon, record.key) == [2]
    assert object_bytes(s3_client, bucket, record.key) == data
    assert open_uploads(s3_client, bucket, record.key) == []


async def test_ended_stream_still_in_the_live_set_is_not_resumed(
    daemon_args: dict[str, Any], watch: Path, s3_client: Any, bucket: str
) -> None:
    """Killed between the completed record and the live-set update (found by the kill -9
    trials: the next start resumed a completed stream and crashed on it)."""
    path = watch / "done.ts"
    data = content(300_000, "done")
    path.write_bytes(data)
    async with running_daemon(**daemon_args) as daemon:
        record = await daemon.wait_for_state(path, {StreamState.COMPLETED})
    keys = RedisKeys(daemon_args["key_prefix"])
    client = aioredis.Redis.from_url(daemon_args["redis_url"])
    try:
        live = keys.scope(record.scope).live
        await client.sadd(live, record.stream_id)  # what the kill left
        async with running_daemon(**daemon_args) as daemon:
            await wait_until(
                lambda: daemon.supervisor.events_routed >= 1, "the startup scan routed"
            )
            assert not await client.sismember(live, record.stream_id)
            again = await daemon.record_for(path)
    finally:
        await client.aclose()
    assert again is not None and again.state is StreamState.COMPLETED
    assert again.generation == record.generation
    assert daemon.store.parts == [] and daemon.store.puts == []
    assert object_bytes(s3_client, bucket, record.key) == data


async def test_an_upload_adopted_from_s3_with_another_checksum_type_completes(
    daemon_args: dict[str, Any], watch: Path, s3_client: Any, bucket: str
) -> None:
    """N5: Redis lost its data while a recording's upload was open, and that upload was made by
    a tailup from before FULL_OBJECT (COMPOSITE CRC32). The next start adopts it from S3; S3
    (SeaweedFS) does not list its checksum type, and refuses a FULL_OBJECT Complete of it: the
    upload is started again, never left retrying (or FAILED) forever."""
    path = watch / "adopted.ts"
    data = content(8 * MiB, "adopted")
    with path.open("wb") as out:
        out.write(data)
        out.flush()
        async with running_daemon(**daemon_args) as daemon:

            async def part_one_sent() -> bool:
                record = await daemon.record_for(path)
                return record is not None and record.next_part_to_upload > 1

            await wait_until(part_one_sent, "part 1 checkpointed")
            record = await daemon.record_for(path)
            assert record is not None
    # What an older tailup left at the key: a COMPOSITE CRC32 upload holding part 1.
    s3_client.abort_multipart_upload(Bucket=bucket, Key=record.key, UploadId=record.upload_id)
    old = s3_client.create_multipart_upload(
        Bucket=bucket, Key=record.key, ContentType="video/mp2t", ChecksumAlgorithm="CRC32"
    )["UploadId"]
    s3_client.upload_part(
        Bucket=bucket,
        Key=record.key,
        UploadId=old,
        PartNumber=1,
        Body=part_bytes(data, 1),
        ChecksumAlgorithm="CRC32",
    )
    client = aioredis.Redis.from_url(daemon_args["redis_url"])
    try:
        async for name in client.scan_iter(match=f"{daemon_args['key_prefix']}*"):
            await client.delete(name)  # Redis lost everything of it
    finally:
        await client.aclose()
    async with running_daemon(**daemon_args) as daemon:
        done = await daemon.wait_for_state(path, {StreamState.COMPLETED}, timeout_s=40)
    assert done.key == record.key
    assert object_bytes(s3_client, bucket, record.key) == data
    assert open_uploads(s3_client, bucket, record.key) == []
