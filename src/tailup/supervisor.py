"""The supervisor owns the streams: it routes filesystem events to them, starts, resumes and
restarts them, and drains them on shutdown. One stream's failure never reaches another."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import os
import socket
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import structlog

from tailup import __version__
from tailup.afterupload import AfterUpload, proc_sees_every_writer, run_after_upload
from tailup.bandwidth import BandwidthLimit, describe_rate
from tailup.budget import ByteBudget
from tailup.checkpoint import CheckpointStore, Claim, RenewResult
from tailup.closes import CloseChecks
from tailup.config import KeyConflict, Settings
from tailup.errors import (
    NodeIdTaken,
    RetryableError,
    SourceError,
    SourceStalled,
    TailupError,
)
from tailup.events import EventKind, FileEvent
from tailup.identity import (
    FileIdentity,
    FileNow,
    Judgement,
    Life,
    Seen,
    judge_file,
    needs_generation,
    record_identity,
    same_life,
    stream_id_for,
)
from tailup.keyclaim import claim_key
from tailup.keys import (
    index_path,
    node_scope,
    share_scope,
    template_is_unique,
)
from tailup.lanes import Lanes, lane_of
from tailup.model import (
    LIVE_STATES,
    PartRecord,
    StreamRecord,
    StreamState,
    iso,
    utc_now,
)
from tailup.nodelease import Holder, process_started, provably_gone, this_process
from tailup.offload import run_blocking
from tailup.recovery import Finding, Found, look_up, s3_may_know
from tailup.retry import Backoff
from tailup.routing import Action, Facts, route
from tailup.rules.records import (
    Placement,
    RecordDefaults,
    completed_from_sidecar,
    new_record,
    next_generation,
    pending_action_may_run,
)
from tailup.rules.writers import Sight, seen_writer_open
from tailup.s3 import MultipartStore
from tailup.source import (
    FileStat,
    crc32_of_range_blocking,
    file_identity,
    inode_generation,
    stat_file,
)
from tailup.stream import Outcome, Stream, StreamDeps
from tailup.watcher import Watcher, is_candidate, writers_open

log = structlog.get_logger(__name__)
T = TypeVar("T")

ROUTE_RETRY_S = 2.0
# Events routed at once (tailup.lanes): enough to overlap the round trips of opening many files
# moved in together, few enough to stay within the S3 client's spare connections.
ROUTE_CONCURRENCY = 16
UNCHANGED_REMEMBERED = 10_000
# Ids derived from one file identity that may belong to other recordings (tailup.identity): past
# this many, a random id (nothing can be found again by identity then, S3 keys still never clash).
MAX_LIVES = 64
TRIM_EVERY_S = 600.0


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
        *,
        bandwidth: BandwidthLimit | None = None,
    ) -> None:
        """``bandwidth``: the limit to send under; by default, the one --bwlimit says (None when
        it is off)."""
        self._settings = settings
        self.bandwidth = (
            bandwidth if bandwidth is not None else BandwidthLimit.for_setting(settings.bwlimit)
        )
        self._node_id = settings.node_id
        self._scope = node_scope(settings.node_id)
        # Shared folders (--shared-watch): root -> (share name, scope).
        self._shares = {
            Path(folder).resolve(): (name, share_scope(name)) for name, folder in settings.shares
        }
        self._roots = [Path(p).resolve() for p in settings.watch] + list(self._shares)
        # The st_dev this node sees for each shared folder: each NFS client numbers one export's
        # device its own way, so a record another node wrote names another device.
        self._share_devices: dict[Path, int] = {}
        # Shared folders' files another node uploads: path -> when to look again (monotonic).
        self._elsewhere: dict[Path, float] = {}
        self._holder = this_process()
        self._started_ns = time.time_ns()
        # Set once Redis is seen to have lost data (this node's lease or a stream's record gone):
        # from then on every file without a record is looked up in S3 before it is uploaded.
        self.redis_lost = False
        self._store = store
        self._checkpoints = checkpoints
        self._proc_sees_all = proc_sees_every_writer()
        overwrite = settings.key_conflict is KeyConflict.OVERWRITE
        self._deps = StreamDeps(
            store=store,
            checkpoints=checkpoints,
            budget=ByteBudget(settings.max_inflight_bytes),
            close_grace_s=settings.close_grace,
            idle_timeout_s=settings.idle_timeout,
            part_concurrency=settings.part_concurrency,
            after_upload=settings.after_upload_action,
            proc_sees_all=self._proc_sees_all and not settings.poll,
            check_keys=not overwrite and not template_is_unique(settings.key_template),
            conditional_writes=not overwrite,
            failed_retry_s=settings.failed_retry,
            stat_timeout_s=settings.io_timeout,
            on_redis_lost=self.note_redis_lost,
            bandwidth=self.bandwidth,
            sha256=settings.sha256,
        )
        # The stream of each path being uploaded. A stream leaves it when its file is deleted,
        # renamed (it moves to the new path) or replaced, at once, before it has ended.
        self._streams: dict[Path, Stream] = {}
        # Every running stream, also one no longer reachable by path: all are stopped on
        # shutdown.
        self._running: set[Stream] = set()
        self._by_id: dict[str, Stream] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._queue: asyncio.Queue[FileEvent] = asyncio.Queue()
        self._deferred: dict[Path, FileEvent] = {}
        self._dropped: dict[Path, tuple[int, int]] = {}  # (size, mtime) when its start failed
        # Paths last judged unchanged, with what they were then (inode, birth, size, mtime).
        self._unchanged: OrderedDict[Path, tuple[int, int, int, int]] = OrderedDict()
        self._flush_handle: asyncio.TimerHandle | None = None
        # Recordings completed on idle while a writer may hold them: set when a close arrives.
        self._lingering: dict[Path, asyncio.Event] = {}
        # Closes wait for a /proc pass there, many at once (tailup.closes).
        self._closes: CloseChecks[Stream] = CloseChecks(
            self._writers_open, self._tell_closed, self._retry_closes
        )
        self._stopping = False
        self._defaults = RecordDefaults(
            bucket=settings.bucket,
            key_template=settings.key_template,
            prefix=settings.prefix,
            part_size=settings.part_size,
            part_sizing=settings.part_sizing,
            checksum=settings.checksum,
            hostname=socket.gethostname(),
            node_id=settings.node_id,
        )
        self._group: asyncio.TaskGroup | None = None
        self._lanes: Lanes | None = None
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
        if not await self._take_node(stop):
            return
        with contextlib.suppress(RetryableError):
            await self._publish_info()
        try:
            await self._run(stop)
        finally:
            with contextlib.suppress(TailupError):
                await self._checkpoints.release_node(self._node_id, self._holder.encode())

    async def _take_node(self, stop: asyncio.Event) -> bool:
        """Hold this daemon's node lease (tailup.nodelease), waiting for Redis if need be.
        NodeIdTaken when a live daemon holds it; False when stopped first."""
        backoff = Backoff(cap_s=10.0)
        mine, ttl_s = self._holder.encode(), self._settings.lease_ttl
        while not stop.is_set():
            try:
                held = await self._checkpoints.acquire_node(self._node_id, mine, ttl_s)
                if held is None:
                    return True
                other = Holder.decode(held)
                if other is not None and provably_gone(other, self._holder, process_started):
                    if (
                        await self._checkpoints.acquire_node(
                            self._node_id, mine, ttl_s, replacing=held
                        )
                        is None
                    ):
                        log.info(
                            "node taken back from a daemon that is gone",
                            node=self._node_id,
                            previous=other.describe(),
                        )
                        return True
                    continue
                who = other.describe() if other else repr(held)
                raise NodeIdTaken(
                    f"--node-id {self._node_id!r} is held by a live tailup daemon ({who}) on "
                    f"this Redis prefix. Stop that daemon, or give this one another --node-id; "
                    f"if that daemon is dead, its lease expires within {ttl_s:g} s"
                )
            except RetryableError as exc:
                delay = backoff.next_delay_s()
                log.warning("cannot take the node lease yet; retrying", reason=str(exc))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await stop.wait()
        return False

    async def _keep_leases(self, stop: asyncio.Event) -> None:
        """Renew the node lease every third of --lease-ttl; trim the ended index now and then.
        A lease another daemon took stops this one: two daemons must never work one node."""
        ttl_s = self._settings.lease_ttl
        next_trim = 0.0
        renewed_at = time.monotonic()  # the lease was taken just before
        while not stop.is_set():
            # Every third of the TTL from the last renewal, whatever the round's other work cost.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, renewed_at + ttl_s / 3 - time.monotonic())):
                    await stop.wait()
            if stop.is_set():
                return
            try:
                asked_at = time.monotonic()
                renewed = await self._checkpoints.renew_node(
                    self._node_id, self._holder.encode(), ttl_s
                )
                if renewed is RenewResult.TAKEN:
                    log.error(
                        "another daemon took this node's lease: stopping (two daemons must "
                        "never work one node)",
                        node=self._node_id,
                    )
                    stop.set()
                    return
                if renewed is RenewResult.RESTORED:
                    if asked_at - renewed_at < ttl_s:
                        self.note_redis_lost("this node's lease was gone from Redis")
                    else:
                        # Expired because this daemon (or Redis) was slow, not lost: taken back.
                        log.warning(
                            "the node lease expired before its renewal; taken back",
                            late_s=round(asked_at - renewed_at - ttl_s, 2),
                        )
                renewed_at = asked_at
                await self._publish_info()
                await self._renew_claims()
                await self._look_at_shares()  # a remount gives the folder another device
                now = time.monotonic()
                self._elsewhere = {p: t for p, t in self._elsewhere.items() if t > now}
                for _name, scope in self._shares.values():
                    await self._resume_scope(scope)  # recordings of nodes that died
                if time.monotonic() >= next_trim:
                    await self._trim_ended()
                    next_trim = time.monotonic() + TRIM_EVERY_S
            except RetryableError as exc:
                log.warning("cannot renew the node lease now", reason=str(exc))

    async def _publish_info(self) -> None:
        """What `tailup status` shows of this daemon: it reads Redis, not the daemon."""
        limit = self.bandwidth
        timetable = limit.schedule.text if limit and limit.schedule.timetable else ""
        await self._checkpoints.publish_node_info(
            self._node_id,
            {
                "host": self._holder.host,
                "pid": str(self._holder.pid),
                "version": __version__,
                "bwlimit": describe_rate(limit.bytes_per_second) if limit else "off",
                "bwlimit_timetable": timetable,
                "updated_at": iso(utc_now()),
            },
            2 * self._settings.lease_ttl,
        )

    async def _renew_claims(self) -> None:
        for stream_id in self._checkpoints.held_claims():
            if await self._checkpoints.renew_claim(
                stream_id, self._settings.lease_ttl
            ) is RenewResult.TAKEN and (stream := self._by_id.get(stream_id)):
                log.warning("another node took this recording over", stream_id=stream_id)
                stream.stop()

    async def _trim_ended(self) -> None:
        keep_s = self._settings.keep_records
        if keep_s <= 0:
            return
        trimmed = 0
        for scope in [self._scope, *(sc for _, sc in self._shares.values())]:
            trimmed += await self._checkpoints.trim_ended(time.time() - keep_s, scope)
        if trimmed:
            log.info("ended records past --keep-records dropped from the index", count=trimmed)

    def note_redis_lost(self, why: str) -> None:
        if not self.redis_lost:
            log.warning(
                "Redis lost tailup's data (or evicted it): files without a record are looked up "
                "in S3 before any upload, so no finished recording is uploaded again",
                why=why,
            )
        self.redis_lost = True

    async def _run(self, stop: asyncio.Event) -> None:
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
            self._lanes = lanes = Lanes(group.create_task, ROUTE_CONCURRENCY)
            forward = group.create_task(self._forward(watcher), name="watcher-forward")
            leases = group.create_task(self._keep_leases(stop), name="leases")
            timetable = (
                group.create_task(self.bandwidth.run(), name="bwlimit")
                if self.bandwidth is not None
                else None
            )
            if not self._proc_sees_all:
                log.warning(
                    "tailup runs in a PID namespace of its own (a container): /proc does not "
                    "show writers outside it, so files are deleted or moved after upload only "
                    "once their writer closed them"
                )
            await self._resume_live_streams(stop)
            log.info("watching", folders=[str(r) for r in self._roots])
            self.ready.set()
            await self._dispatch_until(stop)
            forward.cancel()
            leases.cancel()
            # Before the streams are stopped: an event still being routed may start one.
            await lanes.join(self._settings.shutdown_grace)
            await self._drain()
            if timetable is not None:
                timetable.cancel()  # applied until the last part in flight is done

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

    # -- routing (the decisions are tailup.routing's and tailup.identity's) --

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
        if event.kind is EventKind.DISCOVERED and event.writer_open is False:
            event = dataclasses.replace(event, writer_open=self._writer_open(event.path, False))
        dest = event.dest_path
        facts = Facts(
            has_stream=event.path in self._streams,
            candidate=is_candidate(event.path, self._settings.include),
            dest_inside=dest is not None and containing_root(dest, self._roots) is not None,
            dest_candidate=dest is not None and is_candidate(dest, self._settings.include),
        )
        for action in route(event, facts):
            await self._carry_out(action, event)

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
        if event.kind is EventKind.DELETED:
            stream.on_gone(f"{event.path} was deleted before its upload completed")
        else:
            stream.on_gone(f"{event.path} was moved out of the watched folders")
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
        await self._look_at_shares()
        own = [str(r) for r in self._roots if r not in self._shares]
        if own and (taken := await self._checkpoints.adopt_legacy(own)):
            log.info("records of tailup before nodes taken over by this node", streams=taken)
        await self._resume_scope(self._scope)
        for _name, scope in self._shares.values():
            await self._resume_scope(scope)

    async def _may_work_on(self, record: StreamRecord) -> bool:
        """A shared folder's recording is worked on by the node holding its lease only; this
        node takes it when nobody holds it (new, or its holder died: the lease expired)."""
        if not record.scope.startswith("share:"):
            return True
        got = await self._checkpoints.claim(
            record.stream_id, self._node_id, self._settings.lease_ttl
        )
        if isinstance(got, Claim):
            self._elsewhere.pop(Path(record.path), None)
            return True
        log.debug("another node uploads it", stream_id=record.stream_id, holder=got)
        # Its writer's events keep coming here too: not a claim attempt per write. A takeover
        # is the lease round's (_resume_scope), not an event's.
        self._elsewhere[Path(record.path)] = time.monotonic() + self._settings.lease_ttl / 3
        return False

    async def _resume_scope(self, scope: str) -> None:
        for stream_id in await self._checkpoints.live_stream_ids(scope):
            if stream_id in self._by_id:
                continue
            loaded = await self._checkpoints.load(stream_id)
            if loaded is None:
                continue
            record, parts = self._localize(loaded[0]), loaded[1]
            if scope != self._scope and record.state.is_resumable:
                if not await self._may_work_on(record):
                    continue
                if record.owner != self._node_id:
                    log.info(
                        "taking over a shared folder's recording",
                        stream_id=stream_id,
                        previous_owner=record.owner,
                        path=record.path,
                    )
                    await self._checkpoints.update(stream_id, owner=self._node_id)
                    record = record.with_changes(owner=self._node_id)
            if not record.state.is_resumable:
                await self._leave_live_set(record)
                continue
            if containing_root(Path(record.path), self._roots) is None:
                # Not this daemon's folders (any more): touch nothing, delete nothing.
                log.warning(
                    "live stream not resumed: its folder is not watched",
                    stream_id=stream_id,
                    path=record.path,
                )
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

    async def _open_stream(self, path: Path, *, writer_closed: bool) -> None:
        if self._elsewhere.get(path, 0.0) > time.monotonic():
            return  # another node's recording (a shared folder), looked at again in a while
        self._elsewhere.pop(path, None)
        try:
            st = await self._io(stat_file, path)
        except SourceStalled:
            raise
        except SourceError as exc:
            log.warning("file cannot be uploaded", path=str(path), reason=str(exc))
            return
        look = (st.inode, st.birth_ns, st.size, st.mtime_ns)
        if self._unchanged.get(path) == look:
            # Judged unchanged already. Readers' opens (ours included) arrive as events: without
            # this, each look would load the record again for every open of a finished file.
            self._unchanged.move_to_end(path)
            return
        previous, parts = await self._path_history(path)
        seen = await self._identity(path, st, previous)
        now = FileNow(seen, st.size, st.mtime_ns)
        judgement = await self._judge(previous, parts, path, st, now)
        if judgement.seen is Seen.NEW:
            if seen.generation < 0:
                # The record of a new life keeps its generation, for file systems without birth
                # times; read once per stream (the open's event reaches the stream, which
                # ignores it).
                generation = await self._io(inode_generation, path, st.inode)
                seen = dataclasses.replace(seen, generation=generation)
                now = FileNow(seen, st.size, st.mtime_ns)
            await self._open_new(path, st, now, look, writer_closed=writer_closed)
            return
        await self._act(path, st, seen, look, previous, parts, judgement, writer_closed)

    async def _judge(
        self,
        previous: StreamRecord | None,
        parts: dict[int, PartRecord],
        path: Path,
        st: FileStat,
        now: FileNow,
    ) -> Judgement:
        judgement = judge_file(previous, now)
        if judgement.seen is Seen.CHECK_HEAD:
            assert previous is not None
            head = await self._head_unchanged(previous, parts, path, st)
            judgement = judge_file(previous, now, head_unchanged=head)
        return judgement

    async def _act(
        self,
        path: Path,
        st: FileStat,
        seen: FileIdentity,
        look: tuple[int, int, int, int],
        previous: StreamRecord | None,
        parts: dict[int, PartRecord],
        judgement: Judgement,
        writer_closed: bool,
    ) -> None:
        """Carry out a verdict on a file that has a record (UNCHANGED, RESUME, GREW, RESTART)."""
        verdict = judgement.seen
        if verdict is Seen.UNCHANGED:
            if previous is not None and pending_action_may_run(previous, st.size, st.mtime_ns):
                await self._pending_after_upload(previous, writer_closed=writer_closed)
            else:
                self._remember_unchanged(path, look)
            return
        if verdict is Seen.RESUME:
            assert previous is not None
            if previous.stream_id not in self._by_id and await self._may_work_on(previous):
                log.info("resuming stream", stream_id=previous.stream_id, path=str(path))
                self._start(previous, parts, writer_closed=writer_closed, resumed=True)
            return
        assert previous is not None and verdict in (Seen.GREW, Seen.RESTART)
        if not await self._may_work_on(previous):
            return
        if seen.generation < 0:
            generation = await self._io(inode_generation, path, st.inode)
            seen = dataclasses.replace(seen, generation=generation)
        record = next_generation(previous, st, seen, utc_now())
        await self._checkpoints.create(record)
        self._started_log(record, judgement.reason)
        self._start(record, {}, writer_closed=writer_closed)

    def _started_log(self, record: StreamRecord, why: str) -> None:
        log.info(
            "stream started",
            stream_id=record.stream_id,
            path=record.path,
            key=record.key,
            generation=record.generation,
            why=why,
        )

    async def _open_new(
        self,
        path: Path,
        st: FileStat,
        now: FileNow,
        look: tuple[int, int, int, int],
        *,
        writer_closed: bool,
    ) -> None:
        """A file its path's record does not describe. Its id comes from its identity: a record
        under that id is this very recording (renamed while tailup was down, or its path entry
        lost), else S3 is asked about it when it may know (tailup.recovery), else it is new."""
        scope, _root = self._scope_of(path)
        for life in range(MAX_LIVES):
            stream_id = stream_id_for(scope, now.identity, life=life)
            loaded = await self._checkpoints.load(stream_id)
            if loaded is not None:
                known, known_parts = self._localize(loaded[0]), loaded[1]
                judgement = await self._judge(known, known_parts, path, st, now)
                if judgement.seen is Seen.NEW:
                    continue  # another recording's id
                if known.path != str(path):
                    await self._move_record(known, path)
                    known = known.with_changes(path=str(path), path_ended=False)
                await self._act(
                    path, st, now.identity, look, known, known_parts, judgement, writer_closed
                )
                return
            record = self._new_record(path, st, now.identity, stream_id)
            if not await self._may_work_on(record):
                return  # another node's (a shared folder): it uploads it
            finding = await self._s3_finding(record, st)
            if finding.found is Found.OTHER and template_is_unique(self._settings.key_template):
                log.info("key holds another recording; next id", key=record.key, why=finding.reason)
                continue
            await self._create_found(record, st, finding, writer_closed=writer_closed)
            return
        record = self._new_record(path, st, now.identity, new_stream_id())
        await self._create_found(
            record, st, Finding(Found.NOTHING, ""), writer_closed=writer_closed
        )

    async def _move_record(self, record: StreamRecord, path: Path) -> None:
        await self._checkpoints.update(record.stream_id, path=str(path), path_ended=False)
        await self._forget_path(Path(record.path), record.stream_id)
        log.info(
            "recording found under another path",
            stream_id=record.stream_id,
            old=record.path,
            new=str(path),
        )

    async def _s3_finding(self, record: StreamRecord, st: FileStat) -> Finding:
        may_know = s3_may_know(
            born_ns=record.birth_ns or st.mtime_ns,
            started_ns=self._started_ns,
            now_ns=time.time_ns(),
            keep_records_s=self._settings.keep_records,
            redis_lost=self.redis_lost,
        )
        if not may_know:
            return Finding(Found.NOTHING, "a file born since tailup started")
        return await look_up(
            self._store,
            record.key,
            record.stream_id,
            st.size,
            st.mtime_ns,
            check_object=self._deps.check_keys,
        )

    async def _create_found(
        self, record: StreamRecord, st: FileStat, finding: Finding, *, writer_closed: bool
    ) -> None:
        """Record (and start, unless S3 has it whole) a new recording after the S3 lookup. The
        key is claimed here, not before: a claim's HEAD would take the recording's own object
        for another one's."""
        if finding.found in (Found.COMPLETED, Found.IN_FLIGHT):
            holder = await self._checkpoints.reserve_key(record.key, record.stream_id)
            if holder is not None:
                finding = Finding(Found.OTHER, f"stream {holder} holds its key")
        if finding.found is Found.COMPLETED:
            record = completed_from_sidecar(record, st, finding.sidecar or {}, utc_now())
            if await self._checkpoints.create_new(record):
                log.info(
                    "recording already in S3: not uploaded again",
                    stream_id=record.stream_id,
                    path=record.path,
                    key=record.key,
                    why=finding.reason,
                )
            return
        if finding.found is Found.IN_FLIGHT:
            record = record.with_changes(upload_id=finding.upload_id)
            if not await self._checkpoints.create_new(record):
                return  # another event made it meanwhile
            log.info(
                "open upload adopted from S3",
                stream_id=record.stream_id,
                path=record.path,
                key=record.key,
                upload_id=finding.upload_id,
                orphans=len(finding.orphans),
            )
            self._start(record, {}, writer_closed=writer_closed, resumed=True)
            return
        # OTHER: the key is another recording's, and claim_key suffixes it even where the template
        # is otherwise unique; NOTHING: the usual claim.
        check = finding.found is Found.OTHER or self._deps.check_keys
        key = await claim_key(
            self._checkpoints, self._store, record.key, record.stream_id, check=check
        )
        record = record.with_changes(key=key)
        if not await self._checkpoints.create_new(record):
            return
        self._started_log(record, finding.reason or "a new recording")
        self._start(record, {}, writer_closed=writer_closed)

    async def _identity(
        self, path: Path, st: FileStat, previous: StreamRecord | None
    ) -> FileIdentity:
        """The file's identity for judging it against ``previous``: statx alone, unless only the
        inode generation can tell (no birth time here), which costs an open."""
        seen = file_identity(st)
        if previous is not None and needs_generation(record_identity(previous), seen):
            generation = await self._io(inode_generation, path, st.inode)
            seen = file_identity(st, generation)
        return seen

    def _remember_unchanged(self, path: Path, look: tuple[int, int, int, int]) -> None:
        self._unchanged[path] = look
        self._unchanged.move_to_end(path)
        while len(self._unchanged) > UNCHANGED_REMEMBERED:
            self._unchanged.popitem(last=False)

    def _scope_of(self, path: Path) -> tuple[str, Path | None]:
        """The scope a file is indexed in (this node's, or its shared folder's) and its root."""
        root = containing_root(path, self._roots)
        if root is not None and root in self._shares:
            return self._shares[root][1], root
        return self._scope, root

    def _entry(self, path: Path) -> tuple[str, str]:
        """(scope, name in the scope's path index) of a watched file."""
        scope, root = self._scope_of(path)
        return scope, index_path(scope, str(path), str(root) if root else "")

    def _localize(self, record: StreamRecord) -> StreamRecord:
        """A shared folder's record as this node sees it: under this node's mount of it."""
        if not record.scope.startswith("share:"):
            return record
        root = next((r for r, (_, sc) in self._shares.items() if sc == record.scope), None)
        if root is None:
            return record
        rel = index_path(record.scope, record.path, record.watch_root)
        device = self._share_devices.get(root, record.device)
        return record.with_changes(path=str(root / rel), watch_root=str(root), device=device)

    async def _look_at_shares(self) -> None:
        for root in self._shares:
            with contextlib.suppress(OSError, SourceStalled):
                self._share_devices[root] = (await self._io(os.stat, root)).st_dev

    async def _forget_path(self, path: Path, stream_id: str) -> None:
        scope, entry = self._entry(path)
        await self._checkpoints.forget_path(entry, stream_id, scope)

    async def _path_history(self, path: Path) -> tuple[StreamRecord | None, dict[int, PartRecord]]:
        """The path's latest recording and its parts, if that record still names this path."""
        scope, entry = self._entry(path)
        stream_id = await self._checkpoints.stream_for_path(entry, scope)
        loaded = await self._checkpoints.load(stream_id) if stream_id else None
        if loaded is None:
            return None, {}
        record = self._localize(loaded[0])
        if record.path != str(path):
            return None, {}  # renamed away since: that record is another path's now
        return record, loaded[1]

    async def _head_unchanged(
        self,
        previous: StreamRecord,
        parts: dict[int, PartRecord],
        path: Path,
        st: FileStat,
    ) -> bool:
        """Whether the file's first part holds the bytes uploaded as the recording's first
        part (an O_TRUNC rewrite changes them). One read of at most one part."""
        size, crc = previous.head_size, previous.head_crc32
        if size <= 0 and 1 in parts:
            size, crc = parts[1].size, parts[1].crc32
        if size <= 0:
            return True  # nothing was uploaded to compare with
        got, now_crc = await self._io(crc32_of_range_blocking, path, 0, size, st.device, st.inode)
        return got == size and now_crc == crc

    async def _pending_after_upload(self, record: StreamRecord, *, writer_closed: bool) -> None:
        """Finish an after-upload action left pending (its writer held the file at completion,
        or a shutdown cut it off), now that the file is unchanged since its verified upload."""
        result = await run_after_upload(
            self._settings.after_upload_action,
            Path(record.path),
            Path(record.watch_root),
            close_seen=writer_closed,
            proc_sees_all=self._sight(Path(record.path)).sees_every_writer,
            timeout_s=self._settings.io_timeout,
        )
        if result is not AfterUpload.PENDING:
            await self._checkpoints.update(record.stream_id, after_upload_pending=False)

    def _new_record(
        self, path: Path, st: FileStat, seen: FileIdentity, stream_id: str
    ) -> StreamRecord:
        scope, found_root = self._scope_of(path)
        root = found_root or path.parent
        watch_name = self._shares[root][0] if root in self._shares else root.name
        place = Placement(root=root, watch_name=watch_name, scope=scope)
        return new_record(self._defaults, place, path, st, seen, stream_id, utc_now())

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
        deps = self._deps
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
            if stream.stream_id in self._checkpoints.held_claims():
                # Ended or stopped: another node may take it at once (a shutdown), or finds it
                # ended.
                with contextlib.suppress(TailupError):
                    await self._checkpoints.release_claim(stream.stream_id)
            if self._streams.get(stream.path) is stream:
                del self._streams[stream.path]
        if self._stopping or outcome is Outcome.STOPPED:
            return
        if outcome is Outcome.COMPLETED_WRITER_OPEN and stream.close_seen:
            # Its close came while it finalized on idle: looked at again as closed, which runs
            # the pending action (where /proc is blind, nothing else would tell the close).
            self._queue.put_nowait(FileEvent(EventKind.CLOSED, stream.path))
            return
        if outcome in (Outcome.COMPLETED, Outcome.COMPLETED_WRITER_OPEN):
            assert self._group is not None
            self._group.create_task(
                self._after_completion(stream.record, linger=outcome is not Outcome.COMPLETED)
            )
            return
        # A file may stand at this path again (replaced, changed after completion, back after it
        # vanished): look at it as if found at start; the identity decides what it is. Its
        # writer may be gone already (its close went to the stream that just ended), and then it
        # must not wait for the idle timeout.
        again = (Outcome.REPLACED, Outcome.CHANGED_AFTER_COMPLETE, Outcome.ABORTED)
        if outcome in again and stream.path not in self._streams:
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
                if not changed and not linger:
                    return  # the common case: one stat, no /proc pass
                found = (await self._io(writers_open, [path]))[path]
                writer_open = self._writer_open(path, found)
            except (SourceError, SourceStalled):
                return
            if changed or writer_open is False:
                event = FileEvent(EventKind.DISCOVERED, path, writer_open=writer_open)
                self._queue.put_nowait(event)
                return
            log.debug("completed while a writer may hold it: looked at again later", path=str(path))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._settings.idle_timeout):
                    await closed.wait()

    async def _io(self, call: Callable[..., T], *args: Any) -> T:
        """A blocking call on the watched file systems or /proc, off the loop, within
        --io-timeout (tailup.offload)."""
        return await run_blocking(call, *args, timeout_s=self._settings.io_timeout)

    async def _writers_open(self, paths: list[Path]) -> dict[Path, bool | None]:
        """Whether some process still has each file open for writing: one /proc pass for all of
        them, off the loop."""
        return await self._io(writers_open, paths)

    def _tell_closed(self, path: Path, stream: Stream) -> None:
        """The close of ``path`` was its last writer's. ``stream`` is told while it runs, also
        if it moved meanwhile (a rename right after the close: the same recording, and its
        close must not be lost); one that ended has nothing to learn, and one whose file was
        deleted or replaced meanwhile ends on that anyway."""
        if stream in self._running:
            stream.on_closed()

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
