"""Local retention (--min-free, --keep-local; issue 20.1) on a small real file system filled past
its limit while a recorder writes: only verified, closed recordings go, oldest first; one whose
object was changed in S3 stays, a file tailup never uploaded stays, and the live recording
completes byte for byte. Real Redis, SeaweedFS, files; the daemon in process."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tailup.retention
import tailup.supervisor.state
from conftest import Recorder
from harness import content, object_bytes, running_daemon, wait_until
from tailup.metrics import REGISTRY
from tailup.model import StreamState
from tailup.plan import MiB
from tailup.retention import Retention, Sweep
from tailup.rules.retention import Wait

DISK_BYTES = 64 * MiB


def _mount(cmd: list[str]) -> bool:
    return subprocess.run(cmd, capture_output=True, check=False).returncode == 0


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64-MiB file system of its own: a tmpfs with a size, else a loop-mounted ext4 image.
    Mounting needs root (CAP_SYS_ADMIN); without it the test fails rather than pretends."""
    folder = tmp_path / "small"
    folder.mkdir()
    if not _mount(["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(folder)]):
        image = tmp_path / "small.img"
        with image.open("wb") as out:
            out.truncate(DISK_BYTES + 8 * MiB)  # room for the journal
        made = _mount(["mkfs.ext4", "-q", "-F", "-m", "0", str(image)])
        if not (made and _mount(["mount", "-o", "loop", str(image), str(folder)])):
            pytest.fail("neither a tmpfs nor a loop mount could be made here (needs root)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True, check=False)


def _freed_bytes() -> float:
    return REGISTRY.get_sample_value("tailup_retention_freed_bytes_total") or 0.0


async def test_a_full_disk_loses_the_oldest_verified_closed_recordings_and_never_a_live_byte(
    daemon_args: dict[str, Any],
    small_disk: Path,
    s3_client: Any,
    bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tailup.retention, "LOOK_EVERY_S", 0.1)  # free space looked at often
    sweeps: list[Sweep] = []
    report = Retention._report

    def keep(self: Retention, result: Sweep) -> None:
        sweeps.append(result)
        report(self, result)

    monkeypatch.setattr(Retention, "_report", keep)
    args = {**daemon_args, "watch": small_disk}
    names = ["changed", "a", "b", "c"]  # oldest first
    paths = {name: small_disk / f"{name}.ts" for name in names}
    freed_before = _freed_bytes()
    async with running_daemon(**args, idle_timeout=1, min_free="20MiB") as daemon:
        records = {}
        for name in names:
            paths[name].write_bytes(content(8 * MiB, name))
            records[name] = await daemon.wait_for_state(paths[name], {StreamState.COMPLETED})
        unknown = small_disk / "notes.bin"  # not an included name: tailup never uploads it
        unknown.write_bytes(content(8 * MiB, "not a recording"))
        s3_client.put_object(Bucket=bucket, Key=records["changed"].key, Body=b"rewritten")
        assert all(p.exists() for p in paths.values()), "deleted before the disk was short"

        live = small_disk / "live.ts"
        written = bytearray()
        with live.open("wb") as recorder:
            for i in range(14):  # past --min-free: 40 MiB + 14 MiB of 64
                chunk = content(MiB, f"live {i}")
                recorder.write(chunk)
                recorder.flush()
                written += chunk
            retention = daemon.supervisor.retention
            assert retention is not None
            await wait_until(
                lambda: retention.status()["deleted"] == 2,  # /healthz's "retention"
                "a sweep that deleted the two oldest deletable recordings",
            )
            assert not paths["a"].exists() and not paths["b"].exists() and live.exists()
            assert retention.status()["freed_bytes"] == 16 * MiB
            chunk = content(MiB // 2, "after the sweep")
            recorder.write(chunk)
            written += chunk
        record = await daemon.wait_for_state(live, {StreamState.COMPLETED})

    assert object_bytes(s3_client, bucket, record.key) == bytes(written)
    assert record.final_size == len(written)
    assert paths["changed"].exists(), "its object in S3 is not the one recorded"
    assert paths["c"].exists() and unknown.exists() and live.exists()
    deleted = [c.stream_id for sweep in sweeps for c in sweep.deleted]
    assert deleted == [records["a"].stream_id, records["b"].stream_id]
    refused = {(c.stream_id, why) for sweep in sweeps for c, why in sweep.waiting}
    assert (records["changed"].stream_id, Wait.OBJECT_CHANGED) in refused
    assert _freed_bytes() - freed_before == 16 * MiB
    for name in ("a", "b"):  # their copies stay whole in S3
        assert object_bytes(s3_client, bucket, records[name].key) == content(8 * MiB, name)


async def test_keep_local_deletes_only_what_is_older_and_verified(
    daemon_args: dict[str, Any],
    watch: Path,
    s3_client: Any,
    bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """--keep-local on an ordinary folder: a recording older than the limit goes; one whose
    object is gone from S3 and a file with no record stay."""
    old, gone, unknown = watch / "old.ts", watch / "gone.ts", watch / "unknown.bin"
    async with running_daemon(**daemon_args, idle_timeout=1, keep_local="1h") as daemon:
        retention = daemon.supervisor.retention
        assert retention is not None
        records = {}
        for path in (old, gone):
            path.write_bytes(content(300_000, path.name))
            records[path] = await daemon.wait_for_state(path, {StreamState.COMPLETED})
        unknown.write_bytes(content(1000, "unknown"))
        s3_client.delete_object(Bucket=bucket, Key=records[gone].key)
        # Two hours later, for this sweep alone: the daemon's own ran at start (nothing was
        # due) and runs next in a minute.
        await wait_until(lambda: retention.last is not None, "the sweep at start")
        monkeypatch.setattr(retention, "_clock", lambda: _later(records[old], 7200))
        result = await retention.sweep()
    assert [c.path for c in result.deleted] == [str(old)]
    assert [(c.path, why) for c, why in result.waiting] == [(str(gone), Wait.OBJECT_CHANGED)]
    assert not old.exists() and gone.exists() and unknown.exists()


@pytest.mark.parametrize("global_keep_local", ["1d", None], ids=["global-1d", "global-off"])
async def test_a_folders_own_keep_local_deletes_its_recording_and_not_the_others(
    daemon_args: dict[str, Any],
    tmp_path: Path,
    s3_client: Any,
    bucket: str,
    monkeypatch: pytest.MonkeyPatch,
    global_keep_local: str | None,
) -> None:
    """Issue 20.3: a guest folder's [[watch]] table keeps its recordings 1 h; the other folder
    has --keep-local 1 d (or none). Two hours after both completed, the guest's verified
    recording is deleted and the other's, of the same age, stays. The table alone turns the
    sweep on when --keep-local is off."""
    cams, guest = tmp_path / "cams", tmp_path / "guest"
    cams.mkdir(), guest.mkdir()
    kept, gone = cams / "cam1.ts", guest / "visitor.ts"
    options: dict[str, Any] = {"idle_timeout": 1}
    if global_keep_local is not None:
        options["keep_local"] = global_keep_local
    tables = [{"path": str(guest), "keep_local": "1h"}]
    async with running_daemon(
        **{**daemon_args, "watch": [cams, guest]}, watch_tables=tables, **options
    ) as daemon:
        retention = daemon.supervisor.retention
        assert retention is not None
        records = {}
        for path in (kept, gone):
            path.write_bytes(content(300_000, path.name))
            records[path] = await daemon.wait_for_state(path, {StreamState.COMPLETED})
        await wait_until(lambda: retention.last is not None, "the sweep at start")
        latest = max(tailup.retention.ended_at(r) for r in records.values())
        monkeypatch.setattr(retention, "_clock", lambda: latest + 7200)
        result = await retention.sweep()
    assert [c.path for c in result.deleted] == [str(gone)]
    assert result.waiting == []  # the other is not due: not waiting either
    assert not gone.exists() and kept.read_bytes() == content(300_000, kept.name)
    for path, record in records.items():  # both copies whole in S3
        assert object_bytes(s3_client, bucket, record.key) == content(300_000, path.name)


def _later(record: Any, seconds: float) -> float:
    return tailup.retention.ended_at(record) + seconds


async def test_where_proc_is_blind_only_a_recording_whose_close_was_seen_goes(
    daemon_args: dict[str, Any],
    watch: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """In a PID namespace of its own (a container), "no writer visible" proves nothing: a
    recording that completed on --idle-timeout under its writer waits, even once that writer is
    gone unseen; one whose close was seen goes (the after-upload action's rule)."""
    closed, idle = watch / "closed.ts", watch / "idle.ts"
    monkeypatch.setattr(tailup.supervisor.state, "proc_sees_every_writer", lambda: False)
    options: dict[str, Any] = {"idle_timeout": 1, "keep_local": "1h"}
    held = idle.open("wb")
    try:
        held.write(content(300_000, "stalled feed"))
        held.flush()
        async with running_daemon(**daemon_args, **options) as daemon:
            closed.write_bytes(content(300_000, "closed"))
            done = await daemon.wait_for_state(closed, {StreamState.COMPLETED})
            stalled = await daemon.wait_for_state(idle, {StreamState.COMPLETED})
    finally:
        held.close()  # while no daemon runs: no close event will say so
    assert done.close_seen and not stalled.close_seen
    async with running_daemon(**daemon_args, **options) as daemon:
        retention = daemon.supervisor.retention
        assert retention is not None
        await wait_until(lambda: retention.last is not None, "the sweep at start")
        monkeypatch.setattr(retention, "_clock", lambda: _later(stalled, 7200))
        result = await retention.sweep()
    assert [c.path for c in result.deleted] == [str(closed)], [
        (Path(c.path).name, c.writer, why) for c, why in result.waiting
    ]
    assert [(c.path, why) for c, why in result.waiting] == [(str(idle), Wait.WRITER)]
    assert idle.exists() and not closed.exists()


async def test_a_real_ffmpeg_recording_fills_the_disk_and_loses_nothing(
    daemon_args: dict[str, Any],
    small_disk: Path,
    s3_client: Any,
    bucket: str,
    record: Recorder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The recorder is ffmpeg writing MPEG-TS at ~3 MB/s in real time: the disk crosses
    --min-free while it writes; the oldest closed recordings go, in order, and the live one
    ends exact in S3."""
    monkeypatch.setattr(tailup.retention, "LOOK_EVERY_S", 0.1)
    names = ["a", "b", "c"]
    paths = {name: small_disk / f"{name}.ts" for name in names}
    async with running_daemon(
        **{**daemon_args, "watch": small_disk}, idle_timeout=5, min_free="24MiB"
    ) as daemon:
        records = {}
        for name in names:
            paths[name].write_bytes(content(8 * MiB, name))
            records[name] = await daemon.wait_for_state(paths[name], {StreamState.COMPLETED})
        (small_disk / "notes.bin").write_bytes(content(8 * MiB, "not a recording"))
        live = small_disk / "live.ts"
        proc = record(live, "ts", 4, bitrate="24M", gop=25)  # ~12 MB: past 24 MiB free
        async with asyncio.timeout(120):
            assert await asyncio.to_thread(proc.wait) == 0, proc.args
        done = await daemon.wait_for_state(live, {StreamState.COMPLETED})
        retention = daemon.supervisor.retention
        assert retention is not None
        await wait_until(lambda: retention.status()["deleted"] >= 1, "a sweep that freed space")
    gone = [name for name in names if not paths[name].exists()]
    assert gone and gone == names[: len(gone)], f"deleted {gone}: not the oldest first"
    assert "c" not in gone
    assert live.exists() and (small_disk / "notes.bin").exists()
    assert object_bytes(s3_client, bucket, done.key) == live.read_bytes()
