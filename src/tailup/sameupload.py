"""Whether a path still holds the very file that was uploaded. Pure: no I/O.

The after-upload action (delete, move:DIR) works on a *path*; between the verified completion
and the unlink, a recorder may remove the name and start a new recording there (the SHA-256
pass that follows a large object takes ~0.6 s per GiB). The action runs only on the file the
object was made from: the same device, inode and birth time, the same size (and, where known,
the same mtime). Anything else at the path is another recording, or this one grown.
"""

from __future__ import annotations

from dataclasses import dataclass

from tailup.model import StreamRecord
from tailup.source import FileStat


@dataclass(frozen=True, slots=True)
class UploadedFile:
    """The file a verified object was made from. ``birth_ns`` and ``mtime_ns`` 0: not known
    (not compared)."""

    device: int
    inode: int
    birth_ns: int
    size: int
    mtime_ns: int = 0

    @classmethod
    def of_record(cls, record: StreamRecord) -> UploadedFile:
        """A COMPLETED record's file: its identity and its size at completion."""
        return cls(
            record.device, record.inode, record.birth_ns, record.final_size, record.final_mtime_ns
        )

    @classmethod
    def of_stat(cls, st: FileStat, birth_ns: int) -> UploadedFile:
        return cls(st.device, st.inode, birth_ns or st.birth_ns, st.size, st.mtime_ns)


def holds_upload(expected: UploadedFile, now: FileStat | None) -> bool:
    """Whether the path, stated as ``now`` (None: nothing there), still holds ``expected``."""
    if now is None:
        return False
    if not now.same_file(expected.device, expected.inode, expected.birth_ns):
        return False
    if now.size != expected.size:
        return False
    return not (expected.mtime_ns and now.mtime_ns != expected.mtime_ns)
