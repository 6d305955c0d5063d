"""What a salvaged prefix of a real ffmpeg recording is: its metadata.json says whether it plays
cut short, and PyAV agrees (TS, Matroska and fragmented MP4 decode; a plain MP4, whose moov
comes at the end, does not). The prefix is uploaded as a stream's first parts on SeaweedFS."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import av
import pytest

from tailup.dev import SeaweedS3, record_cmd
from tailup.integrity import crc32_of
from tailup.keys import metadata_key
from tailup.model import PartRecord, StreamRecord
from tailup.plan import MiB
from tailup.s3 import S3MultipartStore
from tailup.salvage import Candidate, Salvager

pytestmark = pytest.mark.asyncio

PART = 5 * MiB


@pytest.fixture
async def seaweed(
    s3_server: SeaweedS3, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[S3MultipartStore, str]]:
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    async with S3MultipartStore.connect(
        bucket, endpoint_url=s3_server.endpoint_url, region="us-east-1"
    ) as store:
        yield store, bucket


def decoded_frames(path: Path) -> int:
    """Frames that decode, up to the cut (where a fragment or packet ends short, PyAV raises:
    a player stops there)."""
    frames = 0
    try:
        with av.open(str(path)) as container:
            for _ in container.decode(video=0):
                frames += 1
    except (av.error.FFmpegError, OSError):
        pass
    return frames


@pytest.mark.parametrize(
    ("fmt", "ext", "plays"),
    [("ts", "ts", "yes"), ("mkv", "mkv", "yes"), ("fmp4", "mp4", "yes"), ("mp4", "mp4", "no")],
)
async def test_a_salvaged_prefix_plays_as_its_metadata_says(
    seaweed: tuple[S3MultipartStore, str], tmp_path: Path, fmt: str, ext: str, plays: str
) -> None:
    store, bucket = seaweed
    source = tmp_path / f"rec.{ext}"
    cmd = record_cmd(source, fmt, 8, live=False, bitrate="12M", gop=25)
    await asyncio.to_thread(subprocess.run, cmd, check=True, timeout=120, capture_output=True)
    data = source.read_bytes()
    assert len(data) > PART + MiB
    prefix = data[: PART + MiB]
    key = f"streams/{fmt}/cam.{ext}"
    upload_id = await store.create_upload(key, "video/mp4")
    parts: dict[int, PartRecord] = {}
    for number, body in ((1, prefix[:PART]), (2, prefix[PART:])):
        etag = await store.upload_part(key, upload_id, number, body, crc32_of(body))
        parts[number] = PartRecord(number, len(body), crc32_of(body), etag)
    record = StreamRecord(
        stream_id=f"s-{fmt}",
        path=str(source),
        watch_root=str(tmp_path),
        bucket=bucket,
        key=key,
        base_part_size=PART,
        upload_id=upload_id,
    )

    salvager = Salvager(store, None, now=datetime.now(UTC), dry_run=False)
    row = await salvager.salvage(Candidate(record, parts))

    assert row.outcome == "salvaged", row
    sidecar = json.loads(await store.get_object(metadata_key(key)))
    assert sidecar["salvage"]["plays_truncated"] == plays, sidecar["salvage"]
    obj = await store.get_object(key)
    assert obj == prefix
    out = tmp_path / f"salvaged.{ext}"
    out.write_bytes(obj)
    frames = decoded_frames(out)
    assert (frames > 25) is (plays == "yes"), f"{frames} frames decode"
