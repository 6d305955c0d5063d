"""The resume decision (tailup.resume), table by table: file identity, ListParts reconciliation
with SeaweedFS-style duplicate part numbers, adoption by MD5, and a vanished upload."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest

from tailup.checksums import Checksum, ChecksumAlgorithm
from tailup.integrity import expected_object_checksums, multipart_etag
from tailup.model import PartRecord, StreamRecord
from tailup.plan import MiB, PartPlan, PartRange
from tailup.resume import (
    FileFacts,
    PartDigest,
    Reconciliation,
    Verdict,
    adopt_parts,
    compared_part_range,
    completed_object_matches,
    continue_with,
    expected_range,
    judge_file,
    orphan_uploads,
    reconcile_parts,
    upload_gone,
)
from tailup.s3 import ObjectInfo, UploadedPart, UploadInfo

PLAN = PartPlan(5 * MiB)
P = 5 * MiB  # one full part
RECORD = StreamRecord(
    stream_id="abc123",
    path="/rec/cam.mp4",
    watch_root="/rec",
    bucket="b",
    key="streams/abc123/cam.mp4",
    base_part_size=P,
    upload_id="U1",
    device=7,
    inode=42,
    birth_ns=1_700_000_000_000_000_001,
)
BORN = RECORD.birth_ns


def md5(tag: str) -> str:
    return hashlib.md5(tag.encode()).hexdigest()


def etag(tag: str) -> str:
    """An ETag as S3 returns it (quoted) for content called ``tag``."""
    return f'"{md5(tag)}"'


def part(number: int, *, size: int = P, crc: int = 0, tag: str | None = None) -> PartRecord:
    return PartRecord(number, size, crc or number, etag(tag or f"p{number}"))


def parts(*records: PartRecord) -> dict[int, PartRecord]:
    return {p.number: p for p in records}


def listed(number: int, tag: str, size: int = P) -> UploadedPart:
    return UploadedPart(number, etag(tag), size)


# --- the file ------------------------------------------------------------------------------------

SAME = dict(exists=True, device=7, inode=42)

JUDGE_CASES = [
    # (why, facts, checkpointed parts, verdict or None for "same file", words in the reason)
    ("gone", FileFacts(exists=False), parts(part(1)), Verdict.GONE, "gone"),
    ("other inode", FileFacts(True, 7, 43, 20 * P), parts(part(1)), Verdict.REPLACED, "another"),
    ("other device", FileFacts(True, 8, 42, 20 * P), parts(part(1)), Verdict.REPLACED, "another"),
    ("no parts yet, same inode", FileFacts(True, 7, 42, 3), {}, None, ""),
    # ext4 hands the inode number out again at once: the birth time tells the new file apart.
    (
        "inode number reused while down",
        FileFacts(True, 7, 42, 20 * P, birth_ns=BORN + 1),
        {},
        Verdict.REPLACED,
        "another",
    ),
    ("same birth time", FileFacts(True, 7, 42, 3, birth_ns=BORN), {}, None, ""),
    (
        "shorter than uploaded",
        FileFacts(True, 7, 42, 2 * P - 1, last_part_crc32=None),
        parts(part(1), part(2)),
        Verdict.REPLACED,
        "shorter",
    ),
    (
        "last part changed",
        FileFacts(True, 7, 42, 3 * P, last_part_crc32=999),
        parts(part(1), part(2)),
        Verdict.REPLACED,
        "part 2",
    ),
    (
        "same file, grown",
        FileFacts(True, 7, 42, 9 * P, last_part_crc32=2),
        parts(part(1), part(2)),
        None,
        "",
    ),
    (
        # MKV's header, MOV's and MP4's mdat size: patched at close, all in part 1.
        "part 1 alone is not compared",
        FileFacts(True, 7, 42, 2 * P, last_part_crc32=None),
        parts(part(1)),
        None,
        "",
    ),
    (
        "part 1 alone: still shorter is replaced",
        FileFacts(True, 7, 42, P - 1, last_part_crc32=None),
        parts(part(1)),
        Verdict.REPLACED,
        "shorter",
    ),
    (
        "same file, exactly as long as uploaded",
        FileFacts(True, 7, 42, 2 * P, last_part_crc32=2),
        parts(part(1), part(2)),
        None,
        "",
    ),
    (
        # A header patched at close changes part 1: legitimate, left to the verify pass.
        "only the last part is compared",
        FileFacts(True, 7, 42, 3 * P, last_part_crc32=3),
        parts(part(1, crc=1), part(2, crc=2), part(3, crc=3)),
        None,
        "",
    ),
    (
        "short final part checkpointed at finalize",
        FileFacts(True, 7, 42, P + 10, last_part_crc32=2),
        parts(part(1), part(2, size=10)),
        None,
        "",
    ),
    (
        "out of order: the highest part is the one compared",
        FileFacts(True, 7, 42, 4 * P, last_part_crc32=3),
        parts(part(1), part(3)),
        None,
        "",
    ),
]


@pytest.mark.parametrize(
    ("facts", "checkpointed", "verdict", "words"),
    [case[1:] for case in JUDGE_CASES],
    ids=[case[0] for case in JUDGE_CASES],
)
def test_judge_file(
    facts: FileFacts,
    checkpointed: dict[int, PartRecord],
    verdict: Verdict | None,
    words: str,
) -> None:
    decision = judge_file(RECORD, checkpointed, PLAN, facts)
    if verdict is None:
        assert decision is None
    else:
        assert decision is not None and decision.verdict is verdict
        assert words in decision.reason and RECORD.path in decision.reason


def test_compared_part_is_the_last_one_with_its_recorded_size_never_part_1() -> None:
    assert compared_part_range(PLAN, {}) is None
    assert compared_part_range(PLAN, parts(part(1))) is None
    assert compared_part_range(PLAN, parts(part(1), part(2, size=10))) == PartRange(2, P, P + 10)
    assert compared_part_range(PLAN, parts(part(1), part(3))) == PartRange(3, 2 * P, 3 * P)


# --- expected ranges -----------------------------------------------------------------------------

RANGE_CASES = [
    # (file size, part number, expected range)
    (0, 1, None),
    (P - 1, 1, PartRange(1, 0, P - 1)),  # the short final part
    (P, 1, PartRange(1, 0, P)),
    (P, 2, None),  # not in the file at all
    (2 * P + 3, 2, PartRange(2, P, 2 * P)),
    (2 * P + 3, 3, PartRange(3, 2 * P, 2 * P + 3)),
    (2 * P + 3, 4, None),
    (10 * P, 0, None),
    (10 * P, 10_001, None),
]


@pytest.mark.parametrize(("size", "number", "expected"), RANGE_CASES)
def test_expected_range(size: int, number: int, expected: PartRange | None) -> None:
    assert expected_range(PLAN, size, number) == expected


# --- ListParts reconciliation --------------------------------------------------------------------

RECONCILE_CASES = [
    # (why, checkpointed, listed, file size, keep, forget, {candidate: etags})
    (
        "all confirmed",
        parts(part(1), part(2)),
        [listed(1, "p1"), listed(2, "p2")],
        3 * P,
        (1, 2),
        (),
        {},
    ),
    (
        "acknowledged but not checkpointed: a candidate",
        parts(part(1)),
        [listed(1, "p1"), listed(2, "p2")],
        3 * P,
        (1,),
        (),
        {2: [etag("p2")]},
    ),
    (
        "SeaweedFS lists a part number twice: both versions are candidates",
        parts(part(1)),
        [listed(1, "p1"), listed(2, "old"), listed(2, "new")],
        3 * P,
        (1,),
        (),
        {2: [etag("old"), etag("new")]},
    ),
    (
        "duplicate of a checkpointed part: the recorded ETag is kept",
        parts(part(1)),
        [listed(1, "other"), listed(1, "p1")],
        3 * P,
        (1,),
        (),
        {},
    ),
    (
        "checkpointed but not in S3: forgotten",
        parts(part(1), part(2)),
        [listed(1, "p1")],
        3 * P,
        (1,),
        (2,),
        {},
    ),
    (
        # S3 overwrote it (AWS keeps the latest only): forget ours, check the listed one.
        "checkpointed ETag replaced by another upload",
        parts(part(1), part(2)),
        [listed(1, "p1"), listed(2, "resent")],
        3 * P,
        (1,),
        (2,),
        {2: [etag("resent")]},
    ),
    (
        "listed part of the wrong size is not a candidate",
        parts(part(1)),
        [listed(1, "p1"), listed(2, "short", size=100)],
        3 * P,
        (1,),
        (),
        {},
    ),
    (
        "listed part the file does not reach is not a candidate",
        parts(part(1)),
        [listed(1, "p1"), listed(3, "p3")],
        2 * P + 5,
        (1,),
        (),
        {},
    ),
    (
        "short final part uploaded at finalize, before the crash",
        parts(part(1)),
        [listed(1, "p1"), listed(2, "tail", size=5)],
        P + 5,
        (1,),
        (),
        {2: [etag("tail")]},
    ),
    ("nothing anywhere", {}, [], 0, (), (), {}),
]


@pytest.mark.parametrize(
    ("checkpointed", "listing", "size", "keep", "forget", "candidates"),
    [case[1:] for case in RECONCILE_CASES],
    ids=[case[0] for case in RECONCILE_CASES],
)
def test_reconcile_parts(
    checkpointed: dict[int, PartRecord],
    listing: list[UploadedPart],
    size: int,
    keep: tuple[int, ...],
    forget: tuple[int, ...],
    candidates: dict[int, list[str]],
) -> None:
    result = reconcile_parts(checkpointed, listing, PLAN, size)
    assert result.keep == keep
    assert result.forget == forget
    assert {n: list(etags) for n, (_, etags) in result.candidates.items()} == candidates
    for number, (rng, _) in result.candidates.items():
        assert rng == expected_range(PLAN, size, number)


# --- adoption ------------------------------------------------------------------------------------

R2 = PartRange(2, P, 2 * P)
ADOPT_CASES = [
    # (why, candidates, digests of the file now, adopted (number, etag))
    ("match", {2: (R2, (etag("x"),))}, {2: PartDigest(P, md5("x"), 77)}, [(2, etag("x"))]),
    ("no match", {2: (R2, (etag("x"),))}, {2: PartDigest(P, md5("y"), 77)}, []),
    (
        "the matching one of two versions",
        {2: (R2, (etag("old"), etag("new")))},
        {2: PartDigest(P, md5("new"), 77)},
        [(2, etag("new"))],
    ),
    (
        "file shorter than the part now",
        {2: (R2, (etag("x"),))},
        {2: PartDigest(10, md5("x"), 1)},
        [],
    ),
    ("not read", {2: (R2, (etag("x"),))}, {}, []),
]


@pytest.mark.parametrize(
    ("candidates", "digests", "adopted"),
    [case[1:] for case in ADOPT_CASES],
    ids=[case[0] for case in ADOPT_CASES],
)
def test_adopt_parts(
    candidates: dict[int, tuple[PartRange, tuple[str, ...]]],
    digests: dict[int, PartDigest],
    adopted: list[tuple[int, str]],
) -> None:
    result = adopt_parts(candidates, digests, "2026-01-01T00:00:00+00:00")
    assert [(p.number, p.etag) for p in result] == adopted
    for record in result:
        # The checkpoint gets the file's CRC32 (for change detection) and the part's true size.
        assert record.crc32 == digests[record.number].crc32
        assert record.size == candidates[record.number][0].size


def test_continue_with_carries_forget_and_adopt() -> None:
    reconciliation = Reconciliation(keep=(1,), forget=(3,), candidates={})
    adopted = (PartRecord(2, P, 5, etag("x")),)
    decision = continue_with(reconciliation, adopted, ("U0",))
    assert decision.verdict is Verdict.CONTINUE
    assert decision.forget == (3,) and decision.adopt == adopted and decision.orphans == ("U0",)
    assert "1 checkpointed" in decision.reason and "1 parts S3 had" in decision.reason


# --- a vanished upload ---------------------------------------------------------------------------

DONE = parts(part(1, tag="a"), part(2, size=10, tag="b"))
DONE_ETAG = multipart_etag([etag("a"), etag("b")])
GONE_CASES = [
    # (why, checkpointed, file size, object at the key, verdict)
    ("completed before the crash", DONE, P + 10, ObjectInfo(P + 10, DONE_ETAG), Verdict.CONTINUE),
    ("no object", DONE, P + 10, None, Verdict.RESTART_UPLOAD),
    (
        "an older generation's object",
        DONE,
        P + 10,
        ObjectInfo(P + 10, '"0123-2"'),
        Verdict.RESTART_UPLOAD,
    ),
    ("file longer now", DONE, P + 11, ObjectInfo(P + 10, DONE_ETAG), Verdict.RESTART_UPLOAD),
    (
        "a part of the layout never checkpointed",
        parts(part(1, tag="a")),
        P + 10,
        ObjectInfo(P + 10, DONE_ETAG),
        Verdict.RESTART_UPLOAD,
    ),
    ("empty file", {}, 0, ObjectInfo(0, '""'), Verdict.RESTART_UPLOAD),
]


@pytest.mark.parametrize(
    ("checkpointed", "size", "info", "verdict"),
    [case[1:] for case in GONE_CASES],
    ids=[case[0] for case in GONE_CASES],
)
def test_upload_gone(
    checkpointed: dict[int, PartRecord], size: int, info: ObjectInfo | None, verdict: Verdict
) -> None:
    decision = upload_gone(checkpointed, PLAN, size, info, ("U9",))
    assert decision.verdict is verdict
    assert decision.orphans == ("U9",)
    assert completed_object_matches(checkpointed, PLAN, size, info) is (verdict is Verdict.CONTINUE)


# A server whose ETags are of its own kind: the object's checksum decides, never its size alone.
OPAQUE = '"' + "7" * 40 + '"'
DONE_CRC32 = expected_object_checksums(ChecksumAlgorithm.CRC32, list(DONE.values()))
COMPOSITE = next(value for value in DONE_CRC32 if value.endswith("-2"))
OPAQUE_CASES = [
    # (why, file size, object at the key, the stream's checksum, verdict)
    (
        "its checksum matches",
        P + 10,
        ObjectInfo(P + 10, OPAQUE, Checksum(ChecksumAlgorithm.CRC32, COMPOSITE)),
        ChecksumAlgorithm.CRC32,
        Verdict.CONTINUE,
    ),
    (
        "its checksum differs",
        P + 10,
        ObjectInfo(P + 10, OPAQUE, Checksum(ChecksumAlgorithm.CRC32, "AAAAAA==-2")),
        ChecksumAlgorithm.CRC32,
        Verdict.RESTART_UPLOAD,
    ),
    (
        "no checksum reported: the size proves nothing",
        P + 10,
        ObjectInfo(P + 10, OPAQUE),
        ChecksumAlgorithm.CRC32,
        Verdict.RESTART_UPLOAD,
    ),
    (
        "--checksum none: the size proves nothing",
        P + 10,
        ObjectInfo(P + 10, OPAQUE, Checksum(ChecksumAlgorithm.CRC32, COMPOSITE)),
        ChecksumAlgorithm.NONE,
        Verdict.RESTART_UPLOAD,
    ),
]


@pytest.mark.parametrize(
    ("size", "info", "algorithm", "verdict"),
    [case[1:] for case in OPAQUE_CASES],
    ids=[case[0] for case in OPAQUE_CASES],
)
def test_upload_gone_on_a_server_with_etags_of_its_own(
    size: int, info: ObjectInfo, algorithm: ChecksumAlgorithm, verdict: Verdict
) -> None:
    assert upload_gone(DONE, PLAN, size, info, (), algorithm).verdict is verdict


# --- orphan uploads ------------------------------------------------------------------------------

WHEN = datetime(2026, 1, 1, tzinfo=UTC)


def test_orphans_are_other_uploads_of_the_streams_own_key() -> None:
    uploads = [
        UploadInfo(RECORD.key, "U1", WHEN),  # the checkpointed one
        UploadInfo(RECORD.key, "U0", WHEN),  # created, then killed before the checkpoint
        UploadInfo(RECORD.key + ".metadata.json", "U7", WHEN),  # prefix match, other key
        UploadInfo("streams/other/cam.mp4", "U8", WHEN),
    ]
    assert orphan_uploads(RECORD, uploads) == ("U0",)


def test_no_orphans_claimed_when_the_key_may_be_shared() -> None:
    shared = RECORD.with_changes(key="cams/cam.mp4")  # a {relpath} template: not ours alone
    assert orphan_uploads(shared, [UploadInfo("cams/cam.mp4", "U0", WHEN)]) == ()
