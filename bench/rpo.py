"""What --rpo costs (issue 18 point 2): two live cameras, 2 Mbit/s and 8 Mbit/s, recorded for
--seconds (60 by default) into one daemon, once without --rpo and once with --rpo 2.

    nice python bench/rpo.py                 # ~2.5 min: two runs of 60 s, plus start-up
    nice python bench/rpo.py --record        # and append the table to bench/RESULTS.md

SeaweedFS and redis-server start on 127.0.0.1 (tailup.dev); the daemon runs in this process on
a store that counts every S3 request, its kind and the body bytes it carried, per camera; the
cameras are bench/writer.py processes (their CPU is not the daemon's). Reported per camera:
requests per hour by kind (steady state: scaled from the recording's seconds), the bytes sent
beyond the recording's own (tail segments), the bytes staged on average (the integral of
segments put minus deleted), and what that costs per camera-month on AWS S3 Standard; per run,
the daemon's CPU seconds (this process's, getrusage). The segments left when each recording is
complete are counted (0 expected). Nothing is asserted: costs are measured, never tested.

The per-recording requests (Create, Complete, the HEAD check, metadata.json, the LIST that
cleans up) are listed apart: a camera that records one file an hour makes them once an hour.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT / "src"))

from tailup.checkpoint import RedisCheckpointStore  # noqa: E402
from tailup.config import Settings  # noqa: E402
from tailup.dev import RedisServer, SeaweedS3  # noqa: E402
from tailup.keys import is_staging_key  # noqa: E402
from tailup.model import StreamState  # noqa: E402
from tailup.s3 import S3MultipartStore  # noqa: E402
from tailup.supervisor import Supervisor  # noqa: E402

BUCKET = "bench-rpo"
CAMERAS = {"cam2m": 2_000_000 / 8, "cam8m": 8_000_000 / 8}  # name -> bytes per second
RPO_S = 2.0
# AWS S3 Standard, us-east-1, as given in the task (issue 18), used on 2026-12-07: PUT, COPY,
# POST and LIST requests $0.005 per 1,000; GET and HEAD $0.0004 per 1,000; DELETE free;
# storage $0.023 per GB-month (first 50 TB). Data in is free.
PUT_CLASS_USD = 0.005 / 1000
GET_CLASS_USD = 0.0004 / 1000
STORAGE_USD_PER_GB_MONTH = 0.023
HOURS_PER_MONTH = 730
PUT_CLASS = {"upload_part", "put_object", "create_upload", "complete_upload", "list_objects"}
PUT_CLASS |= {"list_parts", "list_uploads"}
GET_CLASS = {"head_object", "get_object"}
STEADY = {"upload_part", "tail_put", "tail_delete"}  # per hour of recording


@dataclass
class Tally:
    requests: Counter[str] = field(default_factory=Counter)
    body_bytes: Counter[str] = field(default_factory=Counter)
    staged_now: int = 0
    staged_since: float = 0.0
    staged_byte_s: float = 0.0  # integral of staged bytes over time
    staged_sizes: dict[str, int] = field(default_factory=dict)

    def stage(self, key: str, size: int, now: float) -> None:
        self._advance(now)
        self.staged_sizes[key] = size
        self.staged_now += size

    def unstage(self, key: str, now: float) -> None:
        self._advance(now)
        self.staged_now -= self.staged_sizes.pop(key, 0)

    def _advance(self, now: float) -> None:
        if self.staged_since:
            self.staged_byte_s += self.staged_now * (now - self.staged_since)
        self.staged_since = now


class Counting:
    """The real store, counting each request per camera (named in its key)."""

    def __init__(self, inner: S3MultipartStore) -> None:
        self.inner = inner
        self.tallies: dict[str, Tally] = defaultdict(Tally)

    def for_bucket(self, bucket: str) -> Any:
        return self

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)
        if not asyncio.iscoroutinefunction(method):
            return method

        async def call(*args: Any, **kwargs: Any) -> Any:
            key = str(args[0]) if args else ""
            camera = next((c for c in CAMERAS if c in key), "other")
            tally = self.tallies[camera]
            kind = name
            if name == "put_object" and is_staging_key(key):
                kind = "tail_put"
            elif name == "delete_object":
                kind = "tail_delete"
            result = await method(*args, **kwargs)
            tally.requests[kind] += 1
            if name in ("upload_part", "put_object"):
                tally.body_bytes[kind] += len(args[3] if name == "upload_part" else args[1])
            if kind == "tail_put":
                tally.stage(key, len(args[1]), time.monotonic())
            elif kind == "tail_delete":
                tally.unstage(key, time.monotonic())
            return result

        return call


async def record_once(
    s3: SeaweedS3, redis: RedisServer, work: Path, rpo: float | None, seconds: float
) -> dict[str, Any]:
    watch = work / f"watch-{'rpo' if rpo else 'off'}"
    watch.mkdir(parents=True)
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        watch=[watch],
        bucket=BUCKET,
        endpoint_url=s3.endpoint_url,
        redis_url=redis.url,
        redis_prefix=f"bench-rpo-{'on' if rpo else 'off'}",
        rpo=rpo,
        close_grace=0.5,
        log_level="warning",
    )
    async with (
        S3MultipartStore.connect(BUCKET, endpoint_url=s3.endpoint_url, region="us-east-1") as real,
        RedisCheckpointStore.for_settings(settings) as checkpoints,
    ):
        store = Counting(real)
        supervisor = Supervisor(settings, store, checkpoints)  # type: ignore[arg-type]
        stop = asyncio.Event()
        task = asyncio.create_task(supervisor.run(stop))
        await asyncio.wait_for(supervisor.ready.wait(), 10)
        cpu_before = _cpu_s()
        writers = [
            await asyncio.create_subprocess_exec(
                *[
                    sys.executable,
                    str(BENCH / "writer.py"),
                    "--rate",
                    f"{rate / 1000:g}kb",
                    "--bytes",
                    str(int(rate * seconds)),
                    str(watch / f"{camera}.ts"),
                ],
                stdout=asyncio.subprocess.DEVNULL,
            )
            for camera, rate in CAMERAS.items()
        ]
        for writer in writers:
            await writer.wait()
        keys = {c: await _completed_key(checkpoints, watch / f"{c}.ts") for c in CAMERAS}
        cpu_s = _cpu_s() - cpu_before
        stop.set()
        await asyncio.wait_for(task, 30)
        left = {c: len(await real.list_objects(k + ".tailup/")) for c, k in keys.items()}
    for tally in store.tallies.values():
        tally.unstage("", time.monotonic())
    return {"tallies": dict(store.tallies), "cpu_s": cpu_s, "left": left}


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _completed_key(checkpoints: RedisCheckpointStore, path: Path) -> str:
    for _ in range(600):
        stream_id = await checkpoints.stream_for_path(str(path))
        loaded = await checkpoints.load(stream_id) if stream_id else None
        if loaded and loaded[0].state is StreamState.COMPLETED:
            return loaded[0].key
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{path.name} did not complete within 60 s of its close")


def monthly_usd(tally: Tally, seconds: float) -> tuple[float, float]:
    """(requests, storage) per camera-month at the steady state's rates."""
    per_hour = {k: n * 3600 / seconds for k, n in tally.requests.items() if k in STEADY}
    put_class = sum(n for k, n in per_hour.items() if k in ("upload_part", "tail_put"))
    requests = put_class * PUT_CLASS_USD * HOURS_PER_MONTH
    staged_gb = tally.staged_byte_s / seconds / 1e9
    return requests, staged_gb * STORAGE_USD_PER_GB_MONTH


def report(runs: dict[str, dict[str, Any]], seconds: float) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"## --rpo costs ({when}, bench/rpo.py, {seconds:g} s per recording, 8 MiB parts)",
        "",
        "Two cameras into one daemon at once, without --rpo and with --rpo 2 (SeaweedFS and "
        "Redis on loopback). Requests per hour scaled from the recording; $ per camera-month "
        "on AWS S3 Standard us-east-1 at the prices given in issue 18 (PUT/LIST $0.005 per "
        "1,000, DELETE free, storage $0.023/GB-month; used 2026-12-07, not re-checked online): "
        "UploadPart and tail PUTs, and the staged bytes' storage.",
        "",
        "| camera | --rpo | UploadPart/h | tail PUT/h | tail DELETE/h | bytes sent / recorded "
        "| staged on average | $/month requests | $/month staged | segments left |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for camera, rate in CAMERAS.items():
        for label, run in runs.items():
            tally: Tally = run["tallies"].get(camera, Tally())
            recorded = rate * seconds
            sent = sum(tally.body_bytes.values())
            per_hour = {k: tally.requests[k] * 3600 / seconds for k in STEADY}
            req_usd, staged_usd = monthly_usd(tally, seconds)
            staged_kib = tally.staged_byte_s / seconds / 1024
            lines.append(
                f"| {camera[3]} Mbit/s | {label} | {per_hour['upload_part']:,.0f} "
                f"| {per_hour['tail_put']:,.0f} | {per_hour['tail_delete']:,.0f} "
                f"| {sent / recorded:.2f} | {staged_kib:,.0f} KiB | ${req_usd:.2f} "
                f"| ${staged_usd:.5f} | {run['left'].get(camera, 0)} |"
            )
    lines += [
        "",
        "| --rpo | daemon CPU s (both cameras) | per-recording requests (both) |",
        "|---|---:|---|",
    ]
    for label, run in runs.items():
        fixed: Counter[str] = Counter()
        for tally in run["tallies"].values():
            fixed.update({k: n for k, n in tally.requests.items() if k not in STEADY})
        shown = ", ".join(f"{k} {n}" for k, n in sorted(fixed.items()))
        lines.append(f"| {label} | {run['cpu_s']:.2f} | {shown} |")
    return "\n".join(lines) + "\n"


async def main_async(args: argparse.Namespace) -> str:
    work = BENCH / ".work" / "rpo"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    s3 = SeaweedS3(work / "seaweedfs")
    with s3, RedisServer(work / "redis") as redis:
        s3.create_bucket(BUCKET)
        os.environ.update(s3.env())
        runs = {
            "off": await record_once(s3, redis, work, None, args.seconds),
            f"{RPO_S:g} s": await record_once(s3, redis, work, RPO_S, args.seconds),
        }
    shutil.rmtree(work, ignore_errors=True)
    return report(runs, args.seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="recording length")
    parser.add_argument("--record", action="store_true", help="append to bench/RESULTS.md")
    args = parser.parse_args(argv)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    text = asyncio.run(main_async(args))
    print(text)
    if args.record:
        with (BENCH / "RESULTS.md").open("a", encoding="utf-8") as out:
            out.write("\n" + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
