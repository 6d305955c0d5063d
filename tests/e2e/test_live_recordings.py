"""End to end: `tailup run` as a subprocess while real ffmpeg recordings grow in the watched folder.

Each object must equal its final file byte for byte (the muxers rewrite headers at close), decode
without errors, and be described by a correct metadata.json.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from conftest import TEST_SECRET_KEY
from daemonproc import tailup_env
from tailup.checkpoint import RedisCheckpointStore
from tailup.dev import RedisServer, SeaweedS3, ffmpeg_exe
from tailup.model import StreamRecord, StreamState

FORMATS = {
    # name -> (file name, expected container as PyAV/ffmpeg names it)
    "mp4": ("plain.mp4", "mov,mp4,m4a,3gp,3g2,mj2"),
    "faststart": ("faststart.mp4", "mov,mp4,m4a,3gp,3g2,mj2"),
    "fmp4": ("fragmented.mp4", "mov,mp4,m4a,3gp,3g2,mj2"),
    "mkv": ("matroska.mkv", "matroska,webm"),
    "ts": ("transport.ts", "mpegts"),
    "mov": ("quicktime.mov", "mov,mp4,m4a,3gp,3g2,mj2"),
}
RECORD_SECONDS = 3
BITRATE = "16M"  # ~6 MB in 3 s (constant bitrate): one full 5 MiB part goes up while recording


def daemon_env() -> dict[str, str]:
    """Environment that runs this checkout's tailup, whichever copy the interpreter installed,
    with no TAILUP_ setting of the developer's."""
    return tailup_env({})


class DaemonProcess:
    def __init__(self, proc: subprocess.Popen[bytes], log_path: Path) -> None:
        self.proc = proc
        self.log_path = log_path

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out

    def wait_for_event(self, name: str, timeout_s: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for event in self.events():
                if event.get("event") == name:
                    return event
            if self.proc.poll() is not None:
                raise AssertionError(f"tailup exited ({self.proc.returncode}): {self.log_tail()}")
            time.sleep(0.05)
        raise AssertionError(f"no {name!r} event in {timeout_s}s: {self.log_tail()}")

    def log_tail(self) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-30:])


@pytest.fixture
def tailup_run(
    tmp_path: Path, s3_server: SeaweedS3, redis_server: RedisServer, bucket: str, key_prefix: str
) -> Iterator[tuple[DaemonProcess, Path]]:
    watch = tmp_path / "recordings"
    watch.mkdir()
    log_path = tmp_path / "tailup.log"
    env = {**daemon_env(), **s3_server.env()}
    cmd = [
        sys.executable, "-m", "tailup", "run",
        "--watch", str(watch),
        "--bucket", bucket,
        "--endpoint-url", s3_server.endpoint_url,
        "--redis-url", redis_server.url,
        "--redis-prefix", key_prefix,
        "--part-size", "5MiB",
        "--close-grace", "1",
        "--log-format", "json",
    ]  # fmt: skip
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    daemon = DaemonProcess(proc, log_path)
    try:
        daemon.wait_for_event("watching")
        yield daemon, watch
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def _wait_completed(
    redis_url: str, prefix: str, paths: list[Path], timeout_s: float
) -> dict[Path, StreamRecord]:
    done: dict[Path, StreamRecord] = {}
    async with RedisCheckpointStore.connect(redis_url, prefix) as cps:
        try:
            async with asyncio.timeout(timeout_s):
                while len(done) < len(paths):
                    for path in paths:
                        stream_id = await cps.stream_for_path(str(path))
                        loaded = await cps.load(stream_id) if stream_id else None
                        if loaded and loaded[0].state is StreamState.COMPLETED:
                            done[path] = loaded[0]
                        elif loaded and loaded[0].state is StreamState.FAILED:
                            raise AssertionError(f"{path.name} failed: {loaded[0].error}")
                    await asyncio.sleep(0.05)
        except TimeoutError:
            missing = [p.name for p in paths if p not in done]
            raise AssertionError(f"not completed in {timeout_s}s: {missing}") from None
    return done


def _decode_errors(data: bytes, suffix: str, tmp_path: Path) -> str:
    copy = tmp_path / f"downloaded{suffix}"
    copy.write_bytes(data)
    result = subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-nostdin", "-i", str(copy), "-f", "null", "-"],
        capture_output=True,
        timeout=120,
    )
    return result.stderr.decode(errors="replace") + ("" if result.returncode == 0 else "(exit)")


def test_live_recordings_in_every_format_end_up_exact_in_s3(
    tailup_run: tuple[DaemonProcess, Path],
    record: Any,
    redis_server: RedisServer,
    key_prefix: str,
    s3_client: Any,
    bucket: str,
    tmp_path: Path,
) -> None:
    daemon, watch = tailup_run
    procs = {
        fmt: record(watch / name, fmt, RECORD_SECONDS, bitrate=BITRATE, gop=25)
        for fmt, (name, _) in FORMATS.items()
    }
    ended_at: dict[str, float] = {}
    for fmt, proc in procs.items():
        assert proc.wait(timeout=120) == 0, Path(proc.log_path).read_text()
        ended_at[fmt] = time.time()
    paths = [watch / name for name, _ in FORMATS.values()]
    records = asyncio.run(_wait_completed(redis_server.url, key_prefix, paths, timeout_s=90))

    lags = {}
    for fmt, (name, container) in FORMATS.items():
        path = watch / name
        rec = records[path]
        local = path.read_bytes()
        body = s3_client.get_object(Bucket=bucket, Key=rec.key)["Body"].read()
        assert len(body) == len(local), f"{fmt}: size differs"
        assert hashlib.sha256(body).hexdigest() == hashlib.sha256(local).hexdigest(), fmt
        errors = _decode_errors(body, path.suffix, tmp_path)
        assert errors == "", f"{fmt} does not decode cleanly: {errors[:500]}"

        meta_text = s3_client.get_object(Bucket=bucket, Key=rec.key + ".metadata.json")[
            "Body"
        ].read()
        assert TEST_SECRET_KEY.encode() not in meta_text
        meta = json.loads(meta_text)
        assert meta["stream_id"] == rec.stream_id
        assert meta["key"] == rec.key and meta["bucket"] == bucket
        assert meta["source"]["name"] == name
        assert meta["size_bytes"] == len(local)
        assert meta["checksums"]["sha256"] == hashlib.sha256(local).hexdigest()
        assert meta["part_count"] == len(meta["parts"]) >= 1
        assert sum(p["size_bytes"] for p in meta["parts"]) == len(local)
        media = meta["media"]
        assert media is not None, f"{fmt}: not probed"
        assert media["container"] == container
        assert media["video_codec"] == "h264" and media["audio_codec"] == "aac"
        assert (media["width"], media["height"]) == (640, 360)
        assert media["frame_rate"] == pytest.approx(25, rel=0.01)
        assert media["duration_s"] == pytest.approx(RECORD_SECONDS, abs=0.6)
        completed = datetime.fromisoformat(rec.completed_at).timestamp()
        lags[fmt] = round(completed - ended_at[fmt], 2)

    status = subprocess.run(
        [sys.executable, "-m", "tailup", "status", "--json", "--redis-url", redis_server.url,
         "--redis-prefix", key_prefix],
        capture_output=True, text=True, timeout=60, check=True, env=daemon_env(), cwd=tmp_path,
    )  # fmt: skip
    rows = {row["path"]: row for row in json.loads(status.stdout)}
    for path in paths:
        row = rows[str(path)]
        assert row["state"] == "completed" and row["error"] is None
        assert row["bytes_uploaded"] == row["file_size"] == path.stat().st_size
        assert row["key"] == records[path].key and row["parts"] >= 1

    # Not asserted (speed belongs in bench/): printed for the closing note and CI logs.
    print(f"\nseconds from ffmpeg exit to verified object: {lags}")
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(timeout=30) == 0, daemon.log_tail()
