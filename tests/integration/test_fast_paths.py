"""The performance-minded paths, held to correctness against the real Redis and S3 server:
out-of-order completion, reads per byte, zero-copy bodies, unsigned payloads, closes that are not
the end, and writers that come back."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import subprocess
import sys
import time
import weakref
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import tailup
from harness import IsolatedSettings, object_bytes, running_daemon, wait_until
from tailup import source as source_module
from tailup.body import (
    PART_BUFFERS,
    SIGNS_IN_PLACE,
    SLICE_BYTES,
    BufferPool,
    PartBody,
    return_part_memory_promptly,
)
from tailup.budget import ByteBudget
from tailup.config import PayloadSigning
from tailup.dev import SeaweedS3, record_cmd
from tailup.errors import TailupError
from tailup.events import EventKind, FileEvent
from tailup.integrity import crc32_of
from tailup.metadata import FORMAT_PROBE_BYTES, probe_media
from tailup.model import StreamRecord, StreamState, lowest_gap
from tailup.plan import MiB, PartPlan
from tailup.s3 import S3MultipartStore
from tailup.source import stat_file
from tailup.stream import Stream, StreamDeps
from tailup.stream import finalize as finalize_module
from tailup.stream import sending as sending_module
from tailup.supervisor import Supervisor

pytestmark = pytest.mark.asyncio


def drop_in(tmp_path: Path, watch: Path, name: str, data: bytes) -> Path:
    """A finished recording appears in the folder at once (written elsewhere, then moved in)."""
    staging = tmp_path / name
    staging.write_bytes(data)
    dest = watch / name
    os.rename(staging, dest)
    return dest


async def test_parts_complete_out_of_order_and_the_checkpoint_stays_the_lowest_gap(
    daemon_args: dict[str, Any], watch: Path, tmp_path: Path, s3_client: Any, bucket: str
) -> None:
    data = os.urandom(21 * MiB)  # 4 full 5 MiB parts and a tail
    # Part 1 is sent only once part 3 is acknowledged, part 2 once part 4 is: with 4 parts in
    # flight, S3 acknowledges 3 and 4 first, for real.
    async with running_daemon(**daemon_args, hold_until={1: 3, 2: 4}) as daemon:
        path = drop_in(tmp_path, watch, "dropped.ts", data)
        record = await daemon.wait_for_state(path, {StreamState.COMPLETED})
    committed = daemon.checkpoints.committed
    assert committed.index(3) < committed.index(1) and committed.index(4) < committed.index(2)
    for meta, parts in daemon.checkpoints.after_commit:
        # What a crash right after this commit would resume from: the lowest part not in S3.
        assert meta.next_part_to_upload == lowest_gap(frozenset(parts))
        assert meta.total_bytes_sent == sum(p.size for p in parts.values())
    assert object_bytes(s3_client, bucket, record.key) == data
    assert record.sha256 == hashlib.sha256(data).hexdigest()


async def test_each_byte_is_read_once_to_upload_and_once_to_verify(
    daemon_args: dict[str, Any],
    watch: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    s3_client: Any,
    bucket: str,
) -> None:
    reads: Counter[tuple[int, int]] = Counter()  # whole parts read into a buffer to send
    checks: Counter[tuple[int, int]] = Counter()  # parts read through a small buffer for CRC32
    real_read = sending_module.read_range_blocking
    real_check = finalize_module.crc32_of_range_blocking

    def counting_read(path: Path, start: int, length: int, device: int, inode: int) -> PartBody:
        reads[(start, length)] += 1
        return real_read(path, start, length, device, inode)

    def counting_check(
        path: Path, start: int, length: int, device: int, inode: int
    ) -> tuple[int, int]:
        checks[(start, length)] += 1
        return real_check(path, start, length, device, inode)

    monkeypatch.setattr(sending_module, "read_range_blocking", counting_read)
    monkeypatch.setattr(finalize_module, "crc32_of_range_blocking", counting_check)
    data = os.urandom(17 * MiB)  # 3 full parts, then a 2 MiB tail
    async with running_daemon(**daemon_args) as daemon:
        path = drop_in(tmp_path, watch, "finished.mkv", data)
        record = await daemon.wait_for_state(path, {StreamState.COMPLETED})
    plan = PartPlan(5 * MiB)
    layout = plan.final_layout(len(data))
    full, tail = layout[:-1], layout[-1]
    # Full parts: read once to be sent, once to be checked at finalize (no part-sized buffer).
    assert reads == Counter({(r.start, r.size): 1 for r in layout})
    assert checks == Counter({(r.start, r.size): 1 for r in full})
    # The tail is read once, at finalize, and sent from that same buffer.
    assert (tail.start, tail.size) not in checks
    assert object_bytes(s3_client, bucket, record.key) == data
    assert record.sha256 == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("signing", [PayloadSigning.NEVER, PayloadSigning.ALWAYS])
async def test_part_bodies_go_up_exact_signed_or_not_and_checksums_still_guard_them(
    signing: PayloadSigning,
    s3_server: SeaweedS3,
    bucket: str,
    s3_client: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    body = PartBody(os.urandom(2 * SLICE_BYTES + 12345))  # more than one slice, not a multiple
    sent: list[str] = []

    def note_payload_hash(request: Any, **_: Any) -> None:
        value = request.headers["X-Amz-Content-SHA256"]
        sent.append(value.decode() if isinstance(value, bytes) else value)

    async with S3MultipartStore.connect(
        bucket, endpoint_url=s3_server.endpoint_url, region="us-east-1", payload_signing=signing
    ) as store:
        store._s3.meta.events.register("before-send.s3.PutObject", note_payload_hash)
        await store.put_object("exact", body, crc32_of(body), "video/mp2t")
        with pytest.raises(TailupError, match="BadDigest"):
            await store.put_object("corrupt", body, crc32_of(body) ^ 1, "video/mp2t")
    assert object_bytes(s3_client, bucket, "exact") == bytes(body)
    if signing is PayloadSigning.NEVER:
        assert sent[0] == "UNSIGNED-PAYLOAD"
    else:
        assert sent[0] == hashlib.sha256(body).hexdigest()


@pytest.mark.parametrize("signing", [PayloadSigning.NEVER, PayloadSigning.ALWAYS])
async def test_the_signer_neither_copies_a_part_nor_keeps_it(
    signing: PayloadSigning,
    s3_server: SeaweedS3,
    bucket: str,
    s3_client: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import botocore.crt.auth

    assert SIGNS_IN_PLACE, "awscrt is installed here: botocore signs with CRT"
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    copies: list[int] = []
    real_bytesio = botocore.crt.auth.BytesIO  # type: ignore[attr-defined]

    def counting_bytesio(initial: Any = b"") -> Any:
        copies.append(len(initial))
        return real_bytesio(initial)

    monkeypatch.setattr(botocore.crt.auth, "BytesIO", counting_bytesio)
    body = PartBody(os.urandom(SLICE_BYTES + 777))
    async with S3MultipartStore.connect(
        bucket, endpoint_url=s3_server.endpoint_url, region="us-east-1", payload_signing=signing
    ) as store:
        upload_id = await store.create_upload("part", "video/mp2t")
        await store.upload_part("part", upload_id, 1, body, crc32_of(body))
        await store.abort_upload("part", upload_id)
    assert len(body) not in copies
    pool = BufferPool(max_idle_bytes=len(body))
    assert pool.give(body), "nothing (no view of the signer's) holds the part any more"


class _CloseRecorder:
    def __init__(self) -> None:
        self.closes = 0

    def on_closed(self) -> None:
        self.closes += 1


def _closing_supervisor(tmp_path: Path, paths: list[Path]) -> tuple[Supervisor, list[Any]]:
    """A supervisor whose streams for ``paths`` only count the closes they are told of."""
    settings = IsolatedSettings(watch=[tmp_path], bucket="unused")
    supervisor = Supervisor(settings, store=None, checkpoints=None)  # type: ignore[arg-type]
    streams: list[Any] = []
    for path in paths:
        stream = _CloseRecorder()
        supervisor.streams[path] = stream  # type: ignore[assignment]
        supervisor._running.add(stream)  # type: ignore[arg-type]
        streams.append(stream)
    return supervisor, streams


async def test_a_close_while_another_descriptor_still_writes_is_not_the_end(
    tmp_path: Path,
) -> None:
    path = tmp_path / "two-writers.mp4"
    supervisor, [stream] = _closing_supervisor(tmp_path, [path])
    with path.open("wb") as first:
        with path.open("r+b") as second:
            second.write(b"header")
        await supervisor._route(FileEvent(EventKind.CLOSED, path))
        await supervisor._closes.settled()
        assert stream.closes == 0, "`first` still has the file open for writing"
        first.write(b"more")
    await supervisor._route(FileEvent(EventKind.CLOSED, path))
    await supervisor._closes.settled()
    assert stream.closes == 1


async def test_closes_that_arrive_together_share_one_proc_pass(tmp_path: Path) -> None:
    """One recorder closing 40 files at once (one still open elsewhere): the closes routed while
    a pass runs wait for the next one, so 40 closes cost 2 passes, not 40 in a row."""
    paths = [tmp_path / f"cam{i:02d}.ts" for i in range(40)]
    supervisor, streams = _closing_supervisor(tmp_path, paths)
    for path in paths:
        path.write_bytes(b"x")
    with paths[7].open("ab"):  # another writer still holds this one
        for path in paths:
            await supervisor._route(FileEvent(EventKind.CLOSED, path))
        await supervisor._closes.settled()
        told = [s.closes for s in streams]
    assert told == [0 if i == 7 else 1 for i in range(40)]
    assert supervisor._closes.passes <= 2


async def test_a_close_reaches_its_stream_after_a_rename_and_never_an_ended_one(
    tmp_path: Path,
) -> None:
    moved, ended = tmp_path / "live.ts", tmp_path / "gone.ts"
    supervisor, [renamed, finished] = _closing_supervisor(tmp_path, [moved, ended])
    for path in (moved, ended):
        path.write_bytes(b"x")
        await supervisor._route(FileEvent(EventKind.CLOSED, path))
    # Before the pass answers: the first is renamed (its stream carried to the new path), the
    # second stream ends.
    supervisor.streams[tmp_path / "2026-12-01T10.ts"] = supervisor.streams.pop(moved)
    supervisor._running.discard(finished)
    del supervisor.streams[ended]
    await supervisor._closes.settled()
    assert (renamed.closes, finished.closes) == (1, 0)
    # The ended stream's close is not lost: it may have completed on idle with its after-upload
    # action waiting for this close (a PID namespace hides the writer from /proc). Its path is
    # looked at again as a close; the renamed one's close went to its stream, nothing is re-sent.
    requeued = [supervisor._queue.get_nowait() for _ in range(supervisor._queue.qsize())]
    assert [(e.kind, e.path) for e in requeued] == [(EventKind.CLOSED, ended)]


def _stream_for(
    path: Path, generation: int = 1, clock: Callable[[], float] = time.monotonic
) -> Stream:
    st = stat_file(path)
    deps = StreamDeps(
        store=None,  # type: ignore[arg-type]
        checkpoints=None,  # type: ignore[arg-type]
        budget=ByteBudget(64 * MiB),
        close_grace_s=0.0,
        idle_timeout_s=30.0,
        clock=clock,
    )
    record = StreamRecord(
        stream_id="s1",
        path=str(path),
        watch_root=str(path.parent),
        bucket="b",
        key="k",
        base_part_size=5 * MiB,
        device=st.device,
        inode=st.inode,
        created_at="",
        last_activity_at_utc="",
        generation=generation,
    )
    return Stream(deps, record, {})


async def test_a_growing_file_is_looked_at_when_its_next_part_is_due(tmp_path: Path) -> None:
    path = tmp_path / "growing.ts"
    path.write_bytes(b"a" * MiB)
    now = [100.0]
    stream = _stream_for(path, clock=lambda: now[0])
    await stream._observe()
    assert stream._next_look_s() == pytest.approx(0.2), "no rate known yet"
    now[0] += 1.0
    with path.open("ab") as out:
        out.write(b"b" * MiB)  # 1 MiB/s; the 5 MiB part is 3 MiB away: due in 3 s
    await stream._observe()
    assert stream._next_look_s() == pytest.approx(2.0)
    now[0] += 2.0
    with path.open("ab") as out:
        out.write(b"c" * 2 * MiB)
    await stream._observe()
    assert stream._next_look_s() == pytest.approx(1.0)


async def test_a_write_seen_after_the_close_means_the_writer_came_back(tmp_path: Path) -> None:
    path = tmp_path / "reopened.ts"
    path.write_bytes(b"a" * 1000)
    stream = _stream_for(path)
    await stream._observe()
    stream.on_closed()
    await stream._observe()  # the file as the writer left it
    assert stream._ready_to_finalize()
    with path.open("ab") as out:
        out.write(b"b" * 1000)
    await stream._observe()
    assert not stream._ready_to_finalize(), "written after its close: not finished"


async def test_a_writer_known_to_come_back_gets_a_grace_after_its_close(tmp_path: Path) -> None:
    path = tmp_path / "appended.ts"
    path.write_bytes(b"a" * 1000)
    stream = _stream_for(path, generation=2)  # it changed after an earlier completed upload
    await stream._observe()
    stream.on_closed()
    await stream._observe()
    assert not stream._ready_to_finalize()


async def test_growth_is_seen_without_any_write_event(
    daemon_args: dict[str, Any], watch: Path
) -> None:
    """Writes make no events (tailup.watcher): the stream polls its file and sends parts while
    the writer still has it open."""
    path = watch / "growing.ts"
    async with running_daemon(**daemon_args) as daemon:
        with path.open("wb") as out:
            out.write(os.urandom(11 * MiB))
            out.flush()
            await wait_until(lambda: len(daemon.store.parts) >= 2, "2 parts sent while open")


async def test_part_buffers_alive_never_exceed_the_byte_budget(
    daemon_args: dict[str, Any],
    watch: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    s3_client: Any,
    bucket: str,
) -> None:
    """The budget bounds memory only if no buffer outlives its grant (a loop variable holding the
    last part while the next one waits for budget did, by a part per stream)."""
    budget = 12 * MiB
    alive: dict[int, weakref.ref[PartBody]] = {}
    worst = 0
    real_read_into = source_module._read_into

    def tracked_read_into(fd: int, start: int, length: int) -> PartBody:
        nonlocal worst
        held = sum(len(b) for b in (r() for r in alive.values()) if b is not None)
        worst = max(worst, held + length)
        body = real_read_into(fd, start, length)
        alive[id(body)] = weakref.ref(body)
        return body

    monkeypatch.setattr(source_module, "_read_into", tracked_read_into)
    # Idle pooled buffers are not in use; without the pool every live buffer is.
    monkeypatch.setattr(PART_BUFFERS, "max_idle_bytes", 0)
    files = {f"cam{i}.ts": os.urandom(11 * MiB) for i in range(4)}
    async with running_daemon(**daemon_args, max_inflight_bytes="12MiB") as daemon:
        paths = [drop_in(tmp_path, watch, name, data) for name, data in files.items()]
        records = [await daemon.wait_for_state(p, {StreamState.COMPLETED}) for p in paths]
    assert worst <= budget, f"{worst / MiB:.1f} MiB of part buffers alive at once"
    for record, data in zip(records, files.values(), strict=True):
        assert object_bytes(s3_client, bucket, record.key) == data


# In a fresh interpreter (mallopt is process-wide): part-sized buffers allocated in a worker
# thread, each followed by a small allocation that stays (as the daemon's other objects do), then
# freed. Prints the resident memory they leave behind, in MiB.
_PART_MEMORY_PROBE = """
import sys, threading
from tailup.body import return_part_memory_promptly
print(return_part_memory_promptly())
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096
left = []
def work():
    first = bytearray(8 << 20)  # freed: glibc would now raise its mmap threshold past 8 MiB
    del first
    base = rss()
    keep, parts = [], []
    for _ in range(16):
        parts.append(bytearray(8 << 20))
        keep.append(bytearray(2000))
    del parts
    left.append((rss() - base) >> 20)
thread = threading.Thread(target=work)
thread.start()
thread.join()
print(left[0])
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
async def test_part_memory_goes_back_to_the_system_on_linux() -> None:
    probe = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _PART_MEMORY_PROBE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(Path(tailup.__file__).parents[1])},
    )
    out, err = await asyncio.wait_for(probe.communicate(), 60)
    assert probe.returncode == 0, err.decode()
    enabled, left_mib = out.decode().split()
    assert enabled == "True"
    # 128 MiB of parts were freed; without the fixed threshold glibc keeps them all resident.
    assert int(left_mib) < 32, f"{left_mib} MiB of freed part buffers still resident"


async def test_part_memory_is_not_promised_off_linux(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    assert return_part_memory_promptly() is False


@pytest.mark.parametrize("fmt", ["ts", "mp4", "faststart", "mkv", "mov"])
async def test_recordings_are_known_within_the_format_probe_and_junk_is_not_chased(
    fmt: str, tmp_path: Path
) -> None:
    """The probe looks FORMAT_PROBE_BYTES into a file for its container: every recorder format
    is known at once; bytes that are no container for longer than that are given up on (ffmpeg's
    own 1 MiB would find the recording past them, at ~55 ms of CPU per non-media file)."""
    recording = tmp_path / f"rec.{'mp4' if fmt == 'faststart' else fmt}"
    cmd = record_cmd(recording, fmt, 1.0, live=False)
    await asyncio.to_thread(subprocess.run, cmd, check=True)
    media = probe_media(recording)
    assert media is not None and {s.codec for s in media.streams} == {"h264", "aac"}
    if fmt == "ts":  # the one format that can be found mid-file
        late = tmp_path / "late.ts"
        # Seeded: some random byte strings probe as a raw h263 stream (CI saw one): ffmpeg reading
        # junk, not the recording past it. The claim is that the recording is not found.
        junk = random.Random(15).randbytes(FORMAT_PROBE_BYTES + 16 * 1024)
        late.write_bytes(junk + recording.read_bytes())
        found = probe_media(late)
        assert found is None or not {s.codec for s in found.streams} & {"h264", "aac"}, found
