"""Finalizing a stream: every part of the final layout re-read and checked (sent again if its
bytes changed since it was sent), the upload completed with its whole-object CRC (which S3 checks
against the parts it holds) and the object checked against what was sent; then metadata.json, the
completed record and the after-upload action.

The re-check reads every byte once, on as many threads as there are cores, through small buffers;
only a changed part is read whole and sent again. The whole-file SHA-256 is finished in the same
pass when what the digest lacks is the tail; when a part it hashed changed (an MP4 header patched
at close) it follows once the object is published (tailup.hashplan)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time

from tailup import metrics
from tailup.body import PART_BUFFERS, PartBody
from tailup.checksums import (
    ChecksumType,
    effective_type,
    part_checksum,
)
from tailup.digest import FinalizeHasher
from tailup.errors import (
    KeyTaken,
    NoSuchUpload,
    PlanExceeded,
    RetryableError,
    StoragePermanentError,
    StorageUnavailable,
    VerificationError,
)
from tailup.hashplan import PartView, Sha256Setting, Sha256When, sha256_plan
from tailup.integrity import (
    PartAction,
    completion_parts,
    expected_multipart_etag,
    part_action,
    parts_past_end,
    put_reply_proves,
)
from tailup.metadata import content_type_for
from tailup.model import PartRecord, StreamState, iso, utc_now
from tailup.offload import run_blocking
from tailup.plan import PartRange
from tailup.source import FileStat, crc32_of_range_blocking
from tailup.stream.bookkeeping import Bookkeeper
from tailup.stream.context import Collaborator, Landed, Outcome, StreamContext, _first_error
from tailup.stream.objectcheck import ObjectCheck
from tailup.stream.publish import Publisher, Sent, whole_object_checksum
from tailup.stream.sending import PartSender


class FileChangedWhileFinalizing(RetryableError):
    pass


# Parts re-checked at once: reading from the page cache and CRC32 release the GIL, so each core
# reads its own part.
RECHECK_THREADS = os.cpu_count() or 2


def _sha256_hex(data: PartBody) -> str:
    return hashlib.sha256(data).hexdigest()


class Finalizer(Collaborator):
    def __init__(self, ctx: StreamContext, sender: PartSender, book: Bookkeeper) -> None:
        super().__init__(ctx)
        self._sender = sender
        self._book = book
        self._check = ObjectCheck(ctx)
        self._publisher = Publisher(ctx, sender, book)

    async def finalize(self, *, close_seen: bool) -> Outcome:
        """``close_seen``: the writer closed the file (rather than an idle timeout): with no
        writer left, the after-upload action may run."""
        started = self.deps.clock()
        st = await self._stat()
        await self._book.set_state(StreamState.FINALIZING)
        if st.size == 0:
            return await self._skip_empty(st)
        try:
            layout = self.plan.final_layout(st.size)
        except ValueError as exc:
            raise PlanExceeded(f"{self.path} {self.plan.exceeded_reason(st.size)}") from exc
        if len(layout) == 1 and not self.record.upload_id:
            expected_etag, sent_parts, sha256_hex = await self._put_single(layout[0])
            kind: ChecksumType | None = ChecksumType.FULL_OBJECT  # a PutObject's is
            when = Sha256When.INLINE if sha256_hex else Sha256When.OFF
        else:
            expected_etag, sent_parts, sha256_hex, when = await self._complete_multipart(layout)
            kind = effective_type(self.record.checksum, self.record.checksum_type)
        check, etag, verified_by = await self._check.verify(st.size, expected_etag, sent_parts)
        if not check.ok:
            raise VerificationError(
                f"the object s3://{self.record.bucket}/{self.record.key} does not match what was "
                f"sent: {'; '.join(check.problems)}"
            )
        return await self._publisher.publish(
            st,
            Sent(etag, sent_parts, sha256_hex, kind, when, verified_by),
            started=started,
            close_seen=close_seen,
        )

    async def _skip_empty(self, st: FileStat) -> Outcome:
        uploads_ended = await self._sender.end_uploads()
        reason = "the file was closed empty (0 bytes): nothing to upload"
        await self._book.set_state(
            StreamState.SKIPPED,
            error=reason,
            upload_id="",
            final_size=0,
            final_mtime_ns=st.mtime_ns,
        )
        self._log.info("stream skipped", reason=reason)
        await self._book.give_key_back(StreamState.SKIPPED, uploads_ended=uploads_ended)
        return Outcome.SKIPPED

    async def _put_single(self, rng: PartRange) -> tuple[str, list[PartRecord], str]:
        """The object in one PutObject. The expected ETag returned is the body's own MD5: the
        check (ObjectCheck.verify) compares S3's object with the bytes read, not with S3's reply."""
        self._check.proven_etag = ""
        async with self.deps.budget.hold(rng.size):
            loaded = await self._sender.load(rng)
            if len(loaded.body) != rng.size:
                raise FileChangedWhileFinalizing(f"{self.path} shrank while being finalized")
            sha256_hex, body_etag = await asyncio.to_thread(
                _sha256_and_md5_etag, loaded.body, self.deps.sha256 is Sha256Setting.AUTO
            )
            # The object there may be this very body: a PUT whose reply was lost, or a crash
            # before its completion was recorded.
            await self._check.key_is_ours(body_etag)
            await self._check.claim()
            started = time.monotonic()
            self._ctx.object_sent = True
            try:
                etag = await self.deps.store.put_object(
                    self.record.key,
                    loaded.body,
                    loaded.crc,
                    content_type_for(self.path.name),
                    if_none_match=self._check.if_none_match(),
                    checksum=part_checksum(self.record.checksum, loaded.crc, loaded.stored),
                    options=self.deps.object_options,
                )
            except KeyTaken:
                etag = body_etag
                sent = PartRecord(1, rng.size, loaded.crc, etag, checksum=loaded.stored)
                if not await self._check.already_ours(etag, rng.size, [sent]):
                    raise
            else:
                if put_reply_proves(body_etag, etag):
                    self._check.proven_etag = body_etag  # S3's own answer, not what we expected
            self._check.returned_etag = etag
            self._ctx.landed = Landed(self.record.key, etag)
            metrics.part_uploaded(rng.size, time.monotonic() - started)
            crc, stored = loaded.crc, loaded.stored
            del loaded  # before the budget is given back (see _send_part)
        self._log.debug("uploaded in one request", size=rng.size)  # "stream completed" follows
        part = PartRecord(1, rng.size, crc, etag, iso(utc_now()), stored)
        return body_etag, [part], sha256_hex

    async def _complete_multipart(
        self, layout: list[PartRange]
    ) -> tuple[str, list[PartRecord], str, Sha256When]:
        await self._sender.ensure_upload()
        resent, sha256_hex, when = await self._verify_pass(layout)
        dropped = parts_past_end(self.parts, layout)
        if dropped:
            await self.deps.checkpoints.drop_parts(self.stream_id, dropped)
            for number in dropped:
                self.parts.pop(number, None)
        final_parts = completion_parts(layout, self.parts)
        expected_etag = expected_multipart_etag([p.etag for p in final_parts])
        await self._check.key_is_ours(expected_etag)
        await self._check.claim()
        algorithm = self.record.checksum
        kind = effective_type(algorithm, self.record.checksum_type)
        self._ctx.object_sent = True
        try:
            self._check.returned_etag = await self.deps.store.complete_upload(
                self.record.key,
                self.record.upload_id,
                [(p.number, p.etag, p.crc32) for p in final_parts],
                if_none_match=self._check.if_none_match(),
                checksums=[part_checksum(algorithm, p.crc32, p.checksum) for p in final_parts],
                object_checksum=(
                    whole_object_checksum(self.record, kind, final_parts)
                    if kind is ChecksumType.FULL_OBJECT
                    else None
                ),
            )
        except (StoragePermanentError, StorageUnavailable) as exc:
            self._adopted_refused(exc, completing=True)
            if not isinstance(exc, (NoSuchUpload, KeyTaken)):
                raise
            # A previous attempt may have completed it (a crash, a lost reply): the object
            # decides. Otherwise the key holds another recording (KeyTaken: the stream moves
            # to a free key) or the upload is gone (NoSuchUpload: sent again).
            if not await self._check.already_ours(expected_etag, layout[-1].end, final_parts):
                raise
            self._check.returned_etag = expected_etag  # read back by _already_ours
        self._ctx.landed = Landed(self.record.key, self._check.returned_etag)
        self._log.info(
            "multipart upload completed",
            parts=len(final_parts),
            resent=resent,
            dropped=dropped,
            sha256=when.value,
        )
        return expected_etag, final_parts, sha256_hex, when

    async def _verify_pass(self, layout: list[PartRange]) -> tuple[list[int], str, Sha256When]:
        """Re-check every part of the final layout against the file, and send the parts whose
        bytes are new or changed, from the buffer just read. Returns the part numbers sent, the
        SHA-256 ("" unless it was finished here) and when the SHA-256 is made."""
        unchanged = await self._recheck(layout)
        digest = self._digest
        views = [
            PartView(rng.size, ok, self._hashed_as_sent(rng))
            for rng, ok in zip(layout, unchanged, strict=True)
        ]
        plan = sha256_plan(self.deps.sha256, digest.parts, views)
        when, inline = plan.when, plan.when is Sha256When.INLINE
        # Inline, every part from the first the digest lacks goes through it, in order
        # (unchanged ones too).
        load = [
            rng
            for rng, ok in zip(layout, unchanged, strict=True)
            if not ok or (inline and rng.number >= plan.feed_from)
        ]
        resent: list[int] = []

        def read_part(number: int) -> PartBody:
            return self._sender.read_blocking(layout[number - 1])

        sha256_hex = ""
        try:
            with FinalizeHasher(
                digest, read_part, read_timeout_s=self.deps.stat_timeout_s
            ) as hasher:
                async with asyncio.TaskGroup() as group:
                    for rng in load:
                        if await self._start_check(group, hasher if inline else None, rng):
                            resent.append(rng.number)
                if inline:
                    sha256_hex = await hasher.finish(len(layout))
        except BaseExceptionGroup as group_error:
            raise _first_error(group_error) from None
        return resent, sha256_hex, when

    def _hashed_as_sent(self, rng: PartRange) -> bool:
        recorded = self.parts.get(rng.number)
        return recorded is not None and self._digest.covers(rng.number, rng.size, recorded.crc32)

    async def _recheck(self, layout: list[PartRange]) -> list[bool]:
        """For every part: True if its bytes in the file are still those sent. RECHECK_THREADS
        parts are read at once."""
        gate = asyncio.Semaphore(RECHECK_THREADS)

        async def one(rng: PartRange) -> bool:
            async with gate:
                return await self._unchanged_since_sent(rng)

        try:
            async with asyncio.TaskGroup() as group:
                checks = [group.create_task(one(rng)) for rng in layout]
        except BaseExceptionGroup as group_error:
            raise _first_error(group_error) from None
        return [check.result() for check in checks]

    async def _unchanged_since_sent(self, rng: PartRange) -> bool:
        """True if the part's bytes are still those sent: checked through a small buffer, with
        no part-sized one and no budget. The common case (every part of an append-only
        recording) reads each byte once here and keeps nothing; a changed part is read again by
        _start_check, in full, to be sent."""
        recorded = self.parts.get(rng.number)
        if recorded is None or recorded.size != rng.size:
            return False
        if self.record.checksum.stored and not recorded.checksum:
            return False
        got, crc = await run_blocking(
            crc32_of_range_blocking,
            self.path,
            rng.start,
            rng.size,
            self.record.device,
            self.record.inode,
            timeout_s=self.deps.stat_timeout_s,
            what=f"re-reading part {rng.number} of {self.path}",
        )
        return got == rng.size and crc == recorded.crc32

    async def _start_check(
        self, group: asyncio.TaskGroup, hasher: FinalizeHasher | None, rng: PartRange
    ) -> bool:
        """Read a part of the final layout and hand it to the digest (if one is being finished),
        and to an upload if its bytes are new or changed (True then)."""
        grant = await self._sender.take_slot(rng.size)
        try:
            loaded = await self._sender.load(rng)
            if len(loaded.body) != rng.size:
                raise FileChangedWhileFinalizing(f"{self.path} shrank while being finalized")
        except BaseException:
            await self._sender.give_slot(grant)
            raise
        hashed = hasher.submit(rng.number, loaded.body, loaded.crc) if hasher else None
        recorded = self.parts.get(rng.number)
        if part_action(recorded, rng, loaded.crc, self.record.checksum) is PartAction.UPLOAD:
            group.create_task(self._sender.send_part(rng, grant, loaded, hashed))
            return True
        group.create_task(self._release_after(hashed, grant, loaded.body))
        return False

    async def _release_after(
        self, hashed: asyncio.Future[None] | None, grant: int, body: PartBody
    ) -> None:
        try:
            if hashed is not None:
                await hashed
        finally:
            PART_BUFFERS.give(body)
            del body
            await self._sender.give_slot(grant)


def _sha256_and_md5_etag(data: PartBody, sha256: bool = True) -> tuple[str, str]:
    """The body's SHA-256 ("" unless ``sha256``) and its MD5 as S3 makes a single PUT's ETag, in
    one thread hop."""
    md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
    return _sha256_hex(data) if sha256 else "", f'"{md5}"'
