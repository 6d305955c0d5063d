"""Which name a recording goes by when it has two, or lost the one its record knows: pure.

A recording is one inode life (tailup.identity); a name is only where it is now. Two cases give
it a name its record does not know:

- A hard link (``ln a.ts b.ts``): the file has a second name. Its stream keeps its record and
  its name; the second name is an *alias* of the running stream (tailup.rules.admission says so
  when it finds the recording under it), never a reason to move the record under the stream
  (N10). When the stream's name is deleted or moved out, an alias that still holds the very
  same inode life carries the stream on, as a rename would: the upload is not aborted while its
  bytes are still reachable under a watched name, and it completes once. A name the core never
  saw (a link made before the stream started, or while tailup was down) is looked for when the
  file had more than one name at the stream's last look.
- A rename while tailup was down: at start, a live record whose path no longer holds its file
  is resumed where a watched path holds that same inode life (N6), found by a walk of the
  watched folders, rather than at its old path, where it would end as gone and be sent again.

Only the same life counts (``Life.SAME``: the birth time or the inode generation tells). Where
the file system keeps neither, an inode number alone may be a new file's; the name is not
trusted then, and the recording ends at its path as before.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

from tailup.identity import FileIdentity, Life, same_life

__all__ = ["SEARCH", "Search", "name_gone", "resume_at", "surviving_name"]


@dataclass(frozen=True, slots=True)
class Search:
    """Walk the watched folders for the recording's inode: its path does not hold its file."""


SEARCH = Search()


def surviving_name(
    recorded: FileIdentity,
    names: Mapping[Path, FileIdentity | None],
    *,
    taken: Collection[Path] = (),
) -> Path | None:
    """The name that holds the recording now, among ``names`` (each with what it holds now,
    None when it holds nothing): the first, in path order (the same answer every time), that
    holds the very same inode life and is not ``taken`` by another stream. None: no name
    holds it."""
    for path in sorted(names):
        seen = names[path]
        if path in taken or seen is None:
            continue
        if same_life(recorded, seen) is Life.SAME:
            return path
    return None


def name_gone(
    recorded: FileIdentity,
    names: Mapping[Path, FileIdentity | None],
    *,
    links: int,
    searched: bool,
    taken: Collection[Path] = (),
) -> Path | Search | None:
    """Where a running stream goes on when its name is deleted or moved out of the watched
    folders. ``names``: its aliases (or, ``searched``, the watched files with its inode number)
    and what each holds now; ``links``: how many names the file had at the stream's last look.

    The name that holds the same life; else, if the file had another name the aliases do not
    account for, SEARCH (walk the watched folders for it); else None: the stream ends."""
    found = surviving_name(recorded, names, taken=taken)
    if found is not None:
        return found
    if links > 1 and not searched:
        return SEARCH
    return None


def resume_at(
    path: Path,
    recorded: FileIdentity,
    at_path: FileIdentity | None,
    found: Mapping[Path, FileIdentity | None] | None = None,
    *,
    taken: Collection[Path] = (),
) -> Path | Search:
    """Where a live record of ``path`` is resumed at start. ``at_path``: what its path holds
    now (None: nothing). ``found``: the watched files with its inode number and what each holds
    (None: not searched yet; SEARCH asks for it).

    Its path, while that may still hold its file (the stream's resume compares the bytes);
    else the name that holds the same life; else its path again, where it ends as gone or
    replaced."""
    if at_path is not None and same_life(recorded, at_path) is not Life.OTHER:
        return path
    if found is None:
        return SEARCH
    elsewhere = {p: seen for p, seen in found.items() if p != path}
    return surviving_name(recorded, elsewhere, taken=taken) or path
