"""Which files are candidates, and the scan of a folder for them (the startup scan, a folder moved
in or just created, a root that came back). Runs on worker threads: it does I/O."""

from __future__ import annotations

import fnmatch
import os
import stat
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Final

import structlog

log = structlog.get_logger("tailup.watcher")

# "." covers hidden files and LibreOffice-style ".~lock" files; "~$" is Office's owner file.
_SKIPPED_PREFIXES: Final = (".", "~$")
_PARTIAL_SUFFIXES: Final = (".part", ".tmp", ".crdownload", ".partial", ".download", "~")


def is_candidate(path: Path, include: Sequence[str]) -> bool:
    """True if `path`'s name looks like a recording to upload (the name only: no I/O)."""
    name = path.name
    if not name or name.startswith(_SKIPPED_PREFIXES):
        return False
    folded = name.casefold()
    if folded.endswith(_PARTIAL_SUFFIXES):
        return False
    return any(fnmatch.fnmatchcase(folded, pattern.casefold()) for pattern in include)


def is_symlink(path: Path) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(path).st_mode)
    except OSError:
        return False  # gone already: its DELETED follows


def skip_if_symlink(path: Path) -> None:
    """Say once, when a link appears, why it is not uploaded (the policy in tailup.watcher)."""
    if is_symlink(path):
        log.info("watcher.symlink_not_followed", path=str(path))


def is_regular_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def scan_tree(top: Path, include: Sequence[str], *, recursive: bool = True) -> list[Path]:
    """Candidate regular files under `top`, sorted. Symlinked dirs are listed, not entered."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(top, onerror=_log_walk_error):
        if not recursive:
            dirnames.clear()
        for name in filenames:
            path = Path(dirpath, name)
            if is_candidate(path, include) and is_regular_file(path):
                found.append(path)
            elif is_candidate(path, include):
                skip_if_symlink(path)
    found.sort()
    return found


def _log_walk_error(exc: OSError) -> None:
    log.warning("watcher.scan_error", path=exc.filename, error=str(exc))


def files_with_inodes(tops: Sequence[Path], inodes: Collection[int]) -> dict[int, list[Path]]:
    """Regular files under ``tops`` whose inode number is one of ``inodes``, any name (a
    running stream follows its file to any name in the watched folders), sorted. The inode
    number comes with each directory entry, so the walk stats only what it finds (a live
    record's file renamed while tailup was down: tailup.rules.names)."""
    found: dict[int, list[Path]] = {}
    pending = list(tops)
    while pending:
        folder = pending.pop()
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(Path(entry.path))
                    elif entry.inode() in inodes and entry.is_file(follow_symlinks=False):
                        found.setdefault(entry.inode(), []).append(Path(entry.path))
        except OSError as exc:
            log.warning("watcher.scan_error", path=str(folder), error=str(exc))
    return {inode: sorted(set(paths)) for inode, paths in found.items()}  # roots may nest
