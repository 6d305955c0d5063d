"""Blocking calls on the recordings' file systems, off the event loop, with a deadline.

A hung network mount (NFS server gone, hard mount) blocks ``stat``/``read`` in the kernel for as
long as it is gone, and no timeout in Python can interrupt it. ``asyncio.to_thread`` would park
such a call in the loop's default executor, whose few workers are then lost one by one, and whose
threads the interpreter joins at exit: SIGTERM could never end the daemon. So these calls run on
daemon threads of their own (a small pool that grows while calls hang, up to ``MAX_WORKERS``), and
the caller waits at most ``timeout_s``: the stream then counts as stalled, the others go on, and
exit does not wait for a thread stuck in the kernel.

A hung mount must stall only its own recordings: calls on a path under a registered watch root
(``register_roots``) take one of ``PER_ROOT_WORKERS`` slots of that root, held until the call
returns (however long after its caller gave up), so one root's stuck calls can never take every
worker. A queued call whose caller gave up before a worker took it is dropped, not run late (an
after-upload delete decided minutes ago must not run on what the path names now).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar

from tailup.errors import SourceStalled

T = TypeVar("T")

MAX_WORKERS: Final = 64
# Calls in flight (stuck ones included) on one watch root's file system at most.
PER_ROOT_WORKERS: Final = 16
# How long a stat, an open or one part's read may take before the stream counts as stalled.
DEFAULT_TIMEOUT_S: Final = 30.0

# (call, loop, future, what to do once the call ended or was dropped)
_Job = tuple[
    Callable[[], Any], asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[[], None]
]


class _Pool:
    def __init__(self, max_workers: int) -> None:
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        self._queued = 0  # jobs submitted that no worker has taken yet
        self._workers = 0
        self._max = max_workers

    def submit(
        self,
        call: Callable[[], Any],
        loop: asyncio.AbstractEventLoop,
        ended: Callable[[], None] = lambda: None,
    ) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = loop.create_future()
        with self._lock:
            # A worker for every job no idle one will take: a burst of calls that hang (a hung
            # mount) must not queue behind one another, nor queue another root's call behind
            # them (an idle worker counts for one job only).
            self._queued += 1
            spawn = self._queued > self._idle and self._workers < self._max
            if spawn:
                self._workers += 1
        if spawn:
            threading.Thread(target=self._work, name="tailup-file-io", daemon=True).start()
        self._jobs.put((call, loop, future, ended))
        return future

    def _work(self) -> None:
        while True:
            with self._lock:
                self._idle += 1
            try:
                call, loop, future, ended = self._jobs.get(timeout=60.0)
            except queue.Empty:
                with self._lock:
                    self._idle -= 1
                    self._workers -= 1
                return
            with self._lock:
                self._idle -= 1
                self._queued -= 1
            try:
                if future.done():
                    continue  # its caller gave up while it was queued: not run late
                try:
                    result = call()
                except BaseException as exc:  # handed to the awaiting task, which decides
                    _settle(loop, future, None, exc)
                else:
                    _settle(loop, future, result, None)
                    del result
            finally:
                ended()
                # Nothing of this job may outlive it here while the thread waits for the next
                # one: a part's buffer held by a parked worker is memory the budget does not see.
                del call, loop, future, ended


def _settle(
    loop: asyncio.AbstractEventLoop,
    future: asyncio.Future[Any],
    result: Any,
    error: BaseException | None,
) -> None:
    def apply() -> None:
        if future.done():
            return  # the caller gave up (timeout, cancelled)
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
        loop.call_soon_threadsafe(apply)


class _RootSlots:
    """PER_ROOT_WORKERS slots per watch root, taken on the loop, given back from any thread
    when a call ends; a caller waits for a slot within its own deadline."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._lock = threading.Lock()
        self._busy: dict[str, int] = {}
        self._waiters: dict[str, deque[asyncio.Future[None]]] = {}

    def busy(self, root: str) -> int:
        with self._lock:
            return self._busy.get(root, 0)

    async def acquire(self, root: str) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._busy.get(root, 0) < self._limit:
                self._busy[root] = self._busy.get(root, 0) + 1
                return
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.setdefault(root, deque()).append(waiter)
        try:
            await waiter  # a slot handed over by release(): the count stays
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.release(root)  # handed over, then cancelled: give it on
            raise

    def release(self, root: str) -> None:  # any thread
        with self._lock:
            waiters = self._waiters.get(root)
            while waiters:
                waiter = waiters.popleft()
                if not waiter.done():
                    with contextlib.suppress(RuntimeError):  # its loop is closed
                        waiter.get_loop().call_soon_threadsafe(self._hand, root, waiter)
                        return
            self._busy[root] = self._busy.get(root, 1) - 1
            if not self._busy[root]:
                del self._busy[root]

    def _hand(self, root: str, waiter: asyncio.Future[None]) -> None:
        if waiter.done():
            self.release(root)  # it gave up meanwhile: the next one
        else:
            waiter.set_result(None)


_POOL = _Pool(MAX_WORKERS)
_SLOTS = _RootSlots(PER_ROOT_WORKERS)
_ROOTS: list[Path] = []  # registered watch roots, the deepest first


def register_roots(roots: Iterable[Path]) -> None:
    """Calls on paths under these roots count against their root's slots (tailup.watcher)."""
    _ROOTS[:] = sorted({*_ROOTS, *roots}, key=lambda r: len(r.parts), reverse=True)


def unregister_roots(roots: Iterable[Path]) -> None:
    gone = set(roots)
    _ROOTS[:] = [r for r in _ROOTS if r not in gone]


def root_of(args: Sequence[Any], roots: Sequence[Path]) -> str:
    """The registered root the call's first path argument lies under, or "" (none). Pure."""
    path = next((a for a in args if isinstance(a, Path)), None)
    if path is None:
        return ""
    return next((str(r) for r in roots if path.is_relative_to(r)), "")


async def run_blocking(
    call: Callable[..., T],
    *args: Any,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    what: str = "the file system",
    on: Path | None = None,
) -> T:
    """``call(*args)`` on a file-I/O thread; raises SourceStalled after ``timeout_s`` (waiting
    for a slot of the path's watch root included). ``on``: the path whose file system the call
    touches, when it is not the first path among ``args`` (a move names its target first, a
    /proc pass takes a list). A call over several roots' files (a batch of close checks) has
    none: held by one root's slots, a hung path in it would stall that root's healthy files."""
    root = root_of(args if on is None else (on,), _ROOTS)
    future: asyncio.Future[Any] | None = None
    try:
        async with asyncio.timeout(timeout_s):
            if root:
                await _SLOTS.acquire(root)
            ended = (lambda: _SLOTS.release(root)) if root else (lambda: None)
            future = _POOL.submit(lambda: call(*args), asyncio.get_running_loop(), ended)
            return await asyncio.shield(future)
    except TimeoutError:
        if future is not None:
            future.cancel()
        raise SourceStalled(
            f"{what} did not answer within {timeout_s:g} s (a hung network mount?); retrying"
        ) from None
    except asyncio.CancelledError:
        if future is not None:
            future.cancel()
        raise
