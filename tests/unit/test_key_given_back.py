"""A stream that ends with nothing in S3 at its key gives the key's claim back
(tailup.rules.keyclaims; Bookkeeper.give_key_back): OBS's write probe, aborted or skipped, must
not push the recording made right after it to NAME-2. One that may have left something there
keeps its claim. One stream against the in-memory stores, real files."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from test_stream_faults import KEY, Rig, payload, streaming

import tailup.retry
from fakes import FaultHook
from harness import wait_until
from tailup.errors import AccessRefused, StorageUnavailable, TailupError
from tailup.model import StreamState
from tailup.plan import MiB
from tailup.stream import Outcome

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(30)]


async def holder(rig: Rig) -> str | None:
    """Who holds the stream's key now ("s1": the stream itself), or None: free, and reserved
    for the next recording of the name by this very question."""
    return await rig.checkpoints.reserve_key(KEY, "the next recording")


def deleted(rig: Rig) -> None:
    rig.path.unlink()
    rig.stream.on_gone(f"{rig.path} was deleted before its upload completed")


async def test_obs_s_probe_deleted_before_any_byte_gives_its_key_back(tmp_path: Path) -> None:
    path = tmp_path / "2026-12-07 18-44-03.mkv"
    path.write_bytes(b"")
    async with streaming(path) as rig:
        assert await holder(rig) == "s1", "a live stream holds its key"
        deleted(rig)
        assert await rig.task is Outcome.ABORTED
    assert rig.state() is StreamState.ABORTED
    assert await holder(rig) is None, "the next recording of the name gets the key"


async def test_a_probe_closed_empty_gives_its_key_back(tmp_path: Path) -> None:
    path = tmp_path / "2026-12-07 18-44-03.mkv"
    path.write_bytes(b"")
    async with streaming(path, writer_closed=True) as rig:
        assert await rig.task is Outcome.SKIPPED
    assert await holder(rig) is None


async def test_an_upload_aborted_with_its_file_gives_its_key_back(tmp_path: Path) -> None:
    path = tmp_path / "clip.ts"
    path.write_bytes(payload(6 * MiB, "deleted mid-recording"))
    async with streaming(path) as rig:
        await wait_until(lambda: rig.committed() == 1, "part 1 checkpointed")
        deleted(rig)
        assert await rig.task is Outcome.ABORTED
    assert rig.store.uploads == {} and rig.store.objects == {}
    assert await holder(rig) is None


def refuse(operation: str) -> FaultHook:
    def hook(op: str, _key: str) -> TailupError | None:
        return AccessRefused("AccessDenied", action="s3:x") if op == operation else None

    return hook


async def test_an_upload_whose_abort_failed_keeps_its_key(tmp_path: Path) -> None:
    """The upload is still open at the key (`tailup gc` aborts it later): not free yet."""
    path = tmp_path / "clip.ts"
    path.write_bytes(payload(6 * MiB, "abort refused"))
    async with streaming(path) as rig:
        await wait_until(lambda: rig.committed() == 1, "part 1 checkpointed")
        rig.store.fault = refuse("abort")
        deleted(rig)
        assert await rig.task is Outcome.ABORTED
    assert len(rig.store.uploads) == 1
    assert await holder(rig) == "s1"


async def test_a_later_generation_keeps_its_key(tmp_path: Path) -> None:
    """The key holds what an earlier generation left there (its completed object)."""
    path = tmp_path / "clip.ts"
    path.write_bytes(b"")
    async with streaming(path, generation=2) as rig:
        deleted(rig)
        assert await rig.task is Outcome.ABORTED
    assert await holder(rig) == "s1"


async def test_an_object_sent_before_the_file_went_keeps_its_key(tmp_path: Path) -> None:
    """Its PutObject landed, its reply was lost, and the file went before the retry: an object
    of this recording is at the key (no record but this one names it)."""
    path = tmp_path / "clip.ts"
    path.write_bytes(payload(1000, "small"))
    late: list[Rig] = []

    def lost_then_gone(op: str, key: str) -> TailupError | None:
        if op == "put" and key == KEY and late:
            deleted(late.pop())
            return StorageUnavailable("S3 put: the reply was lost (test)")
        return None

    async with streaming(path, writer_closed=True) as rig:
        late.append(rig)
        rig.store.lost_reply = lost_then_gone
        assert await rig.task is Outcome.ABORTED
    assert KEY in rig.store.objects
    assert await holder(rig) == "s1"


async def test_a_failed_stream_keeps_its_key(tmp_path: Path) -> None:
    """Its upload and parts are kept for a retry (`tailup retry`, the next start)."""
    path = tmp_path / "clip.ts"
    path.write_bytes(payload(6 * MiB, "refused"))
    async with streaming(path) as rig:
        rig.store.fault = refuse("create")
        await wait_until(lambda: rig.checkpoints.failed_writes == 1, "the stream failed")
        assert rig.state() is StreamState.FAILED
        assert await holder(rig) == "s1"


async def test_an_abort_from_outside_with_nothing_in_s3_gives_its_key_back(
    tmp_path: Path,
) -> None:
    """`tailup abort` ended it; the stream aborts what it made and lets the key go."""
    path = tmp_path / "clip.ts"
    path.write_bytes(payload(6 * MiB, "operator"))
    async with streaming(path) as rig:
        await wait_until(lambda: rig.committed() == 1, "part 1 checkpointed")
        refused = await rig.checkpoints.set_state(
            "s1", StreamState.ABORTED, allowed_from={StreamState.UPLOADING}, error="operator"
        )
        assert refused is None
        rig.stream.on_closed()
        assert await rig.task is Outcome.ABORTED
    assert rig.store.uploads == {}
    assert await holder(rig) is None


async def test_a_stream_told_gone_during_a_back_off_ends_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its end may give its key back to the file made at its name right after, which waits for
    it (tailup.supervisor.opening): the back-off of a stall is not waited out first."""
    path = tmp_path / "clip.ts"
    path.write_bytes(payload(6 * MiB, "stalled"))
    monkeypatch.setattr(tailup.retry.Backoff, "next_delay_s", lambda self: 3600.0)
    async with streaming(path) as rig:
        rig.checkpoints.available = False  # part 1's checkpoint fails: stalled for an hour
        await wait_until(lambda: rig.stream.record.state is StreamState.STALLED, "stalled")
        rig.checkpoints.available = True
        deleted(rig)
        assert await asyncio.wait_for(rig.task, 10) is Outcome.ABORTED
    assert await holder(rig) is None
