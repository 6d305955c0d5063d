"""watchdog events -> FileEvents, on the observer thread (the policies are in tailup.watcher)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import structlog
from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileOpenedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)

from tailup.events import EventKind, FileEvent
from tailup.watcher.procfs import writers_open
from tailup.watcher.scan import (
    is_candidate,
    is_regular_file,
    is_symlink,
    scan_tree,
    skip_if_symlink,
)

log = structlog.get_logger("tailup.watcher")

# Asking watchdog for these classes only also narrows the inotify mask: no IN_MODIFY (one per
# write), IN_ACCESS or IN_CLOSE_NOWRITE (our own reads). IN_OPEN stands in for IN_MODIFY (see
# tailup.watcher). Polling has no per-write cost: it keeps its snapshot-based modified events.
INOTIFY_EVENTS: Final[tuple[type[FileSystemEvent], ...]] = (
    FileCreatedEvent,
    FileOpenedEvent,
    FileClosedEvent,
    FileDeletedEvent,
    FileMovedEvent,
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
)
POLLING_EVENTS: Final = (*INOTIFY_EVENTS, FileModifiedEvent)
_FILE_KINDS: Final[dict[type[FileSystemEvent], EventKind]] = {
    FileCreatedEvent: EventKind.CREATED,
    FileOpenedEvent: EventKind.MODIFIED,
    FileModifiedEvent: EventKind.MODIFIED,
    FileClosedEvent: EventKind.CLOSED,
    FileDeletedEvent: EventKind.DELETED,
}


def _to_path(raw: bytes | str) -> Path:
    return Path(os.fsdecode(raw))


@dataclass(frozen=True, slots=True)
class Translator:
    """Maps one watchdog event to FileEvents. Runs on the observer thread (it may do I/O)."""

    roots: frozenset[Path]
    include: tuple[str, ...]
    polling: bool

    def translate(self, event: FileSystemEvent) -> list[FileEvent]:
        if event.is_directory:
            return self._directory(event)
        if isinstance(event, FileMovedEvent):
            return self._moved(event)
        kind = _FILE_KINDS.get(type(event))
        # Synthetic creates are watchdog walking a directory moved in: _directory scans it instead.
        if kind is None or (kind is EventKind.CREATED and event.is_synthetic):
            return []
        path = _to_path(event.src_path)
        if not is_candidate(path, self.include):
            return []
        if kind is EventKind.CREATED and not is_regular_file(path):
            skip_if_symlink(path)
            # A symlink, or gone already (its MOVED or DELETED follows): lstat after the fact
            # cannot tell which, and a link renamed at once must not slip through.
            return []
        elif kind is not EventKind.DELETED and is_symlink(path):
            # Not "must be a regular file": a CLOSED followed at once by a rename must survive.
            return []
        return [FileEvent(kind, path)]

    def discovered(self, paths: Sequence[Path]) -> list[FileEvent]:
        # When polling, the writer may well be on another host of the network filesystem.
        writers = writers_open(paths) if paths and not self.polling else {}
        return [FileEvent(EventKind.DISCOVERED, p, writer_open=writers.get(p)) for p in paths]

    def _moved(self, event: FileSystemEvent) -> list[FileEvent]:
        # With generate_full_events, an empty side means "outside the watched tree".
        src = _to_path(event.src_path) if event.src_path else None
        dest = _to_path(event.dest_path) if event.dest_path else None
        if dest is not None and is_symlink(dest):
            log.info("watcher.symlink_not_followed", path=str(dest))
            return []
        if src is None and dest is not None:
            ok = is_candidate(dest, self.include) and is_regular_file(dest)
            return self.discovered([dest]) if ok else []
        if src is not None and dest is None:
            return [FileEvent(EventKind.DELETED, src)] if is_candidate(src, self.include) else []
        if src is None or dest is None:
            return []
        if is_candidate(src, self.include) or is_candidate(dest, self.include):
            return [FileEvent(EventKind.MOVED, src, dest_path=dest)]
        return []

    def _directory(self, event: FileSystemEvent) -> list[FileEvent]:
        src = _to_path(event.src_path) if event.src_path else None
        if src in self.roots and isinstance(event, DirDeletedEvent | DirMovedEvent):
            return [FileEvent(EventKind.ROOT_GONE, src)]
        if isinstance(event, DirMovedEvent) and src is None and event.dest_path:
            return self.discovered(scan_tree(_to_path(event.dest_path), self.include))
        if isinstance(event, DirCreatedEvent) and src is not None and self._scans_new_dirs(event):
            # inotify watches a new folder only once it exists: what was written into it before
            # (mkdir -p, then record at once) shows up as a bare CREATED, without its CLOSED.
            return self.discovered(scan_tree(src, self.include, recursive=False))
        return []

    def _scans_new_dirs(self, event: FileSystemEvent) -> bool:
        # Synthetic creates come from a folder moved in, scanned whole above. Polling has no race:
        # each snapshot lists the new folder's files as CREATED.
        return not (event.is_synthetic or self.polling)


class Bridge(FileSystemEventHandler):
    def __init__(
        self,
        translate: Callable[[FileSystemEvent], list[FileEvent]],
        deliver: Callable[[list[FileEvent]], None],
    ) -> None:
        super().__init__()
        self._translate = translate
        self._deliver = deliver

    def dispatch(self, event: FileSystemEvent) -> None:
        try:
            events = self._translate(event)
        except Exception:
            # Raising here would kill watchdog's dispatcher thread: every root would go silent.
            log.exception("watcher.translate_failed", event=repr(event))
            return
        if events:
            self._deliver(events)
