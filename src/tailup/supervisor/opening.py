"""Opening a file: the shell around tailup.rules.admission. It asks the core what to do, answers
its questions with I/O, and carries out its commands."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, TypeVar

import structlog

from tailup.afterupload import AfterUpload, run_after_upload
from tailup.checkpoint import Claim
from tailup.errors import PermanentError, SourceError
from tailup.identity import (
    FileIdentity,
    needs_generation,
    record_identity,
)
from tailup.keyclaim import claim_key
from tailup.keys import (
    template_is_unique,
)
from tailup.model import (
    StreamRecord,
    utc_now,
)
from tailup.recovery import look_up
from tailup.rules.admission import decide
from tailup.rules.records import (
    Placement,
)
from tailup.rules.vocabulary import (
    Act,
    Alias,
    Ask,
    AskClaim,
    AskCreate,
    AskGeneration,
    AskHead,
    AskHistory,
    AskKey,
    AskRecord,
    AskReserve,
    AskS3,
    AskSha256,
    AskStat,
    Facts,
    FinishAfterUpload,
    LookLater,
    MoveRecord,
    Note,
    Release,
    Remember,
    Start,
    Unreadable,
    Where,
    Write,
)
from tailup.sameupload import UploadedFile
from tailup.source import (
    FileStat,
    crc32_of_range_blocking,
    file_identity,
    inode_generation,
    stat_file,
)
from tailup.stream.sha256after import Sha256Result, finish_sha256
from tailup.supervisor.state import (
    ENDING_WAIT_S,
    UNCHANGED_REMEMBERED,
    SupervisorState,
    new_stream_id,
)

log = structlog.get_logger("tailup.supervisor")
T = TypeVar("T")


class Opening(SupervisorState):
    async def _open_stream(self, path: Path, *, writer_closed: bool) -> None:
        """Ask the core (tailup.rules.admission) what to do with the file, answer its questions
        with I/O, carry out its commands."""
        await self._after_ending(path)
        facts = Facts(path, writer_closed)
        where = self._where(path)
        while True:
            step = decide(facts, where)
            if isinstance(step, Act):
                await self._carry_out_act(step, path, writer_closed=writer_closed)
                return
            facts = facts.answered(step, await self._answer(step, opened=path))

    async def _after_ending(self, path: Path) -> None:
        """A file at the name of a stream told its file is gone (OBS's write probe, deleted
        and made again at once) is looked at once that stream has ended, at most ENDING_WAIT_S
        later: an end with nothing in S3 gives the key back (tailup.rules.keyclaims), and the
        new file then gets it rather than NAME-2. Only this path's events wait."""
        ending = self._ending.get(path)
        if ending is None:
            return
        try:
            async with asyncio.timeout(ENDING_WAIT_S):
                await ending[1].wait()
        except TimeoutError:
            log.info(
                "a new file at the name of a stream still ending: looked at without waiting more",
                path=str(path),
                stream_id=ending[0].stream_id,
            )
        if self._ending.get(path) is ending:
            del self._ending[path]  # waited for once: the path's next events do not

    def _where(self, path: Path) -> Where:
        """This daemon as the core sees it for one open: the clocks and a fresh id, fixed."""
        now_mono = time.monotonic()
        until = self._elsewhere.get(path, 0.0)
        if until and until <= now_mono:
            del self._elsewhere[path]
        scope, found_root = self._scope_of(path)
        root = found_root or path.parent
        watch_name = self._shares[root][0] if root in self._shares else root.name
        settings = self._settings
        return Where(
            placement=Placement(root=root, watch_name=watch_name, scope=scope),
            shared=root in self._shares,
            defaults=self._folders.defaults(found_root),
            now=utc_now(),
            now_ns=time.time_ns(),
            now_mono=now_mono,
            started_ns=self._started_ns,
            fresh_id=new_stream_id(),
            redis_lost=self.redis_lost,
            keep_records_s=settings.keep_records,
            lease_ttl_s=settings.lease_ttl,
            unique_template=template_is_unique(self._folders.of(found_root).key_template),
            check_keys=self._folders.deps(found_root).check_keys,
            running=frozenset(self._by_id),
            elsewhere_until=until if until > now_mono else 0.0,
            unchanged=self._unchanged.get(path),
        )

    async def _answer(self, ask: Ask[Any], *, opened: Path) -> object:
        """One question of the core about opening the file ``opened``, answered with I/O
        (SourceStalled and RetryableError pass: the event is deferred)."""
        match ask:
            case AskStat(path):
                try:
                    return await self._io(stat_file, path)
                except SourceError as exc:
                    return Unreadable(str(exc))
            case AskHistory(path):
                return await self._path_history(path)
            case AskGeneration(path, inode):
                return await self._io(inode_generation, path, inode)
            case AskHead(path, size, crc, device, inode):
                got, now_crc = await self._io(crc32_of_range_blocking, path, 0, size, device, inode)
                return got == size and now_crc == crc
            case AskRecord(stream_id):
                loaded = await self._checkpoints.load(stream_id)
                return None if loaded is None else (self._localize(loaded[0]), loaded[1])
            case AskClaim(stream_id):
                claim = await self._checkpoints.claim(
                    stream_id, self._node_id, self._settings.lease_ttl
                )
                if not isinstance(claim, Claim):
                    log.debug("another node uploads it", stream_id=stream_id, holder=claim)
                return isinstance(claim, Claim)
            case AskS3(key, stream_id, size, mtime_ns, check_object, prefix):
                return await look_up(
                    self._store,
                    key,
                    stream_id,
                    size,
                    mtime_ns,
                    check_object=check_object,
                    prefix=prefix,
                )
            case AskReserve(key, stream_id):
                return await self._checkpoints.reserve_key(key, stream_id)
            case AskKey(key, stream_id, check):
                try:
                    return await claim_key(
                        self._checkpoints,
                        self._store,
                        key,
                        stream_id,
                        check=check,
                        # An HLS folder's key is the file's path, never suffixed.
                        exact=self._hls_root(opened) is not None,
                    )
                except PermanentError:
                    return None
            case AskSha256(stream_id):
                return await self._finish_sha256(stream_id)
            case AskCreate(_, record):
                return await self._checkpoints.create_new(record)
        raise AssertionError(f"a question the shell cannot answer: {ask!r}")

    async def _carry_out_act(self, act: Act, path: Path, *, writer_closed: bool) -> None:
        for command in act.commands:
            match command:
                case Start(record, parts, resumed, why):
                    if why:
                        self._started_log(record, why)
                    self._elsewhere.pop(path, None)
                    self._start(record, parts, writer_closed=writer_closed, resumed=resumed)
                case Write(record):
                    await self._checkpoints.create(record)
                case MoveRecord(record, new):
                    await self._checkpoints.update(
                        record.stream_id, path=str(new), path_ended=False
                    )
                    await self._forget_path(Path(record.path), record.stream_id)
                    log.info(
                        "recording found under another path",
                        stream_id=record.stream_id,
                        old=record.path,
                        new=str(new),
                    )
                case Alias(stream_id, at, closed):
                    self._note_alias(stream_id, at, closed=closed)
                case Remember(at, look):
                    self._remember_unchanged(at, look)
                case LookLater(at, until_mono):
                    self._elsewhere[at] = until_mono
                case FinishAfterUpload(record, close_seen):
                    await self._pending_after_upload(record, writer_closed=close_seen)
                case Release(stream_id):
                    if stream_id not in self._by_id:
                        await self._release_claim(stream_id)
                case Note(event, fields, warn):
                    (log.warning if warn else log.info)(
                        event, **{"path": str(path), **dict(fields)}
                    )
        log.debug("opened", path=str(path), why=act.why)

    def _started_log(self, record: StreamRecord, why: str) -> None:
        log.info(
            "stream started",
            stream_id=record.stream_id,
            path=record.path,
            key=record.key,
            generation=record.generation,
            why=why,
        )

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

    async def _finish_sha256(self, stream_id: str) -> bool:
        """Finish a SHA-256 that followed publication and was cut short (tailup.stream.sha256after);
        True once nothing is left pending."""
        loaded = await self._checkpoints.load(stream_id)
        if loaded is None:
            return True
        record, parts = loaded
        result = await finish_sha256(
            self._store.for_bucket(record.bucket),
            self._checkpoints,
            record,
            parts,
            timeout_s=self._settings.io_timeout,
        )
        return result is not Sha256Result.PENDING

    async def _pending_after_upload(self, record: StreamRecord, *, writer_closed: bool) -> None:
        """Finish an after-upload action left pending (its writer held the file at completion,
        or a shutdown cut it off), now that the file is unchanged since its verified upload."""
        result = await run_after_upload(
            self._folders.of(Path(record.watch_root)).after_upload_action,
            Path(record.path),
            Path(record.watch_root),
            close_seen=writer_closed,
            proc_sees_all=self._sight(Path(record.path)).sees_every_writer,
            timeout_s=self._settings.io_timeout,
            expected=UploadedFile.of_record(record),
        )
        if not result.pending:
            await self._checkpoints.update(record.stream_id, after_upload_pending=False)
        elif result is AfterUpload.STALLED and self._group is not None:
            # Its mount hangs: looked at again every idle timeout until it answers, then done.
            self._group.create_task(self._after_completion(record, linger=True))
