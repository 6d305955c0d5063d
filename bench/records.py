"""`tailup status` and /streams with 100k and 1M stream records in Redis (issue 9, bounded state).

    python bench/records.py                       # 100k, then 1M records (~10 min on 2 cores)
    python bench/records.py --counts 100000       # one size
    python bench/records.py --record              # append the table to bench/RESULTS.md

For each count it starts a throwaway redis-server on a free loopback port (tailup.dev),
writes 16 live streams (uploading, as 16 cameras would have) and N ended ones straight into Redis,
pipelined in batches, with the keys `RedisCheckpointStore` writes for an ended stream: the meta
hash (every field of StreamRecord, realistic values: 1-minute segments of 20-90 MB, 8 MiB parts),
the parts hash (one JSON per part, as commit_part writes it), the path entry and the object
claim, each with the TTL --keep-records (30 d) leaves it, and the node's ended index (ZSET
scored by end time, spread evenly over the last 29 days, so that none expires during a run).
States: 99.4% completed, 0.5% aborted, 0.1% skipped (a rare state). Then it measures:

- `tailup status` as a subprocess of this checkout (`python -m tailup status`), median of 3:
  the default table, --json, --state with rare and common ended states (the scan pages
  through the ended index; --state skipped --limit 1000 is never satisfied within the newest
  100,000 and stops at that bound), --state failed (live states only), and --all --json (every
  record; up to --all-max records).
- /streams: the real aiohttp app (tailup.server.build_app) on a loopback port, 20 requests of
  each query, median and max latency, and the longest the event loop was held meanwhile (a
  1 ms ticker's worst lateness: stats and decoding are off the loop or in small slices).
- Redis memory (INFO memory, used_memory): the delta per stream record; then every record's own
  keys are expired (PEXPIRE 1 ms: what --keep-records does, sooner) and Redis's expiry reclaims
  them: bytes left per expired record (its entry in the ended index), and after trim_ended
  (what the daemon runs) bytes left per record.

Nothing here is asserted: speed and size are measured, never tested.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT / "src"))

import redis  # noqa: E402

from tailup.checkpoint import RedisCheckpointStore  # noqa: E402
from tailup.dev import RedisServer, free_port  # noqa: E402
from tailup.keys import RedisKeys, node_scope  # noqa: E402
from tailup.model import PartRecord, StreamRecord, StreamState, iso  # noqa: E402
from tailup.plan import MiB  # noqa: E402

PREFIX = "tailup"
NODE = "bench-node"
SCOPE = node_scope(NODE)
LIVE = 16
KEEP_S = 30 * 86400
HISTORY_S = 29 * 86400  # every synthetic record ended within it: none expires while measured
PART = 8 * MiB
BATCH = 2000  # records per pipeline round trip
RUNS = 3


# -- synthetic records -----------------------------------------------------------------------


def _hex(seed: bytes, n: int) -> str:
    return hashlib.blake2b(seed, digest_size=(n + 1) // 2).hexdigest()[:n]


@dataclass(frozen=True)
class Synthetic:
    stream_id: str
    meta: dict[str, str]
    parts: dict[str, str]
    ended_at: float  # Unix s


def synthetic(i: int, now: float, spacing_s: float, *, live: bool = False) -> Synthetic:
    """The i-th recording, a 1-minute segment of one of 16 cameras (or more, to keep each
    camera's segments a minute apart), that ended ``i * spacing_s`` before ``now``: the history
    fills the last HISTORY_S evenly, all of it within --keep-records (nothing expires during a
    run)."""
    sid = _hex(b"sid%d" % i, 16)
    cams = max(16, math.ceil(60 / spacing_s))
    cam = i % cams
    ended_at = now - i * spacing_s
    end = datetime.fromtimestamp(ended_at, UTC)
    start = end - timedelta(seconds=60)
    size = 20_000_000 + (int(sid[:6], 16) % 70_000_000)
    if i % 1000 == 999:
        state, size = StreamState.SKIPPED, 0
    elif i % 200 == 7:
        state = StreamState.ABORTED
    else:
        state = StreamState.COMPLETED
    if live:
        state = StreamState.UPLOADING
    name = f"{start:%Y-%m-%d_%H-%M-%S}.mp4"
    count = 0 if state is StreamState.SKIPPED else (size + PART - 1) // PART
    full = (count - 1) if state is StreamState.COMPLETED or live else count // 2
    sent = full * PART
    at = iso(start + timedelta(seconds=50))
    parts = {
        str(n): PartRecord(
            n, PART, int(_hex(b"c%d-%d" % (i, n), 8), 16), f'"{_hex(b"e%d-%d" % (i, n), 32)}"', at
        ).to_json()
        for n in range(1, full + 1)
    }
    if state is StreamState.COMPLETED:
        tail = size - sent
        parts[str(count)] = PartRecord(count, tail, 77, f'"{_hex(b"t%d" % i, 32)}"', at).to_json()
        sent = size
    record = StreamRecord(
        stream_id=sid,
        path=f"/srv/recordings/cam-{cam:02d}/{name}",
        watch_root="/srv/recordings",
        bucket="nvr-archive",
        key=f"site-a/streams/{sid}/{name}",
        base_part_size=PART,
        state=state,
        upload_id=_hex(b"u%d" % i, 64) if state is not StreamState.SKIPPED else "",
        next_part_to_upload=len(parts) + 1,
        total_bytes_sent=sent,
        last_activity_at_utc=iso(end),
        error="the file vanished before the upload completed"
        if state is StreamState.ABORTED
        else "",
        device=2049,
        inode=1_000_000 + i,
        birth_ns=int(start.timestamp() * 1e9),
        inode_generation=int(_hex(b"g%d" % i, 8), 16),
        generation=1,
        created_at=iso(start),
        completed_at=iso(end) if state is StreamState.COMPLETED else "",
        final_size=size if state is StreamState.COMPLETED else 0,
        final_mtime_ns=int(ended_at * 1e9) if state is StreamState.COMPLETED else 0,
        sha256=_hex(b"s%d" % i, 64) if state is StreamState.COMPLETED else "",
        etag=f'"{_hex(b"m%d" % i, 32)}-{count}"' if state is StreamState.COMPLETED else "",
        head_size=PART if count else 0,
        head_crc32=int(_hex(b"h%d" % i, 8), 16) if count else 0,
        owner=SCOPE,
        scope=SCOPE,
    )
    return Synthetic(sid, record.to_hash(), parts, ended_at)


def spacing(count: int) -> float:
    return HISTORY_S / (count + LIVE)


def write_records(
    client: redis.Redis, start: int, count: int, now: float, gap_s: float, *, live: bool
) -> None:
    """Pipelined, BATCH records per round trip, the keys RedisCheckpointStore leaves."""
    keys = RedisKeys(PREFIX)
    idx = keys.scope(SCOPE)
    for first in range(start, start + count, BATCH):
        pipe = client.pipeline(transaction=False)
        for i in range(first, min(first + BATCH, start + count)):
            rec = synthetic(i, now, gap_s, live=live)
            meta, parts = keys.stream_meta(rec.stream_id), keys.stream_parts(rec.stream_id)
            pipe.hset(meta, mapping=rec.meta)  # type: ignore[arg-type]
            if rec.parts:
                pipe.hset(parts, mapping=rec.parts)  # type: ignore[arg-type]
            if live:
                pipe.sadd(idx.live, rec.stream_id)
                pipe.set(idx.path(rec.meta["path"]), rec.stream_id)
                pipe.set(keys.object_claim(rec.meta["key"]), rec.stream_id)
                continue
            ttl_ms = max(1000, int((rec.ended_at + KEEP_S - now) * 1000))
            pipe.pexpire(meta, ttl_ms)
            if rec.parts:
                pipe.pexpire(parts, ttl_ms)
            pipe.set(idx.path(rec.meta["path"]), rec.stream_id, px=ttl_ms)
            pipe.set(keys.object_claim(rec.meta["key"]), rec.stream_id, px=ttl_ms)
            pipe.zadd(idx.ended, {rec.stream_id: rec.ended_at})
        pipe.execute()


def expire_records(client: redis.Redis, count: int, now: float, gap_s: float) -> None:
    """What --keep-records does to the ended records, now: their own keys expire (1 ms)."""
    keys = RedisKeys(PREFIX)
    idx = keys.scope(SCOPE)
    for first in range(LIVE, LIVE + count, BATCH):
        pipe = client.pipeline(transaction=False)
        for i in range(first, min(first + BATCH, LIVE + count)):
            rec = synthetic(i, now, gap_s)
            for key in (
                keys.stream_meta(rec.stream_id),
                keys.stream_parts(rec.stream_id),
                idx.path(rec.meta["path"]),
                keys.object_claim(rec.meta["key"]),
            ):
                pipe.pexpire(key, 1)
        pipe.execute()


def key_sizes(
    client: redis.Redis, count: int, now: float, gap_s: float, sample: int = 1000
) -> dict[str, float]:
    """MEMORY USAGE of each kind of key, averaged over ``sample`` records spread over the
    history (the ended index's share: its size over its members)."""
    keys = RedisKeys(PREFIX)
    idx = keys.scope(SCOPE)
    sums = {"meta": 0, "parts": 0, "path": 0, "claim": 0}
    step = max(1, count // sample)
    picked = range(LIVE, LIVE + count, step)
    for i in picked:
        rec = synthetic(i, now, gap_s)
        for kind, key in (
            ("meta", keys.stream_meta(rec.stream_id)),
            ("parts", keys.stream_parts(rec.stream_id)),
            ("path", idx.path(rec.meta["path"])),
            ("claim", keys.object_claim(rec.meta["key"])),
        ):
            sums[kind] += int(client.memory_usage(key, samples=0) or 0)
    out = {kind: total / len(picked) for kind, total in sums.items()}
    out["ended index entry"] = int(client.memory_usage(idx.ended, samples=0) or 0) / count
    return out


def used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


# -- measuring -------------------------------------------------------------------------------


@dataclass
class Result:
    count: int
    write_s: float = 0.0
    bytes_per_record: float = 0.0
    bytes_per_expired: float = 0.0
    bytes_after_trim: float = 0.0
    expiry_s: float = 0.0
    status: dict[str, float] = field(default_factory=dict)  # case -> median wall s
    streams: dict[str, tuple[float, float, float]] = field(default_factory=dict)  # ms
    notes: list[str] = field(default_factory=list)
    key_bytes: dict[str, float] = field(default_factory=dict)  # key kind -> MEMORY USAGE


STATUS_CASES: dict[str, list[str]] = {
    "status": [],
    "status --json": ["--json"],
    "status --state skipped (0.1%)": ["--state", "skipped"],
    "status --state aborted --limit 100": ["--state", "aborted", "--limit", "100"],
    # Never 1000 matches in the newest 100,000: the scan stops at its bound, and says so.
    "status --state skipped --limit 1000": ["--state", "skipped", "--limit", "1000"],
    "status --state failed (live only)": ["--state", "failed"],
}


def time_status(url: str, args: list[str], runs: int = RUNS) -> tuple[float, str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "src"),
        "TAILUP_REDIS_URL": url,
        "TAILUP_REDIS_PREFIX": PREFIX,
        "TAILUP_NODE_ID": NODE,
        "COLUMNS": "160",
    }
    walls, last = [], ""
    for _ in range(runs):
        started = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "tailup", "status", *args],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        walls.append(time.monotonic() - started)
        if proc.returncode != 0:
            raise RuntimeError(f"tailup status {' '.join(args)}: {proc.stderr[-2000:]}")
        # The summary line: under the table, or on stderr with --all (not with plain --json:
        # its stderr is no terminal here).
        out = proc.stderr if "--json" in args else proc.stdout
        last = (out.strip().splitlines() or [""])[-1]
    return statistics.median(walls), last


def python_start() -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    walls = []
    for _ in range(RUNS):
        started = time.monotonic()
        subprocess.run([sys.executable, "-c", "import tailup.cli, tailup.status"], env=env)
        walls.append(time.monotonic() - started)
    return statistics.median(walls)


STREAMS_CASES = {
    "/streams": "",
    "/streams?state=skipped": "?state=skipped",
    "/streams?state=skipped&limit=1000": "?state=skipped&limit=1000",  # stops at 20,000
    "/streams?limit=1000": "?limit=1000",
}


async def time_streams(url: str, requests: int = 20) -> dict[str, tuple[float, float, float]]:
    import aiohttp
    from aiohttp import web

    from tailup.health import HealthMonitor
    from tailup.server import OpsContext, build_app

    class Owner:
        def stream_states(self) -> dict[str, int]:
            return {}

        @property
        def streams(self) -> dict[str, Any]:
            return {}

    out: dict[str, tuple[float, float, float]] = {}
    async with RedisCheckpointStore.connect(url, PREFIX, scope=SCOPE) as cps:
        ctx = OpsContext(Owner(), HealthMonitor({}, interval_s=60), cps, (SCOPE,))
        runner = web.AppRunner(build_app(ctx), access_log=None)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        worst = 0.0

        async def ticker() -> None:
            nonlocal worst
            loop = asyncio.get_running_loop()
            while True:
                before = loop.time()
                await asyncio.sleep(0.001)
                worst = max(worst, loop.time() - before - 0.001)

        try:
            async with aiohttp.ClientSession() as session:
                for name, query in STREAMS_CASES.items():
                    async with session.get(f"http://127.0.0.1:{port}/streams{query}") as r:
                        await r.read()  # warm: connection, scripts
                    tick = asyncio.create_task(ticker())
                    worst, latencies = 0.0, []
                    for _ in range(requests):
                        started = time.monotonic()
                        async with session.get(f"http://127.0.0.1:{port}/streams{query}") as r:
                            assert r.status == 200, await r.text()
                            await r.read()
                        latencies.append((time.monotonic() - started) * 1000)
                    tick.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await tick
                    out[name] = (statistics.median(latencies), max(latencies), worst * 1000)
        finally:
            await runner.cleanup()
    return out


def wait_expired(client: redis.Redis, live_keys: int, timeout_s: float) -> None:
    """Until Redis's active expiry has reclaimed every expired key; then a SCAN (which expires
    what it touches) if it has not within the timeout."""
    started = time.monotonic()
    while client.dbsize() > live_keys + 1:  # + the ended index
        if time.monotonic() - started > timeout_s:
            for _ in client.scan_iter(count=10_000):
                pass
            break
        time.sleep(0.5)


def bench(count: int, work: Path, all_max: int) -> Result:
    result = Result(count)
    now = time.time()
    with RedisServer(work / f"redis-{count}") as server:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        gap_s = spacing(count)
        write_records(client, 0, LIVE, now, gap_s, live=True)
        live_keys = client.dbsize()
        baseline = used_memory(client)
        started = time.monotonic()
        write_records(client, LIVE, count, now, gap_s, live=False)
        result.write_s = time.monotonic() - started
        result.bytes_per_record = (used_memory(client) - baseline) / count
        result.key_bytes = key_sizes(client, count, now, gap_s)
        if client.dbsize() < live_keys + 1 + 3 * count:
            result.notes.append(f"records expired while written at {count:,}")
        print(f"  wrote {count:,} records in {result.write_s:.1f} s", flush=True)
        print(f"  MEMORY USAGE per key: {result.key_bytes}", flush=True)

        for name, args in STATUS_CASES.items():
            wall, last = time_status(server.url, args)
            result.status[name] = wall
            print(f"  {name}: {wall:.2f} s  [{last}]", flush=True)
        if count <= all_max:
            wall, last = time_status(server.url, ["--all", "--json"], runs=1)
            result.status["status --all --json"] = wall
            print(f"  status --all --json: {wall:.2f} s  [{last}]", flush=True)
        else:
            result.notes.append(f"--all not timed at {count:,} (above --all-max {all_max:,})")

        result.streams = asyncio.run(time_streams(server.url))
        for name, (median, worst, stall) in result.streams.items():
            print(f"  {name}: median {median:.1f} ms, max {worst:.1f} ms, loop held {stall:.1f} ms")

        started = time.monotonic()
        expire_records(client, count, now, gap_s)
        wait_expired(client, live_keys, timeout_s=600)
        result.expiry_s = time.monotonic() - started
        result.bytes_per_expired = (used_memory(client) - baseline) / count
        print(f"  expired in {result.expiry_s:.0f} s", flush=True)
        asyncio.run(_trim(server.url, now))
        result.bytes_after_trim = (used_memory(client) - baseline) / count
        client.close()
    return result


async def _trim(url: str, now: float) -> None:
    async with RedisCheckpointStore.connect(url, PREFIX, scope=SCOPE) as cps:
        await cps.trim_ended(now + 1)


# -- report ----------------------------------------------------------------------------------


def machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    redis_version = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True, check=False
    ).stdout.split()[2:3]
    return (
        f"{model}, nproc {os.cpu_count()}, {mem:.0f} GiB RAM, Linux {platform.release()}, "
        f"Python {platform.python_version()}, redis-server {' '.join(redis_version)}"
    )


def report(results: list[Result], start_s: float) -> str:
    counts = [f"{r.count:,}" for r in results]
    lines = [
        f"## Records at scale (issue 9): {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"Machine: {machine()}. `python bench/records.py`; how each figure is taken is in its "
        f"docstring. {LIVE} live streams plus N ended ones over the last 29 days (1-minute "
        "segments, 20-90 MB, 8 MiB parts, 99.4% completed, 0.5% aborted, 0.1% skipped). "
        f"Python's start with tailup's imports: {start_s:.2f} s of every `tailup status` below.",
        "",
        "| | " + " | ".join(counts) + " |",
        "|---|" + "---:|" * len(results),
        "| write (pipelined, 2000 records per round trip) | "
        + " | ".join(f"{r.write_s:.0f} s" for r in results)
        + " |",
    ]
    for name in STATUS_CASES:
        cells = [f"{r.status[name]:.2f} s" for r in results]
        lines.append(f"| `tailup {name}`, median of {RUNS} | " + " | ".join(cells) + " |")
    name = "status --all --json"
    cells = [
        f"{r.status[name]:.0f} s ({r.status[name] / (r.count + LIVE) * 1e6:.0f} us/record)"
        if name in r.status
        else "-"
        for r in results
    ]
    lines.append(f"| `tailup {name} > file`, one run | " + " | ".join(cells) + " |")
    for name in STREAMS_CASES:
        cells = [
            f"{r.streams[name][0]:.0f} ms (max {r.streams[name][1]:.0f}, loop held "
            f"{r.streams[name][2]:.0f})"
            for r in results
        ]
        lines.append(f"| `{name}`, median of 20 | " + " | ".join(cells) + " |")
    lines += [
        "| Redis used_memory per ended record | "
        + " | ".join(f"{r.bytes_per_record:,.0f} B" for r in results)
        + " |",
        "| ... of which (MEMORY USAGE, 1,000 sampled) meta / parts / path / claim / index | "
        + " | ".join(" / ".join(f"{v:,.0f}" for v in r.key_bytes.values()) + " B" for r in results)
        + " |",
        "| ... per expired record, before trim_ended (its ended-index entry) | "
        + " | ".join(f"{r.bytes_per_expired:,.0f} B" for r in results)
        + " |",
        "| ... per record after trim_ended | "
        + " | ".join(f"{r.bytes_after_trim:,.0f} B" for r in results)
        + " |",
        "| expiring every record's keys (PEXPIRE 1 ms, pipelined) until Redis reclaimed them | "
        + " | ".join(f"{r.expiry_s:.0f} s" for r in results)
        + " |",
    ]
    notes = [n for r in results for n in r.notes]
    if notes:
        lines += ["", "Notes: " + "; ".join(notes) + "."]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="tailup status and /streams at 100k/1M records")
    parser.add_argument("--counts", default="100000,1000000", help="ended records, e.g. 100000")
    parser.add_argument("--all-max", type=int, default=100_000, help="time --all up to this")
    parser.add_argument("--record", action="store_true", help="append to bench/RESULTS.md")
    return parser.parse_args(argv)


@contextlib.contextmanager
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="tailup-records-") as tmp:
        yield Path(tmp)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # A plain `kill` ends the run through the context managers: the Redis servers stop too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    results = []
    start_s = python_start()
    with workdir() as work:
        for count in (int(n) for n in args.counts.split(",")):
            print(f"{count:,} ended records", flush=True)
            results.append(bench(count, work, args.all_max))
    text = report(results, start_s)
    print()
    print(text)
    print(f"(bench took {time.monotonic() - started:.0f} s)")
    if args.record:
        with (BENCH / "RESULTS.md").open("a") as out:
            out.write("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
