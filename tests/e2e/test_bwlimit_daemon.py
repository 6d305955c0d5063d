"""`tailup run --bwlimit` as a subprocess: the limit is logged at start, shown in /healthz and as
the tailup_bwlimit_bytes_per_second gauge, and a recording uploaded under it is exact."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from daemonproc import http_get, metric_samples, poll, run_cli, sample, start_daemon
from tailup.dev import RedisServer, SeaweedS3, free_port
from tailup.plan import MiB

DATA = hashlib.shake_256(b"bwlimit e2e").digest(7 * MiB + 4321)


def test_the_daemon_logs_shows_and_exports_its_limit_and_uploads_under_it(
    tmp_path: Path, s3_server: SeaweedS3, redis_server: RedisServer, bucket: str, key_prefix: str
) -> None:
    watch = tmp_path / "recordings"
    watch.mkdir()
    port = free_port()
    # One entry: a timetable that applies all day, whatever the local time of the test.
    args = [
        "--watch", str(watch), "--bucket", bucket, "--endpoint-url", s3_server.endpoint_url,
        "--redis-url", redis_server.url, "--redis-prefix", key_prefix,
        "--part-size", "5MiB", "--close-grace", "0.5", "--idle-timeout", "300",
        "--metrics-port", str(port), "--health-interval", "0.5", "--log-format", "json",
        "--bwlimit", "00:00,20Mbit",
    ]  # fmt: skip
    daemon = start_daemon(args, s3_server.env(), tmp_path / "tailup.log", tmp_path)
    try:
        started = daemon.wait_for_event("tailup started")
        assert started["bwlimit"] == "00:00,20Mbit"
        limit = daemon.wait_for_event("bandwidth limit")
        assert limit["bytes_per_second"] == 2_500_000 and limit["timetable"] == "00:00,20Mbit"
        daemon.wait_for_event("watching")

        _, body = poll(
            lambda: (answer := http_get(f"http://127.0.0.1:{port}/healthz"))[0] == 200 and answer,
            "/healthz 200",
            alive=daemon,
        )
        assert json.loads(body)["bwlimit"] == {
            "bytes_per_second": 2_500_000,
            "rate": "2.4 MiB/s",
            "timetable": "00:00,20Mbit",
            "next_change": {"at": "00:00", "rate": "2.4 MiB/s"},
        }
        _, text = http_get(f"http://127.0.0.1:{port}/metrics")
        assert sample(metric_samples(text), "tailup_bwlimit_bytes_per_second") == 2_500_000
        # `tailup status` reads Redis, not the daemon: the daemon publishes its limit there.
        connection = ["--bucket", bucket, "--redis-url", redis_server.url]
        shown = run_cli(["status", *connection, "--redis-prefix", key_prefix], s3_server.env())
        assert shown.returncode == 0, shown.stderr
        said = shown.stdout + shown.stderr
        assert f"daemon pid {daemon.proc.pid}" in said
        assert "--bwlimit 2.4 MiB/s (timetable '00:00,20Mbit')" in said

        staging = tmp_path / "cam.ts"
        staging.write_bytes(DATA)
        os.rename(staging, watch / "cam.ts")
        done = daemon.wait_for_event("stream completed", timeout_s=60)
        assert done["size"] == len(DATA) and done["sha256"] == hashlib.sha256(DATA).hexdigest()
    finally:
        assert daemon.stop() == 0
