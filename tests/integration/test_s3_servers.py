"""What servers other than the one in tests differ in, against the real daemon, Redis and S3 server
(SeaweedFS): one part size for every part (--part-sizing uniform: Cloudflare R2, Backblaze B2 Live
Read), the checksum every part carries (--checksum), ETags that are not MD5s of MD5s."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

import tailup.plan
from daemonproc import start_daemon
from harness import content, object_bytes, running_daemon, wait_until
from tailup.checksums import Checksum, ChecksumAlgorithm, part_checksum, stored_checksum
from tailup.dev import MemoryMultipartStore, RcloneS3, SeaweedS3
from tailup.errors import StorageUnavailable
from tailup.integrity import crc32_of, expected_object_checksums
from tailup.keys import metadata_key
from tailup.model import PartRecord, StreamState
from tailup.plan import MiB, PartSizing
from tailup.s3 import MultipartStore, ObjectInfo, S3MultipartStore

pytestmark = pytest.mark.timeout(120)  # asyncio_mode = "auto" marks the async ones


def part_sizes(s3_client: Any, bucket: str, key: str) -> list[int]:
    document = json.loads(object_bytes(s3_client, bucket, metadata_key(key)))
    return [int(part["size_bytes"]) for part in document["parts"]]


async def test_a_stream_keeps_its_part_sizing_across_a_restart_with_the_setting_changed(
    daemon_args: dict[str, Any],
    watch: Path,
    s3_client: Any,
    bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Two parts per size instead of 500, so that the growing and the uniform plan part ways within
    # a few MiB: the rule is the same, only its tiers are shorter.
    monkeypatch.setattr(tailup.plan, "PARTS_PER_TIER", 2)
    path = watch / "long.ts"
    first, rest = content(11 * MiB, "first half"), content(12 * MiB, "second half")
    with path.open("wb") as writer:
        async with running_daemon(**daemon_args, part_sizing="uniform") as daemon:
            writer.write(first)
            writer.flush()
            await wait_until(lambda: len(daemon.store.parts) == 2, "parts 1 and 2 sent")
            started = await daemon.record_for(path)
            assert started is not None and started.part_sizing is PartSizing.UNIFORM
        # The daemon is stopped, the recording goes on; the next start is growing (the default).
        writer.write(rest)
    async with running_daemon(**daemon_args, idle_timeout=2) as daemon:
        resumed = await daemon.wait_for_state(path, {StreamState.COMPLETED})
        assert [stream_id for stream_id, _ in daemon.resumes] == [started.stream_id]
        new = watch / "new.ts"
        new.write_bytes(content(23 * MiB, "a recording started after the change"))
        started_after = await daemon.wait_for_state(new, {StreamState.COMPLETED})

    assert resumed.part_sizing is PartSizing.UNIFORM
    assert part_sizes(s3_client, bucket, resumed.key) == [5 * MiB] * 4 + [3 * MiB]
    assert object_bytes(s3_client, bucket, resumed.key) == first + rest
    # A growing plan (two parts per size here) for what started after the change.
    assert started_after.part_sizing is PartSizing.GROWING
    assert part_sizes(s3_client, bucket, started_after.key) == [5 * MiB, 5 * MiB, 10 * MiB, 3 * MiB]


def test_the_daemon_says_its_capacity_at_start(
    s3_server: SeaweedS3, bucket: str, redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    """`tailup run --part-sizing uniform`: the capacity, 10,000 x --part-size, in the start line."""
    watch = tmp_path / "watch"
    watch.mkdir()
    args = ["--watch", str(watch), "--bucket", bucket, "--endpoint-url", s3_server.endpoint_url,
            "--redis-url", redis_url, "--redis-prefix", key_prefix, "--log-format", "json",
            "--part-size", "16MiB", "--part-sizing", "uniform", "--checksum", "crc32c"]  # fmt: skip
    daemon = start_daemon(args, s3_server.env(), tmp_path / "daemon.log", tmp_path)
    try:
        started = daemon.wait_for_event("tailup started", timeout_s=60)
    finally:
        assert daemon.stop() == 0, daemon.tail()
    assert started["part_sizing"] == "uniform" and started["checksum"] == "crc32c"
    assert started["capacity"] == (
        "156.2 GiB (167772160000 bytes, 10,000 parts of 16.0 MiB, --part-sizing uniform)"
    )
    assert len([e for e in daemon.events() if e.get("event") == "tailup started"]) == 1


# -- --checksum: each algorithm against the real server --

ALGORITHMS = list(ChecksumAlgorithm)


@pytest.fixture(params=["memory", "seaweedfs"])
async def store(
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
    ) as real:
        yield real


def checksum_of(algorithm: ChecksumAlgorithm, body: bytes) -> Checksum:
    return part_checksum(algorithm, crc32_of(body), stored_checksum(algorithm, body))


def wrong(checksum: Checksum) -> Checksum:
    """The same algorithm, another value (of the right width)."""
    value = checksum.value.split("-")[0]
    flipped = bytes(b ^ 0xFF for b in base64.b64decode(value))
    return Checksum(checksum.algorithm, base64.b64encode(flipped).decode())


def sent_headers(store: MultipartStore) -> list[tuple[str, dict[str, str]]]:
    """(operation, x-amz-checksum-* and x-amz-sdk-checksum-* headers) of every request the real
    store sends from now on, as they go on the wire."""
    seen: list[tuple[str, dict[str, str]]] = []
    if not isinstance(store, S3MultipartStore):
        return seen

    def note(request: Any, event_name: str, **_: Any) -> None:
        headers = {
            k.lower(): str(v)
            for k, v in request.headers.items()
            if k.lower().startswith(("x-amz-checksum", "x-amz-sdk-checksum", "content-md5"))
        }
        seen.append((event_name.rsplit(".", 1)[-1], headers))

    store._s3.meta.events.register("before-send.s3", note)
    return seen


@pytest.mark.parametrize("algorithm", ALGORITHMS, ids=[a.value for a in ALGORITHMS])
async def test_each_checksum_completes_and_the_server_reports_it(
    store: MultipartStore, algorithm: ChecksumAlgorithm
) -> None:
    key = f"sums/{uuid.uuid4().hex[:8]}/{algorithm.value}.ts"
    bodies = [content(5 * MiB, f"{algorithm} 1"), content(5 * MiB, f"{algorithm} 2"), b"tail"]
    headers = sent_headers(store)
    upload_id = await store.create_upload(key, "video/mp2t", checksum=algorithm)
    etags, sums = [], [checksum_of(algorithm, body) for body in bodies]
    for number, (body, checksum) in enumerate(zip(bodies, sums, strict=True), start=1):
        etags.append(
            await store.upload_part(key, upload_id, number, body, crc32_of(body), checksum=checksum)
        )
    named = [(n, e, crc32_of(b)) for n, (e, b) in enumerate(zip(etags, bodies, strict=True), 1)]
    await store.complete_upload(key, upload_id, named, checksums=sums)

    info = await store.head_object(key, checksum=True)
    assert info is not None and info.size == sum(map(len, bodies))
    records = [
        PartRecord(n, len(b), crc32_of(b), e, "", stored_checksum(algorithm, b))
        for n, (e, b) in enumerate(zip(etags, bodies, strict=True), 1)
    ]
    if algorithm is ChecksumAlgorithm.NONE:
        assert info.checksum is None
    else:
        assert info.checksum is not None and info.checksum.algorithm is algorithm
        assert info.checksum.value in expected_object_checksums(algorithm, records)
    assert await store.get_object(key) == b"".join(bodies)
    if isinstance(store, S3MultipartStore):
        parts_sent = [h for op, h in headers if op == "UploadPart"]
        assert len(parts_sent) == 3
        for sent in parts_sent:
            names = {name for name in sent if name.startswith("x-amz-checksum-")}
            if algorithm is ChecksumAlgorithm.NONE:
                # No checksum header of any kind, nor one botocore adds by itself.
                assert sent == {}, sent
            else:
                assert names == {f"x-amz-checksum-{algorithm.value}"}, sent


@pytest.mark.parametrize("algorithm", ALGORITHMS[:3], ids=[a.value for a in ALGORITHMS[:3]])
async def test_a_wrong_checksum_is_refused(
    store: MultipartStore, algorithm: ChecksumAlgorithm
) -> None:
    key = f"sums/{uuid.uuid4().hex[:8]}/{algorithm.value}.ts"
    body, tail = content(5 * MiB, "refused"), b"tail"
    upload_id = await store.create_upload(key, "video/mp2t", checksum=algorithm)
    good, good_tail = checksum_of(algorithm, body), checksum_of(algorithm, tail)
    with pytest.raises(StorageUnavailable, match="BadDigest"):
        await store.upload_part(key, upload_id, 1, body, crc32_of(body), checksum=wrong(good))
    etag = await store.upload_part(key, upload_id, 1, body, crc32_of(body), checksum=good)
    tail_etag = await store.upload_part(key, upload_id, 2, tail, crc32_of(tail), checksum=good_tail)
    named = [(1, etag, crc32_of(body)), (2, tail_etag, crc32_of(tail))]
    # CompleteMultipartUpload naming a part with another checksum than it was sent with.
    with pytest.raises(StorageUnavailable, match="BadDigest"):
        await store.complete_upload(key, upload_id, named, checksums=[wrong(good), good_tail])
    await store.complete_upload(key, upload_id, named, checksums=[good, good_tail])
    with pytest.raises(StorageUnavailable, match="BadDigest"):
        await store.put_object(
            key + ".json", tail, crc32_of(tail), "application/json", checksum=wrong(good_tail)
        )
    await store.put_object(
        key + ".json", tail, crc32_of(tail), "application/json", checksum=good_tail
    )
    info = await store.head_object(key + ".json", checksum=True)
    assert info is not None and info.checksum == good_tail


@pytest.mark.parametrize("algorithm", ALGORITHMS, ids=[a.value for a in ALGORITHMS])
async def test_the_daemon_uploads_with_each_checksum(
    daemon_args: dict[str, Any],
    watch: Path,
    s3_client: Any,
    bucket: str,
    algorithm: ChecksumAlgorithm,
) -> None:
    big, small = watch / "big.ts", watch / "small.ts"
    async with running_daemon(**daemon_args, checksum=algorithm.value) as daemon:
        big.write_bytes(content(12 * MiB, "big"))
        small.write_bytes(content(1000, "small"))
        records = [await daemon.wait_for_state(p, {StreamState.COMPLETED}) for p in (big, small)]
        loaded = await daemon.checkpoints.inner.load(records[0].stream_id)
    assert loaded is not None
    _, parts = loaded
    assert [bool(p.checksum) for p in parts.values()] == [algorithm.stored] * 3
    for record, path in zip(records, (big, small), strict=True):
        assert record.checksum is algorithm
        assert object_bytes(s3_client, bucket, record.key) == path.read_bytes()
        document = json.loads(object_bytes(s3_client, bucket, metadata_key(record.key)))
        assert document["checksums"]["part_checksum_algorithm"] == algorithm.value
        assert document["checksums"]["verified_by"] == "etag"
        head = s3_client.head_object(Bucket=bucket, Key=record.key, ChecksumMode="ENABLED")
        reported = {k for k in head if k.startswith("Checksum") and k != "ChecksumType"}
        assert reported == (
            set() if algorithm is ChecksumAlgorithm.NONE else {f"Checksum{algorithm.s3_name}"}
        )


@pytest.mark.parametrize("algorithm", ALGORITHMS, ids=[a.value for a in ALGORITHMS])
async def test_the_daemon_uploads_with_each_checksum_on_rclone(
    rclone_server: RcloneS3,
    rclone_bucket: str,
    redis_url: str,
    key_prefix: str,
    watch: Path,
    monkeypatch: pytest.MonkeyPatch,
    algorithm: ChecksumAlgorithm,
) -> None:
    """rclone serve s3 ignores every checksum header, reports none, and names a multipart
    object by the MD5 of its bytes: each --checksum still completes, and the object is checked
    by its size after every part was re-read (docs/s3-servers.md)."""
    for name, value in rclone_server.env().items():
        monkeypatch.setenv(name, value)
    big, small = watch / "big.ts", watch / "small.ts"
    async with running_daemon(
        watch=watch,
        bucket=rclone_bucket,
        endpoint_url=rclone_server.endpoint_url,
        redis_url=redis_url,
        key_prefix=key_prefix,
        checksum=algorithm.value,
    ) as daemon:
        big.write_bytes(content(12 * MiB, "big"))
        small.write_bytes(content(1000, "small"))
        records = [await daemon.wait_for_state(p, {StreamState.COMPLETED}) for p in (big, small)]
    client = rclone_server.boto3_client()
    try:
        for record, path, verified_by in zip(records, (big, small), ("size", "etag"), strict=True):
            assert object_bytes(client, rclone_bucket, record.key) == path.read_bytes()
            document = json.loads(object_bytes(client, rclone_bucket, metadata_key(record.key)))
            assert document["checksums"]["part_checksum_algorithm"] == algorithm.value
            # A single PUT's ETag is its body's MD5 on every server.
            assert document["checksums"]["verified_by"] == verified_by
    finally:
        client.close()


# -- a server whose multipart ETags are not the MD5 of the part MD5s --


class OpaqueEtags:
    """The real store, answering like a server whose multipart ETags are of its own kind (40 hex
    digits here): Complete's and HeadObject's ETag of a multipart object are rewritten; every
    byte still goes to and comes from the real server. ``bad_checksum`` also rewrites the
    checksum HEAD reports, as a server holding other bytes would."""

    def __init__(self, inner: S3MultipartStore, *, bad_checksum: bool = False) -> None:
        self.inner = inner
        self.bad_checksum = bad_checksum
        self.multipart: set[str] = set()
        self.heads_with_checksum = 0

    @staticmethod
    def opaque(etag: str) -> str:
        return '"' + hashlib.sha1(etag.encode()).hexdigest() + '"'

    async def complete_upload(self, key: str, upload_id: str, parts: Any, **kwargs: Any) -> str:
        etag = await self.inner.complete_upload(key, upload_id, parts, **kwargs)
        self.multipart.add(key)
        return self.opaque(etag)

    async def head_object(self, key: str, *, checksum: bool = False) -> ObjectInfo | None:
        info = await self.inner.head_object(key, checksum=checksum)
        if info is None or key not in self.multipart:
            return info
        self.heads_with_checksum += checksum
        reported = info.checksum
        if self.bad_checksum and reported is not None:
            reported = wrong(reported)
        return dataclasses.replace(info, etag=self.opaque(info.etag), checksum=reported)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def fallback_lines(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in logs if "ETags are not the MD5 of the part MD5s" in e["event"]]


@pytest.mark.parametrize(
    ("algorithm", "verified_by"),
    [
        (ChecksumAlgorithm.CRC32, "checksum"),
        (ChecksumAlgorithm.CRC64NVME, "checksum"),
        (ChecksumAlgorithm.NONE, "size"),
    ],
    ids=["crc32", "crc64nvme", "none"],
)
async def test_streams_complete_on_a_server_whose_etags_are_not_md5s_of_md5s(
    daemon_args: dict[str, Any],
    watch: Path,
    s3_client: Any,
    bucket: str,
    algorithm: ChecksumAlgorithm,
    verified_by: str,
) -> None:
    wrappers: list[OpaqueEtags] = []

    def wrap(real: S3MultipartStore) -> OpaqueEtags:
        wrappers.append(OpaqueEtags(real))
        return wrappers[-1]

    paths = [watch / "cam1.ts", watch / "cam2.ts"]
    with capture_logs() as logs:
        async with running_daemon(
            **daemon_args, wrap_store=wrap, checksum=algorithm.value
        ) as daemon:
            for number, path in enumerate(paths):
                path.write_bytes(content(11 * MiB, f"camera {number}"))
            records = [await daemon.wait_for_state(p, {StreamState.COMPLETED}) for p in paths]
    # One line for the daemon run, not one per stream.
    (line,) = fallback_lines(logs)
    assert line["verified_by"] == verified_by and line["log_level"] == "warning"
    for record, path in zip(records, paths, strict=True):
        real_etag = s3_client.head_object(Bucket=bucket, Key=record.key)["ETag"]
        assert record.etag == OpaqueEtags.opaque(real_etag), "the server's ETag is recorded"
        document = json.loads(object_bytes(s3_client, bucket, metadata_key(record.key)))
        assert document["checksums"]["verified_by"] == verified_by
        assert document["checksums"]["multipart_etag"] == record.etag.strip('"')
        assert object_bytes(s3_client, bucket, record.key) == path.read_bytes()
    # The checksum is asked for only when one was sent.
    assert (wrappers[0].heads_with_checksum > 0) is (algorithm is not ChecksumAlgorithm.NONE)


async def test_the_fallback_still_fails_an_object_whose_checksum_differs(
    daemon_args: dict[str, Any], watch: Path
) -> None:
    path = watch / "cam.ts"
    async with running_daemon(
        **daemon_args,
        wrap_store=lambda real: OpaqueEtags(real, bad_checksum=True),
        failed_retry=600,
    ) as daemon:
        path.write_bytes(content(11 * MiB, "camera"))
        record = await daemon.wait_for_state(path, {StreamState.FAILED})
    assert "does not match what was sent" in record.error
    assert "crc32 is" in record.error, record.error
