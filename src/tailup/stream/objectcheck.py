"""Whether the object at a stream's key is the one it sent, and may be written: tailup's
checks around a completion (the object against the parts sent, a later generation's key still
its own, a shared folder's lease held). Part of the Finalizer (tailup.stream.finalize)."""

from __future__ import annotations

from tailup import permissions
from tailup.checksums import ChecksumAlgorithm
from tailup.errors import AccessRefused, KeyTaken
from tailup.integrity import (
    CompletionCheck,
    VerifiedBy,
    check_object_against_parts,
    normalize_etag,
)
from tailup.model import PartRecord
from tailup.s3 import ObjectInfo
from tailup.stream.context import Collaborator, StreamContext


class ObjectCheck(Collaborator):
    def __init__(self, ctx: StreamContext) -> None:
        super().__init__(ctx)
        self.returned_etag = ""  # what S3 answered to the PutObject or Complete
        # The body MD5 of the last PutObject whose reply proved the object (put_reply_proves).
        self.proven_etag = ""

    def if_none_match(self) -> bool:
        """A first generation's object must not land on an object already there (another
        recording's); a later generation replaces its own earlier one."""
        return self.deps.conditional_writes and self.record.generation == 1

    async def key_is_ours(self, *own_etags: str) -> None:
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

    async def verify(
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
        if trust_returned and expected_etag and expected_etag == self.proven_etag:
            # The PutObject's reply named the MD5 of the body sent: that is the object, a HEAD
            # would tell nothing more (and costs a request per small file).
            return CompletionCheck(True, ()), self.returned_etag, VerifiedBy.ETAG
        algorithm = self.record.checksum
        try:
            info = await self.deps.store.head_object(
                self.record.key, checksum=algorithm is not ChecksumAlgorithm.NONE
            )
        except AccessRefused as exc:
            permissions.refused("s3:GetObject", str(exc))
            if not trust_returned:
                raise
            info = ObjectInfo(size, self.returned_etag)
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

    async def already_ours(self, expected_etag: str, size: int, parts: list[PartRecord]) -> bool:
        """After a conditional write was refused: True if the object there is the one this
        write makes (a previous attempt got through, its reply was lost). Its size alone proves
        nothing of the kind: another recording may have it."""
        try:
            check, _, method = await self.verify(size, expected_etag, parts, trust_returned=False)
        except AccessRefused:
            return False  # no s3:GetObject: cannot tell, so not proven ours
        return check.ok and method is not VerifiedBy.SIZE

    async def claim(self) -> None:
        """A shared folder's recording is completed only by the holder of its lease: a guarded
        write (ClaimLost if another node took it over) just before the object is made. A node
        that stalls past its lease between here and S3's reply is what If-None-Match and the
        ETag check (already_ours) catch."""
        if self.record.scope.startswith("share:"):
            await self.deps.checkpoints.update(self.stream_id)
