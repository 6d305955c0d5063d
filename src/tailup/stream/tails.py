"""--rpo's shell: a task beside the stream's loop that looks at the file every tenth of the RPO
and stages its newest bytes as tail segments when tailup.rules.tails says one is due, deletes the
segments a checkpointed part now holds, and every segment of an upload when it completes or is
aborted (tailup.rpo has the contract and the layout).

It never holds back a part: it runs on a task of its own (a part's upload never waits for a
segment's), takes budget only when it is free and no part waits for it, and reads through no
part slot. It never creates the upload either: the stream's loop does, once the file has bytes
(tailup.stream.core), so nothing races its CreateMultipartUpload."""

from __future__ import annotations

import asyncio
import contextlib
import time

from tailup import permissions
from tailup.checksums import part_checksum
from tailup.errors import AccessRefused, TailupError
from tailup.keys import segment_key, tail_prefix
from tailup.offload import run_blocking
from tailup.plan import PartRange
from tailup.rpo import delete_tails, list_tails
from tailup.rules.tails import (
    TailSegment,
    TailView,
    acked_prefix_bytes,
    obsolete,
    past_end,
    record_look,
    tail_due,
    tail_look_s,
    tail_wait_s,
    unsent_since,
)
from tailup.source import stat_file
from tailup.stream.context import Collaborator, Outcome, StreamContext
from tailup.stream.sending import PartSender

STAGED_CONTENT_TYPE = "application/octet-stream"
# Tries at deleting an ended upload's segments (what is left then is warned about, with its
# prefix; S3 lifecycle rules filter by key prefix, and segments sit beside each recording).
CLEAN_TRIES = 3
# The next write may take longer than the last: it starts this much earlier than the last one's
# duration alone says.
WRITE_HEADROOM = 1.5
# How long a halt waits for a segment write under way before it cancels it.
HALT_WAIT_S = 10.0
# Outcomes of a finalize after which the upload is an object: its tail segments go.
_COMPLETED = frozenset(
    {Outcome.COMPLETED, Outcome.COMPLETED_WRITER_OPEN, Outcome.CHANGED_AFTER_COMPLETE}
)


class TailWriter(Collaborator):
    """Every stream has one; without --rpo (deps.rpo_s None) it does nothing."""

    def __init__(self, ctx: StreamContext, sender: PartSender) -> None:
        super().__init__(ctx)
        self._sender = sender
        self._rpo_s = ctx.deps.rpo_s or 0.0
        if ctx.deps.rpo_s:
            sender.on_upload_ended = self.upload_ended  # every abort of the stream's uploads
        self._task: asyncio.Task[None] | None = None
        self._halting = asyncio.Event()  # the task ends at its next turn
        self._upload: tuple[str, str] = ("", "")  # (key, upload id) the segments belong to
        self._segments: list[TailSegment] = []  # staged and not deleted yet
        self._tail_end = 0  # end of the last segment staged (0: none)
        self._looks: list[tuple[float, int]] = []
        self._write_s = 0.0
        self._failing = False
        self._broken = False  # a defect ended the task: not started again

    # -- the stream's loop drives these --

    async def on_look(self, size_bytes: int) -> None:
        """The task runs while the file has bytes, beside an upload made for them (a recording
        shorter than a part is then completed from one part rather than one PutObject)."""
        if not self._rpo_s or self._broken or size_bytes == 0 or self._ctx.stop.is_set():
            return
        await self._sender.ensure_upload()
        if self._task is None or self._task.done():
            self._halting = asyncio.Event()
            self._task = asyncio.create_task(self._run(), name=f"tails {self.stream_id}")

    async def before_finalize(self) -> tuple[str, str]:
        """Nothing is staged while the upload completes; returns (key, upload id) to clean."""
        await self.halt()
        return self.record.key, self.record.upload_id

    async def after_finalize(self, upload: tuple[str, str], outcome: Outcome) -> None:
        if self._rpo_s and upload[1] and outcome in _COMPLETED:
            await self.upload_ended(*upload)

    async def halt(self) -> None:
        """Stop the task once its write under way (if any) ends: a segment cancelled mid-PUT
        might still land after the deletes that follow. One stuck past HALT_WAIT_S is
        cancelled."""
        task, self._task = self._task, None
        if task is None or task is asyncio.current_task():
            return
        self._halting.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), HALT_WAIT_S)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        except BaseException:
            task.cancel()  # the stream itself is cancelled: its tail task goes with it
            raise

    async def upload_ended(self, key: str, upload_id: str) -> None:
        """The upload was completed or aborted: no segment of it may stay. A few tries; what
        is left then is warned about."""
        await self.halt()
        known = self._segments if self._upload == (key, upload_id) else []
        for attempt in range(1, CLEAN_TRIES + 1):
            try:
                async with self.deps.tail_requests:
                    deleted = await delete_tails(self.deps.store, key, upload_id, known)
                break
            except AccessRefused as exc:
                permissions.refused(exc.action, str(exc))
                return
            except TailupError as exc:
                if attempt == CLEAN_TRIES:
                    self._log.warning(
                        "tail segments not deleted",
                        prefix=tail_prefix(key, upload_id),
                        reason=str(exc),
                    )
                    return
                await asyncio.sleep(0.5 * attempt)
        if self._upload == (key, upload_id):
            self._forget()
            self._upload = ("", "")
        if deleted:
            self._log.debug("tail segments deleted", count=deleted)

    # -- the task --

    async def _run(self) -> None:
        halting = self._halting
        while not halting.is_set():
            wait_s = tail_look_s(self._rpo_s)
            try:
                wait_s = await self._turn()
                if self._failing:
                    self._failing = False
                    self._log.info("tail segments staged again")
            except TailupError as exc:
                # The stream's loop sees the same S3 or file trouble and acts on it.
                if not self._failing:
                    self._log.warning("tail segment not staged", reason=str(exc))
                self._failing = True
            except Exception:
                # A defect here must not end the recording's upload: the RPO is lost, loudly.
                self._log.exception("tail writer crashed; no more tail segments for this stream")
                self._broken = True
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(halting.wait(), wait_s)

    def _forget(self) -> None:
        self._segments, self._tail_end, self._looks = [], 0, []

    async def _turn(self) -> float:
        """One look (and maybe a segment); returns the seconds until the next."""
        look_s = tail_look_s(self._rpo_s)
        record = self.record
        if not record.upload_id:
            return look_s
        if self._upload != (record.key, record.upload_id):
            # A new upload (a start, a restart, a rekey, one that vanished): the old one's
            # segments go; a previous run's of this one are listed once, so that those a part
            # now holds are deleted too.
            if self._upload[1]:
                await self._drop(self._segments + await self._listed(*self._upload))
            self._forget()
            self._upload = (record.key, record.upload_id)
            self._segments = await self._listed(*self._upload)
            self._tail_end = max((s.end for s in self._segments), default=0)
        looked_at = self.deps.clock()  # before the stat: bytes it misses came after
        st = await run_blocking(
            stat_file, self.path, timeout_s=self.deps.stat_timeout_s, what=f"stat of {self.path}"
        )
        if not st.same_file(record.device, record.inode, record.birth_ns):
            return look_s  # replaced or moved: the stream's loop decides
        acked = acked_prefix_bytes({n: p.size for n, p in self.parts.items()})
        beyond = past_end(self._segments, st.size)
        if beyond:  # it shrank: what was staged past its end is no longer its bytes
            await self._drop(beyond)
            self._tail_end = max((s.end for s in self._segments), default=0)
        covered = max(acked, self._tail_end)
        self._looks = record_look(
            self._looks, now_s=looked_at, size_bytes=st.size, covered_bytes=covered
        )
        view = TailView(
            size_bytes=st.size,
            acked_bytes=acked,
            tail_end_bytes=self._tail_end,
            unsent_since_s=unsent_since(self._looks, covered),
            now_s=self.deps.clock(),
            rpo_s=self._rpo_s,
            write_s=self._write_s * WRITE_HEADROOM,
            max_segment_bytes=min(record.base_part_size, self.deps.budget.capacity_bytes),
        )
        due = tail_due(view)
        staged = due is not None and await self._stage(*due)
        await self._drop(obsolete(self._segments, acked))  # after: staging comes first
        if due is None:
            return tail_wait_s(view)
        return 0.0 if staged and due[1] < st.size else look_s  # more to catch up: at once

    async def _stage(self, start: int, end: int) -> bool:
        """Stage the file's [start, end); False if it could not now."""
        async with self.deps.tail_requests:  # before the budget: none held while waiting
            grant = self.deps.budget.try_acquire(end - start)
            if grant is None:
                return False  # parts are using the memory: the next look tries again
            try:
                started = time.monotonic()
                loaded = await self._sender.load(PartRange(0, start, end))
                end = start + len(loaded.body)  # the file may have shrunk meanwhile
                if end <= start:
                    return False
                key = segment_key(*self._upload, start, end)
                await self.deps.store.put_object(
                    key,
                    loaded.body,
                    loaded.crc,
                    STAGED_CONTENT_TYPE,
                    checksum=part_checksum(self.record.checksum, loaded.crc, loaded.stored),
                    options=self.deps.object_options.side_object,
                )
                del loaded
            finally:
                await asyncio.shield(self.deps.budget.release(grant))
        self._write_s = time.monotonic() - started
        self._segments.append(TailSegment(start, end, key))
        self._tail_end = end
        self._log.debug("tail segment staged", start=start, end=end, seconds=self._write_s)
        return True

    async def _drop(self, segments: list[TailSegment]) -> None:
        for segment in sorted(set(segments)):
            try:
                async with self.deps.tail_requests:
                    await self.deps.store.delete_object(segment.key)
            except AccessRefused as exc:  # optional: tailup.permissions
                permissions.refused(exc.action or "s3:DeleteObject", str(exc))
            if segment in self._segments:
                self._segments.remove(segment)

    async def _listed(self, key: str, upload_id: str) -> list[TailSegment]:
        """The upload's staged segments; none known without s3:ListBucket (optional)."""
        try:
            async with self.deps.tail_requests:
                return await list_tails(self.deps.store, key, upload_id)
        except AccessRefused as exc:
            permissions.refused(exc.action or "s3:ListBucket", str(exc))
            return []
