"""`tailup status` on a real daemon's records: on a terminal 80 and 200 columns wide (a real
pseudo-terminal, sized as a window is), and piped into grep and cut; and `abort`, `retry` and
`verify` given the short id `status` shows or the file's path.

The daemon (a subprocess, SeaweedFS, Redis) uploads three recordings the test writes itself: one
held open mid-upload, one with a long name completed, one aborted by its short id.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.cells import cell_len

from daemonproc import (
    DaemonProcess,
    poll,
    run_cli,
    run_cli_in_terminal,
    start_daemon,
    tailup_env,
)
from tailup.dev import RedisServer, SeaweedS3
from tailup.plan import MiB
from tailup.statustable import COLUMNS, PLAIN_COLUMNS, plain_value

DATA = hashlib.shake_256(b"status screens").digest(6 * MiB)
LONG_NAME = "2026-12-01T10-00-00_lobby-camera-east-entrance-hall.mkv"


class Site:
    def __init__(self, tmp_path: Path, s3: SeaweedS3, redis: RedisServer, bucket: str, prefix: str):
        self.watch = tmp_path / "recordings"
        self.watch.mkdir()
        self.env = s3.env()
        self.connection = [
            "--bucket", bucket, "--endpoint-url", s3.endpoint_url,
            "--redis-url", redis.url, "--redis-prefix", prefix,
        ]  # fmt: skip
        args = [
            "--watch", str(self.watch), *self.connection,
            "--part-size", "5MiB", "--close-grace", "0.5", "--idle-timeout", "300",
            "--log-format", "json",
        ]  # fmt: skip
        self.daemon: DaemonProcess = start_daemon(args, self.env, tmp_path / "tailup.log", tmp_path)
        self.daemon.wait_for_event("watching")
        self.opened: list[Any] = []

    def cli(self, *args: str) -> Any:
        return run_cli([*args, *self.connection], self.env)

    def rows(self) -> dict[str, dict[str, Any]]:
        """The --json rows, by file name."""
        result = self.cli("status", "--json")
        assert result.returncode == 0, result.stderr
        return {Path(r["path"]).name: r for r in json.loads(result.stdout)}

    def terminal(self, columns: int) -> list[str]:
        shown = run_cli_in_terminal(["status", *self.connection], self.env, columns=columns)
        assert shown.returncode == 0, shown.stderr
        return shown.screen.splitlines()

    def piped(self, pipeline: str) -> str:
        """`tailup status ... | PIPELINE` in a shell."""
        command = shlex.join([sys.executable, "-m", "tailup", "status", *self.connection])
        result = subprocess.run(
            f"{command} | {pipeline}",
            shell=True,
            env=tailup_env(self.env),
            capture_output=True,
            text=True,
            timeout=60,
            cwd=self.watch.parent,  # not the checkout's .env
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    def hold_open(self, name: str, size: int) -> Path:
        path = self.watch / name
        handle = path.open("wb")
        self.opened.append(handle)
        handle.write(DATA[:size])
        handle.flush()
        return path


@pytest.fixture
def site(
    tmp_path: Path, s3_server: SeaweedS3, redis_server: RedisServer, bucket: str, key_prefix: str
) -> Iterator[Site]:
    site = Site(tmp_path, s3_server, redis_server, bucket, key_prefix)
    try:
        yield site
    finally:
        for handle in site.opened:
            handle.close()
        site.daemon.stop()


def _table_line(lines: list[str], row: dict[str, Any]) -> str:
    return next(line for line in lines if line.startswith(row["stream_id"][:12] + " "))


def _header(lines: list[str]) -> list[str]:
    return next(line for line in lines if line.startswith("stream ")).split()


def test_status_at_80_and_200_columns_and_piped_with_short_ids_for_every_command(
    site: Site,
) -> None:
    cam1 = site.hold_open("cam1.mp4", 6 * MiB)  # part 1 in S3, 1 MiB waiting for a full part
    door = site.hold_open("door-cam.ts", 6 * MiB)
    lobby = site.watch / LONG_NAME
    lobby.write_bytes(DATA[: 300 * 1024])  # closed at once: one PUT, completed

    def settled() -> dict[str, dict[str, Any]] | None:
        rows = site.rows()
        if len(rows) < 3:
            return None
        ready = (
            rows["cam1.mp4"]["bytes_uploaded"] == 5 * MiB
            and rows["door-cam.ts"]["bytes_uploaded"] == 5 * MiB
            and rows[LONG_NAME]["state"] == "completed"
        )
        return rows if ready else None

    rows = poll(settled, "two streams mid-upload and one completed", 60, alive=site.daemon)

    # abort by the short id that status shows.
    door_id = rows["door-cam.ts"]["stream_id"]
    aborted = site.cli("abort", door_id[:12], "--reason", "wrong camera")
    assert aborted.returncode == 0, aborted.stderr
    assert aborted.stdout.strip() == f"stream {door_id[:12]} ({door}) aborted: wrong camera"
    rows = poll(
        lambda: (r := site.rows())["door-cam.ts"]["state"] == "aborted" and r,
        "the aborted stream",
        alive=site.daemon,
    )
    live, done, gone = rows["cam1.mp4"], rows[LONG_NAME], rows["door-cam.ts"]

    # 80 columns: one line per stream, nothing wider; short id, state, name, progress.
    lines = site.terminal(80)
    assert max(cell_len(line) for line in lines) <= 80
    header = _header(lines)
    assert header[:5] == ["stream", "state", "file", "uploaded", "/"]
    assert not {"rate", "active", "key"} & set(header)
    line = _table_line(lines, live)
    assert "uploading" in line and "cam1.mp4" in line and "83% 5.0/6.0 MiB" in line
    line = _table_line(lines, done)
    assert "completed" in line and "300.0 KiB" in line
    name = next(word for word in line.split() if word.endswith(".mkv"))
    assert "…" in name and name.startswith("2026-12-01T") and name.endswith("-hall.mkv")
    line = _table_line(lines, gone)
    assert "aborted" in line and "door-cam.ts" in line
    assert any("wrong camera" in line for line in lines)
    assert not any(row["stream_id"] in "\n".join(lines) for row in rows.values())

    # 200 columns: every column.
    lines = site.terminal(200)
    assert max(cell_len(line) for line in lines) <= 200
    assert " ".join(_header(lines)) == " ".join(c.header for c in COLUMNS)
    line = _table_line(lines, done)
    name, key = (w for w in line.split() if w.endswith(".mkv"))
    assert name.startswith("2026-12-01T10") and name.endswith("-entrance-hall.mkv")
    assert key.startswith("streams/") and key.endswith("-hall.mkv")
    assert cell_len(name) > 30 and cell_len(key) > 30  # wider than at 80
    assert "wrong camera" in _table_line(lines, gone)

    # Piped: a header, then one plain line per stream with every field of its --json row.
    header, *plain = site.piped("cat").splitlines()
    assert header.split("\t") == list(PLAIN_COLUMNS)
    by_id = {line.split("\t")[0]: line.split("\t") for line in plain}
    assert set(by_id) == {row["stream_id"] for row in rows.values()}
    now = site.rows()
    for row in now.values():
        fields = dict(zip(PLAIN_COLUMNS, by_id[row["stream_id"]], strict=True))
        varying = {"rate_bytes_per_s", "last_activity"}  # time passes between the two looks
        assert {k: v for k, v in fields.items() if k not in varying} == {
            k: plain_value(row[k]) for k in PLAIN_COLUMNS if k not in varying
        }
    # grep finds the camera; cut takes any field.
    (found,) = site.piped("grep cam1").splitlines()
    assert found.split("\t")[:3] == [live["stream_id"], str(cam1), "uploading"]
    cut = site.piped("cut -f1,3 | sort").splitlines()
    assert cut == sorted(
        ["stream_id\tstate", *(f"{r['stream_id']}\t{r['state']}" for r in now.values())]
    )

    # retry and verify by short id or path; a prefix nobody has is a clear error.
    retried = site.cli("retry", live["stream_id"][:12])
    assert retried.returncode == 0, retried.stderr
    assert retried.stdout.strip() == (
        f"stream {live['stream_id'][:12]} ({cam1}) is uploading; nothing to retry"
    )
    unknown = site.cli("retry", "ffff0000ffff")
    assert unknown.returncode == 1 and "no stream matches 'ffff0000ffff'" in unknown.stderr
    verified = site.cli("verify", str(lobby))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.splitlines()[-1] == "MATCH" and done["key"] in verified.stdout
    verified = site.cli("verify", done["stream_id"][:12])
    assert verified.returncode == 0 and verified.stdout.splitlines()[-1] == "MATCH"
