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
from dataclasses import dataclass, field
from pathlib import Path

import structlog
from structlog.typing import FilteringBoundLogger

from tailup.body import Throttle
from tailup.budget import ByteBudget
from tailup.checkpoint import CheckpointStore
from tailup.config import AfterUploadKind
from tailup.digest import FileDigest
from tailup.errors import (
    AdoptedUploadRefused,
    PermanentError,
    RetryableError,
    SourceGone,
    TailupError,
    refused_for_checksum,
)
from tailup.hashplan import Sha256Setting
from tailup.model import PartRecord, StreamRecord
from tailup.objectoptions import ObjectOptions
from tailup.offload import run_blocking
from tailup.plan import PartPlan
from tailup.retry import Backoff
from tailup.s3 import MultipartStore
from tailup.source import FileStat, stat_file

# One logger for the whole package, named as when it was one module: logs and docs show it.
log = structlog.get_logger("tailup.stream")


class Outcome(enum.Enum):
    COMPLETED = "completed"
    # Completed on an idle timeout while a writer may still hold the file: the supervisor looks
    # at it again until the writer is gone (its later bytes make a new generation).
    COMPLETED_WRITER_OPEN = "completed_writer_open"
    CHANGED_AFTER_COMPLETE = "changed_after_complete"  # completed, but the file moved on since
    SKIPPED = "skipped"
    ABORTED = "aborted"
    REPLACED = "replaced"  # another file now has this path: start a new stream for it
    FAILED = "failed"
    STOPPED = "stopped"  # shutdown: resumable


class Once:
    """Something said once per daemon run, whichever stream comes to it first: every stream's
    deps share one (tailup.supervisor builds them once)."""

    def __init__(self) -> None:
        self._done = False

    def first(self) -> bool:
        """True the first time only."""
        done, self._done = self._done, True
        return not done


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
    # /proc shows every process (not in a PID namespace of its own): tailup.afterupload.
    proc_sees_all: bool = True
    # A template without {stream_id}: new keys are claimed (tailup.keyclaim) and a key taken at
    # completion gets the stream a free one.
    check_keys: bool = False
    # --hls: a claimed key is the rendered one or an error, never suffixed (tailup.keyclaim).
    exact_keys: bool = False
    # If-None-Match: * at the completion of a stream's first generation (not --key-conflict
    # overwrite).
    conditional_writes: bool = True
    failed_retry_s: float = 60.0  # first wait before a failed stream is tried again
    retry_poll_s: float = 2.0  # how often a failed stream looks for `tailup retry`
    stat_timeout_s: float = 30.0  # a stat or read that takes longer: the stream is stalled
    # Told when Redis is seen to have lost data (the supervisor then asks S3 about new files).
    on_redis_lost: Callable[[str], None] = field(default=lambda why: None)
    # The server's ETags are not MD5s of MD5s: said once (tailup.stream.finalize).
    etag_fallback: Once = field(default_factory=Once)
    # --bwlimit: the one limit every stream's part bodies are sent under; None = unlimited.
    bandwidth: Throttle | None = None
    sha256: Sha256Setting = Sha256Setting.AUTO
    # --rpo: stage a live recording's newest bytes in S3 within this many seconds (None: off;
    # tailup.stream.tails), with at most TAIL_REQUESTS of its requests at once, all streams.
    rpo_s: float | None = None
    tail_requests: asyncio.Semaphore = field(
        default_factory=lambda: asyncio.Semaphore(TAIL_REQUESTS)
    )
    # --storage-class, --sse, --tag: what new objects are created with (tailup.objectoptions).
    object_options: ObjectOptions = field(default_factory=ObjectOptions)


# --rpo's requests in flight, all streams: half the S3 client's spare connections
# (tailup.s3.SPARE_CONNECTIONS), so that a part never waits for a connection behind them.
TAIL_REQUESTS = 16


class _Replaced(SourceGone):
    pass


class PathUnsettled(RetryableError):
    """The path shows another file than the stream's: a rename or a delete whose event has not
    reached the stream yet. It settles within PATH_SETTLE_S, or the file counts as replaced."""


# How long the path may show another file before the stream concludes that its own is gone
# (inotify reports a rename or a delete within milliseconds; the poller within its interval).
PATH_SETTLE_S = 5.0


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


@dataclass(frozen=True, slots=True)
class Landed:
    key: str
    etag: str


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
        self.gone = asyncio.Event()  # told its file is gone (deleted, moved out, replaced)
        self.last_seen: FileStat | None = None  # the file at the last look that saw a change
        # SHA-256 of the parts read so far, in order (this process's reads only: after a restart
        # the finalize pass hashes what it does not cover).
        self.digest = FileDigest()
        self.started_monotonic = started
        # New uploads started because S3 refused a part (tailup.rules.refusals bounds them).
        self.new_uploads_after_refusal = 0
        self.log: FilteringBoundLogger = log.bind(stream_id=record.stream_id, path=record.path)
        self._unsettled_since: float | None = None
        # The file's names at the last stat: past 1, a hard link may carry the stream on if its
        # own name goes (tailup.rules.names).
        self.links = 1
        # The object this stream's PutObject or completion put at its key, with the ETag S3 gave
        # it, once S3 answered: what an abort that raced it takes back (Bookkeeper).
        self.landed: Landed | None = None
        # A PutObject or completion was sent for its key (answered or not) and its object not
        # taken back: one of this recording may be there, so its end keeps the key's claim
        # (tailup.rules.keyclaims).
        self.object_sent = False

    @property
    def path(self) -> Path:
        return Path(self.record.path)

    @property
    def stream_id(self) -> str:
        return self.record.stream_id

    async def stat(self) -> FileStat:
        """Stat the stream's file, off the loop and within deps.stat_timeout_s (a hung network
        mount stalls this stream, not the daemon)."""
        path = self.path
        st = await run_blocking(
            stat_file, path, timeout_s=self.deps.stat_timeout_s, what=f"stat of {path}"
        )
        record = self.record
        if st.same_file(record.device, record.inode, record.birth_ns):
            self._unsettled_since = None
            self.links = st.links
            return st
        unsettled = self.unsettled("shows another file")
        if unsettled is not None:
            raise unsettled
        raise _Replaced(f"{path} was replaced by another file while being uploaded")

    def unsettled(self, why: str) -> PathUnsettled | None:
        """The path does not show the stream's file (another one, or none: ENOENT). A rename or
        a delete whose event has not reached the stream yet looks the same (the poller reports
        it up to its interval later): a PathUnsettled to retry until PATH_SETTLE_S has passed
        since the path first looked so, then None (the caller concludes). A rename is not a
        delete."""
        now = self.deps.clock()
        if self._unsettled_since is None:
            self._unsettled_since = now
        if now - self._unsettled_since < PATH_SETTLE_S:
            return PathUnsettled(f"{self.path} {why}; waiting for its rename or delete")
        return None


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

    async def _stat(self) -> FileStat:
        return await self._ctx.stat()

    def _adopted_refused(self, exc: TailupError, *, completing: bool) -> None:
        """Raise AdoptedUploadRefused if ``exc`` is an upload adopted from S3 refusing the
        checksum this stream sends (its algorithm or type were a guess: tailup.recovery)."""
        record = self.record
        adopted = bool(record.adopted_upload) and record.upload_id == record.adopted_upload
        if adopted and refused_for_checksum(exc, completing=completing):
            what = "its Complete" if completing else "a part"
            raise AdoptedUploadRefused(
                f"the upload adopted from S3 refused {what} for its checksum: {exc}"
            ) from exc
