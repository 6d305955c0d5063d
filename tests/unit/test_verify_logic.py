"""verify's streaming comparisons, fed arbitrary chunkings (no servers)."""

from __future__ import annotations

import hashlib
import io
import random

import pytest

from tailup.integrity import multipart_etag, normalize_etag
from tailup.verify import (
    Digest,
    Expected,
    LocalComparer,
    PartHasher,
    VerifyReport,
    compare_with_expected,
)

DATA = random.Random(7).randbytes(10_000)
SIZES = (4000, 4000, 2000)


def _chunks(data: bytes, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    out, offset = [], 0
    while offset < len(data):
        step = rng.randint(1, 3000)
        out.append(data[offset : offset + step])
        offset += step
    return out


def _md5s(data: bytes, sizes: tuple[int, ...]) -> list[str]:
    out, start = [], 0
    for size in sizes:
        out.append(hashlib.md5(data[start : start + size]).hexdigest())
        start += size
    return out


@pytest.mark.parametrize("seed", range(5))
def test_part_hasher_is_independent_of_chunking(seed: int) -> None:
    hasher = PartHasher(SIZES)
    for chunk in _chunks(DATA + b"extra", seed):
        hasher.update(chunk)
    assert hasher.digests == _md5s(DATA, SIZES)
    assert hasher.overflow == 5


@pytest.mark.parametrize("seed", range(5))
def test_local_comparer_finds_the_first_different_byte(seed: int) -> None:
    changed = bytearray(DATA)
    changed[6543] ^= 0xFF
    changed[8000] ^= 0xFF
    comparer = LocalComparer(io.BytesIO(DATA))
    offset = 0
    for chunk in _chunks(bytes(changed), seed):
        comparer.update(offset, chunk)
        offset += len(chunk)
    assert comparer.first_difference == 6543


def test_local_comparer_sees_a_longer_object() -> None:
    comparer = LocalComparer(io.BytesIO(DATA[:100]))
    comparer.update(0, DATA[:150])
    assert comparer.first_difference == 100


def _expected() -> Expected:
    md5s = _md5s(DATA, SIZES)
    return Expected(
        source="metadata.json",
        size=len(DATA),
        sha256=hashlib.sha256(DATA).hexdigest(),
        etag=normalize_etag(multipart_etag(md5s)),
        part_sizes=SIZES,
        part_etags=tuple(md5s),
    )


def _digest(data: bytes) -> Digest:
    return Digest(
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        part_md5s=_md5s(data, SIZES),
    )


def test_matching_object_passes_every_check() -> None:
    report = VerifyReport("b", "k")
    compare_with_expected(report, _digest(DATA), _expected())
    assert report.ok, report.checks
    assert [c.name for c in report.checks] == [
        "size in bytes (metadata.json)",
        "sha256 (metadata.json)",
        "parts (metadata.json)",
        "ETag computed from the bytes (metadata.json)",
    ]


def test_changed_byte_names_the_part_and_its_range() -> None:
    changed = bytearray(DATA)
    changed[5000] ^= 1
    report = VerifyReport("b", "k")
    compare_with_expected(report, _digest(bytes(changed)), _expected())
    failed = {c.name: c.detail for c in report.checks if not c.ok}
    assert set(failed) == {
        "sha256 (metadata.json)",
        "parts (metadata.json)",
        "ETag computed from the bytes (metadata.json)",
    }
    assert failed["parts (metadata.json)"].startswith("part 2 (bytes 4000-7999): md5 ")
    assert "part 1 " not in failed["parts (metadata.json)"]


def test_no_checks_is_not_a_match() -> None:
    assert not VerifyReport("b", "k").ok


@pytest.mark.parametrize(
    ("etag", "part_etags", "parts_detail", "etag_detail", "a_changed_byte_fails"),
    [
        # A server whose multipart ETag is of its own kind, parts MD5s as usual.
        (
            "f" * 40,
            None,
            "3 parts match",
            "not compared: the server's ETag " + "f" * 40,
            ["sha256 (metadata.json)", "parts (metadata.json)"],
        ),
        # Part ETags that are no MD5s either (SSE-KMS, other servers).
        (
            "e" * 32 + "-3",
            ("p1", "p2", "p3"),
            "3 parts, not compared",
            "not compared",
            ["sha256 (metadata.json)"],
        ),
        # rclone serve s3: the multipart object's ETag is the MD5 of all its bytes, no "-N".
        (
            hashlib.md5(DATA).hexdigest(),
            None,
            "3 parts match",
            "not compared: the server's ETag " + hashlib.md5(DATA).hexdigest(),
            ["sha256 (metadata.json)", "parts (metadata.json)"],
        ),
    ],
    ids=["opaque-object-etag", "opaque-part-etags", "whole-object-md5"],
)
def test_etags_of_another_kind_are_not_compared_and_the_sha256_still_is(
    etag: str,
    part_etags: tuple[str, ...] | None,
    parts_detail: str,
    etag_detail: str,
    a_changed_byte_fails: list[str],
) -> None:
    base = _expected()
    expected = Expected(
        source=base.source,
        size=base.size,
        sha256=base.sha256,
        etag=etag,
        part_sizes=base.part_sizes,
        part_etags=part_etags or base.part_etags,
    )
    report = VerifyReport("b", "k")
    compare_with_expected(report, _digest(DATA), expected)
    assert report.ok, report.checks
    details = {c.name: c.detail for c in report.checks}
    assert details["parts (metadata.json)"].startswith(parts_detail)
    assert details["ETag computed from the bytes (metadata.json)"].startswith(etag_detail)
    changed = bytearray(DATA)
    changed[5000] ^= 1
    report = VerifyReport("b", "k")
    compare_with_expected(report, _digest(bytes(changed)), expected)
    assert [c.name for c in report.checks if not c.ok] == a_changed_byte_fails
