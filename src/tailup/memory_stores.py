"""In-process stores for fast tests of stream logic. The contract suites in tests/integration run
the same checks against these and the real Redis and S3 stores, so they cannot drift apart."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from tailup.errors import KeyTaken, NoSuchUpload, StoragePermanentError, StorageUnavailable
from tailup.integrity import crc32_of, multipart_etag
from tailup.plan import MAX_PARTS, MIN_PART_SIZE_BYTES
from tailup.s3 import ObjectInfo, UploadedPart, UploadInfo


def _etag(body: bytes) -> str:
    return f'"{hashlib.md5(body).hexdigest()}"'


@dataclass
class _Upload:
    key: str
    initiated: datetime
    # Every upload of a part number is kept, like SeaweedFS: Complete picks by ETag.
    parts: list[tuple[int, str, bytes]] = field(default_factory=list)


class MemoryMultipartStore:
    """Enforces the S3 rules tailup depends on: EntityTooSmall, InvalidPart, InvalidPartOrder,
    NoSuchUpload, BadDigest-style checksum refusal (of a body, and of a part's CRC32 named in
    Complete), at most 10,000 parts. A second Complete finds NoSuchUpload, as AWS S3 answers
    after its short grace (SeaweedFS completes again: tests/integration/test_store_contracts.py)."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.etags: dict[str, str] = {}
        self.uploads: dict[str, _Upload] = {}
        self._counter = 0

    async def check_bucket(self) -> None:
        return None

    def for_bucket(self, bucket: str) -> MemoryMultipartStore:
        return self

    def _refuse_if_taken(self, key: str, if_none_match: bool) -> None:
        if if_none_match and key in self.objects:
            raise KeyTaken(f"S3: PreconditionFailed: {key} exists", code="PreconditionFailed")

    async def create_upload(self, key: str, content_type: str) -> str:
        self._counter += 1
        upload_id = f"mem-{self._counter}"
        self.uploads[upload_id] = _Upload(key, datetime.now(UTC))
        return upload_id

    def _upload(self, key: str, upload_id: str) -> _Upload:
        upload = self.uploads.get(upload_id)
        if upload is None or upload.key != key:
            raise NoSuchUpload("S3 upload part: NoSuchUpload", code="NoSuchUpload")
        return upload

    async def upload_part(
        self, key: str, upload_id: str, number: int, body: bytes, crc32: int
    ) -> str:
        upload = self._upload(key, upload_id)
        if not 1 <= number <= MAX_PARTS:
            raise StoragePermanentError(f"part number {number} is invalid", code="InvalidArgument")
        if crc32_of(body) != crc32:
            raise StorageUnavailable("BadDigest: checksum mismatch")
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
            if crc32_of(body) != crc:
                raise StorageUnavailable(f"BadDigest: the CRC32 of part {number} does not match")
            if index < len(parts) - 1 and len(body) < MIN_PART_SIZE_BYTES:
                raise StoragePermanentError(f"EntityTooSmall: part {number}", code="EntityTooSmall")
            chosen.append(body)
        self.objects[key] = b"".join(chosen)
        self.etags[key] = multipart_etag([etag for _, etag, _ in parts])
        del self.uploads[upload_id]
        return self.etags[key]

    async def abort_upload(self, key: str, upload_id: str) -> None:
        self.uploads.pop(upload_id, None)

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
    ) -> str:
        self._refuse_if_taken(key, if_none_match)
        if crc32_of(body) != crc32:
            raise StorageUnavailable("BadDigest: checksum mismatch")
        self.objects[key] = bytes(body)
        self.etags[key] = _etag(self.objects[key])
        return self.etags[key]

    async def head_object(self, key: str) -> ObjectInfo | None:
        body = self.objects.get(key)
        if body is None:
            return None
        return ObjectInfo(len(body), self.etags[key])

    async def get_object(self, key: str) -> bytes:
        body = self.objects.get(key)
        if body is None:
            raise StoragePermanentError(f"NoSuchKey: {key}", code="NoSuchKey")
        return body

    async def list_uploads(self, prefix: str) -> list[UploadInfo]:
        return [
            UploadInfo(u.key, upload_id, u.initiated)
            for upload_id, u in self.uploads.items()
            if u.key.startswith(prefix)
        ]
