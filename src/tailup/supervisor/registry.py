"""The running streams and their outcomes: start, run, what follows an end (tailup.rules.outcomes),
close checks, drain."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
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
from tailup.model import (
    LIVE_STATES,
    PartRecord,
    StreamRecord,
    StreamState,
)
from tailup.rules.outcomes import LookAgain, Settled, WatchCompleted, after_look, after_outcome
from tailup.source import (
    stat_file,
)
from tailup.stream import Outcome, Stream, StreamDeps
from tailup.supervisor.state import (
    SupervisorState,
)
from tailup.watcher import writers_open

log = structlog.get_logger("tailup.supervisor")
T = TypeVar("T")


class Registry(SupervisorState):
    def _start(
        self,
        record: StreamRecord,
        parts: dict[int, PartRecord],
        *,
        writer_closed: bool,
        resumed: bool = False,
    ) -> None:
        assert self._group is not None, "streams start only while the supervisor runs"
        deps = self._deps_for(record)
        stream = Stream(deps, record, parts, writer_closed=writer_closed, resumed=resumed)
        superseded = self._streams.get(stream.path)
        if superseded is not None:
            # Routing never opens a path that has a stream; should it happen, the older stream
            # must not hold the path.
            superseded.on_gone(f"{record.path} is another file now")
        self._streams[stream.path] = stream
        self._unchanged.pop(stream.path, None)
        self._running.add(stream)
        self._by_id[record.stream_id] = stream
        task = self._group.create_task(self._run_stream(stream), name=f"stream-{record.stream_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _deps_for(self, record: StreamRecord) -> StreamDeps:
        """A stream keeps the bucket it started in (a resumed stream after --bucket changed). In
        a shared folder the writer may be on another host, out of this /proc's sight."""
        deps = self._folders.deps(Path(record.watch_root))  # its folder's own settings
        if record.bucket and record.bucket != self._settings.bucket:
            deps = dataclasses.replace(deps, store=self._store.for_bucket(record.bucket))
        shared = record.scope.startswith("share:")
        if shared or not self._sight(Path(record.path)).sees_every_writer:
            deps = dataclasses.replace(deps, proc_sees_all=False)
        return deps

    async def _run_stream(self, stream: Stream) -> None:
        try:
            outcome = await stream.run()
        except Exception:
            # A bug in one stream must not take the others down; it is logged with its traceback
            # and recorded, so that `tailup status` shows it rather than a stream forever live.
            log.exception("stream crashed", stream_id=stream.stream_id, path=str(stream.path))
            await self._record_crash(stream)
            outcome = Outcome.FAILED
        finally:
            self._running.discard(stream)
            if self._by_id.get(stream.stream_id) is stream:
                del self._by_id[stream.stream_id]
                self._aliases.pop(stream.stream_id, None)
                for name in [n for n, s in self._former.items() if s is stream]:
                    del self._former[name]
            if stream.stream_id not in self._by_id:
                # Ended or stopped: another node may take it at once (a shutdown), or finds it
                # ended. A claim lost to another node is let go of too (N13); no claim at all
                # (a node's own folder) costs nothing.
                with contextlib.suppress(TailupError):
                    await self._checkpoints.release_claim(stream.stream_id)
            if self._streams.get(stream.path) is stream:
                del self._streams[stream.path]
            for name, (ending, ended) in list(self._ending.items()):
                if ending is stream:
                    ended.set()  # its end is written, its key maybe given back
                    del self._ending[name]
        done = outcome in (Outcome.COMPLETED, Outcome.COMPLETED_WRITER_OPEN)
        if self._hls is not None and done and self._hls_root(Path(stream.record.path)):
            # An HLS folder's segment verified in S3: the playlists that waited for it may go up.
            self._hls.spawn(self._hls.file_in_s3(Path(stream.record.path)))
        follow = after_outcome(
            outcome,
            stopping=self._stopping,
            close_seen=stream.close_seen,
            path_taken=stream.path in self._streams,
        )
        if isinstance(follow, WatchCompleted):
            assert self._group is not None
            self._group.create_task(self._after_completion(stream.record, linger=follow.linger))
        elif isinstance(follow, LookAgain) and follow.closed:
            self._queue.put_nowait(FileEvent(EventKind.CLOSED, stream.path))
        elif isinstance(follow, LookAgain):
            try:
                found = await self._io(writers_open, [stream.path])
            except SourceStalled:
                found = {stream.path: None}
            writer_open = self._writer_open(stream.path, found[stream.path])
            event = FileEvent(EventKind.DISCOVERED, stream.path, writer_open=writer_open)
            self._queue.put_nowait(event)

    async def _after_completion(self, record: StreamRecord, *, linger: bool) -> None:
        """Events that reached the stream while it finished (an O_TRUNC rewrite right after its
        last look) are not lost: if the file is no longer what was completed, it is looked at
        again. ``linger``: it completed on idle while a writer held it; look again every idle
        timeout until the writer is gone (its later bytes are a new generation, its close
        runs the pending after-upload action)."""
        path = Path(record.path)
        closed = asyncio.Event()
        if linger:
            self._lingering[path] = closed
        try:
            await self._look_until_settled(record, path, linger=linger, closed=closed)
        finally:
            if self._lingering.get(path) is closed:
                del self._lingering[path]

    async def _look_until_settled(
        self, record: StreamRecord, path: Path, *, linger: bool, closed: asyncio.Event
    ) -> None:
        """Where /proc cannot see every writer (tailup.rules.writers) the writer is never known
        gone from it: only a close event (``closed``) or growth ends the lingering; the event's
        own look runs the pending action."""
        while not self._stopping and not closed.is_set():
            if path in self._streams:
                return  # a stream runs for the path again
            try:
                st = await self._io(stat_file, path)
                changed = (st.size, st.mtime_ns) != (record.final_size, record.final_mtime_ns)
                if after_look(changed=changed, linger=linger, writer_open=None) is Settled.DONE:
                    return  # the common case: one stat, no /proc pass
                # On the file's own root: this look comes back while a mount hangs.
                found = (await self._io(writers_open, [path], on=path))[path]
                writer_open = self._writer_open(path, found)
            except SourceError:
                return
            except SourceStalled:
                settled = Settled.WAIT  # a hung mount: the look is owed, not dropped
            else:
                settled = after_look(changed=changed, linger=linger, writer_open=writer_open)
            if settled is Settled.LOOK:
                event = FileEvent(EventKind.DISCOVERED, path, writer_open=writer_open)
                self._queue.put_nowait(event)
                return
            log.debug("completed while a writer may hold it: looked at again later", path=str(path))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._settings.idle_timeout):
                    await closed.wait()

    async def _drain(self) -> None:
        self._stopping = True
        self._closes.cancel()
        for stream in list(self._running):
            stream.stop()
        tasks = list(self._tasks)
        if not tasks:
            return
        log.info(
            "stopping: letting in-flight parts finish",
            streams=len(tasks),
            grace_s=self._settings.shutdown_grace,
        )
        _done, pending = await asyncio.wait(tasks, timeout=self._settings.shutdown_grace)
        for task in pending:
            task.cancel()
        if pending:
            log.warning(
                "grace expired: in-flight parts cut; they resume on next start",
                streams=len(pending),
            )

    async def _writers_open(self, paths: list[Path]) -> dict[Path, bool | None]:
        """Whether some process still has each file open for writing: one /proc pass for all of
        them, off the loop."""
        return await self._io(writers_open, paths)

    def _tell_closed(self, path: Path, stream: Stream) -> None:
        """The close of ``path`` was its last writer's. ``stream`` is told while it runs, also
        if it moved meanwhile (a rename right after the close: the same recording, and its
        close must not be lost); one whose file was deleted or replaced meanwhile ends on that
        anyway. A stream that ended before this pass told it may have completed on idle with
        its writer taken to be open (where /proc is blind: a PID namespace), its after-upload
        action pending on a close: the close is routed again as an event of the path, whose
        look runs that action (or finds nothing to do), unless another stream has the path."""
        if stream in self._running:
            stream.on_closed()
        elif path not in self._streams:
            self._queue.put_nowait(FileEvent(EventKind.CLOSED, path))

    def _retry_closes(self, paths: list[Path], error: RetryableError) -> None:
        # As for any event that failed on something that passes: routed again shortly.
        for path in paths:
            log.warning("event deferred", path=str(path), reason=str(error))
            self._defer(FileEvent(EventKind.CLOSED, path))

    async def _record_crash(self, stream: Stream) -> None:
        # Only over a live state: a stream that had ended (completed, aborted) keeps its end.
        try:
            await self._checkpoints.set_state(
                stream.stream_id,
                StreamState.FAILED,
                allowed_from=LIVE_STATES,
                error="internal error in tailup (see its log); retried at the next start",
            )
        except TailupError as exc:
            log.error("could not record the crash", stream_id=stream.stream_id, reason=str(exc))
