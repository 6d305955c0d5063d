"""tailup.integrity where mutation testing found it unchecked (`make mutants`, docs/testing.md):
CRC32 carried on from a previous one, the words of a checksum mismatch, stored CRC32C values
used (and not needed when the ETag checks), and an ETag that is no MD5 kept as it is."""

from __future__ import annotations

import zlib

import pytest

from tailup.checksums import (
    Checksum,
    ChecksumAlgorithm,
    PartSum,
    crc_of,
    encode,
    object_checksums,
    stored_checksum,
)
from tailup.integrity import (
    VerifiedBy,
    check_completed_object,
    check_object_against_parts,
    crc32_of,
    crc32_update,
    expected_object_checksums,
    normalize_etag,
)
from tailup.model import PartRecord

C32C = ChecksumAlgorithm.CRC32C


@pytest.mark.parametrize(("head", "tail"), [(b"hello ", b"world"), (b"\xff" * 7, b"\x00" * 9)])
def test_crc32_update_carries_on_from_the_crc_given(head: bytes, tail: bytes) -> None:
    assert crc32_update(tail, crc32_of(head)) == crc32_of(head + tail) == zlib.crc32(head + tail)


def test_crc32_update_of_nothing_keeps_the_crc() -> None:
    assert crc32_update(b"", 0xDEADBEEF) == 0xDEADBEEF


@pytest.mark.parametrize(
    ("actual", "expected", "problem"),
    [
        (None, frozenset({"b", "a"}), "checksum is (none) in S3, a or b expected"),
        (Checksum(C32C, "zz"), frozenset(), "crc32c is zz in S3, (none) expected"),
        (Checksum(C32C, "zz"), frozenset({"yy"}), "crc32c is zz in S3, yy expected"),
    ],
)
def test_a_checksum_mismatch_in_words(
    actual: Checksum | None, expected: frozenset[str], problem: str
) -> None:
    check = check_completed_object(
        expected_size=1,
        expected_etag="",
        actual_size=1,
        actual_etag="",
        method=VerifiedBy.CHECKSUM,
        expected_checksums=expected,
        actual_checksum=actual,
    )
    assert check.problems == (problem,)


def _records(algorithm: ChecksumAlgorithm, datas: list[bytes]) -> list[PartRecord]:
    return [
        PartRecord(n, len(d), crc32_of(d), '"e"', checksum=stored_checksum(algorithm, d))
        for n, d in enumerate(datas, start=1)
    ]


def test_expected_object_checksums_use_the_stored_crc32c() -> None:
    datas = [b"a" * 10, b"b" * 3]
    parts = _records(C32C, datas)
    sums = [PartSum(len(d), Checksum(C32C, encode(C32C, crc_of(C32C, d)))) for d in datas]
    assert expected_object_checksums(C32C, parts) == object_checksums(C32C, sums)
    whole = encode(C32C, crc_of(C32C, b"".join(datas)))
    assert whole in expected_object_checksums(C32C, parts)


def test_an_etag_check_needs_no_stored_checksum() -> None:
    """Parts recorded before their CRC32C was kept cannot make a whole-object CRC32C; where the
    ETag proves the object, none is computed (nor asked for)."""
    parts = [PartRecord(1, 10, 0, '"e"', checksum="")]
    etag = '"0123456789abcdef0123456789abcdef-1"'
    check, method = check_object_against_parts(
        size=10,
        expected_etag=etag,
        object_size=10,
        object_etag=etag,
        reported=None,
        algorithm=C32C,
        parts=parts,
    )
    assert method is VerifiedBy.ETAG
    assert check.ok
    with pytest.raises(ValueError, match="no crc32c recorded"):
        expected_object_checksums(C32C, parts)


@pytest.mark.parametrize(
    ("etag", "normal"),
    [('"X-1X"', "X-1X"), (' "abcX" ', "abcX"), ("XX", "XX")],
)
def test_normalize_etag_strips_quotes_only(etag: str, normal: str) -> None:
    """Another server's ETags are any text: only the quotes and spaces around go."""
    assert normalize_etag(etag) == normal
