"""The whole file's SHA-256 (for metadata.json), computed while the parts are read for upload.

Hashing the whole file at finalize puts a full pass of SHA-256 (~1.5 GB/s on one core) between the
writer's close and the verified object. Instead the stream offers each part to a FileDigest as it
reads it for upload, in order, and the finalize pass, which re-reads every part anyway to compare
its CRC32, hashes only what the digest does not cover yet: the tail, or, when a part changed since
it was hashed (muxers patch their header at close), the file again from the start. That last case
is the MP4/MKV/MOV one: their patch is in part 1, so nothing hashed while recording can be kept.

The finalize hashing runs in a thread of its own (``FinalizeHasher``), in part order, while the
stream reads and compares the next parts: hashlib releases the GIL, so on two cores the SHA-256
overlaps the re-read instead of following it.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from tailup.errors import RetryableError
from tailup.integrity import crc32_of

if TYPE_CHECKING:
    from typing_extensions import Buffer


class FileChangedWhileHashing(RetryableError):
    pass


class FileDigest:
    """SHA-256 of the file's parts 1..n, with the size and CRC32 of each part as it was hashed,
    so that a later pass can tell whether the file still starts with those bytes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sha = hashlib.sha256()
        self._hashed: list[tuple[int, int]] = []  # (size, crc32) of part n at index n - 1

    @property
    def parts(self) -> int:
        """How many leading parts the digest covers."""
        return len(self._hashed)

    def offer(self, number: int, body: Buffer, crc: int) -> bool:
        """Hash part ``number`` if it is the next one; True if it was. Blocking (SHA-256 of the
        whole body): call from a worker thread. Parts offered out of order are left for the
        finalize pass."""
        with self._lock:
            if number != len(self._hashed) + 1:
                return False
            self._sha.update(body)
            self._hashed.append((len(memoryview(body)), crc))
            return True

    def covers(self, number: int, size: int, crc: int) -> bool:
        """True if part ``number`` was hashed with bytes of this size and CRC32."""
        with self._lock:
            return number <= len(self._hashed) and self._hashed[number - 1] == (size, crc)

    def restart(self, parts: int, read_part: Callable[[int], Buffer]) -> None:
        """Hash parts 1..``parts`` again from scratch, reading them with ``read_part``: the bytes
        hashed after them are no longer the file's. Each part read must still be the one the
        digest knew (same size and CRC32), else the file is changing under the finalize pass."""
        sha = hashlib.sha256()
        hashed: list[tuple[int, int]] = []
        for number in range(1, parts + 1):
            body = read_part(number)
            seen = (len(memoryview(body)), crc32_of(body))
            if not self.covers(number, *seen):
                raise FileChangedWhileHashing(f"part {number} changed while the file was hashed")
            sha.update(body)
            hashed.append(seen)
        with self._lock:
            self._sha, self._hashed = sha, hashed

    def hexdigest(self) -> str:
        with self._lock:
            return self._sha.hexdigest()


class FinalizeHasher:
    """Completes a FileDigest over the final layout during the finalize pass.

    Every part of the layout is submitted in order; one worker thread takes them in that order and
    hashes what the digest does not cover. ``submit`` returns when the caller may let go of the
    body (the future is done); ``finish`` makes the digest cover exactly ``parts`` parts.
    """

    def __init__(self, digest: FileDigest, read_part: Callable[[int], Buffer]) -> None:
        self._digest = digest
        self._read_part = read_part
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tailup-sha256")

    def __enter__(self) -> FinalizeHasher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        # Pending work is only hashing of bodies nobody waits for any more: drop it.
        self._pool.shutdown(wait=False, cancel_futures=True)

    def submit(self, number: int, body: Buffer, crc: int) -> asyncio.Future[None]:
        return asyncio.wrap_future(self._pool.submit(self._take, number, body, crc))

    async def finish(self, parts: int) -> str:
        await asyncio.wrap_future(self._pool.submit(self._trim, parts))
        return self._digest.hexdigest()

    def _take(self, number: int, body: Buffer, crc: int) -> None:
        digest = self._digest
        if digest.covers(number, len(memoryview(body)), crc):
            return
        if digest.parts >= number:
            # This part changed since it was hashed: everything hashed from it on is stale.
            digest.restart(number - 1, self._read_part)
        if not digest.offer(number, body, crc):
            raise AssertionError(f"part {number} offered out of order")  # submit() is ordered

    def _trim(self, parts: int) -> None:
        # The file shrank to a part boundary: the digest covers parts past the new end.
        if self._digest.parts > parts:
            self._digest.restart(parts, self._read_part)
