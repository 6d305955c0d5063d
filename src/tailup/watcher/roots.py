"""The watch folders themselves: resolved and checked at start, looked at again to tell one gone
(deleted, moved away, replaced) or back, and the process-wide list of those not watched now."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Final

# ESTALE is not among them: an NFS failover returns it once, and the root is there again.
_ROOT_GONE_ERRNOS: Final = frozenset({errno.ENOENT, errno.ENOTDIR})
# Roots not watched now, in every Watcher of this process, with why: /healthz names them
# (tailup.server). A root that comes back is watched again and leaves it.
_UNWATCHED: dict[Path, str] = {}


def unwatched_roots() -> dict[Path, str]:
    """The watch folders not watched now (gone, moved away, replaced), with why."""
    return dict(_UNWATCHED)


def mark_gone(root: Path) -> None:
    _UNWATCHED[root] = "gone, moved away or replaced; watched again once it is back"


def mark_watched(root: Path) -> None:
    _UNWATCHED.pop(root, None)


def resolve_roots(roots: Sequence[Path]) -> dict[Path, tuple[int, int]]:
    """Resolved root -> (st_dev, st_ino); refuses missing, non-directory and nested roots."""
    resolved: dict[Path, tuple[int, int]] = {}
    for root in roots:
        try:
            path = root.resolve(strict=True)
            st = os.stat(path)
        except FileNotFoundError:
            raise FileNotFoundError(
                errno.ENOENT, "watch folder does not exist", str(root)
            ) from None
        if not stat.S_ISDIR(st.st_mode):
            raise NotADirectoryError(errno.ENOTDIR, "watch folder is not a directory", str(root))
        resolved[path] = (st.st_dev, st.st_ino)
    for a in resolved:
        for b in resolved:
            if a != b and b.is_relative_to(a):
                # Two watches on one file would report every event twice.
                raise ValueError(f"watch folders overlap: {b} is inside {a}")
    return resolved


def roots_back(roots: Iterable[Path]) -> dict[Path, tuple[int, int]]:
    """The roots that are directories again, with their identity now."""
    found: dict[Path, tuple[int, int]] = {}
    for root in roots:
        try:
            st = os.stat(root)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode):
            found[root] = (st.st_dev, st.st_ino)
    return found


def vanished(roots: dict[Path, tuple[int, int]]) -> list[Path]:
    gone: list[Path] = []
    for root, identity in roots.items():
        try:
            st = os.stat(root)
        except OSError as exc:
            # Other errors (EIO, EACCES on a flaky share) are not proof: the next check retries.
            if exc.errno in _ROOT_GONE_ERRNOS:
                gone.append(root)
            continue
        if (st.st_dev, st.st_ino) != identity or not stat.S_ISDIR(st.st_mode):
            gone.append(root)
    return gone
