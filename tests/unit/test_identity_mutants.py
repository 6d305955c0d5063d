"""tailup.identity where mutation testing found it unchecked (`make mutants`, docs/testing.md):
the reason each judgement gives (what the log and `tailup status` say), the generation 0 at the
edge of "kept", one byte sent, and when the generation must be read at all."""

from __future__ import annotations

import pytest

from tailup.identity import (
    FileIdentity,
    FileNow,
    Judgement,
    Life,
    Seen,
    judge_file,
    needs_generation,
    same_life,
)
from tailup.model import EndCause, StreamRecord, StreamState

DEV, INO, BORN, GEN = 2049, 1234, 1_700_000_000_123_456_789, 77
MiB = 1 << 20


def record(state: StreamState, **changes: object) -> StreamRecord:
    base = StreamRecord(
        stream_id="s1",
        path="/rec/cam1.ts",
        watch_root="/rec",
        bucket="b",
        key="streams/s1/cam1.ts",
        base_part_size=8 * MiB,
        state=state,
        device=DEV,
        inode=INO,
        birth_ns=BORN,
        inode_generation=GEN,
        final_size=100 * MiB,
        final_mtime_ns=5_000,
        head_size=8 * MiB,
        head_crc32=0xABCD,
        total_bytes_sent=100 * MiB,
    )
    return base.with_changes(**changes)


def now(size: int = 100 * MiB, mtime: int = 5_000, *, born: int = BORN, gen: int = GEN) -> FileNow:
    return FileNow(FileIdentity(DEV, INO, born, gen), size, mtime)


COMPLETED, ABORTED = StreamState.COMPLETED, StreamState.ABORTED
# A record and a file whose identities cannot tell the lives apart (no birth time, no generation).
UNTOLD = {"birth_ns": 0, "inode_generation": -1}
CHECKING = ": comparing its first part with the uploaded one"

REASONS: list[tuple[StreamRecord | None, FileNow, bool | None, Seen, str]] = [
    (None, now(), None, Seen.NEW, "no recording was known at this path"),
    (
        record(COMPLETED),
        now(born=BORN + 1),
        None,
        Seen.NEW,
        "another file than the path's last recording",
    ),
    (
        record(COMPLETED, path_ended=True, **UNTOLD),
        now(born=0, gen=-1),
        None,
        Seen.CHECK_HEAD,
        "the path's last recording was deleted" + CHECKING,
    ),
    (
        record(COMPLETED, path_ended=True, **UNTOLD),
        now(born=0, gen=-1),
        False,
        Seen.NEW,
        "a new file where a deleted recording was",
    ),
    (record(StreamState.UPLOADING), now(), None, Seen.RESUME, "the file of a uploading stream"),
    (record(StreamState.FAILED), now(), None, Seen.RESUME, "the file of a failed stream"),
    (record(StreamState.SKIPPED), now(size=0), None, Seen.UNCHANGED, "still empty"),
    (
        record(StreamState.SKIPPED),
        now(size=1),
        None,
        Seen.GREW,
        "written to after it was closed empty",
    ),
    (record(COMPLETED), now(), None, Seen.UNCHANGED, "unchanged since its upload completed"),
    (
        record(COMPLETED),
        now(size=100 * MiB - 1),
        None,
        Seen.NEW,
        f"{100 * MiB - 1} bytes, shorter than the {100 * MiB} uploaded: rewritten",
    ),
    (
        record(COMPLETED),
        now(mtime=6_000),
        None,
        Seen.CHECK_HEAD,
        "changed since its upload completed" + CHECKING,
    ),
    (
        record(COMPLETED),
        now(mtime=6_000),
        False,
        Seen.NEW,
        "its first part differs from the uploaded one: rewritten",
    ),
    (
        record(COMPLETED),
        now(mtime=6_000),
        True,
        Seen.GREW,
        "grew after its upload completed (first part unchanged)",
    ),
    (
        record(ABORTED, end_cause=EndCause.REPLACED),
        now(),
        None,
        Seen.NEW,
        "its recording ended when the file was rewritten or replaced",
    ),
    (
        record(ABORTED, end_cause=EndCause.OPERATOR),
        now(),
        False,
        Seen.NEW,
        "rewritten from byte 0 after an operator aborted it",
    ),
    (
        record(ABORTED, end_cause=EndCause.OPERATOR),
        now(),
        None,
        Seen.UNCHANGED,
        "aborted by an operator (`tailup abort` sticks)",
    ),
    (
        record(ABORTED, end_cause=EndCause.SOURCE_GONE),
        now(),
        None,
        Seen.CHECK_HEAD,
        "its upload ended when the file vanished" + CHECKING,
    ),
    (
        record(ABORTED, end_cause=EndCause.SOURCE_GONE),
        now(),
        False,
        Seen.NEW,
        "came back rewritten from byte 0",
    ),
    (
        record(ABORTED, end_cause=EndCause.SOURCE_GONE),
        now(),
        True,
        Seen.RESTART,
        "the file came back after its upload was given up",
    ),
]


@pytest.mark.parametrize(("previous", "file_now", "head", "seen", "reason"), REASONS)
def test_each_judgement_gives_its_own_reason(
    previous: StreamRecord | None, file_now: FileNow, head: bool | None, seen: Seen, reason: str
) -> None:
    assert judge_file(previous, file_now, head_unchanged=head) == Judgement(seen, reason)


def test_one_byte_sent_is_enough_to_compare_the_first_part() -> None:
    vanished = record(ABORTED, end_cause=EndCause.SOURCE_GONE, total_bytes_sent=1)
    assert judge_file(vanished, now()).seen is Seen.CHECK_HEAD
    nothing_sent = vanished.with_changes(total_bytes_sent=0)
    assert judge_file(nothing_sent, now()).seen is Seen.RESTART


@pytest.mark.parametrize(
    ("recorded_gen", "seen_gen", "life"),
    [
        (0, 0, Life.SAME),  # generation 0 is a kept one: it tells
        (0, 3, Life.OTHER),
        (3, 0, Life.OTHER),
        (-1, 0, Life.UNKNOWN),
        (0, -1, Life.UNKNOWN),
    ],
)
def test_generation_zero_is_kept(recorded_gen: int, seen_gen: int, life: Life) -> None:
    assert same_life(FileIdentity(1, 2, 0, recorded_gen), FileIdentity(1, 2, 0, seen_gen)) is life


@pytest.mark.parametrize(
    ("recorded", "seen", "needed"),
    [
        # The birth time is missing on either side and the record has a generation: read it.
        (FileIdentity(1, 2, 0, 5), FileIdentity(1, 2, 10, -1), True),
        (FileIdentity(1, 2, 10, 5), FileIdentity(1, 2, 0, -1), True),
        (FileIdentity(1, 2, 0, 0), FileIdentity(1, 2, 0, -1), True),  # generation 0 counts
        # Both birth times: they tell, no generation needed.
        (FileIdentity(1, 2, 10, 5), FileIdentity(1, 2, 11, -1), False),
        # The record has no generation to compare with.
        (FileIdentity(1, 2, 0, -1), FileIdentity(1, 2, 0, -1), False),
        # Another file altogether: nothing to tell apart.
        (FileIdentity(1, 2, 0, 5), FileIdentity(1, 3, 0, -1), False),
        (FileIdentity(1, 2, 0, 5), FileIdentity(9, 2, 0, -1), False),
    ],
)
def test_needs_generation(recorded: FileIdentity, seen: FileIdentity, needed: bool) -> None:
    assert needs_generation(recorded, seen) is needed
