"""Routing events concurrently without reordering what must stay in order.

Opening a stream costs Redis and S3 round trips (the path's record, the identity's record, S3's
look-up of an old file, the record's creation). Routed one at a time, 2,000 files moved in at once
wait on each other's round trips. Here each event runs as soon as nothing it depends on is still
running (``lane_of``, pure):

- events of one path run in their order, each after the one before has been carried out (a close
  or a delete after an open that is still looking the file up finds the stream it made);
- a delete, a move or a removed folder runs alone: after every event before it and before every
  event after it, as when all events were routed one at a time. Such an event touches another
  path (a rename's destination), every path under a folder, or frees an inode number that a new
  file elsewhere may be given (tailup.identity), so it is ordered against everything.

Only opening events of different paths overlap, and they share nothing but Redis and S3, whose
writes are atomic per record (a record is created only if none is there).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Hashable
from pathlib import Path
from typing import Any

from tailup.events import EventKind, FileEvent

# A delete, a move or a removed folder: ordered against every other event.
_ALONE = frozenset({EventKind.DELETED, EventKind.MOVED, EventKind.ROOT_GONE})


def lane_of(event: FileEvent) -> frozenset[Path] | None:
    """The paths whose earlier events ``event`` must follow; None: it follows every earlier
    event and every later one follows it."""
    if event.kind in _ALONE:
        return None
    return frozenset({event.path})


Spawn = Callable[[Coroutine[Any, Any, None]], "asyncio.Task[None]"]


class Lanes:
    """Runs jobs as tasks (``spawn``, a TaskGroup's create_task: a bug in one still stops the
    daemon as before) in the order lane_of allows, at most ``limit`` at once: the dispatcher
    waits for a slot, so a burst of events queues up rather than becoming thousands of tasks
    that all hold Redis and S3 connections."""

    def __init__(self, spawn: Spawn, limit: int) -> None:
        self._spawn = spawn
        self._slots = asyncio.Semaphore(limit)
        self._last: dict[Hashable, asyncio.Task[None]] = {}  # the latest job of each key
        self._alone: asyncio.Task[None] | None = None  # the latest job that runs alone
        self._jobs: set[asyncio.Task[None]] = set()

    async def submit(
        self, keys: frozenset[Path] | None, job: Callable[[], Awaitable[None]]
    ) -> None:
        await self._slots.acquire()
        if keys is None:
            before = set(self._jobs)
        else:
            before = {self._last[k] for k in keys if k in self._last}
            if self._alone is not None:
                before.add(self._alone)
        try:
            task = self._spawn(self._run(before, job))
        except BaseException:
            self._slots.release()
            raise
        self._jobs.add(task)
        if keys is None:
            self._alone = task
        else:
            for key in keys:
                self._last[key] = task
        task.add_done_callback(lambda done: self._forget(done, keys))

    async def _run(
        self, before: set[asyncio.Task[None]], job: Callable[[], Awaitable[None]]
    ) -> None:
        try:
            if before:
                # Only their end matters: a job's own failure is its own (and the TaskGroup's).
                await asyncio.wait(before)
            await job()
        finally:
            self._slots.release()

    def _forget(self, task: asyncio.Task[None], keys: frozenset[Path] | None) -> None:
        self._jobs.discard(task)
        if self._alone is task:
            self._alone = None
        for key in keys or ():
            if self._last.get(key) is task:
                del self._last[key]

    @property
    def pending(self) -> int:
        return len(self._jobs)

    async def join(self, timeout_s: float) -> None:
        """Wait for the jobs submitted (at shutdown: a stream they start must exist before the
        streams are told to stop); those still running after ``timeout_s`` are cancelled, like a
        crash in the middle of opening a stream, which the next start recovers from."""
        jobs = set(self._jobs)
        if not jobs:
            return
        _done, late = await asyncio.wait(jobs, timeout=timeout_s)
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late)
