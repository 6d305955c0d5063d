"""What tailup asks of an S3 store (MultipartStore) and the values it answers with: the one
interface the real client (tailup.s3.client) and the memory store (tailup.dev.memory_s3) share."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, TypeAlias

from tailup.checksums import Checksum, ChecksumAlgorithm, ChecksumType
from tailup.objectoptions import ObjectOptions

# A part body: a PartBody (bytearray) read from disk and sent without copies, or small bytes.
Body: TypeAlias = bytes | bytearray


@dataclass(frozen=True, slots=True)
class UploadedPart:
    number: int
    etag: str
    size: int
    # When S3 received it (ListParts' LastModified): how long an upload has been quiet
    # (`tailup salvage --older-than`). None where a store does not say.
    last_modified: datetime | None = None
    # The checksum it was sent with, where ListParts names it (AWS, moto): what salvage names in
    # CompleteMultipartUpload when no checkpoint has the part.
    checksum: Checksum | None = None


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    size: int
    etag: str
    # What the server reports with ChecksumMode=ENABLED (head_object(checksum=True)), if anything.
    checksum: Checksum | None = None


@dataclass(frozen=True, slots=True)
class ListedObject:
    key: str
    size: int


@dataclass(frozen=True, slots=True)
class UploadInfo:
    key: str
    upload_id: str
    initiated: datetime
    # What ListMultipartUploads says the upload was created with; None: not said (SeaweedFS says
    # neither, moto the algorithm only) or, for the algorithm, one tailup does not send.
    checksum: ChecksumAlgorithm | None = None
    checksum_type: ChecksumType | None = None
    # The algorithm was named but is not one of tailup's (SHA1, SHA256): not adoptable.
    foreign_checksum: bool = False


class MultipartStore(Protocol):
    """``crc32`` is tailup's own CRC32 of a body. ``checksum`` is the header the body is sent
    with (tailup.checksums); left out, it is the CRC32 header made from ``crc32``."""

    async def create_upload(
        self,
        key: str,
        content_type: str,
        *,
        checksum: ChecksumAlgorithm = ChecksumAlgorithm.CRC32,
        checksum_type: ChecksumType | None = None,
        options: ObjectOptions | None = None,
    ) -> str:
        """A multipart upload whose parts carry ``checksum`` (none: no checksum), its object's
        checksum of ``checksum_type`` (None: the server's default for the algorithm), the object
        stored as ``options`` say (class, encryption, tags; None: the bucket's defaults)."""

    async def upload_part(
        self,
        key: str,
        upload_id: str,
        number: int,
        body: Body,
        crc32: int,
        *,
        checksum: Checksum | None = None,
        options: ObjectOptions | None = None,
    ) -> str:
        """Send one part; returns its ETag. ``options``: what its upload was created with, not
        sent again: a refusal of them names the flags."""

    async def complete_upload(
        self,
        key: str,
        upload_id: str,
        parts: Sequence[tuple[int, str, int]],
        *,
        if_none_match: bool = False,
        checksums: Sequence[Checksum] | None = None,
        object_checksum: Checksum | None = None,
    ) -> str:
        """Complete with (number, etag, crc32) per part, in order; returns the object's ETag.
        ``checksums``: each part's, in the same order (left out: CRC32s from the crc32s).
        ``object_checksum``: a FULL_OBJECT upload's whole-object checksum, which the server
        checks (BadDigest). ``if_none_match``: only if no object has the key (KeyTaken
        otherwise)."""

    async def abort_upload(self, key: str, upload_id: str) -> None:
        """Abort; an upload that no longer exists counts as aborted."""

    async def list_parts(self, key: str, upload_id: str) -> list[UploadedPart]: ...

    async def delete_object(self, key: str) -> None:
        """Delete the object at ``key``; a key that holds none counts as deleted."""

    async def put_object(
        self,
        key: str,
        body: Body,
        crc32: int,
        content_type: str,
        *,
        if_none_match: bool = False,
        checksum: Checksum | None = None,
        options: ObjectOptions | None = None,
    ) -> str: ...

    async def head_object(self, key: str, *, checksum: bool = False) -> ObjectInfo | None:
        """Size and ETag; with ``checksum``, also the checksum the server keeps (ChecksumMode)."""

    async def get_object(self, key: str) -> bytes: ...

    async def list_uploads(self, prefix: str) -> list[UploadInfo]: ...

    async def list_objects(self, prefix: str, *, limit: int | None = None) -> list[ListedObject]:
        """The objects whose key starts with ``prefix``, in key order; at most ``limit`` of them
        (the first ones) when given: a lookup that needs a few, --rpo's segments (tailup.rpo)."""

    async def check_bucket(self) -> None:
        """Raise StoragePermanentError if the bucket is missing or the credentials are refused
        (a refused s3:ListBucket alone is not an error: tailup.permissions)."""

    def for_bucket(self, bucket: str) -> MultipartStore:
        """The same store (client, connections) on another bucket: a stream keeps the bucket it
        started in when --bucket changes."""
