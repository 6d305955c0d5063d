"""The README's recipes, tried for real: a recorder configured as the README says, writing into a
watched folder of `tailup run` (SeaweedFS, Redis, a real ffmpeg), and every file it wrote in S3
byte for byte at the key the recipe promises."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from daemonproc import start_daemon
from tailup.checkpoint import RedisCheckpointStore
from tailup.dev import RedisServer, SeaweedS3, ffmpeg_exe
from tailup.model import StreamState

pytestmark = pytest.mark.timeout(180)


async def _all_completed(
    redis_url: str, prefix: str, paths: list[Path], timeout_s: float
) -> dict[Path, str]:
    """Each path's key once its record is COMPLETED; a FAILED one fails the test at once."""
    keys: dict[Path, str] = {}
    async with RedisCheckpointStore.connect(redis_url, prefix) as cps:
        try:
            async with asyncio.timeout(timeout_s):
                while len(keys) < len(paths):
                    for path in paths:
                        stream_id = await cps.stream_for_path(str(path))
                        loaded = await cps.load(stream_id) if stream_id else None
                        record = loaded[0] if loaded else None
                        if record is not None and record.state is StreamState.FAILED:
                            raise AssertionError(f"{path.name} failed: {record.error}")
                        if record is not None and record.state is StreamState.COMPLETED:
                            keys[path] = record.key
                    await asyncio.sleep(0.1)  # Redis is another process's state: polled
        except TimeoutError:
            missing = sorted(p.name for p in paths if p not in keys)
            raise AssertionError(f"not completed in {timeout_s} s: {missing}") from None
    return keys


def test_the_ffmpeg_segmenter_recipe(
    tmp_path: Path,
    s3_server: SeaweedS3,
    bucket: str,
    redis_server: RedisServer,
    key_prefix: str,
) -> None:
    """README, "Recipes": `ffmpeg -f segment -segment_time N -reset_timestamps 1 -strftime 1
    .../cam1/%Y%m%d-%H%M%S.ts` with `--key-template '{relpath}'`: one object per segment, at its
    path under the watched folder, each equal to its file."""
    watch = tmp_path / "recordings"
    (watch / "cam1").mkdir(parents=True)
    args = [
        "--watch", str(watch), "--bucket", bucket,
        "--endpoint-url", s3_server.endpoint_url,
        "--redis-url", redis_server.url, "--redis-prefix", key_prefix,
        "--key-template", "{relpath}", "--close-grace", "0.5",
        "--log-format", "json",
    ]  # fmt: skip
    daemon = start_daemon(args, s3_server.env(), tmp_path / "tailup.log", tmp_path)
    try:
        daemon.wait_for_event("watching")
        # The README's muxer flags on a synthetic live source (a camera's RTSP feed there).
        cmd = [
            ffmpeg_exe(), "-y", "-loglevel", "error", "-nostdin",
            "-re", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25",
            "-t", "5", "-c:v", "libx264", "-preset", "ultrafast", "-g", "25",
            "-f", "segment", "-segment_time", "2", "-reset_timestamps", "1",
            "-strftime", "1", str(watch / "cam1" / "%Y%m%d-%H%M%S.ts"),
        ]  # fmt: skip
        subprocess.run(cmd, check=True, timeout=120)
        segments = sorted((watch / "cam1").glob("*.ts"))
        assert len(segments) >= 2, segments  # 5 s in 2-s segments
        keys = asyncio.run(_all_completed(redis_server.url, key_prefix, segments, timeout_s=90))
    finally:
        daemon.stop()
    client = s3_server.boto3_client()
    try:
        for path in segments:
            assert keys[path] == f"cam1/{path.name}", "the key is not the segment's path"
            body = client.get_object(Bucket=bucket, Key=keys[path])["Body"].read()
            assert body == path.read_bytes(), f"{path.name} differs in S3"
    finally:
        client.close()
