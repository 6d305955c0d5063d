"""Reading the source file: off the event loop, never modifying it, errors translated."""

from __future__ import annotations

import asyncio
import errno
import os
import stat as stat_mod
import threading
from dataclasses import dataclass
from pathlib import Path

from tailup.body import PART_BUFFERS, PartBody
from tailup.errors import SourceGone, SourceUnreadable
from tailup.integrity import crc32_update


@dataclass(frozen=True, slots=True)
class FileStat:
    size: int
    mtime_ns: int
    device: int
    inode: int

    def same_file(self, device: int, inode: int) -> bool:
        return (self.device, self.inode) == (device, inode)


def stat_file(path: Path) -> FileStat:
    """Stat without following a final symlink's target silently: links are not sources."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError as exc:
        raise SourceGone(f"{path} no longer exists") from exc
    except PermissionError as exc:
        raise SourceUnreadable(f"{path} cannot be read: permission denied") from exc
    except OSError as exc:
        raise SourceUnreadable(f"{path} cannot be read: {exc.strerror}") from exc
    if not stat_mod.S_ISREG(st.st_mode):
        raise SourceUnreadable(f"{path} is not a regular file")
    return FileStat(st.st_size, st.st_mtime_ns, st.st_dev, st.st_ino)


def read_range_blocking(path: Path, start: int, length: int, device: int, inode: int) -> PartBody:
    """Bytes [start, start+length) of the file (fewer when it is shorter), read in this thread
    straight into the buffer that will be sent. Raises SourceGone if the path now names a
    different file."""
    fd = _open_checked(path, device, inode)
    try:
        return _read_into(fd, start, length)
    except OSError as exc:
        raise SourceUnreadable(f"{path} cannot be read: {exc.strerror}") from exc
    finally:
        os.close(fd)


_SCRATCH = threading.local()
SCRATCH_BYTES = 1024 * 1024


def crc32_of_range_blocking(
    path: Path, start: int, length: int, device: int, inode: int
) -> tuple[int, int]:
    """(bytes read, CRC32) of [start, start+length), through a small buffer of this thread's:
    checking a part that needs no upload costs no part-sized buffer, no budget, no page faults."""
    scratch: bytearray | None = getattr(_SCRATCH, "buffer", None)
    if scratch is None:
        scratch = _SCRATCH.buffer = bytearray(SCRATCH_BYTES)
    fd = _open_checked(path, device, inode)
    crc, got = 0, 0
    try:
        with memoryview(scratch) as view:
            while got < length:
                count = os.preadv(fd, [view[: min(SCRATCH_BYTES, length - got)]], start + got)
                if count == 0:
                    break
                crc = crc32_update(view[:count], crc)
                got += count
    except OSError as exc:
        raise SourceUnreadable(f"{path} cannot be read: {exc.strerror}") from exc
    finally:
        os.close(fd)
    return got, crc


def _open_checked(path: Path, device: int, inode: int) -> int:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError as exc:
        raise SourceGone(f"{path} no longer exists") from exc
    except PermissionError as exc:
        raise SourceUnreadable(f"{path} cannot be read: permission denied") from exc
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise SourceUnreadable(f"{path} is a symbolic link; links are not uploaded") from exc
        raise SourceUnreadable(f"{path} cannot be read: {exc.strerror}") from exc
    try:
        st = os.fstat(fd)
    except OSError as exc:
        os.close(fd)
        raise SourceUnreadable(f"{path} cannot be read: {exc.strerror}") from exc
    if (st.st_dev, st.st_ino) != (device, inode):
        os.close(fd)
        raise SourceGone(f"{path} was replaced by another file")
    return fd


def _read_into(fd: int, start: int, length: int) -> PartBody:
    body = PART_BUFFERS.take(length)
    got = 0
    with memoryview(body) as view:
        while got < length:
            count = os.preadv(fd, [view[got:]], start + got)
            if count == 0:
                break  # the file is shorter than asked: the caller compares lengths
            got += count
    if got < length:
        del body[got:]
    return body


async def read_range(path: Path, start: int, length: int, *, device: int, inode: int) -> PartBody:
    """`read_range_blocking` in a worker thread."""
    return await asyncio.to_thread(read_range_blocking, path, start, length, device, inode)
