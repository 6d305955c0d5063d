"""End to end on a second S3 implementation: `tailup run` against moto (AWS's semantics) while a
real ffmpeg recording grows in the watched folder.

An MP4 is the case where the servers differ: ffmpeg patches the mdat size in the first bytes at
close, so part 1, sent while recording, is sent again under the same part number at finalize.
SeaweedFS keeps both uploads of it; moto, like AWS, keeps only the latest, and the object must
still equal the file byte for byte (and decode).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

from daemonproc import poll, start_daemon
from tailup.checkpoint import RedisCheckpointStore
from tailup.dev import MotoS3, RedisServer, ffmpeg_exe
from tailup.model import StreamRecord, StreamState

RECORD_SECONDS = 6
# ~12 MB in 6 s: parts 1 and 2 (5 MiB each) go up while recording, part 1 ~3.4 s before the
# close, then a short part 3.
BITRATE = "16M"


async def _record_of(redis_url: str, prefix: str, path: Path) -> StreamRecord | None:
    async with RedisCheckpointStore.connect(redis_url, prefix) as cps:
        stream_id = await cps.stream_for_path(str(path))
        loaded = await cps.load(stream_id) if stream_id else None
    if loaded and loaded[0].state is StreamState.FAILED:
        raise AssertionError(f"{path.name} failed: {loaded[0].error}")
    return loaded[0] if loaded and loaded[0].state is StreamState.COMPLETED else None


def test_a_live_mp4_recording_ends_up_exact_on_moto(
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
        "--part-size", "5MiB", "--close-grace", "1",
        "--log-format", "json", "--log-level", "debug",  # "part uploaded" is a debug event
    ]  # fmt: skip
    daemon = start_daemon(args, moto_server.env(), tmp_path / "tailup.log", tmp_path)
    try:
        daemon.wait_for_event("watching")
        path = watch / "camera.mp4"
        proc = record(path, "mp4", RECORD_SECONDS, bitrate=BITRATE, gop=25)
        assert proc.wait(timeout=120) == 0, Path(proc.log_path).read_text()
        rec = poll(
            lambda: asyncio.run(_record_of(redis_server.url, key_prefix, path)),
            f"{path.name} completed",
            90,
            alive=daemon,
        )
        completed = daemon.wait_for_event("multipart upload completed")
        # Part 1 went up while ffmpeg was still writing: the muxer patches the MP4 header in its
        # last milliseconds before the close, so part 1 sent again at completion means its first
        # upload read the file before the close. (The time that upload was logged is no proof
        # either way: on a loaded machine moto may take seconds to acknowledge it.)
        assert completed["resent"] == [1, 3], "the patched MP4 header was not sent again"
        sent = [e for e in daemon.events() if e.get("event") == "part uploaded"]
        assert sorted(e["part"] for e in sent) == [1, 1, 2, 3], sent
        assert sent[0]["part"] == 1, sent

        client = moto_server.boto3_client()
        try:
            body = client.get_object(Bucket=moto_bucket, Key=rec.key)["Body"].read()
            sidecar = client.get_object(Bucket=moto_bucket, Key=rec.key + ".metadata.json")
            meta = json.loads(sidecar["Body"].read())
        finally:
            client.close()
        local = path.read_bytes()
        assert body == local, "the object differs from the file"
        assert meta["checksums"]["sha256"] == hashlib.sha256(local).hexdigest()
        assert meta["size_bytes"] == len(local) and meta["part_count"] == 3
        downloaded = tmp_path / "downloaded.mp4"  # an MP4 with its index at the end: seekable
        downloaded.write_bytes(body)
        decoded = subprocess.run(
            [ffmpeg_exe(), "-v", "error", "-nostdin", "-i", str(downloaded), "-f", "null", "-"],
            capture_output=True,
            timeout=120,
        )
        assert decoded.returncode == 0 and decoded.stderr == b"", decoded.stderr[:500]
    finally:
        assert daemon.stop() == 0, daemon.tail()
