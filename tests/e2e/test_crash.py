"""Crash safety end to end: `tailup run` as a subprocess, killed with SIGKILL at random points of
live ffmpeg recordings, stopped with SIGTERM (once, twice), refused by S3 or Redis at start, an
operator's `tailup abort` and `tailup gc`, and a file the daemon may not read.

What was sent is observed in the daemon's own debug log ("part sent": stream, part number, CRC32 of
the bytes, logged when S3 acknowledged the part) and compared with the checkpoint Redis held at the
moment of each kill.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
import random
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from daemonproc import DaemonProcess, poll, run_cli, start_daemon
from faultproxy import FaultProxy
from tailup.checkpoint import RedisCheckpointStore
from tailup.dev import RedisServer, SeaweedS3
from tailup.model import PartRecord, StreamRecord, StreamState, iso, utc_now

pytestmark = pytest.mark.timeout(300)

EXTENSIONS = {
    "mp4": "mp4",
    "faststart": "mp4",
    "fmp4": "mp4",
    "mkv": "mkv",
    "ts": "ts",
    "mov": "mov",
}
TRIALS = int(os.environ.get("TAILUP_CRASH_TRIALS", "3"))
# Under pytest-xdist every worker collects the trials: they share the run's id, so one seed.
BASE_SEED = int(
    os.environ.get("TAILUP_CRASH_SEED")
    or int(os.environ.get("PYTEST_XDIST_TESTRUNUID") or "0", 16) % 2**31
    or random.SystemRandom().randrange(2**31)
)


@dataclass
class Setup:
    tmp: Path
    watch: Path
    bucket: str
    s3: SeaweedS3
    redis_url: str
    key_prefix: str
    runs: list[DaemonProcess] = field(default_factory=list)
    # Short: each completion waits for it. The kill trials set it back to 1 s: their mp4 muxers
    # open the file again at its end (faststart's second pass), which is what a grace is for.
    close_grace_s: str = "0.2"

    @property
    def env(self) -> dict[str, str]:
        return self.s3.env()

    def args(self, *extra: str, endpoint: str | None = None) -> list[str]:
        return [
            "--watch", str(self.watch),
            "--bucket", self.bucket,
            "--endpoint-url", endpoint or self.s3.endpoint_url,
            "--redis-url", self.redis_url,
            "--redis-prefix", self.key_prefix,
            "--part-size", "5MiB",
            "--close-grace", self.close_grace_s,
            "--log-format", "json",
            *extra,
        ]  # fmt: skip

    def connection(self) -> list[str]:
        return [
            "--bucket", self.bucket,
            "--endpoint-url", self.s3.endpoint_url,
            "--redis-url", self.redis_url,
            "--redis-prefix", self.key_prefix,
        ]  # fmt: skip

    def start(
        self, *extra: str, endpoint: str | None = None, ready: bool = True, **kwargs: Any
    ) -> DaemonProcess:
        """Start `tailup run`; with ``ready``, wait until it watches (live streams resumed)."""
        log = self.tmp / f"tailup-run{len(self.runs)}.log"
        daemon = start_daemon(
            self.args(*extra, endpoint=endpoint), self.env, log, self.tmp, **kwargs
        )
        self.runs.append(daemon)
        if ready:
            daemon.wait_for_event("watching")
        return daemon


@pytest.fixture
def setup(
    tmp_path: Path, s3_server: SeaweedS3, redis_server: RedisServer, bucket: str, key_prefix: str
) -> Iterator[Setup]:
    watch = tmp_path / "rec"
    watch.mkdir()
    made = Setup(tmp_path, watch, bucket, s3_server, redis_server.url, key_prefix)
    yield made
    for daemon in made.runs:
        if daemon.proc.poll() is None:
            daemon.proc.kill()
            daemon.proc.wait(timeout=10)


# --- reading Redis from the test ----------------------------------------------------------------

Snapshot = dict[str, tuple[StreamRecord, dict[int, PartRecord]]]


def snapshot(setup: Setup) -> Snapshot:
    """Every stream and its checkpointed parts, as Redis holds them now."""

    async def read() -> Snapshot:
        async with RedisCheckpointStore.connect(setup.redis_url, setup.key_prefix) as cps:
            out: Snapshot = {}
            ids = await cps.live_stream_ids() + await cps.ended_stream_ids(limit=1_000_000)
            for stream_id in ids:
                loaded = await cps.load(stream_id)
                if loaded is not None:
                    out[stream_id] = loaded
            return out

    return asyncio.run(read())


def latest(setup: Setup, path: Path) -> StreamRecord | None:
    async def read() -> StreamRecord | None:
        async with RedisCheckpointStore.connect(setup.redis_url, setup.key_prefix) as cps:
            stream_id = await cps.stream_for_path(str(path))
            loaded = await cps.load(stream_id) if stream_id else None
            return loaded[0] if loaded else None

    return asyncio.run(read())


def wait_for_states(
    setup: Setup, paths: list[Path], states: set[StreamState], timeout_s: float = 90
) -> dict[Path, StreamRecord]:
    deadline = time.monotonic() + timeout_s
    seen: dict[Path, StreamRecord | None] = {}
    while time.monotonic() < deadline:
        seen = {path: latest(setup, path) for path in paths}
        failed = [r for r in seen.values() if r and r.state is StreamState.FAILED]
        if StreamState.FAILED not in states:
            assert not failed, f"failed: {[(r.path, r.error) for r in failed]}"
        if all(r is not None and r.state in states for r in seen.values()):
            return {p: r for p, r in seen.items() if r is not None}
        time.sleep(0.05)
    shown = {p.name: (r.state.value, r.error) if r else None for p, r in seen.items()}
    raise AssertionError(f"not all {sorted(s.value for s in states)} in {timeout_s}s: {shown}")


def fence(setup: Setup, name: str, data: bytes) -> None:
    """Returns once every event queued before it was routed, whatever its path. Events of
    different paths are routed concurrently (tailup.lanes), so a new file being done proves
    only that time passed; a rename runs alone, after every event before it, and its
    destination's stream starts only then. The staged name is no candidate: writing it makes
    no event."""
    staged = setup.watch / f"{name}.tmp"
    staged.write_bytes(data)
    staged.rename(setup.watch / f"{name}.ts")
    wait_for_states(setup, [setup.watch / f"{name}.ts"], {StreamState.COMPLETED})


def open_uploads(client: Any, bucket: str) -> list[str]:
    return [u["Key"] for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sent_parts(daemon: DaemonProcess) -> list[dict[str, Any]]:
    return [e for e in daemon.events() if e.get("event") == "part sent"]


def resent_unchanged(daemon: DaemonProcess, before: Snapshot) -> list[str]:
    """Parts this run sent that the checkpoint it started from had, with the same bytes (CRC32):
    sending them again was waste, and a sign the checkpoint was not trusted."""
    found = []
    for event in sent_parts(daemon):
        loaded = before.get(event["stream_id"])
        recorded = loaded[1].get(event["part"]) if loaded else None
        if recorded is not None and recorded.crc32 == event["crc32"]:
            found.append(f"{event['stream_id']} part {event['part']}")
    return found


def stop_recording_once(recorder: subprocess.Popen[bytes], done: Any, what: str) -> None:
    """End a recording made long for safety's sake as soon as ``done()`` holds (or once it ends
    by itself): ffmpeg stops on SIGINT as at the end of its input, the file finished (exit code
    255 then)."""
    poll(lambda: recorder.poll() is not None or bool(done()), what, timeout_s=90)
    stopped = recorder.poll() is None
    if stopped:
        recorder.send_signal(signal.SIGINT)
    code = recorder.wait(timeout=60)
    assert code == (255 if stopped else 0), Path(recorder.log_path).read_text()  # type: ignore[attr-defined]


# --- kill -9 at random points --------------------------------------------------------------------

# Kill triggers: after some seconds of recording, or right after an event in the daemon's log
# (the log is polled, so the kill lands a few milliseconds to tens of milliseconds later: inside
# the step that follows, or just after it).
EVENT_TRIGGERS = [
    ("part sent", 1),
    ("part sent", 2),
    ("part sent", 4),
    ("multipart upload created", 1),
    ("multipart upload completed", 1),
    ("stream completed", 1),
    ("resume decided", 1),
]


# Triggers that come while the recordings are still being written: the first kill of every trial
# is one of them, so that each trial kills a daemon in the middle of live uploads at least once
# (the later kills may also land at the end, or after everything was uploaded).
MID_UPLOAD_TRIGGERS = [("part sent", 1), ("part sent", 2), ("multipart upload created", 1)]


def plan_kills(rng: random.Random, seconds: float) -> list[tuple[str, Any]]:
    kills: list[tuple[str, Any]] = []
    for index in range(rng.choice([1, 2, 2, 3])):
        if index == 0:
            if rng.random() < 0.4:
                kills.append(("after", round(rng.uniform(1.0, seconds - 1.5), 2)))
            else:
                kills.append(("event", rng.choice(MID_UPLOAD_TRIGGERS)))
            continue
        # Only a restarted daemon resumes: the first run has no "resume decided" to kill after.
        if rng.random() < 0.4:
            kills.append(("after", round(rng.uniform(0.3, seconds + 2.0), 2)))
        else:
            kills.append(("event", rng.choice(EVENT_TRIGGERS)))
    return kills


def interrupted_live_streams(before: Snapshot, paths: list[Path]) -> list[str]:
    """The recordings whose stream a kill left live (uploading, stalled or finalizing): the kill
    landed in the middle of their upload."""
    names = {str(p) for p in paths}
    return sorted(
        Path(rec.path).name for rec, _ in before.values() if rec.path in names and rec.state.is_live
    )


def wait_for_trigger(
    setup: Setup,
    trigger: tuple[str, Any],
    started: float,
    recorders: list[subprocess.Popen[bytes]],
    paths: list[Path],
) -> str:
    """Block until the trigger; returns what happened. The trigger may never come: once every
    recording is uploaded there is nothing left to kill in the middle of."""
    daemon = setup.runs[-1]
    kind, what = trigger
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if daemon.proc.poll() is not None:
            raise AssertionError(f"tailup exited ({daemon.proc.returncode}): {daemon.tail()}")
        if kind == "after" and time.monotonic() - started >= what:
            return f"at {what}s"
        if kind == "event":
            name, nth = what
            if sum(1 for e in daemon.events() if e.get("event") == name) >= nth:
                return f"after {name!r} #{nth}"
        if all(r.poll() is not None for r in recorders) and all_completed(setup, paths):
            return f"{kind} {what} never came: everything was uploaded"
        time.sleep(0.02)
    raise AssertionError(f"{trigger} neither came nor was everything uploaded: {daemon.tail()}")


def all_completed(setup: Setup, paths: list[Path]) -> bool:
    records = [latest(setup, path) for path in paths]
    return all(r is not None and r.state is StreamState.COMPLETED for r in records)


@pytest.mark.slow
@pytest.mark.parametrize("trial", range(TRIALS))
def test_kill_9_at_random_points_of_live_recordings(
    trial: int, setup: Setup, record: Any, s3_client: Any
) -> None:
    setup.close_grace_s = "1"
    seed = BASE_SEED + trial
    rng = random.Random(seed)
    formats = rng.sample(sorted(EXTENSIONS), 3)
    seconds = round(rng.uniform(4.0, 7.0), 1)
    kills = plan_kills(rng, seconds)
    print(
        f"\ntrial {trial}: seed {seed} (rerun: TAILUP_CRASH_SEED={BASE_SEED} "
        f"TAILUP_CRASH_TRIALS={TRIALS}); {formats}, {seconds}s; kills {kills}"
    )
    began = time.monotonic()
    setup.start("--log-level", "debug")
    paths = [setup.watch / f"{fmt}-{trial}.{EXTENSIONS[fmt]}" for fmt in formats]
    recorders = [
        record(path, fmt, seconds, bitrate="16M", gop=25)
        for path, fmt in zip(paths, formats, strict=True)
    ]
    started = time.monotonic()
    before_each_run: list[Snapshot] = []
    mid_upload = 0
    for trigger in kills:
        when = wait_for_trigger(setup, trigger, started, recorders, paths)
        setup.runs[-1].kill9()
        before_each_run.append(snapshot(setup))
        live = interrupted_live_streams(before_each_run[-1], paths)
        mid_upload += bool(live)
        print(
            f"  kill -9 {when} (t={time.monotonic() - started:.2f}s); "
            f"live streams interrupted: {live or 'none'}"
        )
        setup.start("--log-level", "debug")
    print(f"  kills that interrupted a live stream: {mid_upload} of {len(kills)}")
    # A trigger that never came still ends in a kill, of an idle daemon: it proves nothing.
    assert mid_upload >= 1, f"no kill of this trial landed during an upload (seed {seed})"
    for recorder in recorders:
        assert recorder.wait(timeout=120) == 0, Path(recorder.log_path).read_text()  # type: ignore[attr-defined]
    records = wait_for_states(setup, paths, {StreamState.COMPLETED})
    assert setup.runs[-1].stop() == 0

    for path, rec in records.items():
        body = s3_client.get_object(Bucket=setup.bucket, Key=rec.key)["Body"].read()
        assert sha256(body) == sha256(path.read_bytes()), f"{path.name}: object differs"
    assert open_uploads(s3_client, setup.bucket) == [], "a multipart upload was left open"
    for run, before in zip(setup.runs[1:], before_each_run, strict=True):
        assert resent_unchanged(run, before) == [], (
            f"checkpointed parts sent again ({run.log_path})"
        )

    resumed = [
        e for run in setup.runs[1:] for e in run.events() if e.get("event") == "resume decided"
    ]
    # Nobody replaced these files: only +faststart's rewrite of the whole file at close (while
    # tailup was down) may look like it.
    spurious = [
        (Path(e["path"]).name, e["reason"])
        for e in resumed
        if e["verdict"] == "replaced" and not Path(e["path"]).name.startswith("faststart")
    ]
    assert spurious == [], "a recording taken for another file"
    decisions = [(e["verdict"], len(e["adopted"])) for e in resumed]
    changed = sum(
        1
        for run, before in zip(setup.runs[1:], before_each_run, strict=True)
        for e in sent_parts(run)
        if e["stream_id"] in before and e["part"] in before[e["stream_id"]][1]
    )
    print(
        f"  resume decisions (verdict, parts adopted): {decisions}; checkpointed parts sent "
        f"again because their bytes changed (muxer patches): {changed}; "
        f"trial took {time.monotonic() - began:.1f}s"
    )


# --- SIGTERM -------------------------------------------------------------------------------------


def nth_upload_part(n: int) -> Any:
    count = [0]

    def matches(op: str, _target: str) -> bool:
        if op != "UploadPart":
            return False
        count[0] += 1
        return count[0] == n

    return matches


@pytest.mark.slow
def test_sigterm_lets_the_part_in_flight_finish_and_the_restart_completes(
    setup: Setup, record: Any, s3_client: Any
) -> None:
    path = setup.watch / "cam.ts"
    with FaultProxy(setup.s3.s3_port, seed=0) as proxy:
        in_flight = proxy.hold(nth_upload_part(2))
        daemon = setup.start("--log-level", "debug", endpoint=proxy.endpoint_url)
        # Part 2 is ready ~5 s in; the recording goes on well past the SIGTERM, so that even a
        # loaded machine's late hold never meets a recording already closed (and completed).
        recorder = record(path, "ts", 14, bitrate="16M", gop=25)
        assert in_flight.held.wait(timeout=60), "part 2 never went up"
        assert recorder.poll() is None, "the recording ended before part 2 was held: too slow"
        daemon.signal(signal.SIGTERM)
        daemon.wait_for_event("stopping: letting in-flight parts finish")
        in_flight.release()  # S3 answers the part only now, during the shutdown
        assert daemon.proc.wait(timeout=30) == 0, daemon.tail()
    sent = {(e["stream_id"], e["part"]) for e in sent_parts(daemon)}
    before = snapshot(setup)
    [(stream_id, (rec, parts))] = before.items()
    assert rec.state.is_live
    assert (stream_id, 2) in sent and set(parts) == {n for _, n in sent}, (
        "the part in flight finished and was checkpointed before the exit"
    )

    restarted = setup.start("--log-level", "debug")
    # The restarted daemon carries on with the live recording: once it has sent a part of its
    # own, the rest of the 14 s adds nothing.
    stop_recording_once(
        recorder, lambda: sent_parts(restarted), "a part sent by the restarted daemon"
    )
    done = wait_for_states(setup, [path], {StreamState.COMPLETED})[path]
    assert restarted.stop() == 0
    assert done.stream_id == stream_id and done.key == rec.key, "the same stream, the same object"
    body = s3_client.get_object(Bucket=setup.bucket, Key=done.key)["Body"].read()
    assert sha256(body) == sha256(path.read_bytes())
    assert resent_unchanged(restarted, before) == []


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_second_signal_exits_at_once_and_the_next_start_resumes(
    setup: Setup, s3_client: Any, signum: signal.Signals
) -> None:
    path = setup.watch / "stuck.ts"
    with FaultProxy(setup.s3.s3_port, seed=0) as proxy:
        stuck = proxy.hold(nth_upload_part(1))  # S3 never answers while we look
        daemon = setup.start("--shutdown-grace", "120", endpoint=proxy.endpoint_url)
        data = os.urandom(7 * 1024 * 1024)
        path.write_bytes(data)
        assert stuck.held.wait(timeout=30), "part 1 never went up"
        daemon.signal(signum)
        daemon.wait_for_event("stopping: letting in-flight parts finish")
        daemon.signal(signum)
        # Far inside the 120 s grace: only the second signal can explain an exit now.
        assert daemon.proc.wait(timeout=15) == 128 + signum
    restarted = setup.start()
    done = wait_for_states(setup, [path], {StreamState.COMPLETED})[path]
    assert restarted.stop() == 0
    assert s3_client.get_object(Bucket=setup.bucket, Key=done.key)["Body"].read() == data
    assert open_uploads(s3_client, setup.bucket) == []


# --- Redis or S3 missing or refusing at start ---------------------------------------------------


def test_started_while_redis_is_down_it_waits_for_redis(
    setup: Setup, tmp_path: Path, s3_client: Any
) -> None:
    redis = RedisServer(tmp_path / "late-redis")  # its port is chosen; it is not running yet
    late = dataclasses.replace(setup, redis_url=redis.url)
    try:
        daemon = late.start(ready=False)
        daemon.wait_for_event("cannot take the node lease yet; retrying")
        path = setup.watch / "early-bird.ts"
        data = os.urandom(6 * 1024 * 1024)
        path.write_bytes(data)
        redis.start()
        daemon.wait_for_event("watching")
        done = wait_for_states(late, [path], {StreamState.COMPLETED})[path]
        assert daemon.stop() == 0
    finally:
        redis.close()
    assert s3_client.get_object(Bucket=setup.bucket, Key=done.key)["Body"].read() == data


@pytest.mark.parametrize(
    ("fault", "words"),
    [
        ("wrong secret", ["SignatureDoesNotMatch", "AWS_SECRET_ACCESS_KEY"]),
        ("unknown key", ["InvalidAccessKeyId", "AWS_ACCESS_KEY_ID"]),
        ("missing bucket", ["NoSuchBucket", "create the bucket"]),
    ],
)
def test_s3_refusing_every_stream_stops_the_start_with_a_clear_message(
    setup: Setup, fault: str, words: list[str]
) -> None:
    env = dict(setup.env)
    args = setup.args()
    if fault == "wrong secret":
        env["AWS_SECRET_ACCESS_KEY"] = "not-the-secret"
    elif fault == "unknown key":
        env["AWS_ACCESS_KEY_ID"] = "nobody-has-this-key"
    else:
        args[args.index("--bucket") + 1] = "no-such-bucket-here"
    result = run_cli(["run", *args], env)
    assert result.returncode == 1
    message = [line for line in result.stderr.splitlines() if line.startswith("tailup: ")]
    assert len(message) == 1, result.stderr  # said once, plainly, besides the log
    for word in words:
        assert word in message[0]
    assert "not-the-secret" not in result.stderr + result.stdout


def test_redis_refusing_tailup_stops_the_start_with_a_clear_message(
    setup: Setup, tmp_path: Path
) -> None:
    import redis

    with RedisServer(tmp_path / "locked") as locked:
        # Set after the start: the server helper's readiness probe speaks without a password.
        redis.Redis(port=locked.port).config_set("requirepass", "s3cret-pw")
        args = setup.args()
        args[args.index("--redis-url") + 1] = f"redis://:wrong-pw@127.0.0.1:{locked.port}/0"
        result = run_cli(["run", *args], setup.env)
    assert result.returncode == 1
    assert "Redis refused the credentials in --redis-url" in result.stderr
    assert "wrong-pw" not in result.stderr and "s3cret-pw" not in result.stderr


# --- tailup abort --------------------------------------------------------------------------------


def test_abort_a_stream_of_a_running_daemon(setup: Setup, record: Any, s3_client: Any) -> None:
    path = setup.watch / "unwanted.ts"
    daemon = setup.start("--log-level", "debug")
    # Long enough to be still recording when `tailup abort` (a process of its own, seconds to
    # start on a loaded machine) comes: a recording completed first has nothing to abort.
    recorder = record(path, "ts", 15, bitrate="16M", gop=25)
    first = daemon.wait_for_event("part sent", part=1)
    stream_id = first["stream_id"]
    result = run_cli(
        ["abort", stream_id, "--reason", "not this one", *setup.connection()], setup.env
    )
    assert result.returncode == 0, result.stderr
    assert f"stream {stream_id[:12]} ({path}) aborted: not this one" in result.stdout
    daemon.wait_for_event("stream aborted from outside", stream_id=stream_id)
    # The recorder writes on into the aborted file, a part's worth (which a stream alive again
    # would send), then closes it; the rest of the 15 s adds nothing.
    at_abort = path.stat().st_size
    stop_recording_once(
        recorder,
        lambda: path.stat().st_size >= at_abort + 5 * 1024 * 1024,
        "5 MiB written after the abort",
    )
    # The recording's close was queued before the fence's rename, which is routed alone.
    fence(setup, "after", b"x" * 1000)
    assert daemon.proc.poll() is None

    ended = latest(setup, path)
    assert ended is not None and ended.stream_id == stream_id
    assert ended.state is StreamState.ABORTED and ended.error == "not this one"
    listed = s3_client.list_objects_v2(Bucket=setup.bucket, Prefix=ended.key).get("Contents", [])
    assert listed == [] and ended.key not in open_uploads(s3_client, setup.bucket)
    status = run_cli(["status", "--json", *setup.connection()], setup.env)
    rows = {row["stream_id"]: row for row in json.loads(status.stdout)}
    assert rows[stream_id]["state"] == "aborted" and rows[stream_id]["error"] == "not this one"
    assert daemon.stop() == 0


def test_abort_while_the_daemon_is_down_is_not_resumed(setup: Setup, s3_client: Any) -> None:
    path = setup.watch / "dropped.ts"
    daemon = setup.start("--log-level", "debug")
    with path.open("wb") as out:
        out.write(os.urandom(6 * 1024 * 1024))
        out.flush()
        stream_id = daemon.wait_for_event("part sent", part=1)["stream_id"]
        daemon.kill9()
    result = run_cli(["abort", stream_id, *setup.connection()], setup.env)
    assert result.returncode == 0, result.stderr
    again = setup.start()
    fence(setup, "after", b"y" * 1000)  # after the start-up scan's event for the aborted file
    assert again.stop() == 0
    ended = latest(setup, path)
    assert ended is not None and ended.stream_id == stream_id
    assert ended.state is StreamState.ABORTED and ended.error == "aborted by the operator"
    assert not any(e.get("stream_id") == stream_id for e in again.events())
    assert open_uploads(s3_client, setup.bucket) == []


# --- tailup gc -----------------------------------------------------------------------------------


def test_gc_aborts_only_old_unowned_uploads_under_the_prefix(setup: Setup, s3_client: Any) -> None:
    def create(key: str) -> str:
        return str(s3_client.create_multipart_upload(Bucket=setup.bucket, Key=key)["UploadId"])

    orphans = {create("gc/a.mp4"), create("gc/sub/b.mkv")}
    owned = create("gc/live.ts")
    elsewhere = create("other/c.ts")

    async def own() -> None:
        async with RedisCheckpointStore.connect(setup.redis_url, setup.key_prefix) as cps:
            live = StreamRecord(
                stream_id="live0001",
                path="/nowhere/live.ts",
                watch_root="/nowhere",
                bucket=setup.bucket,
                key="gc/live.ts",
                base_part_size=5 * 1024 * 1024,
                upload_id=owned,
                created_at=iso(utc_now()),
            )
            await cps.create(live)

    asyncio.run(own())

    def ids() -> set[str]:
        uploads = s3_client.list_multipart_uploads(Bucket=setup.bucket).get("Uploads", [])
        return {u["UploadId"] for u in uploads}

    gc = ["gc", *setup.connection(), "--prefix", "gc/"]
    young = run_cli([*gc, "--older-than", "1h"], setup.env)
    assert young.returncode == 0, young.stderr
    assert "0 upload(s) aborted under 'gc/'" in young.stdout
    dry = run_cli([*gc, "--older-than", "0", "--dry-run"], setup.env)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.count("would abort") == 2 and ids() >= orphans
    real = run_cli([*gc, "--older-than", "0"], setup.env)
    assert real.returncode == 0, real.stderr
    for upload_id in orphans:
        assert upload_id in real.stdout
    assert ids() == {owned, elsewhere}
    bad = run_cli([*gc, "--older-than", "soon"], setup.env)
    assert bad.returncode == 2 and "--older-than" in bad.stderr


# --- a file the daemon may not read --------------------------------------------------------------


def without_permission_bypass() -> list[str]:
    """A command prefix under which the daemon is subject to file permissions. Tests run as
    root, whose CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH read anything: drop them from the bounding
    set (the daemon stays root, owner of its venv and temp folders, but a mode-000 file is
    unreadable to it, as to any non-root daemon)."""
    if os.geteuid() != 0:
        return []
    wrapper = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
    probe = subprocess.run([*wrapper, "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot drop root's permission bypass here: {probe.stderr!r}")
    return wrapper


def test_unreadable_file_fails_with_the_reason_and_the_daemon_goes_on(
    setup: Setup, s3_client: Any
) -> None:
    wrapper = without_permission_bypass()
    early = setup.watch / "locked-early.mkv"
    early.write_bytes(os.urandom(200_000))
    early.chmod(0)
    # Without those capabilities the daemon cannot see other root processes' open files either,
    # so whether a writer still holds the early file is unknown: it waits for the idle timeout.
    daemon = setup.start("--idle-timeout", "3", wrapper=wrapper)
    late = setup.watch / "locked-late.mp4"
    with late.open("wb") as out:
        late.chmod(0)  # the recorder's fd still writes; nobody else may read
        out.write(os.urandom(6 * 1024 * 1024))
    failed = wait_for_states(setup, [early, late], {StreamState.FAILED, StreamState.COMPLETED})
    for path, rec in failed.items():
        assert rec.state is StreamState.FAILED, path
        assert rec.error == f"{path} cannot be read: permission denied"
    fence = setup.watch / "readable.ts"
    data = os.urandom(300_000)
    fence.write_bytes(data)
    done = wait_for_states(setup, [fence], {StreamState.COMPLETED})[fence]
    assert s3_client.get_object(Bucket=setup.bucket, Key=done.key)["Body"].read() == data
    assert daemon.stop() == 0
    # A failed stream keeps its upload for its retries (a permission fixed later resumes it);
    # nothing else is left open.
    failed_keys = {rec.key for rec in failed.values()}
    assert set(open_uploads(s3_client, setup.bucket)) <= failed_keys
