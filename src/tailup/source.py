"""Reading the source file: off the event loop, never modifying it, errors translated."""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import stat as stat_mod
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from tailup.body import PART_BUFFERS, PartBody
from tailup.errors import SourceError, SourceGone, SourceStalled, SourceUnreadable
from tailup.identity import FileIdentity
from tailup.integrity import crc32_update

if TYPE_CHECKING:
    from typing_extensions import Buffer

# What a network mount answers while its server is away or has restarted: it passes.
_PASSING_ERRNOS = frozenset(
    {
        errno.EIO,
        errno.ESTALE,
        errno.ETIMEDOUT,
        errno.ENOTCONN,
        errno.EHOSTDOWN,
        errno.EHOSTUNREACH,
        errno.ENETDOWN,
        errno.ENETUNREACH,
        errno.ECONNRESET,
        errno.ECONNABORTED,
        errno.EAGAIN,
        errno.EINTR,
    }
)


@dataclass(frozen=True, slots=True)
class FileStat:
    size: int
    mtime_ns: int
    device: int
    inode: int
    birth_ns: int = 0  # 0: the file system keeps no birth time
    # Its names (hard links): past 1, a stream whose name goes may go on under another
    # (tailup.rules.names). Not part of what the file is.
    links: int = field(default=1, compare=False)

    def same_file(self, device: int, inode: int, birth_ns: int = 0) -> bool:
        """The same inode life: same number and, where both are known, the same birth time."""
        if (self.device, self.inode) != (device, inode):
            return False
        return not (self.birth_ns and birth_ns and self.birth_ns != birth_ns)


def translate_os_error(path: Path, exc: OSError) -> SourceError | SourceStalled:
    if isinstance(exc, FileNotFoundError):
        return SourceGone(f"{path} no longer exists")
    if isinstance(exc, PermissionError):
        return SourceUnreadable(f"{path} cannot be read: permission denied")
    if exc.errno in _PASSING_ERRNOS:
        return SourceStalled(f"{path} cannot be read now: {exc.strerror} (retrying)")
    if exc.errno == errno.ELOOP:
        return SourceUnreadable(f"{path} is a symbolic link; links are not uploaded")
    return SourceUnreadable(f"{path} cannot be read: {exc.strerror}")


def stat_file(path: Path) -> FileStat:
    """Stat without following a final symlink's target silently: links are not sources."""
    try:
        st = _statx(path)
    except OSError as exc:
        raise translate_os_error(path, exc) from exc
    if not stat_mod.S_ISREG(st.mode):
        raise SourceUnreadable(f"{path} is not a regular file")
    return FileStat(st.size, st.mtime_ns, st.device, st.inode, st.birth_ns, st.links)


def inode_generation(path: Path, inode: int) -> int:
    """The inode generation (FS_IOC_GETVERSION), -1 where the file system keeps none or the path
    is no longer ``inode``. It costs an open (~10 us), and an open is an inotify event tailup
    itself watches: call it only when the birth time cannot tell (tailup.identity.needs_generation)
    or for a new stream's record, never on every event."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        # Not readable, or gone: the identity goes without it; the stream that reads the file
        # reports the reason (an unreadable file must fail on its stream, not vanish here).
        return -1
    try:
        if os.fstat(fd).st_ino != inode:
            return -1
        raw = fcntl.ioctl(fd, _FS_IOC_GETVERSION, b"\0" * 8)
        return int(struct.unpack("l", raw)[0] & 0xFFFFFFFF)
    except OSError:
        return -1  # ENOTTY: no generation here (tmpfs, overlayfs, most FUSE)
    finally:
        os.close(fd)


def file_identity(st: FileStat, generation: int = -1) -> FileIdentity:
    return FileIdentity(st.device, st.inode, st.birth_ns, generation)


# _IOR('v', 1, long) on 64-bit Linux.
_FS_IOC_GETVERSION = 0x80087601


@dataclass(frozen=True, slots=True)
class _RawStat:
    mode: int
    size: int
    mtime_ns: int
    device: int
    inode: int
    birth_ns: int
    links: int = 1


class _StatxTimestamp(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_int64), ("tv_nsec", ctypes.c_uint32), ("_r", ctypes.c_int32)]


class _Statx(ctypes.Structure):
    # struct statx (linux/stat.h), 256 bytes.
    _fields_ = [
        ("mask", ctypes.c_uint32),
        ("blksize", ctypes.c_uint32),
        ("attributes", ctypes.c_uint64),
        ("nlink", ctypes.c_uint32),
        ("uid", ctypes.c_uint32),
        ("gid", ctypes.c_uint32),
        ("mode", ctypes.c_uint16),
        ("_pad", ctypes.c_uint16),
        ("ino", ctypes.c_uint64),
        ("size", ctypes.c_uint64),
        ("blocks", ctypes.c_uint64),
        ("attributes_mask", ctypes.c_uint64),
        ("atime", _StatxTimestamp),
        ("btime", _StatxTimestamp),
        ("ctime", _StatxTimestamp),
        ("mtime", _StatxTimestamp),
        ("rdev_major", ctypes.c_uint32),
        ("rdev_minor", ctypes.c_uint32),
        ("dev_major", ctypes.c_uint32),
        ("dev_minor", ctypes.c_uint32),
        ("_spare", ctypes.c_uint64 * 14),
    ]


_AT_FDCWD = -100
_AT_SYMLINK_NOFOLLOW = 0x100
_STATX_BASIC_STATS = 0x7FF
_STATX_BTIME = 0x800


def _load_statx() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    # Python 3.11 has no os.statx; glibc >= 2.28 has statx(). Without it: no birth time.
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        func = libc.statx
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint, ctypes.c_void_p]
    func.restype = ctypes.c_int
    return func


_STATX = _load_statx()


def _statx(path: Path) -> _RawStat:
    if _STATX is None:
        return _plain_stat(path)
    buf = _Statx()
    rc = _STATX(
        _AT_FDCWD,
        os.fsencode(path),
        _AT_SYMLINK_NOFOLLOW,
        _STATX_BASIC_STATS | _STATX_BTIME,
        ctypes.byref(buf),
    )
    if rc != 0:
        code = ctypes.get_errno()
        if code == errno.ENOSYS:
            return _plain_stat(path)
        raise OSError(code, os.strerror(code), str(path))
    birth = buf.btime.tv_sec * 1_000_000_000 + buf.btime.tv_nsec if buf.mask & _STATX_BTIME else 0
    return _RawStat(
        buf.mode,
        buf.size,
        buf.mtime.tv_sec * 1_000_000_000 + buf.mtime.tv_nsec,
        os.makedev(buf.dev_major, buf.dev_minor),
        buf.ino,
        birth,
        buf.nlink,
    )


def _plain_stat(path: Path) -> _RawStat:
    st = os.stat(path, follow_symlinks=False)
    return _RawStat(st.st_mode, st.st_size, st.st_mtime_ns, st.st_dev, st.st_ino, 0, st.st_nlink)


def read_range_blocking(path: Path, start: int, length: int, device: int, inode: int) -> PartBody:
    """Bytes [start, start+length) of the file (fewer when it is shorter), read in this thread
    straight into the buffer that will be sent. Raises SourceGone if the path now names a
    different file."""
    fd = _open_checked(path, device, inode)
    try:
        return _read_into(fd, start, length)
    except OSError as exc:
        raise translate_os_error(path, exc) from exc
    finally:
        os.close(fd)


_SCRATCH = threading.local()
SCRATCH_BYTES = 1024 * 1024


def crc32_of_range_blocking(
    path: Path, start: int, length: int, device: int, inode: int
) -> tuple[int, int]:
    """(bytes read, CRC32) of [start, start+length), through a small buffer of this thread's:
    checking a part that needs no upload costs no part-sized buffer, no budget, no page faults."""
    return hash_range_blocking(path, start, length, device, inode, None)


class _Hash(Protocol):
    def update(self, data: Buffer, /) -> None: ...


def hash_range_blocking(
    path: Path, start: int, length: int, device: int, inode: int, sha: _Hash | None
) -> tuple[int, int]:
    """crc32_of_range_blocking, the bytes fed to the hashlib object ``sha`` as well (the
    SHA-256 that follows a published object, tailup.stream.finalize)."""
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
                if sha is not None:
                    sha.update(view[:count])
                got += count
    except OSError as exc:
        raise translate_os_error(path, exc) from exc
    finally:
        os.close(fd)
    return got, crc


def _open_checked(path: Path, device: int, inode: int) -> int:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError as exc:
        raise translate_os_error(path, exc) from exc
    try:
        st = os.fstat(fd)
    except OSError as exc:
        os.close(fd)
        raise translate_os_error(path, exc) from exc
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
