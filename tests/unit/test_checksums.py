"""The checksum headers (--checksum) and the whole-object checksums a server reports, against
known check values and against a direct computation over the joined bytes."""

from __future__ import annotations

import base64
import hashlib
import os
import zlib

import pytest
from awscrt import checksums as crt

from tailup.checksums import (
    NO_CHECKSUM,
    Checksum,
    ChecksumAlgorithm,
    ChecksumType,
    PartSum,
    composite_checksum,
    crc_of,
    effective_type,
    encode,
    full_object_checksum,
    new_upload_type,
    object_checksum,
    object_checksums,
    part_checksum,
    stored_checksum,
)

A = ChecksumAlgorithm


def b64(value: int, width: int) -> str:
    return base64.b64encode(value.to_bytes(width, "big")).decode()


# The catalogued check values of each CRC over b"123456789" (CRC-32/ISO-HDLC, CRC-32/ISCSI,
# CRC-64/NVME), independent of any library.
CHECK = b"123456789"


@pytest.mark.parametrize(
    ("algorithm", "crc32", "stored", "header"),
    [
        (A.CRC32, 0xCBF43926, "", {"ChecksumCRC32": b64(0xCBF43926, 4)}),
        (A.CRC32C, 0xCBF43926, b64(0xE3069283, 4), {"ChecksumCRC32C": b64(0xE3069283, 4)}),
        (
            A.CRC64NVME,
            0xCBF43926,
            b64(0xAE8B14860A799888, 8),
            {"ChecksumCRC64NVME": b64(0xAE8B14860A799888, 8)},
        ),
        (A.NONE, 0xCBF43926, "", {}),
    ],
)
def test_the_header_each_algorithm_sends(
    algorithm: ChecksumAlgorithm, crc32: int, stored: str, header: dict[str, str]
) -> None:
    assert stored_checksum(algorithm, CHECK) == stored
    assert part_checksum(algorithm, crc32, stored).request_params() == header


def test_none_sends_no_checksum_at_all() -> None:
    assert part_checksum(A.NONE, 123, "") == NO_CHECKSUM
    assert NO_CHECKSUM.request_params() == {}
    assert object_checksums(A.NONE, [PartSum(1, NO_CHECKSUM)]) == frozenset()


@pytest.mark.parametrize("algorithm", [A.CRC32C, A.CRC64NVME])
def test_a_part_without_its_recorded_checksum_is_refused(algorithm: ChecksumAlgorithm) -> None:
    with pytest.raises(ValueError, match=f"no {algorithm.value} recorded"):
        part_checksum(algorithm, 1, "")


@pytest.mark.parametrize(
    ("algorithm", "s3_name", "stored", "full_object"),
    [
        (A.CRC32, "CRC32", False, False),
        (A.CRC32C, "CRC32C", True, False),
        (A.CRC64NVME, "CRC64NVME", True, True),
        (A.NONE, "", False, False),
    ],
)
def test_algorithm_facts(
    algorithm: ChecksumAlgorithm, s3_name: str, stored: bool, full_object: bool
) -> None:
    assert algorithm.s3_name == s3_name
    assert algorithm.stored is stored
    assert algorithm.full_object is full_object


# -- whole-object checksums --

PARTS = [hashlib.shake_256(b"part %d" % n).digest(size) for n, size in enumerate([5000, 5000, 77])]


def direct(algorithm: ChecksumAlgorithm, data: bytes) -> int:
    if algorithm is A.CRC32:
        return zlib.crc32(data)
    if algorithm is A.CRC32C:
        return int(crt.crc32c(data))
    return int(crt.crc64nvme(data))


def sums(algorithm: ChecksumAlgorithm) -> list[PartSum]:
    width = algorithm.width_bytes
    return [PartSum(len(p), Checksum(algorithm, b64(direct(algorithm, p), width))) for p in PARTS]


@pytest.mark.parametrize("algorithm", [A.CRC32, A.CRC32C, A.CRC64NVME])
def test_full_object_checksum_is_the_checksum_of_the_joined_bytes(
    algorithm: ChecksumAlgorithm,
) -> None:
    whole = direct(algorithm, b"".join(PARTS))
    assert full_object_checksum(algorithm, sums(algorithm)) == b64(whole, algorithm.width_bytes)


@pytest.mark.parametrize("algorithm", [A.CRC32, A.CRC32C])
def test_composite_checksum_is_of_the_part_checksums_then_the_count(
    algorithm: ChecksumAlgorithm,
) -> None:
    joined = b"".join(direct(algorithm, p).to_bytes(4, "big") for p in PARTS)
    expected = f"{b64(direct(algorithm, joined), 4)}-3"
    assert composite_checksum(algorithm, sums(algorithm)) == expected
    # Both forms are accepted from a server: composite is S3's, full-object another server's.
    assert object_checksums(algorithm, sums(algorithm)) == {
        expected,
        full_object_checksum(algorithm, sums(algorithm)),
    }


def test_crc64nvme_is_only_full_object() -> None:
    assert object_checksums(A.CRC64NVME, sums(A.CRC64NVME)) == {
        full_object_checksum(A.CRC64NVME, sums(A.CRC64NVME))
    }


TYPE_CASES = [
    # (algorithm, recorded in the stream's record, the upload's type)
    (A.CRC32, "", ChecksumType.COMPOSITE),  # a record from before the field
    (A.CRC32C, "", ChecksumType.COMPOSITE),
    (A.CRC64NVME, "", ChecksumType.FULL_OBJECT),  # S3 never had another
    (A.CRC32, "full_object", ChecksumType.FULL_OBJECT),
    (A.CRC32C, "composite", ChecksumType.COMPOSITE),
    (A.NONE, "", None),
    (A.NONE, "full_object", None),
]


@pytest.mark.parametrize(("algorithm", "recorded", "expected"), TYPE_CASES)
def test_effective_type(
    algorithm: ChecksumAlgorithm, recorded: str, expected: ChecksumType | None
) -> None:
    assert effective_type(algorithm, recorded) is expected


@pytest.mark.parametrize("algorithm", [A.CRC32, A.CRC32C, A.CRC64NVME])
def test_new_uploads_are_full_object(algorithm: ChecksumAlgorithm) -> None:
    assert new_upload_type(algorithm) is ChecksumType.FULL_OBJECT
    assert new_upload_type(A.NONE) is None


@pytest.mark.parametrize("algorithm", [A.CRC32, A.CRC32C])
def test_object_checksum_is_of_the_upload_type(algorithm: ChecksumAlgorithm) -> None:
    bodies = [os.urandom(1000), os.urandom(77)]
    sums = [
        PartSum(len(b), Checksum(algorithm, encode(algorithm, crc_of(algorithm, b))))
        for b in bodies
    ]
    whole = object_checksum(algorithm, ChecksumType.FULL_OBJECT, sums)
    assert whole == Checksum(algorithm, encode(algorithm, crc_of(algorithm, b"".join(bodies))))
    composite = object_checksum(algorithm, ChecksumType.COMPOSITE, sums)
    assert composite.value.endswith("-2") and composite.value != whole.value
