"""Many daemons on one Redis, and Redis as a cache of S3 (issue 9): real daemons (subprocesses),
a real Redis and a real S3 server.

- A node id is one live daemon: a second is refused, a restart after kill -9 takes it back at once.
- Two nodes with their own folders at the same path (the second sees another folder there, under
  `unshare --mount`): restarts of either never touch the other's recordings.
- A shared folder watched by two nodes: every recording uploaded once; the owner of a live one
  killed, the other finishes it exact.
- Redis emptied (FLUSHALL) mid-recording, and records expired under --keep-records: no finished
  recording is uploaded again, the live one ends exact.
"""

from __future__ import annotations

import contextlib
import functools
import json
import signal
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest
import redis
import redis.cluster

from daemonproc import DaemonProcess, poll, start_daemon
from harness import content, object_bytes
from tailup.dev import RedisCluster, RedisSentinel, RedisServer, SeaweedS3
from tailup.keys import RedisKeys, metadata_key, node_scope, share_scope
from tailup.model import StreamRecord, StreamState
from tailup.uploadcard import CARD_SUFFIX

MiB = 1024 * 1024
LEASE_TTL_S = 6  # short for a test; a loaded 2-core CI machine still renews well within it


@dataclass
class Fleet:
    """Daemons of one test: one Redis prefix, one bucket."""

    tmp: Path
    s3: SeaweedS3
    redis_url: str
    bucket: str
    prefix: str
    s3_client: Any
    daemons: list[DaemonProcess] = field(default_factory=list)
    opened: list[IO[bytes]] = field(default_factory=list)
    # How the test itself reads Redis (a Cluster or Sentinel needs their own clients).
    client: Callable[[], Any] | None = None

    def start(
        self,
        node: str,
        *folder_args: str,
        wrapper: list[str] | None = None,
        wait: bool = True,
        idle_timeout_s: float = 30,
        lease_ttl_s: float = LEASE_TTL_S,
    ) -> DaemonProcess:
        args = [
            "--node-id", node, *folder_args,
            "--bucket", self.bucket, "--endpoint-url", self.s3.endpoint_url,
            "--redis-url", self.redis_url, "--redis-prefix", self.prefix,
            "--part-size", "5MiB", "--close-grace", "0.3", "--idle-timeout", str(idle_timeout_s),
            "--lease-ttl", str(lease_ttl_s), "--log-format", "json", "--log-level", "debug",
        ]  # fmt: skip
        log = self.tmp / f"{node}-{len(self.daemons)}.log"
        daemon = start_daemon(args, self.s3.env(), log, self.tmp, wrapper=wrapper or [])
        self.daemons.append(daemon)
        if wait:
            daemon.wait_for_event("watching")
        return daemon

    def wait_for_lease_rounds(self, node: str, rounds: int = 1) -> None:
        """Until ``node``'s daemon has run ``rounds`` whole lease rounds (renewal, claims, shares,
        trimming of the ended index). It logs nothing per round at any level; each round's first
        act after the renewal is to publish the node's info, with the time: a round is whole once
        the next one has published."""
        key = RedisKeys(self.prefix).node_info(node)

        def published() -> str:
            with self.redis() as client:
                return str(client.hget(key, "updated_at") or "")

        def newer_than(before: str) -> str | None:
            now = published()
            return now if now != before else None

        last = published()  # at start, or (on a slow start) a round's already
        for _ in range(rounds + 1):
            last = poll(functools.partial(newer_than, last), f"a lease round of {node}")

    def redis(self) -> Any:
        if self.client is not None:
            return self.client()
        return redis.Redis.from_url(self.redis_url, decode_responses=True)

    def record(self, scope: str, path: str) -> StreamRecord | None:
        keys = RedisKeys(self.prefix)
        with self.redis() as client:
            sid = client.get(keys.scope(scope).path(path))
            meta = client.hgetall(keys.stream_meta(sid)) if sid else {}
        return StreamRecord.from_hash(meta) if meta else None

    def wait_record(
        self,
        scope: str,
        path: str,
        states: set[StreamState],
        *,
        parts: int = 0,
        timeout_s: float = 60,
    ) -> StreamRecord:
        def probe() -> StreamRecord | None:
            rec = self.record(scope, path)
            ok = rec is not None and rec.state in states and rec.next_part_to_upload > parts
            return rec if ok else None

        return poll(probe, f"{path} in {sorted(s.value for s in states)}", timeout_s)

    def objects(self) -> dict[str, int]:
        """Recordings and their sidecars (not the card beside an upload in flight,
        tailup.uploadcard, deleted when it completes)."""
        listed = self.s3_client.list_objects_v2(Bucket=self.bucket).get("Contents", [])
        return {o["Key"]: o["Size"] for o in listed if not o["Key"].endswith(CARD_SUFFIX)}

    def open_uploads(self) -> list[str]:
        listed = self.s3_client.list_multipart_uploads(Bucket=self.bucket).get("Uploads", [])
        return [u["UploadId"] for u in listed]

    def exact(self, record: StreamRecord, data: bytes) -> None:
        assert object_bytes(self.s3_client, self.bucket, record.key) == data
        sidecar = json.loads(object_bytes(self.s3_client, self.bucket, metadata_key(record.key)))
        assert sidecar["size_bytes"] == len(data)

    def live_file(self, path: Path, first: bytes) -> IO[bytes]:
        handle = path.open("wb")
        self.opened.append(handle)
        handle.write(first)
        handle.flush()
        return handle


@pytest.fixture
def fleet(
    tmp_path: Path, s3_server: SeaweedS3, redis_server: RedisServer, bucket: str,
    key_prefix: str, s3_client: Any,
) -> Iterator[Fleet]:  # fmt: skip
    fleet = Fleet(tmp_path, s3_server, redis_server.url, bucket, key_prefix, s3_client)
    try:
        yield fleet
    finally:
        for handle in fleet.opened:
            handle.close()
        for daemon in fleet.daemons:
            if daemon.proc.poll() is None:
                daemon.proc.kill()
                daemon.proc.wait(timeout=10)


def _completed_events(daemon: DaemonProcess) -> list[dict[str, Any]]:
    return [e for e in daemon.events() if e.get("event") == "stream completed"]


def test_a_live_node_id_is_refused_and_taken_back_at_once_after_kill9(
    fleet: Fleet, tmp_path: Path
) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    # A lease far longer than a start takes on a loaded machine: the third daemon below can only
    # have it at once by proving the holder gone, never by its expiry (6 s had run out once).
    long_ttl_s = 120
    first = fleet.start("nvr-1", "--watch", str(one), lease_ttl_s=long_ttl_s)
    second = fleet.start("nvr-1", "--watch", str(two), wait=False)
    assert second.proc.wait(timeout=30) == 1
    said = second.text()
    assert "--node-id 'nvr-1' is held by a live tailup daemon" in said
    assert f"pid {first.proc.pid}" in said
    assert first.proc.poll() is None, "the live holder is not disturbed"

    first.kill9()
    # systemd's restart: no wait for the TTL
    third = fleet.start("nvr-1", "--watch", str(one), lease_ttl_s=long_ttl_s)
    taken = third.wait_for_event("node taken back from a daemon that is gone")
    assert str(first.proc.pid) in taken["previous"]
    assert third.stop() == 0


def _hidden_folder_wrapper(folder: Path) -> list[str]:
    """Run the daemon where ``folder`` is another (empty) folder: a second host's own
    /srv/recordings."""
    script = 'mount -t tmpfs tmpfs "$0" && exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(folder)]


def test_two_nodes_with_their_own_folder_at_one_path_never_touch_each_others_recordings(
    fleet: Fleet, tmp_path: Path
) -> None:
    recordings = tmp_path / "recordings"  # the same path on both "hosts"
    recordings.mkdir()
    live = recordings / "cam-a.ts"
    data = content(14 * MiB, "cam-a")
    writer = fleet.live_file(live, data[: 6 * MiB])
    node_a = fleet.start("site-a", "--watch", str(recordings))
    before = fleet.wait_record(node_scope("site-a"), str(live), {StreamState.UPLOADING}, parts=1)
    assert node_a.stop() == 0  # A's recording is live, its upload open, when B comes and goes

    wrapper = _hidden_folder_wrapper(recordings)
    for _ in range(2):  # B starts, and restarts, with A's recording live on the same Redis
        # The shortest lease (a round every second): B holds nothing A waits on.
        node_b = fleet.start("site-b", "--watch", str(recordings), wrapper=wrapper, lease_ttl_s=3)
        # Not only its start: a whole lease round too (claims, trimming, its scope's streams).
        fleet.wait_for_lease_rounds("site-b")
        assert node_b.stop() == 0
        assert not [e for e in node_b.events() if e.get("stream_id") == before.stream_id]
    after = fleet.record(node_scope("site-a"), str(live))
    assert after is not None
    assert (after.state, after.upload_id) == (StreamState.UPLOADING, before.upload_id)
    assert before.upload_id in fleet.open_uploads(), "B aborted nothing of A's"

    node_a = fleet.start("site-a", "--watch", str(recordings))
    writer.write(data[6 * MiB :])
    writer.close()
    done = fleet.wait_record(node_scope("site-a"), str(live), {StreamState.COMPLETED})
    fleet.exact(done, data)
    assert done.stream_id == before.stream_id and done.owner == "site-a"
    assert node_a.stop() == 0


def test_a_shared_folder_uploads_each_recording_once_and_a_dead_owners_is_finished_by_another(
    fleet: Fleet, tmp_path: Path
) -> None:
    nas = tmp_path / "nas"
    nas.mkdir()
    scope = share_scope("nas")
    share = ["--shared-watch", f"nas={nas}"]
    # A node that takes a recording over after its writer closed saw no close: it ends on idle,
    # 5 s after the takeover. The owner's idle clock runs too, from the live file's first write
    # to the owner's kill: a second or less (part 1 up).
    nodes = {
        "n1": fleet.start("n1", *share, idle_timeout_s=5, wait=False),
        "n2": fleet.start("n2", *share, idle_timeout_s=5, wait=False),
    }
    for node in nodes.values():  # started together: neither waits for the other's start-up
        node.wait_for_event("watching")
    finished = {}
    for i in range(5):
        path = nas / f"seg-{i}.ts"
        finished[path] = content(300_000 + i, f"seg-{i}")
        path.write_bytes(finished[path])
    live = nas / "live.ts"
    data = content(16 * MiB, "live")
    writer = fleet.live_file(live, data[: 6 * MiB])
    for path, body in finished.items():
        fleet.exact(fleet.wait_record(scope, path.name, {StreamState.COMPLETED}), body)
    owned = fleet.wait_record(scope, live.name, {StreamState.UPLOADING}, parts=1)
    assert owned.owner in nodes

    nodes[owned.owner].kill9()  # the owner dies mid-recording
    survivor = next(name for name in nodes if name != owned.owner)
    writer.write(data[6 * MiB :])
    writer.close()
    done = fleet.wait_record(scope, live.name, {StreamState.COMPLETED}, timeout_s=60)
    fleet.exact(done, data)
    assert done.owner == survivor and done.stream_id == owned.stream_id
    taken = nodes[survivor].wait_for_event("taking over a shared folder's recording")
    assert taken["previous_owner"] == owned.owner

    # Each recording once: six objects and six sidecars, nothing suffixed, nothing left open.
    data_keys = [k for k in fleet.objects() if not k.endswith(".metadata.json")]
    assert len(data_keys) == 6, data_keys
    completions = [e["stream_id"] for d in nodes.values() for e in _completed_events(d)]
    assert len(completions) == len(set(completions)) == 6, completions
    assert fleet.open_uploads() == []
    assert nodes[survivor].stop() == 0


def test_redis_emptied_mid_recording_uploads_no_finished_recording_again(
    fleet: Fleet, tmp_path: Path
) -> None:
    # FLUSHALL empties the whole server: a redis-server of this test's own, not the session's.
    with RedisServer(tmp_path / "redis") as own:
        fleet.redis_url = own.url
        _redis_emptied_mid_recording(fleet, tmp_path)


def _redis_emptied_mid_recording(fleet: Fleet, tmp_path: Path) -> None:
    watch = tmp_path / "rec"
    watch.mkdir()
    scope = node_scope("nvr")
    daemon = fleet.start("nvr", "--watch", str(watch))
    finished = {}
    for i in range(3):
        path = watch / f"done-{i}.ts"
        finished[path] = content(200_000 + i, f"done-{i}")
        path.write_bytes(finished[path])
    for path in finished:
        fleet.wait_record(scope, str(path), {StreamState.COMPLETED})
    live = watch / "live.ts"
    data = content(21 * MiB, "flush-live")
    writer = fleet.live_file(live, data[: 6 * MiB])
    fleet.wait_record(scope, str(live), {StreamState.UPLOADING}, parts=1)
    objects_before = fleet.objects()

    with fleet.redis() as client:
        client.flushall()  # the daemon runs on: its next checkpoint finds its record gone
    writer.write(data[6 * MiB : 12 * MiB])
    writer.flush()
    daemon.wait_for_event("Redis lost this stream's record: writing it again from memory")
    fleet.wait_record(scope, str(live), {StreamState.UPLOADING}, parts=2)
    with fleet.redis() as client:
        client.flushall()  # and again, then a crash before anything is written back
    daemon.kill9()

    again = fleet.start("nvr", "--watch", str(watch))
    writer.write(data[12 * MiB :])
    writer.close()
    done = fleet.wait_record(scope, str(live), {StreamState.COMPLETED})
    fleet.exact(done, data)
    for path, body in finished.items():
        rec = fleet.wait_record(scope, str(path), {StreamState.COMPLETED})
        fleet.exact(rec, body)
    recovered = [
        e for e in again.events() if e.get("event") == "recording already in S3: not uploaded again"
    ]
    assert sorted(e["path"] for e in recovered) == sorted(str(p) for p in finished)
    # The absence below means something only if the event is what a new upload logs: the first
    # daemon logged it for each recording it uploaded.
    first_started = {e["path"] for e in daemon.events() if e.get("event") == "stream started"}
    assert first_started == {str(p) for p in [*finished, live]}
    started = [e for e in again.events() if e.get("event") == "stream started"]
    assert started == [], "nothing was uploaded as a new recording"
    assert [e for e in again.events() if e.get("event") == "open upload adopted from S3"]
    # The same objects as before, plus the live one and its sidecar; no upload left open.
    assert set(fleet.objects()) == set(objects_before) | {done.key, metadata_key(done.key)}
    assert fleet.open_uploads() == []
    assert not [e for e in again.events() if e.get("level") == "error"]
    assert again.stop() == 0


def test_records_expired_under_keep_records_cost_no_upload_at_the_next_start(
    fleet: Fleet, tmp_path: Path
) -> None:
    watch = tmp_path / "rec"
    watch.mkdir()
    scope = node_scope("nvr")
    keep = ["--keep-records", "2s"]
    daemon = fleet.start("nvr", "--watch", str(watch), *keep)
    files = {}
    for i in range(3):
        path = watch / f"old-{i}.ts"
        files[path] = content(150_000 + i, f"old-{i}")
        path.write_bytes(files[path])
    ids = {p: fleet.wait_record(scope, str(p), {StreamState.COMPLETED}).stream_id for p in files}
    assert daemon.stop() == 0
    keys = RedisKeys(fleet.prefix)

    def all_expired() -> bool:
        with fleet.redis() as client:
            names = [keys.stream_meta(s) for s in ids.values()]
            names += [keys.scope(scope).path(str(p)) for p in files]
            return client.exists(*names) == 0

    poll(all_expired, "records and path entries expired by Redis", 30)
    objects_before = fleet.objects()

    again = fleet.start("nvr", "--watch", str(watch), *keep)
    for path, body in files.items():
        rec = fleet.wait_record(scope, str(path), {StreamState.COMPLETED})
        assert rec.stream_id == ids[path], "the same recording, found by its identity"
        fleet.exact(rec, body)
    assert fleet.objects() == objects_before, "nothing uploaded again"
    # What the next line looks for is what the first daemon logged for each upload.
    first_started = {e["path"] for e in daemon.events() if e.get("event") == "stream started"}
    assert first_started == {str(p) for p in files}
    assert not [e for e in again.events() if e.get("event") == "stream started"]
    again.signal(signal.SIGTERM)
    assert again.proc.wait(timeout=30) == 0


def test_once_its_recordings_have_ended_a_daemon_leaves_no_redis_key_kept_forever(
    fleet: Fleet, tmp_path: Path
) -> None:
    """N12: every key the daemon wrote for a recording expires with its record: also one written
    after the end (the path entry of a completed recording renamed) and a key reserved and found
    holding an object in S3. A month of recordings leaves a month of keys, not all of them."""
    watch = tmp_path / "rec"
    watch.mkdir()
    scope = node_scope("nvr")
    cam = watch / "cam.ts"
    # An object no recording of ours wrote, at the key the second cam.ts is offered next.
    fleet.s3_client.put_object(Bucket=fleet.bucket, Key="cam-2.ts", Body=b"another tool's")
    daemon = fleet.start(
        "nvr", "--watch", str(watch), "--keep-records", "1h", "--key-template", "{relpath}"
    )
    cam.write_bytes(content(150_000, "first"))
    first = fleet.wait_record(scope, str(cam), {StreamState.COMPLETED})
    cam.rename(watch / "cam-done.ts")
    daemon.wait_for_event("recording renamed", stream_id=first.stream_id)
    cam.write_bytes(content(160_000, "second"))
    second = fleet.wait_record(scope, str(cam), {StreamState.COMPLETED})
    assert (first.key, second.key) == ("cam.ts", "cam-3.ts")
    renamed = fleet.record(scope, str(watch / "cam-done.ts"))
    assert renamed is not None and renamed.stream_id == first.stream_id
    assert daemon.stop() == 0
    with fleet.redis() as client:
        lifetimes_ms = {name: client.pttl(name) for name in client.scan_iter(f"{fleet.prefix}:*")}
    assert lifetimes_ms, "the daemon wrote nothing?"
    assert [name for name, ms in lifetimes_ms.items() if ms == -1] == []
    assert all(0 < ms <= 3600_000 for ms in lifetimes_ms.values()), lifetimes_ms


def test_the_hidden_folder_wrapper_hides_the_folder(tmp_path: Path) -> None:
    """The two-node test's premise: under the wrapper the folder is another (empty) one."""
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "visible.ts").write_bytes(b"x")
    result = subprocess.run(
        [*_hidden_folder_wrapper(folder), "ls", "-A", str(folder)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def _fleet_on(fleet: Fleet, redis_url: str, client: Callable[[], Any]) -> Fleet:
    return Fleet(
        fleet.tmp, fleet.s3, redis_url, fleet.bucket, fleet.prefix, fleet.s3_client, client=client
    )


def test_live_recordings_on_a_redis_cluster_survive_kill9_exact(
    fleet: Fleet, tmp_path: Path, redis_cluster: RedisCluster
) -> None:
    """`--redis-url` at one node of a 3-master Cluster (found by tailup, no redis+cluster://)."""
    reader = redis.cluster.RedisCluster.from_url(redis_cluster.url, decode_responses=True)
    on_cluster = _fleet_on(fleet, redis_cluster.url, lambda: contextlib.nullcontext(reader))
    watch = tmp_path / "rec"
    watch.mkdir()
    scope = node_scope("nvr")
    lives = {watch / f"cam{i}.ts": content(13 * MiB, f"cluster-{i}") for i in range(3)}
    writers = {p: on_cluster.live_file(p, d[: 6 * MiB]) for p, d in lives.items()}
    try:
        daemon = on_cluster.start("nvr", "--watch", str(watch))
        fleet.daemons.append(daemon)
        for path in lives:
            on_cluster.wait_record(scope, str(path), {StreamState.UPLOADING}, parts=1)
        daemon.kill9()
        again = on_cluster.start("nvr", "--watch", str(watch))
        fleet.daemons.append(again)
        for path, data in lives.items():
            writers[path].write(data[6 * MiB :])
            writers[path].close()
        for path, data in lives.items():
            rec = on_cluster.wait_record(scope, str(path), {StreamState.COMPLETED})
            on_cluster.exact(rec, data)
        assert on_cluster.open_uploads() == []
        for run in (daemon, again):
            assert not [e for e in run.events() if e.get("level") == "error"]
        assert again.stop() == 0
    finally:
        reader.close()


def test_a_sentinel_failover_mid_recording_ends_exact(fleet: Fleet, tmp_path: Path) -> None:
    with RedisSentinel(tmp_path / "sentinel") as deployment:

        def master() -> Any:
            host, port = deployment.master_address()
            return redis.Redis(host=host, port=port, decode_responses=True)

        on_sentinel = _fleet_on(fleet, deployment.url, master)
        watch = tmp_path / "rec"
        watch.mkdir()
        scope = node_scope("nvr")
        path = watch / "cam.ts"
        data = content(17 * MiB, "sentinel")
        writer = on_sentinel.live_file(path, data[: 6 * MiB])
        daemon = on_sentinel.start("nvr", "--watch", str(watch))
        fleet.daemons.append(daemon)
        on_sentinel.wait_record(scope, str(path), {StreamState.UPLOADING}, parts=1)
        deployment.kill_master_and_wait_for_failover()
        writer.write(data[6 * MiB :])
        writer.close()
        done = on_sentinel.wait_record(scope, str(path), {StreamState.COMPLETED}, timeout_s=90)
        on_sentinel.exact(done, data)
        assert on_sentinel.open_uploads() == []
        assert daemon.stop() == 0


def test_redis_emptied_after_an_o_trunc_rewrite_uploads_the_rewritten_recording_once(
    fleet: Fleet, tmp_path: Path
) -> None:
    """A recording's upload was aborted when its file turned out rewritten from byte 0 (O_TRUNC,
    same inode: the same identity, its birth time and generation kept), so S3 holds nothing
    under its id; the rewritten recording is uploaded. Then Redis loses everything: the next
    start asks S3 about the identity's ids life after life, up to the first S3 has nothing of,
    and must find the rewritten recording there, not upload it again."""
    with RedisServer(tmp_path / "redis") as own:  # FLUSHALL: a redis-server of this test's own
        fleet.redis_url = own.url
        watch = tmp_path / "rec"
        watch.mkdir()
        scope = node_scope("nvr")
        path = watch / "cam1.ts"
        first = content(6 * MiB, "before the restart")
        writer = fleet.live_file(path, first)
        daemon = fleet.start("nvr", "--watch", str(watch))
        fleet.wait_record(scope, str(path), {StreamState.UPLOADING}, parts=1)
        daemon.kill9()
        writer.close()
        inode = path.stat().st_ino
        second = content(3 * MiB, "after the restart")  # shorter than the part uploaded
        with path.open("wb") as rewrite:  # the recorder's `-y`: O_TRUNC, the same inode
            rewrite.write(second)
        assert path.stat().st_ino == inode

        again = fleet.start("nvr", "--watch", str(watch))
        done = fleet.wait_record(scope, str(path), {StreamState.COMPLETED})
        fleet.exact(done, second)
        assert again.wait_for_event("stream aborted")  # the first recording's upload
        # Its id taken over (what `status` keeps of the aborted one is in the note).
        taken = again.wait_for_event("stream id taken over from a recording S3 holds nothing of")
        assert (taken["stream_id"], taken["was"]) == (done.stream_id, "aborted")
        assert done.note.startswith("took over the id of an earlier recording"), done.note
        objects = fleet.objects()
        assert set(objects) == {done.key, metadata_key(done.key)}, objects
        assert again.stop() == 0

        with fleet.redis() as client:
            client.flushall()
        third = fleet.start("nvr", "--watch", str(watch))
        recovered = fleet.wait_record(scope, str(path), {StreamState.COMPLETED})
        assert fleet.objects() == objects, "the rewritten recording is in S3 once"
        assert recovered.key == done.key
        assert third.wait_for_event("recording already in S3: not uploaded again", path=str(path))
        assert [e for e in third.events() if e.get("event") == "stream started"] == []
        assert fleet.open_uploads() == []
        for run in (again, third):
            assert not [e for e in run.events() if e.get("level") == "error"]
        assert third.stop() == 0


def test_redis_emptied_after_renames_uploads_no_renamed_recording_again(
    fleet: Fleet, tmp_path: Path
) -> None:
    """Recorders rename (`live.ts` -> `2026-12-07T10.ts`): a finished recording and a live one are
    renamed after their uploads began, so their keys (`streams/{stream_id}/{name}`) name the old
    names. Redis loses everything while the daemon is down: at the next start the key the new
    name gives holds nothing, and each is found under the start of its stream's keys instead:
    the finished one recorded, the live one's upload adopted and finished under its old key."""
    with RedisServer(tmp_path / "redis") as own:  # FLUSHALL: a redis-server of this test's own
        fleet.redis_url = own.url
        watch = tmp_path / "rec"
        watch.mkdir()
        scope = node_scope("nvr")
        daemon = fleet.start("nvr", "--watch", str(watch))
        done, live = watch / "done.ts", watch / "live.ts"
        finished = content(300_000, "finished, then renamed")
        done.write_bytes(finished)
        first = fleet.wait_record(scope, str(done), {StreamState.COMPLETED})
        data = content(12 * MiB, "live, renamed mid-recording")
        writer = fleet.live_file(live, data[: 6 * MiB])
        uploading = fleet.wait_record(scope, str(live), {StreamState.UPLOADING}, parts=1)
        renamed = {done: watch / "2026-12-07T09.ts", live: watch / "2026-12-07T10.ts"}
        for old, new in renamed.items():
            old.rename(new)
        fleet.wait_record(scope, str(renamed[done]), {StreamState.COMPLETED})
        fleet.wait_record(scope, str(renamed[live]), {StreamState.UPLOADING}, parts=1)
        daemon.kill9()
        objects_before = fleet.objects()

        with fleet.redis() as client:
            client.flushall()
        again = fleet.start("nvr", "--watch", str(watch))
        writer.write(data[6 * MiB :])
        writer.close()
        ended = fleet.wait_record(scope, str(renamed[live]), {StreamState.COMPLETED})
        recorded = fleet.wait_record(scope, str(renamed[done]), {StreamState.COMPLETED})
        assert (recorded.stream_id, recorded.key) == (first.stream_id, first.key)
        assert (ended.stream_id, ended.key) == (uploading.stream_id, uploading.key)
        fleet.exact(ended, data)
        fleet.exact(recorded, finished)
        assert set(fleet.objects()) == set(objects_before) | {ended.key, metadata_key(ended.key)}
        assert again.wait_for_event(
            "recording already in S3: not uploaded again", path=str(renamed[done])
        )
        assert again.wait_for_event("open upload adopted from S3", path=str(renamed[live]))
        assert [e for e in again.events() if e.get("event") == "stream started"] == []
        assert fleet.open_uploads() == []
        assert not [e for e in again.events() if e.get("level") == "error"]
        assert again.stop() == 0
