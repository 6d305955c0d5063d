"""`tailup url`: a recording uploaded by a real daemon (SeaweedFS, Redis), played back from the
bucket with a plain HTTP GET of the presigned URL; the refusals; no signature in any log."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from daemonproc import run_cli
from harness import IsolatedSettings, cli_here, isolate_cli, running_daemon
from tailup.dev import RedisServer, SeaweedS3
from tailup.model import StreamRecord, StreamState
from tailup.observe import configure_logging
from tailup.plan import MiB
from tailup.playback import presign_target

DATA = hashlib.shake_256(b"playback").digest(7 * MiB + 321)
GONE = hashlib.shake_256(b"playback-gone").digest(1 * MiB)


def _get(url: str) -> bytes:
    assert urlsplit(url).hostname == "127.0.0.1", url
    with urllib.request.urlopen(url, timeout=30) as response:  # no credentials: the URL alone
        body: bytes = response.read()
        return body


async def _cli(args: list[str], env: dict[str, str]) -> Any:
    return await asyncio.to_thread(run_cli, args, env)


async def test_url_downloads_the_recording_byte_for_byte_and_refuses_what_it_cannot_give(
    tmp_path: Path,
    s3_server: SeaweedS3,
    redis_server: RedisServer,
    bucket: str,
    key_prefix: str,
    s3_client: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Two runs are real `tailup` processes (a refusal, and the URLs on stdout); the others run
    the same command in this process (harness.cli_here): the command is their subject."""
    for name, value in s3_server.env().items():  # the credentials of the daemon and the CLI
        monkeypatch.setenv(name, value)
    isolate_cli(monkeypatch, tmp_path)
    watch = tmp_path / "recordings"
    watch.mkdir()
    cam, gone, live = watch / "cam.mp4", watch / "gone.mp4", watch / "live.mp4"
    connection = ["--endpoint-url", s3_server.endpoint_url, "--bucket", bucket]
    connection += ["--redis-url", redis_server.url, "--redis-prefix", key_prefix]
    env = s3_server.env()
    records: dict[Path, StreamRecord] = {}
    async with running_daemon(
        watch=watch,
        bucket=bucket,
        endpoint_url=s3_server.endpoint_url,
        redis_url=redis_server.url,
        key_prefix=key_prefix,
    ) as daemon:
        cam.write_bytes(DATA)
        gone.write_bytes(GONE)
        for path in (cam, gone):
            records[path] = await daemon.wait_for_state(path, {StreamState.COMPLETED})
        with live.open("wb") as handle:
            handle.write(DATA[: 6 * MiB])
            handle.flush()
            live_record = await daemon.wait_for_state(live, {StreamState.UPLOADING})
            # Not completed: refused, naming its state; no URL on stdout.
            refused = await _cli(["url", live_record.stream_id[:12], *connection], env)
            assert refused.returncode == 1, refused.stderr
            assert "is uploading: there is no recording to play" in refused.stderr
            assert refused.stdout == ""

    # `status --json` and `-o wide` give the stream id and the key `url` takes.
    listed = await cli_here(capsys, ["status", "--json", *connection])
    rows = {row["path"]: row for row in json.loads(listed.stdout)}
    row = rows[str(cam)]
    assert row["state"] == "completed" and row["key"] == records[cam].key
    wide = await cli_here(capsys, ["status", "-o", "wide", *connection])
    line = next(x for x in wide.stdout.splitlines() if x.startswith(records[cam].stream_id))
    assert records[cam].key in line.split("\t")

    # By the short id `status` shows: the recording, byte for byte, and its metadata.json.
    short = row["stream_id"][:12]
    given = await _cli(["url", short, "--metadata", "--expires", "15m", *connection], env)
    assert given.returncode == 0, given.stderr
    url, metadata_url = given.stdout.splitlines()
    assert _get(url) == DATA
    document = json.loads(_get(metadata_url))
    assert document["checksums"]["sha256"] == hashlib.sha256(DATA).hexdigest()
    assert parse_qs(urlsplit(url).query)["X-Amz-Expires"] == ["900"]
    assert f"s3://{bucket}/{records[cam].key}" in given.stderr and "valid until" in given.stderr
    signature = parse_qs(urlsplit(url).query)["X-Amz-Signature"][0]
    assert signature not in given.stderr

    # By its key: one line, the default hour.
    by_key = await cli_here(capsys, ["url", records[cam].key, *connection])
    assert by_key.returncode == 0, by_key.stderr
    (only,) = by_key.stdout.splitlines()
    assert _get(only) == DATA
    assert parse_qs(urlsplit(only).query)["X-Amz-Expires"] == ["3600"]

    # Another upload replaced the object since: the URL (of what is there), and a note saying so.
    s3_client.put_object(Bucket=bucket, Key=records[gone].key, Body=b"something else")
    replaced = await cli_here(capsys, ["url", records[gone].stream_id, *connection])
    assert replaced.returncode == 0, replaced.stderr
    assert _get(replaced.stdout.strip()) == b"something else"
    assert "another upload replaced it since" in replaced.stderr

    # The object is gone though the stream completed: said, after the HEAD, with no URL.
    s3_client.delete_object(Bucket=bucket, Key=records[gone].key)
    missing = await cli_here(capsys, ["url", records[gone].stream_id, *connection])
    assert missing.returncode == 1 and missing.stdout == ""
    assert f"no object at s3://{bucket}/{records[gone].key}" in missing.stderr
    assert "is completed" in missing.stderr

    # Neither a stream nor a key.
    unknown = await cli_here(capsys, ["url", "no/such/recording.mp4", *connection])
    assert unknown.returncode == 1 and unknown.stdout == ""
    assert "no object at" in unknown.stderr and "no stream matches" in unknown.stderr

    # --expires beyond S3's 7 days, malformed, or nothing: usage errors (exit 2), before any
    # lookup.
    for expires, said in [
        ("8d", "more than the 7 days"),
        ("604801", "more than the 7 days"),
        ("soon", "Accepted: a number of seconds"),
        ("0", "under 1 s"),
    ]:
        bad = await cli_here(capsys, ["url", short, "--expires", expires, *connection])
        assert bad.returncode == 2 and bad.stdout == "", (expires, bad.stderr)
        assert f"--expires: {expires!r}" in bad.stderr or f"got {expires!r}" in bad.stderr
        assert said in bad.stderr, bad.stderr
    longest = await cli_here(capsys, ["url", short, "--expires", "7d", *connection])
    assert longest.returncode == 0, longest.stderr
    assert parse_qs(urlsplit(longest.stdout.strip()).query)["X-Amz-Expires"] == ["604800"]


async def test_no_signature_of_a_presigned_url_in_the_debug_logs(
    tmp_path: Path,
    s3_server: SeaweedS3,
    redis_server: RedisServer,
    bucket: str,
    key_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    watch = tmp_path / "recordings"
    watch.mkdir()
    settings = IsolatedSettings(
        bucket=bucket,
        endpoint_url=s3_server.endpoint_url,
        redis_url=redis_server.url,
        redis_prefix=key_prefix,
    )
    async with running_daemon(
        watch=watch,
        bucket=bucket,
        endpoint_url=s3_server.endpoint_url,
        redis_url=redis_server.url,
        key_prefix=key_prefix,
    ) as daemon:
        (watch / "cam.mp4").write_bytes(GONE)
        record = await daemon.wait_for_state(watch / "cam.mp4", {StreamState.COMPLETED})
    logs = io.StringIO()
    configure_logging("json", "debug", stream=logs)  # botocore logs what it signs at debug
    playback = await presign_target(
        settings, record.stream_id, expires_s=600, metadata=True, now=datetime.now(UTC)
    )
    text = logs.getvalue()
    assert _get(playback.url) == GONE
    # botocore did describe the presigning at debug (the search below is not of an empty log);
    # its own SigV4 signer logs the signature (with awscrt, botocore signs with the CRT, which
    # logs nothing of it), which the redacting formatter hides.
    assert '"Selected auth type \\"v4\\" as \\"s3v4\\"' in text and "presigned a GET url" in text
    if '"logger": "botocore.auth"' in text:
        assert "Signature:\\n***" in text
    for url in (playback.url, str(playback.metadata_url)):
        query = parse_qs(urlsplit(url).query)
        for secret in (query["X-Amz-Signature"][0], query["X-Amz-Credential"][0]):
            assert secret not in text
        assert url not in text
