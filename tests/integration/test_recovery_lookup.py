"""tailup.recovery.look_up against a real S3 server (SeaweedFS), and the in-memory store the unit
tests use held to the same answers: what S3 holds of a recording Redis has no record of, at the
key its file's name gives now and, when nothing is there, under the start of its stream's keys
(a recording renamed since its upload: tailup.keys.stable_prefix)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import pytest

from tailup.dev import MemoryMultipartStore, SeaweedS3
from tailup.integrity import crc32_of
from tailup.keys import metadata_key
from tailup.recovery import Found, look_up
from tailup.s3 import ListedObject, MultipartStore, S3MultipartStore
from tailup.uploadcard import card_key

pytestmark = pytest.mark.asyncio

SIZE, MTIME_NS = 1234, 1_700_000_000_000_000_000


@pytest.fixture(params=["memory", "seaweedfs"])
async def store(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[MultipartStore]:
    if request.param == "memory":
        yield MemoryMultipartStore()
        return
    server: SeaweedS3 = request.getfixturevalue("s3_server")
    for name, value in server.env().items():
        monkeypatch.setenv(name, value)
    bucket: str = request.getfixturevalue("bucket")
    async with S3MultipartStore.connect(
        bucket, endpoint_url=server.endpoint_url, region="us-east-1"
    ) as s3:
        yield s3


def _stream() -> tuple[str, str]:
    """A stream id and the start of its keys (streams/{stream_id}/{name})."""
    sid = uuid.uuid4().hex[:16]
    return sid, f"streams/{sid}/"


async def _put(store: MultipartStore, key: str, body: bytes) -> None:
    await store.put_object(key, body, crc32_of(body), "application/octet-stream")


async def _completed(store: MultipartStore, key: str, sid: str) -> None:
    """A completed recording: its object and the sidecar tailup writes after it."""
    await _put(store, key, bytes(SIZE))
    sidecar = {"stream_id": sid, "size_bytes": SIZE, "source": {"mtime_ns": MTIME_NS}}
    await _put(store, metadata_key(key), json.dumps(sidecar).encode())


async def test_list_objects_names_the_keys_under_a_prefix_with_their_sizes(
    store: MultipartStore,
) -> None:
    _, prefix = _stream()
    await _put(store, prefix + "a.ts", b"abc")
    await _put(store, prefix + "b é #1.ts", b"")
    await _put(store, prefix.rstrip("/") + "-other/c.ts", b"x")  # not under the prefix
    assert await store.list_objects(prefix, limit=20) == [
        ListedObject(prefix + "a.ts", 3),
        ListedObject(prefix + "b é #1.ts", 0),
    ]
    assert await store.list_objects(prefix, limit=1) == [ListedObject(prefix + "a.ts", 3)]
    assert await store.list_objects(prefix + "nothing/", limit=20) == []


async def test_a_recording_renamed_since_its_upload_is_found_under_its_earlier_name(
    store: MultipartStore,
) -> None:
    sid, prefix = _stream()
    await _completed(store, prefix + "live.ts", sid)
    found = await look_up(store, prefix + "2026-12-07T10.ts", sid, SIZE, MTIME_NS, prefix=prefix)
    assert (found.found, found.key) == (Found.COMPLETED, prefix + "live.ts")
    assert found.sidecar is not None and found.sidecar["stream_id"] == sid
    # Without the prefix (a template that names the file before the stream id): not found.
    alone = await look_up(store, prefix + "2026-12-07T10.ts", sid, SIZE, MTIME_NS)
    assert (alone.found, alone.key) == (Found.NOTHING, "")


async def test_another_version_under_an_earlier_name_spends_the_id(store: MultipartStore) -> None:
    sid, prefix = _stream()
    await _completed(store, prefix + "live.ts", sid)
    found = await look_up(store, prefix + "now.ts", sid, SIZE + 1, MTIME_NS, prefix=prefix)
    assert found.found is Found.OTHER


async def test_a_live_recording_renamed_since_its_upload_began_is_adopted_there(
    store: MultipartStore,
) -> None:
    sid, prefix = _stream()
    old = prefix + "live.ts"
    upload_id = await store.create_upload(old, "video/mp2t")
    try:
        found = await look_up(store, prefix + "now.ts", sid, SIZE, MTIME_NS, prefix=prefix)
        assert (found.found, found.key, found.upload_id) == (Found.IN_FLIGHT, old, upload_id)
    finally:
        await store.abort_upload(old, upload_id)


async def test_nothing_under_the_prefix_is_nothing(store: MultipartStore) -> None:
    sid, prefix = _stream()
    found = await look_up(store, prefix + "now.ts", sid, SIZE, MTIME_NS, prefix=prefix)
    assert (found.found, found.key) == (Found.NOTHING, "")


async def test_an_upload_card_left_behind_is_no_version_of_the_recording(
    store: MultipartStore,
) -> None:
    """Without s3:DeleteObject (which the recommended policy grants on cards) the card of an upload
    stays (tailup.uploadcard): it is not a recording, and spends no id."""
    sid, prefix = _stream()
    await _put(store, card_key(prefix + "live.ts"), b'{"schema": "tailup.upload/1"}')
    found = await look_up(store, prefix + "now.ts", sid, SIZE, MTIME_NS, prefix=prefix)
    assert (found.found, found.key) == (Found.NOTHING, "")
