"""Checksums, the multipart ETag and the verify-before-complete decisions."""

from __future__ import annotations

import base64
import hashlib
import random
import zlib

import pytest

from tailup.checksums import Checksum, ChecksumAlgorithm
from tailup.integrity import (
    EtagForm,
    PartAction,
    VerifiedBy,
    check_completed_object,
    completion_parts,
    crc32_header,
    crc32_of,
    etag_form,
    expected_multipart_etag,
    expected_object_checksums,
    multipart_etag,
    normalize_etag,
    part_action,
    parts_past_end,
    put_reply_proves,
    verification_method,
)
from tailup.model import PartRecord
from tailup.plan import PartRange

MIB = 1024 * 1024


@pytest.mark.parametrize(
    ("data", "crc", "header"),
    [
        # Known vectors: the CRC-32 check value of "123456789" is 0xCBF43926.
        (b"hello", 0x3610A686, base64.b64encode(bytes([0x36, 0x10, 0xA6, 0x86])).decode()),
        (b"123456789", 0xCBF43926, base64.b64encode(bytes([0xCB, 0xF4, 0x39, 0x26])).decode()),
        (b"", 0, "AAAAAA=="),
    ],
)
def test_crc32_and_its_header(data: bytes, crc: int, header: str) -> None:
    assert crc32_of(data) == crc
    assert crc32_of(memoryview(data)) == crc
    assert crc32_header(crc) == header


def test_crc32_header_of_hello_literal() -> None:
    assert crc32_header(0x3610A686) == "NhCmhg=="


@pytest.mark.parametrize("crc", [0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF])
def test_crc32_header_is_four_big_endian_bytes(crc: int) -> None:
    raw = base64.b64decode(crc32_header(crc))
    assert len(raw) == 4
    assert int.from_bytes(raw, "big") == crc


def test_crc32_is_unsigned() -> None:
    data = b"\xff" * 100
    assert crc32_of(data) == zlib.crc32(data) % 2**32
    assert crc32_of(data) >= 0


def s3_part_etag(data: bytes) -> str:
    return '"' + hashlib.md5(data).hexdigest() + '"'


def s3_multipart_etag(parts: list[bytes]) -> str:
    """AWS's rule, written out: md5 over the concatenated binary md5s, then -<count>."""
    joined = b""
    for part in parts:
        joined += hashlib.md5(part).digest()
    return '"' + hashlib.md5(joined).hexdigest() + f'-{len(parts)}"'


@pytest.mark.parametrize("count", [1, 2, 3, 7])
@pytest.mark.parametrize("quoted", [True, False])
def test_multipart_etag_is_md5_of_md5s(count: int, quoted: bool) -> None:
    rng = random.Random(count)
    parts = [rng.randbytes(rng.randrange(1, 4096)) for _ in range(count)]
    etags = [s3_part_etag(p) for p in parts]
    if not quoted:
        etags = [e.strip('"') for e in etags]
    assert multipart_etag(etags) == s3_multipart_etag(parts)


def test_multipart_etag_depends_on_part_order() -> None:
    etags = [s3_part_etag(b"a"), s3_part_etag(b"b")]
    assert multipart_etag(etags) != multipart_etag(etags[::-1])


@pytest.mark.parametrize(
    ("etag", "expected"),
    [('"abc"', "abc"), ("abc", "abc"), (' "abc-2" ', "abc-2"), ('"abc', "abc")],
)
def test_normalize_etag(etag: str, expected: str) -> None:
    assert normalize_etag(etag) == expected


# -- part_action --

RANGE = PartRange(3, 16 * MIB, 24 * MIB)
CRC = 0x1234ABCD


@pytest.mark.parametrize(
    ("recorded", "observed_crc", "expected"),
    [
        (None, CRC, PartAction.UPLOAD),  # never uploaded
        (PartRecord(3, 8 * MIB, CRC, '"e"'), CRC, PartAction.KEEP),  # same size, same bytes
        (PartRecord(3, 8 * MIB, CRC, '"e"'), CRC ^ 1, PartAction.UPLOAD),  # bytes changed
        (PartRecord(3, 8 * MIB, CRC, '"e"'), 0, PartAction.UPLOAD),
        (PartRecord(3, 8 * MIB - 1, CRC, '"e"'), CRC, PartAction.UPLOAD),  # was a short tail
        (PartRecord(3, 8 * MIB + 1, CRC, '"e"'), CRC, PartAction.UPLOAD),
        (PartRecord(3, 1, CRC, '"e"'), CRC, PartAction.UPLOAD),
    ],
)
def test_part_action(recorded: PartRecord | None, observed_crc: int, expected: PartAction) -> None:
    assert part_action(recorded, RANGE, observed_crc) is expected


def test_part_action_uses_the_range_size_of_a_short_final_part() -> None:
    tail = PartRange(4, 24 * MIB, 24 * MIB + 100)
    assert part_action(PartRecord(4, 100, CRC, '"e"'), tail, CRC) is PartAction.KEEP
    assert part_action(PartRecord(4, 8 * MIB, CRC, '"e"'), tail, CRC) is PartAction.UPLOAD


# -- parts_past_end --


def layout_of(count: int) -> list[PartRange]:
    return [PartRange(n, (n - 1) * 5 * MIB, n * 5 * MIB) for n in range(1, count + 1)]


@pytest.mark.parametrize(
    ("recorded", "layout_parts", "expected"),
    [
        ({1, 2, 3}, 3, []),
        ({1, 2, 3, 4}, 3, [4]),
        ({5, 1, 4, 2}, 2, [4, 5]),  # sorted
        ({1, 2}, 0, [1, 2]),  # the file shrank to nothing
        (set(), 3, []),
        ({1}, 5, []),
    ],
)
def test_parts_past_end(recorded: set[int], layout_parts: int, expected: list[int]) -> None:
    assert parts_past_end(recorded, layout_of(layout_parts)) == expected


# -- check_completed_object --


@pytest.mark.parametrize(
    ("expected_size", "expected_etag", "actual_size", "actual_etag", "ok", "mentions"),
    [
        (100, '"abc-2"', 100, '"abc-2"', True, []),
        (100, '"abc-2"', 100, "abc-2", True, []),  # quotes do not matter
        (100, "abc-2", 100, '"abc-2"', True, []),
        (100, '"abc-2"', 99, '"abc-2"', False, ["size", "99", "100"]),
        (100, '"abc-2"', 100, '"abd-2"', False, ["ETag", "abd-2"]),
        (100, '"abc-2"', 100, "abc-3", False, ["ETag"]),
        (100, '"abc-2"', 101, '"zzz-1"', False, ["size", "ETag"]),
    ],
)
def test_check_completed_object(
    expected_size: int,
    expected_etag: str,
    actual_size: int,
    actual_etag: str,
    ok: bool,
    mentions: list[str],
) -> None:
    check = check_completed_object(
        expected_size=expected_size,
        expected_etag=expected_etag,
        actual_size=actual_size,
        actual_etag=actual_etag,
    )
    assert check.ok is ok
    assert bool(check.problems) is not ok
    text = " ".join(check.problems)
    for word in mentions:
        assert word in text
    if "size" in mentions and "ETag" in mentions:
        assert len(check.problems) == 2


# -- completion_parts --


def records_for(numbers: list[int]) -> dict[int, PartRecord]:
    return {n: PartRecord(n, 5 * MIB, n, f'"etag-{n}"') for n in numbers}


@pytest.mark.parametrize(
    ("layout_parts", "recorded", "missing"),
    [(3, [1, 3], "2"), (3, [2, 3], "1"), (3, [1, 2], "3"), (2, [], "1")],
)
def test_completion_parts_refuses_a_missing_part(
    layout_parts: int, recorded: list[int], missing: str
) -> None:
    with pytest.raises(ValueError, match=missing):
        completion_parts(layout_of(layout_parts), records_for(recorded))


def test_completion_parts_in_layout_order_ignoring_extra_records() -> None:
    records = records_for([4, 2, 1, 3, 9])  # 4 and 9 are past the end of a 3-part layout
    got = completion_parts(layout_of(3), records)
    assert [p.number for p in got] == [1, 2, 3]
    assert [p.etag for p in got] == ['"etag-1"', '"etag-2"', '"etag-3"']


def test_completion_parts_of_an_empty_layout() -> None:
    assert completion_parts([], records_for([1])) == []


# -- when the server's ETags are of another kind: the fallback --

A = ChecksumAlgorithm
MD5_A = '"' + hashlib.md5(b"a").hexdigest() + '"'
MD5_B = '"' + hashlib.md5(b"b").hexdigest() + '"'
OURS = multipart_etag([MD5_A, MD5_B])  # what S3 makes of those two parts
OTHER_MULTIPART = '"' + "0" * 32 + '-2"'
OPAQUE = '"' + "9" * 40 + '"'  # 40 hex digits: no MD5 form at all
CRC32_REPORTED = Checksum(A.CRC32, "98jbaQ==-2")


@pytest.mark.parametrize(
    ("etag", "form"),
    [
        (MD5_A, EtagForm.MD5),
        (OURS, EtagForm.MD5_OF_MD5S),
        ("0123456789ABCDEF0123456789abcdef-10000", EtagForm.MD5_OF_MD5S),
        (OPAQUE, EtagForm.OTHER),
        ('"' + "0" * 32 + '-0"', EtagForm.OTHER),
        ('"' + "0" * 32 + '-"', EtagForm.OTHER),
        ('"' + "g" * 32 + '"', EtagForm.OTHER),
        ('"W/abc"', EtagForm.OTHER),
        ("", EtagForm.OTHER),
    ],
)
def test_etag_form(etag: str, form: EtagForm) -> None:
    assert etag_form(etag) is form


@pytest.mark.parametrize(
    ("part_etags", "expected"),
    [
        ([MD5_A, MD5_B], OURS),
        ([MD5_A, "a-kms-etag"], ""),  # a part ETag that is no MD5: nothing to expect
        ([], ""),
    ],
)
def test_expected_multipart_etag(part_etags: list[str], expected: str) -> None:
    assert expected_multipart_etag(part_etags) == expected


@pytest.mark.parametrize(
    ("expected_etag", "object_etag", "reported", "algorithm", "method"),
    [
        # S3's own kind of ETag: compared, whether it matches or not (a mismatch fails).
        (OURS, OURS, None, A.CRC32, VerifiedBy.ETAG),
        (OURS, OURS.strip('"'), CRC32_REPORTED, A.CRC32, VerifiedBy.ETAG),
        (OURS, OTHER_MULTIPART, CRC32_REPORTED, A.CRC32, VerifiedBy.ETAG),
        # A single PUT: its ETag from the PUT reply, of whatever form, or the body's MD5.
        (OPAQUE, OPAQUE, None, A.CRC32, VerifiedBy.ETAG),
        (MD5_A, MD5_B, None, A.CRC32, VerifiedBy.ETAG),
        # Another kind of ETag: the checksum the server reports, of the stream's algorithm.
        (OURS, OPAQUE, CRC32_REPORTED, A.CRC32, VerifiedBy.CHECKSUM),
        (OURS, '"abc"', Checksum(A.CRC32C, "x==-2"), A.CRC32C, VerifiedBy.CHECKSUM),
        (OURS, OPAQUE, Checksum(A.CRC64NVME, "x="), A.CRC64NVME, VerifiedBy.CHECKSUM),
        (MD5_A, OPAQUE, CRC32_REPORTED, A.CRC32, VerifiedBy.CHECKSUM),
        # Part ETags that are no MD5s (nothing expected): the checksum, even if the object's
        # ETag looks like S3's.
        ("", OTHER_MULTIPART, CRC32_REPORTED, A.CRC32, VerifiedBy.CHECKSUM),
        # No checksum reported, one of another algorithm, or none sent: the size alone.
        (OURS, OPAQUE, None, A.CRC32, VerifiedBy.SIZE),
        (OURS, OPAQUE, CRC32_REPORTED, A.CRC32C, VerifiedBy.SIZE),
        (OURS, OPAQUE, CRC32_REPORTED, A.NONE, VerifiedBy.SIZE),
        (OURS, OPAQUE, None, A.NONE, VerifiedBy.SIZE),
        ("", OTHER_MULTIPART, None, A.CRC32, VerifiedBy.SIZE),
    ],
)
def test_verification_method(
    expected_etag: str,
    object_etag: str,
    reported: Checksum | None,
    algorithm: ChecksumAlgorithm,
    method: VerifiedBy,
) -> None:
    got = verification_method(
        expected_etag=expected_etag, object_etag=object_etag, reported=reported, algorithm=algorithm
    )
    assert got is method


@pytest.mark.parametrize(
    ("method", "actual_size", "actual_etag", "actual_checksum", "ok", "mentions"),
    [
        (VerifiedBy.CHECKSUM, 100, OPAQUE, Checksum(A.CRC32, "good==-2"), True, []),
        (VerifiedBy.CHECKSUM, 100, OPAQUE, Checksum(A.CRC32, "also=="), True, []),
        (VerifiedBy.CHECKSUM, 100, OPAQUE, Checksum(A.CRC32, "bad==-2"), False, ["crc32", "bad"]),
        (VerifiedBy.CHECKSUM, 100, OPAQUE, None, False, ["(none)"]),
        (VerifiedBy.CHECKSUM, 99, OPAQUE, Checksum(A.CRC32, "good==-2"), False, ["size"]),
        (VerifiedBy.SIZE, 100, OPAQUE, None, True, []),
        (VerifiedBy.SIZE, 101, OPAQUE, None, False, ["size", "101"]),
        (VerifiedBy.ETAG, 100, OPAQUE, Checksum(A.CRC32, "good==-2"), False, ["ETag"]),
    ],
)
def test_check_completed_object_by_method(
    method: VerifiedBy,
    actual_size: int,
    actual_etag: str,
    actual_checksum: Checksum | None,
    ok: bool,
    mentions: list[str],
) -> None:
    check = check_completed_object(
        expected_size=100,
        expected_etag=OURS,
        actual_size=actual_size,
        actual_etag=actual_etag,
        method=method,
        expected_checksums=frozenset({"good==-2", "also=="}),
        actual_checksum=actual_checksum,
    )
    assert check.ok is ok
    text = " ".join(check.problems)
    for word in mentions:
        assert word in text


def test_expected_object_checksums_of_one_part_is_that_parts_own() -> None:
    # A single PUT: the server reports the body's checksum as it is, no -1.
    part = PartRecord(1, 9, zlib.crc32(b"123456789"), MD5_A)
    assert crc32_header(part.crc32) in expected_object_checksums(A.CRC32, [part])
    assert expected_object_checksums(A.NONE, [part]) == frozenset()
    assert expected_object_checksums(A.CRC32, []) == frozenset()


@pytest.mark.parametrize(
    ("algorithm", "stored", "action"),
    [
        (A.CRC32, "", PartAction.KEEP),
        (A.NONE, "", PartAction.KEEP),
        (A.CRC32C, "kIH2hw==", PartAction.KEEP),
        # Recorded without the checksum Complete must name: sent again, with it.
        (A.CRC32C, "", PartAction.UPLOAD),
        (A.CRC64NVME, "", PartAction.UPLOAD),
    ],
)
def test_part_action_wants_the_streams_checksum(
    algorithm: ChecksumAlgorithm, stored: str, action: PartAction
) -> None:
    rng = PartRange(1, 0, 5 * MIB)
    recorded = PartRecord(1, 5 * MIB, 7, MD5_A, "t", stored)
    assert part_action(recorded, rng, 7, algorithm) is action


# -- put_reply_proves --

BODY_MD5 = '"' + hashlib.md5(b"body").hexdigest() + '"'
OTHER_MD5 = '"' + hashlib.md5(b"other bytes").hexdigest() + '"'


@pytest.mark.parametrize(
    ("body_etag", "returned", "proves"),
    [
        (BODY_MD5, BODY_MD5, True),
        (BODY_MD5, BODY_MD5.strip('"'), True),  # quoting is not content
        (BODY_MD5, BODY_MD5.upper(), True),  # nor is the case of the hex digits
        (BODY_MD5, OTHER_MD5, False),  # an MD5, of other bytes: the object is not the body
        (BODY_MD5, '"' + "ab" * 20 + '"', False),  # no MD5 at all (SSE-KMS, other servers)
        (BODY_MD5, BODY_MD5.strip('"') + "-1", False),  # a multipart ETag is no body MD5
        (BODY_MD5, "", False),  # nothing answered
        ("", "", False),
    ],
)
def test_a_put_reply_proves_the_object_only_by_the_body_md5(
    body_etag: str, returned: str, proves: bool
) -> None:
    assert put_reply_proves(body_etag, returned) is proves
