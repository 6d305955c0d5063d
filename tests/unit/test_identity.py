"""What a recording is over time (tailup.identity): each case of a deployment's life, a row."""

from __future__ import annotations

import pytest

from tailup.identity import FileIdentity, FileNow, Life, Seen, judge_file, same_life
from tailup.model import EndCause, StreamRecord, StreamState

DEV, INO, BORN, GEN = 2049, 1234, 1_700_000_000_123_456_789, 77


def record(state: StreamState, **changes: object) -> StreamRecord:
    base = StreamRecord(
        stream_id="s1",
        path="/rec/cam1.ts",
        watch_root="/rec",
        bucket="b",
        key="streams/s1/cam1.ts",
        base_part_size=8 << 20,
        state=state,
        device=DEV,
        inode=INO,
        birth_ns=BORN,
        inode_generation=GEN,
        final_size=100 << 20,
        final_mtime_ns=5_000,
        head_size=8 << 20,
        head_crc32=0xABCD,
        total_bytes_sent=100 << 20,
    )
    return base.with_changes(**changes)


def now(
    size: int = 100 << 20,
    mtime: int = 5_000,
    *,
    inode: int = INO,
    born: int = BORN,
    gen: int = GEN,
) -> FileNow:
    return FileNow(FileIdentity(DEV, inode, born, gen), size, mtime)


@pytest.mark.parametrize(
    ("recorded", "seen", "life"),
    [
        (FileIdentity(1, 2, 10, 5), FileIdentity(1, 2, 10, 5), Life.SAME),
        (FileIdentity(1, 2, 10, 5), FileIdentity(1, 3, 10, 5), Life.OTHER),
        (FileIdentity(1, 2, 10, 5), FileIdentity(9, 2, 10, 5), Life.OTHER),
        # ext4 reuses the inode number at once: the birth time or the generation tells.
        (FileIdentity(1, 2, 10, 5), FileIdentity(1, 2, 11, 5), Life.OTHER),
        (FileIdentity(1, 2, 10, 5), FileIdentity(1, 2, 10, 6), Life.OTHER),
        (FileIdentity(1, 2, 0, 5), FileIdentity(1, 2, 0, 6), Life.OTHER),  # no btime
        (FileIdentity(1, 2, 10, -1), FileIdentity(1, 2, 11, -1), Life.OTHER),  # no generation
        (FileIdentity(1, 2, 10, -1), FileIdentity(1, 2, 10, -1), Life.SAME),
        (FileIdentity(1, 2, 0, 5), FileIdentity(1, 2, 0, 5), Life.SAME),
        # A record from before identities were kept, or a file system that keeps neither.
        (FileIdentity(1, 2, 0, -1), FileIdentity(1, 2, 10, 5), Life.UNKNOWN),
        (FileIdentity(1, 2, 0, -1), FileIdentity(1, 2, 0, -1), Life.UNKNOWN),
    ],
)
def test_same_life(recorded: FileIdentity, seen: FileIdentity, life: Life) -> None:
    assert same_life(recorded, seen) is life


C = StreamState.COMPLETED
CASES: list[tuple[str, StreamRecord | None, FileNow, bool | None, Seen]] = [
    ("nothing known at the path", None, now(), None, Seen.NEW),
    # 1. rm cam1.ts, then at once a new cam1.ts on the freed inode number.
    ("delete+create, inode reused, new btime", record(C), now(born=BORN + 1), None, Seen.NEW),
    ("delete+create, inode reused, new gen", record(C), now(gen=GEN + 1, born=0), None, Seen.NEW),
    ("another inode at the path", record(C), now(inode=INO + 1), None, Seen.NEW),
    (
        "live stream, inode reused",
        record(StreamState.UPLOADING),
        now(born=BORN + 1),
        None,
        Seen.NEW,
    ),
    # 2. ffmpeg -y over a finished file: same inode life, new bytes from byte 0.
    ("O_TRUNC, seen short", record(C), now(size=1 << 20, mtime=6_000), None, Seen.NEW),
    (
        "O_TRUNC, seen longer: compare",
        record(C),
        now(size=200 << 20, mtime=6_000),
        None,
        Seen.CHECK_HEAD,
    ),
    ("O_TRUNC, longer, head differs", record(C), now(size=200 << 20, mtime=6_000), False, Seen.NEW),
    # Growth after completion (an append) is the same recording.
    ("appended after completion", record(C), now(size=200 << 20, mtime=6_000), True, Seen.GREW),
    ("touched, same size, same head", record(C), now(mtime=6_000), True, Seen.GREW),
    ("unchanged since completion", record(C), now(), None, Seen.UNCHANGED),
    # A salvaged recording's file came back (issue 18): uploaded whole over the salvaged prefix.
    ("salvaged, back: compare", record(StreamState.SALVAGED), now(), None, Seen.CHECK_HEAD),
    ("salvaged, back whole", record(StreamState.SALVAGED), now(size=300 << 20), True, Seen.GREW),
    ("salvaged, back rewritten", record(StreamState.SALVAGED), now(), False, Seen.NEW),
    ("salvaged, back shorter", record(StreamState.SALVAGED), now(size=1 << 20), None, Seen.NEW),
    # Live and failed streams of this very file are resumed.
    ("live stream", record(StreamState.UPLOADING), now(), None, Seen.RESUME),
    ("stalled stream", record(StreamState.STALLED), now(), None, Seen.RESUME),
    ("finalizing stream", record(StreamState.FINALIZING), now(), None, Seen.RESUME),
    ("failed stream: retried", record(StreamState.FAILED), now(), None, Seen.RESUME),
    # 5. Moved out and back, or a folder that vanished: undone when it comes back.
    (
        "vanished, back, compare",
        record(StreamState.ABORTED, end_cause=EndCause.SOURCE_GONE),
        now(),
        None,
        Seen.CHECK_HEAD,
    ),
    (
        "vanished, back unchanged",
        record(StreamState.ABORTED, end_cause=EndCause.SOURCE_GONE),
        now(),
        True,
        Seen.RESTART,
    ),
    (
        "vanished, nothing sent, back",
        record(StreamState.ABORTED, end_cause=EndCause.SOURCE_GONE, total_bytes_sent=0),
        now(),
        None,
        Seen.RESTART,
    ),
    (
        "vanished, back rewritten",
        record(StreamState.ABORTED, end_cause=EndCause.SOURCE_GONE),
        now(),
        False,
        Seen.NEW,
    ),
    (
        "ended as replaced (rewritten while tailup was down)",
        record(StreamState.ABORTED, end_cause=EndCause.REPLACED),
        now(),
        None,
        Seen.NEW,
    ),
    # Only an operator's abort sticks.
    (
        "operator abort",
        record(StreamState.ABORTED, end_cause=EndCause.OPERATOR),
        now(size=300 << 20),
        None,
        Seen.UNCHANGED,
    ),
    (
        "operator abort, rewritten",
        record(StreamState.ABORTED, end_cause=EndCause.OPERATOR),
        now(),
        False,
        Seen.NEW,
    ),
    ("skipped, still empty", record(StreamState.SKIPPED), now(size=0), None, Seen.UNCHANGED),
    ("skipped, then written", record(StreamState.SKIPPED), now(size=10), None, Seen.GREW),
    # A file system that keeps no birth time nor generation: a delete seen at the path ends the
    # recording there unless the bytes say it is the same file moved back.
    (
        "no btime/gen, deleted, compare",
        record(C, birth_ns=0, inode_generation=-1, path_ended=True),
        now(born=0, gen=-1),
        None,
        Seen.CHECK_HEAD,
    ),
    (
        "no btime/gen, deleted, new bytes",
        record(C, birth_ns=0, inode_generation=-1, path_ended=True),
        now(born=0, gen=-1),
        False,
        Seen.NEW,
    ),
    (
        "no btime/gen, deleted, moved back",
        record(C, birth_ns=0, inode_generation=-1, path_ended=True),
        now(born=0, gen=-1),
        True,
        Seen.UNCHANGED,
    ),
    (
        "no btime/gen, no delete seen",
        record(C, birth_ns=0, inode_generation=-1),
        now(born=0, gen=-1),
        None,
        Seen.UNCHANGED,
    ),
]


@pytest.mark.parametrize(
    ("previous", "file_now", "head", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_judge_file(
    previous: StreamRecord | None, file_now: FileNow, head: bool | None, expected: Seen
) -> None:
    judgement = judge_file(previous, file_now, head_unchanged=head)
    assert judgement.seen is expected, judgement.reason
    assert judgement.reason


def test_a_decision_never_asks_for_the_head_twice() -> None:
    """Whatever CHECK_HEAD asked for, the answer decides: the supervisor loops at most once."""
    for _, previous, file_now, _, _ in CASES:
        for head in (True, False):
            assert judge_file(previous, file_now, head_unchanged=head).seen is not Seen.CHECK_HEAD
