"""What one stream's collaborators share: its dependencies, its record and parts, its events.

A Stream (tailup.stream.core) is a loop over collaborators, one per concern: sending parts
(tailup.stream.sending), finalizing and verifying (tailup.stream.finalize), resuming
(tailup.stream.resuming) and writing its state (tailup.stream.bookkeeping). They all read and
replace the one StreamContext, so what one of them does (a new upload id, a part sent or
forgotten, the path after a move) the others see at once.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog
from structlog.typing import FilteringBoundLogger

from tailup.budget import ByteBudget
from tailup.checkpoint import CheckpointStore
from tailup.config import AfterUploadKind
from tailup.digest import FileDigest
from tailup.errors import PermanentError, SourceGone, TailupError
from tailup.model import PartRecord, StreamRecord
from tailup.plan import PartPlan
from tailup.retry import Backoff
from tailup.s3 import MultipartStore
from tailup.source import FileStat, stat_file

# One logger for the whole package, named as when it was one module: logs and docs show it.
log = structlog.get_logger("tailup.stream")


class Outcome(enum.Enum):
    COMPLETED = "completed"
    CHANGED_AFTER_COMPLETE = "changed_after_complete"  # completed, but the file moved on since
    SKIPPED = "skipped"
    ABORTED = "aborted"
    REPLACED = "replaced"  # another file now has this path: start a new stream for it
    FAILED = "failed"
    STOPPED = "stopped"  # shutdown: resumable


@dataclass(frozen=True)
class StreamDeps:
    store: MultipartStore
    checkpoints: CheckpointStore
    budget: ByteBudget
    close_grace_s: float
    idle_timeout_s: float
    part_concurrency: int = 4
    after_upload: tuple[AfterUploadKind, Path | None] = (AfterUploadKind.KEEP, None)
    clock: Callable[[], float] = time.monotonic
    backoff: Callable[[], Backoff] = Backoff  # per stream; tests shorten it
    growth_poll_s: float = 0.2


class _Replaced(SourceGone):
    pass


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error to act on from a TaskGroup failure: tailup's own first, then anything else."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    for kind in (PermanentError, TailupError):
        for exc in leaves:
            if isinstance(exc, kind):
                return exc
    return leaves[0]


class StreamContext:
    """One stream's shared state."""

    def __init__(
        self,
        deps: StreamDeps,
        record: StreamRecord,
        parts: dict[int, PartRecord],
        plan: PartPlan,
        *,
        started: float,
    ) -> None:
        self.deps = deps
        self.record = record
        self.parts = dict(parts)
        self.plan = plan
        self.wake = asyncio.Event()
        self.stop = asyncio.Event()
        self.last_seen: FileStat | None = None  # the file at the last look that saw a change
        # SHA-256 of the parts read so far, in order (this process's reads only: after a restart
        # the finalize pass hashes what it does not cover).
        self.digest = FileDigest()
        self.started_monotonic = started
        self.log: FilteringBoundLogger = log.bind(stream_id=record.stream_id, path=record.path)

    @property
    def path(self) -> Path:
        return Path(self.record.path)

    @property
    def stream_id(self) -> str:
        return self.record.stream_id

    def stat(self) -> FileStat:
        st = stat_file(self.path)
        if not st.same_file(self.record.device, self.record.inode):
            raise _Replaced(f"{self.path} was replaced by another file while being uploaded")
        return st


class Collaborator:
    """Base of a stream's collaborators: the shared state under the names the Stream's methods
    used when they were all one class, so each reads as it did."""

    def __init__(self, ctx: StreamContext) -> None:
        self._ctx = ctx

    @property
    def deps(self) -> StreamDeps:
        return self._ctx.deps

    @property
    def record(self) -> StreamRecord:
        return self._ctx.record

    @record.setter
    def record(self, record: StreamRecord) -> None:
        self._ctx.record = record

    @property
    def parts(self) -> dict[int, PartRecord]:
        return self._ctx.parts

    @property
    def plan(self) -> PartPlan:
        return self._ctx.plan

    @property
    def path(self) -> Path:
        return self._ctx.path

    @property
    def stream_id(self) -> str:
        return self._ctx.stream_id

    @property
    def _log(self) -> FilteringBoundLogger:
        return self._ctx.log

    @property
    def _digest(self) -> FileDigest:
        return self._ctx.digest

    def _stat(self) -> FileStat:
        return self._ctx.stat()
