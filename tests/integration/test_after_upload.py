"""The after-upload action over a file's whole life: never under a writer, and a pending one
finished by the next start. Real Redis, SeaweedFS and files; the daemon in process."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

import tailup.hashplan
import tailup.stream.sha256after
from harness import content, object_bytes, running_daemon, wait_until
from tailup.checkpoint import RedisCheckpointStore
from tailup.errors import SourceUnreadable
from tailup.keys import metadata_key
from tailup.model import EndCause, StreamState
from tailup.plan import MiB
from tailup.s3 import S3MultipartStore
from tailup.stream.sha256after import Sha256Result, finish_sha256


async def test_a_pending_delete_is_done_by_the_next_start_once_the_writer_is_gone(
    daemon_args: dict[str, Any], watch: Path, s3_client: Any, bucket: str
) -> None:
    path = watch / "cam1.ts"
    data = content(300_000, "stalled feed")
    options = {"idle_timeout": 1, "after_upload": "delete"}
    out = path.open("wb")
    try:
        out.write(data)
        out.flush()
        async with running_daemon(**daemon_args, **options) as daemon:
            record = await daemon.wait_for_state(path, {StreamState.COMPLETED})
            assert record.after_upload_pending, "its writer holds it: the delete waits"
            assert path.exists()
    finally:
        out.close()  # the writer goes while no daemon runs: no event will say so
    assert object_bytes(s3_client, bucket, record.key) == data
    async with running_daemon(**daemon_args, **options) as daemon:
        await wait_until(lambda: not path.exists(), "the pending delete done at start")

        async def recorded() -> bool:
            latest = await daemon.checkpoints.inner.load(record.stream_id)
            return latest is not None and not latest[0].after_upload_pending

        await wait_until(recorded, "the record says it is done")
    assert object_bytes(s3_client, bucket, record.key) == data


async def test_a_sha256_cut_short_is_finished_later_into_redis_and_metadata_json(
    daemon_args: dict[str, Any],
    watch: Path,
    s3_client: Any,
    bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """N14 on the real servers: the SHA-256 that follows a published object fails to read the
    file once; the record keeps sha256_pending, and finish_sha256 completes it in Redis and in
    the metadata.json on S3."""
    path = watch / "long.mp4"
    data = content(11 * MiB, "hashed later")
    path.write_bytes(data)
    monkeypatch.setattr(tailup.hashplan, "INLINE_MAX_BYTES", -1)  # the SHA-256 follows
    original = tailup.stream.sha256after.hash_range_blocking

    def unreadable(*args: Any) -> tuple[int, int]:
        raise SourceUnreadable(f"{path} cannot be read: Input/output error")

    monkeypatch.setattr(tailup.stream.sha256after, "hash_range_blocking", unreadable)
    async with running_daemon(**daemon_args) as daemon:
        record = await daemon.wait_for_state(path, {StreamState.COMPLETED})
    assert record.sha256_pending and not record.sha256
    monkeypatch.setattr(tailup.stream.sha256after, "hash_range_blocking", original)
    async with (
        RedisCheckpointStore.connect(daemon_args["redis_url"], daemon_args["key_prefix"]) as cps,
        S3MultipartStore.connect(
            bucket, endpoint_url=daemon_args["endpoint_url"], region="us-east-1"
        ) as store,
    ):
        loaded = await cps.load(record.stream_id)
        assert loaded is not None
        result = await finish_sha256(store, cps, loaded[0], loaded[1], timeout_s=10)
        assert result is Sha256Result.RECORDED
        after = await cps.load(record.stream_id)
    assert after is not None
    want = hashlib.sha256(data).hexdigest()
    assert (after[0].sha256, after[0].sha256_pending) == (want, False)
    sidecar = json.loads(object_bytes(s3_client, bucket, metadata_key(record.key)))
    assert sidecar["checksums"]["sha256"] == want


async def test_an_aborted_later_generation_never_runs_the_pending_action_of_an_earlier_one(
    daemon_args: dict[str, Any], watch: Path, s3_client: Any, bucket: str
) -> None:
    """N3: generation 1 completed on idle under its writer (the delete pending); the writer went
    on, so generation 2 started under the same record, and `tailup abort` ended it. The file
    now holds bytes S3 has not got whole: nothing may delete it, whatever the record's flag says
    (a record written before the fix still carries generation 1's)."""
    path = watch / "cam1.ts"
    first = content(300_000, "before the stall")
    options = {"idle_timeout": 1, "after_upload": "delete"}
    with path.open("wb") as out:
        out.write(first)
        out.flush()
        async with running_daemon(**daemon_args, **options) as daemon:
            record = await daemon.wait_for_state(path, {StreamState.COMPLETED})
            assert record.after_upload_pending
            await daemon.checkpoints.inner.update(
                record.stream_id,
                state=StreamState.ABORTED,
                end_cause=EndCause.OPERATOR,
                generation=2,
                error="aborted by the operator",
            )
        out.write(content(200_000, "after the stall"))
    async with running_daemon(**daemon_args, **options) as daemon:
        await wait_until(lambda: daemon.supervisor.events_routed >= 1, "the file looked at")
        latest = await daemon.record_for(path)
        assert latest is not None and latest.state is StreamState.ABORTED
    assert path.exists(), "deleted, though S3 never got its later bytes"
    assert object_bytes(s3_client, bucket, record.key) == first
