"""A stream's state in Redis: each write checked against the state machine and refused over an
abort from outside; stalls, aborts and failures, and how the stream ends."""

from __future__ import annotations

import json

from tailup import permissions
from tailup.errors import (
    AbortedElsewhere,
    AccessRefused,
    CheckpointUnavailable,
    RetryableError,
    StoragePermanentError,
    TailupError,
)
from tailup.integrity import normalize_etag
from tailup.keys import metadata_key
from tailup.model import EndCause, StreamState, check_transition
from tailup.rules.keyclaims import KeyAtEnd, gives_key_back
from tailup.stream.context import Collaborator, Landed, Outcome, StreamContext
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
        uploads_ended = await self._sender.end_uploads()
        self._log.warning("stream aborted", reason=reason)
        first = self.parts.get(1)
        recorded = await self._record_end(
            StreamState.ABORTED,
            reason,
            end_cause=cause,
            upload_id="",
            # What identifies the recording if its file comes back (tailup.identity).
            head_size=first.size if first else 0,
            head_crc32=first.crc32 if first else 0,
        )
        if recorded:
            await self.give_key_back(StreamState.ABORTED, uploads_ended=uploads_ended)

    async def give_key_back(self, ended_as: StreamState, *, uploads_ended: bool) -> None:
        """Release the key's claim of a stream that ended with nothing in S3 at its key
        (tailup.rules.keyclaims), once the end is in Redis: the next recording of the name gets
        the key, not NAME-2. Not atomic with the end (the claim lives in another hash slot): a
        crash or a Redis fault in between leaves the claim to expire with the record, and
        meanwhile costs the next recording of the name a suffixed key, as any held claim does;
        never an overwrite."""
        at_end = KeyAtEnd(uploads_ended=uploads_ended, object_sent=self._ctx.object_sent)
        if not gives_key_back(self.record, ended_as, at_end):
            return
        try:
            await self.deps.checkpoints.release_key(self.record.key, self.stream_id)
        except CheckpointUnavailable as exc:
            self._log.warning("key claim kept: Redis failed", key=self.record.key, reason=str(exc))
            return
        self._log.debug("key claim given back: nothing in S3 at it", key=self.record.key)

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

    async def _record_end(self, state: StreamState, reason: str, **fields: object) -> bool:
        """Write the end; True when Redis holds an end now (this one, or an abort from
        outside)."""
        try:
            await self.set_state(state, error=reason, **fields)
        except AbortedElsewhere:
            self._log.warning("stream was aborted from outside meanwhile", state=state.value)
        except (CheckpointUnavailable, ValueError) as exc:
            self._log.error("could not record the stream's end", state=state.value, reason=str(exc))
            return False
        return True

    async def aborted_elsewhere(self, reason: str) -> Outcome:
        # The record says ABORTED already; only the upload this daemon may have made is left.
        self._log.warning("stream aborted from outside", reason=reason)
        uploads_ended = await self._sender.end_uploads()
        await self._withdraw_landed()
        await self.give_key_back(StreamState.ABORTED, uploads_ended=uploads_ended)
        return Outcome.ABORTED

    async def _withdraw_landed(self) -> None:
        """An abort that raced this stream's PutObject (or its completion) finds the object in
        S3 although the record says ABORTED: no record owns it, so it is deleted with its
        metadata.json, if the key still holds the very object this stream put there (its ETag).
        Not a later generation's: its object replaced the earlier one, which is gone either
        way, and the record still names the key."""
        landed = self._ctx.landed
        if landed is None:
            return
        where = f"s3://{self.record.bucket}/{landed.key}"
        if self.record.generation > 1:
            self._log.warning("the object landed before the abort was seen; kept", key=landed.key)
            return
        try:
            info = await self.deps.store.head_object(landed.key)
            if info is None or normalize_etag(info.etag) != normalize_etag(landed.etag):
                return  # gone already, or another object now: not this stream's to delete
            await self._delete_own_metadata(landed)
            await self.deps.store.delete_object(landed.key)
        except AccessRefused as exc:
            permissions.refused(exc.action or "s3:DeleteObject", str(exc))
            self._log.warning("an object that landed after the abort stays", object=where)
            return
        except TailupError as exc:
            self._log.warning(
                "an object that landed after the abort stays", object=where, reason=str(exc)
            )
            return
        self._ctx.landed = None
        self._ctx.object_sent = False  # the key held this very object: nothing of ours now
        self._log.info("the object that landed after the abort was deleted", object=where)

    async def _delete_own_metadata(self, landed: Landed) -> None:
        key = metadata_key(landed.key)
        try:
            document = json.loads(await self.deps.store.get_object(key))
        except StoragePermanentError as exc:
            if exc.code in ("404", "NoSuchKey", "NotFound"):
                return
            raise
        except ValueError:
            return  # not a metadata.json tailup wrote: left alone
        checksums = document.get("checksums") if isinstance(document, dict) else None
        etag = checksums.get("multipart_etag") if isinstance(checksums, dict) else None
        if document.get("stream_id") == self.stream_id and etag == landed.etag.strip('"'):
            await self.deps.store.delete_object(key)
