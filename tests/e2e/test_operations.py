"""Operations, end to end: `tailup run --metrics-port` as a subprocess during a real upload.

The test writes the recording itself and holds the file open, so "mid-upload" is a state the test
controls (one full part in S3, the rest held back), not a moment it hopes to catch.
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from rich.cells import cell_len

from conftest import TEST_ACCESS_KEY, TEST_SECRET_KEY
from daemonproc import (
    DaemonProcess,
    dockerfile_healthcheck_argv,
    http_get,
    metric_samples,
    poll,
    run_cli,
    run_cli_in_terminal,
    sample,
    start_daemon,
    tailup_env,
)
from tailup.dev import RedisServer, SeaweedS3, free_port
from tailup.plan import MiB
from tailup.statustable import plain_header

DATA = hashlib.shake_256(b"operations").digest(9 * MiB)


@dataclass
class Ops:
    daemon: DaemonProcess
    port: int
    watch: Path
    env: dict[str, str]
    connection: list[str]
    opened: list[Any] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        status, body = http_get(self.url("/metrics"))
        assert status == 200
        return metric_samples(body)

    def healthz(self) -> tuple[int, dict[str, Any]]:
        status, body = http_get(self.url("/healthz"))
        return status, json.loads(body)

    def streams(self) -> list[dict[str, Any]]:
        status, body = http_get(self.url("/streams"))
        assert status == 200
        rows: list[dict[str, Any]] = json.loads(body)
        return rows

    def status_json(self) -> list[dict[str, Any]]:
        result = run_cli(["status", "--json", *self.connection], self.env)
        assert result.returncode == 0, result.stderr
        rows: list[dict[str, Any]] = json.loads(result.stdout)
        return rows

    def status_screen(self, columns: int = 200) -> str:
        """`tailup status` on a terminal ``columns`` wide: no line wider."""
        shown = run_cli_in_terminal(["status", *self.connection], self.env, columns=columns)
        assert shown.returncode == 0, shown.stderr
        assert max(cell_len(line) for line in shown.screen.splitlines()) <= columns
        return shown.screen

    def status_piped(self) -> list[dict[str, str]]:
        """`tailup status | ...`: the plain rows, each as {field: text}."""
        result = run_cli(["status", *self.connection], self.env)
        assert result.returncode == 0, result.stderr
        header, *lines = str(result.stdout).splitlines()
        return [dict(zip(header.split("\t"), line.split("\t"), strict=True)) for line in lines]

    def row(self, rows: list[dict[str, Any]], path: Path) -> dict[str, Any]:
        return next(r for r in rows if r["path"] == str(path))


def _start_ops(
    tmp_path: Path, s3: SeaweedS3, redis_url: str, bucket: str, key_prefix: str, *extra: str
) -> Ops:
    watch = tmp_path / "recordings"
    watch.mkdir()
    port = free_port()
    connection = [
        "--bucket", bucket, "--endpoint-url", s3.endpoint_url,
        "--redis-url", redis_url, "--redis-prefix", key_prefix,
    ]  # fmt: skip
    args = [
        "--watch", str(watch), *connection,
        "--part-size", "5MiB", "--close-grace", "0.5", "--idle-timeout", "300",
        "--metrics-port", str(port), "--health-interval", "0.5",
        "--log-format", "json", *extra,
    ]  # fmt: skip
    daemon = start_daemon(args, s3.env(), tmp_path / "tailup.log", tmp_path)
    ops = Ops(daemon, port, watch, s3.env(), connection)
    daemon.wait_for_event("watching")
    poll(lambda: ops.healthz()[0] == 200, "/healthz 200", alive=daemon)
    return ops


@pytest.fixture
def ops(
    tmp_path: Path, s3_server: SeaweedS3, redis_server: RedisServer, bucket: str, key_prefix: str
) -> Iterator[Ops]:
    ops = _start_ops(tmp_path, s3_server, redis_server.url, bucket, key_prefix)
    try:
        yield ops
    finally:
        for handle in ops.opened:
            handle.close()
        ops.daemon.stop()


def _open_recording(ops: Ops, name: str, first_bytes: int) -> tuple[Path, Any]:
    path = ops.watch / name
    handle = path.open("wb")
    ops.opened.append(handle)
    handle.write(DATA[:first_bytes])
    handle.flush()
    return path, handle


def _one_lag_series(ops: Ops) -> tuple[str, float] | None:
    lags = [
        (dict(labels)["stream_id"], value)
        for (name, labels), value in ops.metrics().items()
        if name == "tailup_stream_lag_bytes"
    ]
    return lags[0] if len(lags) == 1 and lags[0][1] == 1 * MiB else None


def _run_healthcheck(port: int) -> int:
    argv = dockerfile_healthcheck_argv()
    argv[0] = sys.executable  # the image's "python"
    env = tailup_env({"TAILUP_METRICS_PORT": str(port)})
    return subprocess.run(argv, env=env, capture_output=True, timeout=30).returncode


def test_metrics_streams_and_status_during_and_after_a_real_upload(ops: Ops) -> None:
    path, handle = _open_recording(ops, "cam1.mp4", 6 * MiB)

    # Mid-upload: part 1 (5 MiB) is in S3, the last 1 MiB waits until a part is full.
    found = poll(lambda: _one_lag_series(ops), "lag of 1 MiB", alive=ops.daemon)
    stream_id = found[0]
    metrics = ops.metrics()
    assert sample(metrics, "tailup_parts_uploaded_total") == 1
    assert sample(metrics, "tailup_bytes_uploaded_total") == 5 * MiB
    assert sample(metrics, "tailup_part_upload_seconds_count") == 1
    assert sample(metrics, "tailup_streams", state="uploading") == 1
    assert sample(metrics, "tailup_dependency_up", dependency="s3") == 1
    assert sample(metrics, "tailup_dependency_up", dependency="redis") == 1

    live = ops.row(ops.streams(), path)
    assert live["stream_id"] == stream_id and live["state"] == "uploading"
    assert (live["bytes_uploaded"], live["file_size"], live["lag_bytes"], live["parts"]) == (
        5 * MiB,
        6 * MiB,
        1 * MiB,
        1,
    )
    from_cli = ops.row(ops.status_json(), path)
    same = ("stream_id", "state", "bytes_uploaded", "file_size", "lag_bytes", "parts", "key")
    assert {k: from_cli[k] for k in same} == {k: live[k] for k in same}
    screen = ops.status_screen()
    line = next(line for line in screen.splitlines() if stream_id[:12] in line)
    assert line.startswith(stream_id[:12] + " ")  # the short id
    assert "uploading" in line and "cam1.mp4" in line and "83% 5.0/6.0 MiB" in line
    assert "1.0 MiB" in line
    (piped,) = [r for r in ops.status_piped() if r["stream_id"] == stream_id]
    assert piped["path"] == str(path) and piped["state"] == "uploading"
    assert (piped["bytes_uploaded"], piped["file_size"]) == (str(5 * MiB), str(6 * MiB))
    _watch_shows(ops, stream_id)

    # The recorder finishes: the rest is written, the file closed, the object completed.
    handle.write(DATA[6 * MiB :])
    handle.close()
    done = poll(
        lambda: (r := ops.row(ops.streams(), path))["state"] == "completed" and r,
        "completed stream",
        60,
        alive=ops.daemon,
    )
    assert done["bytes_uploaded"] == len(DATA) and done["lag_bytes"] is None
    assert done["sha256"] == hashlib.sha256(DATA).hexdigest()
    metrics = ops.metrics()
    assert sample(metrics, "tailup_streams_ended_total", outcome="completed") == 1
    assert sample(metrics, "tailup_streams_ended_total", outcome="failed") == 0
    assert sample(metrics, "tailup_finalize_seconds_count") == 1
    assert sample(metrics, "tailup_parts_uploaded_total") == 2  # part 1 unchanged: not resent
    assert sample(metrics, "tailup_bytes_uploaded_total") == len(DATA)
    assert sample(metrics, "tailup_streams", state="uploading") == 0
    assert not [name for name, _ in metrics if name == "tailup_stream_lag_bytes"]

    assert ops.row(ops.status_json(), path)["state"] == "completed"
    line = next(line for line in ops.status_screen().splitlines() if stream_id[:12] in line)
    assert "completed" in line and "9.0 MiB" in line and "%" not in line

    status, body = ops.healthz()
    assert status == 200 and body["status"] == "ok"
    assert body["dependencies"]["redis"]["ok"] and body["dependencies"]["s3"]["ok"]
    assert _run_healthcheck(ops.port) == 0
    assert ops.daemon.stop() == 0


def _watch_shows(ops: Ops, stream_id: str) -> None:
    """`status --watch` into a file refreshes (two samples of plain rows seen in its output, each
    under its header), and Ctrl-C ends it with 0."""
    out = ops.watch.parent / "watch.out"
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tailup", "status", "--watch", "--interval", "0.2",
             *ops.connection],
            env=tailup_env({**ops.env, "COLUMNS": "200"}),
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=ops.watch.parent,  # not the checkout's .env
        )  # fmt: skip
    try:
        poll(
            lambda: out.read_text().count(plain_header()) >= 2,
            "two refreshes of status --watch",
        )
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
    assert code == 0, out.read_text()
    screens = out.read_text().split(plain_header())[1:]
    assert len(screens) >= 2 and all(stream_id in screen for screen in screens[:2])


def test_healthz_turns_503_and_streams_stall_when_s3_stops_answering(
    tmp_path: Path, redis_server: RedisServer, key_prefix: str
) -> None:
    with SeaweedS3(tmp_path / "s3", access_key=TEST_ACCESS_KEY, secret_key=TEST_SECRET_KEY) as s3:
        bucket = s3.create_bucket("ops-health")
        ops = _start_ops(
            tmp_path, s3, redis_server.url, bucket, key_prefix, "--shutdown-grace", "1"
        )
        try:
            _s3_outage(ops, s3)
        finally:
            for handle in ops.opened:
                handle.close()
            code = ops.daemon.stop()
    assert code == 0, ops.daemon.tail()


def _s3_outage(ops: Ops, s3: SeaweedS3) -> None:
    path, handle = _open_recording(ops, "cam2.mp4", 6 * MiB)
    poll(
        lambda: sample(ops.metrics(), "tailup_parts_uploaded_total") == 1,
        "part 1 uploaded",
        alive=ops.daemon,
    )
    s3.kill()

    _, body = poll(
        lambda: (answer := ops.healthz())[0] == 503 and answer, "/healthz 503", alive=ops.daemon
    )
    assert body["status"] == "unhealthy"
    assert body["reason"].startswith("s3 has not answered for ")
    assert body["dependencies"]["redis"]["ok"] is True
    assert body["dependencies"]["s3"]["ok"] is False and body["dependencies"]["s3"]["last_error"]
    assert _run_healthcheck(ops.port) != 0

    # A part that cannot be sent: the stream stalls and retries; the counters say so.
    handle.write(DATA[: 5 * MiB])  # 11 MiB in all: part 2 (5..10 MiB) is full
    handle.flush()

    def stalled() -> bool:
        metrics = ops.metrics()
        return (
            sample(metrics, "tailup_streams", state="stalled") == 1
            and (sample(metrics, "tailup_upload_errors_total", kind="StorageUnavailable") or 0) > 0
            and (sample(metrics, "tailup_retries_total") or 0) > 0
        )

    poll(stalled, "a stalled stream with counted errors and retries", 90, alive=ops.daemon)
    metrics = ops.metrics()
    assert sample(metrics, "tailup_dependency_up", dependency="s3") == 0
    assert sample(metrics, "tailup_dependency_up", dependency="redis") == 1
    row = ops.row(ops.status_json(), path)
    assert row["state"] == "stalled" and "S3" in row["error"]
    failures = [e for e in ops.daemon.events() if e.get("event") == "part upload failed"]
    assert failures and failures[0]["part"] == 2
    assert failures[0]["path"] == str(path) and failures[0]["stream_id"] == row["stream_id"]
