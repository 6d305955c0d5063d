"""Writers' closes, checked against /proc in batches.

A CLOSE_WRITE says one descriptor closed, not that the recording ended: another process (or
another descriptor) may still write the file, so each close is checked against /proc before the
stream is told. A /proc pass reads every process's descriptors, and costs the same for one path
as for a hundred. When one recorder process closes many files at once (an NVR ending its
segments, bench c's 100 streams), one pass per close, one after the other in the supervisor's
event loop, made the last close wait for all the passes before it (6.9 s at 100 streams). So
closes wait here while a pass runs, and the next pass takes all of them at once: a close waits
for at most the pass in progress and its own.

The decision of which closes are the last writer's is ``last_closes`` (pure); the pass and the
telling are the caller's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Generic, TypeVar

import structlog

from tailup.errors import RetryableError

log = structlog.get_logger("tailup.closes")

S = TypeVar("S")

Scan = Callable[[list[Path]], Awaitable[Mapping[Path, bool | None]]]


def last_closes(waiting: Mapping[Path, S], writers: Mapping[Path, bool | None]) -> list[Path]:
    """The paths of ``waiting`` whose close ended the writing: no process is seen holding the file
    open for writing. ``None`` (/proc cannot tell, e.g. another user's process) counts as closed,
    as a close event says at least that one writer went; a path the scan did not answer for
    likewise."""
    return [path for path in waiting if writers.get(path) is not True]


class CloseChecks(Generic[S]):
    """Closes waiting for a /proc pass; one task runs the passes, one batch at a time.

    ``scan`` answers, for every path, whether a writer still holds it (tailup.watcher's
    writers_open, off the loop); ``tell(path, stream)`` is called for each close that ended the
    writing; ``retry(paths, error)`` gets a batch whose pass failed (a hung /proc, a timeout)."""

    def __init__(
        self,
        scan: Scan,
        tell: Callable[[Path, S], None],
        retry: Callable[[list[Path], RetryableError], None],
    ) -> None:
        self._scan = scan
        self._tell = tell
        self._retry = retry
        self._waiting: dict[Path, S] = {}
        self._task: asyncio.Task[None] | None = None
        self.passes = 0  # /proc passes made: observable, for tests

    def note(self, path: Path, stream: S) -> None:
        """A close of ``path``, the file of ``stream``; checked at the next pass (a later close of
        the same path before it replaces this one: the pass is what tells)."""
        self._waiting[path] = stream
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="close-checks")

    async def settled(self) -> None:
        """Return once every close noted so far has been checked (tests; shutdown)."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, {}
            paths = list(batch)
            try:
                writers = await self._scan(paths)
            except RetryableError as exc:
                self._retry(paths, exc)
                continue
            self.passes += 1
            for path in last_closes(batch, writers):
                self._tell(path, batch[path])
