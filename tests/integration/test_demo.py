"""The demo on the real servers of the fixtures: a live recording whose parts reach S3 while it is
being written, shown once a second, then the verified object."""

from __future__ import annotations

import io
import itertools
import json
import re
from pathlib import Path

from rich.console import Console

from tailup.cli.demo import demo_with_servers, progress_line
from tailup.dev import RedisServer, SeaweedS3


def test_the_demo_shows_bytes_in_s3_while_recording(
    tmp_path: Path, s3_server: SeaweedS3, bucket: str, redis_server: RedisServer, key_prefix: str
) -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, soft_wrap=True)  # piped: a line per sample
    result = demo_with_servers(
        console, s3_server, bucket, redis_server.url, key_prefix, workdir=tmp_path, seconds=6
    )
    text = out.getvalue()
    lines = text.splitlines()
    samples = result.samples
    # Every sample is a printed line, in order.
    shown = [line for line in lines if line in {progress_line(s) for s in samples}]
    assert shown == [progress_line(s) for s in samples]

    during = [s for s in samples if s.recording]
    assert len(during) >= 4, text  # of about 6
    # A sample a second while the recorder writes (not faster, and not only at the end).
    gaps = [b.elapsed_s - a.elapsed_s for a, b in itertools.pairwise(during)]
    assert all(0.9 <= gap < 3.0 for gap in gaps), gaps
    # The point of tailup: parts were in S3 while the file was still being written.
    early = [s for s in during if s.in_s3 > 0]
    assert early, text
    assert early[0].on_disk is not None and early[0].in_s3 < early[0].on_disk
    assert early[0].parts >= 1 and early[0].state == "uploading"
    # Then the verified result: completed, the whole file in S3, byte for byte.
    last = samples[-1]
    assert not last.recording and last.state == "completed"
    assert last.in_s3 == last.on_disk == int(result.record["final_size"])
    assert result.completed_s >= result.recorded_s
    assert "MATCH: the object in S3 is the recording, byte for byte" in text
    assert "were in S3 already" in text
    # Piped, metadata.json comes whole (no panel cutting it at 80 columns): valid JSON, with the
    # recording's full SHA-256.
    title = f"s3://{bucket}/{result.record['key']}.metadata.json\n"
    assert title in text, text
    document, _ = json.JSONDecoder().raw_decode(text.split(title, 1)[1])
    assert document["checksums"]["sha256"] == result.record["sha256"]
    assert re.fullmatch(r"[0-9a-f]{64}", document["checksums"]["sha256"])
