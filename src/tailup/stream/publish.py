"""Publishing a verified object: metadata.json, the COMPLETED record, the SHA-256 that follows
(tailup.stream.sha256after) and the after-upload action, only on the very file uploaded
(tailup.sameupload). Part of the Finalizer (tailup.stream.finalize)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tailup import metrics
from tailup.afterupload import AfterUpload, run_after_upload
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
from tailup.errors import SourceGone, SourceStalled, TailupError
from tailup.hashplan import Sha256When
from tailup.integrity import VerifiedBy
from tailup.metadata import build_metadata, probe_media
from tailup.model import PartRecord, StreamRecord, StreamState, iso, utc_now
from tailup.offload import run_blocking
from tailup.sameupload import UploadedFile, holds_upload
from tailup.source import FileStat, stat_file
from tailup.stream.bookkeeping import Bookkeeper
from tailup.stream.context import Collaborator, Outcome, PathUnsettled, StreamContext
from tailup.stream.sending import PartSender
from tailup.stream.sha256after import Sha256Result, put_metadata, record_sha256, sha256_of_object


@dataclass(frozen=True, slots=True)
class Sent:
    """A verified object, as the Finalizer made it."""

    etag: str  # the object's, as the server reports it
    parts: list[PartRecord]
    sha256_hex: str  # "" unless computed inline
    kind: ChecksumType | None  # of the object's checksum
    when: Sha256When
    verified_by: VerifiedBy


class Publisher(Collaborator):
    def __init__(self, ctx: StreamContext, sender: PartSender, book: Bookkeeper) -> None:
        super().__init__(ctx)
        self._sender = sender
        self._book = book
        self._metadata: dict[str, Any] = {}  # the metadata.json last written

    async def publish(
        self, st: FileStat, sent: Sent, *, started: float, close_seen: bool
    ) -> Outcome:
        """``st``: the file as finalized; ``close_seen``: its writer closed it (the after-upload
        action may run)."""
        try:
            after: FileStat | None = await self._stat()
        except (SourceGone, PathUnsettled):
            # Deleted (a recorder's own rotation: ffmpeg's HLS delete_segments), moved away or
            # replaced while the object was being made, after every byte of it was read from
            # this very file: the object, verified against those bytes, is the recording whole
            # (its only copy now). It is completed, never aborted with the object left behind
            # no record owning it (an HLS playlist waits for that completion). Another file at
            # the path is a recording of its own (its own stream, or the look that follows).
            after = None
        gone = after is None
        changed = after is not None and (after.size, after.mtime_ns) != (st.size, st.mtime_ns)
        whole = whole_object_checksum(self.record, sent.kind, sent.parts)
        await self._write_metadata(
            st, sent.sha256_hex, sent.etag, sent.parts, started, sent.verified_by, whole, gone
        )
        # Before the record says COMPLETED: a crash after it would leave the card for good; one
        # before it publishes again at the next start, and deletes it then.
        await self._sender.drop_card()
        await self._record_completed(
            st,
            sent.sha256_hex,
            sent.etag,
            sent.parts[0],
            whole,
            # Nothing is left to hash or to delete or move once the file is gone.
            sha256_follows=sent.when is Sha256When.AFTER and not gone,
            close_seen=close_seen,
            act_after=not gone,
        )
        await self._sender.sweep_orphans()
        metrics.FINALIZE_SECONDS.observe(self.deps.clock() - started)
        if gone:
            self._log.info("the file went while its object was made; the object is the recording")
            return Outcome.COMPLETED
        if changed:
            self._log.info("file changed while finalizing; it will be uploaded again")
            return Outcome.CHANGED_AFTER_COMPLETE
        if sent.when is Sha256When.AFTER:
            hashed = await self._sha256_after(sent.parts)
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

    async def _write_metadata(
        self,
        st: FileStat,
        sha256_hex: str,
        etag: str,
        parts: list[PartRecord],
        started: float,
        verified_by: VerifiedBy,
        whole: Checksum | None,
        gone: bool = False,
    ) -> None:
        media = None  # a file gone has nothing to probe: no media section
        try:
            if not gone:
                media = await run_blocking(
                    probe_media,
                    self.path,
                    timeout_s=self.deps.stat_timeout_s,
                    what=f"probing {self.path} as media",
                )
        except SourceStalled as exc:
            # metadata.json goes without its media section rather than wait on a hung mount.
            self._log.warning("media probe gave up", reason=str(exc))
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
            storage=self.deps.object_options.summary(),
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
        close_seen: bool,
        act_after: bool = True,
    ) -> None:
        """``act_after``: the after-upload action is still to be done (not when the file is
        gone)."""
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
            after_upload_pending=act_after and kind is not AfterUploadKind.KEEP,
            sha256_pending=sha256_follows,
            close_seen=close_seen,
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
        if result.pending:
            return False  # a writer may hold it, or its mount hangs: looked at again later
        if result is not AfterUpload.NOTHING:
            try:
                await self.deps.checkpoints.update(self.stream_id, after_upload_pending=False)
            except TailupError as exc:
                self._log.warning("could not record the after-upload action", reason=str(exc))
        return True


def whole_object_checksum(
    record: StreamRecord, kind: ChecksumType | None, parts: list[PartRecord]
) -> Checksum | None:
    """The object's checksum as S3 makes it, combined from the parts' own (no byte read)."""
    algorithm = record.checksum
    if kind is None or algorithm is ChecksumAlgorithm.NONE:
        return None
    sums = [PartSum(p.size, part_checksum(algorithm, p.crc32, p.checksum)) for p in parts]
    return object_checksum(algorithm, kind, sums)


def _described(whole: Checksum | None, kind: ChecksumType) -> dict[str, str] | None:
    """metadata.json's checksum of the whole object, as S3 reports it on HEAD."""
    if whole is None:
        return None
    return {"algorithm": whole.algorithm.value, "type": kind.value, "value": whole.value}
