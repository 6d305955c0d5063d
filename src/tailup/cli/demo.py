"""`tailup demo`: the whole path on one machine, nothing to configure.

Starts a local S3 server (SeaweedFS) and a private Redis on loopback, runs `tailup run` on a demo
folder, records a live video into it with ffmpeg while showing, once a second, how much of the
growing file is in S3 already (from the stream's record in Redis), waits for the verified object,
and shows the object, its metadata.json and the SHA-256 match. Then it stops everything it
started.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.live import Live
from rich.panel import Panel
from rich.syntax import Syntax
from rich.text import Text

from tailup.units import format_size

if TYPE_CHECKING:
    # The demo imports dev servers when it runs (tests/unit/test_dev_isolation.py).
    from tailup.dev import SeaweedS3

BUCKET = "tailup-demo"
REDIS_PREFIX = "tailup-demo"
DEMO_ACCESS_KEY = "tailup-demo"
DEMO_SECRET_KEY = "tailup-demo-secret"
# Small parts, so several reach S3 while the demo's few seconds of video are being recorded.
DEMO_PART_SIZE = "5MiB"


@dataclass(frozen=True)
class Progress:
    """One sample of the demo's live line: the file on disk against its stream's record."""

    elapsed_s: float
    on_disk: int | None  # None: the recorder has not created the file yet
    in_s3: int  # total_bytes_sent of the stream's record in Redis (parts S3 acknowledged)
    parts: int  # parts checkpointed
    recording: bool  # the recorder is still writing
    state: str = ""  # the stream's state; "" while the daemon has no record of it


def progress_line(p: Progress) -> str:
    """The live line, e.g. ``  4.0 s  recording  on disk 7.2 MiB  in S3 5.0 MiB (69%)  1 part``."""
    phase = "recording" if p.recording else "closed"
    disk = "-" if p.on_disk is None else format_size(p.on_disk)
    share = f" ({100 * p.in_s3 / p.on_disk:.0f}%)" if p.on_disk else ""
    parts = f"{p.parts} part" + ("" if p.parts == 1 else "s")
    state = f"  {p.state}" if p.state else ""
    return (
        f"{p.elapsed_s:5.1f} s  {phase:<9}  on disk {disk:>9}  "
        f"in S3 {format_size(p.in_s3):>9}{share:<7}  {parts}{state}"
    )


class ProgressView:
    """On a terminal one line rewritten in place (rich Live); piped, one printed line per sample."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._live: Live | None = None

    def __enter__(self) -> ProgressView:
        if self._console.is_terminal:
            self._live = Live(Text(""), console=self._console, auto_refresh=False, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)

    def show(self, sample: Progress) -> None:
        line = progress_line(sample)
        if self._live is not None:
            self._live.update(Text(line), refresh=True)
        else:
            self._console.print(line, highlight=False, soft_wrap=True)


@dataclass
class DemoResult:
    samples: list[Progress] = field(default_factory=list)  # the lines shown, in order
    recorded_s: float = 0.0  # when the recorder exited, from its start
    completed_s: float = 0.0  # when the stream was seen completed
    record: dict[str, Any] = field(default_factory=dict)  # the completed stream's record


def run_demo(*, seconds: float, workdir: Path) -> int:
    from tailup.dev import RedisServer, SeaweedS3

    console = Console(soft_wrap=True)  # long lines (URLs, hashes) stay whole, piped or not
    workdir = workdir.resolve()
    for sub in ("s3", "redis", "recordings"):
        (workdir / sub).mkdir(parents=True, exist_ok=True)
    console.rule("[bold]tailup demo")
    with console.status("starting a local S3 server (SeaweedFS) and Redis on 127.0.0.1 ..."):
        s3 = SeaweedS3(workdir / "s3", access_key=DEMO_ACCESS_KEY, secret_key=DEMO_SECRET_KEY)
        redis = RedisServer(workdir / "redis")
        s3.start()
        redis.start()
    try:
        s3.create_bucket(BUCKET) if not _bucket_exists(s3, BUCKET) else None
        console.print(f"S3 at {s3.endpoint_url} (bucket {BUCKET}), Redis at {redis.url}")
        demo_with_servers(
            console, s3, BUCKET, redis.url, REDIS_PREFIX, workdir=workdir, seconds=seconds
        )
        return 0
    finally:
        with console.status("stopping the local servers ..."):
            redis.close()
            s3.close()


def _bucket_exists(s3: SeaweedS3, bucket: str) -> bool:
    client = s3.boto3_client()
    try:
        client.head_bucket(Bucket=bucket)
        return True
    except Exception:
        return False
    finally:
        client.close()


def demo_with_servers(
    console: Console,
    s3: SeaweedS3,
    bucket: str,
    redis_url: str,
    redis_prefix: str,
    *,
    workdir: Path,
    seconds: float,
) -> DemoResult:
    """The demo on servers that run already: `tailup run` on ``workdir``/recordings, a live
    recording into it with a progress line per second, then the verified object."""
    from tailup.dev import record_cmd

    watch = workdir / "recordings"
    watch.mkdir(parents=True, exist_ok=True)
    recording = watch / f"demo-{time.strftime('%Y%m%d-%H%M%S')}.mp4"
    env = _demo_environment(s3.env())
    connection = [
        "--bucket", bucket, "--endpoint-url", s3.endpoint_url,
        "--redis-url", redis_url, "--redis-prefix", redis_prefix,
    ]  # fmt: skip
    log_path = workdir / "tailup.log"
    console.print(f"[bold]tailup run[/] --watch {watch} (log: {log_path})")
    with log_path.open("ab") as log:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "tailup", "run", "--watch", str(watch), *connection,
             "--part-size", DEMO_PART_SIZE, "--log-format", "console"],
            env=env, cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        _wait_for_log(log_path, "watching", daemon)
        console.print(
            f"recording {seconds:g} s of live video into {recording.name} "
            f"({DEMO_PART_SIZE} parts, each sent once full):"
        )
        cmd = record_cmd(recording, "mp4", seconds, size="1280x720", bitrate="12M", gop=25)
        with ProgressView(console) as view:
            result = asyncio.run(_record_and_follow(redis_url, redis_prefix, recording, cmd, view))
        _say_what_happened(console, result)
        _show_result(console, s3, bucket, result.record, recording)
        subprocess.run(
            [sys.executable, "-m", "tailup", "status", *connection],
            env=env, cwd=workdir, check=False,
        )  # fmt: skip
        return result
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()


async def _record_and_follow(
    redis_url: str,
    redis_prefix: str,
    recording: Path,
    cmd: list[str],
    view: ProgressView,
    *,
    timeout_s: float = 120.0,
) -> DemoResult:
    """Run the recorder and show a progress line once a second (and when the recorder closes the
    file) until the stream completed: the file's size on disk against the bytes its record in
    Redis says S3 acknowledged."""
    from tailup.checkpoint import RedisCheckpointStore
    from tailup.model import StreamState

    result = DemoResult()
    started = time.monotonic()
    shown_at = -1.0
    recorder = await asyncio.create_subprocess_exec(*cmd)
    try:
        async with (
            RedisCheckpointStore.connect(redis_url, redis_prefix) as cps,
            asyncio.timeout(timeout_s),
        ):
            while True:
                was_recording = recorder.returncode is None
                # While recording, a sample a second (or at once when the recorder exits); then
                # five a second, so the completion is seen when it happens.
                pause = 0.2 if not was_recording else max(0.0, shown_at + 1.0 - _since(started))
                if was_recording:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(recorder.wait(), pause)
                else:
                    await asyncio.sleep(pause)
                now = _since(started)
                closed = was_recording and recorder.returncode is not None
                if closed:
                    if recorder.returncode != 0:
                        raise SystemExit(f"ffmpeg failed (exit {recorder.returncode})")
                    result.recorded_s = now
                stream_id = await cps.stream_for_path(str(recording))
                loaded = await cps.load(stream_id) if stream_id else None
                record, parts = loaded if loaded is not None else (None, {})
                sample = Progress(
                    elapsed_s=now,
                    on_disk=_size(recording),
                    in_s3=record.total_bytes_sent if record else 0,
                    parts=len(parts),
                    recording=recorder.returncode is None,
                    state=record.state.value if record else "",
                )
                done = record is not None and record.state is StreamState.COMPLETED
                if done or closed or now - shown_at >= 0.95:
                    view.show(sample)
                    result.samples.append(sample)
                    shown_at = now
                if record is not None and done:
                    result.completed_s = now
                    result.record = record.to_hash()
                    return result
                if record is not None and not record.state.is_live:
                    raise SystemExit(f"stream ended {record.state.value}: {record.error}")
    finally:
        if recorder.returncode is None:
            recorder.kill()
            await recorder.wait()


def _since(started: float) -> float:
    return time.monotonic() - started


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None


def _say_what_happened(console: Console, result: DemoResult) -> None:
    at_close = next((s for s in result.samples if not s.recording), None)
    if at_close is not None and at_close.in_s3:
        console.print(
            f"when the recorder closed the file, [bold]{format_size(at_close.in_s3)}[/] of its "
            f"{format_size(at_close.on_disk or 0)} were in S3 already"
        )
    lag = result.completed_s - result.recorded_s
    size = result.samples[-1].on_disk or 0
    console.print(
        f"[green]completed[/] {lag:.1f} s after the recorder closed the file "
        f"({format_size(size)} recorded in {result.recorded_s:.1f} s)"
    )


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


def _show_result(
    console: Console, s3: SeaweedS3, bucket: str, record: dict[str, Any], path: Path
) -> None:
    client = s3.boto3_client()
    try:
        key = record["key"]
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        metadata = client.get_object(Bucket=bucket, Key=key + ".metadata.json")["Body"].read()
    finally:
        client.close()
    local_sha = hashlib.sha256(path.read_bytes()).hexdigest()
    object_sha = hashlib.sha256(body).hexdigest()
    console.print(f"object  s3://{bucket}/{key}  ({len(body):,} bytes)")
    show_metadata(console, f"s3://{bucket}/{key}.metadata.json", metadata)
    console.print(f"sha256 of the file:   {local_sha}")
    console.print(f"sha256 of the object: {object_sha}")
    if local_sha == object_sha == record["sha256"]:
        console.print("[bold green]MATCH: the object in S3 is the recording, byte for byte[/]")
    else:
        console.print("[bold red]MISMATCH[/]")
        raise SystemExit(1)


def show_metadata(console: Console, title: str, metadata: bytes) -> None:
    """metadata.json in a panel on a terminal; elsewhere (a pipe, a file, a CI log) whole, as
    plain JSON under its title: a panel cuts long lines (the SHA-256) at the console's width."""
    text = json.dumps(json.loads(metadata), indent=2)
    if console.is_terminal:
        console.print(Panel(Syntax(text, "json"), title=title))
        return
    console.print(title, highlight=False, markup=False, soft_wrap=True)
    console.out(text, highlight=False)
