"""tailup's in-memory S3 store (S3's rules, every version of a part kept like SeaweedFS) with
fault injection at exact calls, for fast stream-level tests. Integration tests use the real
server; this one exists to drive exact interleavings (a fault at one precise call)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from tailup.dev import MemoryMultipartStore
from tailup.errors import TailupError
from tailup.s3 import UploadedPart

T = TypeVar("T")
# A fault hook gets (operation, key) and returns an error to raise, or None to go on.
FaultHook = Callable[[str, str], TailupError | None]


class FaultyMemoryStore(MemoryMultipartStore):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, str]] = []
        self.fault: FaultHook | None = None  # before the operation: it does not happen
        self.lost_reply: FaultHook | None = None  # after it: it happened, the caller never hears

    def count(self, operation: str) -> int:
        return sum(1 for op, _ in self.calls if op == operation)

    async def _around(self, operation: str, key: str, call: Callable[[], Awaitable[T]]) -> T:
        self.calls.append((operation, key))
        _raise_from(self.fault, operation, key)
        result = await call()
        _raise_from(self.lost_reply, operation, key)
        return result

    async def create_upload(self, key: str, content_type: str, **kwargs: Any) -> str:
        base = super().create_upload
        return await self._around("create", key, lambda: base(key, content_type, **kwargs))

    async def upload_part(
        self, key: str, upload_id: str, number: int, body: bytes, crc32: int, **kwargs: Any
    ) -> str:
        base = super().upload_part
        return await self._around(
            "upload_part", key, lambda: base(key, upload_id, number, body, crc32, **kwargs)
        )

    async def complete_upload(
        self,
        key: str,
        upload_id: str,
        parts: Sequence[tuple[int, str, int]],
        *,
        if_none_match: bool = False,
        **kwargs: Any,
    ) -> str:
        base = super().complete_upload
        return await self._around(
            "complete",
            key,
            lambda: base(key, upload_id, parts, if_none_match=if_none_match, **kwargs),
        )

    async def put_object(
        self, key: str, body: bytes | bytearray, crc32: int, content_type: str, **kwargs: Any
    ) -> str:
        base = super().put_object
        put = lambda: base(key, body, crc32, content_type, **kwargs)  # noqa: E731
        return await self._around("put", key, put)

    async def abort_upload(self, key: str, upload_id: str) -> None:
        base = super().abort_upload
        await self._around("abort", key, lambda: base(key, upload_id))

    async def delete_object(self, key: str) -> None:
        base = super().delete_object
        await self._around("delete", key, lambda: base(key))

    async def list_parts(self, key: str, upload_id: str) -> list[UploadedPart]:
        base = super().list_parts
        return await self._around("list_parts", key, lambda: base(key, upload_id))

    async def get_object(self, key: str) -> bytes:
        base = super().get_object
        return await self._around("get", key, lambda: base(key))


def _raise_from(hook: FaultHook | None, operation: str, key: str) -> None:
    error = hook(operation, key) if hook is not None else None
    if error is not None:
        raise error
