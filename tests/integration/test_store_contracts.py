"""One contract per storage seam, run against every implementation: the in-memory stores used by
fast tests must behave like Redis and real S3 servers (SeaweedFS; moto, which emulates AWS;
rclone serve s3, the strictest about parts) in all tailup relies on. Where implementations
differ, each one's answer is pinned (the tables after the fixture), with AWS's own, so that none
changes unnoticed and none is tested for less; docs/s3-servers.md is the matrix they make."""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from tailup.checkpoint import (
    CheckpointStore,
    Claim,
    RedisCheckpointStore,
    RenewResult,
)
from tailup.checksums import (
    Checksum,
    ChecksumAlgorithm,
    ChecksumType,
    PartSum,
    crc_of,
    decode,
    encode,
    object_checksum,
    part_checksum,
    stored_checksum,
)
from tailup.dev import (
    MemoryCheckpointStore,
    MemoryMultipartStore,
    MotoS3,
    RcloneS3,
    RedisServer,
    SeaweedS3,
)
from tailup.errors import (
    ClaimLost,
    KeyTaken,
    NoSuchUpload,
    PartReplaceRefused,
    RecordLost,
    StoragePermanentError,
    StorageUnavailable,
)
from tailup.integrity import crc32_of, multipart_etag
from tailup.model import LIVE_STATES, PartRecord, StreamRecord, StreamState
from tailup.plan import MiB
from tailup.s3 import MultipartStore, S3MultipartStore

pytestmark = pytest.mark.asyncio


# -- multipart store --


def _server_and_bucket(request: pytest.FixtureRequest) -> tuple[SeaweedS3 | MotoS3 | RcloneS3, str]:
    """The server of this test's ``mp_store`` and its bucket (the fixtures', cached per test)."""
    impl = _impl(request)
    if impl == "seaweedfs":
        return request.getfixturevalue("s3_server"), request.getfixturevalue("bucket")
    return request.getfixturevalue(f"{impl}_server"), request.getfixturevalue(f"{impl}_bucket")


@pytest.fixture(params=["memory", "seaweedfs", "moto", "rclone"])
async def mp_store(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[MultipartStore]:
    if request.param == "memory":
        yield MemoryMultipartStore()
        return
    server, bucket = _server_and_bucket(request)
    for name, value in server.env().items():
        monkeypatch.setenv(name, value)
    async with S3MultipartStore.connect(
        bucket, endpoint_url=server.endpoint_url, region="us-east-1"
    ) as store:
        yield store


# -- where the S3 implementations differ ---------------------------------------------------------
# Each table names what every store does; the comment says what AWS S3 does (its documentation).
# The memory store models SeaweedFS, the server the suite ran on first.

# Uploading a part number again: SeaweedFS keeps every upload (ListParts lists each, Complete takes
# the one whose ETag it names); AWS and moto keep only the latest (an older ETag is InvalidPart).
# tailup works with both: resume adopts a listed part only by an ETag whose bytes match the file,
# and Complete always names the ETag of the latest upload (tailup.resume.reconcile_parts).
KEEPS_EVERY_UPLOAD_OF_A_PART = {
    "memory": True,
    "seaweedfs": True,
    "moto": False,
    "rclone": False,
}  # AWS: False
# A part number uploaded again with other bytes: rclone serve s3 has streamed the first upload to
# its backend already and refuses the second (NotImplemented, HTTP 501: PartReplaceRefused); the
# upload goes on with the first. tailup finishes such a recording in a new upload
# (tailup.rules.refusals). The same bytes again are accepted everywhere (a retry).
REPLACES_A_PART = {"memory": True, "seaweedfs": True, "moto": True, "rclone": False}  # AWS: True
# x-amz-checksum-crc32 on UploadPart/PutObject, and each part's ChecksumCRC32 named at Complete:
# AWS and SeaweedFS refuse a wrong one (BadDigest); moto 5 stores it unchecked (a TODO in moto).
# rclone serve s3 1.75 ignores the header too (tailup then verifies by size and its re-read of
# every part before completion: docs/s3-servers.md).
VERIFIES_CHECKSUMS = {
    "memory": True,
    "seaweedfs": True,
    "moto": False,
    "rclone": False,
}  # AWS: True
# Complete naming parts out of order: AWS and SeaweedFS refuse it (InvalidPartOrder); moto 5
# completes the parts in the order named (its order check never advances its previous number).
CHECKS_PART_ORDER = {"memory": True, "seaweedfs": True, "moto": False, "rclone": True}  # AWS: True
# UploadPart to an aborted or completed upload: AWS and SeaweedFS answer NoSuchUpload, which sends
# a stream to resume; moto 5 answers HTTP 500 (a KeyError inside moto), which tailup can only
# retry: a stream whose upload vanished on moto stalls instead of starting a new upload.
PART_TO_AN_ENDED_UPLOAD = {
    "memory": "NoSuchUpload",
    "seaweedfs": "NoSuchUpload",
    "moto": "500",
    "rclone": "NoSuchUpload",
}  # AWS: NoSuchUpload

# What ListMultipartUploads names of an upload's checksum (tailup.recovery adopts an upload with
# its own): AWS names the algorithm and the type, moto 5 the algorithm only, SeaweedFS neither.
LISTS_UPLOAD_CHECKSUM = {
    "memory": ("crc32c", "composite"),
    "seaweedfs": (None, None),
    "moto": ("crc32c", None),
    "rclone": (None, None),
}  # AWS: ("crc32c", "composite")
# EntityTooSmall at Complete for a part under 5 MiB but the last: rclone serve s3 completes it
# (tailup's part plan never makes one: tailup.plan).
ENFORCES_MIN_PART_SIZE = {"memory": True, "seaweedfs": True, "moto": True, "rclone": False}  # AWS
# What HEAD names a multipart object by: AWS, SeaweedFS and moto the MD5 of the part MD5s with
# "-N"; rclone serve s3 the MD5 of all the object's bytes (its Complete answers the "-N" one).
# tailup's check after completion then falls back to the size (ObjectCheck) and `tailup verify`
# to the SHA-256 of every byte.
HEAD_ETAG_OF_A_MULTIPART_OBJECT = {
    "memory": "md5 of part md5s",
    "seaweedfs": "md5 of part md5s",
    "moto": "md5 of part md5s",
    "rclone": "md5 of the bytes",
}  # AWS: md5 of part md5s


def _impl(request: pytest.FixtureRequest) -> str:
    return str(request.node.callspec.params["mp_store"])


async def _part_to_an_ended_upload(
    store: MultipartStore, request: pytest.FixtureRequest, key: str, upload_id: str, body: bytes
) -> None:
    expected = PART_TO_AN_ENDED_UPLOAD[_impl(request)]
    if expected == "NoSuchUpload":
        with pytest.raises(NoSuchUpload):
            await _part(store, key, upload_id, 2, body)
        return
    # Sent once: that answer is the same at every try, and botocore would try 4 times, backing
    # off (seconds).
    server, bucket = _server_and_bucket(request)
    async with S3MultipartStore.connect(
        bucket, endpoint_url=server.endpoint_url, region="us-east-1", max_attempts=1
    ) as once:
        with pytest.raises(StorageUnavailable, match=f"S3 upload part 2: {expected}"):
            await _part(once, key, upload_id, 2, body)


def _key() -> str:
    return f"contract/{uuid.uuid4().hex[:8]}/clip é #1.mp4"


async def _part(store: MultipartStore, key: str, upload_id: str, number: int, body: bytes) -> str:
    return await store.upload_part(key, upload_id, number, body, crc32_of(body))


async def test_multipart_round_trip_and_etag(
    mp_store: MultipartStore, request: pytest.FixtureRequest
) -> None:
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
    if HEAD_ETAG_OF_A_MULTIPART_OBJECT[_impl(request)] == "md5 of part md5s":
        assert info.etag.strip('"') == multipart_etag(etags).strip('"')
    else:
        assert info.etag.strip('"') == hashlib.md5(first + tail).hexdigest()
    assert await mp_store.get_object(key) == first + tail


async def test_short_non_final_part_is_refused_at_complete(
    mp_store: MultipartStore, request: pytest.FixtureRequest
) -> None:
    key = _key()
    upload_id = await mp_store.create_upload(key, "video/mp4")
    small, tail = os.urandom(1024), os.urandom(10)
    e1 = await _part(mp_store, key, upload_id, 1, small)
    e2 = await _part(mp_store, key, upload_id, 2, tail)
    if not ENFORCES_MIN_PART_SIZE[_impl(request)]:
        await mp_store.complete_upload(
            key, upload_id, [(1, e1, crc32_of(small)), (2, e2, crc32_of(tail))]
        )
        assert await mp_store.get_object(key) == small + tail
        return
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


async def test_part_sent_twice_completes_with_the_named_version(
    mp_store: MultipartStore, request: pytest.FixtureRequest
) -> None:
    key = _key()
    upload_id = await mp_store.create_upload(key, "video/mp4")
    old, new = os.urandom(3000), os.urandom(3000)
    old_etag = await _part(mp_store, key, upload_id, 1, old)
    assert await _part(mp_store, key, upload_id, 1, old) == old_etag  # a retry: same bytes
    if not REPLACES_A_PART[_impl(request)]:
        with pytest.raises(PartReplaceRefused, match="NotImplemented") as refused:
            await _part(mp_store, key, upload_id, 1, new)
        assert refused.value.part_number == 1
        # Refused, not broken: the upload completes with the bytes it took.
        await mp_store.complete_upload(key, upload_id, [(1, old_etag, crc32_of(old))])
        assert await mp_store.get_object(key) == old
        return
    new_etag = await _part(mp_store, key, upload_id, 1, new)
    await mp_store.complete_upload(key, upload_id, [(1, new_etag, crc32_of(new))])
    assert await mp_store.get_object(key) == new


async def test_wrong_checksum_is_refused_as_retryable_bad_digest(
    mp_store: MultipartStore, request: pytest.FixtureRequest
) -> None:
    # The stream relies on it: a body damaged on the way is sent again, not a failed stream.
    key = _key()
    upload_id = await mp_store.create_upload(key, "video/mp4")
    body = os.urandom(2000)
    if VERIFIES_CHECKSUMS[_impl(request)]:
        with pytest.raises(StorageUnavailable, match="BadDigest"):
            await mp_store.upload_part(key, upload_id, 1, body, crc32_of(body) ^ 1)
        with pytest.raises(StorageUnavailable, match="BadDigest"):
            await mp_store.put_object(key, body, crc32_of(body) ^ 1, "video/mp4")
    else:  # accepted as sent: the header is stored, never compared with the body
        await mp_store.upload_part(key, upload_id, 1, body, crc32_of(body) ^ 1)
        await mp_store.put_object(key, body, crc32_of(body) ^ 1, "video/mp4")
        assert await mp_store.get_object(key) == body
    await mp_store.abort_upload(key, upload_id)


async def test_an_old_version_of_a_part_is_listed_and_completes_with_its_own_bytes(
    mp_store: MultipartStore, request: pytest.FixtureRequest
) -> None:
    # Resume adopts a part only by an ETag that matches: what is listed is all it can adopt.
    key = _key()
    upload_id = await mp_store.create_upload(key, "video/mp4")
    old, new = os.urandom(3000), os.urandom(3000)
    old_etag = await _part(mp_store, key, upload_id, 1, old)
    if not REPLACES_A_PART[_impl(request)]:  # test_part_sent_twice_completes_with_the_named_...
        await mp_store.abort_upload(key, upload_id)
        return
    new_etag = await _part(mp_store, key, upload_id, 1, new)
    listed = sorted((p.number, p.etag, p.size) for p in await mp_store.list_parts(key, upload_id))
    if KEEPS_EVERY_UPLOAD_OF_A_PART[_impl(request)]:
        assert listed == sorted([(1, old_etag, 3000), (1, new_etag, 3000)])
        await mp_store.complete_upload(key, upload_id, [(1, old_etag, crc32_of(old))])
        assert await mp_store.get_object(key) == old
        return
    # Only the latest upload is kept: the old ETag is gone, the new one completes.
    assert listed == [(1, new_etag, 3000)]
    with pytest.raises(StoragePermanentError) as info:
        await mp_store.complete_upload(key, upload_id, [(1, old_etag, crc32_of(old))])
    assert info.value.code == "InvalidPart"
    await mp_store.complete_upload(key, upload_id, [(1, new_etag, crc32_of(new))])
    assert await mp_store.get_object(key) == new


async def test_parts_are_listed_by_part_number(mp_store: MultipartStore) -> None:
    key = _key()
    upload_id = await mp_store.create_upload(key, "video/mp4")
    for number in (3, 1, 2):
        await _part(mp_store, key, upload_id, number, os.urandom(100 + number))
    listed = await mp_store.list_parts(key, upload_id)
    assert [(p.number, p.size) for p in listed] == [(1, 101), (2, 102), (3, 103)]
    await mp_store.abort_upload(key, upload_id)


async def test_complete_with_parts_out_of_order_is_refused(
    mp_store: MultipartStore, request: pytest.FixtureRequest
) -> None:
    # Two full parts: the order is the only rule broken (moto checks part sizes first).
    key = _key()
    upload_id = await mp_store.create_upload(key, "video/mp4")
    first, second = os.urandom(5 * MiB), os.urandom(5 * MiB)
    e1 = await _part(mp_store, key, upload_id, 1, first)
    e2 = await _part(mp_store, key, upload_id, 2, second)
    reversed_parts = [(2, e2, crc32_of(second)), (1, e1, crc32_of(first))]
    if not CHECKS_PART_ORDER[_impl(request)]:
        await mp_store.complete_upload(key, upload_id, reversed_parts)
        assert await mp_store.get_object(key) == second + first  # in the order named
        return
    with pytest.raises(StoragePermanentError) as info:
        await mp_store.complete_upload(key, upload_id, reversed_parts)
    assert info.value.code == "InvalidPartOrder"
    assert await mp_store.head_object(key) is None
    await mp_store.abort_upload(key, upload_id)


async def test_complete_with_a_wrong_part_crc32_is_refused(
    mp_store: MultipartStore, request: pytest.FixtureRequest
) -> None:
    # Complete names each part's CRC32 and S3 checks it against the part it holds.
    key = _key()
    upload_id = await mp_store.create_upload(key, "video/mp4")
    first, tail = os.urandom(5 * MiB), os.urandom(100)
    e1 = await _part(mp_store, key, upload_id, 1, first)
    e2 = await _part(mp_store, key, upload_id, 2, tail)
    if not VERIFIES_CHECKSUMS[_impl(request)]:  # completes, with the bytes the ETags name
        await mp_store.complete_upload(
            key, upload_id, [(1, e1, crc32_of(first) ^ 1), (2, e2, crc32_of(tail))]
        )
        assert await mp_store.get_object(key) == first + tail
        return
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
SECOND_COMPLETE = {
    "memory": "NoSuchUpload",
    "seaweedfs": "completes again",
    "moto": "completes again",
    "rclone": "NoSuchUpload",
}


async def test_complete_twice(mp_store: MultipartStore, request: pytest.FixtureRequest) -> None:
    key = _key()
    upload_id = await mp_store.create_upload(key, "video/mp4")
    first, tail = os.urandom(5 * MiB), os.urandom(1234)
    named = [
        (1, await _part(mp_store, key, upload_id, 1, first), crc32_of(first)),
        (2, await _part(mp_store, key, upload_id, 2, tail), crc32_of(tail)),
    ]
    etag = await mp_store.complete_upload(key, upload_id, named)
    expected = SECOND_COMPLETE[_impl(request)]
    if expected == "NoSuchUpload":
        with pytest.raises(NoSuchUpload):
            await mp_store.complete_upload(key, upload_id, named)
    else:
        again = await mp_store.complete_upload(key, upload_id, named)
        assert again.strip('"') == etag.strip('"')
    info = await mp_store.head_object(key)
    assert info is not None
    if HEAD_ETAG_OF_A_MULTIPART_OBJECT[_impl(request)] == "md5 of part md5s":
        assert info.etag.strip('"') == etag.strip('"')
    else:  # Complete answered the "-N" ETag, HEAD names the bytes' MD5
        assert info.etag.strip('"') == hashlib.md5(first + tail).hexdigest() != etag.strip('"')
    assert await mp_store.get_object(key) == first + tail
    assert await mp_store.list_uploads(key) == []


@pytest.mark.parametrize("ended_by", ["abort", "complete"])
async def test_an_ended_upload_has_no_parts_to_list(
    mp_store: MultipartStore, request: pytest.FixtureRequest, ended_by: str
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
    await _part_to_an_ended_upload(mp_store, request, key, upload_id, body)


async def test_abort_is_final_and_idempotent(
    mp_store: MultipartStore, request: pytest.FixtureRequest
) -> None:
    key = _key()
    upload_id = await mp_store.create_upload(key, "video/mp4")
    assert upload_id in {u.upload_id for u in await mp_store.list_uploads(key)}
    await mp_store.abort_upload(key, upload_id)
    await mp_store.abort_upload(key, upload_id)  # a vanished upload counts as aborted
    await _part_to_an_ended_upload(mp_store, request, key, upload_id, b"x")
    assert upload_id not in {u.upload_id for u in await mp_store.list_uploads(key)}


async def test_single_put_and_missing_object(mp_store: MultipartStore) -> None:
    key = _key()
    assert await mp_store.head_object(key) is None
    body = os.urandom(777)
    etag = await mp_store.put_object(key, body, crc32_of(body), "video/mp4")
    info = await mp_store.head_object(key)
    assert info is not None and (info.size, info.etag) == (777, etag)
    assert await mp_store.get_object(key) == body


async def test_delete_removes_the_object_and_a_missing_key_counts_as_deleted(
    mp_store: MultipartStore,
) -> None:
    key = _key()
    body = os.urandom(100)
    await mp_store.put_object(key, body, crc32_of(body), "video/mp4")
    await mp_store.delete_object(key)
    assert await mp_store.head_object(key) is None
    await mp_store.delete_object(key)  # as AWS: 204 for a key with no object


# If-None-Match: * on PutObject and CompleteMultipartUpload over an existing object: AWS (since
# 2024), SeaweedFS and moto refuse it (PreconditionFailed: KeyTaken); rclone serve s3 ignores the
# header and writes over the object. A first generation's completion relies on it to never land
# on another recording's object; where it is ignored, the key claim in Redis (tailup.keyclaim)
# is what keeps two recordings of one key apart.
HONOURS_IF_NONE_MATCH = {"memory": True, "seaweedfs": True, "moto": True, "rclone": False}  # AWS


async def test_a_conditional_write_keeps_the_object_there(
    mp_store: MultipartStore, request: pytest.FixtureRequest
) -> None:
    key = _key()
    there = os.urandom(100)
    await mp_store.put_object(key, there, crc32_of(there), "video/mp4")
    body = os.urandom(200)
    upload_id = await mp_store.create_upload(key, "video/mp4")
    named = [(1, await _part(mp_store, key, upload_id, 1, body), crc32_of(body))]
    if not HONOURS_IF_NONE_MATCH[_impl(request)]:
        await mp_store.put_object(key, body, crc32_of(body), "video/mp4", if_none_match=True)
        assert await mp_store.get_object(key) == body
        await mp_store.complete_upload(key, upload_id, named, if_none_match=True)
        assert await mp_store.get_object(key) == body
        return
    with pytest.raises(KeyTaken):
        await mp_store.put_object(key, body, crc32_of(body), "video/mp4", if_none_match=True)
    with pytest.raises(KeyTaken):
        await mp_store.complete_upload(key, upload_id, named, if_none_match=True)
    assert await mp_store.get_object(key) == there
    await mp_store.abort_upload(key, upload_id)


# A refused Complete (InvalidPart): AWS, SeaweedFS and moto keep the upload, to be completed
# right; rclone serve s3 ends it (NoSuchUpload next), and the stream then starts a new one.
KEEPS_THE_UPLOAD_AFTER_A_REFUSED_COMPLETE = {
    "memory": True,
    "seaweedfs": True,
    "moto": True,
    "rclone": False,
}  # AWS: True


async def test_after_a_refused_complete(
    mp_store: MultipartStore, request: pytest.FixtureRequest
) -> None:
    key = _key()
    upload_id = await mp_store.create_upload(key, "video/mp4")
    body = os.urandom(100)
    etag = await _part(mp_store, key, upload_id, 1, body)
    with pytest.raises(StoragePermanentError, match="InvalidPart"):
        await mp_store.complete_upload(key, upload_id, [(1, '"' + "0" * 32 + '"', crc32_of(body))])
    if KEEPS_THE_UPLOAD_AFTER_A_REFUSED_COMPLETE[_impl(request)]:
        assert [p.etag for p in await mp_store.list_parts(key, upload_id)] == [etag]
        await mp_store.complete_upload(key, upload_id, [(1, etag, crc32_of(body))])
        assert await mp_store.get_object(key) == body
        return
    with pytest.raises(NoSuchUpload):
        await mp_store.list_parts(key, upload_id)


async def test_objects_are_listed_by_prefix_and_deleted(mp_store: MultipartStore) -> None:
    """--rpo's tail segments (tailup.rpo): found by a LIST of their prefix (and nothing
    beside it), deleted one by one."""
    prefix = _key() + ".tailup/up/"
    bodies = {prefix + "tail.b": b"bb", prefix + "tail.a": b"a", prefix + "x/tail.c": b"ccc"}
    for key, body in bodies.items():
        await mp_store.put_object(key, body, crc32_of(body), "application/octet-stream")
    # Beside the prefix, not under it. (Not at prefix[:-1] itself: rclone serve s3 on a local
    # folder cannot hold a key that is also a folder of other keys.)
    beside = prefix[:-1] + ".ts"
    await mp_store.put_object(beside, b"beside", crc32_of(b"beside"), "video/mp2t")
    listed = await mp_store.list_objects(prefix)
    assert sorted((o.key, o.size) for o in listed) == sorted((k, len(b)) for k, b in bodies.items())
    await mp_store.delete_object(prefix + "tail.a")
    assert sorted(o.key for o in await mp_store.list_objects(prefix)) == [
        prefix + "tail.b",
        prefix + "x/tail.c",
    ]
    assert await mp_store.head_object(beside) is not None


# A FULL_OBJECT upload's whole-object checksum named at Complete: AWS and SeaweedFS compare it
# with the one they combine from the parts and refuse a wrong one (BadDigest); moto 5 keeps what
# it is sent.
CHECKS_OBJECT_CHECKSUM = {
    "memory": True,
    "seaweedfs": True,
    "moto": False,
    "rclone": False,
}  # AWS: True
# What HEAD reports for it afterwards: the whole-object checksum, except moto 5's CRC32C, which is
# another value (tailup then verifies by the ETag, which moto makes as AWS does).
# rclone serve s3 reports none (tailup then verifies by size: ObjectCheck).
REPORTS_OBJECT_CHECKSUM = {
    "memory": "all",
    "seaweedfs": "all",
    "moto": "crc32 crc64nvme",
    "rclone": "none",
}


@pytest.mark.parametrize("algorithm", ["crc32", "crc32c", "crc64nvme"])
async def test_full_object_checksum_is_checked_at_complete_and_reported(
    mp_store: MultipartStore, request: pytest.FixtureRequest, algorithm: str
) -> None:
    alg = ChecksumAlgorithm(algorithm)
    bodies = [os.urandom(5 * MiB), os.urandom(4321)]
    sums = [part_checksum(alg, crc32_of(b), stored_checksum(alg, b)) for b in bodies]
    whole = object_checksum(
        alg,
        ChecksumType.FULL_OBJECT,
        [PartSum(len(b), s) for b, s in zip(bodies, sums, strict=True)],
    )
    # What the combine makes is the CRC of the object's bytes, not of the parts' checksums.
    assert whole.value == encode(alg, crc_of(alg, b"".join(bodies)))
    wrong = Checksum(alg, encode(alg, decode(whole.value) ^ 1))

    async def upload(key: str) -> tuple[str, list[tuple[int, str, int]]]:
        upload_id = await mp_store.create_upload(
            key, "video/mp4", checksum=alg, checksum_type=ChecksumType.FULL_OBJECT
        )
        named = []
        for number, (body, checksum) in enumerate(zip(bodies, sums, strict=True), start=1):
            etag = await mp_store.upload_part(
                key, upload_id, number, body, crc32_of(body), checksum=checksum
            )
            named.append((number, etag, crc32_of(body)))
        return upload_id, named

    refused_key = _key()
    upload_id, named = await upload(refused_key)
    if CHECKS_OBJECT_CHECKSUM[_impl(request)]:
        with pytest.raises(StorageUnavailable, match="BadDigest"):
            await mp_store.complete_upload(
                refused_key, upload_id, named, checksums=sums, object_checksum=wrong
            )
        assert await mp_store.head_object(refused_key) is None
        await mp_store.abort_upload(refused_key, upload_id)
    key = _key()
    upload_id, named = await upload(key)
    await mp_store.complete_upload(key, upload_id, named, checksums=sums, object_checksum=whole)
    info = await mp_store.head_object(key, checksum=True)
    assert info is not None
    reported = REPORTS_OBJECT_CHECKSUM[_impl(request)]
    if reported == "all" or algorithm in reported.split():
        assert info.checksum == whole
    elif reported == "none":
        assert info.checksum is None
    else:
        assert info.checksum is not None and info.checksum != whole
    assert await mp_store.get_object(key) == b"".join(bodies)


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


# -- fleet: lost records, partial records, ended index, scopes, claims, node leases (issue 9) --
# Where a test must reach below the Protocol (Redis lost a key, another node shares the data),
# the helpers below do it per implementation.


def _memory(store: CheckpointStore) -> MemoryCheckpointStore:
    assert isinstance(store, MemoryCheckpointStore)
    return store


async def _lose(store: CheckpointStore, stream_id: str) -> None:
    """Redis lost the stream's record and parts (FLUSHALL, a restart, an eviction); its index
    entries are left as they were."""
    if isinstance(store, RedisCheckpointStore):
        keys = store.keys
        await store.client.delete(keys.stream_meta(stream_id), keys.stream_parts(stream_id))
    else:
        _memory(store).meta.pop(stream_id, None)
        _memory(store).parts.pop(stream_id, None)


async def _stored_anything(store: CheckpointStore, stream_id: str) -> bool:
    """Whether any key of the stream's record or parts exists (not only a whole record)."""
    if isinstance(store, RedisCheckpointStore):
        keys = store.keys
        found = await store.client.exists(keys.stream_meta(stream_id), keys.stream_parts(stream_id))
        return int(found) > 0
    memory = _memory(store)
    return stream_id in memory.meta or stream_id in memory.parts


async def _write_partial(store: CheckpointStore, stream_id: str, fields: dict[str, str]) -> None:
    """A record of which only ``fields`` exist (what a write after a loss once left)."""
    if isinstance(store, RedisCheckpointStore):
        await store.client.hset(
            store.keys.stream_meta(stream_id), mapping={k: v for k, v in fields.items()}
        )
    else:
        _memory(store).meta[stream_id] = dict(fields)


async def _drop_lease(store: CheckpointStore, stream_id: str) -> None:
    """The stream's lease vanished (expired: its holder is presumed dead, or Redis lost it)."""
    if isinstance(store, RedisCheckpointStore):
        await store.client.delete(store.keys.stream_lease(stream_id))
    else:
        _memory(store).leases.pop(stream_id, None)


async def _lease(store: CheckpointStore, stream_id: str) -> str | None:
    if isinstance(store, RedisCheckpointStore):
        value = await store.client.get(store.keys.stream_lease(stream_id))
        return None if value is None else str(value)
    return _memory(store).leases.get(stream_id)


async def _drop_node_lease(store: CheckpointStore, node_id: str) -> None:
    if isinstance(store, RedisCheckpointStore):
        await store.client.delete(store.keys.node_lease(node_id))
    else:
        _memory(store).leases.pop("node:" + node_id, None)


def _peer(store: CheckpointStore, *, keep_records_s: float | None = None) -> CheckpointStore:
    """Another daemon's store on the same data (its own held claims, no cached scopes), with
    the same --keep-records unless told another."""
    if isinstance(store, RedisCheckpointStore):
        keep_s = store.keep_records_s if keep_records_s is None else keep_records_s
        return RedisCheckpointStore(
            store.client, store.keys, scope=store.scope, keep_records_s=keep_s
        )
    memory = _memory(store)
    keep_s = memory.keep_records_s if keep_records_s is None else keep_records_s
    other = MemoryCheckpointStore(scope=memory.scope, keep_records_s=keep_s)
    other.expires_at = memory.expires_at
    other.meta, other.parts, other.lives, other.ended = (
        memory.meta,
        memory.parts,
        memory.lives,
        memory.ended,
    )
    other.paths, other.object_keys = memory.paths, memory.object_keys
    other.leases, other.fences = memory.leases, memory.fences
    other.key_numbers = memory.key_numbers
    return other


async def _snapshot(
    store: CheckpointStore, stream_id: str
) -> tuple[dict[str, str], dict[int, PartRecord]]:
    loaded = await store.load(stream_id)
    assert loaded is not None
    return loaded[0].to_hash(), loaded[1]


async def test_create_new_writes_a_new_record(cp_store: CheckpointStore) -> None:
    record = _record()
    assert await cp_store.create_new(record) is True
    loaded = await cp_store.load(record.stream_id)
    assert loaded is not None and loaded[0].key == record.key and loaded[1] == {}
    assert record.stream_id in await cp_store.live_stream_ids()
    assert await cp_store.stream_for_path(record.path) == record.stream_id


async def test_create_new_changes_nothing_when_a_record_exists(cp_store: CheckpointStore) -> None:
    record = _record()
    await cp_store.create(record)
    await cp_store.commit_part(record.stream_id, _p(1, 10))
    await cp_store.update(record.stream_id, state=StreamState.COMPLETED)
    before = await _snapshot(cp_store, record.stream_id)
    other = record.with_changes(
        path="/rec/other.mp4", key="streams/x/other.mp4", generation=2, state=StreamState.UPLOADING
    )
    assert await cp_store.create_new(other) is False
    assert await _snapshot(cp_store, record.stream_id) == before
    assert await cp_store.stream_for_path(other.path) is None
    assert await cp_store.stream_for_path(record.path) == record.stream_id
    assert record.stream_id not in await cp_store.live_stream_ids()
    assert await cp_store.ended_stream_ids() == [record.stream_id]
    assert await cp_store.reserve_key(other.key, "another-stream") is None  # not claimed


@pytest.mark.parametrize("state", [StreamState.UPLOADING, StreamState.COMPLETED])
async def test_restore_writes_record_and_parts_back_after_a_loss(
    cp_store: CheckpointStore, state: StreamState
) -> None:
    record = _record()
    await cp_store.create(record)
    for number, size in ((1, 10), (2, 20), (4, 40)):
        await cp_store.commit_part(record.stream_id, _p(number, size))
    await cp_store.update(record.stream_id, state=state, note="kept")
    loaded = await cp_store.load(record.stream_id)
    assert loaded is not None
    held, parts = loaded
    await _lose(cp_store, record.stream_id)
    assert await cp_store.load(record.stream_id) is None
    await cp_store.restore(held, parts)
    assert await _snapshot(cp_store, record.stream_id) == (held.to_hash(), parts)
    assert (record.stream_id in await cp_store.live_stream_ids()) is state.is_resumable
    assert (record.stream_id in await cp_store.ended_stream_ids()) is not state.is_resumable
    assert await cp_store.stream_for_path(record.path) == record.stream_id
    # The restored record takes writes again.
    await cp_store.commit_part(record.stream_id, _p(3, 30))
    again = await cp_store.load(record.stream_id)
    assert again is not None
    assert (again[0].next_part_to_upload, again[0].total_bytes_sent) == (5, 100)


async def test_restore_replaces_a_partial_record_whole(cp_store: CheckpointStore) -> None:
    record = _record()
    await cp_store.create(record)
    await cp_store.commit_part(record.stream_id, _p(1, 10))
    held = await _snapshot(cp_store, record.stream_id)
    await _lose(cp_store, record.stream_id)
    await _write_partial(cp_store, record.stream_id, {"next_part_to_upload": "9", "junk": "x"})
    await cp_store.restore(StreamRecord.from_hash(held[0]), held[1])
    assert await _snapshot(cp_store, record.stream_id) == held


LOST_WRITES = ["commit_part", "update", "update_state", "set_state", "drop_parts"]


async def _write(store: CheckpointStore, stream_id: str, how: str) -> None:
    if how == "commit_part":
        await store.commit_part(stream_id, _p(3, 30))
    elif how == "update":
        await store.update(stream_id, error="after")
    elif how == "update_state":
        await store.update(stream_id, state=StreamState.COMPLETED)
    elif how == "set_state":
        await store.set_state(stream_id, StreamState.FINALIZING, allowed_from=LIVE_STATES)
    elif how == "drop_parts":
        await store.drop_parts(stream_id, [1])
    elif how == "check":  # the guarded write just before a completion (stream.finalize)
        await store.update(stream_id)
    else:
        raise AssertionError(how)


@pytest.mark.parametrize("how", LOST_WRITES)
async def test_a_write_to_a_lost_record_raises_record_lost_and_writes_nothing(
    cp_store: CheckpointStore, how: str
) -> None:
    record = _record()
    await cp_store.create(record)
    await cp_store.commit_part(record.stream_id, _p(1, 10))
    await cp_store.commit_part(record.stream_id, _p(2, 20))
    await _lose(cp_store, record.stream_id)
    live_before = await cp_store.live_stream_ids()
    with pytest.raises(RecordLost):
        await _write(cp_store, record.stream_id, how)
    # Nothing half rebuilt: no meta hash, no parts hash, no field of either.
    assert not await _stored_anything(cp_store, record.stream_id)
    assert await cp_store.load(record.stream_id) is None
    assert await cp_store.get_field(record.stream_id, "next_part_to_upload") is None
    assert await cp_store.live_stream_ids() == live_before
    assert record.stream_id not in await cp_store.ended_stream_ids()


PARTIAL_RECORDS = [
    pytest.param(
        {
            "next_part_to_upload": "3",
            "total_bytes_sent": "30",
            "last_activity_at_utc": "2026-12-01T10:00:00+00:00",
        },
        id="counters a commit half rebuilt",
    ),
    pytest.param({"state": "completed", "error": ""}, id="a state and an error"),
    pytest.param(
        {"stream_id": "s", "path": "/rec/a.mp4", "base_part_size": "many"}, id="does not parse"
    ),
    pytest.param(
        {"stream_id": "s", "path": "/rec/a.mp4", "base_part_size": "8388608"},
        id="required fields only",
    ),
]


@pytest.mark.parametrize("fields", PARTIAL_RECORDS)
async def test_a_partial_record_loads_as_none_and_is_skipped(
    cp_store: CheckpointStore, fields: dict[str, str]
) -> None:
    first, last = _record(), _record()
    await cp_store.create(first)
    await cp_store.create(last)
    partial = uuid.uuid4().hex[:16]
    await _write_partial(cp_store, partial, fields)
    assert await cp_store.load(partial) is None
    records = await cp_store.load_records([last.stream_id, partial, "never-was", first.stream_id])
    assert [r.stream_id for r in records] == [last.stream_id, first.stream_id]
    assert await cp_store.load_records([]) == []


async def test_create_new_replaces_a_partial_record(cp_store: CheckpointStore) -> None:
    """A few fields left by a write after Redis lost the record must not block the recording's
    upload forever (create_new would say "there already")."""
    record = _record()
    await _write_partial(cp_store, record.stream_id, {"next_part_to_upload": "3", "junk": "x"})
    assert await cp_store.create_new(record) is True
    loaded = await cp_store.load(record.stream_id)
    assert loaded is not None and loaded[0].path == record.path
    assert "junk" not in loaded[0].extra
    assert await cp_store.create_new(record) is False, "a whole record is kept"


class _Clock:
    """The stores' clock for ended-index scores (their modules' ``time``)."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    import tailup.checkpoint.index
    import tailup.dev.memory_checkpoints

    fake = _Clock()
    monkeypatch.setattr(tailup.checkpoint.index, "time", fake)
    monkeypatch.setattr(tailup.dev.memory_checkpoints, "time", fake)
    return fake


async def _ended_at(
    store: CheckpointStore, clock: _Clock, moments: list[float]
) -> list[StreamRecord]:
    records = []
    for moment in moments:
        record = _record()
        await store.create(record)
        clock.now = moment
        assert (
            await store.set_state(record.stream_id, StreamState.COMPLETED, allowed_from=LIVE_STATES)
            is None
        )
        records.append(record)
    return records


@pytest.mark.parametrize(
    ("limit", "offset", "picked"),
    [
        pytest.param(100, 0, [4, 3, 2, 1, 0], id="all"),
        pytest.param(2, 0, [4, 3], id="the first page"),
        pytest.param(2, 2, [2, 1], id="the second page"),
        pytest.param(10, 4, [0], id="the last, short page"),
        pytest.param(3, 5, [], id="past the end"),
        pytest.param(1, 0, [4], id="the latest"),
        pytest.param(0, 0, [], id="limit 0"),
        pytest.param(0, 2, [], id="limit 0 at an offset"),
    ],
)
async def test_ended_stream_ids_newest_first_with_limit_and_offset(
    cp_store: CheckpointStore, clock: _Clock, limit: int, offset: int, picked: list[int]
) -> None:
    # Ended out of creation order: the end time decides.
    moments = [3000.0, 1000.0, 5000.0, 2000.0, 4000.0]
    records = await _ended_at(cp_store, clock, moments)
    by_end = [r.stream_id for _, r in sorted(zip(moments, records, strict=True))]
    got = await cp_store.ended_stream_ids(limit=limit, offset=offset)
    assert got == [by_end[i] for i in picked]
    assert await cp_store.count_ended() == 5


async def test_trim_ended_drops_old_index_entries_only(
    cp_store: CheckpointStore, clock: _Clock
) -> None:
    records = await _ended_at(cp_store, clock, [1000.0, 2000.0, 3000.0, 4000.0])
    live = _record()
    await cp_store.create(live)
    assert await cp_store.trim_ended(2500.0) == 2
    assert await cp_store.count_ended() == 2
    assert await cp_store.ended_stream_ids() == [records[3].stream_id, records[2].stream_id]
    assert await cp_store.trim_ended(2500.0) == 0  # nothing left to drop
    # The records themselves expire by themselves (or never): they are still there.
    assert await cp_store.load(records[0].stream_id) is not None
    assert live.stream_id in await cp_store.live_stream_ids()
    assert await cp_store.trim_ended(10_000.0) == 2
    assert (await cp_store.count_ended(), await cp_store.ended_stream_ids()) == (0, [])


async def test_state_changes_move_a_stream_between_live_and_ended(
    cp_store: CheckpointStore, clock: _Clock
) -> None:
    record = _record()
    sid = record.stream_id

    async def where() -> tuple[bool, bool, int]:
        live = sid in await cp_store.live_stream_ids()
        ended = sid in await cp_store.ended_stream_ids()
        return live, ended, await cp_store.count_ended()

    await cp_store.create(record)
    assert await where() == (True, False, 0)
    await cp_store.set_state(sid, StreamState.FINALIZING, allowed_from=LIVE_STATES)
    assert await where() == (True, False, 0)
    await cp_store.set_state(sid, StreamState.COMPLETED, allowed_from=LIVE_STATES)
    assert await where() == (False, True, 1)
    # Grew after completion: uploaded again, live again, no longer listed as ended.
    await cp_store.set_state(sid, StreamState.UPLOADING, allowed_from={StreamState.COMPLETED})
    assert await where() == (True, False, 0)
    await cp_store.update(sid, state=StreamState.FAILED)  # kept live: retried
    assert await where() == (True, False, 0)
    clock.now = 7000.0
    await cp_store.update(sid, state=StreamState.ABORTED)
    assert await where() == (False, True, 1)
    # A new generation of an ended stream is live again.
    await cp_store.create(record.with_changes(generation=2))
    assert await where() == (True, False, 0)


SHARE = "share:nas"
OTHER_NODE = "node:other-host"


async def test_scopes_never_see_each_others_streams(cp_store: CheckpointStore) -> None:
    mine = _record(path="/rec/cam1.mp4", watch_root="/rec")
    theirs = _record(path="/rec/cam1.mp4", watch_root="/rec", scope=OTHER_NODE)
    shared = _record(path="/mnt/nas/site/cam1.mp4", watch_root="/mnt/nas", scope=SHARE)
    for record in (mine, theirs, shared):
        await cp_store.create(record)
    assert await cp_store.live_stream_ids() == [mine.stream_id]
    assert await cp_store.live_stream_ids(OTHER_NODE) == [theirs.stream_id]
    assert await cp_store.live_stream_ids(SHARE) == [shared.stream_id]
    # One absolute path in two nodes' folders: each node finds its own recording.
    assert await cp_store.stream_for_path("/rec/cam1.mp4") == mine.stream_id
    assert await cp_store.stream_for_path("/rec/cam1.mp4", OTHER_NODE) == theirs.stream_id
    assert await cp_store.stream_for_path("/rec/cam1.mp4", SHARE) is None
    # A shared folder's files are named by their path below it.
    assert await cp_store.stream_for_path("site/cam1.mp4", SHARE) == shared.stream_id
    assert await cp_store.stream_for_path("/mnt/nas/site/cam1.mp4", SHARE) is None
    assert await cp_store.stream_for_path("site/cam1.mp4") is None
    # State changes, even by another daemon that never saw the record, stay in its scope.
    peer = _peer(cp_store)
    await peer.set_state(shared.stream_id, StreamState.COMPLETED, allowed_from=LIVE_STATES)
    await peer.update(theirs.stream_id, state=StreamState.ABORTED)
    assert await cp_store.live_stream_ids(SHARE) == []
    assert await cp_store.ended_stream_ids(SHARE) == [shared.stream_id]
    assert await cp_store.ended_stream_ids(OTHER_NODE) == [theirs.stream_id]
    assert await cp_store.ended_stream_ids() == []
    assert await cp_store.live_stream_ids() == [mine.stream_id]
    assert (await cp_store.count_ended(SHARE), await cp_store.count_ended()) == (1, 0)
    # Trimming one scope leaves the others alone.
    assert await cp_store.trim_ended(time.time() + 60, SHARE) == 1
    assert await cp_store.ended_stream_ids(OTHER_NODE) == [theirs.stream_id]


async def test_find_stream_ids_by_prefix_in_the_live_set_and_the_ended_index(
    cp_store: CheckpointStore,
) -> None:
    base = uuid.uuid4().hex[:8]
    live = _record(stream_id=base + "00000001")
    ended = _record(stream_id=base + "00000002", state=StreamState.COMPLETED)
    other = _record(stream_id=base + "10000003", state=StreamState.ABORTED)
    shared = _record(stream_id=base + "00000004", scope=SHARE, watch_root="/mnt/nas")
    # Glob characters in an id are matched literally, not as a pattern.
    odd = _record(stream_id=f"{base}*?[x]\\z")
    for record in (live, ended, other, shared, odd):
        await cp_store.create(record)
    assert await cp_store.find_stream_ids(base + "0") == [live.stream_id, ended.stream_id]
    assert await cp_store.find_stream_ids(base) == sorted(
        r.stream_id for r in (live, ended, other, odd)
    )
    assert await cp_store.find_stream_ids(ended.stream_id) == [ended.stream_id]
    assert await cp_store.find_stream_ids(base + "0", SHARE) == [shared.stream_id]
    assert await cp_store.find_stream_ids(f"{base}*") == [odd.stream_id]
    assert await cp_store.find_stream_ids(f"{base}*?[x]") == [odd.stream_id]
    assert await cp_store.find_stream_ids(base + "9") == []


async def test_a_rename_in_a_shared_folder_moves_its_path_entry(cp_store: CheckpointStore) -> None:
    shared = _record(path="/mnt/nas/live.ts", watch_root="/mnt/nas", scope=SHARE)
    await cp_store.create(shared)
    await _peer(cp_store).update(shared.stream_id, path="/mnt/nas/2026-12-01T10.ts")
    assert await cp_store.stream_for_path("2026-12-01T10.ts", SHARE) == shared.stream_id
    assert await cp_store.stream_for_path("2026-12-01T10.ts") is None
    await cp_store.forget_path("live.ts", shared.stream_id, SHARE)
    assert await cp_store.stream_for_path("live.ts", SHARE) is None
    assert await cp_store.stream_for_path("2026-12-01T10.ts", SHARE) == shared.stream_id


# Claims: node A uploads a shared folder's recording; B watches the same folder.

A_NODE, B_NODE, TTL = "node-a", "node-b", 30.0


async def _claimed(
    store: CheckpointStore,
) -> tuple[StreamRecord, CheckpointStore, Claim]:
    record = _record(path="/mnt/nas/cam1.mp4", watch_root="/mnt/nas", scope=SHARE)
    await store.create(record)
    await store.commit_part(record.stream_id, _p(1, 10))
    claim = await store.claim(record.stream_id, A_NODE, TTL)
    assert isinstance(claim, Claim)
    return record, _peer(store), claim


async def test_a_claim_is_held_by_one_node(cp_store: CheckpointStore) -> None:
    record, b, claim = await _claimed(cp_store)
    sid = record.stream_id
    assert claim.value == f"{A_NODE}|{claim.fence}"
    assert await _lease(cp_store, sid) == claim.value
    assert await b.claim(sid, B_NODE, TTL) == claim.value
    assert sid not in b.held_claims()
    assert await cp_store.claim(sid, A_NODE, TTL) == claim  # kept, same fence
    assert sid in cp_store.held_claims()
    # The holder's writes pass.
    await cp_store.commit_part(sid, _p(2, 20))
    await cp_store.update(sid, error="a")
    assert await cp_store.set_state(sid, StreamState.FINALIZING, allowed_from=LIVE_STATES) is None
    await cp_store.drop_parts(sid, [2])
    assert await cp_store.renew_claim(sid, TTL) is RenewResult.RENEWED
    loaded = await cp_store.load(sid)
    assert loaded is not None
    assert (loaded[0].state, loaded[0].error, set(loaded[1])) == (
        StreamState.FINALIZING,
        "a",
        {1},
    )


async def _taken_over(store: CheckpointStore) -> tuple[StreamRecord, CheckpointStore, Claim]:
    """A is presumed dead (its lease expired) and B took the recording over."""
    record, b, old = await _claimed(store)
    await _drop_lease(store, record.stream_id)
    new = await b.claim(record.stream_id, B_NODE, TTL)
    assert isinstance(new, Claim)
    assert new.fence > old.fence
    assert new.value == f"{B_NODE}|{new.fence}"
    return record, b, new


@pytest.mark.parametrize("how", [*LOST_WRITES, "check"])
async def test_a_stale_holder_s_write_raises_claim_lost_and_changes_nothing(
    cp_store: CheckpointStore, how: str
) -> None:
    record, _b, new = await _taken_over(cp_store)
    before = await _snapshot(cp_store, record.stream_id)
    with pytest.raises(ClaimLost):
        await _write(cp_store, record.stream_id, how)
    assert await _snapshot(cp_store, record.stream_id) == before
    assert await _lease(cp_store, record.stream_id) == new.value
    assert record.stream_id in await cp_store.live_stream_ids(SHARE)


async def test_every_write_of_a_stale_holder_raises_claim_lost(cp_store: CheckpointStore) -> None:
    # Parts are committed concurrently: after the first refusal, the stale node's other
    # commits (and its completion check) must be refused as well, never written unfenced.
    record, _b, new = await _taken_over(cp_store)
    before = await _snapshot(cp_store, record.stream_id)
    passed = []
    for how in [*LOST_WRITES, "check"]:
        try:
            await _write(cp_store, record.stream_id, how)
        except ClaimLost:
            continue
        passed.append(how)
    assert passed == [], f"a stale holder wrote over the new one with {passed}"
    assert await _snapshot(cp_store, record.stream_id) == before
    assert await _lease(cp_store, record.stream_id) == new.value


async def test_a_stale_holder_told_taken_by_renew_writes_nothing(
    cp_store: CheckpointStore,
) -> None:
    # The renewal loop learns first; the stream is stopped after, while its commits may run.
    record, _b, _new = await _taken_over(cp_store)
    before = await _snapshot(cp_store, record.stream_id)
    assert await cp_store.renew_claim(record.stream_id, TTL) is RenewResult.TAKEN
    with pytest.raises(ClaimLost):
        await cp_store.commit_part(record.stream_id, _p(2, 20))
    assert await _snapshot(cp_store, record.stream_id) == before


async def test_the_new_holder_s_writes_pass(cp_store: CheckpointStore) -> None:
    record, b, new = await _taken_over(cp_store)
    sid = record.stream_id
    with pytest.raises(ClaimLost):
        await cp_store.commit_part(sid, _p(2, 999))
    await b.commit_part(sid, _p(2, 20))
    await b.update(sid, error="b")
    assert await b.set_state(sid, StreamState.FINALIZING, allowed_from=LIVE_STATES) is None
    assert await b.renew_claim(sid, TTL) is RenewResult.RENEWED
    loaded = await b.load(sid)
    assert loaded is not None
    assert (loaded[0].state, loaded[0].error, loaded[0].total_bytes_sent) == (
        StreamState.FINALIZING,
        "b",
        30,
    )
    assert loaded[1][2] == _p(2, 20)
    assert await cp_store.renew_claim(sid, TTL) is RenewResult.TAKEN
    assert await _lease(cp_store, sid) == new.value


async def test_a_vanished_lease_is_taken_back_by_renew(cp_store: CheckpointStore) -> None:
    record, b, claim = await _claimed(cp_store)
    await _drop_lease(cp_store, record.stream_id)  # Redis restarted, or A was slow to renew
    assert await cp_store.renew_claim(record.stream_id, TTL) is RenewResult.RESTORED
    assert await _lease(cp_store, record.stream_id) == claim.value
    assert await b.claim(record.stream_id, B_NODE, TTL) == claim.value
    await cp_store.commit_part(record.stream_id, _p(2, 20))


@pytest.mark.parametrize("how", [*LOST_WRITES, "check"])
async def test_a_vanished_lease_is_taken_back_by_a_guarded_write(
    cp_store: CheckpointStore, how: str
) -> None:
    record, b, claim = await _claimed(cp_store)
    await _drop_lease(cp_store, record.stream_id)
    await _write(cp_store, record.stream_id, how)
    assert await _lease(cp_store, record.stream_id) == claim.value
    assert await b.claim(record.stream_id, B_NODE, TTL) == claim.value
    if isinstance(cp_store, RedisCheckpointStore):  # taken back with a TTL, not for ever
        pttl = await cp_store.client.pttl(cp_store.keys.stream_lease(record.stream_id))
        assert 0 < pttl <= TTL * 1000


async def test_a_vanished_lease_with_a_new_fence_is_not_taken_back(
    cp_store: CheckpointStore,
) -> None:
    # B took it over and released it since: the fence moved on, A's lease is not A's to revive.
    record, b, _new = await _taken_over(cp_store)
    await b.release_claim(record.stream_id)
    assert await _lease(cp_store, record.stream_id) is None
    with pytest.raises(ClaimLost):
        await cp_store.commit_part(record.stream_id, _p(2, 20))
    assert await _lease(cp_store, record.stream_id) is None


async def test_a_vanished_lease_with_a_new_fence_is_not_renewed(
    cp_store: CheckpointStore,
) -> None:
    record, b, _new = await _taken_over(cp_store)
    await b.release_claim(record.stream_id)
    assert await cp_store.renew_claim(record.stream_id, TTL) is RenewResult.TAKEN
    assert await _lease(cp_store, record.stream_id) is None


async def test_release_claim_lets_another_node_claim_at_once(cp_store: CheckpointStore) -> None:
    record, b, claim = await _claimed(cp_store)
    sid = record.stream_id
    await b.release_claim(sid)  # not B's to give up: nothing happens
    assert await _lease(cp_store, sid) == claim.value
    await cp_store.release_claim(sid)
    assert sid not in cp_store.held_claims()
    assert await _lease(cp_store, sid) is None
    got = await b.claim(sid, B_NODE, TTL)
    assert isinstance(got, Claim) and got.fence > claim.fence
    assert sid in b.held_claims()
    await b.commit_part(sid, _p(2, 20))
    assert await cp_store.claim(sid, A_NODE, TTL) == got.value


async def test_renewing_a_claim_never_held_is_taken(cp_store: CheckpointStore) -> None:
    record = _record(scope=SHARE)
    await cp_store.create(record)
    assert await cp_store.renew_claim(record.stream_id, TTL) is RenewResult.TAKEN
    assert await _lease(cp_store, record.stream_id) is None


async def test_the_node_lease(cp_store: CheckpointStore) -> None:
    node, first, second = "cam-host", "cam-host|boot|100|5|t1", "cam-host|boot|200|9|t2"
    assert await cp_store.acquire_node(node, first, TTL) is None
    assert await cp_store.acquire_node(node, first, TTL) is None  # its own again
    assert await cp_store.acquire_node(node, second, TTL) == first  # says who holds it
    assert await cp_store.acquire_node(node, second, TTL, replacing="cam-host|x|1|1|t0") == first
    assert await cp_store.acquire_node("other-node", second, TTL) is None  # nodes apart
    # The first holder is provably gone: the exact old value is replaced at once.
    assert await cp_store.acquire_node(node, second, TTL, replacing=first) is None
    assert await cp_store.renew_node(node, second, TTL) is RenewResult.RENEWED
    assert await cp_store.renew_node(node, first, TTL) is RenewResult.TAKEN
    await cp_store.release_node(node, first)  # not the holder: nothing happens
    assert await cp_store.acquire_node(node, first, TTL) == second
    await _drop_node_lease(cp_store, node)  # Redis lost it
    assert await cp_store.renew_node(node, second, TTL) is RenewResult.RESTORED
    assert await cp_store.acquire_node(node, first, TTL) == second
    await cp_store.release_node(node, second)
    assert await cp_store.acquire_node(node, first, TTL) is None


# -- Every key a record leaves expires with it (N12) --
# Live records (their record, parts, fence, path entry, key claim and the live set) are kept
# until they end, by design; once a record has ended, no key it left may be kept forever,
# whatever wrote it: a rename after the end, a key reserved and not used, a rekey, a part
# committed as `tailup abort` ended it, a claim taken just after the end. Leases always carry a
# TTL. The memory store keeps the deadline Redis would give each key.

KEEP_S = 3600.0


@pytest.fixture(params=["memory", "redis"])
async def keeping(request: pytest.FixtureRequest) -> AsyncIterator[CheckpointStore]:
    """A store whose ended records expire after KEEP_S, on keys of this test's own."""
    if request.param == "memory":
        yield MemoryCheckpointStore(keep_records_s=KEEP_S)
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    prefix: str = request.getfixturevalue("key_prefix")
    async with RedisCheckpointStore.connect(server.url, prefix, keep_records_s=KEEP_S) as store:
        yield store


async def _kept_forever(store: CheckpointStore) -> list[str]:
    """Every key the store holds with no expiry (Redis: a SCAN of the test's prefix, PTTL -1)."""
    if isinstance(store, RedisCheckpointStore):
        client, found = store.client, []
        async for name in client.scan_iter(match=f"{store.keys.prefix}:*", count=1000):
            if int(await client.pttl(name)) == -1:
                found.append(str(name))
        return sorted(found)
    return _memory(store).kept_forever()


def _unique_key(name: str = "a.mp4") -> str:
    return f"streams/{uuid.uuid4().hex[:8]}/{name}"


async def test_a_record_driven_through_its_life_leaves_no_key_kept_forever(
    keeping: CheckpointStore,
) -> None:
    store = keeping
    first, taken, suffixed = _unique_key(), _unique_key(), _unique_key()
    record = _record(path="/rec/cam1.ts", key=first)
    sid = record.stream_id
    await store.create(record)
    await store.commit_part(sid, _p(1, 10))
    # tailup.keyclaim: a key reserved and found holding an object is let go, the counter
    # names the next one, and a rekey moves the record to it.
    assert await store.reserve_key(taken, sid) is None
    await store.release_key(taken, sid)
    assert await store.next_key_number(first) == 1
    assert await store.reserve_key(suffixed, sid) is None
    await store.update(sid, upload_id="", key=suffixed)
    await store.commit_part(sid, _p(1, 10))
    assert await store.set_state(sid, StreamState.COMPLETED, allowed_from=LIVE_STATES) is None
    # The completed recording is renamed (tailup.supervisor carries its record along).
    await store.update(sid, path="/rec/cam1-done.ts", path_ended=False)
    await store.forget_path("/rec/cam1.ts", sid)
    # A shared folder's recording, claimed, ended by `tailup abort` while a part was committed.
    shared = _record(path="/mnt/nas/cam2.ts", watch_root="/mnt/nas", scope=SHARE)
    await store.create(shared)
    assert isinstance(await store.claim(shared.stream_id, A_NODE, TTL), Claim)
    await _peer(store).update(shared.stream_id, state=StreamState.ABORTED)
    await store.commit_part(shared.stream_id, _p(1, 10))
    await store.release_claim(shared.stream_id)
    assert await _kept_forever(store) == []


async def test_a_path_entry_written_after_the_end_expires_with_the_record(
    keeping: CheckpointStore,
) -> None:
    record = _record(path="/rec/cam1.ts", key=_unique_key())
    await keeping.create(record)
    await keeping.update(record.stream_id, state=StreamState.COMPLETED)
    await keeping.update(record.stream_id, path="/rec/renamed.ts", path_ended=False)
    assert await keeping.stream_for_path("/rec/renamed.ts") == record.stream_id
    await keeping.forget_path("/rec/cam1.ts", record.stream_id)
    assert await _kept_forever(keeping) == []


async def test_a_path_entry_written_while_live_is_kept_then_expires_at_the_end(
    keeping: CheckpointStore,
) -> None:
    record = _record(path="/rec/cam1.ts", key=_unique_key())
    await keeping.create(record)
    await keeping.update(record.stream_id, path="/rec/renamed.ts")
    await keeping.forget_path("/rec/cam1.ts", record.stream_id)
    assert len(await _kept_forever(keeping)) == 4  # meta, live set, path entry, key claim
    await keeping.update(record.stream_id, state=StreamState.COMPLETED)
    assert await _kept_forever(keeping) == []


async def test_a_path_changed_with_the_state_is_indexed_and_expires(
    keeping: CheckpointStore,
) -> None:
    record = _record(path="/rec/cam1.ts", key=_unique_key())
    await keeping.create(record)
    await keeping.update(record.stream_id, state=StreamState.COMPLETED, path="/rec/b.ts")
    assert await keeping.stream_for_path("/rec/b.ts") == record.stream_id
    await keeping.forget_path("/rec/cam1.ts", record.stream_id)
    assert await _kept_forever(keeping) == []


async def test_a_key_the_record_no_longer_names_is_let_go(keeping: CheckpointStore) -> None:
    old, new = _unique_key(), _unique_key()
    record = _record(key=old)
    await keeping.create(record)
    assert await keeping.reserve_key(old, "another") == record.stream_id
    assert await keeping.reserve_key(new, record.stream_id) is None
    await keeping.update(record.stream_id, upload_id="", key=new)
    assert await keeping.reserve_key(new, "another") == record.stream_id
    assert await keeping.reserve_key(old, "another") is None, "the old key is free again"


async def test_a_reserved_key_no_record_names_expires(keeping: CheckpointStore) -> None:
    # The reserving stream died before its record named the key (or never came to).
    assert await keeping.reserve_key(_unique_key(), "s1") is None
    assert await _kept_forever(keeping) == []


async def test_a_reserved_key_the_record_names_is_kept_while_it_is_live(
    keeping: CheckpointStore,
) -> None:
    key = _unique_key()
    record = _record(key=_unique_key(), key_pending=True)
    await keeping.create(record)
    assert await keeping.reserve_key(key, record.stream_id) is None
    await keeping.update(record.stream_id, key=key, key_pending=False)
    kept = await _kept_forever(keeping)
    assert len(kept) == 4, kept  # meta, live set, path entry, key claim
    assert any(key in name for name in kept)
    await keeping.update(record.stream_id, state=StreamState.COMPLETED)
    assert await _kept_forever(keeping) == []


async def test_release_key_lets_go_of_the_stream_s_own_reservation_only(
    keeping: CheckpointStore,
) -> None:
    key = _unique_key()
    assert await keeping.reserve_key(key, "s1") is None
    await keeping.release_key(key, "s2")  # not s2's: nothing happens
    assert await keeping.reserve_key(key, "s2") == "s1"
    await keeping.release_key(key, "s1")
    assert await keeping.reserve_key(key, "s2") is None


async def test_a_key_given_back_at_the_end_stays_free_of_its_record(
    keeping: CheckpointStore,
) -> None:
    """tailup.rules.keyclaims: a stream that ended with nothing in S3 (OBS's write probe,
    aborted) gives its key back once its end is written (Bookkeeper.give_key_back). No later
    write of its record claims the key again (its path ended, a move, a field naming the same
    key); the next recording of the name reserves it; a record written whole (a take-over's
    Write) never takes it from that holder; and no key is left without a TTL."""
    store, key = keeping, _unique_key("2026-12-07 18-44-03.mkv")
    probe = _record(path="/rec/2026-12-07 18-44-03.mkv", key=key)
    sid = probe.stream_id
    await store.create(probe)
    assert await store.reserve_key(key, "next") == sid, "a live record holds its key"
    assert await store.set_state(sid, StreamState.ABORTED, allowed_from=LIVE_STATES) is None
    assert await store.reserve_key(key, "next") == sid, "its end alone keeps the claim"
    await store.release_key(key, sid)
    await store.update(sid, path_ended=True)
    await store.update(sid, path="/rec/moved.mkv", path_ended=False)
    await store.update(sid, key=key, note="the same key named again")
    assert await store.reserve_key(key, "next") is None, "free: the next recording's"
    await store.create(probe.with_changes(note="written whole over the ended one"))
    assert await store.reserve_key(key, "third") == "next"
    await store.update(sid, state=StreamState.COMPLETED)
    assert await _kept_forever(store) == []


async def test_parts_committed_after_the_end_expire_with_the_record(
    keeping: CheckpointStore,
) -> None:
    # `tailup abort` ended the record while its stream was sending its first part.
    record = _record(key=_unique_key())
    await keeping.create(record)
    await keeping.update(record.stream_id, state=StreamState.ABORTED)
    await keeping.commit_part(record.stream_id, _p(1, 10))
    assert await _kept_forever(keeping) == []


async def test_a_claim_taken_just_after_the_end_leaves_no_fence_forever(
    keeping: CheckpointStore,
) -> None:
    record = _record(path="/mnt/nas/cam1.ts", watch_root="/mnt/nas", scope=SHARE)
    await keeping.create(record)
    await keeping.update(record.stream_id, state=StreamState.COMPLETED)
    assert isinstance(await keeping.claim(record.stream_id, A_NODE, TTL), Claim)
    await keeping.release_claim(record.stream_id)
    assert await _kept_forever(keeping) == []


async def test_the_ended_index_is_kept_forever_once_records_are(
    keeping: CheckpointStore,
) -> None:
    # --keep-records changed to 0 after a run that expired records: the index of the records
    # now kept forever must not expire with the TTL an earlier end gave it.
    first, second = _record(), _record()
    for store, record in ((keeping, first), (_peer(keeping, keep_records_s=0.0), second)):
        await store.create(record)
        await store.update(record.stream_id, state=StreamState.COMPLETED)
    kept = await _kept_forever(keeping)
    assert [name for name in kept if "ended" in name] != [], kept
    assert await keeping.ended_stream_ids() == [second.stream_id, first.stream_id]


async def test_a_lost_claim_is_forgotten_once_released(cp_store: CheckpointStore) -> None:
    """N13: one id per recording lost to another node, kept only until this node is done."""
    record, _b, new = await _taken_over(cp_store)
    with pytest.raises(ClaimLost):
        await cp_store.commit_part(record.stream_id, _p(2, 20))
    assert cp_store.lost_claims() == [record.stream_id]
    await cp_store.release_claim(record.stream_id)
    assert cp_store.lost_claims() == []
    assert cp_store.held_claims() == []
    assert await _lease(cp_store, record.stream_id) == new.value, "B's lease is untouched"


# -- Redis only: ended records expire after --keep-records --


@pytest.fixture
async def keeping_store(
    redis_server: RedisServer, key_prefix: str
) -> AsyncIterator[RedisCheckpointStore]:
    async with RedisCheckpointStore.connect(
        redis_server.url, key_prefix, keep_records_s=KEEP_S
    ) as store:
        yield store


async def _pttls(store: RedisCheckpointStore, record: StreamRecord) -> dict[str, int]:
    keys, client = store.keys, store.client
    path_key = keys.scope(store.scope).path(record.path)
    named = {
        "meta": keys.stream_meta(record.stream_id),
        "parts": keys.stream_parts(record.stream_id),
        "path": path_key,
        "object claim": keys.object_claim(record.key),
    }
    return {what: int(await client.pttl(key)) for what, key in named.items()}


def _expiring(pttls: dict[str, int]) -> dict[str, bool]:
    return {what: 0 < ms <= KEEP_S * 1000 for what, ms in pttls.items()}


ENDINGS = [
    pytest.param("set_state", StreamState.COMPLETED, id="completed by set_state"),
    pytest.param("update", StreamState.COMPLETED, id="completed by update"),
    pytest.param("update", StreamState.ABORTED, id="aborted"),
    pytest.param("set_state", StreamState.SKIPPED, id="skipped"),
]


async def _end(store: CheckpointStore, stream_id: str, how: str, state: StreamState) -> None:
    if how == "set_state":
        allowed = LIVE_STATES
        assert await store.set_state(stream_id, state, allowed_from=allowed) is None
    else:
        await store.update(stream_id, state=state)


async def _live_with_parts(store: RedisCheckpointStore) -> StreamRecord:
    record = _record(key=f"streams/{uuid.uuid4().hex[:8]}/a.mp4")
    await store.create(record)
    assert await store.reserve_key(record.key, record.stream_id) is None
    await store.commit_part(record.stream_id, _p(1, 10))
    return record


@pytest.mark.parametrize(("how", "state"), ENDINGS)
async def test_an_ended_record_expires_with_its_path_entry_and_object_claim(
    keeping_store: RedisCheckpointStore, how: str, state: StreamState
) -> None:
    record = await _live_with_parts(keeping_store)
    assert set((await _pttls(keeping_store, record)).values()) == {-1}
    await _end(keeping_store, record.stream_id, how, state)
    pttls = await _pttls(keeping_store, record)
    assert all(_expiring(pttls).values()), pttls
    # A later write of another field keeps the expiry.
    await keeping_store.update(record.stream_id, after_upload_pending=False)
    assert all(_expiring(await _pttls(keeping_store, record)).values())


@pytest.mark.parametrize("state", [StreamState.FAILED, StreamState.STALLED])
async def test_a_resumable_record_never_expires(
    keeping_store: RedisCheckpointStore, state: StreamState
) -> None:
    record = await _live_with_parts(keeping_store)
    await keeping_store.update(record.stream_id, state=state)
    assert set((await _pttls(keeping_store, record)).values()) == {-1}


async def test_records_are_kept_forever_with_keep_records_0(
    redis_server: RedisServer, key_prefix: str
) -> None:
    async with RedisCheckpointStore.connect(redis_server.url, key_prefix) as store:
        record = await _live_with_parts(store)
        await store.set_state(record.stream_id, StreamState.COMPLETED, allowed_from=LIVE_STATES)
        assert set((await _pttls(store, record)).values()) == {-1}


async def test_a_new_generation_persists_the_record_again(
    keeping_store: RedisCheckpointStore,
) -> None:
    record = await _live_with_parts(keeping_store)
    await keeping_store.update(record.stream_id, state=StreamState.COMPLETED)
    await keeping_store.create(record.with_changes(generation=2))
    pttls = await _pttls(keeping_store, record)
    assert pttls.pop("parts") == -2  # a new generation starts with no parts
    assert set(pttls.values()) == {-1}, pttls
    await keeping_store.commit_part(record.stream_id, _p(1, 10))
    assert set((await _pttls(keeping_store, record)).values()) == {-1}


async def test_a_state_back_to_uploading_persists_the_record_again(
    keeping_store: RedisCheckpointStore,
) -> None:
    record = await _live_with_parts(keeping_store)
    await keeping_store.set_state(record.stream_id, StreamState.COMPLETED, allowed_from=LIVE_STATES)
    assert (
        await keeping_store.set_state(
            record.stream_id, StreamState.UPLOADING, allowed_from={StreamState.COMPLETED}
        )
        is None
    )
    assert set((await _pttls(keeping_store, record)).values()) == {-1}


@pytest.mark.parametrize("how", ["create_new", "restore", "create"])
async def test_an_ended_record_written_whole_expires_too(
    keeping_store: RedisCheckpointStore, how: str
) -> None:
    # What recovery writes for a recording S3 has whole (tailup.supervisor: create_new of a
    # COMPLETED record), or a stream writes again after Redis lost it (restore): bounded too.
    record = _record(key=f"streams/{uuid.uuid4().hex[:8]}/a.mp4", state=StreamState.COMPLETED)
    assert await keeping_store.reserve_key(record.key, record.stream_id) is None
    if how == "create_new":
        assert await keeping_store.create_new(record)
    elif how == "restore":
        await keeping_store.restore(record, {1: _p(1, 10)})
    else:
        await keeping_store.create(record)
    pttls = await _pttls(keeping_store, record)
    if how != "restore":
        assert pttls.pop("parts") == -2
    assert all(_expiring(pttls).values()), pttls


async def test_list_uploads_names_what_it_knows_of_their_checksum(
    mp_store: MultipartStore, request: pytest.FixtureRequest
) -> None:
    key = _key()
    upload_id = await mp_store.create_upload(
        key, "video/mp4", checksum=ChecksumAlgorithm.CRC32C, checksum_type=ChecksumType.COMPOSITE
    )
    try:
        [listed] = [u for u in await mp_store.list_uploads(key) if u.upload_id == upload_id]
        named = (
            listed.checksum.value if listed.checksum else None,
            listed.checksum_type.value if listed.checksum_type else None,
        )
        assert named == LISTS_UPLOAD_CHECKSUM[_impl(request)]
        assert not listed.foreign_checksum
    finally:
        await mp_store.abort_upload(key, upload_id)
