"""Hashes and the verify-before-complete decisions. Pure: no I/O.

Change detection uses CRC32: it is computed once per part, sent to S3 as the part's
x-amz-checksum-crc32 (so the server rejects a part corrupted on the way, BadDigest), and stored in
the checkpoint to tell whether the part's bytes changed since. CRC32 detects every burst of up to 32
changed bits, which covers the 4-byte size patches muxers write at close. zlib-ng computes the same
CRC32 as zlib with carry-less multiply instructions: ~25 GB/s on one core here against zlib's
2.7-4.7 GB/s (SHA-256: 1.5 GB/s, MD5: 0.6 GB/s), so hashing a part costs less than reading it.
(The header S3 verifies can be another checksum, or none: --checksum, tailup.checksums. This CRC32
is computed whatever it is.)

After completion the object S3 reports is compared with what was sent: its size, and its ETag
against the MD5 of the parts' MD5s that S3 makes. A server whose ETags are of another form (not
``<32 hex>-<parts>``; parts whose ETags are not MD5s, as with SSE-KMS) cannot be checked that way:
there the size and the whole-object checksum the server reports are (``verification_method``), or
the size alone when the server reports no checksum or none is sent; every part's own checksum was
verified by the server as it arrived, and every part re-read and compared before Complete.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

try:
    from zlib_ng.zlib_ng import crc32 as _crc32
except ImportError:  # a platform without a zlib-ng wheel: same values, only slower
    from zlib import crc32 as _crc32

from tailup.checksums import Checksum, ChecksumAlgorithm, PartSum, object_checksums, part_checksum
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


_MD5 = re.compile(r"[0-9a-f]{32}")
_MD5_OF_MD5S = re.compile(r"[0-9a-f]{32}-[1-9][0-9]*")


class EtagForm(enum.Enum):
    MD5 = "md5"  # a single PUT's, or a part's: the MD5 of its bytes
    MD5_OF_MD5S = "md5-of-md5s"  # a multipart object's: <32 hex>-<parts>
    OTHER = "other"


def etag_form(etag: str) -> EtagForm:
    text = normalize_etag(etag).lower()
    if _MD5.fullmatch(text):
        return EtagForm.MD5
    if _MD5_OF_MD5S.fullmatch(text):
        return EtagForm.MD5_OF_MD5S
    return EtagForm.OTHER


def put_reply_proves(body_etag: str, returned_etag: str) -> bool:
    """Whether a PutObject's reply alone proves the object is the body sent: its ETag is an MD5
    and the very MD5 tailup computed of the body (``body_etag``); the server checked the body's
    checksum header too. No HEAD is needed then. A server whose ETags are not the body's MD5
    (SSE-KMS, other servers) or one that differs is checked by a HEAD (verification_method)."""
    return etag_form(returned_etag) is EtagForm.MD5 and (
        normalize_etag(returned_etag).lower() == normalize_etag(body_etag).lower()
    )


def expected_multipart_etag(part_etags: Sequence[str]) -> str:
    """The multipart ETag S3 makes of these parts; "" when a part's ETag is no MD5 (a server that
    does not make them so, SSE-KMS): there is nothing to expect then."""
    if not part_etags or any(etag_form(e) is not EtagForm.MD5 for e in part_etags):
        return ""
    return multipart_etag(part_etags)


class VerifiedBy(enum.Enum):
    """How a completed object is checked against what was sent (besides its size)."""

    ETAG = "etag"  # its ETag: the MD5 of the parts' MD5s (or a single PUT's)
    CHECKSUM = "checksum"  # the whole-object checksum the server reports (tailup.checksums)
    SIZE = "size"  # nothing more: the server's ETag says nothing and it reports no checksum


def verification_method(
    *,
    expected_etag: str,
    object_etag: str,
    reported: Checksum | None,
    algorithm: ChecksumAlgorithm,
) -> VerifiedBy:
    """ETag when the server's ETag can be compared with the expected one (equal, or both of one
    MD5 form: then a difference is a real one). Otherwise the server's ETags are of another kind:
    the checksum it reports for the object, if it reports one of the stream's algorithm; else
    the size alone."""
    if expected_etag and normalize_etag(expected_etag) == normalize_etag(object_etag):
        return VerifiedBy.ETAG
    form = etag_form(expected_etag) if expected_etag else EtagForm.OTHER
    if form is not EtagForm.OTHER and etag_form(object_etag) is form:
        return VerifiedBy.ETAG
    if algorithm is not ChecksumAlgorithm.NONE and reported and reported.algorithm is algorithm:
        return VerifiedBy.CHECKSUM
    return VerifiedBy.SIZE


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
    method: VerifiedBy = VerifiedBy.ETAG,
    expected_checksums: frozenset[str] = frozenset(),
    actual_checksum: Checksum | None = None,
) -> CompletionCheck:
    """Compare the object S3 reports after completion with what was sent, by ``method``
    (``verification_method``)."""
    problems = []
    if actual_size != expected_size:
        problems.append(f"size is {actual_size} bytes in S3, {expected_size} bytes sent")
    if method is VerifiedBy.ETAG and normalize_etag(actual_etag) != normalize_etag(expected_etag):
        problems.append(f"ETag is {actual_etag} in S3, {expected_etag} expected")
    if method is VerifiedBy.CHECKSUM:
        got = actual_checksum.value if actual_checksum else "(none)"
        if got not in expected_checksums:
            name = actual_checksum.algorithm.value if actual_checksum else "checksum"
            want = " or ".join(sorted(expected_checksums)) or "(none)"
            problems.append(f"{name} is {got} in S3, {want} expected")
    return CompletionCheck(not problems, tuple(problems))


def check_object_against_parts(
    *,
    size: int,
    expected_etag: str,
    object_size: int,
    object_etag: str,
    reported: Checksum | None,
    algorithm: ChecksumAlgorithm,
    parts: Sequence[PartRecord],
) -> tuple[CompletionCheck, VerifiedBy]:
    """The object S3 reports against what completing ``parts`` makes: how it can be checked on
    this server (``verification_method``) and that check."""
    method = verification_method(
        expected_etag=expected_etag, object_etag=object_etag, reported=reported, algorithm=algorithm
    )
    check = check_completed_object(
        expected_size=size,
        expected_etag=expected_etag,
        actual_size=object_size,
        actual_etag=object_etag,
        method=method,
        expected_checksums=(
            expected_object_checksums(algorithm, parts)
            if method is VerifiedBy.CHECKSUM
            else frozenset()
        ),
        actual_checksum=reported,
    )
    return check, method


def completion_parts(
    layout: Sequence[PartRange], recorded: Mapping[int, PartRecord]
) -> list[PartRecord]:
    """Parts to name in CompleteMultipartUpload, in order; every layout part must be recorded."""
    missing = [rng.number for rng in layout if rng.number not in recorded]
    if missing:
        raise ValueError(f"parts {missing} of the final layout were never uploaded")
    return [recorded[rng.number] for rng in layout]
