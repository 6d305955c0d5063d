"""Part bodies: the bytes of one part, read from disk once and sent without copies.

A part is read straight into a :class:`PartBody` (a ``bytearray``), hashed there, and handed to the
S3 client as the request body. Why not ``bytes``: botocore wraps a ``bytes`` body in ``BytesIO``;
aiohttp then copies the whole part (``getbuffer`` unshares it), reads it back in 64 KiB pieces
(another copy, and one event-loop turn per piece), and on Python before 3.12.9 joins headers and
body into yet another copy. Measured on loopback (bench/RESULTS.md): ~0.5 CPU s per GiB.

A ``bytearray`` is a valid blob for botocore, which leaves it as is, and the aiohttp payload
registered below for PartBody writes it to the connection as 1 MiB memoryview slices: the only copy
left is the kernel's. Registration is by exact type, so no other ``bytearray`` is affected.

Under a bandwidth limit (--bwlimit, tailup.bandwidth) a body carries the daemon's ``throttle``, and
the payload asks it before each slice, in the throttle's smaller chunks: the bytes leave at the
limit as they are sent, retries included. A body without one (no --bwlimit) is sent as before.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import threading
from typing import Any, Protocol

import aiohttp.payload
from aiohttp.abc import AbstractStreamWriter

SLICE_BYTES = 1024 * 1024  # big enough for few loop turns, small enough to drain smoothly


class Throttle(Protocol):
    """What a body's payload asks of the bandwidth limit (tailup.bandwidth.BandwidthLimit)."""

    @property
    def limiting(self) -> bool:
        """False while the limit is off (a timetable's off hours): full-size slices then."""

    @property
    def chunk_bytes(self) -> int: ...

    async def take(self, n: int) -> None:
        """Return once ``n`` more bytes may be sent."""


class PartBody(bytearray):
    """One part's bytes. Never changed once handed to the S3 client (retries resend it)."""

    # Set by the sender when it hands the body over (tailup.stream.sending); None: unlimited.
    throttle: Throttle | None = None


class PartBodyPayload(aiohttp.payload.Payload):
    _autoclose = True  # memory only: nothing to close

    def __init__(self, value: PartBody, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("content_type", "application/octet-stream")
        super().__init__(value, *args, **kwargs)
        self._size = len(value)

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return bytes(self._value).decode(encoding, errors)

    async def as_bytes(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return bytes(self._value)

    async def write(self, writer: AbstractStreamWriter) -> None:
        await self.write_with_length(writer, None)

    async def write_with_length(
        self, writer: AbstractStreamWriter, content_length: int | None
    ) -> None:
        view = memoryview(self._value)
        end = len(view) if content_length is None else min(content_length, len(view))
        throttle = self._value.throttle
        if throttle is None:
            for start in range(0, end, SLICE_BYTES):
                await writer.write(view[start : min(start + SLICE_BYTES, end)])
            return
        await write_throttled(writer, view, end, throttle)


async def write_throttled(
    writer: AbstractStreamWriter, view: memoryview, end: int, throttle: Throttle
) -> None:
    """``view[:end]`` in chunks the throttle lets through; whole slices while it is off. Asked
    again before every chunk, so a new rate applies within the part being sent."""
    start = 0
    while start < end:
        if throttle.limiting:
            stop = min(start + throttle.chunk_bytes, end)
            await throttle.take(stop - start)
        else:
            stop = min(start + SLICE_BYTES, end)
        await writer.write(view[start:stop])
        start = stop


aiohttp.payload.register_payload(PartBodyPayload, PartBody)


class PartReader:
    """A PartBody as the binary stream awscrt signs from, over the same memory.

    botocore's CRT signer (used whenever awscrt is installed, as it is for CRC64NVME) wraps every
    request body in ``BytesIO(body)`` before signing: a copy of the whole part (and a fresh 8 MiB
    mapping, page-faulted) on the event loop for each part, even with UNSIGNED-PAYLOAD, where the
    stream is never read. 10-15 % of the daemon's samples in bench c. This reader is what the
    signer gets instead: no copy, and when the payload is signed it reads the part in place."""

    def __init__(self, body: PartBody) -> None:
        self._view = memoryview(body)
        self._pos = 0

    def __len__(self) -> int:
        return len(self._view)

    def readinto(self, into: memoryview) -> int:
        n = min(len(into), len(self._view) - self._pos)
        into[:n] = self._view[self._pos : self._pos + n]
        self._pos += n
        return n

    def read(self, size: int = -1) -> bytes:
        end = len(self._view) if size < 0 else min(len(self._view), self._pos + size)
        data = bytes(self._view[self._pos : end])
        self._pos = max(self._pos, end)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        base = (0, self._pos, len(self._view))[whence]
        self._pos = max(0, min(len(self._view), base + offset))
        return self._pos

    def tell(self) -> int:
        return self._pos

    def close(self) -> None:
        """Let go of the part's memory: a buffer still viewed is never reused (BufferPool)."""
        self._view.release()


def _sign_part_bodies_in_place() -> bool:
    """Make botocore's CRT S3 signer read a PartBody through a PartReader (True if it could)."""
    from botocore import auth

    current = auth.AUTH_TYPE_MAPS.get("s3v4")
    if current is None or current.__module__ != "botocore.crt.auth":
        return False  # no awscrt: botocore's own signer takes the body as it is

    class PartBodySigner(current):  # type: ignore[misc, valid-type]
        def add_auth(self, request: Any) -> None:
            data = request.data
            if type(data) is not PartBody:
                super().add_auth(request)
                return
            reader = PartReader(data)
            request.data = reader
            try:
                super().add_auth(request)
            finally:
                request.data = data
                reader.close()

    auth.AUTH_TYPE_MAPS["s3v4"] = PartBodySigner
    return True


SIGNS_IN_PLACE = _sign_part_bodies_in_place()


class BufferPool:
    """Part buffers kept for the next part of the same size.

    A fresh buffer costs more than reading into it: bytearray() zero-fills it, and each new page
    faults in (~0.35 CPU s per GiB, more than the read itself). A buffer comes back only when
    nothing but the caller holds it (a memoryview of it, such as a socket write not done yet,
    holds a reference too), so what is reused is never still being sent. Idle buffers never add
    to the budget's memory: at most ``max_idle_bytes`` are kept, and all are freed when a size
    they cannot serve is asked for (a tail, another base size), before anything new is allocated.
    """

    def __init__(self, max_idle_bytes: int) -> None:
        self.max_idle_bytes = max_idle_bytes
        self._lock = threading.Lock()
        self._idle: dict[int, list[PartBody]] = {}
        self._idle_bytes = 0

    def take(self, size: int) -> PartBody:
        """A buffer of ``size`` bytes; its contents are stale: the caller overwrites them."""
        with self._lock:
            bucket = self._idle.get(size)
            if bucket:
                self._idle_bytes -= size
                return bucket.pop()
            self._idle.clear()
            self._idle_bytes = 0
        return PartBody(size)

    def give(self, body: PartBody) -> bool:
        """Keep ``body`` for reuse if the caller's reference is the last one; True if kept."""
        # References: the caller's, this parameter, and getrefcount's own argument.
        if sys.getrefcount(body) > 3:
            return False
        size = len(body)
        with self._lock:
            if self._idle_bytes + size > self.max_idle_bytes:
                return False
            self._idle.setdefault(size, []).append(body)
            self._idle_bytes += size
        return True


# One pool for the process, like the byte budget: 64 MiB idle at most (eight 8 MiB parts).
PART_BUFFERS = BufferPool(64 * 1024 * 1024)

_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


def return_part_memory_promptly() -> bool:
    """Make glibc give every part buffer back to the system when it is freed (True if it could).

    Part buffers are allocated in worker threads, so they land in several malloc arenas; once one
    is freed glibc raises its mmap threshold above the part size and later parts come from the
    arenas, which keep their high-water mark. Memory then grows well past the byte budget: peak
    RSS ~560 MiB for a 256 MiB budget with 100 streams (bench c), ~330 MiB with this. A fixed
    threshold of 1 MiB maps each part on its own and unmaps it when freed: a few page faults per
    part (~0.1 CPU s per GiB), memory that follows the budget.
    """
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, 1024 * 1024))
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
