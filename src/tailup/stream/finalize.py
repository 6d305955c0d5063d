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
from pathlib import Path
from typing import Any

from tailup import metrics, permissions
from tailup.afterupload import AfterUpload, run_after_upload
from tailup.body import PART_BUFFERS, PartBody
from tailup.checksums import (
    Checksum,
    ChecksumAlgorithm,
    ChecksumType,
    PartSum,
    effective_type,
    object_checksum,
    part_checksum,
)
from tailup.config import AfterUploadKind
from tailup.digest import FinalizeHasher
from tailup.errors import (
    AccessRefused,
    KeyTaken,
    NoSuchUpload,
    PlanExceeded,
    RetryableError,
    SourceGone,
    SourceStalled,
    StoragePermanentError,
    StorageUnavailable,
    TailupError,
    VerificationError,
)
from tailup.hashplan import PartView, Sha256Setting, Sha256When, sha256_plan
from tailup.integrity import (
    CompletionCheck,
    PartAction,
    VerifiedBy,
    check_object_against_parts,
    completion_parts,
    expected_multipart_etag,
    normalize_etag,
    part_action,
    parts_past_end,
    put_reply_proves,
)
from tailup.metadata import build_metadata, content_type_for, probe_media
from tailup.model import PartRecord, StreamState, iso, utc_now
from tailup.offload import run_blocking
from tailup.plan import PartRange
from tailup.s3 import ObjectInfo
from tailup.sameupload import UploadedFile, holds_upload
from tailup.source import FileStat, crc32_of_range_blocking, stat_file
from tailup.stream.bookkeeping import Bookkeeper
from tailup.stream.context import Collaborator, Outcome, StreamContext, _first_error
from tailup.stream.sending import PartSender
from tailup.stream.sha256after import Sha256Result, put_metadata, record_sha256, sha256_of_object


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
        self._returned_etag = ""  # what S3 answered to the PutObject or Complete
        self._metadata: dict[str, Any] = {}  # the metadata.json last written
        # The body MD5 of the last PutObject whose reply proved the object (put_reply_proves).
        self._proven_etag = ""

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
        check, etag, verified_by = await self._check_object(st.size, expected_etag, sent_parts)
        if not check.ok:
            raise VerificationError(
                f"the object s3://{self.record.bucket}/{self.record.key} does not match what was "
                f"sent: {'; '.join(check.problems)}"
            )
        after = await self._stat()
        changed = (after.size, after.mtime_ns) != (st.size, st.mtime_ns)
        whole = self._whole_object_checksum(kind, sent_parts)
        await self._write_metadata(st, sha256_hex, etag, sent_parts, started, verified_by, whole)
        await self._record_completed(
            st, sha256_hex, etag, sent_parts[0], whole, sha256_follows=when is Sha256When.AFTER
        )
        await self._sender.sweep_orphans()
        metrics.FINALIZE_SECONDS.observe(self.deps.clock() - started)
        if changed:
            self._log.info("file changed while finalizing; it will be uploaded again")
            return Outcome.CHANGED_AFTER_COMPLETE
        if when is Sha256When.AFTER:
            hashed = await self._sha256_after(sent_parts)
            if hashed is Sha256Result.CHANGED:
                return Outcome.CHANGED_AFTER_COMPLETE
            if hashed is Sha256Result.PENDING:
                # The after-upload action waits too: once the file is deleted or moved, its
                # SHA-256 cannot be finished. The next look does both (sha256_pending).
                return Outcome.COMPLETED_WRITER_OPEN
        uploaded = UploadedFile.of_stat(st, self.record.birth_ns)
        if not await self._still_holds(uploaded):
            self._log.info("the path holds another file since the upload; no after-upload action")
            return Outcome.CHANGED_AFTER_COMPLETE
        if not await self._after_upload(close_seen, uploaded):
            return Outcome.COMPLETED_WRITER_OPEN
        return Outcome.COMPLETED

    def _if_none_match(self) -> bool:
        """A first generation's object must not land on an object already there (another
        recording's); a later generation replaces its own earlier one."""
        return self.deps.conditional_writes and self.record.generation == 1

    async def _check_key_is_ours(self, *own_etags: str) -> None:
        """Before a later generation overwrites its key: the object there must be this
        recording's (its previous generation, or this one from an attempt whose reply was
        lost), never another's."""
        if not self.deps.conditional_writes or self.record.generation == 1:
            return
        try:
            info = await self.deps.store.head_object(self.record.key)
        except AccessRefused as exc:  # no s3:GetObject: this check is off
            permissions.refused("s3:GetObject", str(exc))
            return
        ours = {normalize_etag(e) for e in (self.record.etag, *own_etags) if e}
        if info is not None and normalize_etag(info.etag) not in ours:
            raise KeyTaken(
                f"s3://{self.record.bucket}/{self.record.key} holds an object that is not this "
                "recording's",
                code="PreconditionFailed",
            )

    async def _check_object(
        self,
        size: int,
        expected_etag: str,
        parts: list[PartRecord],
        *,
        trust_returned: bool = True,
    ) -> tuple[CompletionCheck, str, VerifiedBy]:
        """The object at the key against what was sent (tailup.integrity.verification_method):
        the check, the object's ETag as the server reports it, and how it was checked. Without
        s3:GetObject, the ETag S3 returned to the write is the check (``trust_returned``), else
        AccessRefused."""
        if trust_returned and expected_etag and expected_etag == self._proven_etag:
            # The PutObject's reply named the MD5 of the body sent: that is the object, a HEAD
            # would tell nothing more (and costs a request per small file).
            return CompletionCheck(True, ()), self._returned_etag, VerifiedBy.ETAG
        algorithm = self.record.checksum
        try:
            info = await self.deps.store.head_object(
                self.record.key, checksum=algorithm is not ChecksumAlgorithm.NONE
            )
        except AccessRefused as exc:
            permissions.refused("s3:GetObject", str(exc))
            if not trust_returned:
                raise
            info = ObjectInfo(size, self._returned_etag)
        if info is None:
            return CompletionCheck(False, ("there is no object at its key",)), "", VerifiedBy.ETAG
        check, method = check_object_against_parts(
            size=size,
            expected_etag=expected_etag,
            object_size=info.size,
            object_etag=info.etag,
            reported=info.checksum,
            algorithm=algorithm,
            parts=parts,
        )
        if method is not VerifiedBy.ETAG:
            self._etag_fallback_noted(info.etag, method)
        return check, info.etag, method

    def _etag_fallback_noted(self, etag: str, method: VerifiedBy) -> None:
        """Once per daemon run (every stream's deps share the flag): the server's ETags are of
        another kind, so objects are checked another way."""
        if not self.deps.etag_fallback.first():
            return
        how = (
            f"their size and the {self.record.checksum.value} checksum the server reports"
            if method is VerifiedBy.CHECKSUM
            else "their size only (the server reports no checksum of the object, or --checksum "
            "is none), after every part was re-read and compared before completion"
        )
        self._log.warning(
            "the S3 server's ETags are not the MD5 of the part MD5s: completed objects are "
            f"verified by {how}",
            etag=etag,
            verified_by=method.value,
        )

    async def _already_ours(self, expected_etag: str, size: int, parts: list[PartRecord]) -> bool:
        """After a conditional write was refused: True if the object there is the one this
        write makes (a previous attempt got through, its reply was lost). Its size alone proves
        nothing of the kind: another recording may have it."""
        try:
            check, _, method = await self._check_object(
                size, expected_etag, parts, trust_returned=False
            )
        except AccessRefused:
            return False  # no s3:GetObject: cannot tell, so not proven ours
        return check.ok and method is not VerifiedBy.SIZE

    async def _skip_empty(self, st: FileStat) -> Outcome:
        if self.record.upload_id:
            await self._sender.abort_quietly(self.record.upload_id)
        reason = "the file was closed empty (0 bytes): nothing to upload"
        await self._book.set_state(
            StreamState.SKIPPED,
            error=reason,
            upload_id="",
            final_size=0,
            final_mtime_ns=st.mtime_ns,
        )
        self._log.info("stream skipped", reason=reason)
        return Outcome.SKIPPED

    async def _put_single(self, rng: PartRange) -> tuple[str, list[PartRecord], str]:
        """The object in one PutObject. The expected ETag returned is the body's own MD5: the
        check (_check_object) compares S3's object with the bytes read, not with S3's reply."""
        self._proven_etag = ""
        async with self.deps.budget.hold(rng.size):
            loaded = await self._sender.load(rng)
            if len(loaded.body) != rng.size:
                raise FileChangedWhileFinalizing(f"{self.path} shrank while being finalized")
            sha256_hex, body_etag = await asyncio.to_thread(
                _sha256_and_md5_etag, loaded.body, self.deps.sha256 is Sha256Setting.AUTO
            )
            await self._check_key_is_ours()
            await self._check_claim()
            started = time.monotonic()
            try:
                etag = await self.deps.store.put_object(
                    self.record.key,
                    loaded.body,
                    loaded.crc,
                    content_type_for(self.path.name),
                    if_none_match=self._if_none_match(),
                    checksum=part_checksum(self.record.checksum, loaded.crc, loaded.stored),
                )
            except KeyTaken:
                etag = body_etag
                sent = PartRecord(1, rng.size, loaded.crc, etag, checksum=loaded.stored)
                if not await self._already_ours(etag, rng.size, [sent]):
                    raise
            else:
                if put_reply_proves(body_etag, etag):
                    self._proven_etag = body_etag  # S3's own answer, not what we expected
            self._returned_etag = etag
            metrics.part_uploaded(rng.size, time.monotonic() - started)
            crc, stored = loaded.crc, loaded.stored
            del loaded  # before the budget is given back (see _send_part)
        self._log.debug("uploaded in one request", size=rng.size)  # "stream completed" follows
        part = PartRecord(1, rng.size, crc, etag, iso(utc_now()), stored)
        return body_etag, [part], sha256_hex

    async def _check_claim(self) -> None:
        """A shared folder's recording is completed only by the holder of its lease: a guarded
        write (ClaimLost if another node took it over) just before the object is made. A node
        that stalls past its lease between here and S3's reply is what If-None-Match and the
        ETag check (_already_ours) catch."""
        if self.record.scope.startswith("share:"):
            await self.deps.checkpoints.update(self.stream_id)

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
        await self._check_key_is_ours(expected_etag)
        await self._check_claim()
        algorithm = self.record.checksum
        kind = effective_type(algorithm, self.record.checksum_type)
        try:
            self._returned_etag = await self.deps.store.complete_upload(
                self.record.key,
                self.record.upload_id,
                [(p.number, p.etag, p.crc32) for p in final_parts],
                if_none_match=self._if_none_match(),
                checksums=[part_checksum(algorithm, p.crc32, p.checksum) for p in final_parts],
                object_checksum=(
                    self._whole_object_checksum(kind, final_parts)
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
            if not await self._already_ours(expected_etag, layout[-1].end, final_parts):
                raise
            self._returned_etag = expected_etag  # read back by _already_ours
        self._log.info(
            "multipart upload completed",
            parts=len(final_parts),
            resent=resent,
            dropped=dropped,
            sha256=when.value,
        )
        return expected_etag, final_parts, sha256_hex, when

    def _whole_object_checksum(
        self, kind: ChecksumType | None, parts: list[PartRecord]
    ) -> Checksum | None:
        """The object's checksum as S3 makes it, combined from the parts' own (no byte read)."""
        algorithm = self.record.checksum
        if kind is None or algorithm is ChecksumAlgorithm.NONE:
            return None
        sums = [PartSum(p.size, part_checksum(algorithm, p.crc32, p.checksum)) for p in parts]
        return object_checksum(algorithm, kind, sums)

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

    async def _write_metadata(
        self,
        st: FileStat,
        sha256_hex: str,
        etag: str,
        parts: list[PartRecord],
        started: float,
        verified_by: VerifiedBy,
        whole: Checksum | None,
    ) -> None:
        try:
            media = await run_blocking(
                probe_media,
                self.path,
                timeout_s=self.deps.stat_timeout_s,
                what=f"probing {self.path} as media",
            )
        except SourceStalled as exc:
            # metadata.json goes without its media section rather than wait on a hung mount.
            self._log.warning("media probe gave up", reason=str(exc))
            media = None
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
            upload_duration_s=self.deps.clock() - self._ctx.started_monotonic,
            finalize_duration_s=self.deps.clock() - started,
            generation=self.record.generation,
            media=media,
            mtime_ns=st.mtime_ns,
            inode=st.inode,
            birth_ns=self.record.birth_ns,
            node_id=self.record.owner,
            checksum=self.record.checksum,
            verified_by=verified_by.value,
            object_checksum=_described(whole, self._object_type()),
        )
        self._metadata = document
        await self._put_metadata(document)

    def _object_type(self) -> ChecksumType:
        if not self.record.upload_id:
            return ChecksumType.FULL_OBJECT  # one PutObject: its checksum is the body's
        return effective_type(self.record.checksum, self.record.checksum_type) or (
            ChecksumType.FULL_OBJECT
        )

    async def _put_metadata(self, document: dict[str, Any]) -> None:
        await put_metadata(self.deps.store, self.record, document)

    async def _record_completed(
        self,
        st: FileStat,
        sha256_hex: str,
        etag: str,
        first: PartRecord,
        whole: Checksum | None,
        *,
        sha256_follows: bool,
    ) -> None:
        kind, _ = self.deps.after_upload
        await self._book.set_state(
            StreamState.COMPLETED,
            completed_at=iso(utc_now()),
            final_size=st.size,
            final_mtime_ns=st.mtime_ns,
            sha256=sha256_hex,
            etag=etag,
            error="",
            head_size=first.size,
            head_crc32=first.crc32,
            # Until it is done: a shutdown or a crash before it leaves it to the next start.
            after_upload_pending=kind is not AfterUploadKind.KEEP,
            sha256_pending=sha256_follows,
        )
        self._log.info(
            "stream completed",
            key=self.record.key,
            size=st.size,
            sha256=sha256_hex,
            checksum=f"{whole.algorithm.value}:{whole.value}" if whole else "",
            seconds=round(self.deps.clock() - self._ctx.started_monotonic, 3),
        )

    async def _sha256_after(self, parts: list[PartRecord]) -> Sha256Result:
        """The whole-file SHA-256 of a published object (tailup.stream.sha256after); CHANGED if
        the file's bytes are no longer the object's, PENDING if cut short (the record keeps
        sha256_pending, set with the completion)."""
        started = self.deps.clock()
        result, digest, why = await sha256_of_object(
            self.record, parts, timeout_s=self.deps.stat_timeout_s
        )
        if result is not Sha256Result.RECORDED:
            self._log.info(f"sha256 not recorded ({result.value})", reason=why)
            return result
        try:
            await record_sha256(
                self.deps.store, self.deps.checkpoints, self.record, digest, self._metadata
            )
        except TailupError as exc:
            self._log.warning("sha256 not recorded (pending)", reason=str(exc))
            return Sha256Result.PENDING
        self._log.info(
            "sha256 recorded",
            key=self.record.key,
            sha256=digest,
            seconds=round(self.deps.clock() - started, 3),
        )
        return Sha256Result.RECORDED

    async def _still_holds(self, uploaded: UploadedFile) -> bool:
        """Whether the path still holds the file uploaded (tailup.sameupload); act() checks
        again in the thread that deletes or moves it."""
        if self.deps.after_upload[0] is AfterUploadKind.KEEP:
            return True
        try:
            now: FileStat | None = await run_blocking(
                stat_file, self.path, timeout_s=self.deps.stat_timeout_s, what=str(self.path)
            )
        except SourceGone:
            now = None
        return holds_upload(uploaded, now)

    async def _after_upload(self, close_seen: bool, uploaded: UploadedFile) -> bool:
        """The after-upload action, if its writer is known gone. False when it stays pending
        (the record says so already: set with the completion)."""
        result = await run_after_upload(
            self.deps.after_upload,
            self.path,
            Path(self.record.watch_root),
            close_seen=close_seen,
            proc_sees_all=self.deps.proc_sees_all,
            timeout_s=self.deps.stat_timeout_s,
            expected=uploaded,
        )
        if result is AfterUpload.PENDING:
            return False
        if result is not AfterUpload.NOTHING:
            try:
                await self.deps.checkpoints.update(self.stream_id, after_upload_pending=False)
            except TailupError as exc:
                self._log.warning("could not record the after-upload action", reason=str(exc))
        return True


def _sha256_and_md5_etag(data: PartBody, sha256: bool = True) -> tuple[str, str]:
    """The body's SHA-256 ("" unless ``sha256``) and its MD5 as S3 makes a single PUT's ETag, in
    one thread hop."""
    md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
    return _sha256_hex(data) if sha256 else "", f'"{md5}"'


def _described(whole: Checksum | None, kind: ChecksumType) -> dict[str, str] | None:
    """metadata.json's checksum of the whole object, as S3 reports it on HEAD."""
    if whole is None:
        return None
    return {"algorithm": whole.algorithm.value, "type": kind.value, "value": whole.value}
