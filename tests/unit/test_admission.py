"""tailup.rules.admission: every branch of "what now?" for a file, as a row: the facts (canned
answers to the questions the core asks), the questions asked in order, and the final act,
compared whole. No Redis, no S3, no files. The list of questions pins the cost contracts: a new
recording born since the start costs no S3 request; statx alone unless only the inode generation
can tell."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest

from tailup.checksums import ChecksumAlgorithm
from tailup.identity import FileIdentity, stream_id_for
from tailup.model import EndCause, PartRecord, StreamRecord, StreamState
from tailup.plan import PartSizing
from tailup.recovery import Finding, Found
from tailup.rules.admission import MAX_LIVES, decide
from tailup.rules.names import SEARCH, Search, name_gone, resume_at
from tailup.rules.records import (
    Placement,
    RecordDefaults,
    completed_from_sidecar,
    new_record,
    next_generation,
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
from tailup.source import FileStat

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
ROOT = Path("/rec")
P = ROOT / "cam1.ts"
OLD = ROOT / "old.ts"
SCOPE = "node:n1"
SHARE = "share:nas"
INODE, BIRTH, GEN = 42, 1_000, 9
ST = FileStat(size=1000, mtime_ns=50, device=1, inode=INODE, birth_ns=BIRTH)
LOOK = (INODE, BIRTH, 1000, 50)
SEEN = FileIdentity(1, INODE, BIRTH, GEN)  # as recorded: the generation read for a new life
SID0 = stream_id_for(SCOPE, SEEN, life=0)
SID1 = stream_id_for(SCOPE, SEEN, life=1)
DEFAULTS = RecordDefaults(
    bucket="b",
    key_template="{stream_id}/{relpath}",
    prefix="",
    part_size=5 << 20,
    part_sizing=PartSizing.GROWING,
    checksum=ChecksumAlgorithm.CRC32,
    hostname="h",
    node_id="n1",
)
WHERE = Where(
    placement=Placement(ROOT, "rec", SCOPE),
    shared=False,
    defaults=DEFAULTS,
    now=NOW,
    now_ns=10_000,
    now_mono=100.0,
    started_ns=500,  # the file (born at 1,000) was born since: S3 cannot know it
    fresh_id="fresh",
    redis_lost=False,
    keep_records_s=0,
    lease_ttl_s=30.0,
    unique_template=True,
    check_keys=False,
)
BEFORE_START = dataclasses.replace(WHERE, started_ns=5_000)
SHARED = dataclasses.replace(WHERE, placement=Placement(ROOT, "nas", SHARE), shared=True)
SHARE_SID0 = stream_id_for(SHARE, SEEN, life=0)


def rec(sid: str = SID0, **changes: Any) -> StreamRecord:
    base = new_record(DEFAULTS, Placement(ROOT, "rec", SCOPE), P, ST, SEEN, sid, NOW)
    return base.with_changes(**changes)


NEW0 = rec()
DONE = rec(
    state=StreamState.COMPLETED,
    final_size=1000,
    final_mtime_ns=50,
    head_size=100,
    head_crc32=7,
    total_bytes_sent=1000,
)
LIVE = rec(state=StreamState.UPLOADING, total_bytes_sent=500)
PARTS = {1: PartRecord(number=1, size=100, etag="e", crc32=7)}
GROWN = dataclasses.replace(ST, size=2000, mtime_ns=60)
NO_HISTORY: tuple[None, dict[int, PartRecord]] = (None, {})

Answers = Mapping[Ask[Any], object] | Callable[[Ask[Any]], object]


def drive(
    where: Where, answers: Answers, *, path: Path = P, writer_closed: bool = False
) -> tuple[list[Ask[Any]], Act]:
    """Feed canned answers until the core acts; the questions it asked, in order. A record the
    core asks to create is the one the row's AskCreate names (AskCreate's equality leaves the
    record out: it is the answer's key by its id)."""
    facts = Facts(path, writer_closed)
    asked: list[Ask[Any]] = []
    for _ in range(10 * MAX_LIVES):
        step = decide(facts, where)
        if isinstance(step, Act):
            assert len(set(asked)) == len(asked), f"a question asked twice: {asked}"
            return asked, step
        asked.append(step)
        if callable(answers):
            answer = answers(step)
        else:
            answer = answers[step]
            if isinstance(step, AskCreate):
                (row_ask,) = [ask for ask in answers if ask == step]
                assert isinstance(row_ask, AskCreate)
                assert step.record == row_ask.record, "another record created than the row's"
        facts = facts.answered(step, answer)
    raise AssertionError(f"no act after {len(asked)} questions: {asked[-5:]}")


def kinds(asked: list[Ask[Any]]) -> list[str]:
    return [type(a).__name__ for a in asked]


NEW_FILE: dict[Ask[Any], object] = {
    AskStat(P): ST,
    AskHistory(P): NO_HISTORY,
    AskGeneration(P, INODE): GEN,
    AskRecord(SID0): None,
    AskKey(f"{SID0}/cam1.ts", SID0, False): f"{SID0}/cam1.ts",
}
# Rows name the record they expect created in their own AskCreate: a dict merged over another
# keeps the first AskCreate key of an id (equal keys), and with it the first record.
CREATE_NEW0: dict[Ask[Any], object] = {AskCreate(SID0, NEW0): True}
S3_KEY = AskS3(f"{SID0}/cam1.ts", SID0, 1000, 50, False, f"{SID0}/")

# The acts' whole: every command with every field, and the why (Start.why and Note fields are
# logged, Act.why at debug). The records they carry are made by tailup.rules.records, whose
# fields tests/unit/test_records.py checks one by one.
BORN_SINCE = "a file born since tailup started"
NEW_RECORDING = "a new recording"
COMPLETED_UNCHANGED = "unchanged since its upload completed"
PENDING_ACTION = "a pending after-upload action"
RESUMED = "the file of a uploading stream"
GREW = "grew after its upload completed (first part unchanged)"
ELSEWHERE = "another node uploads it"
MADE_MEANWHILE = "another event made it meanwhile"
NEW1 = rec(SID1)
SHARED_NEW = rec(SHARE_SID0, scope=SHARE)
PENDING = DONE.with_changes(after_upload_pending=True)
SHARED_PENDING = PENDING.with_changes(scope=SHARE)
LIVE_SHARED = LIVE.with_changes(scope=SHARE)
IN_S3 = completed_from_sidecar(NEW0, ST, {"generation": 2}, NOW)
SHARED_IN_S3 = completed_from_sidecar(SHARED_NEW, ST, {}, NOW)
ADOPTED = NEW0.with_changes(upload_id="u1", adopted_upload="u1")
# No birth time: its mtime (600 ns) dates it, after the daemon's start (500 ns).
NO_BIRTH = dataclasses.replace(ST, birth_ns=0, mtime_ns=600)
NO_BIRTH_SEEN = FileIdentity(1, INODE, 0, GEN)
NO_BIRTH_SID = stream_id_for(SCOPE, NO_BIRTH_SEEN, life=0)
NO_BIRTH_NEW = new_record(
    DEFAULTS, Placement(ROOT, "rec", SCOPE), P, NO_BIRTH, NO_BIRTH_SEEN, NO_BIRTH_SID, NOW
)
# An inode number reused where no birth time is kept: only its generation (GEN + 1) tells.
REUSED = dataclasses.replace(ST, birth_ns=0)
REUSED_SEEN = FileIdentity(1, INODE, 0, GEN + 1)
REUSED_SID = stream_id_for(SCOPE, REUSED_SEEN, life=0)
REUSED_NEW = new_record(
    DEFAULTS, Placement(ROOT, "rec", SCOPE), P, REUSED, REUSED_SEEN, REUSED_SID, NOW
)
HEAD_1 = DONE.with_changes(head_size=1, head_crc32=0xABC)
NO_HEAD = DONE.with_changes(head_size=0, head_crc32=0)
GAVE_UP = LIVE.with_changes(state=StreamState.ABORTED, end_cause=EndCause.SOURCE_GONE)


def started(record: StreamRecord, why: str) -> Act:
    """A new stream (not resumed), logged with ``why``."""
    return Act((Start(record, {}, resumed=False, why=why),), why)


def resumed(record: StreamRecord, parts: dict[int, PartRecord], why: str) -> Act:
    note = Note("resuming stream", (("stream_id", record.stream_id),))
    return Act((note, Start(record, parts, resumed=True, why="")), why)


def next_started(previous: StreamRecord, st: FileStat, why: str) -> Act:
    """The next generation of ``previous``: written, then started."""
    record = next_generation(previous, st, SEEN, NOW)
    return Act((Write(record), Start(record, {}, resumed=False, why=why)), why)


def in_s3_note(record: StreamRecord, why: str) -> Note:
    fields = (("stream_id", record.stream_id), ("path", record.path), ("key", record.key))
    return Note("recording already in S3: not uploaded again", (*fields, ("why", why)))


# -- rows: (name, where, answers, questions asked, the act) ----------------------------------------


ROWS: list[tuple[str, Where, dict[Ask[Any], object], list[str], Act]] = [
    (
        "another node's file is looked at later, without a stat",
        dataclasses.replace(WHERE, elsewhere_until=101.0),
        {},
        [],
        Act((), "another node's recording (a shared folder): looked at again later"),
    ),
    (
        "a file that cannot be read is not uploaded, said why",
        WHERE,
        {AskStat(P): Unreadable("permission denied")},
        ["AskStat"],
        Act(
            (Note("file cannot be uploaded", (("reason", "permission denied"),), warn=True),),
            "permission denied",
        ),
    ),
    (
        "judged unchanged already: one stat, nothing loaded",
        dataclasses.replace(WHERE, unchanged=LOOK),
        {AskStat(P): ST},
        ["AskStat"],
        Act((Remember(P, LOOK),), "judged unchanged already"),
    ),
    (
        "another node's hold ends now: looked at",
        dataclasses.replace(WHERE, elsewhere_until=100.0, unchanged=LOOK),
        {AskStat(P): ST},
        ["AskStat"],
        Act((Remember(P, LOOK),), "judged unchanged already"),
    ),
    (
        "a new file born since the start: no S3 request",
        WHERE,
        {**NEW_FILE, **CREATE_NEW0},
        ["AskStat", "AskHistory", "AskGeneration", "AskRecord", "AskKey", "AskCreate"],
        started(NEW0, BORN_SINCE),
    ),
    (
        "no free key: the stream claims it first and fails where status shows it (N4)",
        WHERE,
        {
            **NEW_FILE,
            AskKey(f"{SID0}/cam1.ts", SID0, False): None,
            AskCreate(SID0, NEW0.with_changes(key_pending=True)): True,
        },
        ["AskStat", "AskHistory", "AskGeneration", "AskRecord", "AskKey", "AskCreate"],
        started(NEW0.with_changes(key_pending=True), BORN_SINCE),
    ),
    (
        "a new file born before the start: S3 asked first, has nothing",
        BEFORE_START,
        {**NEW_FILE, **CREATE_NEW0, S3_KEY: Finding(Found.NOTHING, "")},
        ["AskStat", "AskHistory", "AskGeneration", "AskRecord", "AskS3", "AskKey", "AskCreate"],
        started(NEW0, NEW_RECORDING),
    ),
    (
        "Redis lost its data: S3 asked even for a file born since the start",
        dataclasses.replace(WHERE, redis_lost=True),
        {**NEW_FILE, **CREATE_NEW0, S3_KEY: Finding(Found.NOTHING, "")},
        ["AskStat", "AskHistory", "AskGeneration", "AskRecord", "AskS3", "AskKey", "AskCreate"],
        started(NEW0, NEW_RECORDING),
    ),
    (
        "born since the start but before --keep-records: S3 asked (its record may be gone)",
        dataclasses.replace(WHERE, keep_records_s=0.000_001),  # 1,000 ns: born 9,000 ns ago
        {**NEW_FILE, **CREATE_NEW0, S3_KEY: Finding(Found.NOTHING, "")},
        ["AskStat", "AskHistory", "AskGeneration", "AskRecord", "AskS3", "AskKey", "AskCreate"],
        started(NEW0, NEW_RECORDING),
    ),
    (
        "no birth time: a new file modified since the start is new, no S3 request",
        WHERE,
        {
            AskStat(P): NO_BIRTH,
            AskHistory(P): NO_HISTORY,
            AskGeneration(P, INODE): GEN,
            AskRecord(NO_BIRTH_SID): None,
            AskKey(f"{NO_BIRTH_SID}/cam1.ts", NO_BIRTH_SID, False): f"{NO_BIRTH_SID}/cam1.ts",
            AskCreate(NO_BIRTH_SID, NO_BIRTH_NEW): True,
        },
        ["AskStat", "AskHistory", "AskGeneration", "AskRecord", "AskKey", "AskCreate"],
        started(NO_BIRTH_NEW, BORN_SINCE),
    ),
    (
        "S3 has it whole: recorded as completed, not uploaded",
        BEFORE_START,
        {
            **NEW_FILE,
            S3_KEY: Finding(Found.COMPLETED, "its metadata.json", sidecar={"generation": 2}),
            AskReserve(f"{SID0}/cam1.ts", SID0): None,
            AskCreate(SID0, IN_S3): True,
        },
        ["AskStat", "AskHistory", "AskGeneration", "AskRecord", "AskS3", "AskReserve", "AskCreate"],
        Act((in_s3_note(IN_S3, "its metadata.json"),), "its metadata.json"),
    ),
    (
        "S3 has it whole but another event recorded it meanwhile: nothing",
        BEFORE_START,
        {
            **NEW_FILE,
            S3_KEY: Finding(Found.COMPLETED, "its metadata.json", sidecar={"generation": 2}),
            AskReserve(f"{SID0}/cam1.ts", SID0): None,
            AskCreate(SID0, IN_S3): False,
        },
        ["AskStat", "AskHistory", "AskGeneration", "AskRecord", "AskS3", "AskReserve", "AskCreate"],
        Act((), "another event recorded it meanwhile"),
    ),
    (
        "S3 has it whole but another stream reserved its key: a key of its own",
        BEFORE_START,
        {
            **NEW_FILE,
            S3_KEY: Finding(Found.COMPLETED, "its metadata.json", sidecar={}),
            AskReserve(f"{SID0}/cam1.ts", SID0): "other",
            AskKey(f"{SID0}/cam1.ts", SID0, True): f"{SID0}/cam1-2.ts",
            AskCreate(SID0, NEW0.with_changes(key=f"{SID0}/cam1-2.ts")): True,
        },
        [
            "AskStat",
            "AskHistory",
            "AskGeneration",
            "AskRecord",
            "AskS3",
            "AskReserve",
            "AskKey",
            "AskCreate",
        ],
        started(NEW0.with_changes(key=f"{SID0}/cam1-2.ts"), "stream other holds its key"),
    ),
    (
        "an open upload in S3 is adopted",
        BEFORE_START,
        {
            **NEW_FILE,
            S3_KEY: Finding(Found.IN_FLIGHT, "an open upload", upload_id="u1"),
            AskReserve(f"{SID0}/cam1.ts", SID0): None,
            AskCreate(SID0, ADOPTED): True,
        },
        ["AskStat", "AskHistory", "AskGeneration", "AskRecord", "AskS3", "AskReserve", "AskCreate"],
        Act(
            (
                Note(
                    "open upload adopted from S3",
                    (
                        ("stream_id", SID0),
                        ("path", str(P)),
                        ("key", f"{SID0}/cam1.ts"),
                        ("why", "an open upload"),
                        ("upload_id", "u1"),
                    ),
                ),
                Start(ADOPTED, {}, resumed=True, why=""),
            ),
            "an open upload",
        ),
    ),
    (
        "an open upload in S3, but another event made the record meanwhile: nothing",
        BEFORE_START,
        {
            **NEW_FILE,
            S3_KEY: Finding(Found.IN_FLIGHT, "an open upload", upload_id="u1"),
            AskReserve(f"{SID0}/cam1.ts", SID0): None,
            AskCreate(SID0, ADOPTED): False,
        },
        ["AskStat", "AskHistory", "AskGeneration", "AskRecord", "AskS3", "AskReserve", "AskCreate"],
        Act((), MADE_MEANWHILE),
    ),
    (
        "an open upload in S3 under a key another stream reserved: a key of its own",
        BEFORE_START,
        {
            **NEW_FILE,
            S3_KEY: Finding(Found.IN_FLIGHT, "an open upload", upload_id="u1"),
            AskReserve(f"{SID0}/cam1.ts", SID0): "other",
            AskKey(f"{SID0}/cam1.ts", SID0, True): f"{SID0}/cam1-2.ts",
            AskCreate(SID0, NEW0.with_changes(key=f"{SID0}/cam1-2.ts")): True,
        },
        [
            "AskStat",
            "AskHistory",
            "AskGeneration",
            "AskRecord",
            "AskS3",
            "AskReserve",
            "AskKey",
            "AskCreate",
        ],
        started(NEW0.with_changes(key=f"{SID0}/cam1-2.ts"), "stream other holds its key"),
    ),
    (
        "the key holds another recording under a unique template: the next life",
        BEFORE_START,
        {
            **NEW_FILE,
            S3_KEY: Finding(Found.OTHER, "another object"),
            AskRecord(SID1): None,
            AskS3(f"{SID1}/cam1.ts", SID1, 1000, 50, False, f"{SID1}/"): Finding(Found.NOTHING, ""),
            AskKey(f"{SID1}/cam1.ts", SID1, False): f"{SID1}/cam1.ts",
            AskCreate(SID1, NEW1): True,
        },
        [
            "AskStat",
            "AskHistory",
            "AskGeneration",
            "AskRecord",
            "AskS3",
            "AskRecord",
            "AskS3",
            "AskKey",
            "AskCreate",
        ],
        started(NEW1, NEW_RECORDING),
    ),
    (
        "the key holds another recording, the template not unique: a suffixed key, checked",
        dataclasses.replace(BEFORE_START, unique_template=False),
        {
            **NEW_FILE,
            S3_KEY: Finding(Found.OTHER, "another object"),
            AskKey(f"{SID0}/cam1.ts", SID0, True): f"{SID0}/cam1-2.ts",
            AskCreate(SID0, NEW0.with_changes(key=f"{SID0}/cam1-2.ts")): True,
        },
        ["AskStat", "AskHistory", "AskGeneration", "AskRecord", "AskS3", "AskKey", "AskCreate"],
        started(NEW0.with_changes(key=f"{SID0}/cam1-2.ts"), "another object"),
    ),
    (
        "keys checked in S3 before use: the key claim is told so",
        dataclasses.replace(BEFORE_START, check_keys=True),
        {
            **NEW_FILE,
            AskS3(f"{SID0}/cam1.ts", SID0, 1000, 50, True, f"{SID0}/"): Finding(Found.NOTHING, ""),
            AskKey(f"{SID0}/cam1.ts", SID0, True): f"{SID0}/cam1.ts",
            **CREATE_NEW0,
        },
        ["AskStat", "AskHistory", "AskGeneration", "AskRecord", "AskS3", "AskKey", "AskCreate"],
        started(NEW0, NEW_RECORDING),
    ),
    (
        "another event created the record meanwhile: nothing",
        WHERE,
        {**NEW_FILE, AskCreate(SID0, NEW0): False},
        ["AskStat", "AskHistory", "AskGeneration", "AskRecord", "AskKey", "AskCreate"],
        Act((), MADE_MEANWHILE),
    ),
    (
        "found by identity under another path, completed: the record follows, unchanged",
        WHERE,
        {**NEW_FILE, AskRecord(SID0): (DONE.with_changes(path=str(OLD)), {})},
        ["AskStat", "AskHistory", "AskGeneration", "AskRecord"],
        Act(
            (MoveRecord(DONE.with_changes(path=str(OLD)), P), Remember(P, LOOK)),
            COMPLETED_UNCHANGED,
        ),
    ),
    (
        "found by identity under another path, its action pending: moved, then the action",
        WHERE,
        {
            **NEW_FILE,
            AskRecord(SID0): (PENDING.with_changes(path=str(OLD), path_ended=True), {}),
        },
        ["AskStat", "AskHistory", "AskGeneration", "AskRecord"],
        Act(
            (
                MoveRecord(PENDING.with_changes(path=str(OLD), path_ended=True), P),
                FinishAfterUpload(PENDING, close_seen=False),
            ),
            PENDING_ACTION,
        ),
    ),
    (
        "found by identity at its own path (the path's entry was lost): remembered",
        WHERE,
        {**NEW_FILE, AskRecord(SID0): (DONE, {})},
        ["AskStat", "AskHistory", "AskGeneration", "AskRecord"],
        Act((Remember(P, LOOK),), COMPLETED_UNCHANGED),
    ),
    (
        "found by identity under another path, live: moved, resumed with its parts",
        WHERE,
        {**NEW_FILE, AskRecord(SID0): (LIVE.with_changes(path=str(OLD)), PARTS)},
        ["AskStat", "AskHistory", "AskGeneration", "AskRecord"],
        Act(
            (MoveRecord(LIVE.with_changes(path=str(OLD)), P), *resumed(LIVE, PARTS, "").commands),
            RESUMED,
        ),
    ),
    (
        "found by identity under another path, grown, its head in its parts: the next generation",
        WHERE,
        {
            **NEW_FILE,
            AskStat(P): GROWN,
            AskRecord(SID0): (NO_HEAD.with_changes(path=str(OLD)), PARTS),
            AskHead(P, 100, 7, 1, INODE): True,
        },
        ["AskStat", "AskHistory", "AskGeneration", "AskRecord", "AskHead"],
        Act(
            (
                MoveRecord(NO_HEAD.with_changes(path=str(OLD)), P),
                *next_started(NO_HEAD, GROWN, GREW).commands,
            ),
            GREW,
        ),
    ),
    (
        "found by identity under another path while its stream runs here: not moved, the "
        "path is the stream's alias (N10)",
        dataclasses.replace(WHERE, running=frozenset({SID0})),
        {**NEW_FILE, AskRecord(SID0): (LIVE.with_changes(path=str(OLD)), {})},
        ["AskStat", "AskHistory", "AskGeneration", "AskRecord"],
        Act((Alias(SID0, P, closed=False),), "a second name of a recording whose stream runs here"),
    ),
    (
        "the id's record is another recording (rewritten, shorter): the next life",
        WHERE,
        {
            **NEW_FILE,
            AskRecord(SID0): (DONE.with_changes(path=str(OLD), final_size=5000), {}),
            AskRecord(SID1): None,
            AskKey(f"{SID1}/cam1.ts", SID1, False): f"{SID1}/cam1.ts",
            AskCreate(SID1, NEW1): True,
        },
        ["AskStat", "AskHistory", "AskGeneration", "AskRecord", "AskRecord", "AskKey", "AskCreate"],
        started(NEW1, BORN_SINCE),
    ),
    (
        "the path's completed recording, unchanged: remembered, statx alone",
        WHERE,
        {AskStat(P): ST, AskHistory(P): (DONE, {})},
        ["AskStat", "AskHistory"],
        Act((Remember(P, LOOK),), COMPLETED_UNCHANGED),
    ),
    (
        "unchanged, its SHA-256 cut short and still unfinished: the action waits (N14)",
        WHERE,
        {
            AskStat(P): ST,
            AskHistory(P): (PENDING.with_changes(sha256_pending=True), {}),
            AskSha256(DONE.stream_id): False,
        },
        ["AskStat", "AskHistory", "AskSha256"],
        Act((), "its SHA-256 is still pending: finished at a later look"),
    ),
    (
        "unchanged, its SHA-256 finished now: then the pending action",
        WHERE,
        {
            AskStat(P): ST,
            AskHistory(P): (PENDING.with_changes(sha256_pending=True), {}),
            AskSha256(DONE.stream_id): True,
        },
        ["AskStat", "AskHistory", "AskSha256"],
        Act(
            (FinishAfterUpload(PENDING.with_changes(sha256_pending=True), close_seen=False),),
            PENDING_ACTION,
        ),
    ),
    (
        "a SHA-256 left pending by a stream that did not complete: not asked for (N14)",
        WHERE,
        {
            AskStat(P): ST,
            AskHistory(P): (
                DONE.with_changes(
                    state=StreamState.ABORTED, end_cause=EndCause.OPERATOR, sha256_pending=True
                ),
                {},
            ),
        },
        ["AskStat", "AskHistory"],
        Act((Remember(P, LOOK),), "aborted by an operator (`tailup abort` sticks)"),
    ),
    (
        "unchanged with its action pending: finished",
        WHERE,
        {AskStat(P): ST, AskHistory(P): (PENDING, {})},
        ["AskStat", "AskHistory"],
        Act((FinishAfterUpload(PENDING, close_seen=False),), PENDING_ACTION),
    ),
    (
        "a shared file's pending action: done by the node that claims it, claim given back",
        SHARED,
        {AskStat(P): ST, AskHistory(P): (SHARED_PENDING, {}), AskClaim(SID0): True},
        ["AskStat", "AskHistory", "AskClaim"],
        Act(
            (FinishAfterUpload(SHARED_PENDING, close_seen=False), Release(SID0)),
            PENDING_ACTION,
        ),
    ),
    (
        "a shared file's pending action another node claimed: not done here",
        SHARED,
        {AskStat(P): ST, AskHistory(P): (SHARED_PENDING, {}), AskClaim(SID0): False},
        ["AskStat", "AskHistory", "AskClaim"],
        Act((LookLater(P, 110.0),), ELSEWHERE),
    ),
    (
        "a shared file's pending action whose stream still runs here: its claim is the stream's",
        dataclasses.replace(SHARED, running=frozenset({SID0})),
        {AskStat(P): ST, AskHistory(P): (SHARED_PENDING, {}), AskClaim(SID0): True},
        ["AskStat", "AskHistory", "AskClaim"],
        Act((FinishAfterUpload(SHARED_PENDING, close_seen=False),), PENDING_ACTION),
    ),
    (
        "aborted by the operator, a pending flag inherited: never acted on (N3)",
        WHERE,
        {
            AskStat(P): ST,
            AskHistory(P): (
                PENDING.with_changes(state=StreamState.ABORTED, end_cause=EndCause.OPERATOR),
                {},
            ),
        },
        ["AskStat", "AskHistory"],
        Act((Remember(P, LOOK),), "aborted by an operator (`tailup abort` sticks)"),
    ),
    (
        "the file of a live stream: resumed",
        WHERE,
        {AskStat(P): ST, AskHistory(P): (LIVE, PARTS)},
        ["AskStat", "AskHistory"],
        resumed(LIVE, PARTS, RESUMED),
    ),
    (
        "the file of a live stream that runs here: nothing",
        dataclasses.replace(WHERE, running=frozenset({SID0})),
        {AskStat(P): ST, AskHistory(P): (LIVE, PARTS)},
        ["AskStat", "AskHistory"],
        Act((), "its stream runs here already"),
    ),
    (
        "a shared folder's live recording another node holds: looked at later",
        SHARED,
        {AskStat(P): ST, AskHistory(P): (LIVE_SHARED, {}), AskClaim(SID0): False},
        ["AskStat", "AskHistory", "AskClaim"],
        Act((LookLater(P, 110.0),), ELSEWHERE),
    ),
    (
        "a shared folder's live recording nobody holds: claimed and resumed",
        SHARED,
        {AskStat(P): ST, AskHistory(P): (LIVE_SHARED, {}), AskClaim(SID0): True},
        ["AskStat", "AskHistory", "AskClaim"],
        resumed(LIVE_SHARED, {}, RESUMED),
    ),
    (
        "a shared file S3 has whole: recorded, and its claim given back (N7)",
        dataclasses.replace(SHARED, started_ns=5_000),
        {
            **NEW_FILE,
            AskRecord(SHARE_SID0): None,
            AskClaim(SHARE_SID0): True,
            AskS3(f"{SHARE_SID0}/cam1.ts", SHARE_SID0, 1000, 50, False, f"{SHARE_SID0}/"): Finding(
                Found.COMPLETED, "whole", sidecar={}
            ),
            AskReserve(f"{SHARE_SID0}/cam1.ts", SHARE_SID0): None,
            AskCreate(SHARE_SID0, SHARED_IN_S3): True,
        },
        [
            "AskStat",
            "AskHistory",
            "AskGeneration",
            "AskRecord",
            "AskClaim",
            "AskS3",
            "AskReserve",
            "AskCreate",
        ],
        Act((in_s3_note(SHARED_IN_S3, "whole"), Release(SHARE_SID0)), "whole"),
    ),
    (
        "a shared file whose record another event made meanwhile: its claim given back (N7)",
        SHARED,
        {
            **NEW_FILE,
            AskRecord(SHARE_SID0): None,
            AskClaim(SHARE_SID0): True,
            AskKey(f"{SHARE_SID0}/cam1.ts", SHARE_SID0, False): f"{SHARE_SID0}/cam1.ts",
            AskCreate(SHARE_SID0, SHARED_NEW): False,
        },
        ["AskStat", "AskHistory", "AskGeneration", "AskRecord", "AskClaim", "AskKey", "AskCreate"],
        Act((Release(SHARE_SID0),), MADE_MEANWHILE),
    ),
    (
        "a new shared file: claimed, started, the claim kept",
        SHARED,
        {
            **NEW_FILE,
            AskRecord(SHARE_SID0): None,
            AskClaim(SHARE_SID0): True,
            AskKey(f"{SHARE_SID0}/cam1.ts", SHARE_SID0, False): f"{SHARE_SID0}/cam1.ts",
            AskCreate(SHARE_SID0, SHARED_NEW): True,
        },
        ["AskStat", "AskHistory", "AskGeneration", "AskRecord", "AskClaim", "AskKey", "AskCreate"],
        started(SHARED_NEW, BORN_SINCE),
    ),
    (
        "a new shared file another node claimed: looked at later",
        SHARED,
        {**NEW_FILE, AskRecord(SHARE_SID0): None, AskClaim(SHARE_SID0): False},
        ["AskStat", "AskHistory", "AskGeneration", "AskRecord", "AskClaim"],
        Act((LookLater(P, 110.0),), ELSEWHERE),
    ),
    (
        "grown after completion, first part the same: the next generation",
        WHERE,
        {
            AskStat(P): GROWN,
            AskHistory(P): (DONE, {}),
            AskHead(P, 100, 7, 1, INODE): True,
            AskGeneration(P, INODE): GEN,
        },
        ["AskStat", "AskHistory", "AskHead", "AskGeneration"],
        next_started(DONE, GROWN, GREW),
    ),
    (
        "grown, first part differs: a new recording",
        WHERE,
        {
            **NEW_FILE,
            AskStat(P): GROWN,
            AskHistory(P): (DONE, {}),
            AskHead(P, 100, 7, 1, INODE): False,
            AskRecord(SID0): (DONE, {}),  # the id's record: judged again, rewritten
            AskRecord(SID1): None,
            AskKey(f"{SID1}/cam1.ts", SID1, False): f"{SID1}/cam1.ts",
            AskCreate(SID1, NEW1): True,
        },
        [
            "AskStat",
            "AskHistory",
            "AskHead",
            "AskGeneration",
            "AskRecord",
            "AskRecord",
            "AskKey",
            "AskCreate",
        ],
        started(NEW1, BORN_SINCE),
    ),
    (
        "its head not recorded: the first part's record is compared",
        WHERE,
        {
            AskStat(P): GROWN,
            AskHistory(P): (NO_HEAD, PARTS),
            AskHead(P, 100, 7, 1, INODE): True,
            AskGeneration(P, INODE): GEN,
        },
        ["AskStat", "AskHistory", "AskHead", "AskGeneration"],
        next_started(NO_HEAD, GROWN, GREW),
    ),
    (
        "grown, nothing uploaded to compare its head with: the next generation, no read",
        WHERE,
        {AskStat(P): GROWN, AskHistory(P): (NO_HEAD, {}), AskGeneration(P, INODE): GEN},
        ["AskStat", "AskHistory", "AskGeneration"],
        next_started(NO_HEAD, GROWN, GREW),
    ),
    (
        "a recorded head, however short, is compared rather than the first part's record",
        WHERE,
        {
            AskStat(P): GROWN,
            AskHistory(P): (HEAD_1, PARTS),
            AskHead(P, 1, 0xABC, 1, INODE): True,
            AskGeneration(P, INODE): GEN,
        },
        ["AskStat", "AskHistory", "AskHead", "AskGeneration"],
        next_started(HEAD_1, GROWN, GREW),
    ),
    (
        "a record from before birth times, grown: the next generation has the file's birth time",
        WHERE,
        {
            AskStat(P): GROWN,
            AskHistory(P): (DONE.with_changes(birth_ns=0), {}),
            AskGeneration(P, INODE): GEN,
            AskHead(P, 100, 7, 1, INODE): True,
        },
        ["AskStat", "AskHistory", "AskGeneration", "AskHead"],
        next_started(DONE.with_changes(birth_ns=0), GROWN, GREW),
    ),
    (
        "no birth time, another inode generation: another recording (S3 asked: born unknown)",
        WHERE,
        {
            AskStat(P): REUSED,
            AskHistory(P): (DONE.with_changes(birth_ns=0), {}),
            AskGeneration(P, INODE): GEN + 1,
            AskRecord(REUSED_SID): None,
            AskS3(f"{REUSED_SID}/cam1.ts", REUSED_SID, 1000, 50, False, f"{REUSED_SID}/"): Finding(
                Found.NOTHING, ""
            ),
            AskKey(f"{REUSED_SID}/cam1.ts", REUSED_SID, False): f"{REUSED_SID}/cam1.ts",
            AskCreate(REUSED_SID, REUSED_NEW): True,
        },
        ["AskStat", "AskHistory", "AskGeneration", "AskRecord", "AskS3", "AskKey", "AskCreate"],
        started(REUSED_NEW, NEW_RECORDING),
    ),
    (
        "no birth time: the inode generation tells the lives apart",
        WHERE,
        {
            AskStat(P): dataclasses.replace(ST, birth_ns=0),
            AskHistory(P): (DONE.with_changes(birth_ns=0), {}),
            AskGeneration(P, INODE): GEN,
        },
        ["AskStat", "AskHistory", "AskGeneration"],
        Act((Remember(P, (INODE, 0, 1000, 50)),), COMPLETED_UNCHANGED),
    ),
    (
        "its upload ended when the file vanished; back with the same head: restarted",
        WHERE,
        {
            AskStat(P): ST,
            AskHistory(P): (GAVE_UP, PARTS),
            AskHead(P, 100, 7, 1, INODE): True,
            AskGeneration(P, INODE): GEN,
        },
        ["AskStat", "AskHistory", "AskHead", "AskGeneration"],
        next_started(GAVE_UP, ST, "the file came back after its upload was given up"),
    ),
]


@pytest.mark.parametrize(
    ("where", "answers", "questions", "act"),
    [pytest.param(w, a, q, act, id=name) for name, w, a, q, act in ROWS],
)
def test_admission(
    where: Where, answers: dict[Ask[Any], object], questions: list[str], act: Act
) -> None:
    asked, got = drive(where, answers)
    assert kinds(asked) == questions
    assert got == act


def test_a_close_event_reaches_the_pending_action() -> None:
    _, act = drive(WHERE, {AskStat(P): ST, AskHistory(P): (PENDING, {})}, writer_closed=True)
    assert act == Act((FinishAfterUpload(PENDING, close_seen=True),), PENDING_ACTION)


def test_past_the_last_life_a_fresh_id() -> None:
    """Every derived id holds another recording: a random id (fresh_id), no S3 lookup."""

    def answer(ask: Ask[Any]) -> object:
        match ask:
            case AskStat():
                return ST
            case AskHistory():
                return NO_HISTORY
            case AskGeneration():
                return GEN
            case AskRecord():
                return (DONE.with_changes(path=str(OLD), inode=INODE + 1), {})
            case AskKey(key, _, _):
                return key
            case AskCreate():
                return True
        raise AssertionError(ask)

    asked, act = drive(WHERE, answer)
    assert kinds(asked).count("AskRecord") == MAX_LIVES
    assert act == started(rec("fresh"), NEW_RECORDING)


def test_claims_come_before_any_write() -> None:
    """A record is never moved (or a generation written) for a file this node then declines."""
    shared_done = DONE.with_changes(path=str(OLD), scope=SHARE)
    _, act = drive(
        SHARED,
        {
            AskStat(P): GROWN,
            AskHistory(P): NO_HISTORY,
            AskGeneration(P, INODE): GEN,
            AskRecord(stream_id_for(SHARE, SEEN, life=0)): (shared_done, {}),
            AskHead(P, 100, 7, 1, INODE): True,
            AskClaim(SID0): False,
        },
    )
    assert act == Act((LookLater(P, 110.0),), ELSEWHERE)


def starts(act: Act) -> list[Start]:
    return [c for c in act.commands if isinstance(c, Start)]


# -- taking over the id of an ended recording S3 holds nothing of (the Redis-loss walk) ----------
# After Redis lost its data a recording is found by asking S3 about its identity's ids life after
# life, up to the first life S3 has nothing of; so a life is spent only once S3 holds something
# at its key, and the next recording of the identity takes over one S3 holds nothing of.

ABORTED_ON_REWRITE = rec(
    state=StreamState.ABORTED,
    end_cause=EndCause.REPLACED,
    generation=2,
    total_bytes_sent=500,
    head_size=100,
    head_crc32=7,
    note="the old recording's",
    error="the old one's reason",
)
KEY0 = f"{SID0}/cam1.ts"
KEY1 = f"{SID1}/cam1.ts"
HELD = AskS3(KEY0, SID0, 1000, 50, True)  # the object checked whatever the template
SHARE_SID1 = stream_id_for(SHARE, SEEN, life=1)
SHARED_NEW1 = rec(SHARE_SID1, scope=SHARE, key="k1")


TAKES_OVER = "; it takes over the id of an ended recording S3 holds nothing of"
REWRITTEN = "its recording ended when the file was rewritten or replaced"


def taken_over(
    why: str,
    *,
    was: str = "aborted",
    was_path: Path = P,
    said: str = ": the old one's reason",
    key: str = KEY0,
    key_pending: bool = False,
) -> Act:
    """This recording written over the ended one's record, under its id, and started: a first
    generation (its completion lands only on a free key, If-None-Match) that keeps nothing of
    the ended recording (its head would misjudge the file) but what `status` says of it."""
    record = rec(
        key=key,
        key_pending=key_pending,
        note=(
            f"took over the id of an earlier recording ({was_path}, {was} with nothing in S3{said})"
        ),
    )
    why = why + TAKES_OVER
    fields = (
        ("stream_id", SID0),
        ("path", str(P)),
        ("key", key),
        ("why", why),
        ("was", was),
        ("was_path", str(was_path)),
    )
    note = Note("stream id taken over from a recording S3 holds nothing of", fields)
    return Act((note, Write(record), Start(record, {}, resumed=False, why=why)), why)


FILE_AT_P: dict[Ask[Any], object] = {
    AskStat(P): ST,
    AskHistory(P): NO_HISTORY,
    AskGeneration(P, INODE): GEN,
}
TakeOverRow = tuple[str, Where, dict[Ask[Any], object], list[str], Act]
TAKE_OVER_ROWS: list[TakeOverRow] = [
    (
        "rewritten after its upload was aborted, S3 holds nothing at its key: the id taken over",
        WHERE,
        {
            AskStat(P): ST,
            AskHistory(P): (ABORTED_ON_REWRITE, {}),
            AskGeneration(P, INODE): GEN,
            AskRecord(SID0): (ABORTED_ON_REWRITE, {}),
            HELD: Finding(Found.NOTHING, ""),
        },
        ["AskStat", "AskHistory", "AskGeneration", "AskRecord", "AskS3"],
        taken_over(REWRITTEN),
    ),
    (
        "rewritten after its upload was aborted, S3 holds an earlier generation: the next life",
        WHERE,
        {
            AskStat(P): ST,
            AskHistory(P): (ABORTED_ON_REWRITE.with_changes(generation=2), {}),
            AskGeneration(P, INODE): GEN,
            AskRecord(SID0): (ABORTED_ON_REWRITE.with_changes(generation=2), {}),
            HELD: Finding(Found.OTHER, "an older version"),
            AskRecord(SID1): None,
            AskKey(KEY1, SID1, False): KEY1,
            AskCreate(SID1, NEW1): True,
        },
        [
            "AskStat",
            "AskHistory",
            "AskGeneration",
            "AskRecord",
            "AskS3",
            "AskRecord",
            "AskKey",
            "AskCreate",
        ],
        started(NEW1, BORN_SINCE),
    ),
    (
        "an open upload at the ended recording's key (its abort failed): the next life",
        WHERE,
        {
            AskStat(P): ST,
            AskHistory(P): (ABORTED_ON_REWRITE, {}),
            AskGeneration(P, INODE): GEN,
            AskRecord(SID0): (ABORTED_ON_REWRITE, {}),
            HELD: Finding(Found.IN_FLIGHT, "an open upload", upload_id="u0"),
            AskRecord(SID1): None,
            AskKey(KEY1, SID1, False): KEY1,
            AskCreate(SID1, NEW1): True,
        },
        [
            "AskStat",
            "AskHistory",
            "AskGeneration",
            "AskRecord",
            "AskS3",
            "AskRecord",
            "AskKey",
            "AskCreate",
        ],
        started(NEW1, BORN_SINCE),
    ),
    (
        "came back rewritten under another name after its upload ended: taken over, here",
        WHERE,
        {
            AskStat(P): ST,
            AskHistory(P): NO_HISTORY,
            AskGeneration(P, INODE): GEN,
            AskRecord(SID0): (
                ABORTED_ON_REWRITE.with_changes(end_cause=EndCause.SOURCE_GONE, path=str(OLD)),
                {},
            ),
            AskHead(P, 100, 7, 1, INODE): False,
            HELD: Finding(Found.NOTHING, ""),
        },
        ["AskStat", "AskHistory", "AskGeneration", "AskRecord", "AskHead", "AskS3"],
        taken_over("came back rewritten from byte 0", was_path=OLD),
    ),
    (
        "taken over under another name: the key its name gives now (the id's own either way)",
        WHERE,
        {
            AskStat(P): ST,
            AskHistory(P): NO_HISTORY,
            AskGeneration(P, INODE): GEN,
            AskRecord(SID0): (
                ABORTED_ON_REWRITE.with_changes(path=str(OLD), key=f"{SID0}/old.ts"),
                {},
            ),
            AskS3(f"{SID0}/old.ts", SID0, 1000, 50, True): Finding(Found.NOTHING, ""),
            AskKey(KEY0, SID0, False): KEY0,
        },
        ["AskStat", "AskHistory", "AskGeneration", "AskRecord", "AskS3", "AskKey"],
        taken_over(REWRITTEN, was_path=OLD),
    ),
    (
        "taken over where the template is not unique: the key reserved for the id, kept",
        dataclasses.replace(WHERE, unique_template=False),
        {
            **FILE_AT_P,
            AskRecord(SID0): (
                ABORTED_ON_REWRITE.with_changes(
                    path=str(OLD), key="x/old.ts", key_pending=True, error=""
                ),
                {},
            ),
            AskS3("x/old.ts", SID0, 1000, 50, True): Finding(Found.NOTHING, ""),
        },
        ["AskStat", "AskHistory", "AskGeneration", "AskRecord", "AskS3"],
        taken_over(REWRITTEN, was_path=OLD, said="", key="x/old.ts", key_pending=True),
    ),
    (
        "taken over under another name, its key checked and taken: claimed by the stream",
        dataclasses.replace(WHERE, check_keys=True),
        {
            **FILE_AT_P,
            AskRecord(SID0): (
                ABORTED_ON_REWRITE.with_changes(path=str(OLD), key=f"{SID0}/old.ts"),
                {},
            ),
            AskS3(f"{SID0}/old.ts", SID0, 1000, 50, True): Finding(Found.NOTHING, ""),
            AskKey(KEY0, SID0, True): None,
        },
        ["AskStat", "AskHistory", "AskGeneration", "AskRecord", "AskS3", "AskKey"],
        taken_over(REWRITTEN, was_path=OLD, key_pending=True),
    ),
    (
        "a completed recording's id is spent without asking S3: the next life",
        WHERE,
        {
            **FILE_AT_P,
            AskRecord(SID0): (DONE.with_changes(final_size=5000), {}),
            AskRecord(SID1): None,
            AskKey(KEY1, SID1, False): KEY1,
            AskCreate(SID1, NEW1): True,
        },
        ["AskStat", "AskHistory", "AskGeneration", "AskRecord", "AskRecord", "AskKey", "AskCreate"],
        started(NEW1, BORN_SINCE),
    ),
    (
        "an ended record whose stream still runs here: never taken over, S3 not asked",
        dataclasses.replace(WHERE, running=frozenset({SID0})),
        {
            **FILE_AT_P,
            AskRecord(SID0): (ABORTED_ON_REWRITE, {}),
            AskRecord(SID1): None,
            AskKey(KEY1, SID1, False): KEY1,
            AskCreate(SID1, NEW1): True,
        },
        ["AskStat", "AskHistory", "AskGeneration", "AskRecord", "AskRecord", "AskKey", "AskCreate"],
        started(NEW1, BORN_SINCE),
    ),
    (
        "a shared folder's ended recording another node claims: looked at later",
        SHARED,
        {
            **FILE_AT_P,
            AskRecord(SHARE_SID0): (
                ABORTED_ON_REWRITE.with_changes(stream_id=SHARE_SID0, scope=SHARE),
                {},
            ),
            AskClaim(SHARE_SID0): False,
        },
        ["AskStat", "AskHistory", "AskGeneration", "AskRecord", "AskClaim"],
        Act((LookLater(P, 110.0),), ELSEWHERE),
    ),
    (
        "a shared folder's ended recording S3 holds something of: its claim given back",
        SHARED,
        {
            **FILE_AT_P,
            AskRecord(SHARE_SID0): (
                ABORTED_ON_REWRITE.with_changes(stream_id=SHARE_SID0, scope=SHARE, key=KEY0),
                {},
            ),
            AskClaim(SHARE_SID0): True,
            AskS3(KEY0, SHARE_SID0, 1000, 50, True): Finding(Found.OTHER, "an older version"),
            AskRecord(SHARE_SID1): None,
            AskClaim(SHARE_SID1): True,
            AskKey(f"{SHARE_SID1}/cam1.ts", SHARE_SID1, False): "k1",
            AskCreate(SHARE_SID1, SHARED_NEW1): True,
        },
        [
            "AskStat",
            "AskHistory",
            "AskGeneration",
            "AskRecord",
            "AskClaim",
            "AskS3",
            "AskRecord",
            "AskClaim",
            "AskKey",
            "AskCreate",
        ],
        Act(
            (
                Start(SHARED_NEW1, {}, resumed=False, why=BORN_SINCE),
                Release(SHARE_SID0),  # the claim of the life it did not take
            ),
            BORN_SINCE,
        ),
    ),
]


@pytest.mark.parametrize(
    ("where", "answers", "questions", "act"),
    [pytest.param(w, a, q, act, id=name) for name, w, a, q, act in TAKE_OVER_ROWS],
)
def test_take_over(
    where: Where, answers: dict[Ask[Any], object], questions: list[str], act: Act
) -> None:
    asked, got = drive(where, answers)
    assert kinds(asked) == questions
    assert got == act


# -- a key given back at an end with nothing in S3 is claimed again (tailup.rules.keyclaims) -----
# An aborted or skipped first generation with nothing in S3 gives its key's claim back (OBS's
# write probe must not push the recording to NAME-2). The two ways its record is used again (the
# next generation of the same file, a new recording taking over its id) claim the key again
# first, where keys are claimed (a template without {stream_id}): still free, it is kept; held by
# another recording now, the first free key; none free, pending (the stream claims one itself).

CLAIMING = dataclasses.replace(WHERE, unique_template=False, check_keys=True)
CAME_BACK = "the file came back after its upload was given up"
SUFFIXED = "cam1-2.ts"
CLOSED_EMPTY = rec(state=StreamState.SKIPPED, final_size=0, final_mtime_ns=40)


def next_started_as(previous: StreamRecord, st: FileStat, why: str, **changes: Any) -> Act:
    """next_started, its record with ``changes`` (another key)."""
    record = next_generation(previous, st, SEEN, NOW).with_changes(**changes)
    return Act((Write(record), Start(record, {}, resumed=False, why=why)), why)


GAVE_UP_AT_P: dict[Ask[Any], object] = {
    AskStat(P): ST,
    AskHistory(P): (GAVE_UP, PARTS),
    AskHead(P, 100, 7, 1, INODE): True,
    AskGeneration(P, INODE): GEN,
}
TAKEN_FROM_OLD: dict[Ask[Any], object] = {
    **FILE_AT_P,
    AskRecord(SID0): (ABORTED_ON_REWRITE.with_changes(path=str(OLD)), {}),
    HELD: Finding(Found.NOTHING, ""),
}
AFTER_RESTART = ["AskStat", "AskHistory", "AskHead", "AskGeneration"]
AFTER_TAKE_OVER = ["AskStat", "AskHistory", "AskGeneration", "AskRecord", "AskS3"]
CLAIMED_AGAIN_ROWS: list[TakeOverRow] = [
    (
        "restarted: its key claimed again, still free",
        CLAIMING,
        {**GAVE_UP_AT_P, AskReserve(KEY0, SID0): None},
        [*AFTER_RESTART, "AskReserve"],
        next_started(GAVE_UP, ST, CAME_BACK),
    ),
    (
        "restarted: its key held by another recording now, the first free one",
        CLAIMING,
        {
            **GAVE_UP_AT_P,
            AskReserve(KEY0, SID0): "another",
            AskKey(KEY0, SID0, True): SUFFIXED,
        },
        [*AFTER_RESTART, "AskReserve", "AskKey"],
        next_started_as(GAVE_UP, ST, CAME_BACK, key=SUFFIXED),
    ),
    (
        "restarted: its key held by another, none free: pending, claimed by the stream",
        CLAIMING,
        {**GAVE_UP_AT_P, AskReserve(KEY0, SID0): "another", AskKey(KEY0, SID0, True): None},
        [*AFTER_RESTART, "AskReserve", "AskKey"],
        next_started_as(GAVE_UP, ST, CAME_BACK, key_pending=True),
    ),
    (
        "restarted where keys are not claimed (--key-conflict overwrite): nothing asked",
        dataclasses.replace(CLAIMING, check_keys=False),
        GAVE_UP_AT_P,
        AFTER_RESTART,
        next_started(GAVE_UP, ST, CAME_BACK),
    ),
    (
        "closed empty, then written: the next generation claims its key again",
        CLAIMING,
        {
            AskStat(P): ST,
            AskHistory(P): (CLOSED_EMPTY, {}),
            AskGeneration(P, INODE): GEN,
            AskReserve(KEY0, SID0): "another",
            AskKey(KEY0, SID0, True): SUFFIXED,
        },
        ["AskStat", "AskHistory", "AskGeneration", "AskReserve", "AskKey"],
        next_started_as(CLOSED_EMPTY, ST, "written to after it was closed empty", key=SUFFIXED),
    ),
    (
        "completed, then grown: its claim was kept (its object is there), nothing asked",
        CLAIMING,
        {AskStat(P): GROWN, AskHistory(P): (NO_HEAD, {}), AskGeneration(P, INODE): GEN},
        ["AskStat", "AskHistory", "AskGeneration"],
        next_started(NO_HEAD, GROWN, GREW),
    ),
    (
        "taken over: the id's key claimed again, still free",
        CLAIMING,
        {**TAKEN_FROM_OLD, AskReserve(KEY0, SID0): None},
        [*AFTER_TAKE_OVER, "AskReserve"],
        taken_over(REWRITTEN, was_path=OLD),
    ),
    (
        "taken over: the id's key held by another recording now, the first free one",
        CLAIMING,
        {
            **TAKEN_FROM_OLD,
            AskReserve(KEY0, SID0): "another",
            AskKey(KEY0, SID0, True): SUFFIXED,
        },
        [*AFTER_TAKE_OVER, "AskReserve", "AskKey"],
        taken_over(REWRITTEN, was_path=OLD, key=SUFFIXED),
    ),
    (
        "taken over: the id's key held by another, none free: pending",
        CLAIMING,
        {**TAKEN_FROM_OLD, AskReserve(KEY0, SID0): "another", AskKey(KEY0, SID0, True): None},
        [*AFTER_TAKE_OVER, "AskReserve", "AskKey"],
        taken_over(REWRITTEN, was_path=OLD, key_pending=True),
    ),
    (
        "taken over, the ended recording's key pending (never claimed): the stream claims it",
        CLAIMING,
        {
            **TAKEN_FROM_OLD,
            AskRecord(SID0): (ABORTED_ON_REWRITE.with_changes(path=str(OLD), key_pending=True), {}),
        },
        AFTER_TAKE_OVER,
        taken_over(REWRITTEN, was_path=OLD, key_pending=True),
    ),
]


@pytest.mark.parametrize(
    ("where", "answers", "questions", "act"),
    [pytest.param(w, a, q, act, id=name) for name, w, a, q, act in CLAIMED_AGAIN_ROWS],
)
def test_a_key_given_back_is_claimed_again(
    where: Where, answers: dict[Ask[Any], object], questions: list[str], act: Act
) -> None:
    asked, got = drive(where, answers)
    assert kinds(asked) == questions
    assert got == act


# -- S3 found the recording under the name it was uploaded as (renamed since) -------------------

OLD_KEY = f"{SID0}/old.ts"  # under S3_KEY's prefix
OLD_KEY_NEW0 = NEW0.with_changes(key=OLD_KEY)


def test_found_whole_under_its_earlier_name_it_is_recorded_at_that_key() -> None:
    asked, act = drive(
        BEFORE_START,
        {
            **FILE_AT_P,
            AskRecord(SID0): None,
            S3_KEY: Finding(Found.COMPLETED, "its metadata.json", sidecar={}, key=OLD_KEY),
            AskReserve(OLD_KEY, SID0): None,
            AskCreate(SID0, completed_from_sidecar(OLD_KEY_NEW0, ST, {}, NOW)): True,
        },
    )
    assert kinds(asked)[-3:] == ["AskS3", "AskReserve", "AskCreate"]
    (note,) = act.commands
    assert isinstance(note, Note) and ("key", OLD_KEY) in note.fields
    assert not starts(act)


def test_an_open_upload_under_its_earlier_name_is_adopted_at_that_key() -> None:
    _, act = drive(
        BEFORE_START,
        {
            **FILE_AT_P,
            AskRecord(SID0): None,
            S3_KEY: Finding(Found.IN_FLIGHT, "an open upload", upload_id="u1", key=OLD_KEY),
            AskReserve(OLD_KEY, SID0): None,
            AskCreate(SID0, OLD_KEY_NEW0.with_changes(upload_id="u1", adopted_upload="u1")): True,
        },
    )
    (start,) = starts(act)
    assert (start.record.key, start.record.upload_id, start.resumed) == (OLD_KEY, "u1", True)


def test_a_close_under_a_second_name_is_the_running_streams() -> None:
    """The writer of a hard-linked file closes it under the second name: the alias carries the
    close, for the stream's close check (N10)."""
    answers = cast(Answers, {**NEW_FILE, AskRecord(SID0): (LIVE.with_changes(path=str(OLD)), {})})
    _, act = drive(
        dataclasses.replace(WHERE, running=frozenset({SID0})), answers, writer_closed=True
    )
    assert act.commands == (Alias(SID0, P, closed=True),)


# -- tailup.rules.names: a recording's other names (hard links N10, renames while down N6) ----

B = ROOT / "b.ts"
C = ROOT / "c.ts"
SAME = FileIdentity(1, INODE, BIRTH)
REBORN = FileIdentity(1, INODE, BIRTH + 1)  # the inode number handed out again
UNTOLD = FileIdentity(1, INODE)  # no birth time, no generation: the number alone

NAME_GONE_ROWS: list[
    tuple[str, dict[Path, FileIdentity | None], int, bool, frozenset[Path], Path | Search | None]
] = [
    ("an alias holds the same life: the stream goes on there", {B: SAME}, 2, False, frozenset(), B),
    ("the first alias in path order, every time", {C: SAME, B: SAME}, 3, False, frozenset(), B),
    (
        "an alias another stream runs at is passed over",
        {B: SAME, C: SAME},
        3,
        False,
        frozenset({B}),
        C,
    ),
    ("an alias now holding nothing: none", {B: None}, 1, False, frozenset(), None),
    (
        "an alias holding a reborn inode: not this recording",
        {B: REBORN},
        1,
        False,
        frozenset(),
        None,
    ),
    ("an inode number alone is not trusted", {B: UNTOLD}, 1, False, frozenset(), None),
    ("no alias, one name: ends at once, no walk", {}, 1, False, frozenset(), None),
    (
        "no alias, but two names at the last look: walk for the other",
        {},
        2,
        False,
        frozenset(),
        SEARCH,
    ),
    ("stale aliases, two names: walk", {B: None}, 2, False, frozenset(), SEARCH),
    ("walked, found", {C: SAME}, 2, True, frozenset(), C),
    ("walked, the other name is outside the watched folders: ends", {}, 2, True, frozenset(), None),
]


@pytest.mark.parametrize(
    ("names", "links", "searched", "taken", "expected"),
    [row[1:] for row in NAME_GONE_ROWS],
    ids=[row[0] for row in NAME_GONE_ROWS],
)
def test_where_a_stream_goes_on_when_its_name_goes(
    names: dict[Path, FileIdentity | None],
    links: int,
    searched: bool,
    taken: frozenset[Path],
    expected: Path | Search | None,
) -> None:
    assert name_gone(SAME, names, links=links, searched=searched, taken=taken) == expected


RESUME_ROWS: list[
    tuple[str, FileIdentity | None, dict[Path, FileIdentity | None] | None, Path | Search]
] = [
    ("its path holds its file: resumed there, no walk", SAME, None, P),
    ("its path holds the inode number, nothing tells more: resumed there", UNTOLD, None, P),
    ("its path holds nothing: walk", None, None, SEARCH),
    ("its path holds another file: walk", REBORN, None, SEARCH),
    ("renamed while down: resumed under the new name (N6)", None, {B: SAME}, B),
    ("replaced at its path, its own file renamed: the new name", REBORN, {P: REBORN, B: SAME}, B),
    ("found nowhere: at its path (ends there as gone)", None, {}, P),
    ("only a reborn inode elsewhere: at its path", None, {B: REBORN}, P),
]


@pytest.mark.parametrize(
    ("at_path", "found", "expected"),
    [row[1:] for row in RESUME_ROWS],
    ids=[row[0] for row in RESUME_ROWS],
)
def test_where_a_live_record_is_resumed_at_start(
    at_path: FileIdentity | None,
    found: dict[Path, FileIdentity | None] | None,
    expected: Path | Search,
) -> None:
    assert resume_at(P, SAME, at_path, found) == expected


def test_a_live_record_is_not_resumed_at_a_name_another_stream_runs_at() -> None:
    assert resume_at(P, SAME, None, {B: SAME, C: SAME}, taken={B}) == C
