"""End to end, issue 20.2: `tailup run --storage-class --sse --tag` as a process against moto, with
a real ffmpeg recording growing in the watched folder; boto3 then asks moto what it kept (moto
keeps class, encryption and tags, as AWS does)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from daemonproc import poll, start_daemon
from tailup.checkpoint import RedisCheckpointStore
from tailup.dev import MotoS3, RedisServer
from tailup.model import StreamRecord, StreamState


async def _completed(redis_url: str, prefix: str, path: Path) -> StreamRecord | None:
    async with RedisCheckpointStore.connect(redis_url, prefix) as cps:
        stream_id = await cps.stream_for_path(str(path))
        loaded = await cps.load(stream_id) if stream_id else None
    if loaded and loaded[0].state is StreamState.FAILED:
        raise AssertionError(f"{path.name} failed: {loaded[0].error}")
    return loaded[0] if loaded and loaded[0].state is StreamState.COMPLETED else None


def test_a_recording_is_stored_as_the_flags_say_on_moto(
    tmp_path: Path,
    moto_server: MotoS3,
    moto_bucket: str,
    redis_server: RedisServer,
    key_prefix: str,
    record: Any,
) -> None:
    watch = tmp_path / "recordings"
    watch.mkdir()
    args = [
        "--watch", str(watch), "--bucket", moto_bucket,
        "--endpoint-url", moto_server.endpoint_url,
        "--redis-url", redis_server.url, "--redis-prefix", key_prefix,
        "--part-size", "5MiB", "--close-grace", "1", "--log-format", "json",
        "--storage-class", "GLACIER_IR", "--sse", "aws:kms", "--sse-kms-key-id", "alias/cams",
        "--tag", "site=lobby", "--tag", "retention=90d",
    ]  # fmt: skip
    daemon = start_daemon(args, moto_server.env(), tmp_path / "tailup.log", tmp_path)
    try:
        daemon.wait_for_event("watching")
        path = watch / "camera.ts"
        proc = record(path, "ts", 3, bitrate="16M")  # ~6 MB: a multipart upload
        assert proc.wait(timeout=120) == 0, Path(proc.log_path).read_text()
        rec = poll(
            lambda: asyncio.run(_completed(redis_server.url, key_prefix, path)),
            f"{path.name} completed",
            90,
            alive=daemon,
        )
        client = moto_server.boto3_client()
        try:
            for key in (rec.key, rec.key + ".metadata.json"):
                head = client.head_object(Bucket=moto_bucket, Key=key)
                assert head["StorageClass"] == "GLACIER_IR", key
                assert head["ServerSideEncryption"] == "aws:kms", key
                assert head["SSEKMSKeyId"] == "alias/cams", key
                tags = client.get_object_tagging(Bucket=moto_bucket, Key=key)["TagSet"]
                assert {t["Key"]: t["Value"] for t in tags} == {
                    "site": "lobby",
                    "retention": "90d",
                }, key
            sidecar = client.get_object(Bucket=moto_bucket, Key=rec.key + ".metadata.json")
            meta = json.loads(sidecar["Body"].read())
            body = client.get_object(Bucket=moto_bucket, Key=rec.key)["Body"].read()
        finally:
            client.close()
        assert body == path.read_bytes()
        assert meta["storage"] == {
            "class": "GLACIER_IR",
            "sse": "aws:kms",
            "sse_kms_key_id": "alias/cams",
            "tags": {"site": "lobby", "retention": "90d"},
        }
    finally:
        assert daemon.stop() == 0, daemon.tail()
