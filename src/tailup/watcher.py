"""Filesystem events -> asyncio: what happens to video files under the watched folders.

`Watcher` runs a watchdog observer (inotify, or polling for network filesystems) recursively on
every root and hands `FileEvent`s to asyncio. On start it scans the roots and reports every file
already there as DISCOVERED, before any live event.

Policies (the supervisor relies on them):

- Only *candidates* are reported: regular files whose name matches an include glob
  (case-insensitive), that are not hidden and not another tool's partial download
  (see `is_candidate`). A directory named like a video (`clip.mp4/`) is not a file.
- Symlinks are never followed and never reported: a link may point outside the watched tree, and
  its target can change under us, so what we upload would not be what is in the folder. The startup
  scan does not descend into symlinked directories, and polling uses lstat for the same reason.
- CLOSED is the kernel's close-after-write only. Read-only closes are dropped (even at the inotify
  mask): `+faststart` reopens the file read-only before its final close-after-write.
- MODIFIED means "may have changed", not "was written". With inotify it is reported when a file is
  *opened* (a writer's open may truncate it, or reopen a finished file to append), never per
  write: inotify reports every write() (a recorder writing 32 KiB at a time makes thousands a
  second), and carrying each one through watchdog and asyncio cost ~160 us of CPU, 5 CPU s per GiB
  at 100 MB/s (bench/RESULTS.md). A stream watches its own file's size instead. Our own reads
  open the files too: the supervisor ignores MODIFIED for a file it is uploading. Polling reports
  MODIFIED once per snapshot in which the file changed.
- A file or directory that appears by being moved in from outside the watched tree is reported as
  DISCOVERED (with `writer_open`), like the startup scan, not as CREATED: nobody is known to be
  writing it. A file moved out of the tree is reported as DELETED.
- Files found in a folder just created (scanned when its watch is added) are DISCOVERED too:
  `mkdir -p` then record at once can write and close a file before inotify watches the folder,
  and then no CLOSED ever comes. DISCOVERED thus means "present, history unknown".
- A root that is deleted, moved away or replaced (another inode, checked every
  `root_check_interval_s`) is reported once as ROOT_GONE; later events under it are dropped.
  inotify reports no event at all when a watched folder is moved, and keeps reporting its files
  under their old paths, hence the periodic check.
- Events are hints to reconcile, not a transaction log: a file created while the startup scan runs
  is both DISCOVERED and CREATED; a move between two roots arrives as DELETED + DISCOVERED in
  either order; consecutive identical events not yet consumed are merged (as watchdog does).
- `writer_open=False` means no *visible* process holds the file open for writing. A writer in
  another PID namespace (another container) or on another host is invisible: keep idle timers.

Roots are resolved (absolute, symlinks resolved) at start: event paths are under `Watcher.roots`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fnmatch
import os
import stat
import threading
import warnings
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

import structlog
from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileOpenedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers.api import BaseObserver, ObservedWatch
from watchdog.observers.polling import PollingObserverVFS

from tailup.config.values import DEFAULT_INCLUDE
from tailup.errors import SourceStalled
from tailup.events import EventKind, FileEvent
from tailup.offload import register_roots, run_blocking, unregister_roots

__all__ = [
    "DEFAULT_INCLUDE",
    "Watcher",
    "WatcherError",
    "is_candidate",
    "writers_open",
]

log = structlog.get_logger(__name__)


# "." covers hidden files and LibreOffice-style ".~lock" files; "~$" is Office's owner file.
_SKIPPED_PREFIXES: Final = (".", "~$")
_PARTIAL_SUFFIXES: Final = (".part", ".tmp", ".crdownload", ".partial", ".download", "~")

# Asking watchdog for these classes only also narrows the inotify mask: no IN_MODIFY (one per
# write), IN_ACCESS or IN_CLOSE_NOWRITE (our own reads). IN_OPEN stands in for IN_MODIFY (see the
# module doc). Polling has no per-write cost: it keeps its snapshot-based modified events.
_INOTIFY_EVENTS: Final[tuple[type[FileSystemEvent], ...]] = (
    FileCreatedEvent,
    FileOpenedEvent,
    FileClosedEvent,
    FileDeletedEvent,
    FileMovedEvent,
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
)
_POLLING_EVENTS: Final = (*_INOTIFY_EVENTS, FileModifiedEvent)
_FILE_KINDS: Final[dict[type[FileSystemEvent], EventKind]] = {
    FileCreatedEvent: EventKind.CREATED,
    FileOpenedEvent: EventKind.MODIFIED,
    FileModifiedEvent: EventKind.MODIFIED,
    FileClosedEvent: EventKind.CLOSED,
    FileDeletedEvent: EventKind.DELETED,
}

# watchdog warns (with a multi-kilobyte repr) when `mkdir -p` races its own recursive watch
# registration and a folder's watch is registered twice by the same group: harmless, and raw
# text on stderr would break structured logs.
warnings.filterwarnings(
    "ignore",
    message=r"Callback with id .* already exists",
    category=RuntimeWarning,
    module=r"watchdog\.observers\.inotify",
)

# ESTALE is not among them: an NFS failover returns it once, and the root is there again.
_ROOT_GONE_ERRNOS: Final = frozenset({errno.ENOENT, errno.ENOTDIR})
# Roots not watched now, in every Watcher of this process, with why: /healthz names them
# (tailup.server). A root that comes back is watched again and leaves it.
_UNWATCHED: dict[Path, str] = {}


def unwatched_roots() -> dict[Path, str]:
    """The watch folders not watched now (gone, moved away, replaced), with why."""
    return dict(_UNWATCHED)


_PF_KTHREAD: Final = 0x00200000  # include/linux/sched.h


class WatcherError(RuntimeError):
    """Watching stopped for a reason other than a root going away (a dead observer thread)."""


# --- filters -------------------------------------------------------------------------------------


def is_candidate(path: Path, include: Sequence[str]) -> bool:
    """True if `path`'s name looks like a recording to upload (the name only: no I/O)."""
    name = path.name
    if not name or name.startswith(_SKIPPED_PREFIXES):
        return False
    folded = name.casefold()
    if folded.endswith(_PARTIAL_SUFFIXES):
        return False
    return any(fnmatch.fnmatchcase(folded, pattern.casefold()) for pattern in include)


def _is_symlink(path: Path) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(path).st_mode)
    except OSError:
        return False  # gone already: its DELETED follows


def _skip_if_symlink(path: Path) -> None:
    """Say once, when a link appears, why it is not uploaded (the policy in the module doc)."""
    if _is_symlink(path):
        log.info("watcher.symlink_not_followed", path=str(path))


def _is_regular_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _to_path(raw: bytes | str) -> Path:
    return Path(os.fsdecode(raw))


def _scan_tree(top: Path, include: Sequence[str], *, recursive: bool = True) -> list[Path]:
    """Candidate regular files under `top`, sorted. Symlinked dirs are listed, not entered."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(top, onerror=_log_walk_error):
        if not recursive:
            dirnames.clear()
        for name in filenames:
            path = Path(dirpath, name)
            if is_candidate(path, include) and _is_regular_file(path):
                found.append(path)
            elif is_candidate(path, include):
                _skip_if_symlink(path)
    found.sort()
    return found


def _log_walk_error(exc: OSError) -> None:
    log.warning("watcher.scan_error", path=exc.filename, error=str(exc))


# --- writers, from /proc -------------------------------------------------------------------------


def writers_open(paths: Iterable[Path], *, proc: Path = Path("/proc")) -> dict[Path, bool | None]:
    """For each path: True if a process holds it open for writing, False if no visible one does,
    None if it cannot be told (no usable /proc, or a process whose fds we may not read).

    One pass over /proc/[pid]/fd for all paths.
    """
    by_target: dict[str, list[Path]] = {}
    for path in paths:
        # fd links show the kernel's path: absolute, symlinks resolved.
        by_target.setdefault(os.path.realpath(path), []).append(path)
    found = _scan_proc(proc, set(by_target)) if by_target else (set(), False)
    result: dict[Path, bool | None] = {}
    for target, originals in by_target.items():
        verdict: bool | None
        if found is None:
            verdict = None
        elif target in found[0]:
            verdict = True
        else:
            verdict = None if found[1] else False
        result.update(dict.fromkeys(originals, verdict))
    return result


def _scan_proc(proc: Path, targets: set[str]) -> tuple[set[str], bool] | None:
    """(targets open for writing, whether some process's fds were hidden from us), or None."""
    try:
        os.listdir(proc / "self" / "fd")  # proves this is a procfs we can use
        pids = [name for name in os.listdir(proc) if name.isdigit()]
    except OSError:
        return None
    written: set[str] = set()
    blind = False
    for pid in pids:
        fd_dir = f"{proc}/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except PermissionError:
            # Another user's process (we are not root): it might be the writer.
            blind = blind or not _is_kernel_thread(proc, pid)
            continue
        except OSError:
            continue  # exited meanwhile
        for fd in fds:
            try:
                target = os.readlink(f"{fd_dir}/{fd}")
            except OSError:
                continue
            if target in targets and target not in written and _fd_writable(proc, pid, fd):
                written.add(target)
        if written == targets:
            break
    return written, blind


def _fd_writable(proc: Path, pid: str, fd: str) -> bool:
    try:
        with open(f"{proc}/{pid}/fdinfo/{fd}", encoding="ascii") as info:
            for line in info:
                if line.startswith("flags:"):
                    mode = int(line.split()[1], 8) & os.O_ACCMODE
                    return mode in (os.O_WRONLY, os.O_RDWR)
    except (OSError, ValueError, IndexError):
        pass  # closed meanwhile
    return False


def _is_kernel_thread(proc: Path, pid: str) -> bool:
    """Kernel threads hide their (empty) fd tables from non-root; they never write files."""
    try:
        with open(f"{proc}/{pid}/stat", encoding="utf-8", errors="replace") as f:
            fields = f.read().rpartition(")")[2].split()
        return bool(int(fields[6]) & _PF_KTHREAD)
    except (OSError, ValueError, IndexError):
        return True  # exited meanwhile: it holds nothing


# --- watchdog event -> FileEvent -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Translator:
    """Maps one watchdog event to FileEvents. Runs on the observer thread (it may do I/O)."""

    roots: frozenset[Path]
    include: tuple[str, ...]
    polling: bool

    def translate(self, event: FileSystemEvent) -> list[FileEvent]:
        if event.is_directory:
            return self._directory(event)
        if isinstance(event, FileMovedEvent):
            return self._moved(event)
        kind = _FILE_KINDS.get(type(event))
        # Synthetic creates are watchdog walking a directory moved in: _directory scans it instead.
        if kind is None or (kind is EventKind.CREATED and event.is_synthetic):
            return []
        path = _to_path(event.src_path)
        if not is_candidate(path, self.include):
            return []
        if kind is EventKind.CREATED and not _is_regular_file(path):
            _skip_if_symlink(path)
            # A symlink, or gone already (its MOVED or DELETED follows): lstat after the fact
            # cannot tell which, and a link renamed at once must not slip through.
            return []
        elif kind is not EventKind.DELETED and _is_symlink(path):
            # Not "must be a regular file": a CLOSED followed at once by a rename must survive.
            return []
        return [FileEvent(kind, path)]

    def discovered(self, paths: Sequence[Path]) -> list[FileEvent]:
        # When polling, the writer may well be on another host of the network filesystem.
        writers = writers_open(paths) if paths and not self.polling else {}
        return [FileEvent(EventKind.DISCOVERED, p, writer_open=writers.get(p)) for p in paths]

    def _moved(self, event: FileSystemEvent) -> list[FileEvent]:
        # With generate_full_events, an empty side means "outside the watched tree".
        src = _to_path(event.src_path) if event.src_path else None
        dest = _to_path(event.dest_path) if event.dest_path else None
        if dest is not None and _is_symlink(dest):
            log.info("watcher.symlink_not_followed", path=str(dest))
            return []
        if src is None and dest is not None:
            ok = is_candidate(dest, self.include) and _is_regular_file(dest)
            return self.discovered([dest]) if ok else []
        if src is not None and dest is None:
            return [FileEvent(EventKind.DELETED, src)] if is_candidate(src, self.include) else []
        if src is None or dest is None:
            return []
        if is_candidate(src, self.include) or is_candidate(dest, self.include):
            return [FileEvent(EventKind.MOVED, src, dest_path=dest)]
        return []

    def _directory(self, event: FileSystemEvent) -> list[FileEvent]:
        src = _to_path(event.src_path) if event.src_path else None
        if src in self.roots and isinstance(event, DirDeletedEvent | DirMovedEvent):
            return [FileEvent(EventKind.ROOT_GONE, src)]
        if isinstance(event, DirMovedEvent) and src is None and event.dest_path:
            return self.discovered(_scan_tree(_to_path(event.dest_path), self.include))
        if isinstance(event, DirCreatedEvent) and src is not None and self._scans_new_dirs(event):
            # inotify watches a new folder only once it exists: what was written into it before
            # (mkdir -p, then record at once) shows up as a bare CREATED, without its CLOSED.
            return self.discovered(_scan_tree(src, self.include, recursive=False))
        return []

    def _scans_new_dirs(self, event: FileSystemEvent) -> bool:
        # Synthetic creates come from a folder moved in, scanned whole above. Polling has no race:
        # each snapshot lists the new folder's files as CREATED.
        return not (event.is_synthetic or self.polling)


class _Bridge(FileSystemEventHandler):
    def __init__(
        self,
        translate: Callable[[FileSystemEvent], list[FileEvent]],
        deliver: Callable[[list[FileEvent]], None],
    ) -> None:
        super().__init__()
        self._translate = translate
        self._deliver = deliver

    def dispatch(self, event: FileSystemEvent) -> None:
        try:
            events = self._translate(event)
        except Exception:
            # Raising here would kill watchdog's dispatcher thread: every root would go silent.
            log.exception("watcher.translate_failed", event=repr(event))
            return
        if events:
            self._deliver(events)


# --- roots ---------------------------------------------------------------------------------------


def _resolve_roots(roots: Sequence[Path]) -> dict[Path, tuple[int, int]]:
    """Resolved root -> (st_dev, st_ino); refuses missing, non-directory and nested roots."""
    resolved: dict[Path, tuple[int, int]] = {}
    for root in roots:
        try:
            path = root.resolve(strict=True)
            st = os.stat(path)
        except FileNotFoundError:
            raise FileNotFoundError(
                errno.ENOENT, "watch folder does not exist", str(root)
            ) from None
        if not stat.S_ISDIR(st.st_mode):
            raise NotADirectoryError(errno.ENOTDIR, "watch folder is not a directory", str(root))
        resolved[path] = (st.st_dev, st.st_ino)
    for a in resolved:
        for b in resolved:
            if a != b and b.is_relative_to(a):
                # Two watches on one file would report every event twice.
                raise ValueError(f"watch folders overlap: {b} is inside {a}")
    return resolved


def _back(roots: Iterable[Path]) -> dict[Path, tuple[int, int]]:
    """The roots that are directories again, with their identity now."""
    found: dict[Path, tuple[int, int]] = {}
    for root in roots:
        try:
            st = os.stat(root)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode):
            found[root] = (st.st_dev, st.st_ino)
    return found


def _vanished(roots: dict[Path, tuple[int, int]]) -> list[Path]:
    gone: list[Path] = []
    for root, identity in roots.items():
        try:
            st = os.stat(root)
        except OSError as exc:
            # Other errors (EIO, EACCES on a flaky share) are not proof: the next check retries.
            if exc.errno in _ROOT_GONE_ERRNOS:
                gone.append(root)
            continue
        if (st.st_dev, st.st_ino) != identity or not stat.S_ISDIR(st.st_mode):
            gone.append(root)
    return gone


def _explain_start_error(exc: OSError) -> OSError:
    if exc.errno == errno.ENOSPC:
        hint = "inotify watch limit reached: raise fs.inotify.max_user_watches or use polling"
    elif exc.errno == errno.EMFILE:
        hint = "inotify instance limit reached: raise fs.inotify.max_user_instances"
    else:
        return exc
    return OSError(exc.errno, hint, exc.filename)


# --- the watcher ---------------------------------------------------------------------------------


class Watcher:
    """`async with Watcher(roots, include) as w:` then `await w.get()` or `async for ev in w`."""

    def __init__(
        self,
        roots: Sequence[Path],
        include: Sequence[str],
        *,
        poll: bool = False,
        poll_interval_s: float = 1.0,
        root_check_interval_s: float = 1.0,
        io_timeout_s: float = 30.0,
    ) -> None:
        if not roots:
            raise ValueError("at least one watch folder is required")
        if not include:
            raise ValueError("at least one include pattern is required")
        if poll_interval_s <= 0 or root_check_interval_s <= 0:
            raise ValueError("poll_interval_s and root_check_interval_s must be > 0")
        self._requested = tuple(Path(r) for r in roots)
        self._include = tuple(include)
        self._poll = poll
        self._poll_interval_s = poll_interval_s
        self._root_check_interval_s = root_check_interval_s
        # A stat of the roots that takes longer (a hung mount) proves nothing: the next round.
        self._io_timeout_s = io_timeout_s
        self._handler: _Bridge | None = None

        self._identities: dict[Path, tuple[int, int]] = {}
        self._translator: _Translator | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[FileEvent | WatcherError] = asyncio.Queue()
        self._last_put: FileEvent | WatcherError | None = None
        self._live = False  # live events wait in _pending until the startup scan is queued
        self._pending: list[FileEvent] = []
        self._gone: set[Path] = set()
        self._monitor: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()

        # Guards the observer between the threads that start, unschedule and stop it.
        self._lifecycle = threading.Lock()
        self._observer: BaseObserver | None = None
        self._watches: dict[Path, ObservedWatch] = {}
        self._closed = False

    @property
    def roots(self) -> tuple[Path, ...]:
        """The watched roots, resolved (available once started)."""
        return tuple(self._identities)

    async def __aenter__(self) -> Self:
        if self._loop is not None:
            raise RuntimeError("a Watcher can only be started once")
        self._loop = asyncio.get_running_loop()
        try:
            await self._start()
        except BaseException:
            await self._close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._close()

    async def get(self) -> FileEvent:
        item = await self._queue.get()
        if isinstance(item, WatcherError):
            self._queue.put_nowait(item)  # every later get() fails too
            raise WatcherError(*item.args)
        return item

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> FileEvent:
        return await self.get()

    # -- start and stop

    async def _start(self) -> None:
        self._identities = await asyncio.to_thread(_resolve_roots, self._requested)
        register_roots(self._identities)  # a hung root stalls only its own calls (offload)
        self._translator = _Translator(frozenset(self._identities), self._include, self._poll)
        # The observer watches before the scan runs, so a file written in between is not missed.
        await asyncio.to_thread(self._start_observer, self._translator)
        self._monitor = asyncio.create_task(self._monitor_roots(), name="tailup-watcher-roots")
        discovered = await asyncio.to_thread(self._startup_scan, self._translator)
        self._go_live(discovered)
        log.info(
            "watcher.started",
            roots=[str(r) for r in self.roots],
            mode="poll" if self._poll else "inotify",
            discovered=len(discovered),
        )

    def _start_observer(self, translator: _Translator) -> None:  # worker thread
        with self._lifecycle:
            if self._closed:
                return
            try:
                self._observer = observer = self._make_observer()
                self._handler = handler = _Bridge(translator.translate, self._deliver_threadsafe)
                for root in self._identities:
                    events = _POLLING_EVENTS if self._poll else _INOTIFY_EVENTS
                    self._watches[root] = observer.schedule(
                        handler, str(root), recursive=True, event_filter=list(events)
                    )
                observer.start()  # adds the inotify watches (walks the tree) or takes a snapshot
            except OSError as exc:
                raise _explain_start_error(exc) from exc

    def _make_observer(self) -> BaseObserver:
        if self._poll:
            # lstat, not stat: the polling snapshot must not follow symlinks either.
            return PollingObserverVFS(os.lstat, os.scandir, polling_interval=self._poll_interval_s)
        from watchdog.observers.inotify import InotifyObserver  # Linux only

        # Full events keep "moved in from outside" apart from "created".
        return InotifyObserver(generate_full_events=True)

    def _scan_root(self, root: Path) -> list[FileEvent]:  # worker thread
        assert self._translator is not None
        return self._translator.discovered(list(_scan_tree(root, self._include)))

    def _startup_scan(self, translator: _Translator) -> list[FileEvent]:  # worker thread
        paths = [p for root in self._identities for p in _scan_tree(root, self._include)]
        return translator.discovered(paths)

    async def _close(self) -> None:
        if self._monitor is not None:
            self._monitor.cancel()
            # wait(), not `await task`: a CancelledError aimed at us must not be swallowed.
            await asyncio.wait([self._monitor])
        # Shielded: if we are cancelled meanwhile, the observer is still stopped and joined.
        await asyncio.shield(asyncio.to_thread(self._stop_observer))
        for root in self._identities:
            _UNWATCHED.pop(root, None)
        unregister_roots(self._identities)

    def _rearm(self, root: Path) -> bool:  # worker thread
        """Watch a root that came back (remounted, recreated); False once stopping."""
        with self._lifecycle:
            if self._closed or self._observer is None or self._handler is None:
                return False
            events = _POLLING_EVENTS if self._poll else _INOTIFY_EVENTS
            self._watches[root] = self._observer.schedule(
                self._handler, str(root), recursive=True, event_filter=list(events)
            )
            return True

    def _stop_observer(self) -> None:  # worker thread
        with self._lifecycle:
            self._closed = True
            observer, self._observer = self._observer, None
            if observer is None:
                return
            observer.stop()
            with contextlib.suppress(RuntimeError):  # never started: start() failed
                observer.join()

    def _unschedule(self, root: Path) -> None:  # worker thread
        with self._lifecycle:
            watch = self._watches.pop(root, None)
            if self._observer is not None and watch is not None:
                with contextlib.suppress(KeyError):
                    self._observer.unschedule(watch)

    # -- events into the queue (event loop thread, except _deliver_threadsafe)

    def _deliver_threadsafe(self, events: list[FileEvent]) -> None:  # observer thread
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # loop closed: we are shutting down
            self._loop.call_soon_threadsafe(self._deliver, events)

    def _deliver(self, events: list[FileEvent]) -> None:
        if not self._live:
            self._pending.extend(events)
            return
        for event in events:
            self._put(event)

    def _go_live(self, discovered: list[FileEvent]) -> None:
        for event in discovered:
            self._put(event)
        self._live = True
        pending, self._pending = self._pending, []
        self._deliver(pending)

    def _put(self, item: FileEvent | WatcherError) -> None:
        if isinstance(item, FileEvent) and not self._admit(item):
            return
        # Still queued identical event: merging it loses nothing.
        if not self._queue.empty() and item == self._last_put:
            return
        self._queue.put_nowait(item)
        self._last_put = item

    def _admit(self, event: FileEvent) -> bool:
        if event.kind is EventKind.ROOT_GONE:
            if event.path in self._gone:
                return False
            self._gone.add(event.path)
            _UNWATCHED[event.path] = "gone, moved away or replaced; watched again once it is back"
            log.warning("watcher.root_gone", root=str(event.path))
            self._spawn(asyncio.to_thread(self._unschedule, event.path))
            return True
        # A root moved away still reports its files, under their old (now wrong) paths.
        return not any(event.path.is_relative_to(root) for root in self._gone)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- root and observer health

    async def _monitor_roots(self) -> None:
        while True:
            await asyncio.sleep(self._root_check_interval_s)
            watched = {r: i for r, i in self._identities.items() if r not in self._gone}
            dead = self._dead_watches()  # before the stat: a deleted root stops its emitter
            try:
                gone = await run_blocking(
                    _vanished, watched, timeout_s=self._io_timeout_s, what="watch folders"
                )
            except SourceStalled:
                continue  # a hung mount is not a root gone
            self._deliver([FileEvent(EventKind.ROOT_GONE, root) for root in gone])
            await self._rearm_returned()
            failed = sorted(dead - set(gone) - self._gone)
            if failed:
                message = f"watching stopped unexpectedly for {', '.join(map(str, failed))}"
                log.error("watcher.failed", roots=[str(r) for r in failed])
                self._put(WatcherError(message))
                return

    async def _rearm_returned(self) -> None:
        """Watch again the roots that are back, and report what they hold (DISCOVERED)."""
        if not self._gone:
            return
        try:
            back = await run_blocking(
                _back, sorted(self._gone), timeout_s=self._io_timeout_s, what="watch folders"
            )
        except SourceStalled:
            return
        for root, identity in back.items():
            if not await run_blocking(self._rearm, root, timeout_s=self._io_timeout_s):
                return
            self._identities[root] = identity
            self._gone.discard(root)
            _UNWATCHED.pop(root, None)
            log.info("watcher.root_back", root=str(root))
            found = await run_blocking(
                self._scan_root, root, timeout_s=self._io_timeout_s, what=str(root)
            )
            self._deliver(found)

    def _dead_watches(self) -> set[Path]:
        observer = self._observer
        if observer is None:
            return set()
        watches = dict(self._watches)  # worker threads unschedule concurrently
        if not observer.is_alive():
            return set(watches)
        alive = {emitter.watch for emitter in list(observer.emitters) if emitter.is_alive()}
        return {root for root, watch in watches.items() if watch not in alive}
