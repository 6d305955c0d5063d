"""A recording's life over a deployment, end to end: `tailup run` as a subprocess, real Redis and
SeaweedFS, files on the local file system. In every test, every recording ever written is in
S3 exactly once, byte for byte (tailup.identity says what a recording is).

The tests write the files themselves (a recorder's writes, deterministic bytes) so that what
happens to a file (a delete, an O_TRUNC, a rename, a pause) is a step the test takes, not a
moment it hopes to catch.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from daemonproc import DaemonProcess, poll, run_cli, start_daemon
from faultproxy import FaultProxy
from harness import content
from tailup.checkpoint import RedisCheckpointStore
from tailup.dev import RedisServer, SeaweedS3
from tailup.model import StreamRecord, StreamState
from tailup.plan import MiB

pytestmark = pytest.mark.timeout(180)


class Deployment:
    def __init__(
        self,
        tmp: Path,
        watch: Path,
        env: dict[str, str],
        connection: list[str],
        s3_client: Any,
        bucket: str,
    ) -> None:
        self.tmp, self.watch, self.env, self.connection = tmp, watch, env, connection
        self.s3, self.bucket = s3_client, bucket
        self.daemon: DaemonProcess | None = None

    def start(
        self, *extra: str, endpoint_url: str | None = None, wrapper: Sequence[str] = ()
    ) -> DaemonProcess:
        args = [
            *self.connection,
            "--watch",
            str(self.watch),
            "--part-size",
            "5MiB",
            "--log-format",
            "json",
            "--log-level",
            "debug",
            *extra,
        ]
        if endpoint_url is not None:
            args = [*args, "--endpoint-url", endpoint_url]
        self.daemon = start_daemon(
            args, self.env, self.tmp / "daemon.log", self.tmp, wrapper=wrapper
        )
        self.daemon.wait_for_event("watching")
        return self.daemon

    def objects(self) -> dict[str, bytes]:
        """Every recording object in the bucket (metadata.json sidecars left out, and the card
        beside an open upload, tailup.uploadcard, deleted at its completion)."""
        listed = self.s3.list_objects_v2(Bucket=self.bucket).get("Contents", [])
        return {
            o["Key"]: self.s3.get_object(Bucket=self.bucket, Key=o["Key"])["Body"].read()
            for o in listed
            if not o["Key"].endswith((".metadata.json", ".upload.json"))
        }

    def wait_for_objects(self, *expected: bytes, timeout_s: float = 60) -> dict[str, bytes]:
        """Until the bucket holds exactly these recordings, each once; returns key -> bytes."""
        want = sorted(expected)

        def probe() -> dict[str, bytes] | None:
            found = self.objects()
            return found if sorted(found.values()) == want else None

        assert self.daemon is not None
        try:
            return poll(probe, f"{len(want)} recordings in S3", timeout_s, alive=self.daemon)
        except AssertionError as exc:
            got = {k: len(v) for k, v in self.objects().items()}
            raise AssertionError(f"{exc}\nobjects: {got}") from None

    def completions(self) -> int:
        assert self.daemon is not None
        return sum(1 for e in self.daemon.events() if e.get("event") == "stream completed")

    def record(self, path: Path) -> StreamRecord | None:
        """The latest record of ``path``, read from Redis by the test (polling `tailup status`
        would start a Python process each time; the status command has tests of its own)."""
        redis_url = self.connection[self.connection.index("--redis-url") + 1]
        prefix = self.connection[self.connection.index("--redis-prefix") + 1]

        async def read() -> StreamRecord | None:
            async with RedisCheckpointStore.connect(redis_url, prefix) as cps:
                stream_id = await cps.stream_for_path(str(path))
                loaded = await cps.load(stream_id) if stream_id else None
                return loaded[0] if loaded else None

        return asyncio.run(read())


@pytest.fixture
def deployment(
    tmp_path: Path,
    s3_server: SeaweedS3,
    redis_server: RedisServer,
    bucket: str,
    key_prefix: str,
    s3_client: Any,
) -> Iterator[Deployment]:
    watch = tmp_path / "rec"
    watch.mkdir()
    connection = [
        "--bucket",
        bucket,
        "--endpoint-url",
        s3_server.endpoint_url,
        "--redis-url",
        redis_server.url,
        "--redis-prefix",
        key_prefix,
    ]
    env = dict(s3_server.env())
    dep = Deployment(tmp_path, watch, env, connection, s3_client, bucket)
    yield dep
    if dep.daemon is not None:
        assert dep.daemon.stop() == 0, dep.daemon.tail()


def write_closed(path: Path, data: bytes) -> int:
    """Create (or O_TRUNC) and write the file in one go, like a recorder; returns its inode."""
    with path.open("wb") as out:
        out.write(data)
    return path.stat().st_ino


def test_delete_then_a_new_file_on_the_reused_inode_is_a_new_recording(
    deployment: Deployment,
) -> None:
    """`rm cam1.ts` and at once a new cam1.ts: ext4 hands out the freed inode number again.
    The first recording must not be overwritten by the second."""
    deployment.start()
    path = deployment.watch / "cam1.ts"
    first = content(6 * MiB + 1234, "first take")
    inode = write_closed(path, first)
    deployment.wait_for_objects(first)
    second = None
    written = [first]
    for attempt in range(5):  # the reuse is what this test is about: make sure it happened
        path.unlink()
        candidate = content(6 * MiB + 99, f"second take {attempt}")
        if write_closed(path, candidate) == inode:
            second = candidate
            break
        written.append(candidate)
        # A new inode: a new recording anyway, beside every one before it.
        deployment.wait_for_objects(*written)
        first, inode = candidate, path.stat().st_ino
    assert second is not None, "ext4 never reused the inode number in 5 tries"
    found = deployment.wait_for_objects(*(set(deployment.objects().values()) | {second}))
    assert second in found.values() and first in found.values()
    assert len(found) == len(set(found)), "each recording under a key of its own"


def test_o_trunc_rewrite_of_a_completed_file_is_a_new_recording(deployment: Deployment) -> None:
    """A recorder restarted with `-y` over a finished file: same inode, new bytes from byte 0."""
    deployment.start()
    path = deployment.watch / "cam1.ts"
    first = content(7 * MiB, "morning")
    inode = write_closed(path, first)
    deployment.wait_for_objects(first)
    second = content(9 * MiB, "afternoon")  # longer: only the first part's bytes tell
    assert write_closed(path, second) == inode
    found = deployment.wait_for_objects(first, second)
    assert len(found) == 2


def test_appending_after_completion_is_the_same_recording(deployment: Deployment) -> None:
    """Growth after completion (an append) replaces the object under the same key."""
    deployment.start()
    path = deployment.watch / "cam1.ts"
    first = content(6 * MiB, "part one")
    write_closed(path, first)
    (key,) = deployment.wait_for_objects(first)
    more = content(2 * MiB, "part two")
    with path.open("ab") as out:
        out.write(more)
    found = deployment.wait_for_objects(first + more)
    assert list(found) == [key]


def test_a_paused_writer_is_never_deleted_under_and_its_later_bytes_are_uploaded(
    deployment: Deployment,
) -> None:
    """A feed that stalls past --idle-timeout while the recorder keeps the file open, with
    --after-upload delete: the file stays, and the final object equals the final file."""
    daemon = deployment.start("--idle-timeout", "1", "--after-upload", "delete")
    path = deployment.watch / "cam1.ts"
    before = content(6 * MiB, "before the stall")
    after = content(3 * MiB, "after the stall")
    with path.open("wb") as out:
        out.write(before)
        out.flush()
        daemon.wait_for_event("after-upload action pending: a writer may still hold the file")
        deployment.wait_for_objects(before)
        assert path.exists(), "deleted under its writer"
        out.write(after)
    (key,) = deployment.wait_for_objects(before + after)
    poll(lambda: not path.exists(), "the file deleted once its writer closed it", alive=daemon)
    assert key.endswith("cam1.ts")


def _own_pid_namespace_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True, check=False
    )
    return probe.returncode == 0


def _stop_inside_namespace(daemon: DaemonProcess) -> int:
    """SIGTERM to the daemon itself: `unshare --fork` neither forwards it nor dies of it."""
    unshare_pid = daemon.proc.pid
    children = Path(f"/proc/{unshare_pid}/task/{unshare_pid}/children").read_text().split()
    for child in children:
        os.kill(int(child), signal.SIGTERM)
    return daemon.proc.wait(timeout=30)


@pytest.mark.skipif(not _own_pid_namespace_works(), reason="needs unshare --pid (root)")
def test_in_its_own_pid_namespace_a_paused_writer_keeps_its_whole_recording(
    deployment: Deployment,
) -> None:
    """The Docker image's case (N1): tailup in a PID namespace of its own, so its /proc does not
    list the recorder; the feed stalls past --idle-timeout. "No writer visible" is unknown
    there, not a close: the file stays until its writer really closes it, and every byte after
    the stall reaches S3."""
    wrapper = ["unshare", "--pid", "--fork", "--mount-proc"]
    daemon = deployment.start("--idle-timeout", "1", "--after-upload", "delete", wrapper=wrapper)
    path = deployment.watch / "cam1.ts"
    before = content(6 * MiB, "before the stall")
    after = content(3 * MiB, "after the stall")
    pending = "after-upload action pending: a writer may still hold the file"
    handled = "source handled after verified upload"
    try:
        with path.open("wb") as out:
            out.write(before)
            out.flush()
            daemon.wait_for_event(pending)
            deployment.wait_for_objects(before)
            # The completion's first look again has run once it lingers (or once it acted: it
            # took the blind /proc's "no writer visible" for a close).
            lingers = "completed while a writer may hold it: looked at again later"
            poll(
                lambda: any(e.get("event") in (handled, lingers) for e in daemon.events()),
                "the look after the idle completion",
                alive=daemon,
            )
            assert path.exists(), "deleted under its writer, which /proc could not see"
            out.write(after)
            out.flush()
            # Its bytes after the stall are a later generation of the same recording.
            deployment.wait_for_objects(before + after)
            assert path.exists(), "deleted under its writer, which /proc could not see"
        poll(lambda: not path.exists(), "the file deleted after its real close", alive=daemon)
        (key,) = deployment.wait_for_objects(before + after)
        assert key.endswith("cam1.ts")
    finally:
        assert _stop_inside_namespace(daemon) == 0, daemon.tail()


def test_rename_mid_recording_then_a_new_file_at_the_old_name(deployment: Deployment) -> None:
    """live.ts -> take1.ts while being written, then a new live.ts: both are uploaded, the
    renamed one under its key from the start, nothing aborted."""
    daemon = deployment.start()
    live = deployment.watch / "live.ts"
    take1 = deployment.watch / "take1.ts"
    head, tail = content(6 * MiB, "take one head"), content(2 * MiB + 7, "take one tail")
    with live.open("wb") as out:
        out.write(head)
        out.flush()
        daemon.wait_for_event("part uploaded", part=1)
        os.rename(live, take1)
        newer = content(5 * MiB + 3, "take two")
        write_closed(live, newer)
        out.write(tail)
    found = deployment.wait_for_objects(head + tail, newer)
    keys = {data: key for key, data in found.items()}
    assert keys[head + tail].endswith("/live.ts"), "a rename keeps the stream and its key"
    # Positive control for the absence below: this daemon does log the event, under this name,
    # when a live recording is deleted (not renamed).
    gone = deployment.watch / "gone.ts"
    with gone.open("wb") as out:
        out.write(b"deleted under its writer")
        out.flush()
        started = daemon.wait_for_event("stream started", path=str(gone))
        gone.unlink()
        daemon.wait_for_event("stream aborted", stream_id=started["stream_id"])
    aborted = [e for e in daemon.events() if e.get("event") == "stream aborted"]
    assert [e["stream_id"] for e in aborted] == [started["stream_id"]], aborted


def test_a_live_recording_renamed_while_tailup_was_down_resumes_under_its_new_name(
    deployment: Deployment,
) -> None:
    """N6: kill -9 mid-recording; while tailup is down, live.ts is renamed to take1.ts (its
    writer goes on to the end) and a recorder starts a new live.ts. At start the live record is
    found under take1.ts by its inode life and resumed there: completed once, under the key it
    had, part 1 not sent again, nothing aborted; the new live.ts is a recording of its own. (At
    its old path it ended as replaced, and take1.ts waited for the next restart.)"""
    daemon = deployment.start()
    live, take1 = deployment.watch / "live.ts", deployment.watch / "take1.ts"
    head = content(6 * MiB, "renamed while down: head")
    tail = content(2 * MiB + 11, "renamed while down: tail")
    newer = content(5 * MiB + 3, "renamed while down: the next take")
    with live.open("wb") as out:
        out.write(head)
        out.flush()
        started = daemon.wait_for_event("stream started", path=str(live))
        daemon.wait_for_event("part uploaded", part=1)
        daemon.kill9()
        os.rename(live, take1)
        write_closed(live, newer)
        out.write(tail)
    daemon = deployment.start()
    found = deployment.wait_for_objects(head + tail, newer)
    keys = {data: key for key, data in found.items()}
    assert keys[head + tail] == started["key"], "the record was carried with its key"
    record = deployment.record(take1)
    assert record is not None and record.stream_id == started["stream_id"]
    poll(
        lambda: sum(1 for e in daemon.events() if e.get("event") == "stream completed") == 2,
        "both recordings completed",
        alive=daemon,
    )
    events = daemon.events()
    assert not [e for e in events if e.get("event") == "stream aborted"], daemon.tail()
    resent = [
        e
        for e in events
        if e.get("event") == "part uploaded"
        and e.get("part") == 1
        and e.get("stream_id") == started["stream_id"]
    ]
    assert not resent, "part 1 was uploaded before the restart: resumed, not sent again"


@pytest.mark.parametrize(
    ("second_name", "mode"),
    # --poll: a look every 0.2 s (not 1 s), so each step of the test is seen at once and the
    # writer's pauses stay far inside the idle timeout, which alone ends a polled recording.
    [
        ("b.ts", ()),
        ("keep.bak", ()),
        ("b.ts", ("--poll", "--poll-interval", "0.2", "--idle-timeout", "5")),
    ],
    ids=["alias", "walk", "alias-poll"],
)
def test_a_hard_link_then_the_first_name_removed_completes_once_under_the_second(
    deployment: Deployment, second_name: str, mode: tuple[str, ...]
) -> None:
    """N10: `ln a.ts b.ts; rm a.ts` while a.ts is written (through its open descriptor). The
    second name is an alias of the running stream (b.ts, looked at as a candidate), or is found
    by a walk of the watched folders because the file had two names at the stream's last look
    (keep.bak, never looked at). Either way the stream goes on under it when the first name
    goes: the recording completes once, with every byte written, nothing aborted. Under --poll
    the same, seen a poll later (and finished on idle: no close events)."""
    daemon = deployment.start(*mode)
    first, second = deployment.watch / "a.ts", deployment.watch / second_name
    head = content(6 * MiB, "hard link: head")
    middle = content(5 * MiB, "hard link: middle")
    tail = content(2 * MiB + 5, "hard link: tail")
    with first.open("wb") as out:
        out.write(head)
        out.flush()
        started = daemon.wait_for_event("stream started", path=str(first))
        daemon.wait_for_event("part uploaded", part=1)
        os.link(first, second)
        if second_name.endswith(".ts"):
            daemon.wait_for_event("opened", path=str(second))  # the second name looked at
        out.write(middle)
        out.flush()
        daemon.wait_for_event("part uploaded", part=2)  # a look since the link
        first.unlink()
        out.write(tail)
    (key,) = deployment.wait_for_objects(head + middle + tail)
    assert key.endswith("/a.ts"), "the stream kept its key"
    daemon.wait_for_event("stream completed")
    events = daemon.events()
    assert not [e for e in events if e.get("event") == "stream aborted"], daemon.tail()
    assert deployment.completions() == 1
    record = deployment.record(second)
    assert record is not None and record.state is StreamState.COMPLETED
    assert record.stream_id == started["stream_id"]


def test_a_file_moved_out_and_back_is_uploaded(deployment: Deployment) -> None:
    daemon = deployment.start()
    path = deployment.watch / "cam1.ts"
    outside = deployment.tmp / "elsewhere.ts"
    data = content(6 * MiB + 5, "wandering")
    with path.open("wb") as out:
        out.write(data[: 5 * MiB + 1])
        out.flush()
        daemon.wait_for_event("part uploaded", part=1)
        os.rename(path, outside)
        daemon.wait_for_event("stream aborted")
        os.rename(outside, path)
        out.write(data[5 * MiB + 1 :])
    deployment.wait_for_objects(data)


def test_s3_refusing_403_fails_the_stream_and_retry_completes_it_without_resending(
    deployment: Deployment, s3_server: SeaweedS3
) -> None:
    """A temporary AccessDenied (a policy propagating): the stream fails but keeps its upload;
    `tailup retry` finishes it, and no checkpointed part is sent again."""
    with FaultProxy(s3_server.s3_port, seed=1) as proxy:
        daemon = deployment.start("--failed-retry", "3600", endpoint_url=proxy.endpoint_url)
        path = deployment.watch / "cam1.ts"
        data = content(11 * MiB, "denied for a while")
        with path.open("wb") as out:
            out.write(data[: 6 * MiB])
            out.flush()
            daemon.wait_for_event("part uploaded", part=1)
            proxy.set_deck(["403"])
            out.write(data[6 * MiB :])
        failed = poll(
            lambda: (r := deployment.record(path)) and r.state is StreamState.FAILED and r,
            "the stream failed",
            alive=daemon,
        )
        assert "AccessDenied" in failed.error
        assert deployment.objects() == {}
        proxy.set_deck([])
        result = run_cli(["retry", failed.stream_id, *deployment.connection], deployment.env)
        assert result.returncode == 0, result.stderr
        deployment.wait_for_objects(data)
        # Stopped while its S3 endpoint (the proxy) is still there: the stream's last requests
        # (its metadata.json, the sweep of orphan uploads after "stream completed") would
        # otherwise meet a closed port, and the stop wait out botocore's retries of them.
        assert daemon.stop() == 0, daemon.tail()
    sent = [e for e in daemon.events() if e.get("event") == "part sent" and e.get("part") == 1]
    assert len(sent) == 1, "part 1 was checkpointed before the 403s: never sent again"
