"""A watched file whose file system stops answering (a hung NFS mount) stalls its own stream
only: the other streams go on, and the hung one completes once the file system answers again.
The hang is injected at the stream's stat (a blocking call in its thread, as the kernel's would
be); the daemon, Redis and S3 are real."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

import tailup.afterupload
import tailup.stream.context
from harness import content, object_bytes, running_daemon, wait_until
from tailup.events import EventKind, FileEvent
from tailup.model import StreamState
from tailup.plan import MiB
from tailup.source import FileStat

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(120)]


async def test_a_hung_stat_stalls_one_stream_and_not_the_others(
    daemon_args: dict[str, Any],
    watch: Path,
    s3_client: Any,
    bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answer = threading.Event()
    real_stat = tailup.stream.context.stat_file

    def hanging_stat(path: Path) -> FileStat:
        if path.name == "hung.ts":
            answer.wait(600)  # blocks its thread like a stat on a dead NFS server
        return real_stat(path)

    monkeypatch.setattr(tailup.stream.context, "stat_file", hanging_stat)
    hung, other = watch / "hung.ts", watch / "other.ts"
    hung_data, other_data = content(6 * MiB, "hung"), content(6 * MiB + 9, "other")
    try:
        async with running_daemon(**daemon_args, io_timeout=0.5) as daemon:
            hung.write_bytes(hung_data)
            stalled = await daemon.wait_for_state(hung, {StreamState.STALLED})
            assert "did not answer within 0.5 s" in stalled.error
            other.write_bytes(other_data)
            # Well within the hang: a stat on the loop itself would hold this stream up too.
            done = await daemon.wait_for_state(other, {StreamState.COMPLETED}, timeout_s=60)
            assert object_bytes(s3_client, bucket, done.key) == other_data
            record = await daemon.record_for(hung)
            assert record is not None and record.state is StreamState.STALLED
            answer.set()
            finished = await daemon.wait_for_state(hung, {StreamState.COMPLETED})
            assert object_bytes(s3_client, bucket, finished.key) == hung_data
    finally:
        answer.set()


async def test_readers_of_a_finished_file_cause_no_event_storm(
    daemon_args: dict[str, Any], watch: Path
) -> None:
    """inotify reports every open, and tailup's own looks at a file used to open it (for its inode
    generation): an open of a finished file fed itself, a busy loop that starved SIGTERM. Readers
    now cost one look per change of the file, not one per open."""
    path = watch / "done.ts"
    async with running_daemon(**daemon_args) as daemon:
        looks: list[str] = []
        real = daemon.checkpoints.inner.stream_for_path

        async def counted(p: str, scope: str | None = None) -> str | None:
            looks.append(p)
            return await real(p, scope)

        daemon.checkpoints.inner.stream_for_path = counted  # type: ignore[method-assign]
        routed: list[FileEvent] = []
        real_route = daemon.supervisor._route

        async def noted(event: FileEvent) -> None:
            await real_route(event)
            routed.append(event)

        daemon.supervisor._route = noted  # type: ignore[method-assign]

        async def fence(name: str) -> None:
            """A rename runs alone (tailup.lanes): once it is routed, every event queued before
            it was routed too, whatever its path (opens of different paths run concurrently)."""
            staged = watch / f"{name}.tmp"  # not a candidate: writing it makes no event
            staged.write_bytes(content(1000, name))
            staged.rename(watch / f"{name}.ts")
            await wait_until(
                lambda: any(e.kind is EventKind.MOVED and e.path == staged for e in routed),
                f"the rename of {staged.name} routed",
            )

        path.write_bytes(content(300_000, "finished"))
        await daemon.wait_for_state(path, {StreamState.COMPLETED})
        before, routed_before = looks.count(str(path)), len(routed)
        for _ in range(5):
            assert path.read_bytes()  # a player, a checksum tool, a backup
        # The reads' opens were queued before the first fence: all routed once it is. The looks
        # they caused (each an open, an event in turn, in a storm) happened before it was routed,
        # so their events were queued before the second fence.
        await fence("fence1")
        assert any(e.path == path for e in routed[routed_before:]), "the reads made no event"
        await fence("fence2")
        assert looks.count(str(path)) - before <= 1


async def test_an_after_upload_action_on_a_hung_mount_stays_pending_and_is_done_later(
    daemon_args: dict[str, Any],
    watch: Path,
    s3_client: Any,
    bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 17 (N8): the delete hangs past --io-timeout. It was counted as failed, which cleared
    the record's pending flag: the file stayed for good. It stays pending now, is tried again,
    and is done once the mount answers."""
    answer = threading.Event()
    tries: list[Path] = []
    real_act = tailup.afterupload.act

    def hanging_act(kind: Any, target: Any, path: Path, *args: Any) -> str:
        if not answer.is_set():
            tries.append(path)
            answer.wait(600)  # the unlink on a dead NFS server
        return real_act(kind, target, path, *args)

    monkeypatch.setattr(tailup.afterupload, "act", hanging_act)
    path = watch / "clip.ts"
    data = content(64 * 1024, "clip")
    options: dict[str, Any] = {"io_timeout": 0.5, "idle_timeout": 1, "after_upload": "delete"}

    async def pending() -> bool:
        latest = await daemon.record_for(path)
        return latest is not None and latest.after_upload_pending

    async def done() -> bool:
        return not path.exists() and not await pending()

    try:
        async with running_daemon(**daemon_args, **options) as daemon:
            path.write_bytes(data)
            record = await daemon.wait_for_state(path, {StreamState.COMPLETED})
            # The first try gave up at its deadline; a second one proves the action was kept.
            await wait_until(lambda: len(tries) >= 2, "the delete to be tried again")
            assert await pending(), "the pending flag was cleared while the mount hangs"
            assert path.exists()
            answer.set()
            await wait_until(done, "the delete once the mount answers, the flag cleared")
        assert object_bytes(s3_client, bucket, record.key) == data
    finally:
        answer.set()
