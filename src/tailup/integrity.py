"""Hashes and the verify-before-complete decisions. Pure: no I/O.

Change detection uses CRC32: it is computed once per part, sent to S3 as the part's
x-amz-checksum-crc32 (so the server rejects a part corrupted on the way, BadDigest), and stored in
the checkpoint to tell whether the part's bytes changed since. CRC32 detects every burst of up to 32
changed bits, which covers the 4-byte size patches muxers write at close. zlib-ng computes the same
CRC32 as zlib with carry-less multiply instructions: ~25 GB/s on one core here against zlib's
2.7-4.7 GB/s (SHA-256: 1.5 GB/s, MD5: 0.6 GB/s), so hashing a part costs less than reading it.
(The header S3 verifies can be another checksum, or none: --checksum, tailup.checksums. This CRC32
is computed whatever it is.)
"""

from __future__ import annotations

import base64
import enum
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

try:
    from zlib_ng.zlib_ng import crc32 as _crc32
except ImportError:  # a platform without a zlib-ng wheel: same values, only slower
    from zlib import crc32 as _crc32

from tailup.checksums import ChecksumAlgorithm, PartSum, object_checksums, part_checksum
from tailup.model import PartRecord
from tailup.plan import PartRange

if TYPE_CHECKING:
    from typing_extensions import Buffer  # collections.abc.Buffer from Python 3.12


def crc32_of(data: Buffer) -> int:
    return _crc32(data) & 0xFFFFFFFF


def crc32_update(data: Buffer, crc: int) -> int:
    """CRC32 of what ``crc`` covered followed by ``data``."""
    return _crc32(data, crc) & 0xFFFFFFFF


def crc32_header(crc: int) -> str:
    """The value of x-amz-checksum-crc32: base64 of the big-endian 4 bytes."""
    return base64.b64encode(crc.to_bytes(4, "big")).decode("ascii")


def multipart_etag(part_etags: Sequence[str]) -> str:
    """S3's ETag of a completed multipart object: md5 of the parts' binary md5s, dash, count."""
    digests = b"".join(bytes.fromhex(etag.strip('"')) for etag in part_etags)
    return f'"{hashlib.md5(digests).hexdigest()}-{len(part_etags)}"'


def normalize_etag(etag: str) -> str:
    return etag.strip().strip('"')


def expected_object_checksums(
    algorithm: ChecksumAlgorithm, parts: Sequence[PartRecord]
) -> frozenset[str]:
    """What the server may report as the checksum of the object these parts make (one part sent
    by a single PUT: that part's own checksum)."""
    if algorithm is ChecksumAlgorithm.NONE or not parts:
        return frozenset()
    sums = [PartSum(p.size, part_checksum(algorithm, p.crc32, p.checksum)) for p in parts]
    return object_checksums(algorithm, sums)


class PartAction(enum.Enum):
    KEEP = "keep"  # uploaded, same size and bytes
    UPLOAD = "upload"  # never uploaded, or its bytes or size changed: send (again)


def part_action(
    recorded: PartRecord | None,
    rng: PartRange,
    observed_crc32: int,
    algorithm: ChecksumAlgorithm = ChecksumAlgorithm.CRC32,
) -> PartAction:
    """What to do with one part of the final layout, given what was uploaded and what is on disk
    (a part recorded without the CRC32C/CRC64NVME its stream sends is sent again: Complete names
    it)."""
    if recorded is None or recorded.size != rng.size or recorded.crc32 != observed_crc32:
        return PartAction.UPLOAD
    if algorithm.stored and not recorded.checksum:
        return PartAction.UPLOAD
    return PartAction.KEEP


def parts_past_end(recorded: Iterable[int], layout: Sequence[PartRange]) -> list[int]:
    """Uploaded parts that the final file no longer reaches (it shrank): leave them out."""
    last = layout[-1].number if layout else 0
    return sorted(n for n in recorded if n > last)


@dataclass(frozen=True, slots=True)
class CompletionCheck:
    ok: bool
    problems: tuple[str, ...]


def check_completed_object(
    *,
    expected_size: int,
    expected_etag: str,
    actual_size: int,
    actual_etag: str,
) -> CompletionCheck:
    """Compare the object S3 reports after completion with what was sent."""
    problems = []
    if actual_size != expected_size:
        problems.append(f"size is {actual_size} bytes in S3, {expected_size} bytes sent")
    if normalize_etag(actual_etag) != normalize_etag(expected_etag):
        problems.append(f"ETag is {actual_etag} in S3, {expected_etag} expected")
    return CompletionCheck(not problems, tuple(problems))


def completion_parts(
    layout: Sequence[PartRange], recorded: Mapping[int, PartRecord]
) -> list[PartRecord]:
    """Parts to name in CompleteMultipartUpload, in order; every layout part must be recorded."""
    missing = [rng.number for rng in layout if rng.number not in recorded]
    if missing:
        raise ValueError(f"parts {missing} of the final layout were never uploaded")
    return [recorded[rng.number] for rng in layout]
