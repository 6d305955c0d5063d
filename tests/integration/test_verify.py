"""`tailup verify`: objects uploaded by a real daemon, checked by the CLI, then tampered with."""

from __future__ import annotations

import asyncio
import hashlib
import re
from pathlib import Path
from typing import Any

import pytest

from daemonproc import run_cli
from harness import cli_here, isolate_cli, running_daemon
from tailup.dev import RedisServer, SeaweedS3
from tailup.model import StreamRecord, StreamState
from tailup.plan import MiB

DATA_A = hashlib.shake_256(b"verify-a").digest(8 * MiB + 123)
DATA_B = hashlib.shake_256(b"verify-b").digest(11 * MiB + 7)


async def _verify(target: str, connection: list[str], env: dict[str, str]) -> tuple[int, str]:
    """`tailup verify` as a real process."""
    result = await asyncio.to_thread(run_cli, ["verify", target, *connection], env)
    return result.returncode, result.stdout + result.stderr


async def _verify_here(
    capsys: pytest.CaptureFixture[str], target: str, connection: list[str]
) -> tuple[int, str]:
    """The same command in this process (harness.cli_here): no interpreter to start."""
    result = await cli_here(capsys, ["verify", target, *connection])
    return result.returncode, result.stdout + result.stderr


def _line(output: str, name: str) -> str:
    """The report line of check ``name`` ("  ok       name: ..." or "  DIFFERS  name: ...")."""
    pattern = re.compile(rf"^\s+(ok|DIFFERS)\s+{re.escape(name)}:")
    return next(line for line in output.splitlines() if pattern.match(line))


async def test_verify_matches_untouched_objects_and_names_each_difference(
    tmp_path: Path,
    s3_server: SeaweedS3,
    redis_server: RedisServer,
    bucket: str,
    key_prefix: str,
    s3_client: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The first two runs are real `tailup verify` processes (a refusal, a match); the others
    run the command in this process: the checks are their subject."""
    for name, value in s3_server.env().items():  # the credentials of the daemon and the CLI
        monkeypatch.setenv(name, value)
    isolate_cli(monkeypatch, tmp_path)
    watch = tmp_path / "recordings"
    watch.mkdir()
    a, b, live = watch / "a.mp4", watch / "b.mp4", watch / "live.mp4"
    records: dict[Path, StreamRecord] = {}
    connection = ["--endpoint-url", s3_server.endpoint_url, "--bucket", bucket]
    connection += ["--redis-url", redis_server.url, "--redis-prefix", key_prefix]
    env = s3_server.env()
    async with running_daemon(
        watch=watch,
        bucket=bucket,
        endpoint_url=s3_server.endpoint_url,
        redis_url=redis_server.url,
        key_prefix=key_prefix,
    ) as daemon:
        a.write_bytes(DATA_A)
        b.write_bytes(DATA_B)
        for path in (a, b):
            records[path] = await daemon.wait_for_state(path, {StreamState.COMPLETED})
        with live.open("wb") as handle:
            handle.write(DATA_A[: 6 * MiB])
            handle.flush()
            live_record = await daemon.wait_for_state(live, {StreamState.UPLOADING})
            code, out = await _verify(live_record.stream_id, connection, env)
            assert code == 1 and "is uploading, not completed" in out, out

    # Untouched, by stream id and by key: every check passes.
    code, out = await _verify(records[a].stream_id, connection, env)
    assert code == 0, out
    assert out.rstrip().endswith("MATCH")
    assert "parts (metadata.json): 2 parts match" in out
    assert "bytes (local file): every byte matches" in out
    assert "ok" in _line(out, "crc32 of the whole object (metadata.json)")
    code, out = await _verify_here(capsys, records[a].key, connection)
    assert code == 0, out

    # One byte changed inside part 2, same size: the part, the offset and the hashes differ.
    tampered = bytearray(DATA_B)
    tampered[6 * MiB + 3] ^= 0xFF
    s3_client.put_object(Bucket=bucket, Key=records[b].key, Body=bytes(tampered))
    code, out = await _verify_here(capsys, records[b].stream_id, connection)
    assert code == 1, out
    assert out.rstrip().splitlines()[-1].startswith("DIFFERS")
    parts = _line(out, "parts (metadata.json)")
    assert "DIFFERS" in parts and "part 2 (bytes 5242880-10485759)" in parts
    assert "part 1 " not in parts and "part 3 " not in parts
    assert "first different byte at offset 6291459" in _line(out, "bytes (local file)")
    assert "DIFFERS" in _line(out, "sha256 (metadata.json)")
    assert "DIFFERS" in _line(out, "crc32 of the whole object (metadata.json)")
    assert "DIFFERS" in _line(out, "ETag in S3 (metadata.json)")
    assert "ok" in _line(out, "size in bytes (metadata.json)")

    # The local file is gone: metadata.json alone decides, and still catches a short object.
    a.unlink()
    code, out = await _verify_here(capsys, records[a].key, connection)
    assert code == 0 and "local file" not in out, out
    s3_client.put_object(Bucket=bucket, Key=records[a].key, Body=DATA_A[:1000])
    code, out = await _verify_here(capsys, records[a].key, connection)
    assert code == 1, out
    assert f"object 1000, expected {len(DATA_A)}" in _line(out, "size in bytes (metadata.json)")

    # No object at all.
    code, out = await _verify_here(capsys, "streams/none/missing.mp4", connection)
    assert code == 1 and "no object at s3://" in out


async def test_verify_without_a_sha256_checks_the_whole_object_crc(
    tmp_path: Path,
    s3_server: SeaweedS3,
    redis_server: RedisServer,
    bucket: str,
    key_prefix: str,
    s3_client: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    isolate_cli(monkeypatch, tmp_path)
    watch = tmp_path / "recordings"
    watch.mkdir()
    path = watch / "nosha.ts"
    connection = ["--endpoint-url", s3_server.endpoint_url, "--bucket", bucket]
    connection += ["--redis-url", redis_server.url, "--redis-prefix", key_prefix]
    async with running_daemon(
        watch=watch,
        bucket=bucket,
        endpoint_url=s3_server.endpoint_url,
        redis_url=redis_server.url,
        key_prefix=key_prefix,
        sha256="off",
    ) as daemon:
        path.write_bytes(DATA_B)
        record = await daemon.wait_for_state(path, {StreamState.COMPLETED})
    assert record.sha256 == ""
    path.unlink()  # metadata.json alone decides
    code, out = await _verify_here(capsys, record.key, connection)
    assert code == 0, out
    assert "ok" in _line(out, "crc32 of the whole object (metadata.json)")
    assert "sha256 (metadata.json)" not in out
    tampered = bytearray(DATA_B)
    tampered[3] ^= 0x01
    s3_client.put_object(Bucket=bucket, Key=record.key, Body=bytes(tampered))
    code, out = await _verify_here(capsys, record.key, connection)
    assert code == 1, out
    assert "DIFFERS" in _line(out, "crc32 of the whole object (metadata.json)")
