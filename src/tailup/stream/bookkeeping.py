"""A stream's state in Redis: each write checked against the state machine and refused over an
abort from outside; stalls, aborts and failures, and how the stream ends."""

from __future__ import annotations

from tailup.errors import AbortedElsewhere, CheckpointUnavailable, RetryableError
from tailup.model import EndCause, StreamState, check_transition
from tailup.stream.context import Collaborator, Outcome, StreamContext
from tailup.stream.sending import PartSender

# States this daemon may write over. Not ABORTED: `tailup abort` may have set it behind our back.
_WRITABLE_FROM = frozenset(StreamState) - {StreamState.ABORTED}


class Bookkeeper(Collaborator):
    def __init__(self, ctx: StreamContext, sender: PartSender) -> None:
        super().__init__(ctx)
        self._sender = sender

    async def set_state(self, state: StreamState, **fields: object) -> None:
        check_transition(self.record.state, state)
        refused = await self.deps.checkpoints.set_state(
            self.stream_id, state, allowed_from=_WRITABLE_FROM, **fields
        )
        if refused is not None:
            raise AbortedElsewhere(f"the stream is {refused.value} in Redis")
        self.record = self.record.with_changes(state=state, **fields)

    async def stall(self, exc: RetryableError, delay_s: float) -> None:
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

    async def abort(self, reason: str, cause: EndCause) -> None:
        """The file is gone or replaced: its upload can never be completed. A shared folder's
        stream proves first that it still holds the recording: a node cut off from Redis past
        its lease must not abort (nor sweep) the upload of the node that took it over."""
        await self.confirm_claim()
        if self.record.upload_id:
            await self._sender.abort_quietly(self.record.upload_id)
        await self._sender.sweep_orphans()
        self._log.warning("stream aborted", reason=reason)
        first = self.parts.get(1)
        await self._record_end(
            StreamState.ABORTED,
            reason,
            end_cause=cause,
            upload_id="",
            # What identifies the recording if its file comes back (tailup.identity).
            head_size=first.size if first else 0,
            head_crc32=first.crc32 if first else 0,
        )

    async def confirm_claim(self) -> None:
        """One guarded write: ClaimLost if another node holds the stream's claim now (and with
        it the upload), a RetryableError if Redis cannot tell. Only shared folders have claims."""
        if self.record.scope.startswith("share:"):
            await self.deps.checkpoints.update(self.stream_id)

    async def fail(self, reason: str) -> None:
        """A permanent error: the upload and its parts are kept (hours of parts must not be lost
        to an IAM policy still propagating or an expired token); the stream is tried again on a
        long back-off, at the next start, or at once by `tailup retry`."""
        self._log.error("stream failed; it will be retried", reason=reason)
        await self._record_end(StreamState.FAILED, reason)

    async def _record_end(self, state: StreamState, reason: str, **fields: object) -> None:
        try:
            await self.set_state(state, error=reason, **fields)
        except AbortedElsewhere:
            self._log.warning("stream was aborted from outside meanwhile", state=state.value)
        except (CheckpointUnavailable, ValueError) as exc:
            self._log.error("could not record the stream's end", state=state.value, reason=str(exc))

    async def aborted_elsewhere(self, reason: str) -> Outcome:
        # The record says ABORTED already; only the upload this daemon may have made is left.
        self._log.warning("stream aborted from outside", reason=reason)
        if self.record.upload_id:
            await self._sender.abort_quietly(self.record.upload_id)
        await self._sender.sweep_orphans()
        return Outcome.ABORTED
