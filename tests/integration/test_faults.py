"""Faults under a running daemon (in this process): Redis killed and restarted, the S3 server
killed and restarted, and a proxy that breaks requests on their way to S3. Each ends with every
object equal to its file."""

from __future__ import annotations

import asyncio
import functools
import os
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from conftest import TEST_ACCESS_KEY, TEST_SECRET_KEY
from faultproxy import FAULTS, FaultProxy, fault_deck
from harness import (
    IsolatedSettings,
    content,
    object_bytes,
    running_daemon,
    wait_until,
    write_slowly,
)
from tailup import metrics
from tailup.dev import RcloneS3, RedisServer, SeaweedS3
from tailup.model import StreamState
from tailup.plan import MiB, PartPlan
from tailup.retry import Backoff
from tailup.selection import Selection
from tailup.status import collect_status

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(240)]


def retries_so_far() -> float:
    return metrics.REGISTRY.get_sample_value("tailup_retries_total") or 0.0


def open_uploads(s3_client: Any, bucket: str, keys: set[str]) -> list[str]:
    uploads = s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    return [u["Key"] for u in uploads if u["Key"] in keys]


@pytest.mark.parametrize("persistent", [True, False], ids=["aof-always", "no-persistence"])
async def test_redis_killed_and_restarted_mid_stream(
    daemon_args: dict[str, Any],
    watch: Path,
    tmp_path: Path,
    s3_client: Any,
    bucket: str,
    persistent: bool,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With appendfsync always, a write Redis acknowledged survives its kill -9 (with the
    default, everysec, the last second of checkpoints may be lost; the checkpoint stays a lower
    bound). Without persistence (no AOF, no RDB save points) it comes back empty: the running
    stream writes its record back from memory, and the recording still ends up in S3 once."""
    if persistent:
        redis = RedisServer(
            tmp_path / "redis", appendonly=True, extra_args=["--appendfsync", "always"]
        )
    else:
        redis = RedisServer(tmp_path / "redis")  # --appendonly no --save ""
    path = watch / "redis-outage.ts"
    seen: dict[str, Any] = {}
    with redis:
        async with running_daemon(**{**daemon_args, "redis_url": redis.url}) as daemon:

            async def outage(written: int) -> None:
                if written >= 6 * MiB and "down_at" not in seen:
                    await wait_until(
                        lambda: bool(daemon.checkpoints.after_commit), "part 1 checkpointed"
                    )
                    redis.kill()
                    stream = daemon.supervisor.streams[path]
                    seen.update(down_at=set(stream.parts), stream=stream)
                if written >= 11 * MiB and "stalled" not in seen:  # part 2 (5-10 MiB) sent
                    stream = seen["stream"]
                    await wait_until(
                        lambda: stream.record.state is StreamState.STALLED, "stalled", 30
                    )
                    seen["stalled"] = stream.record.error
                    # S3 acknowledged parts after the kill (their checkpoints failed) ...
                    acked = {c.number for c in daemon.store.parts if c.key == stream.record.key}
                    assert acked - seen["down_at"], "no part reached S3 while Redis was down"
                    # ... which do not count until checkpointed.
                    assert set(stream.parts) == seen["down_at"]
                    # Paused: the retries ask Redis first and send nothing while it is down.
                    attempts = len(daemon.store.part_attempts)
                    retries = retries_so_far()
                    await wait_until(
                        lambda: retries_so_far() >= retries + 2, "two retries while down", 30
                    )
                    assert len(daemon.store.part_attempts) == attempts, "UploadPart while down"
                    await asyncio.to_thread(redis.start)

            data = await write_slowly(path, 13 * MiB, bytes_per_s=8_000_000, on_chunk=outage)
            record = await daemon.wait_for_state(path, {StreamState.COMPLETED}, timeout_s=90)
    assert "Redis" in seen["stalled"]
    # The premise: the restarted Redis came back without the record only when not persistent.
    lost = "Redis lost this stream's record: writing it again from memory"
    assert (lost in capsys.readouterr().out) is not persistent
    listed = s3_client.list_objects_v2(Bucket=bucket).get("Contents", [])
    assert [o["Key"] for o in listed if not o["Key"].endswith(".metadata.json")] == [record.key]
    assert [key for key, _parts in daemon.store.completes] == [record.key]
    assert object_bytes(s3_client, bucket, record.key) == data
    assert open_uploads(s3_client, bucket, {record.key}) == []


async def test_s3_killed_and_restarted_mid_stream(
    daemon_args: dict[str, Any], watch: Path, tmp_path: Path
) -> None:
    path = watch / "s3-outage.ts"
    seen: dict[str, Any] = {}
    s3 = SeaweedS3(tmp_path / "seaweed", access_key=TEST_ACCESS_KEY, secret_key=TEST_SECRET_KEY)
    with s3:
        bucket = s3.create_bucket("outage")
        args = {**daemon_args, "bucket": bucket, "endpoint_url": s3.endpoint_url}
        settings = IsolatedSettings(
            bucket=bucket,
            redis_url=args["redis_url"],
            redis_prefix=args["key_prefix"],
            endpoint_url=s3.endpoint_url,
        )
        # One try per call: botocore's back-off between refused connections only delays the
        # stall this test waits for. The stream's back-off, doubling while S3 restarts, would
        # leave it asleep for seconds after S3 is back: capped at 1 s here.
        options = {"connect_timeout_s": 2, "max_attempts": 1}
        short = functools.partial(Backoff, base_s=0.05, cap_s=1.0)
        async with running_daemon(**args, store_options=options, backoff=short) as daemon:

            async def outage(written: int) -> None:
                if written >= 6 * MiB and "down" not in seen:
                    await wait_until(
                        lambda: bool(daemon.checkpoints.after_commit), "part 1 checkpointed"
                    )
                    await asyncio.to_thread(s3.kill)
                    seen["down"] = True
                if written >= 11 * MiB and "status" not in seen:  # part 2 (5-10 MiB) due
                    await daemon.wait_for_state(path, {StreamState.STALLED}, timeout_s=60)
                    # What `tailup status` shows meanwhile.
                    view = await collect_status(settings, Selection())
                    seen["status"] = [r for r in view.rows if r["path"]]
                    await asyncio.to_thread(s3.start)

            data = await write_slowly(path, 13 * MiB, bytes_per_s=6_000_000, on_chunk=outage)
            record = await daemon.wait_for_state(path, {StreamState.COMPLETED}, timeout_s=120)
        client = s3.boto3_client()
        try:
            assert object_bytes(client, bucket, record.key) == data
            assert open_uploads(client, bucket, {record.key}) == []
        finally:
            client.close()
            s3.kill()  # its data is thrown away: no need to wait for a graceful stop
    [row] = seen["status"]
    assert row["state"] == "stalled"
    assert row["error"].startswith("S3 ")


async def test_faulty_network_between_tailup_and_s3(
    daemon_args: dict[str, Any], watch: Path, s3_server: SeaweedS3, s3_client: Any, bucket: str
) -> None:
    seed = int(os.environ.get("TAILUP_FAULT_SEED") or random.randrange(2**32))
    print(f"\nfault proxy seed: {seed} (TAILUP_FAULT_SEED={seed} repeats the deck)")
    # Of every 12 requests, 5 fail: one of each fault kind.
    deck = fault_deck(7, *FAULTS)
    retries_before = metrics.REGISTRY.get_sample_value("tailup_retries_total") or 0.0
    sizes = {"a.ts": 17 * MiB, "b.mkv": 12 * MiB, "c.mp4": 3 * MiB}
    with FaultProxy(s3_server.s3_port, seed=seed, deck=deck, stall_s=4.0) as proxy:
        args = {**daemon_args, "endpoint_url": proxy.endpoint_url}
        options = {"connect_timeout_s": 2, "read_timeout_s": 1.5}
        async with running_daemon(**args, store_options=options) as daemon:
            written = await asyncio.gather(
                *(
                    write_slowly(watch / name, size, bytes_per_s=15_000_000, seed=i)
                    for i, (name, size) in enumerate(sizes.items())
                )
            )
            records = [
                await daemon.wait_for_state(watch / name, {StreamState.COMPLETED}, 120)
                for name in sizes
            ]
    stream_retries = (metrics.REGISTRY.get_sample_value("tailup_retries_total") or 0) - (
        retries_before
    )
    hit = Counter((op, outcome) for op, outcome in proxy.log if outcome in FAULTS)
    print(
        f"requests: {sum(proxy.stats.values())}, faults: {dict(proxy.stats)}, "
        f"stream-level retries: {stream_retries:g} (the rest were botocore's); faults by "
        f"operation (chance: the aimed tests below reach each lost reply on purpose): {dict(hit)}"
    )
    for record, data in zip(records, written, strict=True):
        assert object_bytes(s3_client, bucket, record.key) == data, record.path
    for kind in FAULTS:
        assert proxy.stats[kind] >= 1, f"no {kind} was injected: {dict(proxy.stats)}"
    keys = {r.key for r in records}
    assert open_uploads(s3_client, bucket, keys) == [], "an upload was left open"


# --- lost replies, aimed at the operation (docs/guarantees.md, "A lost answer is harmless") ---

OPTIONS = {"connect_timeout_s": 2, "read_timeout_s": 5}


def upload_id_of(target: str) -> str:
    query = dict(kv.partition("=")[::2] for kv in target.partition("?")[2].split("&"))
    return query.get("uploadId", "")


async def test_lost_reply_to_create_leaves_no_upload_behind(
    daemon_args: dict[str, Any], watch: Path, s3_server: SeaweedS3, s3_client: Any, bucket: str
) -> None:
    with FaultProxy(s3_server.s3_port, seed=0) as proxy:
        # SeaweedFS creates the upload; the answer never reaches tailup, whose retry makes another.
        proxy.aim(lambda op, _t: op == "CreateMultipartUpload", "reset_after")
        args = {**daemon_args, "endpoint_url": proxy.endpoint_url}
        path = watch / "lost-create.ts"
        async with running_daemon(**args, store_options=OPTIONS) as daemon:
            data = content(12 * MiB, "lost-create")
            path.write_bytes(data)
            record = await daemon.wait_for_state(path, {StreamState.COMPLETED})
    creates = proxy.outcomes("CreateMultipartUpload")
    assert creates[0] == "reset_after" and "forwarded" in creates[1:], creates
    assert object_bytes(s3_client, bucket, record.key) == data
    assert open_uploads(s3_client, bucket, {record.key}) == [], "the orphan is swept at the end"


@pytest.mark.parametrize(
    "retry_finds",
    ["completes again", "NoSuchUpload"],
    ids=["SeaweedFS completes again", "NoSuchUpload as from AWS"],
)
async def test_lost_reply_to_complete_is_settled(
    daemon_args: dict[str, Any],
    watch: Path,
    s3_server: SeaweedS3,
    s3_client: Any,
    bucket: str,
    retry_finds: str,
) -> None:
    """SeaweedFS completes the upload and the answer is lost. The retry finds what SeaweedFS says
    to a second Complete (it completes again), or NoSuchUpload (what AWS S3 says once its grace
    has passed): then the object at the key, HEAD of the real server, must carry the ETag the
    parts make (stream.py's head-and-compare)."""
    first: list[str] = []

    def first_complete(op: str, target: str) -> bool:
        if op == "CompleteMultipartUpload" and not first:
            first.append(upload_id_of(target))
            return True
        return False

    with FaultProxy(s3_server.s3_port, seed=0) as proxy:
        proxy.aim(first_complete, "reset_after")
        if retry_finds == "NoSuchUpload":
            proxy.aim(
                lambda op, t: op == "CompleteMultipartUpload" and upload_id_of(t) in first,
                "no_such_upload",
                times=100,
            )
        args = {**daemon_args, "endpoint_url": proxy.endpoint_url}
        path = watch / "lost-complete.mp4"
        async with running_daemon(**args, store_options=OPTIONS) as daemon:
            data = content(12 * MiB, "lost-complete")
            path.write_bytes(data)
            record = await daemon.wait_for_state(path, {StreamState.COMPLETED})
    completes = proxy.outcomes("CompleteMultipartUpload")
    expected_retry = "forwarded" if retry_finds == "completes again" else "no_such_upload"
    assert completes == ["reset_after", expected_retry], completes
    # Settled on the first upload: nothing was sent again, no upload was started over.
    layout = PartPlan(5 * MiB).final_layout(len(data))
    assert sorted(n for k, n in daemon.store.part_attempts if k == record.key) == [
        r.number for r in layout
    ]
    head = s3_client.head_object(Bucket=bucket, Key=record.key)
    assert head["ETag"].strip('"') == record.etag.strip('"')
    assert object_bytes(s3_client, bucket, record.key) == data
    assert open_uploads(s3_client, bucket, {record.key}) == []


async def test_lost_reply_to_complete_on_rclone(
    rclone_server: RcloneS3,
    rclone_bucket: str,
    redis_url: str,
    key_prefix: str,
    watch: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """rclone serve s3 completes the upload and the answer is lost; the retry finds
    NoSuchUpload, and the object cannot be proved this upload's (rclone reports no checksum
    and names it by the MD5 of its bytes, never by size alone): the recording is sent again in
    a new upload, to the same key (rclone ignores If-None-Match), and ends up exact, once."""
    for name, value in rclone_server.env().items():
        monkeypatch.setenv(name, value)
    first: list[str] = []

    def first_complete(op: str, target: str) -> bool:
        if op == "CompleteMultipartUpload" and not first:
            first.append(upload_id_of(target))
            return True
        return False

    with FaultProxy(rclone_server.port, seed=0) as proxy:
        proxy.aim(first_complete, "reset_after")
        path = watch / "lost-complete.ts"
        async with running_daemon(
            watch=watch,
            bucket=rclone_bucket,
            endpoint_url=proxy.endpoint_url,
            redis_url=redis_url,
            key_prefix=key_prefix,
            store_options=OPTIONS,
        ) as daemon:
            data = content(12 * MiB, "lost-complete")
            path.write_bytes(data)
            record = await daemon.wait_for_state(path, {StreamState.COMPLETED})
    completes = proxy.outcomes("CompleteMultipartUpload")
    # The lost one, the retry (NoSuchUpload), the new upload's.
    assert completes == ["reset_after", "forwarded", "forwarded"], completes
    layout = [r.number for r in PartPlan(5 * MiB).final_layout(len(data))]
    sent = sorted(n for k, n in daemon.store.part_attempts if k == record.key)
    assert sent == sorted(layout * 2), "every part sent once more, in the new upload"
    client = rclone_server.boto3_client()
    try:
        assert object_bytes(client, rclone_bucket, record.key) == data
        listed = client.list_objects_v2(Bucket=rclone_bucket).get("Contents", [])
        assert sorted(o["Key"] for o in listed) == sorted(
            [record.key, record.key + ".metadata.json"]
        )
        assert client.list_multipart_uploads(Bucket=rclone_bucket).get("Uploads", []) == []
    finally:
        client.close()
