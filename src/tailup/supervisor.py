"""The supervisor owns the streams: it routes filesystem events to them, starts, resumes and
restarts them, and drains them on shutdown. One stream's failure never reaches another."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import structlog

from tailup.budget import ByteBudget
from tailup.checkpoint import CheckpointStore
from tailup.config import Settings
from tailup.errors import RetryableError, SourceError, TailupError
from tailup.events import EventKind, FileEvent
from tailup.keys import KeyContext, render_key
from tailup.model import LIVE_STATES, PartRecord, StreamRecord, StreamState, iso, utc_now
from tailup.retry import Backoff
from tailup.s3 import MultipartStore
from tailup.source import FileStat, stat_file
from tailup.stream import Outcome, Stream, StreamDeps
from tailup.watcher import Watcher, is_candidate, writers_open

log = structlog.get_logger(__name__)

ROUTE_RETRY_S = 2.0
_MODIFYING = {EventKind.CREATED, EventKind.MODIFIED, EventKind.CLOSED, EventKind.DISCOVERED}


def new_stream_id() -> str:
    return uuid.uuid4().hex[:16]


def containing_root(path: Path, roots: Sequence[Path]) -> Path | None:
    """The watched folder a path is in (the deepest, when folders nest)."""
    matches = [root for root in roots if path.is_relative_to(root)]
    return max(matches, key=lambda r: len(r.parts)) if matches else None


class Supervisor:
    def __init__(
        self,
        settings: Settings,
        store: MultipartStore,
        checkpoints: CheckpointStore,
    ) -> None:
        self._settings = settings
        self._roots = [Path(p).resolve() for p in settings.watch]
        self._store = store
        self._checkpoints = checkpoints
        self._deps = StreamDeps(
            store=store,
            checkpoints=checkpoints,
            budget=ByteBudget(settings.max_inflight_bytes),
            close_grace_s=settings.close_grace,
            idle_timeout_s=settings.idle_timeout,
            part_concurrency=settings.part_concurrency,
            after_upload=settings.after_upload_action,
        )
        self._streams: dict[Path, Stream] = {}
        # Every running stream, also one no longer reachable by path (superseded): all are
        # stopped on shutdown.
        self._running: set[Stream] = set()
        # Path -> id of its stream that ended REPLACED: the file there is new even if its inode
        # is the old one (rewritten in place while tailup was not running), so while that stream
        # is still the path's latest, the next event starts a new one.
        self._replaced: dict[Path, str] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._queue: asyncio.Queue[FileEvent] = asyncio.Queue()
        self._stopping = False
        self._hostname = socket.gethostname()
        self._group: asyncio.TaskGroup | None = None
        self.events_routed = 0  # observable progress, for tests and /healthz
        self.ready = asyncio.Event()  # set once watching and live streams resumed

    @property
    def streams(self) -> dict[Path, Stream]:
        return self._streams

    def stream_states(self) -> dict[str, int]:
        """Live streams in this daemon by state (for the tailup_streams gauge)."""
        counts = {state.value: 0 for state in StreamState}
        for stream in self._streams.values():
            counts[stream.record.state.value] += 1
        return counts

    async def run(self, stop: asyncio.Event) -> None:
        async with (
            Watcher(
                self._roots,
                self._settings.include,
                poll=self._settings.poll,
                poll_interval_s=self._settings.poll_interval,
            ) as watcher,
            asyncio.TaskGroup() as group,
        ):
            self._group = group
            forward = group.create_task(self._forward(watcher), name="watcher-forward")
            await self._resume_live_streams(stop)
            log.info("watching", folders=[str(r) for r in self._roots])
            self.ready.set()
            await self._dispatch_until(stop)
            forward.cancel()
            await self._drain()

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
                await self._route_or_retry(get.result())
        finally:
            stop_wait.cancel()

    async def _route_or_retry(self, event: FileEvent) -> None:
        try:
            await self._route(event)
            self.events_routed += 1
        except RetryableError as exc:
            # Redis or S3 unreachable while starting a stream: try the event again shortly.
            log.warning("event deferred", path=str(event.path), reason=str(exc))
            asyncio.get_running_loop().call_later(ROUTE_RETRY_S, self._queue.put_nowait, event)
        except TailupError as exc:
            log.error("event dropped", path=str(event.path), reason=str(exc))

    async def _drain(self) -> None:
        self._stopping = True
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

    # -- routing --

    async def _route(self, event: FileEvent) -> None:
        if event.kind is EventKind.ROOT_GONE:
            self._root_gone(event.path)
        elif event.kind is EventKind.MOVED:
            await self._moved(event)
        elif event.kind is EventKind.DELETED:
            stream = self._streams.get(event.path)
            if stream:
                stream.on_gone(f"{event.path} was deleted before its upload completed")
        elif event.kind in _MODIFYING:
            await self._changed(event)

    def _root_gone(self, root: Path) -> None:
        log.error("watched folder removed", folder=str(root))
        for path, stream in list(self._streams.items()):
            if path.is_relative_to(root):
                stream.on_gone(f"the watched folder {root} was removed")

    async def _moved(self, event: FileEvent) -> None:
        dest = event.dest_path
        stream = self._streams.pop(event.path, None)
        inside = dest is not None and containing_root(dest, self._roots) is not None
        if stream is not None:
            if dest is not None and inside:
                stream.on_moved(dest)
                self._streams[dest] = stream
            else:
                stream.on_gone(f"{event.path} was moved out of the watched folders")
            return
        if dest is not None and inside and is_candidate(dest, self._settings.include):
            closed = writers_open([dest]).get(dest) is False
            await self._open_stream(dest, writer_closed=closed, at_startup=False)

    async def _changed(self, event: FileEvent) -> None:
        path = event.path
        stream = self._streams.get(path)
        closed = event.kind is EventKind.CLOSED or (
            event.kind is EventKind.DISCOVERED and event.writer_open is False
        )
        if stream is not None:
            # Nothing else to tell a live stream: it watches its file's size itself, and MODIFIED
            # is an open (our own reads open the file for every part), not a write.
            if closed and not await _still_written(path):
                stream.on_closed()
            return
        if not is_candidate(path, self._settings.include):
            return
        await self._open_stream(
            path, writer_closed=closed, at_startup=event.kind is EventKind.DISCOVERED
        )

    # -- starting streams --

    async def _resume_live_streams(self, stop: asyncio.Event) -> None:
        """Start every stream Redis has as live; each reconciles itself with its file and S3.
        Waits for Redis if it is not there yet (events queue up meanwhile)."""
        backoff = Backoff(cap_s=10.0)
        while not stop.is_set():
            try:
                await self._resume_each()
                return
            except RetryableError as exc:
                delay = backoff.next_delay_s()
                log.warning(
                    "cannot load live streams yet; retrying",
                    reason=str(exc),
                    retry_in_s=round(delay, 2),
                )
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await stop.wait()

    async def _resume_each(self) -> None:
        for stream_id in await self._checkpoints.live_stream_ids():
            loaded = await self._checkpoints.load(stream_id)
            if loaded is None:
                continue
            record, parts = loaded
            if not record.state.is_live:
                await self._leave_live_set(record)
                continue
            if Path(record.path) in self._streams:
                continue
            log.info(
                "resuming stream",
                stream_id=stream_id,
                path=record.path,
                parts=len(parts),
                state=record.state.value,
            )
            self._start(record, parts, writer_closed=False, resumed=True)

    async def _leave_live_set(self, record: StreamRecord) -> None:
        """A stream that ended, still in the live set: the process died between the state write
        and the index update (other hash slots under Redis Cluster, so not one transaction).
        Writing the same state again moves it out; its last activity is kept."""
        log.info("ended stream left in the live set", stream_id=record.stream_id)
        await self._checkpoints.update(
            record.stream_id,
            state=record.state,
            last_activity_at_utc=record.last_activity_at_utc,
        )

    async def _open_stream(self, path: Path, *, writer_closed: bool, at_startup: bool) -> None:
        try:
            st = stat_file(path)
        except SourceError as exc:
            log.warning("file cannot be uploaded", path=str(path), reason=str(exc))
            return
        record = await self._next_record(path, st, at_startup=at_startup)
        if record is None:
            return
        await self._checkpoints.create(record)
        log.info(
            "stream started",
            stream_id=record.stream_id,
            path=str(path),
            key=record.key,
            generation=record.generation,
        )
        self._start(record, {}, writer_closed=writer_closed)

    async def _next_record(
        self, path: Path, st: FileStat, *, at_startup: bool
    ) -> StreamRecord | None:
        """The record of the stream to start for this file, or None when there is nothing to do."""
        previous_id = await self._checkpoints.stream_for_path(str(path))
        loaded = await self._checkpoints.load(previous_id) if previous_id else None
        if loaded is not None:
            prev, parts = loaded
            replaced = self._replaced.get(path) == prev.stream_id
            if replaced:
                del self._replaced[path]
            same = st.same_file(prev.device, prev.inode) and not replaced
            if same and prev.state.is_live:
                log.info("resuming stream", stream_id=prev.stream_id, path=str(path))
                self._start(prev, parts, writer_closed=False, resumed=True)
                return None
            if same and _unchanged_since_end(prev, st, at_startup):
                return None
            if same:
                # The same file changed after it was completed (appended, or rewritten by a
                # recorder restarted under the same name): upload it again, same stream and key.
                return _next_generation(prev, st)
            if prev.state.is_live:
                await self._retire_replaced(prev)
        return self._new_record(path, st)

    async def _retire_replaced(self, prev: StreamRecord) -> None:
        if prev.upload_id:
            await self._store.abort_upload(prev.key, prev.upload_id)
        await self._checkpoints.update(
            prev.stream_id,
            state=StreamState.ABORTED,
            error=f"{prev.path} was replaced by another file before its upload completed",
        )

    def _new_record(self, path: Path, st: FileStat) -> StreamRecord:
        root = containing_root(path, self._roots) or path.parent
        stream_id = new_stream_id()
        now = utc_now()
        key = render_key(
            self._settings.key_template,
            KeyContext(
                stream_id=stream_id,
                relpath=PurePosixPath(path.relative_to(root).as_posix()),
                watch_name=root.name,
                started_at=now,
                hostname=self._hostname,
            ),
            prefix=self._settings.prefix,
        )
        return StreamRecord(
            stream_id=stream_id,
            path=str(path),
            watch_root=str(root),
            bucket=self._settings.bucket,
            key=key,
            base_part_size=self._settings.part_size,
            device=st.device,
            inode=st.inode,
            created_at=iso(now),
            last_activity_at_utc=iso(now),
        )

    def _start(
        self,
        record: StreamRecord,
        parts: dict[int, PartRecord],
        *,
        writer_closed: bool,
        resumed: bool = False,
    ) -> None:
        assert self._group is not None, "streams start only while the supervisor runs"
        stream = Stream(self._deps, record, parts, writer_closed=writer_closed, resumed=resumed)
        superseded = self._streams.get(stream.path)
        if superseded is not None:
            # Its file was replaced (its upload is aborted already): let it end now, not at its
            # idle timeout.
            superseded.on_gone(f"{record.path} was replaced by another file while being uploaded")
        self._streams[stream.path] = stream
        self._running.add(stream)
        task = self._group.create_task(self._run_stream(stream), name=f"stream-{record.stream_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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
            if self._streams.get(stream.path) is stream:
                del self._streams[stream.path]
        if self._stopping or outcome is Outcome.STOPPED:
            return
        # A new file may already stand at this path (replaced, or deleted and recreated).
        again = (Outcome.REPLACED, Outcome.CHANGED_AFTER_COMPLETE, Outcome.ABORTED)
        if outcome in again and stream.path.exists():
            if outcome is Outcome.REPLACED:
                self._replaced[stream.path] = stream.stream_id
            # Reported like a file found at start: its writer may be gone already (its close went
            # to the stream that just ended), and then it must not wait for the idle timeout.
            found = await asyncio.to_thread(writers_open, [stream.path])
            event = FileEvent(EventKind.DISCOVERED, stream.path, writer_open=found[stream.path])
            self._queue.put_nowait(event)

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


async def _still_written(path: Path) -> bool:
    """True if some process still has the file open for writing: that close (one descriptor of
    several) was not the end of the recording. One /proc pass, off the loop."""
    found = await asyncio.to_thread(writers_open, [path])
    return found[path] is True


def _unchanged_since_end(prev: StreamRecord, st: FileStat, at_startup: bool) -> bool:
    if prev.state is StreamState.COMPLETED:
        return (st.size, st.mtime_ns) == (prev.final_size, prev.final_mtime_ns)
    if prev.state is StreamState.SKIPPED:
        return st.size == 0
    if prev.state is StreamState.FAILED:
        # A failed stream is tried again by the next start, not by every event (no busy loop).
        return not at_startup
    # Aborted (by a user, or its file went away and came back): not restarted behind anyone's back.
    return prev.state is StreamState.ABORTED


def _next_generation(prev: StreamRecord, st: FileStat) -> StreamRecord:
    now = iso(utc_now())
    return prev.with_changes(
        state=StreamState.UPLOADING,
        generation=prev.generation + 1,
        upload_id="",
        next_part_to_upload=1,
        total_bytes_sent=0,
        error="",
        note="",
        device=st.device,
        inode=st.inode,
        created_at=now,
        completed_at="",
        last_activity_at_utc=now,
    )
