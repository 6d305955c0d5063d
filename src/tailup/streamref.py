"""Which stream a person means: `abort`, `retry` and `verify` take a stream id, a unique prefix
of one (at least 4 characters: the 12 that `status` shows are enough), or the file's path.

The decision is pure (``resolve_reference``, table-tested); ``find_stream`` does the lookups in
Redis: the id itself, the path in each scope's path index, and the ids of the scopes' live and
ended indexes that begin with the prefix (matched by Redis, never read whole into the client).
"""

from __future__ import annotations

import enum
import os
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tailup.checkpoint import CheckpointStore
from tailup.errors import PermanentError
from tailup.keys import index_path
from tailup.model import StreamRecord
from tailup.selection import scope_label

# What a person reads: stream ids are 16 hex digits; 12 tell apart any two of a million records
# but one pair in ~500 (a longer prefix is shown where two shown ids share their first 12).
SHORT_ID_LENGTH = 12
# The shortest prefix taken: fewer would name several streams on any busy node.
MIN_PREFIX = 4
# Candidates an ambiguous prefix lists, at most.
LISTED = 10


def short_id(stream_id: str) -> str:
    return stream_id[:SHORT_ID_LENGTH]


def short_ids(stream_ids: Iterable[str]) -> dict[str, str]:
    """Each id's shortest prefix of at least SHORT_ID_LENGTH characters that no other of these
    ids begins with (the id itself when it is a prefix of another)."""
    ids = sorted(set(stream_ids))
    shown: dict[str, str] = {}
    for index, sid in enumerate(ids):
        # In sorted order the longest common prefix is with a neighbour.
        common = 0
        for other in ids[max(0, index - 1) : index] + ids[index + 1 : index + 2]:
            same = next(
                (i for i, (a, b) in enumerate(zip(sid, other, strict=False)) if a != b),
                min(len(sid), len(other)),
            )
            common = max(common, same)
        shown[sid] = sid[: max(SHORT_ID_LENGTH, common + 1)]
    return shown


class Found(enum.Enum):
    ONE = "one"
    AMBIGUOUS = "ambiguous"
    NONE = "none"
    TOO_SHORT = "too short"  # no id, no path, and too short to be taken as a prefix


@dataclass(frozen=True, slots=True)
class Resolution:
    found: Found
    candidates: tuple[str, ...] = ()

    @property
    def stream_id(self) -> str:
        if self.found is not Found.ONE:
            raise ValueError(f"no single stream: {self.found.value}")
        return self.candidates[0]


def resolve_reference(
    given: str, *, ids: Collection[str], path_hits: Collection[str] = ()
) -> Resolution:
    """The stream ``given`` names among ``ids`` (a superset of what may match: the lookup's
    prefix matches, or every id in a test) and ``path_hits`` (the streams the path indexes name
    for ``given`` as a file's path). An exact id wins; otherwise every stream whose id begins
    with ``given`` (at least MIN_PREFIX characters, any case) or that the path names is a
    candidate, and only one candidate is an answer: nothing is ever picked among several."""
    text = given.strip()
    if not text:
        return Resolution(Found.NONE)
    if text in ids:
        return Resolution(Found.ONE, (text,))
    matches = set(path_hits)
    if len(text) >= MIN_PREFIX:
        low = text.lower()
        matches.update(sid for sid in ids if sid.lower().startswith(low))
    if len(matches) == 1:
        return Resolution(Found.ONE, tuple(matches))
    if matches:
        return Resolution(Found.AMBIGUOUS, tuple(sorted(matches)))
    return Resolution(Found.TOO_SHORT if len(text) < MIN_PREFIX else Found.NONE)


class StreamNotFound(PermanentError):
    """No stream has this id, an id beginning with it, or this path."""


class AmbiguousStream(PermanentError):
    """Several streams' ids begin with this prefix (or the path and a prefix name different
    streams)."""

    def __init__(self, message: str, candidates: Sequence[str]) -> None:
        super().__init__(message)
        self.candidates = tuple(candidates)


def where_looked(scopes: Sequence[str]) -> str:
    return " and ".join(scope_label(s) for s in scopes)


def not_found_message(given: str, resolution: Resolution, scopes: Sequence[str]) -> str:
    what = "is not a stream id, a prefix of one or a recording's path"
    if resolution.found is Found.TOO_SHORT:
        what += f" (a prefix needs at least {MIN_PREFIX} characters)"
    return (
        f"no stream matches {given!r}: it {what} among the live and ended records of "
        f"{where_looked(scopes)} (see `tailup status`; --shared-watch for a shared folder's)"
    )


def ambiguous_message(given: str, records: Sequence[StreamRecord], total: int) -> str:
    """The candidates as a person picks among them: the short id that tells each apart, its
    state and path."""
    shown = short_ids(r.stream_id for r in records)
    lines = [f"{given!r} matches {total} streams; give more of the id (or the path):"]
    width = max((len(v) for v in shown.values()), default=SHORT_ID_LENGTH)
    for record in records:
        sid = shown[record.stream_id].ljust(width)
        lines.append(f"  {sid}  {record.state.value:<10}  {record.path}")
    if total > len(records):
        lines.append(f"  ... and {total - len(records)} more")
    return "\n".join(lines)


def path_forms(given: str) -> list[str]:
    """The absolute paths ``given`` may name as a file: as written, and with its links
    resolved (a record keeps the path the daemon saw under its watched folder)."""
    if not given.strip():
        return []
    absolute = os.path.abspath(os.path.expanduser(given))
    forms = [absolute, os.path.realpath(absolute)]
    return list(dict.fromkeys(forms))


def index_entries(given: str, scope: str, share_roots: Mapping[str, Path]) -> list[str]:
    """The path index entries ``given`` may be in ``scope``: an absolute path in a node's
    scope; in a shared folder's, the path below the folder (as this host mounts it)."""
    forms = path_forms(given)
    if not scope.startswith("share:"):
        return forms
    root = share_roots.get(scope)
    if root is None:
        return []
    entries = [index_path(scope, form, str(root)) for form in forms]
    entries += [index_path(scope, form, os.path.realpath(root)) for form in forms]
    # A path outside the folder stays absolute: no shared entry is ever one.
    return [e for e in dict.fromkeys(entries) if not os.path.isabs(e)]


async def find_stream(
    store: CheckpointStore,
    given: str,
    scopes: Sequence[str],
    share_roots: Mapping[str, Path] | None = None,
) -> StreamRecord:
    """The record of the one stream ``given`` names in ``scopes`` (tailup.status.status_scopes:
    the node's, then each shared folder's, ``share_roots`` maps those to their folders here).
    StreamNotFound or AmbiguousStream otherwise."""
    text = given.strip()
    exact = await store.load(text) if text else None
    if exact is not None:
        return exact[0]
    roots = share_roots or {}
    path_hits: set[str] = set()
    prefixed: set[str] = set()
    for scope in scopes:
        for entry in index_entries(text, scope, roots):
            hit = await store.stream_for_path(entry, scope)
            if hit is not None:
                path_hits.add(hit)
        if len(text) >= MIN_PREFIX:
            # Ids are lowercase hex: a prefix typed in capitals means the same.
            for prefix in dict.fromkeys([text, text.lower()]):
                prefixed.update(await store.find_stream_ids(prefix, scope))
    resolution = resolve_reference(text, ids=prefixed, path_hits=path_hits)
    if resolution.found is Found.ONE:
        loaded = await store.load(resolution.stream_id)
        if loaded is not None:
            return loaded[0]
        # Its record expired since its index entry was read: nothing to act on.
        resolution = Resolution(Found.NONE)
    if resolution.found is Found.AMBIGUOUS:
        records = await store.load_records(list(resolution.candidates[:LISTED]))
        total = len(resolution.candidates)
        raise AmbiguousStream(ambiguous_message(given, records, total), resolution.candidates)
    raise StreamNotFound(not_found_message(given, resolution, scopes))
