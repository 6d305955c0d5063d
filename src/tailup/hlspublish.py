"""--hls (or a [[watch]] table's hls): publishing the playlists of the HLS folders (the shell
around tailup.rules.hls).

A playlist is not streamed as a recording: each time its recorder rewrites it (ffmpeg writes
``x.m3u8.tmp`` and renames it over ``x.m3u8``), its bytes are read and put in place at its key,
once every file it names inside the watched folder is in S3. Segments are ordinary recordings
keyed by their path below the folder; their verified completion (or, for one this daemon did
not see complete, an object of the file's size at its key) is what "in S3" means here. A
playlist waiting for segments is published from the completion of its last missing one.
"""

from __future__ import annotations

import asyncio
import zlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import structlog

from tailup.errors import RetryableError, SourceError, SourceStalled, TailupError
from tailup.objectoptions import ObjectOptions
from tailup.rules.hls import (
    PLAYLIST_CONTENT_TYPE,
    Named,
    Publish,
    hls_key,
    may_publish,
    named_files,
)
from tailup.s3 import MultipartStore

log = structlog.get_logger("tailup.hls")
# Completions remembered apart from the playlists that name them (a bound on memory: an older
# one a playlist names later is looked up in S3 instead).
RECENT_KEPT = 10_000
RETRY_S = 2.0  # a playlist whose read or PUT failed for a passing reason is tried again then

Io = Callable[..., Awaitable[Any]]


@dataclass(slots=True)
class _Pending:
    """A playlist's newest bytes, not yet published: the files it waits for."""

    body: bytes
    missing: set[Path]
    inside: frozenset[Path]  # every file it names inside the folder


class HlsPublisher:
    def __init__(
        self,
        store: MultipartStore,
        *,
        prefix_of: Callable[[Path], str],
        options_of: Callable[[Path], ObjectOptions | None],
        io: Io,
        root_of: Callable[[Path], Path | None],
    ) -> None:
        self._store = store
        """``root_of``: the HLS folder holding a path (None: it is in none, and no playlist of
        its is published); ``prefix_of`` and ``options_of``: such a folder's key prefix and how
        its objects are stored (its [[watch]] table's, else the global settings)."""
        self._prefix_of = prefix_of
        self._options_of = options_of
        self._io = io
        self._root_of = root_of
        self._tasks: set[asyncio.Task[None]] = set()
        # What is known in S3: recent completions (segments, playlists), and what each published
        # playlist names (so that memory follows the playlists, not the hours recorded).
        self._in_s3: OrderedDict[Path, None] = OrderedDict()
        self._named_by: dict[Path, frozenset[Path]] = {}
        self._published: dict[Path, bytes] = {}
        self._pending: dict[Path, _Pending] = {}
        self._warned: dict[Path, tuple[str, ...]] = {}
        self._locks: dict[Path, asyncio.Lock] = {}
        self.puts = 0  # playlists put, for tests and logs

    async def playlist_changed(self, path: Path) -> None:
        """The recorder wrote the playlist at ``path`` anew: publish it now or once its files
        are in S3."""
        root = self._root_of(path)
        if root is None:
            return
        async with self._lock(path):
            try:
                body = await self._io(_read_or_none, path)
            except SourceStalled as exc:
                log.warning("playlist not readable yet", path=str(path), reason=str(exc))
                self.spawn(self._later(path))
                return
            except SourceError as exc:
                log.warning("playlist not readable", path=str(path), reason=str(exc))
                return
            if body is None:  # renamed or deleted since: its own event follows
                self._pending.pop(path, None)
                return
            if body == self._published.get(path):
                self._pending.pop(path, None)
                return
            rel = _relpath(path, root)
            named = named_files(body.decode("utf-8", "replace"), rel)
            self._warn_outside(path, named)
            # Less what completed during the lookups (file_in_s3 found no pending entry then):
            # no await between this and the entry, so no completion is missed.
            missing = {p for p in await self._missing(root, named) if not self._known(p)}
            inside = frozenset(root / p for p in named.inside)
            if missing:
                self._pending[path] = _Pending(body, missing, inside)
                log.debug("playlist waits for its segments", path=str(path), missing=len(missing))
                return
            self._pending.pop(path, None)
            await self._put(path, root, body, inside)

    async def file_in_s3(self, path: Path) -> None:
        """``path``'s object is in S3 (a segment's verified completion): publish what waited
        for it alone."""
        self._note_in_s3(path)
        for playlist, pending in list(self._pending.items()):
            if path not in pending.missing:
                continue
            async with self._lock(playlist):
                now = self._pending.get(playlist)
                if now is None or path not in now.missing:
                    continue  # published or rewritten meanwhile
                now.missing.discard(path)
                if now.missing:
                    continue
                del self._pending[playlist]
                root = self._root_of(playlist)
                if root is not None:
                    await self._put(playlist, root, now.body, now.inside)

    def forget(self, path: Path) -> None:
        """The playlist was deleted or moved away: nothing of it waits any more (what S3 has
        stays, as a recording's object does)."""
        self._pending.pop(path, None)

    def waiting(self) -> dict[Path, frozenset[Path]]:
        return {p: frozenset(w.missing) for p, w in self._pending.items()}

    async def _missing(self, root: Path, named: Named) -> set[Path]:
        """What the playlist names that is not known in S3, looked up there once (a segment
        completed before this daemon started): an object at its key of the file's size."""
        known = frozenset(p for p in named.inside if self._known(root / p))
        decision = may_publish(named, known)
        if isinstance(decision, Publish):
            return set()
        missing: set[Path] = set()
        for rel in decision.missing:
            if await self._found_in_s3(root / rel, hls_key(rel, self._prefix_of(root))):
                self._note_in_s3(root / rel)
            else:
                missing.add(root / rel)
        return missing

    async def _found_in_s3(self, path: Path, key: str) -> bool:
        try:
            info = await self._store.head_object(key)
            size = await self._io(_size_or_none, path)
        except TailupError:
            return False  # not known there: its completion is waited for
        return info is not None and (size is None or info.size == size)

    async def _put(self, path: Path, root: Path, body: bytes, inside: frozenset[Path]) -> None:
        key = hls_key(_relpath(path, root), self._prefix_of(root))
        try:
            await self._store.put_object(
                key,
                body,
                zlib.crc32(body),
                PLAYLIST_CONTENT_TYPE,
                options=self._options_of(root),
            )
        except RetryableError as exc:
            log.warning("playlist not published; retrying", path=str(path), reason=str(exc))
            self.spawn(self._later(path))
            return
        except TailupError as exc:
            log.error("playlist not published", path=str(path), key=key, reason=str(exc))
            return
        self._published[path] = body
        self._named_by[path] = inside
        for named in inside:
            self._in_s3.pop(named, None)  # remembered as this playlist's now
        self._note_in_s3(path)  # a master playlist may wait for this one
        self.puts += 1
        log.info("playlist published", path=str(path), key=key, bytes=len(body))
        self.spawn(self.file_in_s3(path))

    async def _later(self, path: Path) -> None:
        await asyncio.sleep(RETRY_S)
        await self.playlist_changed(path)

    def _warn_outside(self, path: Path, named: Named) -> None:
        if not named.outside or self._warned.get(path) == named.outside:
            return
        self._warned[path] = named.outside
        log.warning(
            "playlist names files outside the watched folder: not uploaded by tailup, not "
            "waited for",
            path=str(path),
            outside=list(named.outside),
        )

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` on its own (a completion's publish, a retry), held until it ends."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    def _known(self, path: Path) -> bool:
        return path in self._in_s3 or any(path in named for named in self._named_by.values())

    def _note_in_s3(self, path: Path) -> None:
        self._in_s3[path] = None
        self._in_s3.move_to_end(path)
        while len(self._in_s3) > RECENT_KEPT:
            self._in_s3.popitem(last=False)

    def _lock(self, path: Path) -> asyncio.Lock:
        return self._locks.setdefault(path, asyncio.Lock())


def _relpath(path: Path, root: Path) -> PurePosixPath:
    return PurePosixPath(path.relative_to(root).as_posix())


def _read_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc}") from exc


def _size_or_none(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None
