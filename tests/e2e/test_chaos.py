"""Chaos end to end: many short files and two long recordings written into a watched folder while
`tailup run` (a subprocess) is killed with SIGKILL and started again every few seconds, its Redis
is killed and started again once, and its S3 server is stopped for a few seconds once. Both
servers are the test's own, on loopback; Redis keeps every acknowledged write (AOF, appendfsync
always), so what it said it holds survives its kill. No kill falls in an outage: the daemon
running then rides it out (one may still start while a server is away).

At the end every file is in S3 exactly once, byte for byte, completed once, and nothing else is
there: no second object, no open multipart upload.

One round in `make test`; TAILUP_CHAOS_ROUNDS=N runs N rounds (seeds TAILUP_CHAOS_SEED + 0..N-1),
TAILUP_CHAOS_SEED=S repeats a round's plan (the timing of a loaded machine does not repeat).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import os
import random
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from conftest import TEST_ACCESS_KEY, TEST_REGION, TEST_SECRET_KEY
from daemonproc import DaemonProcess, start_daemon
from tailup.checkpoint import RedisCheckpointStore
from tailup.dev import RedisServer, SeaweedS3
from tailup.model import StreamRecord, StreamState

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

ROUNDS = int(os.environ.get("TAILUP_CHAOS_ROUNDS", "1"))
# Under pytest-xdist every worker collects the rounds: they share the run's id, so one seed.
BASE_SEED = int(
    os.environ.get("TAILUP_CHAOS_SEED")
    or int(os.environ.get("PYTEST_XDIST_TESTRUNUID") or "0", 16) % 2**31
    or random.SystemRandom().randrange(2**31)
)

KiB = 1024
MiB = 1024 * KiB
CHAOS_S = 22.0  # daemon kills, the Redis kill and the S3 outage all fall in this window
WRITES_S = 17.0  # short files are written in this window (the rest of CHAOS_S sees them finish)
RECORDING_S = 20  # the two long recordings (real ffmpeg, real time)
SHORT_EXTENSIONS = ["ts", "mkv", "mp4", "mov", "m4v", "flv"]


# --- the plan: everything random is drawn here, from the seed ------------------------------------


@dataclass
class ShortFile:
    name: str
    # "whole": one write; "appended": several writes, pauses between; "renamed": written under a
    # name no --include matches, closed, then renamed to its own; "moved": written under another
    # name --include matches (a recorder's live-NN.ts), closed, then renamed to its own
    kind: str
    sizes: list[int]
    pauses_s: list[float]  # before each write after the first
    start_s: float
    rename_after_s: float = 0.0  # after the close, "renamed" and "moved"
    sha256: str = ""  # of what was written, once the writer is done

    @property
    def total(self) -> int:
        return sum(self.sizes)


@dataclass
class Plan:
    seed: int
    shorts: list[ShortFile]
    runs_s: list[float]  # how long each daemon runs before its kill -9
    redis_down_at_s: float
    redis_down_s: float
    s3_down_at_s: float
    s3_down_s: float

    def describe(self) -> str:
        kinds = Counter(f.kind for f in self.shorts)
        return (
            f"seed {self.seed} (rerun: TAILUP_CHAOS_SEED={self.seed}): {len(self.shorts)} short "
            f"files {dict(kinds)}, {sum(f.total for f in self.shorts) / MiB:.1f} MiB; "
            f"{len(self.runs_s)} kills; Redis killed at {self.redis_down_at_s:.1f}s for "
            f"{self.redis_down_s:.1f}s; S3 stopped at {self.s3_down_at_s:.1f}s for "
            f"{self.s3_down_s:.1f}s"
        )


def make_plan(seed: int) -> Plan:
    rng = random.Random(seed)
    shorts = []
    for index in range(rng.randint(30, 60)):
        # Log-uniform 50 KiB .. 6 MiB: mostly single-request uploads, some multipart ones.
        total = int(math.exp(rng.uniform(math.log(50 * KiB), math.log(6 * MiB))))
        kind = rng.choice(["whole", "appended", "appended", "renamed", "moved"])
        pieces = 1 if kind == "whole" else rng.randint(2, 5)
        cuts = sorted(rng.sample(range(1, total), pieces - 1))
        sizes = [b - a for a, b in zip([0, *cuts], [*cuts, total], strict=True)]
        pauses = [round(rng.uniform(0.05, 1.2), 2) for _ in sizes[1:]]
        ext = rng.choice(SHORT_EXTENSIONS)
        start = round(rng.uniform(0, WRITES_S - sum(pauses)), 2) if sum(pauses) < WRITES_S else 0
        short = ShortFile(f"short-{index:02d}.{ext}", kind, sizes, pauses, start)
        if kind in ("renamed", "moved"):
            short.rename_after_s = round(rng.uniform(0.05, 1.5), 2)
        shorts.append(short)
    runs = []
    while sum(runs) < CHAOS_S:
        runs.append(round(rng.uniform(1.0, 4.0), 2))
    return Plan(
        seed=seed,
        shorts=shorts,
        runs_s=runs,
        redis_down_at_s=round(rng.uniform(3.0, CHAOS_S - 6.0), 2),
        redis_down_s=round(rng.uniform(0.3, 2.0), 2),
        s3_down_at_s=round(rng.uniform(3.0, CHAOS_S - 8.0), 2),
        s3_down_s=round(rng.uniform(2.0, 5.0), 2),
    )


# --- the short files' writer: one thread, every file's steps at their planned times ---------------


@dataclass(order=True)
class Step:
    at_s: float
    order: int
    file: ShortFile = field(compare=False)
    op: str = field(compare=False)  # open, write, close, rename
    size: int = field(compare=False, default=0)


def steps_of(plan: Plan) -> list[Step]:
    steps = []
    for order, short in enumerate(plan.shorts):
        at = short.start_s
        steps.append(Step(at, order, short, "open"))
        for number, size in enumerate(short.sizes):
            if number:
                at += short.pauses_s[number - 1]
            steps.append(Step(at, order, short, "write", size))
        steps.append(Step(at, order, short, "close"))
        if short.rename_after_s:
            steps.append(Step(at + short.rename_after_s, order, short, "rename"))
    return sorted(steps)


class ShortWriter(threading.Thread):
    def __init__(self, plan: Plan, folder: Path, started: float) -> None:
        super().__init__(name="chaos-writer", daemon=True)
        self.steps = steps_of(plan)
        self.folder = folder
        self.started = started
        self.seed = plan.seed
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        open_files: dict[str, Any] = {}
        hashes: dict[str, Any] = {}
        try:
            for step in self.steps:
                if self.stop.wait(max(0.0, self.started + step.at_s - time.monotonic())):
                    return
                short = step.file
                final = self.folder / short.name
                staged = self.folder / (
                    f"{short.name}.partial"  # no --include matches it
                    if short.kind == "renamed"
                    else f"live-{short.name}"
                )
                if step.op == "open":
                    target = final if short.kind in ("whole", "appended") else staged
                    open_files[short.name] = target.open("xb")
                    hashes[short.name] = hashlib.sha256()
                elif step.op == "write":
                    data = random.Random(f"{self.seed}/{short.name}/{step.at_s}").randbytes(
                        step.size
                    )
                    open_files[short.name].write(data)
                    open_files[short.name].flush()
                    hashes[short.name].update(data)
                elif step.op == "close":
                    open_files.pop(short.name).close()
                    short.sha256 = hashes[short.name].hexdigest()
                else:
                    staged.rename(final)
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            for handle in open_files.values():
                handle.close()


# --- the servers' faults: one thread, at their planned times -------------------------------------


class ServerFaults(threading.Thread):
    def __init__(self, plan: Plan, redis: RedisServer, s3: SeaweedS3, started: float) -> None:
        super().__init__(name="chaos-faults", daemon=True)
        self.started = started
        self.redis = redis
        self.s3 = s3
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.done: list[str] = []
        self.away: set[str] = set()  # the servers down now
        self.back_at = -math.inf
        faults: list[tuple[float, str, Callable[[], Any]]] = [
            (plan.redis_down_at_s, "Redis killed", redis.kill),
            (plan.redis_down_at_s + plan.redis_down_s, "Redis started", redis.start),
            # weed's volume server sometimes hangs on SIGTERM: SIGKILL after 3 s, not 15.
            (plan.s3_down_at_s, "S3 stopped", lambda: s3.stop(timeout=3.0)),
            (plan.s3_down_at_s + plan.s3_down_s, "S3 started", s3.start),
        ]
        self.faults = sorted(faults, key=lambda fault: fault[0])

    def outage(self) -> bool:
        """A server is away, or came back less than a second ago: the daemon running now is
        to ride it out, not be killed in it (starting while a server is away has tests of its
        own; here the outage must meet a daemon at work)."""
        return bool(self.away) or time.monotonic() < self.back_at + 1.0

    def run(self) -> None:
        try:
            for at_s, what, act in self.faults:
                if self.stop.wait(max(0.0, self.started + at_s - time.monotonic())):
                    return
                server = what.split()[0]
                self.done.append(f"{what} at {time.monotonic() - self.started:.1f}s")
                if what.endswith("started"):
                    act()
                    self.away.discard(server)
                    self.back_at = time.monotonic()
                else:
                    self.away.add(server)
                    act()
        except BaseException as exc:  # reported by the test
            self.error = exc


# --- the daemon ----------------------------------------------------------------------------------


@dataclass
class Setup:
    tmp: Path
    watch: Path
    bucket: str
    s3: SeaweedS3
    redis: RedisServer
    key_prefix: str = "chaos"
    runs: list[DaemonProcess] = field(default_factory=list)

    def start(self) -> DaemonProcess:
        args = [
            "--watch", str(self.watch),
            "--bucket", self.bucket,
            "--endpoint-url", self.s3.endpoint_url,
            "--redis-url", self.redis.url,
            "--redis-prefix", self.key_prefix,
            "--part-size", "5MiB",
            "--close-grace", "0.5",
            "--failed-retry", "2",
            "--log-format", "json",
            "--log-level", "info",
        ]  # fmt: skip
        log = self.tmp / f"tailup-run{len(self.runs):02d}.log"
        daemon = start_daemon(args, self.s3.env(), log, self.tmp)
        self.runs.append(daemon)
        return daemon

    def events(self) -> list[dict[str, Any]]:
        return [event for run in self.runs for event in run.events()]


STARTUP_BOUND_S = 20.0


def live_for(
    daemon: DaemonProcess, run_s: float, chaos_end: float, faults: ServerFaults, seed: int
) -> float | None:
    """Let the daemon work ``run_s`` seconds from its start-up line ("tailup started": imports
    done, both servers asked; on a loaded machine that alone can take seconds, and a daemon
    killed before it would only ever start), and through any server outage under way then.
    Returns how long its start-up took, or None if the chaos ended first (the daemon is then
    left running)."""
    launched = time.monotonic()
    up_at: float | None = None
    while True:
        now = time.monotonic()
        if daemon.proc.poll() is not None:
            raise AssertionError(
                f"seed {seed}: tailup exited by itself ({daemon.proc.returncode}): {daemon.tail()}"
            )
        if now >= chaos_end:
            return None
        if up_at is None:
            if any(e.get("event") == "tailup started" for e in daemon.events()):
                up_at = now
            elif now - launched > STARTUP_BOUND_S:
                raise AssertionError(
                    f"seed {seed}: tailup did not start in {STARTUP_BOUND_S}s: {daemon.tail()}"
                )
        elif now >= up_at + run_s and not faults.outage():
            return up_at - launched
        time.sleep(0.02)


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    watch = tmp_path / "rec"
    watch.mkdir()
    redis = RedisServer(tmp_path / "redis", appendonly=True, extra_args=["--appendfsync", "always"])
    s3 = SeaweedS3(
        tmp_path / "seaweed",
        access_key=TEST_ACCESS_KEY,
        secret_key=TEST_SECRET_KEY,
        region=TEST_REGION,
    )
    with redis, s3:
        made = Setup(tmp_path, watch, s3.create_bucket("chaos"), s3, redis)
        try:
            yield made
        finally:
            for daemon in made.runs:
                if daemon.proc.poll() is None:
                    daemon.proc.kill()
                    daemon.proc.wait(timeout=10)


def records(setup: Setup) -> list[StreamRecord]:
    """Every stream record of the prefix, live and ended."""

    async def read() -> list[StreamRecord]:
        async with RedisCheckpointStore.connect(setup.redis.url, setup.key_prefix) as cps:
            ids = await cps.live_stream_ids() + await cps.ended_stream_ids(limit=1_000_000)
            return await cps.load_records(ids)

    return asyncio.run(read())


def wait_until_completed(
    setup: Setup, paths: list[Path], seed: int, timeout_s: float = 120
) -> dict[str, StreamRecord]:
    """Each path's COMPLETED record, once every one has one; the daemon must stay up meanwhile."""
    daemon = setup.runs[-1]
    wanted = {str(path) for path in paths}
    deadline = time.monotonic() + timeout_s
    done: dict[str, StreamRecord] = {}
    while time.monotonic() < deadline:
        if daemon.proc.poll() is not None:
            raise AssertionError(
                f"seed {seed}: tailup exited ({daemon.proc.returncode}): {daemon.tail()}"
            )
        done = {
            r.path: r
            for r in records(setup)
            if r.path in wanted and r.state is StreamState.COMPLETED
        }
        if len(done) == len(wanted):
            return done
        time.sleep(0.25)
    missing = sorted(Path(p).name for p in wanted - set(done))
    states = {
        Path(r.path).name: (r.state.value, r.error)
        for r in records(setup)
        if r.path in wanted - set(done)
    }
    raise AssertionError(
        f"seed {seed}: not completed in {timeout_s}s: {missing}; their records: {states}; "
        f"log tail:\n{daemon.tail()}"
    )


def sha256_of(path_or_bytes: Path | bytes) -> str:
    if isinstance(path_or_bytes, Path):
        return hashlib.sha256(path_or_bytes.read_bytes()).hexdigest()
    return hashlib.sha256(path_or_bytes).hexdigest()


def list_objects(client: Any, bucket: str) -> list[str]:
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys.extend(obj["Key"] for obj in page.get("Contents", []))
    return keys


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_files_survive_kills_of_the_daemon_redis_and_s3(
    round_: int, setup: Setup, record: Any
) -> None:
    began = time.monotonic()
    plan = make_plan(BASE_SEED + round_)
    seed = plan.seed
    print(f"\nround {round_}: {plan.describe()} (TAILUP_CHAOS_ROUNDS={ROUNDS})")

    setup.start()
    started = time.monotonic()
    long_paths = [setup.watch / "long-mp4.mp4", setup.watch / "long-ts.ts"]
    recorders = [
        record(path, fmt, RECORDING_S, bitrate="12M", gop=25)
        for path, fmt in zip(long_paths, ["mp4", "ts"], strict=True)
    ]
    startups_s: list[float] = []
    writer = ShortWriter(plan, setup.watch, started)
    faults = ServerFaults(plan, setup.redis, setup.s3, started)
    writer.start()
    faults.start()
    try:
        for run_s in plan.runs_s:
            startup_s = live_for(setup.runs[-1], run_s, started + CHAOS_S, faults, seed)
            if startup_s is None:
                break
            startups_s.append(startup_s)
            setup.runs[-1].kill9()
            setup.start()
        writer.join(timeout=60)
        faults.join(timeout=120)
    finally:
        writer.stop.set()
        faults.stop.set()
    assert not writer.is_alive() and writer.error is None, f"seed {seed}: writer: {writer.error}"
    assert not faults.is_alive() and faults.error is None, f"seed {seed}: faults: {faults.error}"
    assert setup.redis.running and setup.s3.running
    for recorder in recorders:
        assert recorder.wait(timeout=120) == 0, Path(recorder.log_path).read_text()
    chaos_s = time.monotonic() - started
    print(
        f"  {len(setup.runs) - 1} kills; {'; '.join(faults.done)}; chaos {chaos_s:.1f}s; "
        f"start-ups took {', '.join(f'{s:.1f}' for s in startups_s)}s"
    )

    short_paths = [setup.watch / short.name for short in plan.shorts]
    paths = short_paths + long_paths
    # The last daemon, left running, must be up before it is stopped: a SIGTERM that lands
    # while Python still imports ends it with -15, before tailup has a handler.
    setup.runs[-1].wait_for_event("watching", timeout_s=60)
    completed = wait_until_completed(setup, paths, seed)
    assert setup.runs[-1].stop() == 0, f"seed {seed}: {setup.runs[-1].tail()}"
    drained_s = time.monotonic() - started - chaos_s

    # The files themselves: the short ones hold what was written (tailup never modifies them).
    for short in plan.shorts:
        assert sha256_of(setup.watch / short.name) == short.sha256, short.name
    # Redis: one record per file, completed, and none of a name no --include matches.
    by_path: dict[str, list[StreamRecord]] = defaultdict(list)
    for rec in records(setup):
        by_path[rec.path].append(rec)
    extra = sorted(set(by_path) - {str(p) for p in paths})
    assert extra == [], f"seed {seed}: records of other paths: {extra}"
    repeated = {
        Path(p).name: [(r.stream_id, r.state.value, r.error) for r in recs]
        for p, recs in by_path.items()
        if len(recs) > 1
    }
    assert repeated == {}, f"seed {seed}: files with more than one stream: {repeated}"

    # S3: one object per file under its record's key, its metadata.json beside it, nothing else.
    client = setup.s3.boto3_client()
    try:
        keys = list_objects(client, setup.bucket)
        expected = {rec.key for rec in completed.values()}
        assert len(expected) == len(paths), f"seed {seed}: two files share a key"
        objects = sorted(k for k in keys if not k.endswith(".metadata.json"))
        sidecars = sorted(k for k in keys if k.endswith(".metadata.json"))
        assert objects == sorted(expected), (
            f"seed {seed}: objects beyond the files' own: {sorted(set(objects) - expected)}; "
            f"missing: {sorted(expected - set(objects))}"
        )
        assert sidecars == sorted(f"{key}.metadata.json" for key in expected), f"seed {seed}"
        uploads = client.list_multipart_uploads(Bucket=setup.bucket).get("Uploads", [])
        assert [u["Key"] for u in uploads] == [], f"seed {seed}: multipart uploads left open"
        for path_text, rec in completed.items():
            path = Path(path_text)
            body = client.get_object(Bucket=setup.bucket, Key=rec.key)["Body"].read()
            assert sha256_of(body) == sha256_of(path), f"seed {seed}: {path.name} differs"
            sidecar = json.loads(
                client.get_object(Bucket=setup.bucket, Key=f"{rec.key}.metadata.json")[
                    "Body"
                ].read()
            )
            assert sidecar["stream_id"] == rec.stream_id, f"seed {seed}: {path.name}"
    finally:
        client.close()

    # The logs: each file completed by one stream, and said so at most once (a kill between
    # Redis's "completed" and the log line leaves it unsaid).
    events = setup.events()
    completions: dict[str, Counter[str]] = defaultdict(Counter)
    for event in events:
        if event.get("event") in ("stream completed", "multipart upload completed"):
            completions[event["path"]][f"{event['event']} {event['stream_id']}"] += 1
    for path_text, rec in completed.items():
        said = completions.get(path_text, Counter())
        others = [line for line in said if not line.endswith(rec.stream_id)]
        assert others == [], f"seed {seed}: {Path(path_text).name} completed by {others}"
        assert said[f"stream completed {rec.stream_id}"] <= 1, f"seed {seed}: {said}"
    said = Counter(str(e.get("event")) for e in events)
    # The premise: kills fell in the middle of uploads, and the outage was met.
    assert said["resuming stream"] >= 1, f"seed {seed}: no start resumed an interrupted stream"
    print(
        f"  every file completed {drained_s:.1f}s after the chaos; streams resumed after a "
        f"kill: {said['resuming stream']}; stalls (Redis or S3 away): "
        f"{said['stream stalled, retrying']}; 'stream completed' logged for "
        f"{said['stream completed']} of {len(paths)} files (a kill may fall between Redis and "
        f"the log); round took {time.monotonic() - began:.1f}s"
    )
    warned = Counter(
        f"{e['level']}: {e['event']}" for e in events if e.get("level") in ("warning", "error")
    )
    print(f"  warnings and errors logged: {dict(warned) or 'none'}")
