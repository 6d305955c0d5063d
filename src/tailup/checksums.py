"""The checksum S3 verifies on every part (--checksum): its header, its value, and what the server
reports for a whole object. Pure: no I/O.

Whatever this sends, tailup keeps its own CRC32 of each part (tailup.integrity): it is what tells
a part changed since it was sent. The header is for the server: SeaweedFS 4.48 and AWS S3 refuse
a body whose x-amz-checksum-crc32, -crc32c or -crc64nvme does not match it (BadDigest), and a
CompleteMultipartUpload naming a part with the wrong checksum. ``crc32`` (the default) reuses the
CRC32 tailup computes anyway; ``crc32c`` and ``crc64nvme`` cost one more pass over each part
(awscrt, AWS's own C library, ~11 GB/s on one core here, off the event loop); ``none`` sends no
checksum header at all, for servers that refuse them.

What a server reports for a completed multipart object (HeadObject with ChecksumMode=ENABLED):
- CRC32 and CRC32C uploads are COMPOSITE unless asked otherwise: the checksum of the parts' binary
  checksums one after the other, then ``-N`` (N parts): ``98jbaQ==-2``.
- CRC64NVME exists only as FULL_OBJECT: the CRC64NVME of the whole object, combined from the parts'.
Both forms are computed here from the parts' own checksums and sizes, without reading the file.

Uploads tailup creates now are FULL_OBJECT whatever the CRC (``ChecksumType``): the whole object's
checksum is combined from the parts' (crc combine: a part sent again changes only its own term),
named in CompleteMultipartUpload, which S3 and SeaweedFS check against the parts they hold
(BadDigest otherwise), reported on HEAD, and written to metadata.json. So metadata.json names a
checksum of every byte of the object without the file being hashed again at close. Records from
before keep the type their upload was created with (``effective_type``).
"""

from __future__ import annotations

import base64
import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing_extensions import Buffer


class ChecksumAlgorithm(enum.Enum):
    CRC32 = "crc32"
    CRC32C = "crc32c"
    CRC64NVME = "crc64nvme"
    NONE = "none"

    @property
    def s3_name(self) -> str:
        """As S3's API spells it (ChecksumAlgorithm=CRC32C, ChecksumCRC32C); "" for NONE."""
        return "" if self is ChecksumAlgorithm.NONE else self.value.upper()

    @property
    def width_bytes(self) -> int:
        return {"crc32": 4, "crc32c": 4, "crc64nvme": 8, "none": 0}[self.value]

    @property
    def full_object(self) -> bool:
        """S3 knows CRC64NVME only as a full-object checksum (ChecksumType=FULL_OBJECT)."""
        return self is ChecksumAlgorithm.CRC64NVME

    @property
    def stored(self) -> bool:
        """A part's value is kept in its checkpoint (CRC32's is its recorded crc32; NONE has
        none)."""
        return self in (ChecksumAlgorithm.CRC32C, ChecksumAlgorithm.CRC64NVME)


class ChecksumType(enum.Enum):
    """How a multipart object's checksum is made (S3's ChecksumType)."""

    COMPOSITE = "composite"  # of the parts' checksums, then -N
    FULL_OBJECT = "full_object"  # of the object's bytes, combined from the parts'


def new_upload_type(algorithm: ChecksumAlgorithm) -> ChecksumType | None:
    """The type an upload tailup creates now gets: FULL_OBJECT for every CRC; None for NONE."""
    return None if algorithm is ChecksumAlgorithm.NONE else ChecksumType.FULL_OBJECT


def effective_type(algorithm: ChecksumAlgorithm, recorded: str) -> ChecksumType | None:
    """The type of a stream's upload from its record: ``recorded`` ("" in records from before
    the field, whose uploads were made COMPOSITE unless the CRC exists only as FULL_OBJECT)."""
    if algorithm is ChecksumAlgorithm.NONE:
        return None
    if recorded:
        return ChecksumType(recorded)
    return ChecksumType.FULL_OBJECT if algorithm.full_object else ChecksumType.COMPOSITE


@dataclass(frozen=True, slots=True)
class Checksum:
    """One checksum as S3 carries it: base64 of the big-endian value (a composite one ends in
    -N)."""

    algorithm: ChecksumAlgorithm
    value: str

    def request_params(self) -> dict[str, str]:
        """The botocore parameter that sends it (ChecksumCRC32C=...); none for NONE."""
        if self.algorithm is ChecksumAlgorithm.NONE:
            return {}
        return {f"Checksum{self.algorithm.s3_name}": self.value}


NO_CHECKSUM = Checksum(ChecksumAlgorithm.NONE, "")


def encode(algorithm: ChecksumAlgorithm, value: int) -> str:
    return base64.b64encode(value.to_bytes(algorithm.width_bytes, "big")).decode("ascii")


def decode(value: str) -> int:
    return int.from_bytes(base64.b64decode(value.split("-")[0]), "big")


def crc_of(algorithm: ChecksumAlgorithm, data: Buffer, previous: int = 0) -> int:
    """The CRC of ``data`` after ``previous`` (the CRC of what came before it)."""
    # awscrt is imported on first use: ~80 ms that a crc32 daemon never pays. Its checksums
    # release the GIL, like zlib-ng's CRC32.
    from awscrt import checksums

    if algorithm is ChecksumAlgorithm.CRC32C:
        return int(checksums.crc32c(data, previous))
    if algorithm is ChecksumAlgorithm.CRC64NVME:
        return int(checksums.crc64nvme(data, previous))
    if algorithm is ChecksumAlgorithm.CRC32:
        return int(checksums.crc32(data, previous))
    raise ValueError(f"{algorithm.value} is no CRC")


def stored_checksum(algorithm: ChecksumAlgorithm, data: Buffer) -> str:
    """What a part's checkpoint keeps besides its CRC32: its CRC32C or CRC64NVME, base64; ""
    for CRC32 (its crc32 is it) and NONE. Blocking on a whole part: call it in a worker thread."""
    return encode(algorithm, crc_of(algorithm, data)) if algorithm.stored else ""


def part_checksum(algorithm: ChecksumAlgorithm, crc32: int, stored: str) -> Checksum:
    """The header a part is sent (and named in CompleteMultipartUpload) with, from what its
    checkpoint holds. ValueError when a CRC32C/CRC64NVME value was never recorded."""
    if algorithm is ChecksumAlgorithm.NONE:
        return NO_CHECKSUM
    if algorithm is ChecksumAlgorithm.CRC32:
        return Checksum(algorithm, encode(algorithm, crc32))
    if not stored:
        raise ValueError(f"no {algorithm.value} recorded")
    return Checksum(algorithm, stored)


@dataclass(frozen=True, slots=True)
class PartSum:
    """What the whole-object checksum is made of, per part: its size and its checksum."""

    size: int
    checksum: Checksum


def composite_checksum(algorithm: ChecksumAlgorithm, parts: Sequence[PartSum]) -> str:
    """S3's COMPOSITE checksum of a multipart object: of the parts' binary checksums, then -N."""
    joined = b"".join(base64.b64decode(p.checksum.value) for p in parts)
    return f"{encode(algorithm, crc_of(algorithm, joined))}-{len(parts)}"


def full_object_checksum(algorithm: ChecksumAlgorithm, parts: Sequence[PartSum]) -> str:
    """The checksum of the whole object, combined from the parts' (no byte read again)."""
    from awscrt import checksums

    combine = {
        ChecksumAlgorithm.CRC32: checksums.combine_crc32,
        ChecksumAlgorithm.CRC32C: checksums.combine_crc32c,
        ChecksumAlgorithm.CRC64NVME: checksums.combine_crc64nvme,
    }[algorithm]
    value = 0
    for part in parts:
        value = int(combine(value, decode(part.checksum.value), part.size))
    return encode(algorithm, value)


def object_checksum(
    algorithm: ChecksumAlgorithm, kind: ChecksumType, parts: Sequence[PartSum]
) -> Checksum:
    """The checksum S3 makes of the multipart object these parts make, of the upload's type."""
    if kind is ChecksumType.FULL_OBJECT:
        return Checksum(algorithm, full_object_checksum(algorithm, parts))
    return Checksum(algorithm, composite_checksum(algorithm, parts))


def object_checksums(algorithm: ChecksumAlgorithm, parts: Sequence[PartSum]) -> frozenset[str]:
    """The values a server may report for the multipart object made of ``parts``: the form S3
    uses for the algorithm first (composite for CRC32/CRC32C, full-object for CRC64NVME), and for
    CRC32/CRC32C the other form too (a server may compute full-object ones). Empty for NONE."""
    if algorithm is ChecksumAlgorithm.NONE or not parts:
        return frozenset()
    forms = {full_object_checksum(algorithm, parts)}
    if not algorithm.full_object:
        forms.add(composite_checksum(algorithm, parts))
    return frozenset(forms)
