"""One stream: a file being uploaded while it grows, then finalized and verified.

The stream waits for a wake-up (a close, or its poll timer: it stats its file every
``growth_poll_s``, since per-write events cost far more than a stat, see tailup.watcher), looks at
the file, sends every part that is complete and not yet sent, and finalizes once the writer is
gone: it closed the file and ``close_grace_s`` passed with no change, or nothing changed for
``idle_timeout_s``. A change seen after the close means the writer came back: the close no longer
counts.

Finalizing re-reads every part of the final layout in order. A part whose bytes changed since it was
sent (muxers patch headers at close) is sent again; parts past a shrunk end are left out; the
whole-file SHA-256, kept up while the parts were read for upload, is completed in the same pass
(tailup.digest). Then CompleteMultipartUpload, and the object's size
and ETag are checked against what was sent before metadata.json is written and the stream is
recorded completed.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import structlog

from tailup import metrics
from tailup.body import PART_BUFFERS, PartBody
from tailup.budget import ByteBudget
from tailup.checkpoint import CheckpointStore
from tailup.config import AfterUploadKind
from tailup.digest import FileDigest, FinalizeHasher
from tailup.errors import (
    AbortedElsewhere,
    CheckpointUnavailable,
    NoSuchUpload,
    PermanentError,
    PlanExceeded,
    RetryableError,
    SourceGone,
    TailupError,
    VerificationError,
)
from tailup.integrity import (
    PartAction,
    check_completed_object,
    completion_parts,
    crc32_of,
    multipart_etag,
    part_action,
    parts_past_end,
)
from tailup.keys import metadata_key
from tailup.metadata import build_metadata, content_type_for, encode_metadata, probe_media
from tailup.model import (
    PartRecord,
    StreamRecord,
    StreamState,
    check_transition,
    iso,
    lowest_gap,
    utc_now,
)
from tailup.plan import PartPlan, PartRange
from tailup.reconcile import plan_resume
from tailup.resume import ResumeDecision, Verdict, orphan_uploads
from tailup.retry import Backoff
from tailup.s3 import MultipartStore
from tailup.source import FileStat, crc32_of_range_blocking, read_range_blocking, stat_file

log = structlog.get_logger(__name__)


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


# A file that changed after its upload completed has a writer that closes and comes back: wait at
# least this long after its closes, whatever close_grace says, rather than complete it each time.
REOPENED_CLOSE_GRACE_S = 2.0


class _Replaced(SourceGone):
    pass


class FileChangedWhileFinalizing(RetryableError):
    pass


# States this daemon may write over. Not ABORTED: `tailup abort` may have set it behind our back.
_WRITABLE_FROM = frozenset(StreamState) - {StreamState.ABORTED}


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
class _Loaded:
    """One part read from disk: the buffer it is sent from, and its CRC32."""

    body: PartBody
    crc: int


def _sha256_hex(data: PartBody) -> str:
    return hashlib.sha256(data).hexdigest()


class Stream:
    def __init__(
        self,
        deps: StreamDeps,
        record: StreamRecord,
        parts: dict[int, PartRecord],
        *,
        writer_closed: bool = False,
        resumed: bool = False,
    ) -> None:
        self.deps = deps
        self.record = record
        self.parts = dict(parts)
        self.plan = PartPlan(record.base_part_size)
        self._wake = asyncio.Event()
        self._wake.set()  # look at the file at once
        self._stop = asyncio.Event()
        now = deps.clock()
        self._closed_at: float | None = now if writer_closed else None
        self._seen_since_close = False
        self._last_change_at = now
        self._last_seen: FileStat | None = None
        self._gone_reason: str | None = None
        self._pending_path: Path | None = None
        # A stream found live at start is reconciled with the file and S3 before anything else.
        self._resuming = resumed
        # Set after Redis failed: the next attempt first waits for it to answer, rather than read
        # and send parts that could not be checkpointed.
        self._probe_checkpoints = False
        self._may_have_orphans = resumed  # see _sweep_orphans
        self._slots = asyncio.Semaphore(deps.part_concurrency)
        # SHA-256 of the parts read so far, in order (this process's reads only: after a restart
        # the finalize pass hashes what it does not cover).
        self._digest = FileDigest()
        self._started_monotonic = now
        self._log = log.bind(stream_id=record.stream_id, path=record.path)

    # -- signals from the supervisor (synchronous, cheap) --

    @property
    def path(self) -> Path:
        return Path(self.record.path)

    @property
    def stream_id(self) -> str:
        return self.record.stream_id

    @property
    def bytes_in_s3(self) -> int:
        return sum(part.size for part in self.parts.values())

    @property
    def last_seen_size(self) -> int | None:
        return self._last_seen.size if self._last_seen else None

    def on_modified(self) -> None:
        """Look at the file now rather than at the next poll (a change seen after a close still
        means the writer came back: _note_change decides that from the file itself)."""
        self._wake.set()

    def on_closed(self) -> None:
        self._closed_at = self.deps.clock()
        self._seen_since_close = False
        self._wake.set()

    def on_gone(self, reason: str) -> None:
        self._gone_reason = reason
        self._wake.set()

    def on_moved(self, new_path: Path) -> None:
        self._pending_path = new_path
        self.record = self.record.with_changes(path=str(new_path))
        self._log = log.bind(stream_id=self.stream_id, path=str(new_path))
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    # -- the loop --

    async def run(self) -> Outcome:
        # Everything logged inside this stream's task (library records too) names the stream.
        with structlog.contextvars.bound_contextvars(
            stream_id=self.stream_id, path=self.record.path
        ):
            try:
                outcome = await self._run()
            except Exception:
                metrics.stream_ended("crashed")
                raise
        metrics.stream_ended(outcome.value)
        return outcome

    async def _run(self) -> Outcome:
        backoff = self.deps.backoff()
        while True:
            if self._stop.is_set():
                return Outcome.STOPPED
            await self._wait()
            try:
                outcome = await self._attempt(backoff)
            except AbortedElsewhere as exc:
                outcome = await self._aborted_elsewhere(str(exc))
            if outcome is not None:
                return outcome

    async def _attempt(self, backoff: Backoff) -> Outcome | None:
        """One look at the file, and what its errors mean for the stream; None: keep going."""
        try:
            outcome = await self._step()
            if outcome is None and backoff.attempt:
                # Recovered. Only while still running: a terminal state is never written over.
                await self._set_state(StreamState.UPLOADING, error="")
                backoff.reset()
            return outcome
        except RetryableError as exc:
            await self._retry_later(exc, backoff)
            return None
        except _Replaced as exc:
            await self._abort(str(exc))
            return Outcome.REPLACED
        except SourceGone as exc:
            await self._abort(str(exc))
            return Outcome.ABORTED
        except NoSuchUpload as exc:
            return await self._upload_vanished(exc, backoff)
        except PermanentError as exc:
            metrics.upload_error(type(exc).__name__)
            await self._fail(str(exc))
            return Outcome.FAILED

    async def _retry_later(self, exc: RetryableError, backoff: Backoff) -> None:
        metrics.upload_error(type(exc).__name__)
        metrics.RETRIES.inc()
        if isinstance(exc, CheckpointUnavailable):
            self._probe_checkpoints = True
        delay = backoff.next_delay_s()
        await self._stall(exc, delay)
        await self._sleep_unless_stopped(delay)
        self._wake.set()

    def _deadline_s(self) -> float | None:
        now = self.deps.clock()
        deadlines = [self._last_change_at + self.deps.idle_timeout_s]
        if self._closed_at is not None:
            deadlines.append(self._closed_at + self._close_grace_s())
        return max(0.0, min(deadlines) - now)

    def _close_grace_s(self) -> float:
        if self.record.generation > 1:
            return max(self.deps.close_grace_s, REOPENED_CLOSE_GRACE_S)
        return self.deps.close_grace_s

    async def _wait(self) -> None:
        try:
            deadline = self._deadline_s()
            poll = self.deps.growth_poll_s
            async with asyncio.timeout(poll if deadline is None else min(deadline, poll)):
                await self._wake.wait()
        except TimeoutError:
            pass
        self._wake.clear()

    async def _sleep_unless_stopped(self, delay_s: float) -> None:
        try:
            async with asyncio.timeout(delay_s):
                await self._stop.wait()
        except TimeoutError:
            pass

    def _ready_to_finalize(self) -> bool:
        now = self.deps.clock()
        if now - self._last_change_at >= self.deps.idle_timeout_s:
            return True
        if self._closed_at is None:
            return False
        return now - max(self._closed_at, self._last_change_at) >= self._close_grace_s()

    async def _step(self) -> Outcome | None:
        if self._gone_reason:
            raise SourceGone(self._gone_reason)
        if self._probe_checkpoints:
            await self.deps.checkpoints.ping()
            self._probe_checkpoints = False
        if self._resuming:
            await self._resume()
            self._resuming = False
        st = await self._observe()
        if self._pending_path is not None:
            await self.deps.checkpoints.update(self.stream_id, path=str(self._pending_path))
            self._pending_path = None
        await self._send_ready_parts(st.size)
        if self._ready_to_finalize() and not self._stop.is_set():
            return await self._finalize()
        return None

    async def _observe(self) -> FileStat:
        """Stat the file and note when it last changed (for the idle and close timers)."""
        st = self._stat()
        last = self._last_seen
        if last is not None and st.size < last.size:
            await self._truncated(last.size, st.size)
        self._note_change(st)
        return st

    def _note_change(self, st: FileStat) -> None:
        changed = self._last_seen is None or (st.size, st.mtime_ns) != (
            self._last_seen.size,
            self._last_seen.mtime_ns,
        )
        if changed:
            self._last_change_at = self.deps.clock()
            self._last_seen = st
        if self._closed_at is not None:
            if changed and self._seen_since_close:
                self._closed_at = None  # written after the close: the writer came back
            self._seen_since_close = True

    async def _truncated(self, old_size: int, new_size: int) -> None:
        """The file got shorter (cut, or a recorder restarted in place with O_TRUNC). Parts past
        the new end no longer describe it: forget them, so they are sent again if it grows back.
        Parts still inside it are checked by the verify pass before completion."""
        beyond = sorted(
            n for n, p in self.parts.items() if self.plan.part_start(n) + p.size > new_size
        )
        note = f"the file shrank from {old_size} to {new_size} bytes while being uploaded"
        if beyond:
            note += f"; parts {beyond[0]}..{beyond[-1]} past the new end are sent again"
            await self.deps.checkpoints.drop_parts(self.stream_id, beyond)
            for number in beyond:
                self.parts.pop(number, None)
        await self.deps.checkpoints.update(self.stream_id, note=note)
        self.record = self.record.with_changes(note=note)
        self._log.warning("file truncated while uploading", note=note)

    # -- resuming --

    async def _resume(self) -> None:
        decision = await plan_resume(self.deps.store, self.record, self.parts, self.plan)
        self._log.info(
            "resume decided",
            verdict=decision.verdict.value,
            reason=decision.reason,
            adopted=[p.number for p in decision.adopt],
            forgotten=list(decision.forget),
            orphans_aborted=len(decision.orphans),
        )
        for upload_id in decision.orphans:
            await self._abort_quietly(upload_id)
        if decision.verdict is Verdict.GONE:
            raise SourceGone(decision.reason)
        if decision.verdict is Verdict.REPLACED:
            raise _Replaced(decision.reason)
        if decision.verdict is Verdict.RESTART_UPLOAD:
            await self._restart_upload(decision.reason)
            return
        await self._apply_reconciliation(decision)

    async def _apply_reconciliation(self, decision: ResumeDecision) -> None:
        # Each write is atomic and the in-memory parts follow only written ones, so a Redis fault
        # here leaves both consistent and the next attempt reconciles again.
        if decision.forget:
            await self.deps.checkpoints.drop_parts(self.stream_id, decision.forget)
            for number in decision.forget:
                self.parts.pop(number, None)
        for part in decision.adopt:
            await self.deps.checkpoints.commit_part(self.stream_id, part)
            self.parts[part.number] = part

    def _stat(self) -> FileStat:
        st = stat_file(self.path)
        if not st.same_file(self.record.device, self.record.inode):
            raise _Replaced(f"{self.path} was replaced by another file while being uploaded")
        return st

    # -- sending parts --

    async def _send_ready_parts(self, size_bytes: int) -> None:
        self._check_capacity(size_bytes)
        first = lowest_gap(frozenset(self.parts))
        if any(
            n not in self.parts
            for n in range(first, self.plan.full_parts_available(size_bytes) + 1)
        ):
            await self._ensure_upload()
            await self._send_parts(self._ready_ranges(first, size_bytes))

    def _check_capacity(self, size_bytes: int) -> None:
        if size_bytes > self.plan.capacity_bytes():
            raise PlanExceeded(
                f"{self.path} grew to {size_bytes} bytes, past what one S3 object can hold "
                f"({self.plan.capacity_bytes()} bytes with this part plan)"
            )

    def _ready_ranges(self, first: int, size_bytes: int) -> Iterator[PartRange]:
        """Full parts not sent yet, in order, from part ``first``. When they run out it looks at
        the file again: a writer faster than one upload (or a file dropped in whole) keeps every
        slot busy instead of waiting for a batch to drain before the next look."""
        number = first
        while True:
            available = self.plan.full_parts_available(size_bytes)
            for candidate in range(number, available + 1):
                if candidate not in self.parts:
                    yield self.plan.part_range(candidate)
            number = max(number, available + 1)
            st = self._stat()
            if self._last_seen is not None and st.size < self._last_seen.size:
                return  # it shrank: the next look (_observe) sorts the parts out
            self._note_change(st)
            grown = st.size
            if self.plan.full_parts_available(grown) <= available:
                return
            self._check_capacity(grown)
            size_bytes = grown

    async def _send_parts(self, ranges: Iterable[PartRange]) -> None:
        # Parts are read one after the other, in order (which keeps the whole-file digest going),
        # and uploaded up to part_concurrency at a time: reading from the page cache is far
        # faster than any upload.
        try:
            async with asyncio.TaskGroup() as group:
                for rng in ranges:
                    if self._stop.is_set() or not await self._start_upload(group, rng):
                        break
        except BaseExceptionGroup as group_error:
            raise _first_error(group_error) from None

    # The two _start_* methods take a slot, read a part and hand its buffer to a task. They are
    # methods of their own so that no loop frame keeps the buffer after its task gives the budget
    # back: the next part may wait long for budget, and 100 streams each holding one part past its
    # grant were 800 MiB over the budget (bench c).

    async def _start_upload(self, group: asyncio.TaskGroup, rng: PartRange) -> bool:
        """False if the file is now shorter than the part: the next look decides."""
        grant = await self._take_slot(rng.size)
        try:
            loaded = await self._load(rng, offer_to_digest=True)
        except BaseException:
            await self._give_slot(grant)
            raise
        if len(loaded.body) < rng.size:
            await self._give_slot(grant)
            return False
        group.create_task(self._send_part(rng, grant, loaded))
        return True

    async def _take_slot(self, size_bytes: int) -> int:
        # Slot (per-stream concurrency) first, then memory budget, both before reading.
        await self._slots.acquire()
        try:
            return await self.deps.budget.acquire(size_bytes)
        except BaseException:
            self._slots.release()
            raise

    async def _give_slot(self, grant: int) -> None:
        self._slots.release()
        await asyncio.shield(self.deps.budget.release(grant))

    async def _send_part(
        self,
        rng: PartRange,
        grant: int,
        loaded: _Loaded,
        hashed: asyncio.Future[None] | None = None,
    ) -> None:
        """Upload a part read by ``_load`` (and, at finalize, wait until the digest is done with
        its buffer), then give its slot and budget back."""
        try:
            await self._upload_part(rng.number, loaded.body, loaded.crc)
            if hashed is not None:
                await hashed
        except TailupError as exc:
            self._log.warning("part upload failed", part=rng.number, reason=str(exc))
            raise
        finally:
            # The buffer goes (back to the pool) before its budget does: what the budget admits
            # next never overlaps it.
            body = loaded.body
            del loaded
            PART_BUFFERS.give(body)
            del body
            await self._give_slot(grant)

    async def _upload_part(self, number: int, data: PartBody, crc: int) -> None:
        started = time.monotonic()
        etag = await self.deps.store.upload_part(
            self.record.key, self.record.upload_id, number, data, crc
        )
        seconds = time.monotonic() - started
        # What S3 acknowledged, before the checkpoint: lets crash tests see every part sent.
        self._log.debug("part sent", part=number, size=len(data), crc32=crc)
        part = PartRecord(number, len(data), crc, etag, iso(utc_now()))
        # Only a checkpointed part counts as sent: if this raises, the part is sent again later.
        await self.deps.checkpoints.commit_part(self.stream_id, part)
        if number in self.parts:
            metrics.PARTS_RESENT.inc()
        self.parts[number] = part
        metrics.part_uploaded(len(data), seconds)
        self._log.debug("part uploaded", part=number, size=len(data))

    async def _load(self, rng: PartRange, *, offer_to_digest: bool = False) -> _Loaded:
        """Read a part and compute its CRC32 (and maybe extend the digest), in one worker-thread
        call: zlib-ng and hashlib release the GIL."""
        return await asyncio.to_thread(self._load_blocking, rng, offer_to_digest)

    def _load_blocking(self, rng: PartRange, offer_to_digest: bool) -> _Loaded:
        body = self._read_blocking(rng)
        crc = crc32_of(body)
        if offer_to_digest and len(body) == rng.size:
            self._digest.offer(rng.number, body, crc)
        return _Loaded(body, crc)

    def _read_blocking(self, rng: PartRange) -> PartBody:
        return read_range_blocking(
            self.path, rng.start, rng.size, self.record.device, self.record.inode
        )

    async def _ensure_upload(self) -> None:
        if self.record.upload_id:
            return
        # A lost reply to this call leaves an upload nobody knows of: swept when the stream ends.
        self._may_have_orphans = True
        upload_id = await self.deps.store.create_upload(
            self.record.key, content_type_for(self.path.name)
        )
        try:
            await self.deps.checkpoints.update(self.stream_id, upload_id=upload_id)
        except BaseException:
            # The upload exists but nothing records it: abort it now rather than orphan it.
            await asyncio.shield(self._abort_quietly(upload_id))
            raise
        self.record = self.record.with_changes(upload_id=upload_id)
        self._log.info("multipart upload created", key=self.record.key)

    async def _sweep_orphans(self) -> None:
        """Abort the other uploads of the stream's own key when it ends: a CreateMultipartUpload
        whose reply was lost (the retry made another) or that a crash cut off from its checkpoint
        leaves one. Best effort, a few tries: `tailup gc` catches what this misses."""
        if not self._may_have_orphans:
            return
        for attempt in range(1, 4):
            try:
                uploads = await self.deps.store.list_uploads(self.record.key)
                for upload_id in orphan_uploads(self.record, uploads):
                    await self.deps.store.abort_upload(self.record.key, upload_id)
                    self._log.info("orphan upload aborted", upload_id=upload_id)
                return
            except RetryableError as exc:
                if attempt == 3:
                    self._log.warning("orphan sweep failed; `tailup gc` will", reason=str(exc))
                else:
                    await asyncio.sleep(0.5 * attempt)
            except TailupError as exc:
                self._log.warning("orphan sweep failed; `tailup gc` will", reason=str(exc))
                return

    async def _abort_quietly(self, upload_id: str) -> None:
        try:
            await self.deps.store.abort_upload(self.record.key, upload_id)
        except TailupError as exc:
            self._log.warning("abort failed; `tailup gc` will clean it up", reason=str(exc))

    # -- finalizing --

    async def _finalize(self) -> Outcome:
        started = self.deps.clock()
        st = self._stat()
        await self._set_state(StreamState.FINALIZING)
        if st.size == 0:
            return await self._skip_empty(st)
        try:
            layout = self.plan.final_layout(st.size)
        except ValueError as exc:
            raise PlanExceeded(str(exc)) from exc
        if len(layout) == 1 and not self.record.upload_id:
            expected_etag, sent_parts, sha256_hex = await self._put_single(layout[0])
        else:
            expected_etag, sent_parts, sha256_hex = await self._complete_multipart(layout)
        info = await self.deps.store.head_object(self.record.key)
        check = check_completed_object(
            expected_size=st.size,
            expected_etag=expected_etag,
            actual_size=info.size if info else -1,
            actual_etag=info.etag if info else "(missing)",
        )
        if not check.ok:
            raise VerificationError(
                f"the object s3://{self.record.bucket}/{self.record.key} does not match what was "
                f"sent: {'; '.join(check.problems)}"
            )
        after = self._stat()
        changed = (after.size, after.mtime_ns) != (st.size, st.mtime_ns)
        await self._write_metadata(st, sha256_hex, expected_etag, sent_parts, started)
        await self._record_completed(st, sha256_hex, expected_etag)
        await self._sweep_orphans()
        metrics.FINALIZE_SECONDS.observe(self.deps.clock() - started)
        if changed:
            self._log.info("file changed while finalizing; it will be uploaded again")
            return Outcome.CHANGED_AFTER_COMPLETE
        self._after_upload()
        return Outcome.COMPLETED

    async def _skip_empty(self, st: FileStat) -> Outcome:
        if self.record.upload_id:
            await self._abort_quietly(self.record.upload_id)
        reason = "the file was closed empty (0 bytes): nothing to upload"
        await self._set_state(
            StreamState.SKIPPED,
            error=reason,
            upload_id="",
            final_size=0,
            final_mtime_ns=st.mtime_ns,
        )
        self._log.info("stream skipped", reason=reason)
        return Outcome.SKIPPED

    async def _put_single(self, rng: PartRange) -> tuple[str, list[PartRecord], str]:
        async with self.deps.budget.hold(rng.size):
            loaded = await self._load(rng)
            if len(loaded.body) != rng.size:
                raise FileChangedWhileFinalizing(f"{self.path} shrank while being finalized")
            sha256_hex = await asyncio.to_thread(_sha256_hex, loaded.body)
            started = time.monotonic()
            etag = await self.deps.store.put_object(
                self.record.key, loaded.body, loaded.crc, content_type_for(self.path.name)
            )
            metrics.part_uploaded(rng.size, time.monotonic() - started)
            crc = loaded.crc
            del loaded  # before the budget is given back (see _send_part)
        self._log.info("uploaded in one request", size=rng.size)
        return etag, [PartRecord(1, rng.size, crc, etag, iso(utc_now()))], sha256_hex

    async def _complete_multipart(
        self, layout: list[PartRange]
    ) -> tuple[str, list[PartRecord], str]:
        await self._ensure_upload()
        resent, sha256_hex = await self._verify_pass(layout)
        dropped = parts_past_end(self.parts, layout)
        if dropped:
            await self.deps.checkpoints.drop_parts(self.stream_id, dropped)
            for number in dropped:
                self.parts.pop(number, None)
        final_parts = completion_parts(layout, self.parts)
        expected_etag = multipart_etag([p.etag for p in final_parts])
        try:
            await self.deps.store.complete_upload(
                self.record.key,
                self.record.upload_id,
                [(p.number, p.etag, p.crc32) for p in final_parts],
            )
        except NoSuchUpload:
            # A previous attempt may have completed it before a crash: the object decides.
            info = await self.deps.store.head_object(self.record.key)
            if info is None or info.etag.strip('"') != expected_etag.strip('"'):
                raise
        self._log.info(
            "multipart upload completed",
            parts=len(final_parts),
            resent=resent,
            dropped=dropped,
        )
        return expected_etag, final_parts, sha256_hex

    async def _verify_pass(self, layout: list[PartRange]) -> tuple[list[int], str]:
        """Re-read every part of the final layout in order, compare its CRC32, and send the
        parts whose bytes are new or changed, from the buffer just read. The whole-file SHA-256
        is completed alongside, in its own thread. Returns the part numbers sent and the
        SHA-256."""
        resent: list[int] = []

        def read_part(number: int) -> PartBody:
            return self._read_blocking(layout[number - 1])

        intact = True  # every part so far unchanged since it was sent and hashed
        try:
            with FinalizeHasher(self._digest, read_part) as hasher:
                async with asyncio.TaskGroup() as group:
                    for rng in layout:
                        if intact and await self._unchanged_since_sent(rng):
                            continue
                        intact = False
                        if await self._start_check(group, hasher, rng):
                            resent.append(rng.number)
                sha256_hex = await hasher.finish(len(layout))
        except BaseExceptionGroup as group_error:
            raise _first_error(group_error) from None
        return resent, sha256_hex

    async def _unchanged_since_sent(self, rng: PartRange) -> bool:
        """True if the part's bytes are still those sent, which the digest also hashed: checked
        through a small buffer, with no part-sized one and no budget. The common case (every part
        of an append-only recording) reads each byte once here and keeps nothing; a changed part
        is read again by _start_check, in full, to be sent."""
        recorded = self.parts.get(rng.number)
        if recorded is None or recorded.size != rng.size:
            return False
        if not self._digest.covers(rng.number, rng.size, recorded.crc32):
            return False
        got, crc = await asyncio.to_thread(
            crc32_of_range_blocking,
            self.path,
            rng.start,
            rng.size,
            self.record.device,
            self.record.inode,
        )
        return got == rng.size and crc == recorded.crc32

    async def _start_check(
        self, group: asyncio.TaskGroup, hasher: FinalizeHasher, rng: PartRange
    ) -> bool:
        """Read a part of the final layout and hand it to the digest, and to an upload if its
        bytes are new or changed (True then)."""
        grant = await self._take_slot(rng.size)
        try:
            loaded = await self._load(rng)
            if len(loaded.body) != rng.size:
                raise FileChangedWhileFinalizing(f"{self.path} shrank while being finalized")
        except BaseException:
            await self._give_slot(grant)
            raise
        hashed = hasher.submit(rng.number, loaded.body, loaded.crc)
        if part_action(self.parts.get(rng.number), rng, loaded.crc) is PartAction.UPLOAD:
            group.create_task(self._send_part(rng, grant, loaded, hashed))
            return True
        group.create_task(self._release_after(hashed, grant))
        return False

    async def _release_after(self, hashed: asyncio.Future[None], grant: int) -> None:
        try:
            await hashed
        finally:
            await self._give_slot(grant)

    async def _write_metadata(
        self,
        st: FileStat,
        sha256_hex: str,
        etag: str,
        parts: list[PartRecord],
        started: float,
    ) -> None:
        media = await asyncio.to_thread(probe_media, self.path)
        document = build_metadata(
            stream_id=self.stream_id,
            source_path=self.path,
            bucket=self.record.bucket,
            key=self.record.key,
            size_bytes=st.size,
            sha256_hex=sha256_hex,
            etag=etag,
            parts=parts,
            started_at=self.record.created_at,
            finished_at=iso(utc_now()),
            upload_duration_s=self.deps.clock() - self._started_monotonic,
            finalize_duration_s=self.deps.clock() - started,
            generation=self.record.generation,
            media=media,
        )
        body = encode_metadata(document)
        await self.deps.store.put_object(
            metadata_key(self.record.key), body, crc32_of(body), "application/json"
        )

    async def _record_completed(self, st: FileStat, sha256_hex: str, etag: str) -> None:
        await self._set_state(
            StreamState.COMPLETED,
            completed_at=iso(utc_now()),
            final_size=st.size,
            final_mtime_ns=st.mtime_ns,
            sha256=sha256_hex,
            etag=etag,
            error="",
        )
        self._log.info(
            "stream completed",
            key=self.record.key,
            size=st.size,
            sha256=sha256_hex,
            seconds=round(self.deps.clock() - self._started_monotonic, 3),
        )

    def _after_upload(self) -> None:
        kind, target = self.deps.after_upload
        try:
            if kind is AfterUploadKind.DELETE:
                os.unlink(self.path)
                self._log.info("source deleted after verified upload")
            elif kind is AfterUploadKind.MOVE and target is not None:
                # Keep the path below the watched folder: cam1/rec.mp4 and cam2/rec.mp4 differ.
                root = Path(self.record.watch_root)
                relative = self.path.relative_to(root) if self.path.is_relative_to(root) else None
                destination = target / (relative or self.path.name)
                if destination.exists():
                    raise FileExistsError(f"{destination} already exists; the source is kept")
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(self.path, destination)
                self._log.info("source moved after verified upload", to=str(destination))
        except OSError as exc:
            # The upload is complete and verified; failing to tidy up loses nothing.
            self._log.warning("after-upload action failed", reason=str(exc))

    async def _upload_vanished(self, exc: NoSuchUpload, backoff: Backoff) -> Outcome | None:
        """The multipart upload is gone: aborted by an operator (stop), or expired (start over)."""
        try:
            loaded = await self.deps.checkpoints.load(self.stream_id)
            if loaded is not None and loaded[0].state is StreamState.ABORTED:
                return await self._aborted_elsewhere(loaded[0].error)
            await self._restart_upload(f"the multipart upload vanished: {exc}")
        except RetryableError as again:
            await self._retry_later(again, backoff)
        return None

    async def _restart_upload(self, reason: str) -> None:
        self._log.warning("starting the multipart upload again from part 1", reason=reason)
        await self.deps.checkpoints.drop_parts(self.stream_id, list(self.parts))
        await self.deps.checkpoints.update(self.stream_id, upload_id="")
        self.parts.clear()
        self.record = self.record.with_changes(upload_id="")
        self._wake.set()

    async def _aborted_elsewhere(self, reason: str) -> Outcome:
        # The record says ABORTED already; only the upload this daemon may have made is left.
        self._log.warning("stream aborted from outside", reason=reason)
        if self.record.upload_id:
            await self._abort_quietly(self.record.upload_id)
        await self._sweep_orphans()
        return Outcome.ABORTED

    # -- state bookkeeping --

    async def _set_state(self, state: StreamState, **fields: object) -> None:
        check_transition(self.record.state, state)
        refused = await self.deps.checkpoints.set_state(
            self.stream_id, state, allowed_from=_WRITABLE_FROM, **fields
        )
        if refused is not None:
            raise AbortedElsewhere(f"the stream is {refused.value} in Redis")
        self.record = self.record.with_changes(state=state, **fields)

    async def _stall(self, exc: RetryableError, delay_s: float) -> None:
        self._log.warning("stream stalled, retrying", reason=str(exc), retry_in_s=round(delay_s, 2))
        if self.record.state is StreamState.STALLED and self.record.error == str(exc):
            return
        check_transition(self.record.state, StreamState.STALLED)
        # In memory first: when Redis itself is the fault this is all the daemon can report.
        previous = self.record.state
        self.record = self.record.with_changes(state=StreamState.STALLED, error=str(exc))
        try:
            refused = await self.deps.checkpoints.set_state(
                self.stream_id, StreamState.STALLED, allowed_from=_WRITABLE_FROM, error=str(exc)
            )
        except CheckpointUnavailable:
            return
        if refused is not None:
            self.record = self.record.with_changes(state=previous)
            raise AbortedElsewhere(f"the stream is {refused.value} in Redis")

    async def _abort(self, reason: str) -> None:
        if self.record.upload_id:
            await self._abort_quietly(self.record.upload_id)
        await self._sweep_orphans()
        self._log.warning("stream aborted", reason=reason)
        await self._record_end(StreamState.ABORTED, reason)

    async def _fail(self, reason: str) -> None:
        self._log.error("stream failed", reason=reason)
        if self.record.upload_id:
            await self._abort_quietly(self.record.upload_id)
        await self._sweep_orphans()
        await self._record_end(StreamState.FAILED, reason)

    async def _record_end(self, state: StreamState, reason: str) -> None:
        try:
            await self._set_state(state, error=reason)
        except AbortedElsewhere:
            self._log.warning("stream was aborted from outside meanwhile", state=state.value)
        except (CheckpointUnavailable, ValueError) as exc:
            self._log.error("could not record the stream's end", state=state.value, reason=str(exc))
