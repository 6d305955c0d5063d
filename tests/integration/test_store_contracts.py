"""One contract per storage seam, run against every implementation: the in-memory stores used by
fast tests must behave like Redis and a real S3 server (SeaweedFS) in all tailup relies on. Where
two implementations may legitimately differ (a second Complete), each one's answer is pinned."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from tailup.checkpoint import CheckpointStore, MemoryCheckpointStore, RedisCheckpointStore
from tailup.devservers import RedisServer, SeaweedS3
from tailup.errors import NoSuchUpload, StoragePermanentError, StorageUnavailable
from tailup.integrity import crc32_of, multipart_etag
from tailup.memory_stores import MemoryMultipartStore
from tailup.model import LIVE_STATES, PartRecord, StreamRecord, StreamState
from tailup.plan import MiB
from tailup.s3 import MultipartStore, S3MultipartStore

pytestmark = pytest.mark.asyncio


# -- multipart store --


@pytest.fixture(params=["memory", "seaweedfs"])
async def mp_store(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[MultipartStore]:
    if request.param == "memory":
        yield MemoryMultipartStore()
        return
    server: SeaweedS3 = request.getfixturevalue("s3_server")
    bucket: str = request.getfixturevalue("bucket")
    for name, value in server.env().items():
        monkeypatch.setenv(name, value)
    async with S3MultipartStore.connect(
        bucket, endpoint_url=server.endpoint_url, region="us-east-1"
    ) as store:
        yield store


def _key() -> str:
    return f"contract/{uuid.uuid4().hex[:8]}/clip é #1.mp4"


async def _part(store: MultipartStore, key: str, upload_id: str, number: int, body: bytes) -> str:
    return await store.upload_part(key, upload_id, number, body, crc32_of(body))


async def test_multipart_round_trip_and_etag(mp_store: MultipartStore) -> None:
    key = _key()
    first, tail = os.urandom(5 * MiB), os.urandom(1234)
    upload_id = await mp_store.create_upload(key, "video/mp4")
    etags = [await _part(mp_store, key, upload_id, 1, first)]
    etags.append(await _part(mp_store, key, upload_id, 2, tail))
    listed = await mp_store.list_parts(key, upload_id)
    assert [(p.number, p.size) for p in listed] == [(1, 5 * MiB), (2, 1234)]
    await mp_store.complete_upload(
        key, upload_id, [(1, etags[0], crc32_of(first)), (2, etags[1], crc32_of(tail))]
    )
    info = await mp_store.head_object(key)
    assert info is not None and info.size == 5 * MiB + 1234
    assert info.etag.strip('"') == multipart_etag(etags).strip('"')
    assert await mp_store.get_object(key) == first + tail


async def test_short_non_final_part_is_refused_at_complete(mp_store: MultipartStore) -> None:
    key = _key()
    upload_id = await mp_store.create_upload(key, "video/mp4")
    small, tail = os.urandom(1024), os.urandom(10)
    e1 = await _part(mp_store, key, upload_id, 1, small)
    e2 = await _part(mp_store, key, upload_id, 2, tail)
    with pytest.raises(StoragePermanentError) as info:
        await mp_store.complete_upload(
            key, upload_id, [(1, e1, crc32_of(small)), (2, e2, crc32_of(tail))]
        )
    assert info.value.code == "EntityTooSmall"
    await mp_store.abort_upload(key, upload_id)


async def test_unknown_etag_is_refused(mp_store: MultipartStore) -> None:
    key = _key()
    upload_id = await mp_store.create_upload(key, "video/mp4")
    body = os.urandom(100)
    await _part(mp_store, key, upload_id, 1, body)
    with pytest.raises(StoragePermanentError) as info:
        await mp_store.complete_upload(
            key, upload_id, [(1, '"00000000000000000000000000000000"', crc32_of(body))]
        )
    assert info.value.code == "InvalidPart"
    await mp_store.abort_upload(key, upload_id)


async def test_part_sent_twice_completes_with_the_named_version(mp_store: MultipartStore) -> None:
    key = _key()
    upload_id = await mp_store.create_upload(key, "video/mp4")
    old, new = os.urandom(3000), os.urandom(3000)
    await _part(mp_store, key, upload_id, 1, old)
    new_etag = await _part(mp_store, key, upload_id, 1, new)
    await mp_store.complete_upload(key, upload_id, [(1, new_etag, crc32_of(new))])
    assert await mp_store.get_object(key) == new


async def test_wrong_checksum_is_refused_as_retryable_bad_digest(mp_store: MultipartStore) -> None:
    # The stream relies on it: a body damaged on the way is sent again, not a failed stream.
    key = _key()
    upload_id = await mp_store.create_upload(key, "video/mp4")
    body = os.urandom(2000)
    with pytest.raises(StorageUnavailable, match="BadDigest"):
        await mp_store.upload_part(key, upload_id, 1, body, crc32_of(body) ^ 1)
    with pytest.raises(StorageUnavailable, match="BadDigest"):
        await mp_store.put_object(key, body, crc32_of(body) ^ 1, "video/mp4")
    await mp_store.abort_upload(key, upload_id)


async def test_an_old_version_of_a_part_is_listed_and_completes_with_its_own_bytes(
    mp_store: MultipartStore,
) -> None:
    # Resume adopts a part only by an ETag that matches: every version must be listed.
    key = _key()
    upload_id = await mp_store.create_upload(key, "video/mp4")
    old, new = os.urandom(3000), os.urandom(3000)
    old_etag = await _part(mp_store, key, upload_id, 1, old)
    new_etag = await _part(mp_store, key, upload_id, 1, new)
    listed = await mp_store.list_parts(key, upload_id)
    assert sorted((p.number, p.etag, p.size) for p in listed) == sorted(
        [(1, old_etag, 3000), (1, new_etag, 3000)]
    )
    await mp_store.complete_upload(key, upload_id, [(1, old_etag, crc32_of(old))])
    assert await mp_store.get_object(key) == old


async def test_parts_are_listed_by_part_number(mp_store: MultipartStore) -> None:
    key = _key()
    upload_id = await mp_store.create_upload(key, "video/mp4")
    for number in (3, 1, 2):
        await _part(mp_store, key, upload_id, number, os.urandom(100 + number))
    listed = await mp_store.list_parts(key, upload_id)
    assert [(p.number, p.size) for p in listed] == [(1, 101), (2, 102), (3, 103)]
    await mp_store.abort_upload(key, upload_id)


async def test_complete_with_parts_out_of_order_is_refused(mp_store: MultipartStore) -> None:
    key = _key()
    upload_id = await mp_store.create_upload(key, "video/mp4")
    first, tail = os.urandom(5 * MiB), os.urandom(100)
    e1 = await _part(mp_store, key, upload_id, 1, first)
    e2 = await _part(mp_store, key, upload_id, 2, tail)
    with pytest.raises(StoragePermanentError) as info:
        await mp_store.complete_upload(
            key, upload_id, [(2, e2, crc32_of(tail)), (1, e1, crc32_of(first))]
        )
    assert info.value.code == "InvalidPartOrder"
    assert await mp_store.head_object(key) is None
    await mp_store.abort_upload(key, upload_id)


async def test_complete_with_a_wrong_part_crc32_is_refused(mp_store: MultipartStore) -> None:
    # Complete names each part's CRC32 and S3 checks it against the part it holds.
    key = _key()
    upload_id = await mp_store.create_upload(key, "video/mp4")
    first, tail = os.urandom(5 * MiB), os.urandom(100)
    e1 = await _part(mp_store, key, upload_id, 1, first)
    e2 = await _part(mp_store, key, upload_id, 2, tail)
    with pytest.raises(StorageUnavailable, match="BadDigest"):
        await mp_store.complete_upload(
            key, upload_id, [(1, e1, crc32_of(first) ^ 1), (2, e2, crc32_of(tail))]
        )
    assert await mp_store.head_object(key) is None
    # Refused, not consumed: the right CRC32s still complete it.
    await mp_store.complete_upload(
        key, upload_id, [(1, e1, crc32_of(first)), (2, e2, crc32_of(tail))]
    )
    assert await mp_store.get_object(key) == first + tail


# What a second Complete of a completed upload answers. Both are S3 behaviour (AWS answers
# NoSuchUpload once its short grace has passed); the stream handles both: a NoSuchUpload is settled
# by the object's ETag (stream.py), and tests/integration/test_faults.py drives both answers against
# SeaweedFS. Pinned per store, so that neither changes unnoticed.
SECOND_COMPLETE = {"memory": "NoSuchUpload", "seaweedfs": "completes again"}


async def test_complete_twice(mp_store: MultipartStore, request: pytest.FixtureRequest) -> None:
    key = _key()
    upload_id = await mp_store.create_upload(key, "video/mp4")
    first, tail = os.urandom(5 * MiB), os.urandom(1234)
    named = [
        (1, await _part(mp_store, key, upload_id, 1, first), crc32_of(first)),
        (2, await _part(mp_store, key, upload_id, 2, tail), crc32_of(tail)),
    ]
    etag = await mp_store.complete_upload(key, upload_id, named)
    expected = SECOND_COMPLETE[request.node.callspec.params["mp_store"]]
    if expected == "NoSuchUpload":
        with pytest.raises(NoSuchUpload):
            await mp_store.complete_upload(key, upload_id, named)
    else:
        again = await mp_store.complete_upload(key, upload_id, named)
        assert again.strip('"') == etag.strip('"')
    info = await mp_store.head_object(key)
    assert info is not None and info.etag.strip('"') == etag.strip('"')
    assert await mp_store.get_object(key) == first + tail
    assert await mp_store.list_uploads(key) == []


@pytest.mark.parametrize("ended_by", ["abort", "complete"])
async def test_an_ended_upload_has_no_parts_to_list(
    mp_store: MultipartStore, ended_by: str
) -> None:
    # Resume asks ListParts first: NoSuchUpload is what sends it to the object's ETag.
    key = _key()
    upload_id = await mp_store.create_upload(key, "video/mp4")
    body = os.urandom(100)
    etag = await _part(mp_store, key, upload_id, 1, body)
    if ended_by == "abort":
        await mp_store.abort_upload(key, upload_id)
    else:
        await mp_store.complete_upload(key, upload_id, [(1, etag, crc32_of(body))])
    with pytest.raises(NoSuchUpload):
        await mp_store.list_parts(key, upload_id)
    with pytest.raises(NoSuchUpload):
        await _part(mp_store, key, upload_id, 2, body)


async def test_abort_is_final_and_idempotent(mp_store: MultipartStore) -> None:
    key = _key()
    upload_id = await mp_store.create_upload(key, "video/mp4")
    assert upload_id in {u.upload_id for u in await mp_store.list_uploads(key)}
    await mp_store.abort_upload(key, upload_id)
    await mp_store.abort_upload(key, upload_id)  # a vanished upload counts as aborted
    with pytest.raises(NoSuchUpload):
        await _part(mp_store, key, upload_id, 1, b"x")
    assert upload_id not in {u.upload_id for u in await mp_store.list_uploads(key)}


async def test_single_put_and_missing_object(mp_store: MultipartStore) -> None:
    key = _key()
    assert await mp_store.head_object(key) is None
    body = os.urandom(777)
    etag = await mp_store.put_object(key, body, crc32_of(body), "video/mp4")
    info = await mp_store.head_object(key)
    assert info is not None and (info.size, info.etag) == (777, etag)
    assert await mp_store.get_object(key) == body


# -- checkpoint store --


@pytest.fixture(params=["memory", "redis"])
async def cp_store(request: pytest.FixtureRequest) -> AsyncIterator[CheckpointStore]:
    if request.param == "memory":
        yield MemoryCheckpointStore()
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    prefix: str = request.getfixturevalue("key_prefix")
    async with RedisCheckpointStore.connect(server.url, prefix) as store:
        yield store


def _record(**changes: Any) -> StreamRecord:
    base = StreamRecord(
        stream_id=uuid.uuid4().hex[:16],
        path="/rec/cam 1/é.mp4",
        watch_root="/rec",
        bucket="b",
        key="streams/x/é.mp4",
        base_part_size=8 * MiB,
        device=1,
        inode=2,
        created_at="2026-01-01T00:00:00+00:00",
    )
    return base.with_changes(**changes)


def _p(number: int, size: int) -> PartRecord:
    return PartRecord(number, size, number * 7, f'"etag{number}"', "2026-01-01T00:00:00+00:00")


async def test_create_load_and_index(cp_store: CheckpointStore) -> None:
    record = _record()
    await cp_store.create(record)
    loaded = await cp_store.load(record.stream_id)
    assert loaded is not None
    got, parts = loaded
    assert parts == {}
    # A record without a scope is indexed in the store's own (this node's), and says so.
    assert got.to_hash() == record.with_changes(scope=cp_store.scope).to_hash()
    assert record.stream_id in await cp_store.live_stream_ids()
    assert record.stream_id not in await cp_store.ended_stream_ids()
    assert await cp_store.stream_for_path(record.path) == record.stream_id
    assert await cp_store.load("no-such-stream") is None


async def test_get_fields_reads_one_field_of_many_records_in_order(
    cp_store: CheckpointStore,
) -> None:
    done = _record(state=StreamState.COMPLETED)
    live = _record()
    await cp_store.create(done)
    await cp_store.create(live)
    ids = [live.stream_id, "no-such-stream", done.stream_id]
    assert await cp_store.get_fields(ids, "state") == ["uploading", None, "completed"]
    assert await cp_store.get_fields(ids, "no_such_field") == [None, None, None]
    assert await cp_store.get_fields([], "state") == []


OLD = "2020-01-01T00:00:00+00:00"


@pytest.mark.parametrize("how", ["update", "set_state", "commit_part", "drop_parts"])
async def test_every_write_refreshes_last_activity(cp_store: CheckpointStore, how: str) -> None:
    # `tailup status` shows it ("active"), and a stale one is how a hung stream is noticed.
    record = _record(last_activity_at_utc=OLD)
    await cp_store.create(record)
    await cp_store.commit_part(record.stream_id, _p(1, 10))
    await cp_store.update(record.stream_id, last_activity_at_utc=OLD)  # a given value is kept
    loaded = await cp_store.load(record.stream_id)
    assert loaded is not None and loaded[0].last_activity_at_utc == OLD
    before = datetime.now(UTC).replace(microsecond=0)
    if how == "update":
        await cp_store.update(record.stream_id, error="why")
    elif how == "set_state":
        await cp_store.set_state(
            record.stream_id, StreamState.STALLED, allowed_from=LIVE_STATES, error="why"
        )
    elif how == "commit_part":
        await cp_store.commit_part(record.stream_id, _p(2, 10))
    else:
        await cp_store.drop_parts(record.stream_id, [1])
    loaded = await cp_store.load(record.stream_id)
    assert loaded is not None
    assert datetime.fromisoformat(loaded[0].last_activity_at_utc) >= before


async def test_out_of_order_commits_keep_next_part_at_the_lowest_gap(
    cp_store: CheckpointStore,
) -> None:
    record = _record()
    await cp_store.create(record)
    expected = [(2, 1), (1, 3), (4, 3), (3, 5)]
    sizes = {1: 10, 2: 20, 3: 30, 4: 40}
    committed = 0
    for number, next_part in expected:
        await cp_store.commit_part(record.stream_id, _p(number, sizes[number]))
        committed += sizes[number]
        loaded = await cp_store.load(record.stream_id)
        assert loaded is not None
        meta, parts = loaded
        assert meta.next_part_to_upload == next_part
        assert meta.total_bytes_sent == committed
        assert parts[number] == _p(number, sizes[number])


async def test_recommitting_a_part_replaces_it(cp_store: CheckpointStore) -> None:
    record = _record()
    await cp_store.create(record)
    await cp_store.commit_part(record.stream_id, _p(1, 100))
    await cp_store.commit_part(record.stream_id, _p(1, 60))
    loaded = await cp_store.load(record.stream_id)
    assert loaded is not None and loaded[0].total_bytes_sent == 60
    assert loaded[1][1].size == 60


async def test_drop_parts_recomputes_counters(cp_store: CheckpointStore) -> None:
    record = _record()
    await cp_store.create(record)
    for number in (1, 2, 3):
        await cp_store.commit_part(record.stream_id, _p(number, 10 * number))
    await cp_store.drop_parts(record.stream_id, [2, 3])
    loaded = await cp_store.load(record.stream_id)
    assert loaded is not None
    assert set(loaded[1]) == {1}
    assert (loaded[0].next_part_to_upload, loaded[0].total_bytes_sent) == (2, 10)


@pytest.mark.parametrize(
    ("state", "live"),
    [
        (StreamState.STALLED, True),
        (StreamState.FINALIZING, True),
        (StreamState.COMPLETED, False),
        (StreamState.FAILED, True),  # kept with its upload, retried: resumed by the next start
        (StreamState.ABORTED, False),
        (StreamState.SKIPPED, False),
    ],
)
async def test_state_changes_move_streams_in_and_out_of_the_live_set(
    cp_store: CheckpointStore, state: StreamState, live: bool
) -> None:
    record = _record()
    await cp_store.create(record)
    await cp_store.update(record.stream_id, state=state, error="why")
    assert (record.stream_id in await cp_store.live_stream_ids()) is live
    loaded = await cp_store.load(record.stream_id)
    assert loaded is not None and loaded[0].state is state and loaded[0].error == "why"


async def test_new_generation_starts_with_no_parts(cp_store: CheckpointStore) -> None:
    record = _record()
    await cp_store.create(record)
    await cp_store.commit_part(record.stream_id, _p(1, 10))
    await cp_store.update(record.stream_id, state=StreamState.COMPLETED)
    await cp_store.create(record.with_changes(generation=2))
    loaded = await cp_store.load(record.stream_id)
    assert loaded is not None
    assert loaded[1] == {} and loaded[0].generation == 2
    assert record.stream_id in await cp_store.live_stream_ids()


SET_STATE_CASES = [
    # (stored state, new state, allowed from, written)
    (StreamState.UPLOADING, StreamState.FINALIZING, "daemon", True),
    (StreamState.STALLED, StreamState.UPLOADING, "daemon", True),
    (StreamState.ABORTED, StreamState.FINALIZING, "daemon", False),  # `tailup abort` wins
    (StreamState.ABORTED, StreamState.STALLED, "daemon", False),
    (StreamState.ABORTED, StreamState.ABORTED, "daemon", True),  # the same state: written
    (StreamState.UPLOADING, StreamState.ABORTED, "live", True),
    (StreamState.COMPLETED, StreamState.ABORTED, "live", False),  # too late to abort
]


@pytest.mark.parametrize(("stored", "new", "allowed", "written"), SET_STATE_CASES)
async def test_set_state_is_refused_outside_the_allowed_states(
    cp_store: CheckpointStore,
    stored: StreamState,
    new: StreamState,
    allowed: str,
    written: bool,
) -> None:
    record = _record()
    await cp_store.create(record)
    await cp_store.update(record.stream_id, state=stored, error="before")
    allowed_from = (
        LIVE_STATES if allowed == "live" else frozenset(StreamState) - {StreamState.ABORTED}
    )
    refused = await cp_store.set_state(
        record.stream_id, new, allowed_from=allowed_from, error="after"
    )
    loaded = await cp_store.load(record.stream_id)
    assert loaded is not None
    if written:
        assert refused is None
        assert (loaded[0].state, loaded[0].error) == (new, "after")
        assert (record.stream_id in await cp_store.live_stream_ids()) is new.is_live
    else:
        assert refused is stored
        assert (loaded[0].state, loaded[0].error) == (stored, "before")
