"""A file under one part goes up in one PutObject, against the real daemon, Redis and S3 server
(SeaweedFS): the PutObject's reply proves the object when its ETag is the MD5 tailup computed of
the body, so no HEAD follows; a reply that does not prove it (a server whose ETags are not MD5s, or
an object that is not the body) is checked by a HEAD, and an object that differs is refused."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from harness import content, object_bytes, running_daemon
from tailup.integrity import crc32_of
from tailup.keys import metadata_key
from tailup.model import StreamState
from tailup.s3 import Body, ObjectInfo, S3MultipartStore

pytestmark = pytest.mark.timeout(120)  # asyncio_mode = "auto" marks the async ones


class Answering:
    """The real store, with the recording's PutObject changed as a server would change it:
    ``opaque`` answers (and HEADs report) an ETag of another kind than the body's MD5 (SSE-KMS,
    other servers); ``tamper`` stores other bytes than those sent (with a CRC32 header that fits
    them, so the real server takes them), as a faulty server or proxy would. Every HEAD of a
    recording's key is counted."""

    def __init__(self, inner: S3MultipartStore, *, opaque: bool = False, tamper: bool = False):
        self.inner = inner
        self.opaque = opaque
        self.tamper = tamper
        self.object_heads: list[str] = []

    @staticmethod
    def opaque_etag(etag: str) -> str:
        return '"' + hashlib.sha1(etag.encode()).hexdigest() + '"'

    async def put_object(
        self, key: str, body: Body, crc32: int, content_type: str, **kwargs: Any
    ) -> str:
        if key.endswith(".metadata.json"):
            return await self.inner.put_object(key, body, crc32, content_type, **kwargs)
        if self.tamper:
            body = bytes(body[:-1]) + bytes([body[-1] ^ 0xFF])
            kwargs["checksum"] = None  # the CRC32 header of the bytes stored
            crc32 = crc32_of(body)
        etag = await self.inner.put_object(key, body, crc32, content_type, **kwargs)
        return self.opaque_etag(etag) if self.opaque else etag

    async def head_object(self, key: str, *, checksum: bool = False) -> ObjectInfo | None:
        info = await self.inner.head_object(key, checksum=checksum)
        if key.endswith(".metadata.json"):
            return info
        self.object_heads.append(key)
        if info is not None and self.opaque:
            return ObjectInfo(info.size, self.opaque_etag(info.etag), info.checksum)
        return info

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def metadata_of(s3_client: Any, bucket: str, key: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(object_bytes(s3_client, bucket, metadata_key(key)))
    return result


async def test_a_put_whose_etag_is_the_body_md5_needs_no_head(
    daemon_args: dict[str, Any], watch: Path, s3_client: Any, bucket: str
) -> None:
    wrappers: list[Answering] = []

    def wrap(real: S3MultipartStore) -> Answering:
        wrappers.append(Answering(real))
        return wrappers[-1]

    path = watch / "seg1.ts"
    data = content(48 * 1024, "segment")
    async with running_daemon(**daemon_args, wrap_store=wrap) as daemon:
        path.write_bytes(data)
        record = await daemon.wait_for_state(path, {StreamState.COMPLETED})
        assert daemon.store.puts == [record.key, metadata_key(record.key)]
    assert wrappers[0].object_heads == [], "the PutObject's reply was the proof"
    assert object_bytes(s3_client, bucket, record.key) == data
    assert record.etag.strip('"') == hashlib.md5(data).hexdigest()
    document = metadata_of(s3_client, bucket, record.key)
    assert document["checksums"]["verified_by"] == "etag"
    assert document["checksums"]["sha256"] == hashlib.sha256(data).hexdigest()


async def test_a_put_whose_etag_is_no_md5_is_checked_by_a_head(
    daemon_args: dict[str, Any], watch: Path, s3_client: Any, bucket: str
) -> None:
    wrappers: list[Answering] = []

    def wrap(real: S3MultipartStore) -> Answering:
        wrappers.append(Answering(real, opaque=True))
        return wrappers[-1]

    path = watch / "seg1.ts"
    data = content(48 * 1024, "segment")
    async with running_daemon(**daemon_args, wrap_store=wrap) as daemon:
        path.write_bytes(data)
        record = await daemon.wait_for_state(path, {StreamState.COMPLETED})
    assert wrappers[0].object_heads == [record.key]
    assert object_bytes(s3_client, bucket, record.key) == data
    # The server's ETag says nothing of the bytes: the CRC32 it reports for the object did.
    assert metadata_of(s3_client, bucket, record.key)["checksums"]["verified_by"] == "checksum"


async def test_an_object_that_is_not_the_body_is_refused_after_its_head(
    daemon_args: dict[str, Any], watch: Path, s3_client: Any, bucket: str
) -> None:
    wrappers: list[Answering] = []

    def wrap(real: S3MultipartStore) -> Answering:
        wrappers.append(Answering(real, tamper=True))
        return wrappers[-1]

    path = watch / "seg1.ts"
    async with running_daemon(**daemon_args, wrap_store=wrap) as daemon:
        path.write_bytes(content(48 * 1024, "segment"))
        record = await daemon.wait_for_state(path, {StreamState.FAILED})
    assert record.key in wrappers[0].object_heads
    assert "does not match what was sent" in record.error and "ETag" in record.error
    with pytest.raises(s3_client.exceptions.ClientError):
        s3_client.head_object(Bucket=bucket, Key=metadata_key(record.key))


async def test_no_put_waits_for_a_100_continue(
    daemon_args: dict[str, Any], watch: Path, s3_client: Any, bucket: str
) -> None:
    """botocore gives a ``bytes`` body (metadata.json) ``Expect: 100-continue``: its headers
    would go alone and the body wait for the server's 100, a round trip more per file."""
    sent: dict[str, str | None] = {}

    def note(request: Any, **_: Any) -> None:
        sent[request.url.rsplit("/", 1)[-1]] = request.headers.get("Expect")

    def wrap(real: S3MultipartStore) -> S3MultipartStore:
        real._s3.meta.events.register("before-send.s3.PutObject", note)
        return real

    path = watch / "seg1.ts"
    async with running_daemon(**daemon_args, wrap_store=wrap) as daemon:
        path.write_bytes(content(48 * 1024, "segment"))
        record = await daemon.wait_for_state(path, {StreamState.COMPLETED})
    assert sent == {"seg1.ts": None, "seg1.ts.metadata.json": None}
    assert json.loads(object_bytes(s3_client, bucket, metadata_key(record.key)))["size_bytes"] == (
        48 * 1024
    )
