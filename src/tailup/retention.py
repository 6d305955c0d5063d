"""Local retention (--keep-local, --min-free; issue 20.1): the sweep that carries out
tailup.rules.retention's plan. Each recording is due by its folder's keep_local (a [[watch]]
table's, else --keep-local; issue 20.3); --min-free is one for every folder's file system.

Every minute, and every few seconds while a watched folder's file system is below --min-free,
the sweep reads this node's ended records, finds which of their files are still on disk and
which writers /proc sees, and asks the rules what may go. Before each delete it asks S3 again
(HEAD: the object still has the recorded size and ETag), looks at /proc again, and the unlink
itself runs only if the path still holds the very file uploaded (tailup.afterupload.act, in the
same thread). A refusal at any of these steps keeps the file and the sweep plans again without
it: the space it would have freed is asked of the next oldest.

Shared folders are left alone: their recordings are uploaded by whichever node holds the lease,
and their writers may be on other hosts.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from tailup import metrics
from tailup.afterupload import NotTheUpload, act
from tailup.checkpoint import CheckpointStore
from tailup.config import AfterUploadKind
from tailup.errors import RetryableError, SourceError, SourceStalled, TailupError
from tailup.model import StreamRecord, StreamState, parse_iso
from tailup.offload import run_blocking
from tailup.rules.retention import (
    Candidate,
    Disk,
    Plan,
    Policy,
    Wait,
    object_matches,
    plan,
    upload_verified,
)
from tailup.rules.retention import summary as summary_line
from tailup.rules.writers import Sight, Writer, may_act, writer_fact
from tailup.s3 import MultipartStore
from tailup.sameupload import UploadedFile, holds_upload
from tailup.source import FileStat, stat_file
from tailup.watcher import writers_open

log = structlog.get_logger("tailup.retention")

SWEEP_EVERY_S = 60.0
# How often free space is looked at between sweeps: statvfs of each watched folder, cheap.
LOOK_EVERY_S = 5.0
_PAGE = 500


@dataclass
class Sweep:
    """What one sweep did."""

    deleted: list[Candidate] = field(default_factory=list)
    waiting: list[tuple[Candidate, Wait]] = field(default_factory=list)

    @property
    def freed_bytes(self) -> int:
        return sum(c.size_bytes for c in self.deleted)

    @property
    def summary(self) -> str:
        return summary_line(self.deleted, self.waiting)


@dataclass(frozen=True, slots=True)
class _Found:
    record: StreamRecord
    candidate: Candidate
    root: Path


def statvfs_disk(path: Path) -> Disk:
    st = os.statvfs(path)
    return Disk(free_bytes=st.f_bavail * st.f_frsize, total_bytes=st.f_blocks * st.f_frsize)


class Retention:
    def __init__(
        self,
        policy: Policy,
        checkpoints: CheckpointStore,
        store: MultipartStore,
        *,
        roots: Sequence[Path],
        scope: str,
        sight: Callable[[Path], Sight],
        busy: Callable[[Path], bool] = lambda _path: False,
        io_timeout_s: float = 30.0,
        clock: Callable[[], float] = time.time,
        disk_of: Callable[[Path], Disk] = statvfs_disk,
        keep_local_s: Mapping[Path, float] | None = None,
    ) -> None:
        """``roots``: this node's own watched folders (resolved); ``scope``: their records';
        ``busy``: whether a stream is uploading the path now; ``keep_local_s``: a root's own
        keep_local (its [[watch]] table's), where it is not the policy's."""
        self._policy = policy
        self._keep_local_s = dict(keep_local_s or {})
        self._checkpoints = checkpoints
        self._store = store
        self._roots = list(roots)
        self._scope = scope
        self._sight = sight
        self._busy = busy
        self._io_timeout_s = io_timeout_s
        self._clock = clock
        self._disk_of = disk_of
        self.last: Sweep | None = None  # the latest sweep's account
        self._freed_total_bytes = 0
        self._deleted_total = 0

    async def run(self, stop: asyncio.Event) -> None:
        """A sweep every minute, and at once when a file system falls below --min-free."""
        last = -SWEEP_EVERY_S
        while not stop.is_set():
            now = time.monotonic()
            if now - last >= SWEEP_EVERY_S or await self._short():
                last = now
                try:
                    await self.sweep()
                except (RetryableError, SourceStalled) as exc:
                    log.warning("retention sweep postponed", reason=str(exc))
                except TailupError as exc:
                    log.error("retention sweep failed", reason=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), LOOK_EVERY_S)

    async def _short(self) -> bool:
        if self._policy.min_free.off:
            return False
        for root in self._roots:
            disk = await self._disk(root)
            if disk is not None and disk.free_bytes < self._policy.min_free.bytes_of(
                disk.total_bytes
            ):
                return True
        return False

    async def sweep(self) -> Sweep:
        found = await self._candidates()
        result = Sweep()
        refused: dict[str, Wait] = {}
        while True:
            disks = await self._disks(found)
            cands = [_refused(f.candidate, refused.get(f.record.stream_id)) for f in found]
            decided = plan(cands, now_s=self._clock(), policy=self._policy, disks=disks)
            by_id = {f.record.stream_id: f for f in found}
            deleted, refusals = await self._carry_out(decided, by_id, result)
            refused.update(refusals)
            found = [f for f in found if f.record.stream_id not in deleted]
            if not refusals:
                break  # every planned delete went through: this plan was the last
            # A refused delete: plan again, the space it would have freed asked of the next.
        result.waiting = list(decided.waiting)
        self._report(result)
        return result

    async def _carry_out(
        self, decided: Plan, by_id: dict[str, _Found], result: Sweep
    ) -> tuple[set[str], dict[str, Wait]]:
        deleted: set[str] = set()
        refusals: dict[str, Wait] = {}
        for cand, why in decided.deletes:
            wait = await self._delete(by_id[cand.stream_id])
            if wait is not None:
                refusals[cand.stream_id] = wait
                continue
            deleted.add(cand.stream_id)
            result.deleted.append(cand)
            log.info(
                "local recording deleted after verified upload",
                path=cand.path,
                stream_id=cand.stream_id,
                size=cand.size_bytes,
                why=why.value,
            )
        return deleted, refusals

    async def _delete(self, found: _Found) -> Wait | None:
        """Delete one file if S3, /proc and the path still agree; else why not."""
        record, path = found.record, Path(found.record.path)
        head = await self._store.for_bucket(record.bucket).head_object(record.key)
        if not object_matches(
            record_size=record.final_size,
            record_etag=record.etag,
            object_size=head.size if head else None,
            object_etag=head.etag if head else "",
        ):
            log.warning("not deleted: the object in S3 changed", path=str(path), key=record.key)
            return Wait.OBJECT_CHANGED
        if self._busy(path):
            return Wait.BEING_UPLOADED
        if await self._writer(record) is not Writer.CLOSED:
            return Wait.WRITER
        try:
            await run_blocking(
                act,
                AfterUploadKind.DELETE,
                None,
                path,
                found.root,
                UploadedFile.of_record(record),
                timeout_s=self._io_timeout_s,
                what=str(path),
                on=path,
            )
        except NotTheUpload:
            return Wait.NOT_THE_UPLOAD
        except FileNotFoundError:
            return None  # gone meanwhile: nothing to keep
        except OSError as exc:
            log.warning("retention delete failed", path=str(path), reason=str(exc))
            return Wait.NOT_THE_UPLOAD
        return None

    async def _writer(self, record: StreamRecord) -> Writer:
        path = Path(record.path)
        found = await run_blocking(
            writers_open, [path], timeout_s=self._io_timeout_s, what="/proc", on=path
        )
        return self._writer_state(record, found[path])

    def _writer_state(self, record: StreamRecord, found: bool | None) -> Writer:
        """/proc's answer for the record's file, read as the after-upload action reads it: a
        close seen before completion lets "no writer visible" count where /proc is blind."""
        sight = self._sight(Path(record.path))
        if may_act(
            close_seen=record.close_seen,
            writer_open=found,
            proc_sees_all=sight.sees_every_writer,
        ):
            return Writer.CLOSED
        state = writer_fact(found, sight).state
        return Writer.UNKNOWN if state is Writer.CLOSED else state

    async def _candidates(self) -> list[_Found]:
        records = await self._ended_records()
        found: list[_Found] = []
        looked: list[tuple[StreamRecord, FileStat, Path | None]] = []
        for record in records:
            path = Path(record.path)
            st = await self._stat(path)
            if st is None:
                continue  # gone: nothing to delete
            looked.append((record, st, await self._root_of(path)))
        paths = [Path(r.path) for r, _, _ in looked]
        open_now = (
            await run_blocking(writers_open, paths, timeout_s=self._io_timeout_s, what="/proc")
            if paths
            else {}
        )
        for record, st, root in looked:
            path = Path(record.path)
            completed = record.state is StreamState.COMPLETED
            expected = UploadedFile.of_record(record)
            cand = Candidate(
                stream_id=record.stream_id,
                path=record.path,
                device=st.device,
                completed_at_s=ended_at(record),
                size_bytes=st.size,
                verified=upload_verified(record),
                writer=self._writer_state(record, open_now.get(path)),
                inside=root is not None,
                holds_upload=holds_upload(expected, st) if completed else False,
                being_uploaded=self._busy(path),
                keep_local_s=self._keep_local_s.get(root) if root is not None else None,
            )
            found.append(_Found(record, cand, root or path.parent))
        return found

    async def _ended_records(self) -> list[StreamRecord]:
        """This scope's ended records whose file may still be at their path. Only their
        path_ended field is read for all of them (one round trip a page): a file deleted, by a
        sweep or anyone, has it set by the watcher, so old records cost little."""
        records: list[StreamRecord] = []
        offset = 0
        while True:
            ids = await self._checkpoints.ended_stream_ids(self._scope, limit=_PAGE, offset=offset)
            if not ids:
                return [r for r in records if not r.state.is_live and not r.path_ended]
            offset += len(ids)
            ended = await self._checkpoints.get_fields(ids, "path_ended")
            wanted = [sid for sid, flag in zip(ids, ended, strict=True) if flag != "1"]
            records.extend(await self._checkpoints.load_records(wanted))

    async def _stat(self, path: Path) -> FileStat | None:
        try:
            return await run_blocking(stat_file, path, timeout_s=self._io_timeout_s)
        except (SourceError, SourceStalled):
            return None

    async def _root_of(self, path: Path) -> Path | None:
        """The watched folder holding ``path`` once every symlink is resolved: a record's path
        that leads outside them is never deleted."""
        real = Path(
            await run_blocking(os.path.realpath, path, timeout_s=self._io_timeout_s, on=path)
        )
        inside = [r for r in self._roots if real.is_relative_to(r) and path.is_relative_to(r)]
        return max(inside, key=lambda r: len(r.parts)) if inside else None

    async def _disk(self, path: Path) -> Disk | None:
        try:
            return await run_blocking(self._disk_of, path, timeout_s=self._io_timeout_s, on=path)
        except (OSError, SourceStalled):
            return None

    async def _disks(self, found: Sequence[_Found]) -> dict[int, Disk]:
        disks: dict[int, Disk] = {}
        for one in found:
            if one.candidate.device not in disks:
                disk = await self._disk(Path(one.record.path).parent)
                if disk is not None:
                    disks[one.candidate.device] = disk
        return disks

    def status(self) -> dict[str, Any]:
        """/healthz's account: what was freed since start, what the last sweep left waiting."""
        waiting: dict[str, int] = {}
        for _, reason in self.last.waiting if self.last else []:
            waiting[reason.name.lower()] = waiting.get(reason.name.lower(), 0) + 1
        return {
            "freed_bytes": self._freed_total_bytes,
            "deleted": self._deleted_total,
            "waiting": waiting,
            "last_sweep": self.last.summary if self.last else "",
        }

    def _report(self, result: Sweep) -> None:
        self.last = result
        self._freed_total_bytes += result.freed_bytes
        self._deleted_total += len(result.deleted)
        metrics.retention_swept(
            freed_bytes=result.freed_bytes,
            deleted=len(result.deleted),
            waiting={
                wait.name.lower(): sum(1 for _, why in result.waiting if why is wait)
                for wait in Wait
            },
        )
        if result.deleted or result.waiting:
            log.info(result.summary, freed=result.freed_bytes, waiting=len(result.waiting))


def _refused(cand: Candidate, wait: Wait | None) -> Candidate:
    """``cand`` as the next plan must see it after a refusal at delete time."""
    match wait:
        case None:
            return cand
        case Wait.OBJECT_CHANGED:
            return dataclasses.replace(cand, object_changed=True)
        case Wait.NOT_VERIFIED:
            return dataclasses.replace(cand, verified=False)
        case Wait.WRITER:
            return dataclasses.replace(cand, writer=Writer.UNKNOWN)
        case Wait.BEING_UPLOADED:
            return dataclasses.replace(cand, being_uploaded=True)
        case _:
            return dataclasses.replace(cand, holds_upload=False)


def ended_at(record: StreamRecord) -> float:
    moment = parse_iso(record.completed_at) or parse_iso(record.last_activity_at_utc)
    moment = moment or parse_iso(record.created_at)
    return moment.timestamp() if moment else 0.0
