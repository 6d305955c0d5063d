"""N2: the after-upload action deletes or moves only the very file uploaded. The rule as a table,
and a stream whose file is replaced at the two moments that matter: during the SHA-256 pass that
follows publication, and between that pass and the unlink. Real files; in-memory stores (the
path under test is the file system's)."""

# Blocking file writes in async tests are the point: they are what the stream sees.
# ruff: noqa: ASYNC240

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

import tailup.afterupload
import tailup.hashplan
import tailup.stream.publish
import tailup.stream.sha256after
from fakes import FaultyMemoryStore
from tailup.budget import ByteBudget
from tailup.config import AfterUploadKind
from tailup.dev import MemoryCheckpointStore
from tailup.errors import SourceUnreadable
from tailup.hashplan import Sha256Setting
from tailup.model import StreamRecord, StreamState
from tailup.plan import MiB
from tailup.sameupload import UploadedFile, holds_upload
from tailup.source import FileStat
from tailup.stream import Outcome, Stream, StreamDeps
from tailup.stream.sha256after import Sha256Result, finish_sha256

UP = UploadedFile(device=1, inode=7, birth_ns=100, size=50, mtime_ns=9)


@pytest.mark.parametrize(
    ("now", "holds"),
    [
        (FileStat(50, 9, 1, 7, 100), True),
        (None, False),  # gone
        (FileStat(50, 9, 1, 8, 100), False),  # another inode (a new file at the name)
        (FileStat(50, 9, 2, 7, 100), False),  # another device
        (FileStat(50, 9, 1, 7, 200), False),  # the inode number reused: another birth
        (FileStat(50, 9, 1, 7, 0), True),  # no birth time here: the inode decides
        (FileStat(60, 9, 1, 7, 100), False),  # grown since the upload
        (FileStat(40, 9, 1, 7, 100), False),  # truncated
        (FileStat(50, 10, 1, 7, 100), False),  # rewritten in place (a patched header)
    ],
)
def test_holds_upload(now: FileStat | None, holds: bool) -> None:
    assert holds_upload(UP, now) is holds


def test_unknown_birth_and_mtime_are_not_compared() -> None:
    loose = UploadedFile(device=1, inode=7, birth_ns=0, size=50)
    assert holds_upload(loose, FileStat(50, 123, 1, 7, 555))


def payload(size: int, seed: str) -> bytes:
    return hashlib.shake_256(seed.encode()).digest(size)


async def run_stream(
    path: Path,
    sha256: Sha256Setting,
    store: FaultyMemoryStore | None = None,
    stat_timeout_s: float = 30.0,
) -> tuple[Outcome, MemoryCheckpointStore]:
    st = path.stat()
    checkpoints = MemoryCheckpointStore()
    record = StreamRecord(
        stream_id="s1",
        path=str(path),
        watch_root=str(path.parent),
        bucket="b",
        key="k/clip.ts",
        base_part_size=5 * MiB,
        device=st.st_dev,
        inode=st.st_ino,
    )
    await checkpoints.create(record)
    deps = StreamDeps(
        store=store or FaultyMemoryStore(),  # type: ignore[arg-type]
        checkpoints=checkpoints,
        budget=ByteBudget(64 * MiB),
        close_grace_s=0.01,
        idle_timeout_s=30,
        after_upload=(AfterUploadKind.DELETE, None),
        sha256=sha256,
        stat_timeout_s=stat_timeout_s,
    )
    outcome = await asyncio.wait_for(Stream(deps, record, {}, writer_closed=True).run(), 20)
    return outcome, checkpoints


def replace_at(path: Path, data: bytes) -> None:
    fresh = path.with_name("next.tmp")
    fresh.write_bytes(data)
    os.replace(fresh, path)


@pytest.mark.asyncio
async def test_a_file_replaced_during_the_sha256_pass_is_not_deleted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "clip.mp4"
    path.write_bytes(payload(11 * MiB, "first"))
    nxt = payload(3 * MiB, "the next recording")
    monkeypatch.setattr(tailup.hashplan, "INLINE_MAX_BYTES", -1)  # the SHA-256 follows
    original = tailup.stream.sha256after.hash_range_blocking
    swapped: list[bool] = []

    def hash_then_swap(*args: Any) -> tuple[int, int]:
        if not swapped:
            swapped.append(True)
            replace_at(path, nxt)  # the recorder starts its next file under the same name
        return original(*args)

    monkeypatch.setattr(tailup.stream.sha256after, "hash_range_blocking", hash_then_swap)
    outcome, checkpoints = await run_stream(path, Sha256Setting.AUTO)
    assert swapped
    assert path.read_bytes() == nxt, "the next recording was deleted"
    assert outcome is Outcome.CHANGED_AFTER_COMPLETE
    assert checkpoints.meta["s1"]["state"] == StreamState.COMPLETED.value


def swap_when_asked(
    path: Path, change: Callable[[], None]
) -> Callable[[Iterable[Path]], dict[Path, bool | None]]:
    def writers_open(paths: Iterable[Path], **_: Any) -> dict[Path, bool | None]:
        change()  # between every earlier check and the unlink
        return dict.fromkeys(paths, False)

    return writers_open


@pytest.mark.asyncio
@pytest.mark.parametrize("how", ["replaced", "grown", "removed"])
async def test_the_action_checks_the_file_just_before_it_deletes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    path = tmp_path / "clip.ts"
    data = payload(7 * MiB, "first")
    path.write_bytes(data)
    nxt = payload(1 * MiB, "the next recording")

    def change() -> None:
        if how == "replaced":
            replace_at(path, nxt)
        elif how == "grown":
            with path.open("ab") as out:
                out.write(nxt)
        else:
            path.rename(path.with_name("elsewhere.ts"))

    monkeypatch.setattr(tailup.afterupload, "writers_open", swap_when_asked(path, change))
    await run_stream(path, Sha256Setting.OFF)
    if how == "replaced":
        assert path.read_bytes() == nxt
    elif how == "grown":
        assert path.read_bytes() == data + nxt
    else:
        assert path.with_name("elsewhere.ts").read_bytes() == data


@pytest.mark.asyncio
async def test_the_very_file_uploaded_is_deleted(tmp_path: Path) -> None:
    path = tmp_path / "clip.ts"
    path.write_bytes(payload(7 * MiB, "first"))
    outcome, _ = await run_stream(path, Sha256Setting.AUTO)
    assert outcome is Outcome.COMPLETED
    assert not path.exists()


@pytest.mark.asyncio
async def test_a_sha256_cut_short_is_left_pending_and_finished_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """N14: a read error in the SHA-256 pass that follows publication leaves sha256_pending in
    the record (and the after-upload action waiting: a deleted file cannot be hashed); the next
    look finishes it into the record and metadata.json."""
    path = tmp_path / "clip.mp4"
    data = payload(11 * MiB, "long")
    path.write_bytes(data)
    monkeypatch.setattr(tailup.hashplan, "INLINE_MAX_BYTES", -1)  # the SHA-256 follows
    original = tailup.stream.sha256after.hash_range_blocking

    def unreadable(*args: Any) -> tuple[int, int]:
        raise SourceUnreadable(f"{path} cannot be read: Input/output error")

    monkeypatch.setattr(tailup.stream.sha256after, "hash_range_blocking", unreadable)
    store = FaultyMemoryStore()
    outcome, checkpoints = await run_stream(path, Sha256Setting.AUTO, store=store)
    assert outcome is Outcome.COMPLETED_WRITER_OPEN
    meta = checkpoints.meta["s1"]
    assert (meta["state"], meta["sha256"], meta["sha256_pending"]) == ("completed", "", "1")
    assert meta["after_upload_pending"] == "1" and path.exists(), "not deleted before its hash"

    monkeypatch.setattr(tailup.stream.sha256after, "hash_range_blocking", original)
    record, parts = await checkpoints.load("s1")  # type: ignore[misc]
    result = await finish_sha256(store, checkpoints, record, parts, timeout_s=10)
    assert result is Sha256Result.RECORDED
    want = hashlib.sha256(data).hexdigest()
    meta = checkpoints.meta["s1"]
    assert (meta["sha256"], meta["sha256_pending"]) == (want, "0")
    document = json.loads(store.objects["k/clip.ts.metadata.json"])
    assert document["checksums"]["sha256"] == want


@pytest.mark.asyncio
async def test_a_media_probe_on_a_hung_mount_gives_up_and_the_object_is_published(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """N15: probe_media reads the file; on a hung mount it never returns. Within the stream's
    I/O deadline the metadata goes without its media section, instead of a finalize (and, on
    Python 3.11, the exit after SIGTERM) waiting forever."""
    path = tmp_path / "clip.ts"
    path.write_bytes(payload(6 * MiB, "probe"))
    hung = threading.Event()

    def probe_forever(_path: Path) -> None:
        hung.wait(20)

    monkeypatch.setattr(tailup.stream.publish, "probe_media", probe_forever)
    store = FaultyMemoryStore()
    try:
        outcome, _ = await run_stream(path, Sha256Setting.AUTO, store=store, stat_timeout_s=0.3)
    finally:
        hung.set()
    assert outcome is Outcome.COMPLETED
    document = json.loads(store.objects["k/clip.ts.metadata.json"])
    assert document.get("media") is None
