"""Reading the source file: off the event loop, never modifying it, errors translated."""

from __future__ import annotations

import asyncio
import errno
import os
import stat as stat_mod
from dataclasses import dataclass
from pathlib import Path

from tailup.errors import SourceGone, SourceUnreadable


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


def _read_range_blocking(path: Path, start: int, length: int, device: int, inode: int) -> bytes:
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
        if (st.st_dev, st.st_ino) != (device, inode):
            raise SourceGone(f"{path} was replaced by another file")
        chunks: list[bytes] = []
        offset, remaining = start, length
        while remaining > 0:
            chunk = os.pread(fd, remaining, offset)
            if not chunk:
                break  # the file is shorter than asked: the caller compares lengths
            chunks.append(chunk)
            offset += len(chunk)
            remaining -= len(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)
    except OSError as exc:
        raise SourceUnreadable(f"{path} cannot be read: {exc.strerror}") from exc
    finally:
        os.close(fd)


async def read_range(path: Path, start: int, length: int, *, device: int, inode: int) -> bytes:
    """Bytes [start, start+length) of the file, read in a worker thread. Fewer bytes come back when
    the file is shorter. Raises SourceGone if the path now names a different file."""
    return await asyncio.to_thread(_read_range_blocking, path, start, length, device, inode)
