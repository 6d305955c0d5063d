"""An in-memory S3 multipart store with S3's rules (EntityTooSmall, InvalidPart, NoSuchUpload,
MD5 part ETags) and fault injection, for fast stream-level tests. Integration tests use the real
server; this one exists to drive exact interleavings (a fault at one precise call)."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from tailup.errors import NoSuchUpload, StoragePermanentError, TailupError
from tailup.integrity import multipart_etag
from tailup.plan import MIN_PART_SIZE_BYTES
from tailup.s3 import ObjectInfo, UploadedPart, UploadInfo

# A fault hook gets (operation, key) and returns an error to raise, or None to go on.
FaultHook = Callable[[str, str], TailupError | None]


def _etag(data: bytes) -> str:
    return f'"{hashlib.md5(data).hexdigest()}"'


@dataclass
class _Upload:
    key: str
    parts: list[tuple[int, str, bytes]] = field(
        default_factory=list
    )  # every version, like SeaweedFS
    initiated: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass
class MemoryMultipartStore:
    uploads: dict[str, _Upload] = field(default_factory=dict)
    objects: dict[str, bytes] = field(default_factory=dict)
    object_etags: dict[str, str] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    fault: FaultHook | None = None  # before the operation: it does not happen
    lost_reply: FaultHook | None = None  # after it: it happened, the caller never hears so
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def _enter(self, operation: str, key: str) -> None:
        self.calls.append((operation, key))
        if self.fault is not None:
            error = self.fault(operation, key)
            if error is not None:
                raise error

    def _leave(self, operation: str, key: str) -> None:
        if self.lost_reply is not None:
            error = self.lost_reply(operation, key)
            if error is not None:
                raise error

    def _upload(self, upload_id: str) -> _Upload:
        try:
            return self.uploads[upload_id]
        except KeyError:
            raise NoSuchUpload(f"no upload {upload_id}", code="NoSuchUpload") from None

    def count(self, operation: str) -> int:
        return sum(1 for op, _ in self.calls if op == operation)

    async def create_upload(self, key: str, content_type: str) -> str:
        self._enter("create", key)
        upload_id = f"U{next(self._ids)}"
        self.uploads[upload_id] = _Upload(key)
        self._leave("create", key)
        return upload_id

    async def upload_part(
        self, key: str, upload_id: str, number: int, body: bytes, crc32: int
    ) -> str:
        self._enter("upload_part", key)
        self._upload(upload_id).parts.append((number, _etag(body), bytes(body)))
        self._leave("upload_part", key)
        return _etag(body)

    async def complete_upload(
        self, key: str, upload_id: str, parts: Sequence[tuple[int, str, int]]
    ) -> str:
        self._enter("complete", key)
        upload = self._upload(upload_id)
        chosen: list[bytes] = []
        for n, etag, _crc in parts:
            found = [data for number, e, data in upload.parts if number == n and e == etag]
            if not found:
                raise StoragePermanentError(f"InvalidPart {n}", code="InvalidPart")
            chosen.append(found[0])
        if any(len(data) < MIN_PART_SIZE_BYTES for data in chosen[:-1]):
            raise StoragePermanentError("EntityTooSmall", code="EntityTooSmall")
        self.objects[key] = b"".join(chosen)
        self.object_etags[key] = multipart_etag([etag for _, etag, _ in parts])
        del self.uploads[upload_id]
        self._leave("complete", key)
        return self.object_etags[key]

    async def abort_upload(self, key: str, upload_id: str) -> None:
        self._enter("abort", key)
        self.uploads.pop(upload_id, None)

    async def list_parts(self, key: str, upload_id: str) -> list[UploadedPart]:
        self._enter("list_parts", key)
        return [UploadedPart(n, e, len(d)) for n, e, d in self._upload(upload_id).parts]

    async def put_object(self, key: str, body: bytes, crc32: int, content_type: str) -> str:
        self._enter("put", key)
        self.objects[key] = bytes(body)
        self.object_etags[key] = _etag(body)
        return _etag(body)

    async def head_object(self, key: str) -> ObjectInfo | None:
        self._enter("head", key)
        data = self.objects.get(key)
        if data is None:
            return None
        return ObjectInfo(len(data), self.object_etags[key])

    async def get_object(self, key: str) -> bytes:
        self._enter("get", key)
        return self.objects[key]

    async def list_uploads(self, prefix: str) -> list[UploadInfo]:
        self._enter("list_uploads", prefix)
        return [
            UploadInfo(u.key, upload_id, u.initiated)
            for upload_id, u in self.uploads.items()
            if u.key.startswith(prefix)
        ]

    async def check_bucket(self) -> None:
        self._enter("check_bucket", "")
