"""A stream's waits between attempts: the back-off after a retryable error (the stream STALLED
meanwhile), the long back-off of a FAILED stream that `tailup retry` cuts short, the Redis probe
owed after a checkpoint could not be written, and the end of a stream whose file went, tried
again while Redis cannot confirm it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TypeVar

from tailup import metrics
from tailup.errors import CheckpointUnavailable, RecordLost, RetryableError
from tailup.model import RETRY_FIELD, EndCause
from tailup.retry import Backoff
from tailup.stream.bookkeeping import Bookkeeper
from tailup.stream.context import Collaborator, Outcome, StreamContext

FAILED_RETRY_CAP_S = 1800.0

T = TypeVar("T")


class Retrier(Collaborator):
    def __init__(self, ctx: StreamContext, book: Bookkeeper) -> None:
        super().__init__(ctx)
        self._book = book
        # Set after Redis failed: the next attempt first waits for it to answer, rather than read
        # and send parts that could not be checkpointed.
        self._probe_checkpoints = False
        # The last `tailup retry` request acted on (or there before this stream started).
        self._retry_seen = ctx.record.extra.get(RETRY_FIELD, "")
        self._failed_backoff = Backoff(
            base_s=ctx.deps.failed_retry_s,
            cap_s=max(FAILED_RETRY_CAP_S, ctx.deps.failed_retry_s),
        )

    async def probe_checkpoints(self) -> None:
        """After a CheckpointUnavailable: a RetryableError until Redis answers again."""
        if self._probe_checkpoints:
            await self.deps.checkpoints.ping()
            self._probe_checkpoints = False

    async def retry_later(self, exc: RetryableError, backoff: Backoff) -> None:
        metrics.upload_error(type(exc).__name__)
        metrics.RETRIES.inc()
        if isinstance(exc, CheckpointUnavailable):
            self._probe_checkpoints = True
        delay = backoff.next_delay_s()
        await self._book.stall(exc, delay)
        # Told its file is gone, it ends now, not after the back-off: a new file at its name
        # waits for that end (tailup.supervisor.opening), which may give the key back.
        await self.sleep_unless_stopped(delay, or_gone=True)
        self._ctx.wake.set()

    async def or_retry(self, work: Awaitable[T], backoff: Backoff) -> T | None:
        """What the Resumer does after S3 refused something; None if Redis (or S3) failed
        meanwhile: backed off, and the refusal comes back at the next attempt."""
        try:
            return await work
        except RetryableError as again:
            await self.retry_later(again, backoff)
        return None

    async def end_gone(
        self, reason: str, cause: EndCause, outcome: Outcome, backoff: Backoff
    ) -> Outcome | None:
        """Abort for a file gone or replaced; when Redis cannot confirm the claim first, the
        upload is kept and the end tried again (the file stays gone)."""
        try:
            await self._book.abort(reason, cause)
        except RecordLost:
            raise  # written again whole (Stream._restore_record), then the end is tried again
        except RetryableError as exc:
            await self.retry_later(exc, backoff)
            return None
        return outcome

    async def wait_after_failure(self) -> bool:
        """Wait out the failed back-off (doubling from deps.failed_retry_s to 30 min), or until
        `tailup retry` asks (a field in the record, polled) or the daemon stops. True: try again
        (from the checkpoint, reconciled with S3 like after a restart); False: stopping."""
        delay = self._failed_backoff.next_delay_s()
        deadline = self.deps.clock() + delay
        self._log.info("failed stream waits before its next try", retry_in_s=round(delay, 1))
        while not self._ctx.stop.is_set() and self.deps.clock() < deadline:
            await self.sleep_unless_stopped(
                min(self.deps.retry_poll_s, deadline - self.deps.clock())
            )
            with contextlib.suppress(RetryableError):
                asked = await self.deps.checkpoints.get_field(self.stream_id, RETRY_FIELD) or ""
                if asked != self._retry_seen:
                    # Consumed: the next failure waits again rather than take it for a new ask.
                    self._retry_seen = asked
                    self._log.info("retry asked for", at=asked)
                    break
        return not self._ctx.stop.is_set()

    async def sleep_unless_stopped(self, delay_s: float, *, or_gone: bool = False) -> None:
        """Sleep ``delay_s``, less if the stream is stopped (or, ``or_gone``, told meanwhile
        that its file is gone: told before, an end that failed waits its back-off out)."""
        gone = or_gone and not self._ctx.gone.is_set()
        events = [self._ctx.stop, self._ctx.gone] if gone else [self._ctx.stop]
        waits = [asyncio.ensure_future(event.wait()) for event in events]
        try:
            await asyncio.wait(waits, timeout=delay_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
