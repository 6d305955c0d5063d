"""A recording's other names (tailup.rules.names carried out): a running stream's aliases (hard
links, N10), and a live record whose file was renamed while tailup was down (N6)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from pathlib import Path

import structlog

from tailup.errors import RetryableError, SourceError, SourceStalled
from tailup.identity import FileIdentity, record_identity
from tailup.model import StreamRecord
from tailup.rules.names import Search, name_gone, resume_at
from tailup.source import stat_file
from tailup.stream import Stream
from tailup.supervisor.state import SupervisorState
from tailup.watcher.scan import files_with_inodes

log = structlog.get_logger("tailup.supervisor")


class _Stalled(Exception):
    """The file system did not answer: what a name holds is not known."""


class Names(SupervisorState):
    def _note_alias(self, stream_id: str, path: Path, *, closed: bool) -> None:
        """``path`` is a second name of the running stream ``stream_id`` (tailup.rules.admission);
        a close under it is its writer's close, checked like one under the stream's own name."""
        stream = self._by_id.get(stream_id)
        if stream is None:
            return  # ended meanwhile
        aliases = self._aliases.setdefault(stream_id, set())
        if path not in aliases:
            aliases.add(path)
            log.info("second name of a running stream", stream_id=stream_id, path=str(path))
        if closed:
            self._closes.note(path, stream)

    async def _carry_to_alias(self, stream: Stream, old: Path) -> bool:
        """The stream's name ``old`` was deleted or moved out: if another watched name still
        holds the same inode life (an alias, or found by a walk when the file had more names
        than its aliases), the stream goes on under it (its bytes are still there, written
        through either name) instead of being aborted (N10). Whether it did."""
        record, recorded = stream.record, record_identity(stream.record)
        taken = set(self._streams)
        try:
            aliases = self._aliases.get(stream.stream_id, set()) - {old}
            names = await self._what_names_hold(sorted(aliases), record)
            new = name_gone(recorded, names, links=stream.links, searched=False, taken=taken)
            if isinstance(new, Search):
                others = [p for p in await self._walk_for(record) if p != old]
                names = await self._what_names_hold(others, record)
                new = name_gone(recorded, names, links=stream.links, searched=True, taken=taken)
        except _Stalled:
            return False
        if not isinstance(new, Path):
            return False
        self._aliases.get(stream.stream_id, set()).discard(new)
        # Its writer's close comes under the name it opened the file by, the one just gone.
        self._former[old] = stream
        stream.on_moved(new)  # the stream writes its new path to Redis itself
        self._streams[new] = stream
        # The stream is carried already: an event routed again must not find it half-moved. A
        # path entry left behind names a record of another path now, which reads as none.
        with contextlib.suppress(RetryableError):
            await self._forget_path(old, stream.stream_id)
        log.info(
            "stream goes on under its file's other name",
            stream_id=stream.stream_id,
            old=str(old),
            new=str(new),
        )
        return True

    def _former_closed(self, path: Path) -> bool:
        """A close under a name a stream went on from (N10): its writer's, told to it. Whether
        it was (then there is nothing else at the name to look at)."""
        stream = self._former.pop(path, None)
        if stream is None or stream not in self._running:
            return False
        self._closes.note(path, stream)
        return True

    async def _follow_renamed(self, record: StreamRecord) -> StreamRecord:
        """A live record about to be resumed: if its path no longer holds its file and another
        watched name holds that very inode life (renamed while tailup was down), the record
        follows there first, so the stream resumes instead of ending as gone (N6)."""
        path, recorded = Path(record.path), record_identity(record)
        try:
            (at_path,) = (await self._what_names_hold([path], record)).values()
            where = resume_at(path, recorded, at_path, taken=self._streams)
            if isinstance(where, Search):
                held = await self._what_names_hold(await self._walk_for(record), record)
                where = resume_at(path, recorded, at_path, held, taken=self._streams)
        except _Stalled:
            return record  # the stream itself waits for its file system
        if isinstance(where, Search) or where == path:
            return record
        await self._checkpoints.update(record.stream_id, path=str(where), path_ended=False)
        await self._forget_path(path, record.stream_id)
        log.info(
            "live recording found under another name",
            stream_id=record.stream_id,
            old=str(path),
            new=str(where),
        )
        return record.with_changes(path=str(where), path_ended=False)

    async def _walk_for(self, record: StreamRecord) -> list[Path]:
        """Every file of the record's watched folders with its inode number."""
        try:
            found = await self._io(files_with_inodes, self._roots_of(record), {record.inode})
        except SourceStalled as exc:  # a hung mount, or a tree too large to walk in time
            raise _Stalled(str(exc)) from exc
        return found.get(record.inode, [])

    def _roots_of(self, record: StreamRecord) -> list[Path]:
        """The watched folders a record's file may be in: its scope's."""
        if record.scope.startswith("share:"):
            return [root for root, (_, scope) in self._shares.items() if scope == record.scope]
        return [root for root in self._roots if root not in self._shares]

    async def _what_names_hold(
        self, paths: Iterable[Path], record: StreamRecord
    ) -> dict[Path, FileIdentity | None]:
        """What each name holds now, told apart as finely as ``record`` needs (tailup.identity);
        None for a name that holds nothing usable."""
        held: dict[Path, FileIdentity | None] = {}
        for path in paths:
            try:
                held[path] = await self._identity(path, await self._io(stat_file, path), record)
            except SourceError:
                held[path] = None
            except SourceStalled as exc:
                raise _Stalled(str(exc)) from exc
        return held
