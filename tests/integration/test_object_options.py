"""--storage-class, --sse and --tag (issue 20.2) on real servers: the daemon uploads a recording
(multipart) and a short one (one PutObject), and the server is asked what it kept, through boto3
(HeadObject, GetObjectTagging). moto keeps class, encryption and tags; SeaweedFS keeps the class,
AES256 and tags but has no KMS: SSE-KMS is refused (InternalError), and the stream fails naming
--sse rather than retrying for ever (docs/s3-servers.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness import content, running_daemon, wait_until
from tailup.dev import MotoS3, RedisServer, SeaweedS3
from tailup.errors import StorageOptionRefused
from tailup.integrity import crc32_of
from tailup.keys import metadata_key
from tailup.model import StreamState
from tailup.objectoptions import ObjectOptions
from tailup.plan import MiB
from tailup.s3 import S3MultipartStore
from tailup.uploadcard import card_key

pytestmark = pytest.mark.timeout(120)

TAGS = ["site=lobby a", "camera=cam-1+2", "team=ops@example.com"]
TAG_SET = {"site": "lobby a", "camera": "cam-1+2", "team": "ops@example.com"}


def _stored_as(client: Any, bucket: str, key: str) -> dict[str, Any]:
    head = client.head_object(Bucket=bucket, Key=key)
    tags = client.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]
    return {
        "class": head.get("StorageClass", "STANDARD"),
        "sse": head.get("ServerSideEncryption"),
        "kms_key": head.get("SSEKMSKeyId"),
        "tags": {t["Key"]: t["Value"] for t in tags},
    }


async def _upload_two(daemon_args: dict[str, Any], watch: Path, **options: Any) -> list[str]:
    """A multipart recording and a one-PutObject recording, completed: their keys."""
    long, short = watch / "long.ts", watch / "short.ts"
    long.write_bytes(content(11 * MiB, "long"))
    short.write_bytes(content(100_000, "short"))
    async with running_daemon(**daemon_args, idle_timeout=1, **options) as daemon:
        keys = []
        for path in (long, short):
            rec = await daemon.wait_for_state(path, {StreamState.COMPLETED, StreamState.FAILED}, 60)
            assert rec.state is StreamState.COMPLETED, rec.error
            keys.append(rec.key)
        assert daemon.store.completes and daemon.store.puts
    return keys


@pytest.fixture
def moto_args(
    watch: Path,
    moto_server: MotoS3,
    moto_bucket: str,
    redis_server: RedisServer,
    key_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, Any]:
    for name, value in moto_server.env().items():
        monkeypatch.setenv(name, value)
    return {
        "watch": watch,
        "bucket": moto_bucket,
        "endpoint_url": moto_server.endpoint_url,
        "redis_url": redis_server.url,
        "key_prefix": key_prefix,
    }


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (
            {"storage_class": "STANDARD_IA", "sse": "AES256", "tag": TAGS},
            {"class": "STANDARD_IA", "sse": "AES256", "kms_key": None, "tags": TAG_SET},
        ),
        (
            {"storage_class": "INTELLIGENT_TIERING", "sse": "aws:kms", "sse_kms_key_id": "k-1"},
            {"class": "INTELLIGENT_TIERING", "sse": "aws:kms", "kms_key": "k-1", "tags": {}},
        ),
    ],
    ids=["class-aes256-tags", "class-kms"],
)
async def test_moto_keeps_class_encryption_and_tags_of_recordings_and_metadata(
    moto_args: dict[str, Any],
    moto_server: MotoS3,
    watch: Path,
    options: dict[str, Any],
    expected: dict[str, Any],
) -> None:
    keys = await _upload_two(moto_args, watch, **options)
    client = moto_server.boto3_client()
    try:
        bucket = moto_args["bucket"]
        for key in keys:
            assert _stored_as(client, bucket, key) == expected, key
            assert _stored_as(client, bucket, metadata_key(key)) == expected, key
            document = json.loads(
                client.get_object(Bucket=bucket, Key=metadata_key(key))["Body"].read()
            )
            assert document["storage"] == {
                "class": expected["class"],
                "sse": expected["sse"],
                "sse_kms_key_id": expected["kms_key"],
                "tags": expected["tags"],
            }
    finally:
        client.close()


async def test_side_objects_get_the_encryption_only(
    moto_args: dict[str, Any], moto_server: MotoS3, watch: Path
) -> None:
    """The upload card is written beside an open upload: encrypted like the recording, but in
    STANDARD and untagged (tailup.objectoptions). Held open by a writer, so the card stays."""
    path = watch / "live.ts"
    with path.open("wb") as writer:
        writer.write(content(6 * MiB, "live"))
        writer.flush()
        async with running_daemon(
            **moto_args, storage_class="STANDARD_IA", sse="AES256", tag=TAGS
        ) as daemon:
            rec = await daemon.wait_for_state(path, {StreamState.UPLOADING}, 60)
            await wait_until(lambda: card_key(rec.key) in daemon.store.puts, "card written")
            client = moto_server.boto3_client()
            try:
                card = _stored_as(client, moto_args["bucket"], card_key(rec.key))
            finally:
                client.close()
    assert card == {"class": "STANDARD", "sse": "AES256", "kms_key": None, "tags": {}}


async def test_seaweedfs_keeps_class_aes256_and_tags(
    daemon_args: dict[str, Any], s3_client: Any, bucket: str, watch: Path
) -> None:
    keys = await _upload_two(
        daemon_args, watch, storage_class="STANDARD_IA", sse="AES256", tag=TAGS
    )
    expected = {"class": "STANDARD_IA", "sse": "AES256", "kms_key": None, "tags": TAG_SET}
    for key in keys:
        assert _stored_as(s3_client, bucket, key) == expected
        assert _stored_as(s3_client, bucket, metadata_key(key)) == expected


async def test_a_folders_own_tags_are_its_recordings_and_the_others_keep_the_global_tags(
    daemon_args: dict[str, Any], s3_client: Any, bucket: str, tmp_path: Path
) -> None:
    """Issue 20.3: ``tags = { ... }`` in one folder's [[watch]] table (an inline table, the
    documented form) replaces --tag for that folder's recordings and their metadata.json,
    multipart or one PutObject; the other folder's keep --tag's."""
    north, plain = tmp_path / "north", tmp_path / "plain"
    north.mkdir(), plain.mkdir()
    files = {
        north / "long.ts": 11 * MiB,
        north / "short.ts": 100_000,
        plain / "desk.ts": 100_000,
    }
    for path, size in files.items():
        path.write_bytes(content(size, path.name))
    tables = [{"path": str(north), "tags": {"site": "north", "cam": "3"}}]
    async with running_daemon(
        **{**daemon_args, "watch": [north, plain]}, idle_timeout=1, tag=TAGS, watch_tables=tables
    ) as daemon:
        done = [
            await daemon.wait_for_state(p, {StreamState.COMPLETED, StreamState.FAILED}, 60)
            for p in files
        ]
    assert [r.state for r in done] == [StreamState.COMPLETED] * 3, [r.error for r in done]
    north_tags = {"site": "north", "cam": "3"}
    for record, tags in zip(done, [north_tags, north_tags, TAG_SET], strict=True):
        for key in (record.key, metadata_key(record.key)):
            assert _stored_as(s3_client, bucket, key)["tags"] == tags, key
        document = json.loads(
            s3_client.get_object(Bucket=bucket, Key=metadata_key(record.key))["Body"].read()
        )
        assert document["storage"]["tags"] == tags


@pytest.mark.parametrize("size_bytes", [11 * MiB, 100_000], ids=["multipart", "one-put"])
async def test_seaweedfs_refuses_sse_kms_and_the_stream_fails_naming_the_flag(
    daemon_args: dict[str, Any], watch: Path, size_bytes: int
) -> None:
    path = watch / "cam.ts"
    path.write_bytes(content(size_bytes, "kms"))
    # botocore would try each refused request 4 times (InternalError is a 5xx), backing off.
    once = {"max_attempts": 1}
    async with running_daemon(
        **daemon_args, idle_timeout=1, sse="aws:kms", failed_retry=3600, store_options=once
    ) as daemon:
        rec = await daemon.wait_for_state(path, {StreamState.FAILED, StreamState.COMPLETED}, 60)
    assert rec.state is StreamState.FAILED
    assert "--sse aws:kms" in rec.error and "InternalError" in rec.error, rec.error


async def test_a_class_moto_refuses_fails_the_stream_naming_the_flag(
    moto_args: dict[str, Any], watch: Path
) -> None:
    """moto, like AWS outside an Outpost or a Snow device, refuses SNOW: InvalidStorageClass is
    permanent, and the stream fails naming the flag instead of backing off for ever."""
    path = watch / "cam.ts"
    path.write_bytes(content(100_000, "snow"))
    async with running_daemon(
        **moto_args, idle_timeout=1, storage_class="SNOW", failed_retry=3600
    ) as daemon:
        rec = await daemon.wait_for_state(path, {StreamState.FAILED, StreamState.COMPLETED}, 60)
    assert rec.state is StreamState.FAILED
    assert "InvalidStorageClass" in rec.error and "--storage-class SNOW" in rec.error, rec.error


@pytest.mark.parametrize(
    ("options", "kept"),
    [
        (ObjectOptions(storage_class="GLACIER"), {"StorageClass": "GLACIER"}),
        (ObjectOptions(storage_class="SNOW"), {"StorageClass": "SNOW"}),
        (ObjectOptions(sse="AES256"), {"ServerSideEncryption": "AES256"}),
        # Taken, and not kept: HEAD names no encryption (docs/s3-servers.md).
        (ObjectOptions(sse="aws:kms:dsse"), {}),
    ],
    ids=["glacier", "snow", "aes256", "dsse-dropped"],
)
async def test_what_seaweedfs_keeps(
    s3_server: SeaweedS3,
    bucket: str,
    s3_client: Any,
    daemon_args: dict[str, Any],  # (sets the credentials in the environment)
    options: ObjectOptions,
    kept: dict[str, str],
) -> None:
    async with S3MultipartStore.connect(
        bucket, endpoint_url=s3_server.endpoint_url, region="us-east-1"
    ) as store:
        await store.put_object("k", b"hi", crc32_of(b"hi"), "text/plain", options=options)
    head = s3_client.head_object(Bucket=bucket, Key="k")
    shown = {name: head[name] for name in ("StorageClass", "ServerSideEncryption") if name in head}
    assert shown == kept


@pytest.mark.parametrize(
    ("options", "code"),
    [
        (ObjectOptions(storage_class="EXPRESS_ONEZONE"), "InvalidStorageClass"),
        (ObjectOptions(sse="aws:kms"), "InternalError"),
    ],
    ids=["express-onezone", "sse-kms"],
)
async def test_what_seaweedfs_refuses(
    s3_server: SeaweedS3,
    bucket: str,
    daemon_args: dict[str, Any],
    options: ObjectOptions,
    code: str,
) -> None:
    # One try: InternalError is a 5xx, which botocore would try 4 times, backing off.
    async with S3MultipartStore.connect(
        bucket, endpoint_url=s3_server.endpoint_url, region="us-east-1", max_attempts=1
    ) as store:
        with pytest.raises(StorageOptionRefused) as refused:
            await store.put_object("k", b"hi", crc32_of(b"hi"), "text/plain", options=options)
    assert refused.value.code == code and options.flags() in str(refused.value)
