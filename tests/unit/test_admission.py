"""tailup.rules.admission: every branch of "what now?" for a file, as a row: the facts (canned
answers to the questions the core asks), the questions asked in order, and the final act. No
Redis, no S3, no files. The list of questions pins the cost contracts: a new recording born
since the start costs no S3 request; statx alone unless only the inode generation can tell."""

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
from tailup.rules.records import Placement, RecordDefaults, new_record
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
    """Feed canned answers until the core acts; the questions it asked, in order."""
    facts = Facts(path, writer_closed)
    asked: list[Ask[Any]] = []
    for _ in range(10 * MAX_LIVES):
        step = decide(facts, where)
        if isinstance(step, Act):
            assert len(set(asked)) == len(asked), f"a question asked twice: {asked}"
            return asked, step
        asked.append(step)
        answer = answers(step) if callable(answers) else answers[step]
        facts = facts.answered(step, answer)
    raise AssertionError(f"no act after {len(asked)} questions: {asked[-5:]}")


def kinds(asked: list[Ask[Any]]) -> list[str]:
    return [type(a).__name__ for a in asked]


def starts(act: Act) -> list[Start]:
    return [c for c in act.commands if isinstance(c, Start)]


NEW_FILE = {
    AskStat(P): ST,
    AskHistory(P): NO_HISTORY,
    AskGeneration(P, INODE): GEN,
    AskRecord(SID0): None,
    AskKey(f"{SID0}/cam1.ts", SID0, False): f"{SID0}/cam1.ts",
    AskCreate(SID0, NEW0): True,
}
S3_KEY = AskS3(f"{SID0}/cam1.ts", SID0, 1000, 50, False, f"{SID0}/")


# -- rows: (name, where, answers, questions asked, check of the act) --------------------------


def _new_started(act: Act) -> None:
    (start,) = starts(act)
    assert start.record.stream_id == SID0 and not start.resumed and start.parts == {}
    assert (start.record.inode_generation, start.record.birth_ns) == (GEN, BIRTH)


def _nothing(act: Act) -> None:
    assert act.commands == ()


def _alias_only(act: Act) -> None:
    assert act.commands == (Alias(SID0, P, closed=False),)


ROWS: list[tuple[str, Where, dict[Ask[Any], object], list[str], Callable[[Act], None]]] = [
    (
        "another node's file is looked at later, without a stat",
        dataclasses.replace(WHERE, elsewhere_until=101.0),
        {},
        [],
        _nothing,
    ),
    (
        "a file that cannot be read is not uploaded, said why",
        WHERE,
        {AskStat(P): Unreadable("permission denied")},
        ["AskStat"],
        lambda act: (
            isinstance(act.commands[0], Note) and act.commands[0].warn and "permission" in act.why
        ),
    ),
    (
        "judged unchanged already: one stat, nothing loaded",
        dataclasses.replace(WHERE, unchanged=LOOK),
        {AskStat(P): ST},
        ["AskStat"],
        lambda act: act.commands == (Remember(P, LOOK),),
    ),
    (
        "a new file born since the start: no S3 request",
        WHERE,
        NEW_FILE,
        ["AskStat", "AskHistory", "AskGeneration", "AskRecord", "AskKey", "AskCreate"],
        lambda act: _new_started(act) or act.why == "a file born since tailup started",
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
        lambda act: [s.record.key_pending for s in starts(act)] == [True],
    ),
    (
        "a new file born before the start: S3 asked first, has nothing",
        BEFORE_START,
        {**NEW_FILE, S3_KEY: Finding(Found.NOTHING, "")},
        ["AskStat", "AskHistory", "AskGeneration", "AskRecord", "AskS3", "AskKey", "AskCreate"],
        lambda act: _new_started(act) or act.why == "a new recording",
    ),
    (
        "S3 has it whole: recorded as completed, not uploaded",
        BEFORE_START,
        {
            **NEW_FILE,
            S3_KEY: Finding(Found.COMPLETED, "its metadata.json", sidecar={"generation": 2}),
            AskReserve(f"{SID0}/cam1.ts", SID0): None,
        },
        ["AskStat", "AskHistory", "AskGeneration", "AskRecord", "AskS3", "AskReserve", "AskCreate"],
        lambda act: not starts(act) and isinstance(act.commands[0], Note),
    ),
    (
        "S3 has it whole but another stream reserved its key: a key of its own",
        BEFORE_START,
        {
            **NEW_FILE,
            S3_KEY: Finding(Found.COMPLETED, "its metadata.json", sidecar={}),
            AskReserve(f"{SID0}/cam1.ts", SID0): "other",
            AskKey(f"{SID0}/cam1.ts", SID0, True): f"{SID0}/cam1-2.ts",
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
        lambda act: starts(act)[0].record.key == f"{SID0}/cam1-2.ts",
    ),
    (
        "an open upload in S3 is adopted",
        BEFORE_START,
        {
            **NEW_FILE,
            S3_KEY: Finding(Found.IN_FLIGHT, "an open upload", upload_id="u1"),
            AskReserve(f"{SID0}/cam1.ts", SID0): None,
        },
        ["AskStat", "AskHistory", "AskGeneration", "AskRecord", "AskS3", "AskReserve", "AskCreate"],
        lambda act: starts(act)[0].resumed and starts(act)[0].record.upload_id == "u1",
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
            AskCreate(SID1, NEW0): True,
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
        lambda act: starts(act)[0].record.stream_id == SID1,
    ),
    (
        "another event created the record meanwhile: nothing",
        WHERE,
        {**NEW_FILE, AskCreate(SID0, NEW0): False},
        ["AskStat", "AskHistory", "AskGeneration", "AskRecord", "AskKey", "AskCreate"],
        _nothing,
    ),
    (
        "found by identity under another path, completed: the record follows, unchanged",
        WHERE,
        {**NEW_FILE, AskRecord(SID0): (DONE.with_changes(path=str(OLD)), {})},
        ["AskStat", "AskHistory", "AskGeneration", "AskRecord"],
        lambda act: (
            isinstance(act.commands[0], MoveRecord)
            and act.commands[0].new == P
            and act.commands[1] == Remember(P, LOOK)
        ),
    ),
    (
        "found by identity under another path while its stream runs here: not moved, the "
        "path is the stream's alias (N10)",
        dataclasses.replace(WHERE, running=frozenset({SID0})),
        {**NEW_FILE, AskRecord(SID0): (LIVE.with_changes(path=str(OLD)), {})},
        ["AskStat", "AskHistory", "AskGeneration", "AskRecord"],
        _alias_only,
    ),
    (
        "the id's record is another recording (rewritten, shorter): the next life",
        WHERE,
        {
            **NEW_FILE,
            AskRecord(SID0): (DONE.with_changes(path=str(OLD), final_size=5000), {}),
            AskRecord(SID1): None,
            AskKey(f"{SID1}/cam1.ts", SID1, False): f"{SID1}/cam1.ts",
            AskCreate(SID1, NEW0): True,
        },
        ["AskStat", "AskHistory", "AskGeneration", "AskRecord", "AskRecord", "AskKey", "AskCreate"],
        lambda act: starts(act)[0].record.stream_id == SID1,
    ),
    (
        "the path's completed recording, unchanged: remembered, statx alone",
        WHERE,
        {AskStat(P): ST, AskHistory(P): (DONE, {})},
        ["AskStat", "AskHistory"],
        lambda act: act.commands == (Remember(P, LOOK),),
    ),
    (
        "unchanged, its SHA-256 cut short and still unfinished: the action waits (N14)",
        WHERE,
        {
            AskStat(P): ST,
            AskHistory(P): (DONE.with_changes(after_upload_pending=True, sha256_pending=True), {}),
            AskSha256(DONE.stream_id): False,
        },
        ["AskStat", "AskHistory", "AskSha256"],
        lambda act: act.commands == () and "SHA-256" in act.why,
    ),
    (
        "unchanged, its SHA-256 finished now: then the pending action",
        WHERE,
        {
            AskStat(P): ST,
            AskHistory(P): (DONE.with_changes(after_upload_pending=True, sha256_pending=True), {}),
            AskSha256(DONE.stream_id): True,
        },
        ["AskStat", "AskHistory", "AskSha256"],
        lambda act: isinstance(act.commands[0], FinishAfterUpload),
    ),
    (
        "unchanged with its action pending: finished",
        WHERE,
        {AskStat(P): ST, AskHistory(P): (DONE.with_changes(after_upload_pending=True), {})},
        ["AskStat", "AskHistory"],
        lambda act: (
            isinstance(act.commands[0], FinishAfterUpload) and not act.commands[0].close_seen
        ),
    ),
    (
        "a shared file's pending action: done by the node that claims it, claim given back",
        SHARED,
        {
            AskStat(P): ST,
            AskHistory(P): (DONE.with_changes(after_upload_pending=True, scope=SHARE), {}),
            AskClaim(SID0): True,
        },
        ["AskStat", "AskHistory", "AskClaim"],
        lambda act: (
            isinstance(act.commands[0], FinishAfterUpload) and act.commands[1] == Release(SID0)
        ),
    ),
    (
        "a shared file's pending action another node claimed: not done here",
        SHARED,
        {
            AskStat(P): ST,
            AskHistory(P): (DONE.with_changes(after_upload_pending=True, scope=SHARE), {}),
            AskClaim(SID0): False,
        },
        ["AskStat", "AskHistory", "AskClaim"],
        lambda act: act.commands == (LookLater(P, 110.0),),
    ),
    (
        "aborted by the operator, a pending flag inherited: never acted on (N3)",
        WHERE,
        {
            AskStat(P): ST,
            AskHistory(P): (
                DONE.with_changes(
                    state=StreamState.ABORTED,
                    end_cause=EndCause.OPERATOR,
                    after_upload_pending=True,
                ),
                {},
            ),
        },
        ["AskStat", "AskHistory"],
        lambda act: act.commands == (Remember(P, LOOK),),
    ),
    (
        "the file of a live stream: resumed",
        WHERE,
        {AskStat(P): ST, AskHistory(P): (LIVE, PARTS)},
        ["AskStat", "AskHistory"],
        lambda act: starts(act)[0].resumed and starts(act)[0].parts == PARTS,
    ),
    (
        "the file of a live stream that runs here: nothing",
        dataclasses.replace(WHERE, running=frozenset({SID0})),
        {AskStat(P): ST, AskHistory(P): (LIVE, PARTS)},
        ["AskStat", "AskHistory"],
        _nothing,
    ),
    (
        "a shared folder's live recording another node holds: looked at later",
        SHARED,
        {
            AskStat(P): ST,
            AskHistory(P): (LIVE.with_changes(scope=SHARE), {}),
            AskClaim(SID0): False,
        },
        ["AskStat", "AskHistory", "AskClaim"],
        lambda act: act.commands == (LookLater(P, 110.0),),
    ),
    (
        "a shared folder's live recording nobody holds: claimed and resumed",
        SHARED,
        {AskStat(P): ST, AskHistory(P): (LIVE.with_changes(scope=SHARE), {}), AskClaim(SID0): True},
        ["AskStat", "AskHistory", "AskClaim"],
        lambda act: starts(act)[0].resumed,
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
            AskCreate(SHARE_SID0, NEW0): True,
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
        lambda act: not starts(act) and act.commands[-1] == Release(SHARE_SID0),
    ),
    (
        "a shared file whose record another event made meanwhile: its claim given back (N7)",
        SHARED,
        {
            **NEW_FILE,
            AskRecord(SHARE_SID0): None,
            AskClaim(SHARE_SID0): True,
            AskKey(f"{SHARE_SID0}/cam1.ts", SHARE_SID0, False): f"{SHARE_SID0}/cam1.ts",
            AskCreate(SHARE_SID0, NEW0): False,
        },
        ["AskStat", "AskHistory", "AskGeneration", "AskRecord", "AskClaim", "AskKey", "AskCreate"],
        lambda act: act.commands == (Release(SHARE_SID0),),
    ),
    (
        "a new shared file: claimed, started, the claim kept",
        SHARED,
        {
            **NEW_FILE,
            AskRecord(SHARE_SID0): None,
            AskClaim(SHARE_SID0): True,
            AskKey(f"{SHARE_SID0}/cam1.ts", SHARE_SID0, False): f"{SHARE_SID0}/cam1.ts",
            AskCreate(SHARE_SID0, NEW0): True,
        },
        ["AskStat", "AskHistory", "AskGeneration", "AskRecord", "AskClaim", "AskKey", "AskCreate"],
        lambda act: [type(c) for c in act.commands] == [Start],
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
        lambda act: (
            isinstance(act.commands[0], Write)
            and act.commands[0].record.generation == 2
            and starts(act)[0].record is act.commands[0].record
        ),
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
            AskCreate(SID1, NEW0): True,
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
        lambda act: starts(act)[0].record.stream_id == SID1,
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
        lambda act: isinstance(act.commands[0], Remember),
    ),
    (
        "its upload ended when the file vanished; back with the same head: restarted",
        WHERE,
        {
            AskStat(P): ST,
            AskHistory(P): (
                LIVE.with_changes(state=StreamState.ABORTED, end_cause=EndCause.SOURCE_GONE),
                PARTS,
            ),
            AskHead(P, 100, 7, 1, INODE): True,
            AskGeneration(P, INODE): GEN,
        },
        ["AskStat", "AskHistory", "AskHead", "AskGeneration"],
        lambda act: isinstance(act.commands[0], Write) and len(starts(act)) == 1,
    ),
]


@pytest.mark.parametrize(
    ("where", "answers", "questions", "check"),
    [pytest.param(w, a, q, c, id=name) for name, w, a, q, c in ROWS],
)
def test_admission(
    where: Where,
    answers: dict[Ask[Any], object],
    questions: list[str],
    check: Callable[[Act], object],
) -> None:
    asked, act = drive(where, answers)
    assert kinds(asked) == questions
    assert check(act) is not False, act


def test_a_close_event_reaches_the_pending_action() -> None:
    _, act = drive(
        WHERE,
        {AskStat(P): ST, AskHistory(P): (DONE.with_changes(after_upload_pending=True), {})},
        writer_closed=True,
    )
    (finish,) = act.commands
    assert isinstance(finish, FinishAfterUpload) and finish.close_seen


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
    assert starts(act)[0].record.stream_id == "fresh"


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
    assert [type(c) for c in act.commands] == [LookLater]


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


def _taken_over(act: Act, *, path: Path = P) -> None:
    note, write, start = act.commands
    assert isinstance(note, Note) and isinstance(write, Write) and isinstance(start, Start)
    record = write.record
    assert start.record is record and not start.resumed and start.parts == {}
    # A first generation: its completion lands only on a free key (If-None-Match).
    assert (record.stream_id, record.key, record.generation) == (SID0, KEY0, 1)
    assert record.state is StreamState.UPLOADING and record.path == str(path)
    # Nothing of the ended recording describes this one (its head would misjudge the file).
    assert (record.head_size, record.total_bytes_sent) == (0, 0)
    # What `status` keeps of the recording whose record this one is written over.
    assert record.note.startswith("took over the id of an earlier recording (")
    assert "aborted with nothing in S3: the old one's reason)" in record.note
    assert record.end_cause is EndCause.NONE and not record.path_ended


FILE_AT_P: dict[Ask[Any], object] = {
    AskStat(P): ST,
    AskHistory(P): NO_HISTORY,
    AskGeneration(P, INODE): GEN,
}
TakeOverRow = tuple[str, Where, dict[Ask[Any], object], list[str], Callable[[Act], object]]
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
        _taken_over,
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
            AskCreate(SID1, NEW0): True,
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
        lambda act: [s.record.stream_id for s in starts(act)] == [SID1],
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
            AskCreate(SID1, NEW0): True,
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
        lambda act: [s.record.stream_id for s in starts(act)] == [SID1],
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
        _taken_over,
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
        _taken_over,
    ),
    (
        "a completed recording's id is spent without asking S3: the next life",
        WHERE,
        {
            **FILE_AT_P,
            AskRecord(SID0): (DONE.with_changes(final_size=5000), {}),
            AskRecord(SID1): None,
            AskKey(KEY1, SID1, False): KEY1,
            AskCreate(SID1, NEW0): True,
        },
        ["AskStat", "AskHistory", "AskGeneration", "AskRecord", "AskRecord", "AskKey", "AskCreate"],
        lambda act: [s.record.stream_id for s in starts(act)] == [SID1],
    ),
    (
        "an ended record whose stream still runs here: never taken over, S3 not asked",
        dataclasses.replace(WHERE, running=frozenset({SID0})),
        {
            **FILE_AT_P,
            AskRecord(SID0): (ABORTED_ON_REWRITE, {}),
            AskRecord(SID1): None,
            AskKey(KEY1, SID1, False): KEY1,
            AskCreate(SID1, NEW0): True,
        },
        ["AskStat", "AskHistory", "AskGeneration", "AskRecord", "AskRecord", "AskKey", "AskCreate"],
        lambda act: [s.record.stream_id for s in starts(act)] == [SID1],
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
        lambda act: act.commands == (LookLater(P, 110.0),),
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
            AskRecord(stream_id_for(SHARE, SEEN, life=1)): None,
            AskClaim(stream_id_for(SHARE, SEEN, life=1)): True,
            AskKey(
                f"{stream_id_for(SHARE, SEEN, life=1)}/cam1.ts",
                stream_id_for(SHARE, SEEN, life=1),
                False,
            ): "k1",
            AskCreate(stream_id_for(SHARE, SEEN, life=1), NEW0): True,
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
        lambda act: (
            [s.record.stream_id for s in starts(act)] == [stream_id_for(SHARE, SEEN, life=1)]
            and act.commands[-1] == Release(SHARE_SID0)
        ),
    ),
]


@pytest.mark.parametrize(
    ("where", "answers", "questions", "check"),
    [pytest.param(w, a, q, c, id=name) for name, w, a, q, c in TAKE_OVER_ROWS],
)
def test_take_over(
    where: Where,
    answers: dict[Ask[Any], object],
    questions: list[str],
    check: Callable[[Act], object],
) -> None:
    asked, act = drive(where, answers)
    assert kinds(asked) == questions
    assert check(act) is not False, act


# -- S3 found the recording under the name it was uploaded as (renamed since) -------------------

OLD_KEY = f"{SID0}/old.ts"  # under S3_KEY's prefix


def test_found_whole_under_its_earlier_name_it_is_recorded_at_that_key() -> None:
    asked, act = drive(
        BEFORE_START,
        {
            **FILE_AT_P,
            AskRecord(SID0): None,
            S3_KEY: Finding(Found.COMPLETED, "its metadata.json", sidecar={}, key=OLD_KEY),
            AskReserve(OLD_KEY, SID0): None,
            AskCreate(SID0, NEW0): True,
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
            AskCreate(SID0, NEW0): True,
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
