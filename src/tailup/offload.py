"""Blocking calls on the recordings' file systems, off the event loop, with a deadline.

A hung network mount (NFS server gone, hard mount) blocks ``stat``/``read`` in the kernel for as
long as it is gone, and no timeout in Python can interrupt it. ``asyncio.to_thread`` would park
such a call in the loop's default executor, whose few workers are then lost one by one, and whose
threads the interpreter joins at exit: SIGTERM could never end the daemon. So these calls run on
daemon threads of their own (a small pool that grows while calls hang, up to ``MAX_WORKERS``), and
the caller waits at most ``timeout_s``: the stream then counts as stalled, the others go on, and
exit does not wait for a thread stuck in the kernel.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, Final, TypeVar

from tailup.errors import SourceStalled

T = TypeVar("T")

MAX_WORKERS: Final = 64
# How long a stat, an open or one part's read may take before the stream counts as stalled.
DEFAULT_TIMEOUT_S: Final = 30.0

_Job = tuple[Callable[[], Any], asyncio.AbstractEventLoop, "asyncio.Future[Any]"]


class _Pool:
    def __init__(self, max_workers: int) -> None:
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        self._workers = 0
        self._max = max_workers

    def submit(
        self, call: Callable[[], Any], loop: asyncio.AbstractEventLoop
    ) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = loop.create_future()
        with self._lock:
            spawn = self._idle == 0 and self._workers < self._max
            if spawn:
                self._workers += 1
        if spawn:
            threading.Thread(target=self._work, name="tailup-file-io", daemon=True).start()
        self._jobs.put((call, loop, future))
        return future

    def _work(self) -> None:
        while True:
            with self._lock:
                self._idle += 1
            try:
                call, loop, future = self._jobs.get(timeout=60.0)
            except queue.Empty:
                with self._lock:
                    self._idle -= 1
                    self._workers -= 1
                return
            with self._lock:
                self._idle -= 1
            try:
                result = call()
            except BaseException as exc:  # handed to the awaiting task, which decides
                _settle(loop, future, None, exc)
            else:
                _settle(loop, future, result, None)
                del result
            # Nothing of this job may outlive it here while the thread waits for the next one:
            # a part's buffer held by a parked worker is memory the byte budget does not see.
            del call, loop, future


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


_POOL = _Pool(MAX_WORKERS)


async def run_blocking(
    call: Callable[..., T],
    *args: Any,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    what: str = "the file system",
) -> T:
    """``call(*args)`` on a file-I/O thread; raises SourceStalled after ``timeout_s``."""
    future = _POOL.submit(lambda: call(*args), asyncio.get_running_loop())
    try:
        async with asyncio.timeout(timeout_s):
            return await asyncio.shield(future)
    except TimeoutError:
        future.cancel()
        raise SourceStalled(
            f"{what} did not answer within {timeout_s:g} s (a hung network mount?); retrying"
        ) from None
    except asyncio.CancelledError:
        future.cancel()
        raise
