"""Filesystem events -> asyncio: what happens to video files under the watched folders.

`Watcher` runs a watchdog observer (inotify, or polling for network filesystems) recursively on
every root and hands `FileEvent`s to asyncio. On start it scans the roots and reports every file
already there as DISCOVERED, before any live event.

Policies (the supervisor relies on them):

- Only *candidates* are reported: regular files whose name matches an include glob
  (case-insensitive), that are not hidden and not another tool's partial download
  (see `is_candidate`). A directory named like a video (`clip.mp4/`) is not a file.
- Symlinks are never followed and never reported: a link may point outside the watched tree, and
  its target can change under us, so what we upload would not be what is in the folder. The startup
  scan does not descend into symlinked directories, and polling uses lstat for the same reason.
- CLOSED is the kernel's close-after-write only. Read-only closes are dropped (even at the inotify
  mask): `+faststart` reopens the file read-only before its final close-after-write.
- MODIFIED means "may have changed", not "was written". With inotify it is reported when a file is
  *opened* (a writer's open may truncate it, or reopen a finished file to append), never per
  write: inotify reports every write() (a recorder writing 32 KiB at a time makes thousands a
  second), and carrying each one through watchdog and asyncio cost ~160 us of CPU, 5 CPU s per GiB
  at 100 MB/s (bench/RESULTS.md). A stream watches its own file's size instead. Our own reads
  open the files too: the supervisor ignores MODIFIED for a file it is uploading. Polling reports
  MODIFIED once per snapshot in which the file changed.
- A file or directory that appears by being moved in from outside the watched tree is reported as
  DISCOVERED (with `writer_open`), like the startup scan, not as CREATED: nobody is known to be
  writing it. A file moved out of the tree is reported as DELETED.
- Files found in a folder just created (scanned when its watch is added) are DISCOVERED too:
  `mkdir -p` then record at once can write and close a file before inotify watches the folder,
  and then no CLOSED ever comes. DISCOVERED thus means "present, history unknown".
- A root that is deleted, moved away or replaced (another inode, checked every
  `root_check_interval_s`) is reported once as ROOT_GONE; later events under it are dropped.
  inotify reports no event at all when a watched folder is moved, and keeps reporting its files
  under their old paths, hence the periodic check.
- Events are hints to reconcile, not a transaction log: a file created while the startup scan runs
  is both DISCOVERED and CREATED; a move between two roots arrives as DELETED + DISCOVERED in
  either order; consecutive identical events not yet consumed are merged (as watchdog does).
- `writer_open=False` means no *visible* process holds the file open for writing. A writer in
  another PID namespace (another container) or on another host is invisible: keep idle timers.

Roots are resolved (absolute, symlinks resolved) at start: event paths are under `Watcher.roots`.

The package, by concern: `scan` (which files are candidates; the startup scan), `procfs` (who
holds a file open for writing), `translate` (watchdog events -> FileEvents), `roots` (a root gone
or back; `unwatched_roots`) and `core` (the Watcher).
"""

from __future__ import annotations

from tailup.config.values import DEFAULT_INCLUDE
from tailup.watcher.core import Watcher, WatcherError
from tailup.watcher.procfs import writers_open
from tailup.watcher.roots import unwatched_roots
from tailup.watcher.scan import is_candidate

__all__ = [
    "DEFAULT_INCLUDE",
    "Watcher",
    "WatcherError",
    "is_candidate",
    "unwatched_roots",
    "writers_open",
]
