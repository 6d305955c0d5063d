"""Events in: the queue, lanes, deferral, and the routing actions (tailup.routing) carried out."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
from pathlib import Path
from typing import TypeVar

import structlog

from tailup.errors import (
    RetryableError,
    SourceError,
    SourceStalled,
    TailupError,
)
from tailup.events import EventKind, FileEvent
from tailup.identity import (
    Life,
    record_identity,
    same_life,
)
from tailup.lanes import lane_of
from tailup.model import (
    StreamRecord,
)
from tailup.routing import Action, route
from tailup.routing import Facts as RouteFacts
from tailup.rules.hls import is_playlist
from tailup.rules.writers import Sight, seen_writer_open
from tailup.source import (
    stat_file,
)
from tailup.supervisor.state import (
    ROUTE_RETRY_S,
    SupervisorState,
    containing_root,
)
from tailup.watcher import Watcher, writers_open

log = structlog.get_logger("tailup.supervisor")
T = TypeVar("T")


class Dispatch(SupervisorState):
    async def _forward(self, watcher: Watcher) -> None:
        async for event in watcher:
            self._queue.put_nowait(event)

    async def _dispatch_until(self, stop: asyncio.Event) -> None:
        stop_wait = asyncio.ensure_future(stop.wait())
        try:
            while True:
                get = asyncio.ensure_future(self._queue.get())
                done, _ = await asyncio.wait({get, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
                if get not in done:
                    get.cancel()
                    return
                event = get.result()
                assert self._lanes is not None
                await self._lanes.submit(
                    lane_of(event), functools.partial(self._route_or_retry, event)
                )
        finally:
            stop_wait.cancel()

    async def _route_or_retry(self, event: FileEvent) -> None:
        if await self._unchanged_since_dropped(event):
            return
        try:
            await self._route(event)
            self.events_routed += 1
        except RetryableError as exc:
            # Redis or S3 unreachable, or the file system hung, while starting a stream: try
            # again shortly. One deferred event per path: a later one says more.
            log.warning("event deferred", path=str(event.path), reason=str(exc))
            self._defer(event)
        except TailupError as exc:
            log.error("event dropped", path=str(event.path), reason=str(exc))
            with contextlib.suppress(SourceError, SourceStalled):
                st = await self._io(stat_file, event.path)
                self._dropped[event.path] = (st.size, st.mtime_ns)

    async def _unchanged_since_dropped(self, event: FileEvent) -> bool:
        """True for an open of a file whose start failed for good (S3 refused a permission, say)
        and that has not changed since: starting a stream reads the file, which opens it (IN_OPEN,
        routed as MODIFIED), which would start it again, fail again, and so on as fast as the
        loop runs. It is tried again once it changed, at any other event, or at the next start."""
        seen = self._dropped.pop(event.path, None)
        if seen is None or event.kind is not EventKind.MODIFIED:
            return False
        try:
            st = await self._io(stat_file, event.path)
        except (SourceError, SourceStalled):
            return False
        if (st.size, st.mtime_ns) != seen:
            return False
        self._dropped[event.path] = seen
        return True

    def _defer(self, event: FileEvent) -> None:
        self._deferred[event.path] = merge_deferred(self._deferred.get(event.path), event)
        if self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_later(
                ROUTE_RETRY_S, self._flush_deferred
            )

    def _flush_deferred(self) -> None:
        self._flush_handle = None
        deferred, self._deferred = self._deferred, {}
        for event in deferred.values():
            self._queue.put_nowait(event)

    def _sight(self, path: Path) -> Sight:
        """How much of the writers of ``path`` this daemon's /proc can see (tailup.rules.writers):
        decided per scope."""
        root = containing_root(path, self._roots)
        return Sight(
            proc_sees_all=self._proc_sees_all,
            shared=root is not None and root in self._shares,
            polling=self._settings.poll,
        )

    def _writer_open(self, path: Path, found: bool | None) -> bool | None:
        """A /proc answer for ``path`` as a FileEvent's writer_open: "none visible" is None (not
        a close) where /proc cannot see every writer."""
        return seen_writer_open(found, self._sight(path))

    async def _route(self, event: FileEvent) -> None:
        if self._hls is not None and await self._playlist_event(event):
            return
        if event.kind is EventKind.DISCOVERED and event.writer_open is False:
            event = dataclasses.replace(event, writer_open=self._writer_open(event.path, False))
        dest, roots = event.dest_path, self._roots
        dest_root = containing_root(dest, roots) if dest is not None else None
        facts = RouteFacts(
            has_stream=event.path in self._streams,
            candidate=self._folders.is_candidate(event.path, containing_root(event.path, roots)),
            dest_inside=dest_root is not None,
            dest_candidate=dest is not None and self._folders.is_candidate(dest, dest_root),
        )
        for action in route(event, facts):
            await self._carry_out(action, event)

    async def _playlist_event(self, event: FileEvent) -> bool:
        """An HLS folder's playlist (--hls, or its table's hls): its events go to the publisher
        (tailup.hlspublish), never to a stream. True when the event was such a playlist's; in
        another folder a playlist is a file like any other (its include decides)."""
        assert self._hls is not None
        dest = event.dest_path
        hls_source = is_playlist(event.path.name) and self._hls_root(event.path) is not None
        if dest is not None and is_playlist(dest.name) and self._hls_root(dest) is not None:
            # ffmpeg's x.m3u8.tmp renamed over x.m3u8: the new playlist, whole.
            if hls_source:
                self._hls.forget(event.path)
            await self._hls.playlist_changed(dest)
            return True
        if not hls_source:
            return False
        if event.kind in (EventKind.DELETED, EventKind.MOVED):
            self._hls.forget(event.path)
        elif _playlist_whole(event, polling=self._settings.poll):
            await self._hls.playlist_changed(event.path)
        return True

    async def _carry_out(self, action: Action, event: FileEvent) -> None:
        path = event.path
        if action is Action.ROOT_GONE:
            self._root_gone(path)
        elif action is Action.TELL_GONE:
            await self._tell_gone(event)
        elif action is Action.END_PATH:
            await self._end_path(path)
        elif action is Action.TELL_CLOSED:
            # Not awaited here: the next events (the other files' closes) go on being routed,
            # and the closes that arrive meanwhile share the next /proc pass.
            self._closes.note(path, self._streams[path])
        elif action is Action.CARRY_STREAM:
            assert event.dest_path is not None
            await self._carry_stream(path, event.dest_path)
        elif action is Action.CARRY_RECORD:
            assert event.dest_path is not None
            await self._carry_record(path, event.dest_path)
        elif action is Action.OPEN:
            if event.kind is EventKind.CLOSED and (lingering := self._lingering.get(path)):
                lingering.set()  # this open looks at the file: the lingering look can stop
            if event.kind is EventKind.CREATED:
                self._former.pop(path, None)  # another file has the name now
            elif event.kind is EventKind.CLOSED and self._former_closed(path):
                return  # the writer of a stream gone on under another name (N10)
            closed = event.kind is EventKind.CLOSED or (
                event.kind is EventKind.DISCOVERED and event.writer_open is False
            )
            await self._open_stream(path, writer_closed=closed)
        elif action is Action.OPEN_DEST:
            assert event.dest_path is not None
            dest = event.dest_path
            found = await self._io(writers_open, [dest])
            await self._open_stream(
                dest, writer_closed=self._writer_open(dest, found[dest]) is False
            )

    def _root_gone(self, root: Path) -> None:
        log.error("watched folder removed", folder=str(root))
        for path, stream in list(self._streams.items()):
            if path.is_relative_to(root):
                del self._streams[path]
                stream.on_gone(f"the watched folder {root} was removed")

    async def _tell_gone(self, event: FileEvent) -> None:
        # The stream leaves the path at once: a file created there next is a new recording,
        # even on the same inode number.
        stream = self._streams.pop(event.path)
        if await self._carry_to_alias(stream, event.path):
            return  # a hard link still holds its file: not an end (N10)
        if event.kind is EventKind.DELETED:
            stream.on_gone(f"{event.path} was deleted before its upload completed")
        else:
            stream.on_gone(f"{event.path} was moved out of the watched folders")
        self._ending[event.path] = (stream, asyncio.Event())
        await self._checkpoints.update(stream.stream_id, path_ended=True)

    async def _end_path(self, path: Path) -> None:
        previous = await self._latest_record(path)
        if previous is not None:
            await self._checkpoints.update(previous.stream_id, path_ended=True)

    async def _carry_stream(self, old: Path, new: Path) -> None:
        stream = self._streams.pop(old)
        stream.on_moved(new)  # the stream writes its new path to Redis itself
        self._streams[new] = stream
        await self._forget_path(old, stream.stream_id)
        log.info("stream follows its file", stream_id=stream.stream_id, old=str(old), new=str(new))

    async def _carry_record(self, old: Path, new: Path) -> None:
        """A recording renamed when no stream runs for it (completed, or ended): its record
        follows, if the file at ``new`` is that recording."""
        previous = await self._latest_record(old)
        if previous is None or previous.stream_id in self._by_id:
            return
        try:
            seen = await self._identity(new, await self._io(stat_file, new), previous)
        except SourceError:
            return
        if same_life(record_identity(previous), seen) is not Life.SAME:
            return
        await self._checkpoints.update(previous.stream_id, path=str(new), path_ended=False)
        await self._forget_path(old, previous.stream_id)
        log.info("recording renamed", stream_id=previous.stream_id, old=str(old), new=str(new))

    async def _latest_record(self, path: Path) -> StreamRecord | None:
        return (await self._path_history(path))[0]


def _playlist_whole(event: FileEvent, *, polling: bool) -> bool:
    """A playlist written in place is whole once its writer closed it (an open may see a partial
    write). Polling sees no close: a change seen is the playlist (recorders write a playlist
    whole and rename it over the old one, as ffmpeg does)."""
    if event.kind is EventKind.CLOSED:
        return True
    if event.kind is EventKind.DISCOVERED:
        return event.writer_open is not True
    return polling and event.kind in (EventKind.CREATED, EventKind.MODIFIED)


# Which of two events for one path says more, when both wait for a retry.
_WEIGHT = {
    EventKind.MODIFIED: 0,
    EventKind.CREATED: 1,
    EventKind.DISCOVERED: 2,
    EventKind.CLOSED: 3,
}


def merge_deferred(earlier: FileEvent | None, later: FileEvent) -> FileEvent:
    """The one event to retry for a path: a close is not lost behind a later open, and a delete
    or a move (which end or carry the recording) wins over what came before."""
    if earlier is None or later.kind not in _WEIGHT or earlier.kind not in _WEIGHT:
        return later
    return later if _WEIGHT[later.kind] >= _WEIGHT[earlier.kind] else earlier
