"""Filesystem events as the supervisor sees them, independent of how they were observed."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path


class EventKind(enum.Enum):
    DISCOVERED = "discovered"  # present, history unknown: startup scan, moved in, new folder
    CREATED = "created"
    MODIFIED = "modified"  # may have changed: opened (inotify) or changed since the last poll
    CLOSED = "closed"  # closed after writing (inotify IN_CLOSE_WRITE): the writer is gone
    DELETED = "deleted"
    MOVED = "moved"  # path -> dest_path; either side may be outside the include globs
    ROOT_GONE = "root_gone"  # a watched folder itself was removed or moved away


@dataclass(frozen=True, slots=True)
class FileEvent:
    kind: EventKind
    path: Path
    dest_path: Path | None = None
    # For DISCOVERED only: True if some process holds the file open for writing, False if none
    # does, None when it cannot be told (no /proc, no permission, polling mode).
    writer_open: bool | None = None
