"""One stream's loop: signals from the supervisor, a look at the file at each wake-up, and what
the errors of each attempt mean; the idle and close timers that decide when to finalize. The work
itself is done by the stream's collaborators (see tailup.stream)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import structlog

from tailup import metrics
from tailup.errors import (
    AbortedElsewhere,
    AdoptedUploadRefused,
    ClaimLost,
    KeyTaken,
    NoSuchUpload,
    PartReplaceRefused,
    PermanentError,
    RecordLost,
    RetryableError,
    SourceGone,
)
from tailup.model import EndCause, PartRecord, StreamRecord, StreamState
from tailup.plan import MAX_PART_SIZE_BYTES, MAX_PARTS, PartPlan
from tailup.retry import Backoff
from tailup.source import FileStat
from tailup.stream.bookkeeping import Bookkeeper
from tailup.stream.context import (
    Collaborator,
    Outcome,
    StreamContext,
    StreamDeps,
    _Replaced,
    log,
)
from tailup.stream.finalize import Finalizer
from tailup.stream.resuming import Resumer
from tailup.stream.retrying import Retrier
from tailup.stream.sending import PartSender
from tailup.stream.tails import TailWriter

# A file that changed after its upload completed has a writer that closes and comes back: wait at
# least this long after its closes, whatever close_grace says, rather than complete it each time.
REOPENED_CLOSE_GRACE_S = 2.0

# The longest a stream goes without a look at its file while nothing says a part is due (a close
# or any other signal wakes it at once). A look costs a stat on a worker thread (~70 us of CPU
# with its hand-offs) and a turn of the stream's loop: at every growth_poll_s (0.2 s) that was
# 40 looks per 8 MiB part of a 1 MiB/s recording, for one that finds it full.
MAX_LOOK_S = 2.0


def next_look_s(
    *,
    bytes_to_part_end: int,
    rate_bps: float | None,
    since_change_s: float,
    min_s: float,
    max_s: float = MAX_LOOK_S,
) -> float:
    """Seconds until the next look at a file growing at ``rate_bps`` (measured between the last
    two looks that saw it change, ``since_change_s`` ago), ``bytes_to_part_end`` short of its
    next full part: about when that part is due, between ``min_s`` and ``max_s``. Unknown rate:
    every ``min_s``. Past due without a change (the writer slowed or paused): every ``min_s``
    for up to ``max_s``, then every ``max_s``, as for a file that is not growing."""
    if rate_bps is None:
        return min_s
    if rate_bps <= 0:
        return max_s
    due_s = bytes_to_part_end / rate_bps - since_change_s
    if due_s <= 0:
        return min_s if since_change_s < max_s else max_s
    return min(max(due_s, min_s), max_s)


class Stream(Collaborator):
    def __init__(
        self,
        deps: StreamDeps,
        record: StreamRecord,
        parts: dict[int, PartRecord],
        *,
        writer_closed: bool = False,
        resumed: bool = False,
    ) -> None:
        now = deps.clock()
        # The plan it started with: its ranges never change (the cap of records from before the
        # memory budget capped parts: S3's 5 GiB).
        plan = PartPlan(
            record.base_part_size,
            record.part_sizing,
            record.max_part_size or MAX_PART_SIZE_BYTES,
        )
        ctx = StreamContext(deps, record, parts, plan, started=now)
        super().__init__(ctx)
        ctx.wake.set()  # look at the file at once
        self._closed_at: float | None = now if writer_closed else None
        self._seen_since_close = False
        self._last_change_at = now
        # Growth between the last two looks that saw a change, in bytes/s (None: not known yet):
        # paces the looks (next_look_s).
        self._rate_bps: float | None = None
        self._gone_reason: str | None = None
        self._pending_path: Path | None = None
        # A stream found live at start is reconciled with the file and S3 before anything else.
        self._resuming = resumed
        self._sender = PartSender(ctx, note_change=self._note_change, may_have_orphans=resumed)
        self._book = Bookkeeper(ctx, self._sender)
        self._finalizer = Finalizer(ctx, self._sender, self._book)
        self._resumer = Resumer(ctx, self._sender, self._book)
        self._retrier = Retrier(ctx, self._book)
        self._tails = TailWriter(ctx, self._sender)  # --rpo

    # -- signals from the supervisor (synchronous, cheap) --

    @property
    def bytes_in_s3(self) -> int:
        return sum(part.size for part in self.parts.values())

    @property
    def links(self) -> int:
        """The file's names (hard links) at the stream's last look."""
        return self._ctx.links

    @property
    def last_seen_size(self) -> int | None:
        return self._ctx.last_seen.size if self._ctx.last_seen else None

    @property
    def close_seen(self) -> bool:
        """Its writer's close was told and nothing was written since (also a close told while
        it finalized on idle, too late for that finalize's after-upload action)."""
        return self._closed_at is not None

    def on_modified(self) -> None:
        """Look now, not at the next poll (_note_change tells a writer back after a close)."""
        self._ctx.wake.set()

    def on_closed(self) -> None:
        self._closed_at = self.deps.clock()
        self._seen_since_close = False
        self._ctx.wake.set()

    def on_gone(self, reason: str) -> None:
        self._gone_reason = reason
        self._ctx.gone.set()
        self._ctx.wake.set()

    def on_moved(self, new_path: Path) -> None:
        self._pending_path = new_path
        self.record = self.record.with_changes(path=str(new_path))
        self._ctx.log = log.bind(stream_id=self.stream_id, path=str(new_path))
        self._ctx.wake.set()

    def stop(self) -> None:
        self._ctx.stop.set()
        self._ctx.wake.set()

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
            finally:
                await self._tails.halt()
        metrics.stream_ended(outcome.value)
        return outcome

    async def _run(self) -> Outcome:
        backoff = self.deps.backoff()
        while True:
            if self._ctx.stop.is_set():
                return Outcome.STOPPED
            await self._wait()
            try:
                outcome = await self._attempt(backoff)
            except AbortedElsewhere as exc:
                outcome = await self._book.aborted_elsewhere(str(exc))
            except RecordLost as exc:
                outcome = await self._restore_record(exc, backoff)
            except ClaimLost as exc:
                # Another node took the stream over (this one was presumed dead): it is theirs
                # now, in Redis and in S3. Nothing more is written.
                self._log.warning("another node took this stream over; leaving it", reason=str(exc))
                return Outcome.STOPPED
            if outcome is not None:
                return outcome

    async def _restore_record(self, exc: RecordLost, backoff: Backoff) -> Outcome | None:
        """Redis lost the record (FLUSHALL, a restart without persistence, an eviction): write
        it again, whole, from this daemon's copy, and go on. S3 stays the truth about parts: the
        next look reconciles with it like after a restart."""
        self.deps.on_redis_lost(str(exc))
        self._log.warning("Redis lost this stream's record: writing it again from memory")
        try:
            await self.deps.checkpoints.restore(self.record, self.parts)
        except RetryableError as again:
            await self._retrier.retry_later(again, backoff)
            return None
        self._resuming = True
        self._ctx.wake.set()
        return None

    async def _attempt(self, backoff: Backoff) -> Outcome | None:
        """One look at the file, and what its errors mean for the stream; None: keep going."""
        try:
            outcome = await self._step()
            recovering = self.record.state in (StreamState.STALLED, StreamState.FAILED)
            if outcome is None and (backoff.attempt or recovering):
                # Recovered. Only while still running: a terminal state is never written over.
                await self._book.set_state(StreamState.UPLOADING, error="")
                backoff.reset()
            return outcome
        except RecordLost:
            raise
        except RetryableError as exc:
            await self._retrier.retry_later(exc, backoff)
            return None
        except _Replaced as exc:
            return await self._retrier.end_gone(
                str(exc), EndCause.REPLACED, Outcome.REPLACED, backoff
            )
        except SourceGone as exc:
            # Told of a delete: gone now. Found gone by a stat or a read: the rename event may
            # be on its way (the same settle time as another file at the path).
            unsettled = None if self._gone_reason else self._ctx.unsettled(f"is gone ({exc})")
            if unsettled is not None:
                await self._retrier.retry_later(unsettled, backoff)
                return None
            return await self._retrier.end_gone(
                str(exc), EndCause.SOURCE_GONE, Outcome.ABORTED, backoff
            )
        except NoSuchUpload as exc:
            return await self._retrier.or_retry(self._resumer.upload_vanished(exc), backoff)
        except AdoptedUploadRefused as exc:
            await self._resumer.restart_adopted(str(exc))
            return None
        except PartReplaceRefused as exc:
            # A new upload, or a failure (tailup.rules.refusals).
            why = await self._retrier.or_retry(self._resumer.part_refused(exc), backoff)
            if why is not None:
                await self._fail(type(exc).__name__, why)
            return None
        except KeyTaken as exc:
            await self._resumer.rekey(str(exc))
            return None
        except PermanentError as exc:
            await self._fail(type(exc).__name__, str(exc))
            return None

    async def _fail(self, kind: str, reason: str) -> None:
        """Failed: visible in status, tried again after a long back-off or `tailup retry`."""
        metrics.upload_error(kind)
        await self._book.fail(reason)
        if await self._retrier.wait_after_failure():
            self._resuming = True  # S3 is the truth about which parts arrived
            self._ctx.wake.set()

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
            poll = self._next_look_s()
            async with asyncio.timeout(poll if deadline is None else min(deadline, poll)):
                await self._ctx.wake.wait()
        except TimeoutError:
            pass
        self._ctx.wake.clear()

    def _next_look_s(self) -> float:
        last = self._ctx.last_seen
        due = self.plan.full_parts_available(last.size) + 1 if last is not None else 0
        if last is None or due > MAX_PARTS:
            return self.deps.growth_poll_s
        return next_look_s(
            bytes_to_part_end=self.plan.part_range(due).end - last.size,
            rate_bps=self._rate_bps,
            since_change_s=self.deps.clock() - self._last_change_at,
            min_s=self.deps.growth_poll_s,
        )

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
        await self._retrier.probe_checkpoints()
        if self.record.key_pending:
            await self._resumer.claim_pending_key()
        if self._resuming:
            await self._resumer.resume()
            self._resuming = False
        st = await self._observe()
        if self._pending_path is not None:
            await self.deps.checkpoints.update(self.stream_id, path=str(self._pending_path))
            self._pending_path = None
        await self._tails.on_look(st.size)
        await self._sender.send_ready_parts(st.size)
        if self._ready_to_finalize() and not self._ctx.stop.is_set():
            upload = await self._tails.before_finalize()
            outcome = await self._finalizer.finalize(close_seen=self._closed_at is not None)
            await self._tails.after_finalize(upload, outcome)
            return outcome
        return None

    async def _observe(self) -> FileStat:
        """Stat the file and note when it last changed (for the idle and close timers)."""
        st = await self._stat()
        last = self._ctx.last_seen
        if last is not None and st.size < last.size:
            await self._truncated(last.size, st.size)
        self._note_change(st)
        return st

    def _note_change(self, st: FileStat) -> None:
        changed = self._ctx.last_seen is None or (st.size, st.mtime_ns) != (
            self._ctx.last_seen.size,
            self._ctx.last_seen.mtime_ns,
        )
        if changed:
            now = self.deps.clock()
            last = self._ctx.last_seen
            if last is not None and st.size >= last.size and now > self._last_change_at:
                self._rate_bps = (st.size - last.size) / (now - self._last_change_at)
            else:
                self._rate_bps = None  # first look, or it shrank: no rate to go by
            self._last_change_at = now
            self._ctx.last_seen = st
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
