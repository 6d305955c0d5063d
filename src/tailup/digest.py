"""The whole file's SHA-256 (for metadata.json), computed while the parts are read for upload.

Hashing the whole file at finalize puts a full pass of SHA-256 (~1.5 GB/s on one core) between the
writer's close and the verified object. Instead the stream offers each part to a FileDigest as it
reads it for upload, in order, and the finalize pass, which re-reads every part anyway to compare
its CRC32, hashes only what the digest does not cover yet: the tail, or, when a part changed since
it was hashed (muxers patch their header at close), the file again from the start. That last case
is the MP4/MKV/MOV one: their patch is in part 1, so nothing hashed while recording can be kept.

The finalize hashing runs in worker threads (``FinalizeHasher``), in part order, while the stream
reads and compares the next parts: hashlib releases the GIL, so on two cores the SHA-256 overlaps
the re-read instead of following it.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from tailup.errors import RetryableError
from tailup.integrity import crc32_of
from tailup.offload import DEFAULT_TIMEOUT_S, run_blocking

T = TypeVar("T")

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

    def replace(self, sha: Any, hashed: list[tuple[int, int]]) -> None:
        """Cover exactly the parts ``hashed`` (size, crc32), hashed into ``sha``."""
        with self._lock:
            self._sha, self._hashed = sha, list(hashed)

    def hexdigest(self) -> str:
        with self._lock:
            return self._sha.hexdigest()


# One pool for the finalize hashing of every stream: SHA-256 is CPU-bound, so threads beyond the
# cores only cost memory (a thread per finalizing stream made 100 at once in bench c).
_POOL = ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="tailup-sha256")


class FinalizeHasher:
    """Completes a FileDigest over the final layout during the finalize pass.

    Every part of the layout is submitted in order; the jobs run in the shared pool one after the
    other (each waits for the one before), hashing what the digest does not cover. The future
    ``submit`` returns is done when the caller may let go of the body; ``finish`` makes the digest
    cover exactly ``parts`` parts.
    """

    def __init__(
        self,
        digest: FileDigest,
        read_part: Callable[[int], Buffer],
        *,
        read_timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self._digest = digest
        self._read_part = read_part
        # Parts read again (a restart) are read on the file-I/O pool within this deadline, not
        # on the SHA-256 pool: a hung mount stalls this finalize, not every stream's hashing.
        self._read_timeout_s = read_timeout_s
        self._jobs: list[asyncio.Task[None]] = []

    def __enter__(self) -> FinalizeHasher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        # Jobs still waiting only hash bodies nobody waits for any more: drop them.
        for job in self._jobs:
            job.cancel()

    def submit(self, number: int, body: Buffer, crc: int) -> asyncio.Future[None]:
        return self._chain(functools.partial(self._take, number, body, crc))

    async def finish(self, parts: int) -> str:
        await self._chain(functools.partial(self._trim, parts))
        return self._digest.hexdigest()

    def _chain(self, work: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        previous = self._jobs[-1] if self._jobs else None
        job = asyncio.ensure_future(_after(previous, work))
        self._jobs = [j for j in self._jobs if not j.done()]
        self._jobs.append(job)
        return job

    async def _take(self, number: int, body: Buffer, crc: int) -> None:
        digest = self._digest
        if digest.covers(number, len(memoryview(body)), crc):
            return
        if digest.parts >= number:
            # This part changed since it was hashed: everything hashed from it on is stale.
            await self._restart(number - 1)
        if not await _in_pool(digest.offer, number, body, crc):
            raise AssertionError(f"part {number} offered out of order")  # submit() is ordered

    async def _trim(self, parts: int) -> None:
        # The file shrank to a part boundary: the digest covers parts past the new end.
        if self._digest.parts > parts:
            await self._restart(parts)

    async def _restart(self, parts: int) -> None:
        """FileDigest.restart with each part read off the SHA-256 pool, within the deadline."""
        sha = hashlib.sha256()
        hashed: list[tuple[int, int]] = []
        for number in range(1, parts + 1):
            body = await run_blocking(
                self._read_part,
                number,
                timeout_s=self._read_timeout_s,
                what=f"reading part {number} again to hash it",
            )
            seen = await _in_pool(_feed, sha, body)
            if not self._digest.covers(number, *seen):
                raise FileChangedWhileHashing(f"part {number} changed while the file was hashed")
            hashed.append(seen)
        self._digest.replace(sha, hashed)


def _feed(sha: Any, body: Buffer) -> tuple[int, int]:
    sha.update(body)
    return len(memoryview(body)), crc32_of(body)


async def _in_pool(call: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(_POOL, functools.partial(call, *args))


async def _after(previous: asyncio.Task[None] | None, work: Callable[[], Awaitable[None]]) -> None:
    if previous is not None:
        await previous  # its failure (or cancellation) is ours too: the order is broken
    await work()
