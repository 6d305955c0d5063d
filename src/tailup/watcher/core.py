"""The Watcher: a watchdog observer on every root, its events into an asyncio queue after the
startup scan, and the roots checked for gone or back (the policies are in tailup.watcher)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import threading
import warnings
from collections.abc import Coroutine, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import structlog
from watchdog.observers.api import BaseObserver, ObservedWatch
from watchdog.observers.polling import PollingObserverVFS

from tailup.errors import SourceStalled
from tailup.events import EventKind, FileEvent
from tailup.offload import register_roots, run_blocking, unregister_roots
from tailup.watcher.roots import mark_gone, mark_watched, resolve_roots, roots_back, vanished
from tailup.watcher.scan import scan_tree
from tailup.watcher.translate import INOTIFY_EVENTS, POLLING_EVENTS, Bridge, Translator

log = structlog.get_logger("tailup.watcher")

# watchdog warns (with a multi-kilobyte repr) when `mkdir -p` races its own recursive watch
# registration and a folder's watch is registered twice by the same group: harmless, and raw
# text on stderr would break structured logs.
warnings.filterwarnings(
    "ignore",
    message=r"Callback with id .* already exists",
    category=RuntimeWarning,
    module=r"watchdog\.observers\.inotify",
)


class WatcherError(RuntimeError):
    """Watching stopped for a reason other than a root going away (a dead observer thread)."""


def _explain_start_error(exc: OSError) -> OSError:
    if exc.errno == errno.ENOSPC:
        hint = "inotify watch limit reached: raise fs.inotify.max_user_watches or use polling"
    elif exc.errno == errno.EMFILE:
        hint = "inotify instance limit reached: raise fs.inotify.max_user_instances"
    else:
        return exc
    return OSError(exc.errno, hint, exc.filename)


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
        self._handler: Bridge | None = None

        self._identities: dict[Path, tuple[int, int]] = {}
        self._translator: Translator | None = None
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
        self._identities = await asyncio.to_thread(resolve_roots, self._requested)
        register_roots(self._identities)  # a hung root stalls only its own calls (offload)
        self._translator = Translator(frozenset(self._identities), self._include, self._poll)
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

    def _start_observer(self, translator: Translator) -> None:  # worker thread
        with self._lifecycle:
            if self._closed:
                return
            try:
                self._observer = observer = self._make_observer()
                self._handler = handler = Bridge(translator.translate, self._deliver_threadsafe)
                for root in self._identities:
                    events = POLLING_EVENTS if self._poll else INOTIFY_EVENTS
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
        return self._translator.discovered(list(scan_tree(root, self._include)))

    def _startup_scan(self, translator: Translator) -> list[FileEvent]:  # worker thread
        paths = [p for root in self._identities for p in scan_tree(root, self._include)]
        return translator.discovered(paths)

    async def _close(self) -> None:
        if self._monitor is not None:
            self._monitor.cancel()
            # wait(), not `await task`: a CancelledError aimed at us must not be swallowed.
            await asyncio.wait([self._monitor])
        # Shielded: if we are cancelled meanwhile, the observer is still stopped and joined.
        await asyncio.shield(asyncio.to_thread(self._stop_observer))
        for root in self._identities:
            mark_watched(root)
        unregister_roots(self._identities)

    def _rearm(self, root: Path) -> bool:  # worker thread
        """Watch a root that came back (remounted, recreated); False once stopping."""
        with self._lifecycle:
            if self._closed or self._observer is None or self._handler is None:
                return False
            events = POLLING_EVENTS if self._poll else INOTIFY_EVENTS
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
            mark_gone(event.path)
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
                    vanished, watched, timeout_s=self._io_timeout_s, what="watch folders"
                )
            except SourceStalled:
                continue  # a hung mount is not a root gone
            self._deliver([FileEvent(EventKind.ROOT_GONE, root) for root in gone])
            # Before the re-arm: a root found gone by its own delete event and back already is
            # re-armed there, and its old emitter (dead since the delete) is no failure.
            failed = sorted(dead - set(gone) - self._gone)
            if failed:
                message = f"watching stopped unexpectedly for {', '.join(map(str, failed))}"
                log.error("watcher.failed", roots=[str(r) for r in failed])
                self._put(WatcherError(message))
                return
            await self._rearm_returned()

    async def _rearm_returned(self) -> None:
        """Watch again the roots that are back, and report what they hold (DISCOVERED)."""
        if not self._gone:
            return
        try:
            back = await run_blocking(
                roots_back, sorted(self._gone), timeout_s=self._io_timeout_s, what="watch folders"
            )
        except SourceStalled:
            return
        for root, identity in back.items():
            if root in self._watches:
                # Its old watch is still being taken down (and still reports, under this
                # path, what happens in the folder that moved away): watched again next round.
                # Scheduled now, watchdog would even hand the new watch the old emitter.
                continue
            if not await run_blocking(self._rearm, root, timeout_s=self._io_timeout_s):
                return
            self._identities[root] = identity
            self._gone.discard(root)
            mark_watched(root)
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
