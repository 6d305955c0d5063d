"""One stream against in-memory stores, with faults at exact points: Redis down mid-stream, an
abort from outside, a lost reply to CompleteMultipartUpload, a file truncated mid-stream, a file
growing past what the part plan can hold. Real files; no servers (the integration and e2e
suites do the same against real ones)."""

# Blocking file writes in async tests are the point: they are what the stream sees.
# ruff: noqa: ASYNC240

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import tailup.stream.context
import tailup.stream.core
from fakes import FaultyMemoryStore
from harness import wait_until
from tailup.budget import ByteBudget
from tailup.dev import MemoryCheckpointStore
from tailup.errors import (
    AccessRefused,
    CheckpointUnavailable,
    PartReplaceRefused,
    StorageUnavailable,
    TailupError,
)
from tailup.keys import metadata_key
from tailup.model import LIVE_STATES, RETRY_FIELD, StreamRecord, StreamState
from tailup.plan import MiB, PartPlan
from tailup.retry import Backoff
from tailup.rules.refusals import MAX_NEW_UPLOADS
from tailup.stream import Outcome, Stream, StreamDeps
from tailup.uploadcard import card_key

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(30)]

KEY = "streams/s1/clip.ts"


class CountingCheckpoints(MemoryCheckpointStore):
    def __init__(self) -> None:
        super().__init__()
        self.pings = 0
        self.field_reads = 0
        self.failed_writes = 0

    async def ping(self) -> None:
        self.pings += 1
        await super().ping()

    async def get_field(self, stream_id: str, name: str) -> str | None:
        self.field_reads += 1
        return await super().get_field(stream_id, name)

    async def set_state(self, stream_id: str, state: StreamState, **kwargs: Any) -> Any:
        if state is StreamState.FAILED:
            self.failed_writes += 1
        return await super().set_state(stream_id, state, **kwargs)


@dataclass
class Rig:
    path: Path
    store: FaultyMemoryStore
    checkpoints: CountingCheckpoints
    stream: Stream
    task: asyncio.Task[Outcome]

    def state(self) -> StreamState:
        return StreamState(self.checkpoints.meta["s1"]["state"])

    def committed(self) -> int:
        return len(self.checkpoints.parts["s1"])


def payload(size: int, seed: str) -> bytes:
    return hashlib.shake_256(seed.encode()).digest(size)


@asynccontextmanager
async def streaming(
    path: Path,
    *,
    writer_closed: bool = False,
    store: FaultyMemoryStore | None = None,
    **changes: Any,
) -> AsyncIterator[Rig]:
    st = path.stat()
    store = store if store is not None else FaultyMemoryStore()
    checkpoints = CountingCheckpoints()
    record = StreamRecord(
        stream_id="s1",
        path=str(path),
        watch_root=str(path.parent),
        bucket="b",
        key=KEY,
        base_part_size=5 * MiB,
        device=st.st_dev,
        inode=st.st_ino,
    ).with_changes(**changes)
    await checkpoints.create(record)
    deps = StreamDeps(
        store=store,  # type: ignore[arg-type]
        checkpoints=checkpoints,
        budget=ByteBudget(64 * MiB),
        close_grace_s=0.05,
        idle_timeout_s=30,
        part_concurrency=2,
        backoff=lambda: Backoff(base_s=0.02, cap_s=0.2),
        failed_retry_s=3600,  # a failed stream waits for `tailup retry` in these tests
        retry_poll_s=0.02,
    )
    stream = Stream(deps, record, {}, writer_closed=writer_closed)
    task = asyncio.create_task(stream.run())
    try:
        yield Rig(path, store, checkpoints, stream, task)
    finally:
        if not task.done():
            stream.stop()
            await asyncio.wait_for(task, 10)


def fail(operation: str, times: int = 1) -> Callable[[str, str], TailupError | None]:
    left = [times]

    def hook(op: str, _key: str) -> TailupError | None:
        if op == operation and left[0] > 0:
            left[0] -= 1
            return StorageUnavailable(f"S3 {op}: injected 503")
        return None

    return hook


async def test_redis_down_no_part_counts_and_the_stream_pauses(tmp_path: Path) -> None:
    path = tmp_path / "clip.ts"
    data = payload(16 * MiB, "redis-down")
    path.write_bytes(data[: 6 * MiB])
    async with streaming(path) as rig:
        await wait_until(lambda: rig.committed() == 1, "part 1 checkpointed")
        rig.checkpoints.available = False
        with path.open("ab") as out:
            out.write(data[6 * MiB :])
        rig.stream.on_modified()
        await wait_until(lambda: rig.stream.record.state is StreamState.STALLED, "stalled")
        sent_before_pause = rig.store.count("upload_part")
        assert rig.stream.record.error == "memory store marked unavailable"  # the reason
        # S3 did acknowledge parts during the outage (so "not counted" below means something).
        [upload] = rig.store.uploads.values()
        acked_in_outage = {n for n, _, _ in upload.parts} - {1}
        assert acked_in_outage, "no part reached S3 while Redis was down"
        await wait_until(lambda: rig.checkpoints.pings >= 3, "two retries while Redis is down")
        # Paused: retries ask Redis first, and read or send nothing while it does not answer.
        assert rig.store.count("upload_part") == sent_before_pause
        # Parts S3 acknowledged while Redis was down were not counted as done.
        assert set(rig.stream.parts) == {1}
        assert set(rig.checkpoints.parts["s1"]) == {1}
        rig.checkpoints.available = True
        rig.stream.on_closed()
        assert await rig.task is Outcome.COMPLETED
    assert rig.store.objects[KEY] == data
    assert rig.state() is StreamState.COMPLETED
    assert set(rig.checkpoints.parts["s1"]) == {1, 2, 3, 4}


@pytest.mark.parametrize("noticed_by", ["finalizing", "next part"])
async def test_abort_from_outside_is_never_written_over(tmp_path: Path, noticed_by: str) -> None:
    path = tmp_path / "clip.ts"
    path.write_bytes(payload(6 * MiB, "abort"))
    async with streaming(path) as rig:
        await wait_until(lambda: rig.committed() == 1, "part 1 checkpointed")
        upload_id = rig.stream.record.upload_id
        # What `tailup abort` does: state first (only if still live), then the upload.
        refused = await rig.checkpoints.set_state(
            "s1", StreamState.ABORTED, allowed_from=LIVE_STATES, error="by the operator"
        )
        assert refused is None
        await rig.store.abort_upload(KEY, upload_id)
        if noticed_by == "next part":
            with path.open("ab") as out:
                out.write(payload(5 * MiB, "more"))
            rig.stream.on_modified()
        else:
            rig.stream.on_closed()
        assert await rig.task is Outcome.ABORTED
    assert rig.state() is StreamState.ABORTED
    assert rig.checkpoints.meta["s1"]["error"] == "by the operator"
    assert "s1" not in rig.checkpoints.live
    assert rig.store.uploads == {} and rig.store.objects == {}


def aborted_once_put(
    rig: list[Rig], then: Callable[[Rig], None] = lambda rig: None
) -> Callable[[str, str], TailupError | None]:
    """A lost_reply hook: the recording's PutObject lands, and `tailup abort` has set the
    record ABORTED before the stream hears back (then ``then`` runs)."""

    def hook(op: str, key: str) -> TailupError | None:
        if op == "put" and key == KEY and rig:
            rig[0].checkpoints.meta["s1"]["state"] = StreamState.ABORTED.value
            then(rig[0])
            rig.clear()
        return None

    return hook


@pytest.mark.parametrize(
    ("case", "left"),
    [
        ("first generation", False),  # no record owns it: taken back
        ("later generation", True),  # it replaced the earlier one: the record names the key
        ("another object since", True),  # not the stream's to delete
        ("delete refused", True),  # no s3:DeleteObject: it stays, said in the log
    ],
)
async def test_an_object_that_landed_after_an_abort(tmp_path: Path, case: str, left: bool) -> None:
    path = tmp_path / "clip.ts"
    path.write_bytes(payload(1000, "small"))
    other = b"another recording's"
    generation = 2 if case == "later generation" else 1

    def replace_it(rig: Rig) -> None:
        rig.store.objects[KEY] = other
        rig.store.etags[KEY] = '"' + hashlib.md5(other).hexdigest() + '"'

    late: list[Rig] = []
    async with streaming(path, writer_closed=True, generation=generation) as rig:
        rig.store.lost_reply = aborted_once_put(
            late, replace_it if case == "another object since" else lambda rig: None
        )
        if case == "delete refused":
            rig.store.fault = lambda op, key: (
                AccessRefused("AccessDenied", action="s3:DeleteObject") if op == "delete" else None
            )
        late.append(rig)
        rig.stream.on_closed()
        assert await rig.task is Outcome.ABORTED
    assert rig.state() is StreamState.ABORTED
    assert (KEY in rig.store.objects) is left
    if case == "another object since":
        assert rig.store.objects[KEY] == other


@pytest.mark.parametrize(
    ("size", "request_name"), [(1000, "put"), (7 * MiB, "complete")], ids=["put", "complete"]
)
@pytest.mark.parametrize("how", ["deleted-and-told", "deleted-not-told-yet", "replaced"])
async def test_a_file_gone_while_its_object_is_made_is_completed(
    tmp_path: Path, size: int, request_name: str, how: str
) -> None:
    """The request that makes the object (one PutObject, or the CompleteMultipartUpload) lands,
    and the file goes before the stream hears back (ffmpeg's HLS delete_segments, a recorder's
    rotation; or another recording at its name). Every byte was read from this very file for
    it, and the object is verified against them: the recording is COMPLETED, with its
    metadata.json, never ABORTED with the object left behind no record owning it.
    ``deleted-and-told``: the supervisor's delete event reached the stream first."""
    path = tmp_path / "clip.ts"
    data = payload(size, "gone mid-request")
    path.write_bytes(data)
    late: list[Rig] = []

    def go_once_it_lands(op: str, key: str) -> TailupError | None:
        if op == request_name and key == KEY and late:
            if how == "replaced":  # renamed over it: another inode at the name
                (tmp_path / "next.ts").write_bytes(b"the next recording")
                os.replace(tmp_path / "next.ts", path)
            else:
                path.unlink()
            if how == "deleted-and-told":
                late[0].stream.on_gone(f"{path} was deleted before its upload completed")
            late.clear()
        return None

    async with streaming(path, writer_closed=True) as rig:
        late.append(rig)
        # After the request, before its reply: the object is there, the file is not.
        rig.store.lost_reply = go_once_it_lands
        assert await rig.task is Outcome.COMPLETED
    assert not late, "the request never went"
    assert rig.state() is StreamState.COMPLETED
    meta = rig.checkpoints.meta["s1"]
    assert meta["error"] == "" and meta["sha256"] == hashlib.sha256(data).hexdigest()
    assert rig.store.objects[KEY] == data
    assert metadata_key(KEY) in rig.store.objects
    assert ("delete", KEY) not in rig.store.calls


async def test_abort_refused_once_the_stream_completed(tmp_path: Path) -> None:
    path = tmp_path / "clip.ts"
    path.write_bytes(payload(1000, "small"))
    async with streaming(path, writer_closed=True) as rig:
        assert await rig.task is Outcome.COMPLETED
    refused = await rig.checkpoints.set_state(
        "s1", StreamState.ABORTED, allowed_from=LIVE_STATES, error="too late"
    )
    assert refused is StreamState.COMPLETED
    assert rig.state() is StreamState.COMPLETED


async def test_a_stall_while_finalizing_then_completion_stays_completed(tmp_path: Path) -> None:
    path = tmp_path / "clip.ts"
    data = payload(7 * MiB, "stall-then-complete")
    path.write_bytes(data)
    async with streaming(path, writer_closed=True) as rig:
        rig.store.fault = fail("complete")
        assert await rig.task is Outcome.COMPLETED
    assert rig.store.count("complete") == 2
    # The recovery after the stall must not write UPLOADING over COMPLETED (it used to).
    assert rig.state() is StreamState.COMPLETED
    assert "s1" not in rig.checkpoints.live
    assert rig.store.objects[KEY] == data


async def test_lost_reply_to_complete_is_settled_by_the_objects_etag(tmp_path: Path) -> None:
    path = tmp_path / "clip.ts"
    data = payload(12 * MiB, "lost-reply")
    path.write_bytes(data)
    async with streaming(path, writer_closed=True) as rig:
        # S3 completes the upload, the answer is lost; the retry finds NoSuchUpload.
        rig.store.lost_reply = fail("complete")
        assert await rig.task is Outcome.COMPLETED
    assert rig.store.count("complete") == 2
    assert rig.store.objects[KEY] == data
    assert rig.state() is StreamState.COMPLETED
    assert rig.checkpoints.meta["s1"]["sha256"] == hashlib.sha256(data).hexdigest()


async def test_a_later_generations_lost_put_reply_is_settled_by_the_objects_etag(
    tmp_path: Path,
) -> None:
    """A small file (one PutObject) of a later generation (a recording given up and come back):
    the PUT lands and its reply is lost, or the daemon dies before recording it. The retry
    finds the key holding that very object: this recording's, not another's. Found by
    tests/e2e/test_chaos.py (TAILUP_CHAOS_SEED=21): the retry took the key for another
    recording's, moved to clip-2.ts and left the first object behind: the file twice in S3."""
    path = tmp_path / "clip.ts"
    data = payload(300 * 1024, "lost-put-reply")
    path.write_bytes(data)
    async with streaming(path, writer_closed=True, generation=2) as rig:
        rig.store.lost_reply = fail("put")  # the object's PUT: the sidecar's comes after
        assert await rig.task is Outcome.COMPLETED
    assert sorted(rig.store.objects) == [KEY, metadata_key(KEY)]
    assert rig.store.objects[KEY] == data
    assert rig.checkpoints.meta["s1"]["key"] == KEY
    assert rig.state() is StreamState.COMPLETED


async def test_truncated_mid_stream_is_noted_and_the_object_is_the_final_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "clip.ts"
    path.write_bytes(payload(16 * MiB, "before"))
    async with streaming(path) as rig:
        await wait_until(lambda: rig.committed() == 3, "parts 1-3 checkpointed")
        os.truncate(path, 7 * MiB)
        rig.stream.on_modified()
        await wait_until(lambda: rig.checkpoints.meta["s1"]["note"] != "", "truncation noted")
        # Parts 2 and 3 lay past the new end: forgotten, to be sent again.
        assert set(rig.checkpoints.parts["s1"]) == {1}
        with path.open("ab") as out:
            out.write(payload(6 * MiB, "after"))
        rig.stream.on_closed()
        assert await rig.task is Outcome.COMPLETED
    assert rig.store.objects[KEY] == path.read_bytes()
    note = rig.checkpoints.meta["s1"]["note"]
    assert f"shrank from {16 * MiB} to {7 * MiB} bytes" in note
    assert rig.state() is StreamState.COMPLETED


async def test_lost_reply_to_create_leaves_no_upload_behind(tmp_path: Path) -> None:
    path = tmp_path / "clip.ts"
    data = payload(11 * MiB, "lost-create")
    path.write_bytes(data)
    async with streaming(path, writer_closed=True) as rig:
        rig.store.lost_reply = fail("create")  # S3 made an upload; we never heard of it
        assert await rig.task is Outcome.COMPLETED
    assert rig.store.count("create") == 2
    assert rig.store.objects[KEY] == data
    assert rig.store.uploads == {}, "the orphan of the lost reply is swept at the end"


@dataclass(frozen=True, slots=True)
class CappedPlan(PartPlan):
    """The real plan with a small capacity, standing in for S3's 5 TiB limit."""

    cap: int = 0

    def capacity_bytes(self) -> int:
        return self.cap


async def test_a_permanent_error_fails_the_stream_keeps_its_upload_and_waits_for_a_retry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lifecycle after a permanent error: FAILED with the reason, the multipart upload and
    its checkpointed parts kept (hours of parts are not thrown away), no S3 call while it waits
    out its back-off, and `tailup retry` (the record's retry field) tries it again at once."""
    monkeypatch.setattr(
        tailup.stream.core,
        "PartPlan",
        lambda base, sizing, largest: CappedPlan(base, sizing, largest, cap=12 * MiB),
    )
    path = tmp_path / "clip.ts"
    path.write_bytes(payload(6 * MiB, "grow"))
    async with streaming(path) as rig:
        await wait_until(lambda: rig.committed() == 1, "part 1 checkpointed")
        with path.open("ab") as out:
            out.write(payload(7 * MiB, "too much"))
        rig.stream.on_modified()
        await wait_until(lambda: rig.checkpoints.failed_writes == 1, "the stream failed")
        calls_when_failed = len(rig.store.calls)
        reads_when_failed = rig.checkpoints.field_reads
        # Waiting: it polls its record for a retry request (cheap), and sends nothing to S3.
        await wait_until(
            lambda: rig.checkpoints.field_reads >= reads_when_failed + 5, "retry polls"
        )
        assert len(rig.store.calls) == calls_when_failed, "no S3 call while failed"
        assert rig.checkpoints.failed_writes == 1, "no busy loop of attempts"
        assert not rig.task.done(), "a failed stream is not given up"
        error = rig.checkpoints.meta["s1"]["error"]
        assert f"grew to 13.0 MiB ({13 * MiB} bytes)" in error
        assert f"past the capacity of its part plan: 12.0 MiB ({12 * MiB} bytes)" in error
        assert rig.state() is StreamState.FAILED
        assert "s1" in rig.checkpoints.live, "a failed stream is resumed by the next start"
        (upload,) = rig.store.uploads.values()
        assert [n for n, _, _ in upload.parts] == [1], "the upload and its part are kept"
        assert set(rig.checkpoints.parts["s1"]) == {1}, "the checkpoint is kept"
        # `tailup retry`: the stream tries again now (and fails again: the file is still too
        # big), without sending part 1 again.
        await rig.checkpoints.update("s1", retry_requested_at="2026-12-01T00:00:00+00:00")
        await wait_until(lambda: rig.checkpoints.failed_writes == 2, "retried, failed again")
        sent_again = [c for c in rig.store.calls[calls_when_failed:] if c[0] == "upload_part"]
        assert sent_again == [], "a checkpointed part is not sent again on retry"
        # One request, one retry: failed again, it waits for the next request.
        reads = rig.checkpoints.field_reads
        await wait_until(lambda: rig.checkpoints.field_reads >= reads + 5, "retry polls again")
        assert rig.checkpoints.failed_writes == 2, "a consumed retry request is not taken again"


async def test_a_key_it_cannot_get_fails_the_stream_where_status_and_retry_reach_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """N4: a new recording's key is claimed by its stream; every key taken fails the stream
    (FAILED with the reason, in the live index), not the event that would have started it, and
    `tailup retry` claims again."""
    path = tmp_path / "clip.ts"
    data = payload(6 * MiB, "no key")
    path.write_bytes(data)
    others = ["another recording"]

    async with streaming(path, writer_closed=True, key_pending=True) as rig:
        free = rig.checkpoints.reserve_key

        async def reserve_key(object_key: str, stream_id: str) -> str | None:
            return others[0] if others else await free(object_key, stream_id)

        monkeypatch.setattr(rig.checkpoints, "reserve_key", reserve_key)
        await wait_until(lambda: rig.checkpoints.failed_writes == 1, "the stream failed")
        assert "no free S3 key" in rig.checkpoints.meta["s1"]["error"]
        assert rig.state() is StreamState.FAILED
        assert "s1" in rig.checkpoints.live
        assert rig.store.calls == [], "nothing sent under a key it does not hold"
        others.clear()
        await rig.checkpoints.update("s1", **{RETRY_FIELD: "now"})
        assert await rig.task is Outcome.COMPLETED
    assert rig.store.objects[KEY] == data
    assert rig.checkpoints.meta["s1"]["key_pending"] == "0"


async def test_a_rename_seen_first_as_a_vanished_path_is_not_a_delete(tmp_path: Path) -> None:
    """N6: the poller reports a move up to its interval later, while the stream looks at the
    path every fraction of a second: ENOENT there waits out the settle time like another file
    at the path would, and the move, once told, carries the stream on. Nothing is sent again."""
    path = tmp_path / "live.ts"
    data = payload(12 * MiB, "renamed")
    path.write_bytes(data[: 6 * MiB])
    async with streaming(path) as rig:
        await wait_until(lambda: rig.committed() == 1, "part 1 checkpointed")
        moved = tmp_path / "rec-0001.ts"
        path.rename(moved)
        rig.stream.on_modified()  # the stream looks before the move is reported
        await wait_until(lambda: rig.stream.record.state is StreamState.STALLED, "waiting")
        with moved.open("ab") as out:
            out.write(data[6 * MiB :])
        rig.stream.on_moved(moved)
        rig.stream.on_closed()
        assert await rig.task is Outcome.COMPLETED
    assert rig.store.objects[KEY] == data
    assert rig.store.count("create") == 1, "the same upload, not a new one from part 1"


async def test_a_path_gone_with_no_event_ends_the_stream_after_the_settle_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tailup.stream.context, "PATH_SETTLE_S", 0.3)
    path = tmp_path / "live.ts"
    path.write_bytes(payload(6 * MiB, "gone"))
    async with streaming(path) as rig:
        await wait_until(lambda: rig.committed() == 1, "part 1 checkpointed")
        path.unlink()
        rig.stream.on_modified()
        assert await rig.task is Outcome.ABORTED
    assert rig.state() is StreamState.ABORTED


async def test_a_holder_that_lost_its_claim_never_aborts_the_new_holder_s_upload(
    tmp_path: Path,
) -> None:
    """N9: a shared folder's node cut off past its lease, whose file then looks gone (a mount
    glitch, a delete), used to abort the S3 upload (and sweep the orphans) of the node that took
    the recording over, and only then learn it from its refused state write. The claim is
    checked first: the upload stays the new holder's."""
    path = tmp_path / "clip.ts"
    path.write_bytes(payload(6 * MiB, "shared"))
    async with streaming(path, scope="share:nas") as rig:
        assert not isinstance(await rig.checkpoints.claim("s1", "node-a", 30), str)
        await wait_until(lambda: rig.committed() == 1, "part 1 checkpointed")
        rig.checkpoints.leases["s1"] = "node-b|99"  # node b took it over meanwhile
        rig.stream.on_gone("the file was deleted")
        assert await rig.task is Outcome.STOPPED
    assert rig.store.count("abort") == 0, "the new holder's upload was aborted"
    assert len(rig.store.uploads) == 1
    assert rig.state() is not StreamState.ABORTED


async def test_a_part_refused_that_no_new_upload_can_fix_fails_the_stream_visibly(
    tmp_path: Path,
) -> None:
    """NotImplemented to a part the upload never held (not a replacement): a new upload would be
    refused the same way, so the stream fails where status and `tailup retry` reach it, rather
    than stall retrying it forever."""
    refusal = "S3 upload part 1: NotImplemented: a header this server lacks"

    def refuse(op: str, _key: str) -> TailupError | None:
        if op != "upload_part":
            return None
        return PartReplaceRefused(refusal, code="NotImplemented", part_number=1)

    path = tmp_path / "clip.ts"
    path.write_bytes(payload(6 * MiB, "refused"))
    async with streaming(path) as rig:
        rig.store.fault = refuse
        await wait_until(lambda: rig.checkpoints.failed_writes == 1, "the stream failed")
        reads = rig.checkpoints.field_reads
        await wait_until(lambda: rig.checkpoints.field_reads >= reads + 5, "retry polls")
        assert rig.checkpoints.failed_writes == 1, "no busy loop of attempts"
        assert rig.store.count("upload_part") == 1 and rig.store.count("create") == 1
        assert rig.state() is StreamState.FAILED
        error = rig.checkpoints.meta["s1"]["error"]
        assert "never held" in error and refusal in error


class RefusesToReplace(FaultyMemoryStore):
    """Like rclone serve s3: a part number held already is refused with other bytes.
    ``after_part_1`` runs once part 1 is taken (a writer rewriting the head behind it)."""

    def __init__(self, after_part_1: Callable[[], None] = lambda: None) -> None:
        super().__init__()
        self.after_part_1 = after_part_1
        self.refused = 0

    async def upload_part(
        self, key: str, upload_id: str, number: int, body: bytes, crc32: int, **kwargs: Any
    ) -> str:
        held = self.uploads[upload_id].parts if upload_id in self.uploads else []
        if any(n == number and b != bytes(body) for n, _, b in held):
            self.refused += 1
            raise PartReplaceRefused(
                f"S3 upload part {number}: NotImplemented: cannot be replaced",
                code="NotImplemented",
                part_number=number,
            )
        etag = await super().upload_part(key, upload_id, number, body, crc32, **kwargs)
        if number == 1:
            self.after_part_1()
        return etag


def rewrite_head(path: Path, head: bytes) -> None:
    """New bytes at the start, size and mtime kept: a change only a re-read finds (as a
    muxer's patch at close, seen after the close)."""
    st = path.stat()
    with path.open("r+b") as out:
        out.write(head)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


async def test_a_head_the_server_cannot_replace_goes_up_in_a_new_upload(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    path.write_bytes(payload(6 * MiB, "recording"))
    patched: list[bool] = []

    def patch_once() -> None:  # the muxer's patch at close, once
        if not patched:
            patched.append(True)
            rewrite_head(path, b"patched at close")

    store = RefusesToReplace(patch_once)
    async with streaming(path, writer_closed=True, store=store) as rig:
        assert await asyncio.wait_for(rig.task, 20) is Outcome.COMPLETED
    assert store.refused == 1
    assert store.count("create") == 2 and store.count("abort") >= 1
    assert store.objects[KEY] == path.read_bytes()
    assert "sent again in a new upload" in rig.checkpoints.meta["s1"]["note"]


async def test_a_head_refused_again_after_the_bound_fails_the_stream(tmp_path: Path) -> None:
    """A head that changes behind every upload: refused each time; after MAX_NEW_UPLOADS new
    uploads the stream fails, visibly, instead of sending the recording again forever."""
    path = tmp_path / "clip.mp4"
    path.write_bytes(payload(6 * MiB, "recording"))
    heads = iter(range(1000))
    store = RefusesToReplace(lambda: rewrite_head(path, b"head %03d" % next(heads)))
    async with streaming(path, writer_closed=True, store=store) as rig:
        await wait_until(lambda: rig.checkpoints.failed_writes == 1, "the stream failed")
        assert store.refused == MAX_NEW_UPLOADS + 1
        assert store.count("create") == MAX_NEW_UPLOADS + 1
        error = rig.checkpoints.meta["s1"]["error"]
        assert f"again after {MAX_NEW_UPLOADS} new uploads" in error
        assert rig.state() is StreamState.FAILED


async def test_redis_failing_while_a_refused_head_is_handled_is_retried(tmp_path: Path) -> None:
    """Redis down just as the refusal is noted: the stream backs off like anywhere else, the
    refusal comes back and is decided again (the bound not spent on the fault), and the
    recording completes."""
    path = tmp_path / "clip.mp4"
    path.write_bytes(payload(6 * MiB, "recording"))
    patched: list[bool] = []

    def patch_once() -> None:
        if not patched:
            patched.append(True)
            rewrite_head(path, b"patched at close")

    store = RefusesToReplace(patch_once)
    async with streaming(path, writer_closed=True, store=store) as rig:
        update = rig.checkpoints.update
        failed: list[bool] = []

        async def update_failing_once(stream_id: str, **fields: Any) -> None:
            if "note" in fields and not failed:
                failed.append(True)
                raise CheckpointUnavailable("Redis: connection refused (injected)")
            await update(stream_id, **fields)

        rig.checkpoints.update = update_failing_once  # type: ignore[method-assign]
        assert await asyncio.wait_for(rig.task, 20) is Outcome.COMPLETED
    assert failed and store.refused == 2 and store.count("create") == 2
    assert store.objects[KEY] == path.read_bytes()


async def test_the_upload_card_is_written_and_never_left_behind(tmp_path: Path) -> None:
    """The card beside an open upload (tailup.uploadcard: what `tailup salvage --from-s3` finds
    it by) names it while it is open; a 503 to its deletion retries the publication rather than
    leave it."""
    path = tmp_path / "clip.ts"
    data = payload(12 * MiB, "card")
    path.write_bytes(data)
    async with streaming(path, writer_closed=True) as rig:
        rig.store.fault = fail("delete")
        assert await rig.task is Outcome.COMPLETED
    card = card_key(KEY)
    assert ("put", card) in rig.store.calls
    assert rig.store.count("delete") == 2
    assert sorted(rig.store.objects) == [KEY, metadata_key(KEY)]
    assert rig.store.objects[KEY] == data
    assert rig.state() is StreamState.COMPLETED
