"""Bad inputs under a running daemon (real Redis, real S3): each one ends with a recorded reason
(or, for what is not a recording at all, nothing), the upload tidied, and the daemon still
uploading the next file. The unreadable file needs a daemon without root's permission bypass:
it is in tests/e2e/test_crash.py."""

# Blocking file operations in async tests are the point: they are what the daemon sees.

from __future__ import annotations

import json
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import tailup.stream
import tailup.stream.core
from harness import Daemon, content, object_bytes, running_daemon, wait_until
from tailup.keys import metadata_key
from tailup.model import StreamState
from tailup.plan import MiB, PartPlan

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(120)]


def open_uploads(s3_client: Any, bucket: str, key: str) -> list[str]:
    uploads = s3_client.list_multipart_uploads(Bucket=bucket, Prefix=key).get("Uploads", [])
    return [u["UploadId"] for u in uploads if u["Key"] == key]


async def still_uploading(daemon: Daemon, folder: Path, s3_client: Any, bucket: str) -> None:
    """The daemon goes on: a new file after the bad input is uploaded exact."""
    path = folder / "next-one.ts"
    data = content(300_000, f"next {folder}")
    path.write_bytes(data)
    record = await daemon.wait_for_state(path, {StreamState.COMPLETED})
    assert object_bytes(s3_client, bucket, record.key) == data


async def upload_started(daemon: Daemon, path: Path) -> str:
    """Wait for the first checkpointed part of ``path``; returns its upload id."""

    async def started() -> bool:
        record = await daemon.record_for(path)
        return record is not None and record.next_part_to_upload > 1

    await wait_until(started, f"first part of {path.name} checkpointed")
    record = await daemon.record_for(path)
    assert record is not None
    return record.upload_id


@pytest.mark.parametrize("size", [300_000, 11 * MiB], ids=["one request", "multipart"])
async def test_names_with_spaces_unicode_and_url_characters(
    daemon_args: dict[str, Any], watch: Path, s3_client: Any, bucket: str, size: int
) -> None:
    name = "cam 1 #2 ?%+&=;é 日本 ü.ts"
    path = watch / "sub dir %20" / name
    path.parent.mkdir()
    data = content(size, name)
    async with running_daemon(**daemon_args) as daemon:
        path.write_bytes(data)
        record = await daemon.wait_for_state(path, {StreamState.COMPLETED})
    assert record.key.endswith("/" + name)
    assert object_bytes(s3_client, bucket, record.key) == data
    meta = json.loads(object_bytes(s3_client, bucket, metadata_key(record.key)))
    assert meta["source"]["name"] == name and meta["key"] == record.key


async def test_a_directory_named_like_a_video_is_not_a_file(
    daemon_args: dict[str, Any], watch: Path, s3_client: Any, bucket: str
) -> None:
    early = watch / "clip.mp4"  # found by the startup scan
    early.mkdir()
    async with running_daemon(**daemon_args) as daemon:
        late = watch / "late.mkv"  # created while running
        late.mkdir()
        # Files inside them are recordings like any other (written once the folder is watched:
        # a file written into a folder in the same instant it is created may miss its close
        # event, and then waits for the idle timeout).
        inside = early / "inside.ts"
        data = content(200_000, "inside")
        inside.write_bytes(data)
        record = await daemon.wait_for_state(inside, {StreamState.COMPLETED})
        await still_uploading(daemon, watch, s3_client, bucket)
        assert await daemon.record_for(early) is None
        assert await daemon.record_for(late) is None
    assert object_bytes(s3_client, bucket, record.key) == data


async def test_symlinks_are_not_followed(
    daemon_args: dict[str, Any],
    watch: Path,
    tmp_path: Path,
    s3_client: Any,
    bucket: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "real.mp4").write_bytes(content(100_000, "real"))
    early = watch / "early-link.mp4"
    early.symlink_to(outside / "real.mp4")  # found by the startup scan
    async with running_daemon(**daemon_args) as daemon:
        late = watch / "late-link.mkv"
        late.symlink_to(outside / "real.mp4")  # created while running
        (watch / "linked-dir").symlink_to(outside, target_is_directory=True)
        await still_uploading(daemon, watch, s3_client, bucket)
        for path in (early, late, watch / "linked-dir" / "real.mp4"):
            assert await daemon.record_for(path) is None, path
    logged = capsys.readouterr().out
    for path in (early, late):
        assert "watcher.symlink_not_followed" in logged and str(path) in logged


def make_char_device(path: Path) -> None:
    """A character device like /dev/null (we run as root); where mknod is refused (a container
    without CAP_MKNOD), a link to /dev/null, which the watcher does not follow either."""
    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        path.symlink_to("/dev/null")


async def test_fifos_and_device_nodes_are_never_streams_and_hang_nothing(
    daemon_args: dict[str, Any],
    watch: Path,
    s3_client: Any,
    bucket: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Named like videos, they are not files: a read of a FIFO blocks for as long as its writer
    holds it open without writing (or, with no writer, its open does), so a daemon that treated
    one as a file would hang a thread or a stream; a device never ends."""
    early_fifo, early_dev = watch / "early-fifo.ts", watch / "early-dev.mp4"
    os.mkfifo(early_fifo)  # no writer, ever: a blocking open for reading would never return
    make_char_device(early_dev)  # both found by the startup scan
    late_fifo, late_dev = watch / "late-fifo.ts", watch / "late-dev.mkv"
    async with running_daemon(**daemon_args) as daemon:
        os.mkfifo(late_fifo)
        make_char_device(late_dev)
        # Opened for writing (IN_OPEN, then IN_CLOSE_WRITE: the events a recorder's file makes),
        # the FIFO held open with nothing in it while the daemon looks.
        held = os.open(late_fifo, os.O_RDWR | os.O_NONBLOCK)
        try:
            with late_dev.open("wb") as out:
                out.write(b"into the device")
            os.close(os.open(early_fifo, os.O_RDWR | os.O_NONBLOCK))
            # A normal file beside them, renamed in: the rename is routed after every event
            # before it (tailup.lanes), so the FIFOs' and devices' events were all handled.
            data = content(300_000, "beside them")
            staged = watch / "beside.tmp"
            staged.write_bytes(data)
            staged.rename(watch / "beside.ts")
            record = await daemon.wait_for_state(watch / "beside.ts", {StreamState.COMPLETED})
            assert object_bytes(s3_client, bucket, record.key) == data
            for path in (early_fifo, early_dev, late_fifo, late_dev):
                assert await daemon.record_for(path) is None, path
        finally:
            os.close(held)
    logged = capsys.readouterr().out
    for path in (late_fifo, early_fifo):  # the ones opened while the daemon ran
        said = [line for line in logged.splitlines() if str(path) in line]
        assert any("file cannot be uploaded" in line for line in said), said
        assert any("is not a regular file" in line for line in said), said
    if late_dev.is_char_device():
        said = [line for line in logged.splitlines() if str(late_dev) in line]
        assert any("is not a regular file" in line for line in said), said


async def test_zero_byte_file_is_skipped_then_uploaded_once_recorded_into(
    daemon_args: dict[str, Any], watch: Path, s3_client: Any, bucket: str
) -> None:
    path = watch / "late-start.ts"
    async with running_daemon(**daemon_args) as daemon:
        path.touch()
        skipped = await daemon.wait_for_state(path, {StreamState.SKIPPED})
        assert "empty" in skipped.error
        data = content(6 * MiB, "late start")
        path.write_bytes(data)

        async def second_generation_done() -> bool:
            record = await daemon.record_for(path)
            return bool(record and record.generation == 2 and record.state.value == "completed")

        await wait_until(second_generation_done, "uploaded once recorded into")
        record = await daemon.record_for(path)
    assert record is not None
    assert object_bytes(s3_client, bucket, record.key) == data


async def test_file_truncated_mid_stream_is_noted_and_uploaded_as_it_ends(
    daemon_args: dict[str, Any], watch: Path, s3_client: Any, bucket: str
) -> None:
    path = watch / "truncated.mkv"
    async with running_daemon(**daemon_args) as daemon:
        with path.open("w+b") as out:
            out.write(content(16 * MiB, "first take"))
            out.flush()
            await wait_until(lambda: len(daemon.store.parts) >= 3, "parts 1-3 uploaded")
            out.truncate(0)  # a recorder restarted in place (O_TRUNC)
            out.seek(0)
            out.write(content(9 * MiB, "second take"))
        record = await daemon.wait_for_state(path, {StreamState.COMPLETED})
    assert object_bytes(s3_client, bucket, record.key) == path.read_bytes()
    assert "shrank" in record.note


@pytest.mark.parametrize("how", ["renamed over", "deleted and created again"])
async def test_file_replaced_under_the_same_name_mid_stream(
    daemon_args: dict[str, Any], watch: Path, s3_client: Any, bucket: str, how: str
) -> None:
    path = watch / "replaced.ts"
    new = content(2 * MiB, "the new one")
    async with running_daemon(**daemon_args) as daemon:
        with path.open("wb") as out:
            out.write(content(7 * MiB, "the old one"))
            out.flush()
            upload_id = await upload_started(daemon, path)
            old = await daemon.record_for(path)
            assert old is not None
            if how == "renamed over":
                incoming = watch / "incoming.tmp"  # not a candidate name: a partial download
                incoming.write_bytes(new)
                os.replace(incoming, path)
            else:
                path.unlink()
                path.write_bytes(new)

        async def new_stream_done() -> bool:
            record = await daemon.record_for(path)
            return bool(
                record and record.stream_id != old.stream_id and record.state.value == "completed"
            )

        await wait_until(new_stream_done, "the new file uploaded by a new stream")
        # The old stream ends too, now (not at its idle timeout, nor cut at shutdown).
        running = daemon.supervisor._running
        await wait_until(lambda: not running, "the old stream ended", timeout_s=10)
        fresh = await daemon.record_for(path)
        loaded = await daemon.checkpoints.inner.load(old.stream_id)
    assert fresh is not None and object_bytes(s3_client, bucket, fresh.key) == new
    assert loaded is not None
    ended = loaded[0]
    assert ended.state is StreamState.ABORTED
    assert ("replaced" in ended.error) or ("deleted" in ended.error), ended.error
    assert upload_id not in open_uploads(s3_client, bucket, old.key)


async def test_file_moved_out_of_the_watched_folders_is_aborted_as_deleted(
    daemon_args: dict[str, Any], watch: Path, tmp_path: Path, s3_client: Any, bucket: str
) -> None:
    """inotify reports a move out of the watched tree as IN_MOVED_FROM with no IN_MOVED_TO, which
    watchdog hands over as a move to nowhere (or a delete): the stream sees a deletion."""
    outside = tmp_path / "outside"
    outside.mkdir()
    path = watch / "leaving.ts"
    async with running_daemon(**daemon_args) as daemon:
        with path.open("wb") as out:
            out.write(content(6 * MiB, "leaving"))
            out.flush()
            upload_id = await upload_started(daemon, path)
            path.rename(outside / "leaving.ts")
        record = await daemon.wait_for_state(path, {StreamState.ABORTED})
        await still_uploading(daemon, watch, s3_client, bucket)
    # The watcher's event (a deletion, never "moved out") or the stream's own look at the file,
    # whichever comes first: the same reasons as for a deleted file.
    assert record.error in (
        f"{path} was deleted before its upload completed",
        f"{path} no longer exists",
    ), record.error
    assert "moved out" not in record.error
    assert upload_id not in open_uploads(s3_client, bucket, record.key)


@pytest.mark.parametrize("how", ["moved away", "deleted"])
async def test_watched_folder_removed_while_running(
    daemon_args: dict[str, Any], tmp_path: Path, s3_client: Any, bucket: str, how: str
) -> None:
    doomed, other = tmp_path / "doomed", tmp_path / "other"
    doomed.mkdir()
    other.mkdir()
    path = doomed / "cam.ts"
    async with running_daemon(**{**daemon_args, "watch": [doomed, other]}) as daemon:
        with path.open("wb") as out:
            out.write(content(6 * MiB, "doomed"))
            out.flush()
            upload_id = await upload_started(daemon, path)
            if how == "moved away":
                doomed.rename(tmp_path / "elsewhere")
            else:
                shutil.rmtree(doomed)
        record = await daemon.wait_for_state(path, {StreamState.ABORTED})
        await still_uploading(daemon, other, s3_client, bucket)
    # Whichever is noticed first: the folder's check (every second), the file's own absence.
    reasons = ("watched folder", "no longer exists", "deleted")
    assert any(reason in record.error for reason in reasons), record.error
    assert upload_id not in open_uploads(s3_client, bucket, record.key)


@dataclass(frozen=True, slots=True)
class CappedPlan(PartPlan):
    """The real plan with a small capacity, standing in for S3's 5 TiB limit."""

    cap: int = 0

    def capacity_bytes(self) -> int:
        return self.cap


async def test_file_growing_past_what_the_plan_allows(
    daemon_args: dict[str, Any],
    watch: Path,
    s3_client: Any,
    bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        tailup.stream.core,
        "PartPlan",
        lambda base, sizing, largest: CappedPlan(base, sizing, largest, cap=12 * MiB),
    )
    path = watch / "endless.ts"
    async with running_daemon(**daemon_args) as daemon:
        with path.open("wb") as out:
            out.write(content(6 * MiB, "endless"))
            out.flush()
            upload_id = await upload_started(daemon, path)
            out.write(content(8 * MiB, "and more"))
            out.flush()
            record = await daemon.wait_for_state(path, {StreamState.FAILED})
        await still_uploading(daemon, watch, s3_client, bucket)
    assert "past the capacity of its part plan" in record.error
    # A failed stream keeps its upload and parts for its retries; `tailup abort` ends it.
    assert upload_id in open_uploads(s3_client, bucket, record.key)
    assert record.state.is_resumable


async def test_a_stream_that_crashes_is_recorded_failed_and_the_daemon_goes_on(
    daemon_args: dict[str, Any],
    watch: Path,
    s3_client: Any,
    bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Not a bad input but a bug in tailup: it must show in `tailup status`, not leave a stream
    forever 'uploading', and it must not reach the other streams."""
    step = tailup.stream.Stream._step

    async def buggy(self: tailup.stream.Stream) -> Any:
        if self.path.name == "trigger.ts":
            raise RuntimeError("a bug")
        return await step(self)

    monkeypatch.setattr(tailup.stream.Stream, "_step", buggy)
    path = watch / "trigger.ts"
    async with running_daemon(**daemon_args) as daemon:
        path.write_bytes(content(1000, "trigger"))
        record = await daemon.wait_for_state(path, {StreamState.FAILED})
        await still_uploading(daemon, watch, s3_client, bucket)
    assert record.error.startswith("internal error in tailup")
