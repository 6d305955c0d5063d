"""`tailup abort` while the one request that makes a recording's object is in flight (the
PutObject of a short recording, the CompleteMultipartUpload of a longer one), against the real
daemon, Redis and S3 server (SeaweedFS): the object lands after the record says ABORTED, and the
daemon takes it (and its metadata.json) back, since no record owns it. The race is made by a store
that holds that request until the abort is in Redis."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from harness import content, running_daemon, wait_until
from tailup.keys import metadata_key
from tailup.model import RESUMABLE_STATES, EndCause, StreamState
from tailup.s3 import Body, S3MultipartStore
from tailup.uploadcard import CARD_SUFFIX

pytestmark = pytest.mark.timeout(120)  # asyncio_mode = "auto" marks the async ones


class HeldPut:
    """The real store; the recording's PutObject or CompleteMultipartUpload waits for
    ``release`` (after ``started`` is set) and then goes to the server as sent."""

    def __init__(self, inner: S3MultipartStore) -> None:
        self.inner = inner
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.landed: list[str] = []

    async def put_object(
        self, key: str, body: Body, crc32: int, content_type: str, **kwargs: Any
    ) -> str:
        if key.endswith((".metadata.json", CARD_SUFFIX)):  # not the recording's own PUT
            return await self.inner.put_object(key, body, crc32, content_type, **kwargs)
        self.started.set()
        await self.release.wait()
        etag = await self.inner.put_object(key, body, crc32, content_type, **kwargs)
        self.landed.append(key)
        return etag

    async def complete_upload(self, key: str, *args: Any, **kwargs: Any) -> str:
        self.started.set()
        await self.release.wait()
        etag = await self.inner.complete_upload(key, *args, **kwargs)
        self.landed.append(key)
        return etag

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def exists(s3_client: Any, bucket: str, key: str) -> bool:
    listed = s3_client.list_objects_v2(Bucket=bucket, Prefix=key)
    return any(item["Key"] == key for item in listed.get("Contents", []))


@pytest.mark.parametrize(
    "size_bytes", [64 * 1024, 6 * 1024 * 1024], ids=["put-object", "multipart-completion"]
)
async def test_an_abort_that_races_the_last_request_leaves_no_object(
    daemon_args: dict[str, Any], watch: Path, s3_client: Any, bucket: str, size_bytes: int
) -> None:
    held: list[HeldPut] = []

    def wrap(real: S3MultipartStore) -> HeldPut:
        held.append(HeldPut(real))
        return held[-1]

    path = watch / "clip.ts"
    async with running_daemon(**daemon_args, wrap_store=wrap) as daemon:
        path.write_bytes(content(size_bytes, "clip"))
        async with asyncio.timeout(30):
            await held[0].started.wait()
        record = await daemon.record_for(path)
        assert record is not None
        # What `tailup abort` writes first (tailup.status.abort_stream); its AbortMultipartUpload
        # would come after the completion, when the upload is no more.
        refused = await daemon.checkpoints.inner.set_state(
            record.stream_id,
            StreamState.ABORTED,
            allowed_from=RESUMABLE_STATES,
            error="aborted by the test",
            end_cause=EndCause.OPERATOR,
        )
        assert refused is None
        held[0].release.set()
        await wait_until(
            lambda: record.stream_id not in daemon.supervisor._by_id, "the stream to end"
        )
        assert held[0].landed[:1] == [record.key], "the request went through after the abort"
        ended = await daemon.record_for(path)
    assert ended is not None and ended.state is StreamState.ABORTED
    assert not exists(s3_client, bucket, record.key), "the object no record owns was left"
    assert not exists(s3_client, bucket, metadata_key(record.key))


@pytest.mark.parametrize("how", ["deleted", "replaced"])
async def test_a_file_gone_while_its_put_is_in_flight_keeps_its_object(
    daemon_args: dict[str, Any], watch: Path, s3_client: Any, bucket: str, how: str
) -> None:
    """Not an abort: the file went (deleted, or another recording at its name) while its one
    PutObject was in flight. That request carries every byte the file held, so the object is
    the recording's only copy now and it stays, exact: a local delete (a recorder's own
    rotation, a person) never takes the off-site copy with it. The recording is COMPLETED, with
    its metadata.json (a record owns the object); another file at the name is a recording of
    its own."""
    held: list[HeldPut] = []

    def wrap(real: S3MultipartStore) -> HeldPut:
        held.append(HeldPut(real))
        return held[-1]

    path = watch / "clip.ts"
    data = content(64 * 1024, "clip")
    async with running_daemon(**daemon_args, wrap_store=wrap) as daemon:
        path.write_bytes(data)
        async with asyncio.timeout(30):
            await held[0].started.wait()
        record = await daemon.record_for(path)
        assert record is not None
        path.unlink()
        if how == "replaced":
            path.write_bytes(content(32 * 1024, "the next recording"))
        held[0].release.set()
        await wait_until(
            lambda: record.stream_id not in daemon.supervisor._by_id, "the stream to end"
        )
        assert held[0].landed[:1] == [record.key], "the PutObject went through after the delete"
        ended = await daemon.checkpoints.inner.load(record.stream_id)
        assert ended is not None and ended[0].state is StreamState.COMPLETED, ended
        if how == "replaced":
            # The path's record is the ended one until the next recording's stream takes the
            # name: wait for a completed record of another stream there.
            async def next_recording() -> bool:
                found = await daemon.record_for(path)
                done = found is not None and found.state is StreamState.COMPLETED
                return done and found is not None and found.stream_id != record.stream_id

            await wait_until(next_recording, "the next recording at the name completed")
            nxt = await daemon.record_for(path)
            assert nxt is not None and nxt.stream_id != record.stream_id
            got = s3_client.get_object(Bucket=bucket, Key=nxt.key)["Body"].read()
            assert got == content(32 * 1024, "the next recording")
    got = s3_client.get_object(Bucket=bucket, Key=record.key)["Body"].read()
    assert got == data, "the object that landed is not the recording's bytes"
    assert exists(s3_client, bucket, metadata_key(record.key))
