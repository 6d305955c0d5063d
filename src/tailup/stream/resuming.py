"""Resuming a stream found live at start (reconciled with the file and S3 before anything
else), and starting its multipart upload over when the old one cannot be used."""

from __future__ import annotations

from tailup.errors import NoSuchUpload, PartReplaceRefused, SourceGone
from tailup.keyclaim import claim_key
from tailup.model import StreamState
from tailup.reconcile import plan_resume
from tailup.resume import ResumeDecision, Verdict
from tailup.rules.refusals import RefusalAction, after_part_refused
from tailup.stream.bookkeeping import Bookkeeper
from tailup.stream.context import Collaborator, Outcome, StreamContext, _Replaced
from tailup.stream.sending import PartSender


class Resumer(Collaborator):
    def __init__(self, ctx: StreamContext, sender: PartSender, book: Bookkeeper) -> None:
        super().__init__(ctx)
        self._sender = sender
        self._book = book

    async def resume(self) -> None:
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
            await self._sender.abort_quietly(upload_id)
        if decision.verdict is Verdict.GONE:
            raise SourceGone(decision.reason)
        if decision.verdict is Verdict.REPLACED:
            raise _Replaced(decision.reason)
        if decision.verdict is Verdict.RESTART_UPLOAD:
            await self.restart_upload(decision.reason)
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

    async def upload_vanished(self, exc: NoSuchUpload) -> Outcome | None:
        """The multipart upload is gone: aborted by an operator (stop), or expired (start over).
        A RetryableError (Redis could not say which) is the caller's to retry
        (Stream._upload_vanished)."""
        loaded = await self.deps.checkpoints.load(self.stream_id)
        if loaded is not None and loaded[0].state is StreamState.ABORTED:
            return await self._book.aborted_elsewhere(loaded[0].error)
        await self.restart_upload(f"the multipart upload vanished: {exc}")
        return None

    async def claim_pending_key(self) -> None:
        """A new recording's key, claimed by its stream (tailup.keyclaim): a PermanentError
        here fails the stream (visible, retried) rather than the event that made it."""
        key = await claim_key(
            self.deps.checkpoints,
            self.deps.store,
            self.record.key,
            self.stream_id,
            check=True,
            exact=self.deps.exact_keys,
        )
        await self.deps.checkpoints.update(self.stream_id, key=key, key_pending=False)
        self.record = self.record.with_changes(key=key, key_pending=False)

    async def rekey(self, reason: str) -> None:
        """Completion found the key holding another recording (a key taken behind tailup's
        back): a multipart upload cannot change its key, so the stream starts again under the
        first free one (tailup.keyclaim); the other object is left as it is."""
        key = await claim_key(
            self.deps.checkpoints,
            self.deps.store,
            self.record.key,
            self.stream_id,
            check=True,
            taken=(self.record.key,),
            exact=self.deps.exact_keys,
        )
        self._log.warning(
            "key taken by another recording; uploading under a free key",
            reason=reason,
            old_key=self.record.key,
            key=key,
        )
        if self.record.upload_id:
            await self._sender.abort_quietly(self.record.upload_id)
        await self.deps.checkpoints.drop_parts(self.stream_id, list(self.parts))
        await self.deps.checkpoints.update(self.stream_id, upload_id="", key=key)
        self.parts.clear()
        self.record = self.record.with_changes(upload_id="", key=key)
        self._ctx.wake.set()

    async def part_refused(self, exc: PartReplaceRefused) -> str | None:
        """S3 refused a part (tailup.rules.refusals decides what follows): a new upload is
        started and None returned, or the reason the stream fails is."""
        decision = after_part_refused(
            part_number=exc.part_number,
            replacing=self._sender.may_hold(exc.part_number),
            new_uploads=self._ctx.new_uploads_after_refusal,
            refusal=str(exc),
        )
        self._log.warning(
            "S3 refused a part", part=exc.part_number, then=decision.action.value, reason=str(exc)
        )
        if decision.action is RefusalAction.FAIL:
            return decision.reason
        # Said in the record, so that `tailup status` shows why the recording is sent again.
        await self.deps.checkpoints.update(self.stream_id, note=decision.reason)
        self.record = self.record.with_changes(note=decision.reason)
        await self.restart_adopted(decision.reason)
        self._ctx.new_uploads_after_refusal += 1  # once started: a Redis fault is retried
        return None

    async def restart_adopted(self, reason: str) -> None:
        """The upload cannot be completed with what the stream sends (adopted from S3 with
        another checksum, or refusing a part): abort it and send the recording again in a new
        one."""
        if self.record.upload_id:
            await self._sender.abort_quietly(self.record.upload_id)
        await self.restart_upload(reason)
        self._ctx.wake.set()

    async def restart_upload(self, reason: str) -> None:
        self._log.warning("starting the multipart upload again from part 1", reason=reason)
        await self.deps.checkpoints.drop_parts(self.stream_id, list(self.parts))
        await self.deps.checkpoints.update(self.stream_id, upload_id="")
        self.parts.clear()
        self.record = self.record.with_changes(upload_id="")
        self._ctx.wake.set()
