"""`tailup demo`: the whole path on one machine, nothing to configure.

Starts a local S3 server (SeaweedFS) and a private Redis on loopback, runs `tailup run` on a demo
folder, records a live video into it with ffmpeg, waits for the verified object, and shows the
object, its metadata.json and the SHA-256 match. Then it stops everything it started.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.syntax import Syntax

from tailup.devservers import RedisServer, SeaweedS3, record_cmd

BUCKET = "tailup-demo"
REDIS_PREFIX = "tailup-demo"
DEMO_ACCESS_KEY = "tailup-demo"
DEMO_SECRET_KEY = "tailup-demo-secret"


def run_demo(*, seconds: float, workdir: Path) -> int:
    console = Console()
    workdir = workdir.resolve()
    for sub in ("s3", "redis", "recordings"):
        (workdir / sub).mkdir(parents=True, exist_ok=True)
    watch = workdir / "recordings"
    recording = watch / f"demo-{time.strftime('%Y%m%d-%H%M%S')}.mp4"
    console.rule("[bold]tailup demo")
    with console.status("starting a local S3 server (SeaweedFS) and Redis on 127.0.0.1 ..."):
        s3 = SeaweedS3(workdir / "s3", access_key=DEMO_ACCESS_KEY, secret_key=DEMO_SECRET_KEY)
        redis = RedisServer(workdir / "redis")
        s3.start()
        redis.start()
    try:
        s3.create_bucket(BUCKET) if not _bucket_exists(s3) else None
        console.print(f"S3 at {s3.endpoint_url} (bucket {BUCKET}), Redis at {redis.url}")
        return _with_servers(console, s3, redis, watch, recording, seconds, workdir)
    finally:
        with console.status("stopping the local servers ..."):
            redis.close()
            s3.close()


def _bucket_exists(s3: SeaweedS3) -> bool:
    client = s3.boto3_client()
    try:
        client.head_bucket(Bucket=BUCKET)
        return True
    except Exception:
        return False
    finally:
        client.close()


def _with_servers(
    console: Console,
    s3: SeaweedS3,
    redis: RedisServer,
    watch: Path,
    recording: Path,
    seconds: float,
    workdir: Path,
) -> int:
    env = _demo_environment(s3.env())
    connection = [
        "--bucket", BUCKET, "--endpoint-url", s3.endpoint_url,
        "--redis-url", redis.url, "--redis-prefix", REDIS_PREFIX,
    ]  # fmt: skip
    log_path = workdir / "tailup.log"
    console.print(f"[bold]tailup run[/] --watch {watch} (log: {log_path})")
    with log_path.open("ab") as log:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "tailup", "run", "--watch", str(watch), *connection,
             "--log-format", "console"],
            env=env, cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        _wait_for_log(log_path, "watching", daemon)
        started = time.monotonic()
        with console.status(f"recording {seconds:g} s of live video into {recording.name} ..."):
            subprocess.run(
                record_cmd(recording, "mp4", seconds, size="1280x720", bitrate="12M", gop=25),
                check=True,
            )
        closed = time.monotonic()
        size = recording.stat().st_size
        console.print(f"recorded {recording.name}: {size:,} bytes in {closed - started:.1f} s")
        with console.status("waiting for the verified object ..."):
            record = asyncio.run(_wait_completed(redis.url, recording, timeout_s=120))
        lag = time.monotonic() - closed
        console.print(f"[green]completed[/] {lag:.1f} s after the recorder closed the file")
        _show_result(console, s3, record, recording)
        subprocess.run(
            [sys.executable, "-m", "tailup", "status", *connection],
            env=env, cwd=workdir, check=False,
        )  # fmt: skip
        return 0
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()


def _demo_environment(s3_env: dict[str, str]) -> dict[str, str]:
    """The environment of the demo's own `tailup` commands: none of the user's settings (no
    TAILUP_ variable, no TAILUP_CONFIG; they run in the demo folder, away from any .env), so a
    production config or an `after_upload = "delete"` cannot reach the demo."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("TAILUP_")}
    if env.get("PYTHONPATH"):  # they run elsewhere: keep a relative PYTHONPATH pointing here
        parts = env["PYTHONPATH"].split(os.pathsep)
        env["PYTHONPATH"] = os.pathsep.join(os.path.abspath(p) if p else p for p in parts)
    return {**env, **s3_env}


def _wait_for_log(log_path: Path, word: str, daemon: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if word in log_path.read_text(errors="replace"):
            return
        if daemon.poll() is not None:
            raise SystemExit(f"tailup run exited early:\n{log_path.read_text(errors='replace')}")
        time.sleep(0.1)
    raise SystemExit(f"tailup run did not start in 30 s; see {log_path}")


async def _wait_completed(redis_url: str, path: Path, timeout_s: float) -> dict[str, Any]:
    from tailup.checkpoint import RedisCheckpointStore
    from tailup.model import StreamState

    async with (
        RedisCheckpointStore.connect(redis_url, REDIS_PREFIX) as cps,
        asyncio.timeout(timeout_s),
    ):
        while True:
            stream_id = await cps.stream_for_path(str(path))
            loaded = await cps.load(stream_id) if stream_id else None
            if loaded and loaded[0].state is StreamState.COMPLETED:
                return loaded[0].to_hash()
            if loaded and not loaded[0].state.is_live:
                raise SystemExit(f"stream ended {loaded[0].state.value}: {loaded[0].error}")
            await asyncio.sleep(0.1)


def _show_result(console: Console, s3: SeaweedS3, record: dict[str, Any], path: Path) -> None:
    client = s3.boto3_client()
    try:
        key = record["key"]
        body = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        metadata = client.get_object(Bucket=BUCKET, Key=key + ".metadata.json")["Body"].read()
    finally:
        client.close()
    local_sha = hashlib.sha256(path.read_bytes()).hexdigest()
    object_sha = hashlib.sha256(body).hexdigest()
    console.print(f"object  s3://{BUCKET}/{key}  ({len(body):,} bytes)")
    console.print(
        Panel(
            Syntax(json.dumps(json.loads(metadata), indent=2), "json"),
            title=f"s3://{BUCKET}/{key}.metadata.json",
        )
    )
    console.print(f"sha256 of the file:   {local_sha}")
    console.print(f"sha256 of the object: {object_sha}")
    if local_sha == object_sha == record["sha256"]:
        console.print("[bold green]MATCH: the object in S3 is the recording, byte for byte[/]")
    else:
        console.print("[bold red]MISMATCH[/]")
        raise SystemExit(1)
