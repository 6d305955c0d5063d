"""The supervisor's state, shared by its parts (tailup.supervisor's modules, one concern each):
what it holds, and what one part asks of another."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import structlog

from tailup.afterupload import proc_sees_every_writer
from tailup.autosalvage import AutoSalvage
from tailup.bandwidth import BandwidthLimit
from tailup.budget import ByteBudget
from tailup.checkpoint import CheckpointStore
from tailup.closes import CloseChecks
from tailup.config import KeyConflict, Settings
from tailup.config.folders import folder_settings, global_folder
from tailup.errors import (
    RetryableError,
)
from tailup.events import FileEvent
from tailup.hlspublish import HlsPublisher
from tailup.identity import (
    FileIdentity,
)
from tailup.keys import (
    node_scope,
    share_scope,
    template_is_unique,
)
from tailup.lanes import Lanes
from tailup.model import (
    PartRecord,
    StreamRecord,
    StreamState,
)
from tailup.nodelease import this_process
from tailup.offload import run_blocking
from tailup.plan import part_size_cap
from tailup.retention import Retention
from tailup.retry import Backoff
from tailup.rules.records import (
    RecordDefaults,
)
from tailup.rules.retention import sweeps_needed
from tailup.rules.writers import Sight
from tailup.s3 import MultipartStore
from tailup.source import (
    FileStat,
)
from tailup.stream import Stream, StreamDeps
from tailup.supervisor.folders import Folders
from tailup.watcher import Watcher

log = structlog.get_logger("tailup.supervisor")
T = TypeVar("T")

ROUTE_RETRY_S = 2.0
# How long a new file at the name of a stream told its file is gone waits for that stream's end
# before it is opened: the end may give the key back (tailup.rules.keyclaims), which the new file
# then gets rather than NAME-2 (OBS deletes its write probe and records under that name at once).
# An end takes a few requests; one stalled on S3 or Redis is not waited for past this.
ENDING_WAIT_S = 5.0
# Events routed at once (tailup.lanes): enough to overlap the round trips of opening many files
# moved in together, few enough to stay within the S3 client's spare connections.
ROUTE_CONCURRENCY = 16
UNCHANGED_REMEMBERED = 10_000
TRIM_EVERY_S = 600.0


def new_stream_id() -> str:
    return uuid.uuid4().hex[:16]


def containing_root(path: Path, roots: Sequence[Path]) -> Path | None:
    """The watched folder a path is in (the deepest, when folders nest)."""
    matches = [root for root in roots if path.is_relative_to(root)]
    return max(matches, key=lambda r: len(r.parts)) if matches else None


class SupervisorState:
    def __init__(
        self,
        settings: Settings,
        store: MultipartStore,
        checkpoints: CheckpointStore,
        *,
        bandwidth: BandwidthLimit | None = None,
        backoff: Callable[[], Backoff] = Backoff,
    ) -> None:
        """``bandwidth``: the limit to send under; by default, the one --bwlimit says (None when
        it is off). ``backoff`` makes each stream's back-off (tests shorten it)."""
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
        # --salvage-after (tailup.autosalvage): None when off.
        self._auto_salvage = AutoSalvage.for_settings(settings, checkpoints, store)
        self._proc_sees_all = proc_sees_every_writer()
        overwrite = settings.key_conflict is KeyConflict.OVERWRITE
        self._deps = StreamDeps(
            store=store,
            checkpoints=checkpoints,
            budget=ByteBudget(settings.max_inflight_bytes),
            close_grace_s=settings.close_grace,
            idle_timeout_s=settings.idle_timeout,
            backoff=backoff,
            part_concurrency=settings.part_concurrency,
            after_upload=settings.after_upload_action,
            proc_sees_all=self._proc_sees_all and not settings.poll,
            check_keys=not overwrite and not template_is_unique(settings.key_template),
            exact_keys=settings.hls,  # the fallback; each folder's own: tailup.supervisor.folders
            conditional_writes=not overwrite,
            failed_retry_s=settings.failed_retry,
            stat_timeout_s=settings.io_timeout,
            on_redis_lost=self.note_redis_lost,
            bandwidth=self.bandwidth,
            sha256=settings.sha256,
            rpo_s=settings.rpo,
            object_options=settings.object_options,
        )
        # The stream of each path being uploaded. A stream leaves it when its file is deleted,
        # renamed (it moves to the new path) or replaced, at once, before it has ended.
        self._streams: dict[Path, Stream] = {}
        # Every running stream, also one no longer reachable by path: all are stopped on
        # shutdown.
        self._running: set[Stream] = set()
        self._by_id: dict[str, Stream] = {}
        # A running stream's other names (hard links: tailup.rules.names), by its id.
        self._aliases: dict[str, set[Path]] = {}
        # A name a stream went on from under an alias, its writer's close still to come there.
        self._former: dict[Path, Stream] = {}
        # A path whose stream was told its file is gone and has not ended yet, with what is set
        # when it has: a new file there is opened after that (tailup.supervisor.opening).
        self._ending: dict[Path, tuple[Stream, asyncio.Event]] = {}
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
            max_part_size=part_size_cap(settings.max_inflight_bytes),
            checksum=settings.checksum,
            hostname=socket.gethostname(),
            node_id=settings.node_id,
        )
        # Each folder's own settings ([[watch]] tables): resolved once, here.
        self._folders = Folders(
            folder_settings(settings),
            global_folder(settings),
            self._defaults,
            self._deps,
            overwrite=overwrite,
        )
        self._group: asyncio.TaskGroup | None = None
        # --keep-local (or a folder's keep_local) / --min-free (tailup.retention), over this
        # node's own folders: None when off.
        own_roots = [Path(p).resolve() for p in settings.watch]
        folders_keep_s = self._folders.keep_local_s()
        keep_local_s = {root: folders_keep_s.get(root, settings.keep_local) for root in own_roots}
        self.retention = (
            Retention(
                settings.retention_policy,
                checkpoints,
                store,
                roots=own_roots,
                scope=self._scope,
                sight=lambda path: self._sight(path),
                busy=lambda path: path in self._streams,
                io_timeout_s=settings.io_timeout,
                keep_local_s=keep_local_s,
            )
            if sweeps_needed(settings.retention_policy, keep_local_s.values())
            else None
        )
        # --hls (or a folder's hls): playlists are published by this, not streamed
        # (tailup.hlspublish); None when no folder is HLS.
        self._hls = (
            HlsPublisher(
                store,
                prefix_of=lambda root: self._folders.of(root).prefix,
                options_of=lambda root: self._folders.of(root).object_options.metadata_object,
                io=self._io,
                root_of=self._hls_root,
            )
            if self._folders.any_hls
            else None
        )
        self._lanes: Lanes | None = None
        self.events_routed = 0  # observable progress, for tests and /healthz
        self.ready = asyncio.Event()  # set once watching and live streams resumed

    def _hls_root(self, path: Path) -> Path | None:
        """The watched folder holding ``path`` when it is an HLS folder; else None."""
        root = containing_root(path, self._roots)
        return root if self._folders.hls(root) else None

    @property
    def streams(self) -> dict[Path, Stream]:
        return self._streams

    def stream_states(self) -> dict[str, int]:
        """Live streams in this daemon by state (for the tailup_streams gauge)."""
        counts = {state.value: 0 for state in StreamState}
        for stream in self._streams.values():
            counts[stream.record.state.value] += 1
        return counts

    def note_redis_lost(self, why: str) -> None:
        if not self.redis_lost:
            log.warning(
                "Redis lost tailup's data (or evicted it): files without a record are looked up "
                "in S3 before any upload, so no finished recording is uploaded again",
                why=why,
            )
        self.redis_lost = True

    async def _io(self, call: Callable[..., T], *args: Any, on: Path | None = None) -> T:
        """A blocking call on the watched file systems or /proc, off the loop, within
        --io-timeout (tailup.offload; ``on``: the file whose watch root's slots it takes)."""
        return await run_blocking(call, *args, timeout_s=self._settings.io_timeout, on=on)

    # -- what one part of the supervisor asks of another (each defined in its own module) --

    async def _open_stream(self, path: Path, *, writer_closed: bool) -> None:
        raise NotImplementedError

    async def _identity(
        self, path: Path, st: FileStat, previous: StreamRecord | None
    ) -> FileIdentity:
        raise NotImplementedError

    async def _path_history(self, path: Path) -> tuple[StreamRecord | None, dict[int, PartRecord]]:
        raise NotImplementedError

    async def _forget_path(self, path: Path, stream_id: str) -> None:
        raise NotImplementedError

    def _localize(self, record: StreamRecord) -> StreamRecord:
        raise NotImplementedError

    def _scope_of(self, path: Path) -> tuple[str, Path | None]:
        raise NotImplementedError

    async def _resume_scope(self, scope: str) -> None:
        raise NotImplementedError

    def _note_alias(self, stream_id: str, path: Path, *, closed: bool) -> None:
        raise NotImplementedError

    async def _carry_to_alias(self, stream: Stream, old: Path) -> bool:
        raise NotImplementedError

    async def _follow_renamed(self, record: StreamRecord) -> StreamRecord:
        raise NotImplementedError

    def _former_closed(self, path: Path) -> bool:
        raise NotImplementedError

    async def _resume_live_streams(self, stop: asyncio.Event) -> None:
        raise NotImplementedError

    async def _look_at_shares(self) -> None:
        raise NotImplementedError

    async def _release_claim(self, stream_id: str) -> None:
        raise NotImplementedError

    def _start(
        self,
        record: StreamRecord,
        parts: dict[int, PartRecord],
        *,
        writer_closed: bool,
        resumed: bool = False,
    ) -> None:
        raise NotImplementedError

    def _defer(self, event: FileEvent) -> None:
        raise NotImplementedError

    async def _after_completion(self, record: StreamRecord, *, linger: bool) -> None:
        raise NotImplementedError

    def _tell_closed(self, path: Path, stream: Stream) -> None:
        raise NotImplementedError

    def _retry_closes(self, paths: list[Path], error: RetryableError) -> None:
        raise NotImplementedError

    async def _writers_open(self, paths: list[Path]) -> dict[Path, bool | None]:
        raise NotImplementedError

    def _writer_open(self, path: Path, found: bool | None) -> bool | None:
        raise NotImplementedError

    def _sight(self, path: Path) -> Sight:
        raise NotImplementedError

    def _remember_unchanged(self, path: Path, look: tuple[int, int, int, int]) -> None:
        raise NotImplementedError

    async def _pending_after_upload(self, record: StreamRecord, *, writer_closed: bool) -> None:
        raise NotImplementedError

    async def _take_node(self, stop: asyncio.Event) -> bool:
        raise NotImplementedError

    async def _keep_leases(self, stop: asyncio.Event) -> None:
        raise NotImplementedError

    async def _publish_info(self) -> None:
        raise NotImplementedError

    async def _forward(self, watcher: Watcher) -> None:
        raise NotImplementedError

    async def _dispatch_until(self, stop: asyncio.Event) -> None:
        raise NotImplementedError

    async def _drain(self) -> None:
        raise NotImplementedError
