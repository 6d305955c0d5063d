"""The watcher on real folders: inotify (and polling), real files, real renames."""

# Blocking filesystem calls in async tests are the point here: they are what the watcher sees.
# ruff: noqa: ASYNC240

from __future__ import annotations

import asyncio
import errno
import itertools
import os
import shutil
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

import tailup.watcher.core
import tailup.watcher.roots
from tailup.events import EventKind, FileEvent
from tailup.watcher import DEFAULT_INCLUDE, Watcher, WatcherError, unwatched_roots

pytestmark = [
    pytest.mark.timeout(30),
    # watchdog's benign double registration when mkdir -p races it (the watcher filters it too,
    # but pytest resets warning filters per test).
    pytest.mark.filterwarnings(r"ignore:Callback with id .* already exists:RuntimeWarning"),
]

Predicate = Callable[[FileEvent], bool]
_fences = itertools.count()


def kind_at(kind: EventKind, path: Path) -> Predicate:
    return lambda e: e.kind is kind and e.path == path


async def collect_until(w: Watcher, done: Predicate, within_s: float = 3.0) -> list[FileEvent]:
    """Events up to and including the first one matching `done`; fails with what was seen."""
    seen: list[FileEvent] = []
    try:
        async with asyncio.timeout(within_s):
            while True:
                event = await w.get()
                seen.append(event)
                if done(event):
                    return seen
    except TimeoutError:
        pytest.fail(f"no matching event within {within_s}s; saw {seen}")


async def fence(w: Watcher, folder: Path) -> list[FileEvent]:
    """Everything reported before a marker file created now: inotify keeps one folder's events in
    order, so this proves that nothing else is coming for what happened before."""
    marker = folder / f"fence-{next(_fences)}.mp4"
    marker.touch()
    events = await collect_until(w, kind_at(EventKind.CREATED, marker))
    return [e for e in events if not e.path.name.startswith("fence-")]


@asynccontextmanager
async def watching(*roots: Path, **kwargs: object) -> AsyncIterator[Watcher]:
    async with Watcher(list(roots), DEFAULT_INCLUDE, **kwargs) as w:  # type: ignore[arg-type]
        yield w


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "rec"
    folder.mkdir()
    return folder


def kinds_for(events: list[FileEvent], path: Path) -> list[EventKind]:
    return [e.kind for e in events if e.path == path]


# --- live events ----------------------------------------------------------------------------------


async def test_write_then_close_gives_created_modified_closed(root: Path) -> None:
    clip = root / "clip.mp4"
    async with watching(root) as w:
        with clip.open("wb") as f:  # like a muxer: header, data, then patch the header and close
            f.write(b"\0" * 64)
            f.flush()
            f.write(b"mdat" * 4096)
            f.flush()
            f.seek(0x28)
            f.write(b"\1\2\3\4")
        events = await collect_until(w, kind_at(EventKind.CLOSED, clip))
    kinds = kinds_for(events, clip)
    assert kinds[0] is EventKind.CREATED
    assert kinds[-1] is EventKind.CLOSED
    assert set(kinds[1:-1]) == {EventKind.MODIFIED}
    assert all(e.path == clip and e.dest_path is None for e in events)


async def test_delete(root: Path) -> None:
    clip = root / "clip.mkv"
    async with watching(root) as w:
        clip.write_bytes(b"x")
        await collect_until(w, kind_at(EventKind.CLOSED, clip))
        clip.unlink()
        await collect_until(w, kind_at(EventKind.DELETED, clip))


async def test_rename_gives_moved_with_destination(root: Path) -> None:
    src, dest = root / "recording.mp4", root / "final.mp4"
    async with watching(root) as w:
        src.write_bytes(b"x")
        await collect_until(w, kind_at(EventKind.CLOSED, src))
        src.rename(dest)
        events = await collect_until(w, lambda e: e.kind is EventKind.MOVED)
    assert events[-1] == FileEvent(EventKind.MOVED, src, dest_path=dest)


async def test_rename_from_a_temporary_name_is_reported(root: Path) -> None:
    src, dest = root / "clip.mp4.part", root / "clip.mp4"
    async with watching(root) as w:
        src.write_bytes(b"x")
        src.rename(dest)
        events = await collect_until(w, lambda e: e.kind is EventKind.MOVED)
    assert events == [FileEvent(EventKind.MOVED, src, dest_path=dest)]  # nothing about the .part


async def test_subfolder_created_after_start_is_watched(root: Path) -> None:
    async with watching(root) as w:
        deep = root / "cam1" / "2024-01-01"
        deep.mkdir(parents=True)
        await fence(w, deep)  # its watch is in place
        clip = deep / "clip.ts"
        clip.write_bytes(b"x")
        events = await collect_until(w, kind_at(EventKind.CLOSED, clip))
    kinds = kinds_for(events, clip)
    # The new folder's own scan may see the file first (DISCOVERED) and race inotify's CREATED;
    # the supervisor treats either as "a new file". What proves the watch is the CLOSED.
    assert kinds[0] in (EventKind.CREATED, EventKind.DISCOVERED), kinds
    assert kinds[-1] is EventKind.CLOSED, kinds
    assert set(kinds) <= {
        EventKind.CREATED,
        EventKind.DISCOVERED,
        EventKind.MODIFIED,
        EventKind.CLOSED,
    }, kinds


async def test_file_written_at_once_into_a_new_subfolder_is_known_complete(root: Path) -> None:
    """mkdir -p then record: the writes can land before inotify watches the new folder, and then
    no CLOSED ever comes; scanning the new folder reports the file with writer_open=False."""
    async with watching(root) as w:
        clip = root / "cam2" / "today" / "clip.mp4"
        clip.parent.mkdir(parents=True)
        clip.write_bytes(b"x")  # written and closed, maybe before the watch exists
        await collect_until(
            w,
            lambda e: e.path == clip and (e.kind is EventKind.CLOSED or e.writer_open is False),
        )


async def test_read_only_open_and_close_is_not_a_close(root: Path) -> None:
    clip = root / "clip.mp4"
    async with watching(root) as w:
        clip.write_bytes(b"data")
        await collect_until(w, kind_at(EventKind.CLOSED, clip))
        with clip.open("rb") as f:  # what +faststart does before its last close, and what we do
            f.read()
        events = await fence(w, root)
    # The open is reported (MODIFIED: "may have changed"); the read-only close is not.
    assert kinds_for(events, clip) == [EventKind.MODIFIED]


async def test_writes_are_not_reported_one_by_one(root: Path) -> None:
    """A recorder writes thousands of times a second; each inotify event costs ~160 us to carry
    through: only the open and the close are reported, the stream polls the size."""
    clip = root / "clip.ts"
    async with watching(root) as w:
        with clip.open("wb", buffering=0) as f:
            for _ in range(200):
                f.write(b"\x47" * 188)
        events = await collect_until(w, kind_at(EventKind.CLOSED, clip))
    assert kinds_for(events, clip) == [EventKind.CREATED, EventKind.MODIFIED, EventKind.CLOSED]


async def test_folder_named_like_a_video_is_ignored(root: Path) -> None:
    (root / "old.mp4").mkdir()
    async with watching(root) as w:
        assert await fence(w, root) == []  # not DISCOVERED
        (root / "x.mp4").mkdir()
        (root / "x.mp4" / "notes.txt").write_text("hi")
        (root / "x.mp4").rename(root / "y.mov")
        shutil.rmtree(root / "y.mov")
        assert await fence(w, root) == []


async def test_symlinks_are_not_followed(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "real.mp4").write_bytes(b"x")
    (root / "old-link.mp4").symlink_to(outside / "real.mp4")
    (root / "linked-dir").symlink_to(outside)
    async with watching(root) as w:
        assert await fence(w, root) == []  # neither the link nor the linked folder's file
        (root / "new-link.mp4").symlink_to(outside / "real.mp4")
        (root / "new-link.mp4").rename(root / "renamed-link.mp4")
        with (outside / "real.mp4").open("ab") as f:  # written through nothing we watch
            f.write(b"more")
        assert await fence(w, root) == []


async def test_hidden_and_partial_files_are_ignored(root: Path) -> None:
    async with watching(root) as w:
        (root / ".hidden.mp4").write_bytes(b"x")
        (root / "clip.mp4.crdownload").write_bytes(b"x")
        (root / "notes.txt").write_bytes(b"x")
        assert await fence(w, root) == []


# --- discovery ------------------------------------------------------------------------------------


async def test_existing_files_are_discovered_with_their_writer_state(root: Path) -> None:
    done = root / "done.mp4"
    done.write_bytes(b"x")
    (root / "sub").mkdir()
    live = root / "sub" / "live.mkv"
    (root / "notes.txt").write_text("not a video")
    with live.open("wb") as writer:
        writer.write(b"x")
        writer.flush()
        async with watching(root) as w:
            events = [await w.get(), await w.get()]
            assert await fence(w, root) == []
    assert events == [
        FileEvent(EventKind.DISCOVERED, done, writer_open=False),
        FileEvent(EventKind.DISCOVERED, live, writer_open=True),
    ]


async def test_folder_moved_in_is_discovered(root: Path, tmp_path: Path) -> None:
    staged = tmp_path / "staged"
    (staged / "deep").mkdir(parents=True)
    (staged / "a.mp4").write_bytes(b"x")
    (staged / "deep" / "b.mov").write_bytes(b"x")
    (staged / "deep" / "skip.txt").write_bytes(b"x")
    async with watching(root) as w:
        with (staged / "deep" / "c.ts").open("wb"):
            staged.rename(root / "in")
            events = await collect_until(w, lambda e: e.path.name == "c.ts")
        later = root / "in" / "deep" / "d.mp4"
        later.write_bytes(b"x")  # the moved-in folder is watched too
        events += await collect_until(w, kind_at(EventKind.CLOSED, later))
    assert events[:3] == [
        FileEvent(EventKind.DISCOVERED, root / "in" / "a.mp4", writer_open=False),
        FileEvent(EventKind.DISCOVERED, root / "in" / "deep" / "b.mov", writer_open=False),
        FileEvent(EventKind.DISCOVERED, root / "in" / "deep" / "c.ts", writer_open=True),
    ]


async def test_file_moved_in_is_discovered_and_moved_out_is_deleted(
    root: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "clip.mp4"
    outside.write_bytes(b"x")
    async with watching(root) as w:
        outside.rename(root / "clip.mp4")
        events = await collect_until(w, lambda e: e.path == root / "clip.mp4")
        assert events == [FileEvent(EventKind.DISCOVERED, root / "clip.mp4", writer_open=False)]
        (root / "clip.mp4").rename(outside)
        await collect_until(w, kind_at(EventKind.DELETED, root / "clip.mp4"))


# --- roots ----------------------------------------------------------------------------------------


async def test_removing_the_root_gives_root_gone(root: Path) -> None:
    (root / "sub").mkdir()
    (root / "sub" / "clip.mp4").write_bytes(b"x")
    async with watching(root) as w:
        await collect_until(w, lambda e: e.kind is EventKind.DISCOVERED)
        shutil.rmtree(root)
        events = await collect_until(w, lambda e: e.kind is EventKind.ROOT_GONE)
    assert events[-1] == FileEvent(EventKind.ROOT_GONE, root)
    assert FileEvent(EventKind.DELETED, root / "sub" / "clip.mp4") in events


async def test_moving_the_root_away_gives_root_gone_once(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each root check's look for roots that came back, counted: the new folder at the old path
    # must live through whole checks while the moved folder's watch still reports.
    looks_back = 0
    looked = asyncio.Event()
    loop = asyncio.get_running_loop()
    real_roots_back = tailup.watcher.core.roots_back

    def counting_roots_back(*args: Any, **kwargs: Any) -> Any:  # a worker thread
        nonlocal looks_back
        looks_back += 1
        loop.call_soon_threadsafe(looked.set)
        return real_roots_back(*args, **kwargs)

    monkeypatch.setattr(tailup.watcher.core, "roots_back", counting_roots_back)
    async with watching(root, root_check_interval_s=0.05) as w:
        # Seen from inside: every event handed over by the observer, before the watcher admits it
        # or not; and the root's unscheduling held back, so its watch keeps reporting meanwhile.
        delivered: list[FileEvent] = []
        fence_seen = asyncio.Event()
        real_deliver, real_unschedule = w._deliver, w._unschedule
        may_unschedule = threading.Event()

        def noting(events: list[FileEvent]) -> None:
            delivered.extend(events)
            if any(e.path == root / "fence.mp4" and e.kind is EventKind.CLOSED for e in events):
                fence_seen.set()
            real_deliver(events)

        def held_unschedule(path: Path) -> None:
            may_unschedule.wait(10)
            real_unschedule(path)

        w._deliver = noting  # type: ignore[method-assign]
        w._unschedule = held_unschedule  # type: ignore[method-assign]
        try:
            root.rename(tmp_path / "elsewhere")
            events = await collect_until(w, lambda e: e.kind is EventKind.ROOT_GONE)
            assert events == [FileEvent(EventKind.ROOT_GONE, root)]
            (tmp_path / "elsewhere" / "late.mp4").write_bytes(b"x")  # inotify: root/late.mp4
            root.mkdir()  # a new folder at the old path is not the watched one
            (root / "new.mp4").write_bytes(b"x")
            # Two looks for returned roots with the old watch still up: none may re-arm the
            # root under it (it would let the moved folder's events through as the root's).
            seen = looks_back
            async with asyncio.timeout(10):
                while looks_back < seen + 2:
                    await looked.wait()
                    looked.clear()
            # The moved folder's watch reports in order: once its fence is handed over, so was
            # everything before it.
            (tmp_path / "elsewhere" / "fence.mp4").write_bytes(b"x")
            async with asyncio.timeout(10):
                await fence_seen.wait()
        finally:
            may_unschedule.set()
        assert FileEvent(EventKind.CLOSED, root / "late.mp4") in delivered, "it did come"
        assert w._queue.empty(), "an event of the gone root was let through"


async def test_several_roots(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    async with watching(a, b) as w:
        assert w.roots == (a.resolve(), b.resolve())
        (b / "x.mp4").write_bytes(b"x")
        await collect_until(w, kind_at(EventKind.CLOSED, b / "x.mp4"))
        (a / "y.mp4").write_bytes(b"x")
        await collect_until(w, kind_at(EventKind.CLOSED, a / "y.mp4"))


async def test_missing_root_is_refused(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match="watch folder does not exist"):
        async with watching(missing):
            pass


async def test_nested_roots_are_refused(root: Path) -> None:
    (root / "inner").mkdir()
    with pytest.raises(ValueError, match="overlap"):
        async with watching(root, root / "inner"):
            pass


async def test_root_given_through_a_symlink_is_resolved(root: Path, tmp_path: Path) -> None:
    alias = tmp_path / "alias"
    alias.symlink_to(root)
    async with watching(alias) as w:
        assert w.roots == (root.resolve(),)
        (root / "clip.mp4").write_bytes(b"x")
        await collect_until(w, kind_at(EventKind.CLOSED, root.resolve() / "clip.mp4"))


# --- failure and shutdown -------------------------------------------------------------------------


async def test_a_dead_emitter_is_an_error_not_silence(root: Path) -> None:
    async with watching(root, root_check_interval_s=0.05) as w:
        observer = w._observer
        assert observer is not None
        for emitter in list(observer.emitters):
            emitter.stop()  # what an unexpected crash of watchdog's thread looks like to us
        with pytest.raises(WatcherError, match="stopped unexpectedly"):
            async with asyncio.timeout(3):
                await w.get()
        with pytest.raises(WatcherError):  # and it stays failed
            await w.get()


async def test_exit_while_a_consumer_waits_and_iteration(root: Path) -> None:
    async with watching(root) as w:
        (root / "a.mp4").write_bytes(b"x")
        async for event in w:
            if event.kind is EventKind.CLOSED:
                break
        waiter = asyncio.create_task(w.get())
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
    observer = w._observer
    assert observer is None


async def test_cancelled_while_starting_leaves_no_observer(root: Path) -> None:
    w = Watcher([root], DEFAULT_INCLUDE)
    task = asyncio.create_task(w.__aenter__())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert w._observer is None


# --- polling --------------------------------------------------------------------------------------


async def test_polling_sees_existing_and_new_files(root: Path) -> None:
    old = root / "old.mp4"
    old.write_bytes(b"x")
    (root / "link.mp4").symlink_to(old)
    async with watching(root, poll=True, poll_interval_s=0.05) as w:
        first = await w.get()
        assert first == FileEvent(EventKind.DISCOVERED, old, writer_open=None)
        clip = root / "sub" / "new.mp4"
        clip.parent.mkdir()
        with clip.open("wb") as f:
            f.write(b"x")
            f.flush()
            events = await collect_until(
                w, lambda e: e.path == clip and e.kind in {EventKind.CREATED, EventKind.MODIFIED}
            )
            f.write(b"more")
            f.flush()
            events += await collect_until(w, kind_at(EventKind.MODIFIED, clip))
        clip.unlink()
        events += await collect_until(w, kind_at(EventKind.DELETED, clip))
    assert all(e.path.name != "link.mp4" for e in events)


async def test_polling_root_removed(root: Path) -> None:
    async with watching(root, poll=True, poll_interval_s=0.05) as w:
        shutil.rmtree(root)
        events = await collect_until(w, lambda e: e.kind is EventKind.ROOT_GONE)
    assert events == [FileEvent(EventKind.ROOT_GONE, root)]


def _non_executor_threads() -> set[threading.Thread]:
    # asyncio.to_thread's pool keeps its idle workers: those are not ours to stop.
    return {t for t in threading.enumerate() if not t.name.startswith("asyncio_")}


async def test_exiting_leaves_no_threads_behind(root: Path) -> None:
    before = _non_executor_threads()
    for poll in (False, True, False):
        async with watching(root, poll=poll, poll_interval_s=0.05):
            pass
    assert _non_executor_threads() == before


@pytest.mark.parametrize("poll", [False, True], ids=["inotify", "poll"])
async def test_a_root_that_comes_back_is_watched_again_and_named_while_it_is_not(
    root: Path, poll: bool
) -> None:
    """N9: a root that went (unmounted, removed) and returns (remounted, recreated) is watched
    again, and what it holds is reported; while it is away, unwatched_roots (/healthz) names it."""
    async with watching(root, poll=poll, poll_interval_s=0.05, root_check_interval_s=0.05) as w:
        shutil.rmtree(root)
        await collect_until(w, lambda e: e.kind is EventKind.ROOT_GONE)
        assert root in unwatched_roots()
        root.mkdir()
        back = root / "clip.mp4"
        back.write_bytes(b"there when it came back")
        await collect_until(w, kind_at(EventKind.DISCOVERED, back))
        assert root not in unwatched_roots()
        later = root / "later.mp4"
        later.write_bytes(b"written once watched again")
        await collect_until(w, lambda e: e.path == later)
    assert root not in unwatched_roots()


def test_estale_on_a_root_is_not_a_root_gone(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """N9: an NFS failover answers ESTALE once; the next look finds the root again."""

    def stale(path: object, **_: object) -> os.stat_result:
        raise OSError(errno.ESTALE, "Stale file handle", str(path))

    with monkeypatch.context() as patched:
        patched.setattr(tailup.watcher.roots.os, "stat", stale)
        gone = tailup.watcher.roots.vanished({root: (1, 2)})
    assert gone == []
