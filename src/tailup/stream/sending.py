"""Sending a stream's parts: the full parts not sent yet, read in order and uploaded a few at a
time within the memory budget, each checkpointed once S3 has it; creating the multipart upload,
and sweeping the uploads of the stream's key that nothing records."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from tailup import metrics, permissions
from tailup.body import PART_BUFFERS, PartBody
from tailup.checksums import effective_type, part_checksum, stored_checksum
from tailup.errors import AccessRefused, PlanExceeded, RetryableError, TailupError
from tailup.hashplan import Sha256Setting
from tailup.integrity import crc32_of
from tailup.metadata import content_type_for
from tailup.model import PartRecord, iso, lowest_gap, utc_now
from tailup.offload import run_blocking
from tailup.plan import PartRange
from tailup.resume import orphan_uploads
from tailup.source import FileStat, read_range_blocking
from tailup.stream.context import Collaborator, StreamContext, _first_error
from tailup.uploadcard import card_key, encode_card


@dataclass(frozen=True, slots=True)
class _Loaded:
    """One part read from disk: the buffer it is sent from, its CRC32, and its CRC32C or
    CRC64NVME when the stream sends that (tailup.checksums)."""

    body: PartBody
    crc: int
    stored: str = ""


class PartSender(Collaborator):
    def __init__(
        self,
        ctx: StreamContext,
        *,
        note_change: Callable[[FileStat], None],
        may_have_orphans: bool,
    ) -> None:
        super().__init__(ctx)
        self._note_change = note_change  # Stream._note_change: a look at the file between parts
        self._may_have_orphans = may_have_orphans  # see sweep_orphans
        self._slots = asyncio.Semaphore(ctx.deps.part_concurrency)
        self._created_upload = ""  # the upload this run created (its sends are all known)
        # Told (key, upload id) after an abort: --rpo deletes the upload's tail segments.
        self.on_upload_ended: Callable[[str, str], Awaitable[None]] | None = None

    async def send_ready_parts(self, size_bytes: int) -> None:
        self._check_capacity(size_bytes)
        first = lowest_gap(frozenset(self.parts))
        if any(
            n not in self.parts
            for n in range(first, self.plan.full_parts_available(size_bytes) + 1)
        ):
            await self.ensure_upload()
            await self._send_parts(self._ready_ranges(first, size_bytes))

    def _check_capacity(self, size_bytes: int) -> None:
        if size_bytes > self.plan.capacity_bytes():
            raise PlanExceeded(f"{self.path} {self.plan.exceeded_reason(size_bytes)}")

    async def _ready_ranges(self, first: int, size_bytes: int) -> AsyncIterator[PartRange]:
        """Full parts not sent yet, in order, from part ``first``. When they run out it looks at
        the file again: a writer faster than one upload (or a file dropped in whole) keeps every
        slot busy instead of waiting for a batch to drain before the next look."""
        number = first
        while True:
            available = self.plan.full_parts_available(size_bytes)
            for candidate in range(number, available + 1):
                if candidate not in self.parts:
                    yield self.plan.part_range(candidate)
            number = max(number, available + 1)
            st = await self._stat()
            if self._ctx.last_seen is not None and st.size < self._ctx.last_seen.size:
                return  # it shrank: the next look (_observe) sorts the parts out
            self._note_change(st)
            grown = st.size
            if self.plan.full_parts_available(grown) <= available:
                return
            self._check_capacity(grown)
            size_bytes = grown

    async def _send_parts(self, ranges: AsyncIterator[PartRange]) -> None:
        # Parts are read one after the other, in order (which keeps the whole-file digest going),
        # and uploaded up to part_concurrency at a time: reading from the page cache is far
        # faster than any upload.
        try:
            async with asyncio.TaskGroup() as group:
                async for rng in ranges:
                    if self._ctx.stop.is_set() or not await self._start_upload(group, rng):
                        break
        except BaseExceptionGroup as group_error:
            raise _first_error(group_error) from None

    # _start_upload (and Finalizer._start_check) take a slot, read a part and hand its buffer to
    # a task. They are methods of their own so that no loop frame keeps the buffer after its task
    # gives the budget back: the next part may wait long for budget, and 100 streams each holding
    # one part past its grant were 800 MiB over the budget (bench c).

    async def _start_upload(self, group: asyncio.TaskGroup, rng: PartRange) -> bool:
        """False if the file is now shorter than the part: the next look decides."""
        grant = await self.take_slot(rng.size)
        try:
            loaded = await self.load(rng, offer_to_digest=True)
        except BaseException:
            await self.give_slot(grant)
            raise
        if len(loaded.body) < rng.size:
            await self.give_slot(grant)
            return False
        group.create_task(self.send_part(rng, grant, loaded))
        return True

    async def take_slot(self, size_bytes: int) -> int:
        # Slot (per-stream concurrency) first, then memory budget, both before reading.
        await self._slots.acquire()
        try:
            return await self.deps.budget.acquire(size_bytes)
        except BaseException:
            self._slots.release()
            raise

    async def give_slot(self, grant: int) -> None:
        self._slots.release()
        await asyncio.shield(self.deps.budget.release(grant))

    async def send_part(
        self,
        rng: PartRange,
        grant: int,
        loaded: _Loaded,
        hashed: asyncio.Future[None] | None = None,
    ) -> None:
        """Upload a part read by ``_load`` (and, at finalize, wait until the digest is done with
        its buffer), then give its slot and budget back."""
        try:
            await self._upload_part(rng.number, loaded.body, loaded.crc, loaded.stored)
            if hashed is not None:
                await hashed
        except TailupError as exc:
            self._log.warning("part upload failed", part=rng.number, reason=str(exc))
            raise
        finally:
            # The buffer goes (back to the pool) before its budget does: what the budget admits
            # next never overlaps it.
            body = loaded.body
            del loaded
            PART_BUFFERS.give(body)
            del body
            await self.give_slot(grant)

    async def _upload_part(self, number: int, data: PartBody, crc: int, stored: str) -> None:
        started = time.monotonic()
        try:
            etag = await self.deps.store.upload_part(
                self.record.key,
                self.record.upload_id,
                number,
                data,
                crc,
                checksum=part_checksum(self.record.checksum, crc, stored),
                options=self.deps.object_options,
            )
        except TailupError as exc:
            self._adopted_refused(exc, completing=False)
            raise
        seconds = time.monotonic() - started
        # What S3 acknowledged, before the checkpoint: lets crash tests see every part sent.
        self._log.debug("part sent", part=number, size=len(data), crc32=crc)
        part = PartRecord(number, len(data), crc, etag, iso(utc_now()), stored)
        # Only a checkpointed part counts as sent: if this raises, the part is sent again later.
        await self.deps.checkpoints.commit_part(self.stream_id, part)
        if number in self.parts:
            metrics.PARTS_RESENT.inc()
        self.parts[number] = part
        metrics.part_uploaded(len(data), seconds)
        self._log.debug("part uploaded", part=number, size=len(data))

    async def load(self, rng: PartRange, *, offer_to_digest: bool = False) -> _Loaded:
        """Read a part and compute its CRC32 (its CRC32C or CRC64NVME too, and maybe extend the
        digest), in one worker-thread call: zlib-ng, awscrt and hashlib release the GIL. Every
        body sent is loaded here: it leaves under the daemon's bandwidth limit (tailup.body), if
        there is one."""
        loaded = await run_blocking(
            self._load_blocking,
            rng,
            offer_to_digest,
            timeout_s=self.deps.stat_timeout_s,
            what=f"reading part {rng.number} of {self.path}",
        )
        loaded.body.throttle = self.deps.bandwidth
        return loaded

    def _load_blocking(self, rng: PartRange, offer_to_digest: bool) -> _Loaded:
        body = self.read_blocking(rng)
        crc = crc32_of(body)
        if offer_to_digest and len(body) == rng.size and self.deps.sha256 is Sha256Setting.AUTO:
            self._digest.offer(rng.number, body, crc)
        return _Loaded(body, crc, stored_checksum(self.record.checksum, body))

    def read_blocking(self, rng: PartRange) -> PartBody:
        return read_range_blocking(
            self.path, rng.start, rng.size, self.record.device, self.record.inode
        )

    async def ensure_upload(self) -> None:
        if self.record.upload_id:
            return
        # A lost reply to this call leaves an upload nobody knows of: swept when the stream ends.
        self._may_have_orphans = True
        upload_id = await self.deps.store.create_upload(
            self.record.key,
            content_type_for(self.path.name),
            checksum=self.record.checksum,
            checksum_type=effective_type(self.record.checksum, self.record.checksum_type),
            options=self.deps.object_options,
        )
        try:
            await self.deps.checkpoints.update(self.stream_id, upload_id=upload_id)
        except BaseException:
            # The upload exists but nothing records it: abort it now rather than orphan it.
            await asyncio.shield(self.abort_quietly(upload_id))
            raise
        self.record = self.record.with_changes(upload_id=upload_id)
        self._created_upload = upload_id
        self._log.info("multipart upload created", key=self.record.key)
        await self._put_card(upload_id)

    async def _put_card(self, upload_id: str) -> None:
        """The upload card (tailup.uploadcard): what `tailup salvage --from-s3` finds the
        upload by when Redis died with the node. Without it the upload goes on; only that
        salvage cannot tell it is tailup's."""
        body = encode_card(self.record, upload_id, host=socket.gethostname())
        crc = crc32_of(body)
        try:
            await self.deps.store.put_object(
                card_key(self.record.key),
                body,
                crc,
                "application/json",
                checksum=part_checksum(
                    self.record.checksum, crc, stored_checksum(self.record.checksum, body)
                ),
                options=self.deps.object_options.side_object,
            )
        except TailupError as exc:
            self._log.warning(
                "upload card not written: `tailup salvage --from-s3` will not find this upload",
                reason=str(exc),
            )

    async def drop_card(self, *, quiet: bool = False) -> None:
        """The upload's card, not needed once it is completed or aborted. S3 unreachable raises
        (the publication is tried again, so no card is left behind) unless ``quiet``."""
        if not self.record.upload_id:
            return  # one PutObject: there was no upload, hence no card
        try:
            await self.deps.store.delete_object(card_key(self.record.key))
        except AccessRefused as exc:
            permissions.refused("s3:DeleteObject", str(exc))
        except RetryableError as exc:
            if not quiet:
                raise
            self._log.warning("upload card not deleted", reason=str(exc))
        except TailupError as exc:
            self._log.warning("upload card not deleted", reason=str(exc))

    def may_hold(self, number: int) -> bool:
        """Whether the upload may hold part ``number`` already: recorded as sent, or the upload
        was made before this run (a part it sent may never have been checkpointed)."""
        return number in self.parts or self.record.upload_id != self._created_upload

    async def sweep_orphans(self) -> bool:
        """Abort the other uploads of the stream's own key when it ends: a CreateMultipartUpload
        whose reply was lost (the retry made another) or that a crash cut off from its checkpoint
        leaves one. Best effort, a few tries: `tailup gc` catches what this misses. True when
        none can be left (none could have been made, or all were aborted)."""
        if not self._may_have_orphans:
            return True
        for attempt in range(1, 4):
            try:
                uploads = await self.deps.store.list_uploads(self.record.key)
                for upload_id in orphan_uploads(self.record, uploads):
                    await self.deps.store.abort_upload(self.record.key, upload_id)
                    self._log.info("orphan upload aborted", upload_id=upload_id)
                return True
            except RetryableError as exc:
                if attempt == 3:
                    self._log.warning("orphan sweep failed; `tailup gc` will", reason=str(exc))
                else:
                    await asyncio.sleep(0.5 * attempt)
            except TailupError as exc:
                self._log.warning("orphan sweep failed; `tailup gc` will", reason=str(exc))
                return False
        return False

    async def end_uploads(self) -> bool:
        """Abort the stream's upload, if it has one, and sweep its orphans, for an end without
        an object: True when no upload of it is left open at its key."""
        aborted = True
        if self.record.upload_id:
            aborted = await self.abort_quietly(self.record.upload_id)
        return await self.sweep_orphans() and aborted

    async def abort_quietly(self, upload_id: str) -> bool:
        """Abort an upload of the stream's key, best effort: True when it is aborted (or was
        gone already), False when S3 refused or could not be reached (`tailup gc` aborts it)."""
        if upload_id == self.record.upload_id:
            # The card names the stream's own upload only. Deleted first: a crash between the
            # two leaves an open upload that `tailup gc` aborts, never a card for good.
            await self.drop_card(quiet=True)
        key = self.record.key
        aborted = True
        try:
            await self.deps.store.abort_upload(key, upload_id)
        except TailupError as exc:
            self._log.warning("abort failed; `tailup gc` will clean it up", reason=str(exc))
            aborted = False
        if self.on_upload_ended is not None:
            await self.on_upload_ended(key, upload_id)
        return aborted
