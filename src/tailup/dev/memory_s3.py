"""In-process stores for fast tests of stream logic. The contract suites in tests/integration run
the same checks on these and the real stores; where answers differ, per-store tables pin each."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from tailup.checksums import (
    Checksum,
    ChecksumAlgorithm,
    ChecksumType,
    PartSum,
    object_checksum,
    part_checksum,
    stored_checksum,
)
from tailup.errors import KeyTaken, NoSuchUpload, StoragePermanentError, StorageUnavailable
from tailup.integrity import crc32_of, multipart_etag
from tailup.objectoptions import ObjectOptions
from tailup.plan import MAX_PARTS, MIN_PART_SIZE_BYTES
from tailup.s3 import ListedObject, ObjectInfo, UploadedPart, UploadInfo


def _etag(body: bytes) -> str:
    return f'"{hashlib.md5(body).hexdigest()}"'


def _checksum_of(algorithm: ChecksumAlgorithm, body: bytes | bytearray) -> Checksum:
    return part_checksum(algorithm, crc32_of(body), stored_checksum(algorithm, body))


def _refuse_bad_checksum(checksum: Checksum | None, body: bytes | bytearray, what: str) -> None:
    if checksum is not None and checksum != _checksum_of(checksum.algorithm, body):
        raise StorageUnavailable(f"BadDigest: the {checksum.algorithm.value} of {what} differs")


@dataclass
class _Upload:
    key: str
    initiated: datetime
    checksum: ChecksumAlgorithm = ChecksumAlgorithm.CRC32
    checksum_type: ChecksumType | None = None
    # Every upload of a part number is kept, like SeaweedFS: Complete picks by ETag.
    parts: list[tuple[int, str, bytes]] = field(default_factory=list)


class MemoryMultipartStore:
    """Enforces the S3 rules tailup depends on: EntityTooSmall, InvalidPart, InvalidPartOrder,
    NoSuchUpload, BadDigest-style checksum refusal (of a body, and of a part's checksum named in
    Complete), at most 10,000 parts; HEAD reports the checksum S3 would (tailup.checksums). A
    second Complete finds NoSuchUpload, as AWS S3 answers after its short grace (SeaweedFS
    completes again: tests/integration/test_store_contracts.py)."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.etags: dict[str, str] = {}
        self.checksums: dict[str, Checksum] = {}
        self.uploads: dict[str, _Upload] = {}
        self._counter = 0

    async def check_bucket(self) -> None:
        return None

    def for_bucket(self, bucket: str) -> MemoryMultipartStore:
        return self

    def _refuse_if_taken(self, key: str, if_none_match: bool) -> None:
        if if_none_match and key in self.objects:
            raise KeyTaken(f"S3: PreconditionFailed: {key} exists", code="PreconditionFailed")

    async def create_upload(
        self,
        key: str,
        content_type: str,
        *,
        checksum: ChecksumAlgorithm = ChecksumAlgorithm.CRC32,
        checksum_type: ChecksumType | None = None,
        options: ObjectOptions | None = None,  # kept by real servers only
    ) -> str:
        self._counter += 1
        upload_id = f"mem-{self._counter}"
        if checksum.full_object:
            checksum_type = ChecksumType.FULL_OBJECT
        elif checksum_type is None and checksum is not ChecksumAlgorithm.NONE:
            checksum_type = ChecksumType.COMPOSITE
        self.uploads[upload_id] = _Upload(key, datetime.now(UTC), checksum, checksum_type)
        return upload_id

    def _upload(self, key: str, upload_id: str) -> _Upload:
        upload = self.uploads.get(upload_id)
        if upload is None or upload.key != key:
            raise NoSuchUpload("S3 upload part: NoSuchUpload", code="NoSuchUpload")
        return upload

    async def upload_part(
        self,
        key: str,
        upload_id: str,
        number: int,
        body: bytes,
        crc32: int,
        *,
        checksum: Checksum | None = None,
        options: ObjectOptions | None = None,
    ) -> str:
        upload = self._upload(key, upload_id)
        if not 1 <= number <= MAX_PARTS:
            raise StoragePermanentError(f"part number {number} is invalid", code="InvalidArgument")
        if crc32_of(body) != crc32:
            raise StorageUnavailable("BadDigest: checksum mismatch")
        _refuse_bad_checksum(checksum, body, f"part {number}")
        etag = _etag(body)
        upload.parts.append((number, etag, bytes(body)))
        return etag

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
        upload = self._upload(key, upload_id)
        self._refuse_if_taken(key, if_none_match)
        numbers = [number for number, _, _ in parts]
        if numbers != sorted(set(numbers)):
            raise StoragePermanentError(
                "InvalidPartOrder: parts not ascending", code="InvalidPartOrder"
            )
        chosen: list[bytes] = []
        for index, (number, etag, crc) in enumerate(parts):
            body = next((b for n, e, b in upload.parts if n == number and e == etag), None)
            if body is None:
                raise StoragePermanentError(f"InvalidPart: part {number}", code="InvalidPart")
            # As S3: the CRC32 header is made from ``crc`` only when no checksum is given.
            if checksums is None and crc32_of(body) != crc:
                raise StorageUnavailable(f"BadDigest: the CRC32 of part {number} does not match")
            if checksums is not None:
                _refuse_bad_checksum(checksums[index], body, f"part {number}")
            if index < len(parts) - 1 and len(body) < MIN_PART_SIZE_BYTES:
                raise StoragePermanentError(f"EntityTooSmall: part {number}", code="EntityTooSmall")
            chosen.append(body)
        made = self._made_checksum(upload, chosen)
        if object_checksum is not None and object_checksum != made:
            # S3 and SeaweedFS check a FULL_OBJECT upload's whole-object checksum so.
            raise StorageUnavailable("BadDigest: the object's checksum does not match its parts")
        self.objects[key] = b"".join(chosen)
        self.etags[key] = multipart_etag([etag for _, etag, _ in parts])
        self.checksums.pop(key, None)
        if made is not None:
            self.checksums[key] = made
        del self.uploads[upload_id]
        return self.etags[key]

    async def abort_upload(self, key: str, upload_id: str) -> None:
        self.uploads.pop(upload_id, None)

    async def delete_object(self, key: str) -> None:
        self.objects.pop(key, None)
        self.etags.pop(key, None)
        self.checksums.pop(key, None)

    async def list_parts(self, key: str, upload_id: str) -> list[UploadedPart]:
        upload = self._upload(key, upload_id)
        return [UploadedPart(n, e, len(b)) for n, e, b in sorted(upload.parts, key=lambda p: p[0])]

    async def put_object(
        self,
        key: str,
        body: bytes | bytearray,
        crc32: int,
        content_type: str,
        *,
        if_none_match: bool = False,
        checksum: Checksum | None = None,
        options: ObjectOptions | None = None,
    ) -> str:
        self._refuse_if_taken(key, if_none_match)
        if crc32_of(body) != crc32:
            raise StorageUnavailable("BadDigest: checksum mismatch")
        _refuse_bad_checksum(checksum, body, "the body")
        self.objects[key] = bytes(body)
        self.etags[key] = _etag(self.objects[key])
        self.checksums.pop(key, None)
        algorithm = checksum.algorithm if checksum is not None else ChecksumAlgorithm.CRC32
        if algorithm is not ChecksumAlgorithm.NONE:
            self.checksums[key] = _checksum_of(algorithm, body)
        return self.etags[key]

    @staticmethod
    def _made_checksum(upload: _Upload, bodies: Sequence[bytes]) -> Checksum | None:
        """The object's checksum as S3 makes it, of the upload's type."""
        if upload.checksum_type is None:
            return None
        sums = [PartSum(len(b), _checksum_of(upload.checksum, b)) for b in bodies]
        return object_checksum(upload.checksum, upload.checksum_type, sums)

    async def head_object(self, key: str, *, checksum: bool = False) -> ObjectInfo | None:
        body = self.objects.get(key)
        if body is None:
            return None
        return ObjectInfo(len(body), self.etags[key], self.checksums.get(key) if checksum else None)

    async def get_object(self, key: str) -> bytes:
        body = self.objects.get(key)
        if body is None:
            raise StoragePermanentError(f"NoSuchKey: {key}", code="NoSuchKey")
        return body

    async def list_uploads(self, prefix: str) -> list[UploadInfo]:
        return [
            UploadInfo(
                u.key,
                upload_id,
                u.initiated,
                checksum=None if u.checksum is ChecksumAlgorithm.NONE else u.checksum,
                checksum_type=u.checksum_type,
            )
            for upload_id, u in self.uploads.items()
            if u.key.startswith(prefix)
        ]

    async def list_objects(self, prefix: str, *, limit: int | None = None) -> list[ListedObject]:
        found = [
            ListedObject(k, len(b)) for k, b in sorted(self.objects.items()) if k.startswith(prefix)
        ]
        return found if limit is None else found[:limit]
