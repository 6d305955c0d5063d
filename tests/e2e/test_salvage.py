"""A recording survives its recorder (issue 18.1): `tailup run` and a live ffmpeg MPEG-TS recorder
are killed together (SIGKILL) with two parts or more in S3, the file gone; `tailup salvage`
makes an object of the parts S3 held, a byte prefix of the recording that plays, found through
Redis's records (--node) or, with Redis emptied, from S3 alone (--from-s3). A second salvage
changes nothing; the node coming back with its file intact uploads the whole recording over the
salvaged object. A live node with --salvage-after does it by itself.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import pytest
import redis

from daemonproc import DaemonProcess, poll, run_cli, start_daemon
from tailup.checkpoint import RedisCheckpointStore
from tailup.dev import RedisServer, SeaweedS3
from tailup.keys import RedisKeys, node_scope
from tailup.metadata import probe_media
from tailup.model import StreamRecord, StreamState
from tailup.plan import MiB

pytestmark = pytest.mark.timeout(240)

NODE = "cam-node"
PART_BYTES = 5 * MiB


@dataclass
class Site:
    """A recorder node: its folder, its own Redis (emptied by one test), the shared S3."""

    tmp: Path
    watch: Path
    bucket: str
    s3: SeaweedS3
    redis: RedisServer
    prefix: str
    runs: list[DaemonProcess] = field(default_factory=list)

    def connection(self) -> list[str]:
        return [
            "--bucket", self.bucket,
            "--endpoint-url", self.s3.endpoint_url,
            "--redis-url", self.redis.url,
            "--redis-prefix", self.prefix,
        ]  # fmt: skip

    def start(
        self, node: str = NODE, watch: Path | None = None, extra: tuple[str, ...] = ()
    ) -> DaemonProcess:
        args = [
            "--watch", str(watch or self.watch),
            *self.connection(),
            "--node-id", node,
            *extra,
            "--part-size", "5MiB",
            "--lease-ttl", "3",
            "--close-grace", "0.2",
            "--idle-timeout", "2",
            "--log-format", "json",
        ]  # fmt: skip
        log = self.tmp / f"tailup-run{len(self.runs)}.log"
        daemon = start_daemon(args, self.s3.env(), log, self.tmp)
        self.runs.append(daemon)
        daemon.wait_for_event("watching")
        return daemon

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        result: subprocess.CompletedProcess[str] = run_cli(
            [*args, *self.connection()], self.s3.env(), timeout_s=120
        )
        return result

    def record_of(self, path: Path) -> StreamRecord | None:
        async def read() -> StreamRecord | None:
            async with RedisCheckpointStore.connect(
                self.redis.url, self.prefix, scope=node_scope(NODE)
            ) as cps:
                stream_id = await cps.stream_for_path(str(path))
                loaded = await cps.load(stream_id) if stream_id else None
                return loaded[0] if loaded else None

        return asyncio.run(read())

    def lease_gone(self) -> bool:
        client = redis.Redis(host="127.0.0.1", port=self.redis.port)
        try:
            return not client.exists(RedisKeys(self.prefix).node_lease(NODE))
        finally:
            client.close()

    def flushall(self) -> None:
        client = redis.Redis(host="127.0.0.1", port=self.redis.port)
        try:
            client.flushall()
        finally:
            client.close()

    def get(self, key: str) -> bytes:
        client = self.s3.boto3_client()
        body: bytes = client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return body

    def object_keys(self) -> list[str]:
        listed = self.s3.boto3_client().list_objects_v2(Bucket=self.bucket).get("Contents", [])
        return sorted(o["Key"] for o in listed)


@pytest.fixture
def site(tmp_path: Path, s3_server: SeaweedS3, bucket: str) -> Iterator[Site]:
    watch = tmp_path / "rec"
    watch.mkdir()
    with RedisServer(tmp_path / "redis") as own_redis:
        made = Site(tmp_path, watch, bucket, s3_server, own_redis, f"t-{uuid.uuid4().hex[:8]}")
        yield made
        for daemon in made.runs:
            if daemon.proc.poll() is None:
                daemon.proc.kill()
                daemon.proc.wait(timeout=10)


def destroy_mid_recording(
    site: Site,
    record: Any,
    name: str,
    *,
    daemon: DaemonProcess | None = None,
    meanwhile: Callable[[], None] = lambda: None,
) -> tuple[Path, bytes, StreamRecord]:
    """A live TS recording, the daemon (``daemon``, or one started here) and ffmpeg SIGKILLed
    together once S3 holds two parts: the file's path, its bytes at the kill, and its record
    then. ``meanwhile`` runs while the recording grows towards its two parts."""
    daemon = daemon or site.start()
    path = site.watch / name
    # 32 Mbit/s: the two parts (10 MiB) in ~2.6 s of recording, 65 frames to decode.
    recorder = record(path, "ts", 120, bitrate="32M", size="640x360")
    meanwhile()

    def two_parts_sent() -> StreamRecord | None:
        rec = site.record_of(path)
        return rec if rec is not None and rec.next_part_to_upload >= 3 else None

    sent = poll(two_parts_sent, "two parts of the recording in S3", timeout_s=90, alive=daemon)
    assert sent.state is StreamState.UPLOADING
    os.kill(recorder.pid, signal.SIGKILL)
    os.kill(daemon.proc.pid, signal.SIGKILL)
    recorder.wait(timeout=10)
    daemon.proc.wait(timeout=10)
    at_kill = site.record_of(path)
    assert at_kill is not None
    poll(site.lease_gone, "the dead node's lease to expire", timeout_s=30)
    return path, path.read_bytes(), at_kill


def assert_plays(data: bytes, tmp: Path) -> None:
    """PyAV probes it as MPEG-TS with H.264 video and decodes its frames, up to the cut."""
    out = tmp / "salvaged.ts"
    out.write_bytes(data)
    media = probe_media(out)
    assert media is not None and media.container == "mpegts", media
    assert any(s.kind == "video" and s.codec == "h264" for s in media.streams), media
    frames = 0
    try:
        with av.open(str(out)) as container:
            for _ in container.decode(video=0):
                frames += 1
    except av.error.FFmpegError:
        pass  # the cut: a packet that ends short (a player stops there)
    assert frames >= 25, f"only {frames} frames decode"


def assert_salvaged_prefix(site: Site, key: str, recording: bytes) -> dict[str, Any]:
    obj = site.get(key)
    assert len(obj) >= 2 * PART_BYTES
    assert recording[: len(obj)] == obj, "the salvaged object is not a prefix of the recording"
    assert_plays(obj, site.tmp)
    sidecar = json.loads(site.get(key + ".metadata.json"))
    assert sidecar["salvaged"] is True
    assert sidecar["size_bytes"] == sidecar["salvage"]["bytes"] == len(obj)
    assert sidecar["salvage"]["plays_truncated"] == "yes"
    assert "MPEG-TS" in sidecar["salvage"]["playability"]
    assert sidecar["stream_id"] and sidecar["key"] == key
    return dict(sidecar)


def test_salvage_by_node_then_again_then_the_node_comes_back_whole(site: Site, record: Any) -> None:
    daemon = site.start()

    def refused_while_alive() -> None:
        """Refused while the node's daemon lives (its lease is held): the daemon then killed."""
        alive = site.cli("salvage", "--node", NODE, "--dry-run")
        assert alive.returncode == 1, alive
        assert f"node {NODE}'s lease is held" in alive.stderr
        assert "its daemon is alive" in alive.stderr

    path, recording, at_kill = destroy_mid_recording(
        site, record, "cam1.ts", daemon=daemon, meanwhile=refused_while_alive
    )
    # The node's file is gone from it: moved off (the same inode comes back below).
    kept = site.tmp / "kept.ts"
    path.rename(kept)

    dry = site.cli("salvage", "--node", NODE, "--dry-run")
    assert dry.returncode == 0, dry
    header = dry.stdout.splitlines()[0].split()
    assert header == ["STREAM", "KEY", "PARTS", "BYTES", "AGE", "OUTCOME"]
    assert at_kill.stream_id[:12] in dry.stdout and "would salvage" in dry.stdout
    assert "dry run: nothing changed" in dry.stdout
    assert not [k for k in site.object_keys() if not k.endswith(".upload.json")]

    done = site.cli("salvage", "--node", NODE)
    assert done.returncode == 0, done
    assert "1 salvaged" in done.stdout, done.stdout
    sidecar = assert_salvaged_prefix(site, at_kill.key, recording)
    # Its metadata.json describes it: its size, parts and whole-object CRC, or, where the kill
    # fell between a part's acknowledgement and its checkpoint, the SHA-256 read back (no file
    # to compare).
    verified = site.cli("verify", at_kill.key)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "MATCH" in verified.stdout
    # The object and its sidecar; the upload card is gone with the upload.
    assert site.object_keys() == sorted([at_kill.key, at_kill.key + ".metadata.json"])
    salvaged = site.record_of(path)
    assert salvaged is not None and salvaged.state is StreamState.SALVAGED
    assert salvaged.final_size == sidecar["size_bytes"]
    status = site.cli("status", "--json", "--node", NODE)
    rows = {row["stream_id"]: row for row in json.loads(status.stdout)}
    assert rows[at_kill.stream_id]["state"] == "salvaged"
    assert rows[at_kill.stream_id]["bytes_uploaded"] == sidecar["size_bytes"]

    # Twice: nothing changes.
    head = site.s3.boto3_client().head_object(Bucket=site.bucket, Key=at_kill.key)
    again = site.cli("salvage", "--node", NODE)
    assert again.returncode == 0, again
    assert "nothing to salvage" in again.stdout, again.stdout  # it is no live stream now
    named = site.cli("salvage", at_kill.stream_id)
    assert named.returncode == 0, named
    assert "salvaged already" in named.stdout and "1 skipped" in named.stdout, named.stdout
    after = site.s3.boto3_client().head_object(Bucket=site.bucket, Key=at_kill.key)
    assert after["ETag"] == head["ETag"] and after["LastModified"] == head["LastModified"]
    assert json.loads(site.get(at_kill.key + ".metadata.json")) == sidecar
    assert site.record_of(path) == salvaged

    # The node comes back with its file intact: the whole recording goes over the prefix.
    kept.rename(path)
    site.start()

    def whole() -> StreamRecord | None:
        rec = site.record_of(path)
        return rec if rec is not None and rec.state is StreamState.COMPLETED else None

    completed = poll(whole, "the whole recording completed", timeout_s=90, alive=site.runs[-1])
    assert completed.stream_id == at_kill.stream_id and completed.key == at_kill.key
    assert completed.generation == at_kill.generation + 1
    assert site.get(at_kill.key) == recording
    final = json.loads(site.get(at_kill.key + ".metadata.json"))
    assert "salvaged" not in final and final["size_bytes"] == len(recording)


def test_salvage_from_s3_with_redis_emptied(site: Site, record: Any) -> None:
    path, recording, at_kill = destroy_mid_recording(site, record, "cam2.ts")
    path.unlink()
    site.flushall()
    # Another tool's open upload under the same prefix: no card, not tailup's, left alone.
    client = site.s3.boto3_client()
    foreign = client.create_multipart_upload(Bucket=site.bucket, Key="streams/other/x.ts")

    young = site.cli("salvage", "--from-s3", "--older-than", "1h", "--dry-run")
    assert young.returncode == 0, young
    assert "younger than --older-than" in young.stdout

    dry = site.cli("salvage", "--from-s3", "--older-than", "0", "--dry-run")
    assert dry.returncode == 0, dry
    assert at_kill.stream_id[:12] in dry.stdout and "would salvage" in dry.stdout
    assert "streams/other/x.ts" not in dry.stdout

    done = site.cli("salvage", "--from-s3", "--older-than", "0")
    assert done.returncode == 0, done
    assert "1 salvaged" in done.stdout, done.stdout
    sidecar = assert_salvaged_prefix(site, at_kill.key, recording)
    assert sidecar["salvage"]["found_by"].startswith("upload card")
    uploads = client.list_multipart_uploads(Bucket=site.bucket).get("Uploads", [])
    assert [u["UploadId"] for u in uploads] == [foreign["UploadId"]]
    # Redis answers (empty): the record is written again, SALVAGED, and status shows it.
    status = site.cli("status", "--json", "--node", NODE)
    rows = {row["stream_id"]: row for row in json.loads(status.stdout)}
    assert rows[at_kill.stream_id]["state"] == "salvaged"

    head = client.head_object(Bucket=site.bucket, Key=at_kill.key)
    again = site.cli("salvage", "--from-s3", "--older-than", "0")
    assert again.returncode == 0, again
    assert "nothing to salvage" in again.stdout, again.stdout
    after = client.head_object(Bucket=site.bucket, Key=at_kill.key)
    assert after["ETag"] == head["ETag"] and after["LastModified"] == head["LastModified"]
    assert json.loads(site.get(at_kill.key + ".metadata.json")) == sidecar


def test_a_live_node_salvages_a_node_gone_longer_than_salvage_after(
    site: Site, record: Any
) -> None:
    path, recording, at_kill = destroy_mid_recording(site, record, "cam3.ts")
    path.unlink()
    elsewhere = site.tmp / "elsewhere"
    elsewhere.mkdir()
    rescuer = site.start("rescuer", elsewhere, ("--salvage-after", "1"))

    def salvaged() -> StreamRecord | None:
        rec = site.record_of(path)
        return rec if rec is not None and rec.state is StreamState.SALVAGED else None

    done = poll(salvaged, "the dead node's recording salvaged", timeout_s=60, alive=rescuer)
    assert done.stream_id == at_kill.stream_id
    assert_salvaged_prefix(site, at_kill.key, recording)
    said = rescuer.wait_for_event("--salvage-after: salvaged", stream_id=at_kill.stream_id)
    assert said["size"] == done.final_size
    assert rescuer.stop() == 0


def test_with_rpo_the_salvaged_prefix_reaches_to_within_the_rpo_of_the_kill(
    site: Site, record: Any
) -> None:
    """Issue 18's done-when for --rpo 2: the object salvage makes of a recorder killed with its
    daemon reaches to within 2.5 s of the kill (the RPO plus the write cadence)."""
    daemon = site.start(extra=("--rpo", "2"))
    path = site.watch / "cam4.ts"
    # 1 MB/s: killed at 8 MiB, 2.5 s before the kill the file was ~5.6 MiB, past part 1 (so the
    # staged tail must hold the rest), and part 2 (at 10 MiB) is still 2 s away.
    recorder = record(path, "ts", 120, bitrate="8M", size="640x360")
    sizes: list[tuple[float, int]] = []  # (monotonic s, file size): the recording's progress

    def part_sent_and_then_some() -> StreamRecord | None:
        sizes.append((time.monotonic(), path.stat().st_size if path.exists() else 0))
        rec = site.record_of(path)
        ahead = rec is not None and rec.next_part_to_upload >= 2
        return rec if ahead and sizes[-1][1] >= PART_BYTES + 3 * MiB else None

    poll(part_sent_and_then_some, "a part and 3 MiB more", timeout_s=90, alive=daemon)
    os.kill(recorder.pid, signal.SIGKILL)
    os.kill(daemon.proc.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    recorder.wait(timeout=10)
    daemon.proc.wait(timeout=10)
    recording = path.read_bytes()
    at_kill = site.record_of(path)
    assert at_kill is not None
    path.unlink()
    poll(site.lease_gone, "the dead node's lease to expire", timeout_s=30)

    done = site.cli("salvage", "--node", NODE)
    assert done.returncode == 0, done
    assert "1 salvaged" in done.stdout, done.stdout
    obj = site.get(at_kill.key)
    assert recording[: len(obj)] == obj
    must_hold = max(size for at, size in sizes if at <= killed_at - 2.5)
    assert len(obj) >= must_hold, (len(obj), must_hold, len(recording))
    assert len(obj) > PART_BYTES  # past the last part: the staged tail is in it
    assert not [k for k in site.object_keys() if ".tailup/" in k]  # nothing staged stays
    sidecar = json.loads(site.get(at_kill.key + ".metadata.json"))
    assert "--rpo's staged tail segments" in sidecar["salvage"]["why"]


def test_salvage_refuses_bad_input(site: Site) -> None:
    unknown = site.cli("salvage", "feedfacefeed")
    assert unknown.returncode == 1 and "feedfacefeed" in unknown.stderr, unknown
    for args, said in [
        (["--from-s3", "--older-than", "soon"], "--older-than: got 'soon'. Accepted:"),
        (["--node", NODE, "--older-than", "1h"], "--older-than goes with --from-s3"),
        ([], "Give --node NODE, STREAM..., or --from-s3"),
        (["--from-s3", "--node", NODE], "it takes no STREAM and no --node"),
        (["--node", "bad node!"], "--node: 'bad node!' is not a node id"),
    ]:
        result = site.cli("salvage", *args)
        assert result.returncode == 2, (args, result)
        assert said in result.stderr, (args, result.stderr)


def test_no_card_is_left_once_a_recording_completes(site: Site, record: Any) -> None:
    site.start()
    path = site.watch / "short.ts"
    assert record(path, "ts", 4, bitrate="16M").wait(timeout=60) == 0

    def done() -> StreamRecord | None:
        rec = site.record_of(path)
        return rec if rec is not None and rec.state is StreamState.COMPLETED else None

    completed = poll(done, "the recording completed", timeout_s=60, alive=site.runs[-1])
    assert completed.upload_id  # a multipart upload, which had a card
    assert site.object_keys() == sorted([completed.key, completed.key + ".metadata.json"])
    shutil.rmtree(site.watch)
