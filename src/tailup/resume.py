"""What to do with a stream found live when tailup starts (after kill -9, a crash or a restart).

Pure: the facts are gathered by ``tailup.reconcile`` (stat, a re-read of one part, ListParts,
HeadObject) and handed in; nothing here does I/O.

The checkpoint is a lower bound of what S3 holds, and S3 is the truth about what exists:

- The file must still be the one being uploaded: same device and inode, at least as long as what
  was uploaded, and the bytes of the last uploaded part unchanged. Only the last part is compared:
  it is what a replacement or an in-place restart of the recorder would have overwritten, while
  the start of the file is legitimately rewritten by muxers at close (MP4's and MOV's mdat size,
  MKV's header, all in the first kilobytes). For the same reason part 1 is never compared: when it
  is the only part uploaded, a difference there is no evidence of another file (the kill -9
  trials found MKV and MOV recordings "replaced" that way). Whatever is not compared here is
  checked by the verify pass before completion, which sends changed parts again.
- Parts that S3 lists with the ETag the checkpoint recorded are kept. Parts that S3 has but the
  checkpoint lacks (acknowledged, then the process died before the checkpoint was written) are
  adopted when one listed version's ETag is the MD5 of the file's bytes for that part, else they
  are sent again. S3 servers may list several versions of one part number (SeaweedFS keeps every
  upload of it), so an ETag is adopted only when it matches, never because it is listed.
- Checkpointed parts that S3 does not list are forgotten and sent again.
- An upload that no longer exists was either completed just before the crash (the object's ETag
  is then exactly the one its checkpointed parts make; on a server whose ETags are of another
  kind, its size and checksum: tailup.integrity.verification_method) or expired/aborted: start it
  again.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tailup.checksums import ChecksumAlgorithm
from tailup.integrity import (
    VerifiedBy,
    check_object_against_parts,
    expected_multipart_etag,
    normalize_etag,
)
from tailup.model import PartRecord, StreamRecord
from tailup.plan import MAX_PARTS, PartPlan, PartRange

if TYPE_CHECKING:
    from tailup.s3 import ObjectInfo, UploadedPart, UploadInfo


class Verdict(enum.Enum):
    CONTINUE = "continue"  # same file: go on from the reconciled checkpoint
    RESTART_UPLOAD = "restart_upload"  # the multipart upload is gone: same stream, from part 1
    REPLACED = "replaced"  # another file has the path now: abort, start a new stream for it
    GONE = "gone"  # the file is gone: abort and record why


@dataclass(frozen=True, slots=True)
class FileFacts:
    """What the stream's path holds now."""

    exists: bool
    device: int = 0
    inode: int = 0
    size: int = 0
    birth_ns: int = 0  # 0: not known (tailup.identity)
    # CRC32 of the bytes where the compared part lies (see compared_part_range), as on disk now;
    # None when no part is compared or the file does not reach its end.
    last_part_crc32: int | None = None


@dataclass(frozen=True, slots=True)
class PartDigest:
    """A part's bytes as on disk now."""

    size: int
    md5_hex: str
    crc32: int
    checksum: str = ""  # its CRC32C or CRC64NVME, for a stream that sends one (tailup.checksums)


@dataclass(frozen=True, slots=True)
class ResumeDecision:
    verdict: Verdict
    reason: str
    forget: tuple[int, ...] = ()  # checkpointed parts S3 does not have: drop, send again
    adopt: tuple[PartRecord, ...] = ()  # parts S3 has and the file matches: checkpoint them
    orphans: tuple[str, ...] = ()  # other uploads of this stream's key: abort them


@dataclass(frozen=True, slots=True)
class Reconciliation:
    keep: tuple[int, ...]
    forget: tuple[int, ...]
    # part number -> (its range in the file now, listed ETags of the right size) to check
    candidates: Mapping[int, tuple[PartRange, tuple[str, ...]]] = field(default_factory=dict)


def part_end(plan: PartPlan, part: PartRecord) -> int:
    return plan.part_start(part.number) + part.size


def compared_part_range(plan: PartPlan, parts: Mapping[int, PartRecord]) -> PartRange | None:
    """Where the highest checkpointed part lies (its recorded size: a final part may be short),
    unless that is part 1, which muxers patch at close."""
    if not parts or max(parts) == 1:
        return None
    last = parts[max(parts)]
    start = plan.part_start(last.number)
    return PartRange(last.number, start, start + last.size)


def judge_file(
    record: StreamRecord, parts: Mapping[int, PartRecord], plan: PartPlan, facts: FileFacts
) -> ResumeDecision | None:
    """GONE or REPLACED with the reason, or None when the path still holds the stream's file."""
    path = record.path
    if not facts.exists:
        return ResumeDecision(Verdict.GONE, f"{path} was gone when tailup started again")
    same_number = (facts.device, facts.inode) == (record.device, record.inode)
    reborn = bool(facts.birth_ns and record.birth_ns and facts.birth_ns != record.birth_ns)
    if not same_number or reborn:
        # Another inode, or the same number handed out again (deleted, then a new file).
        return ResumeDecision(
            Verdict.REPLACED,
            f"{path} is another file than the one being uploaded (replaced while tailup was "
            "not running)",
        )
    if not parts:
        return None
    uploaded = max(part_end(plan, p) for p in parts.values())
    if facts.size < uploaded:
        return ResumeDecision(
            Verdict.REPLACED,
            f"{path} is {facts.size} bytes, shorter than the {uploaded} bytes already uploaded "
            "(truncated or rewritten while tailup was not running)",
        )
    last = compared_part_range(plan, parts)
    if last is not None and facts.last_part_crc32 != parts[last.number].crc32:
        return ResumeDecision(
            Verdict.REPLACED,
            f"{path} changed where part {last.number} was uploaded (bytes {last.start}..{last.end})"
            " (rewritten while tailup was not running)",
        )
    return None


def orphan_uploads(record: StreamRecord, uploads: Iterable[UploadInfo]) -> tuple[str, ...]:
    """Uploads of the stream's key that its checkpoint does not name: created just before a
    crash (CreateMultipartUpload answered, the checkpoint not yet written). Only a key that
    contains the stream's id surely belongs to this stream alone; other keys may be shared by
    templates like ``{name}``, and their orphans are left to ``tailup gc``."""
    if record.stream_id not in record.key:
        return ()
    return tuple(
        u.upload_id for u in uploads if u.key == record.key and u.upload_id != record.upload_id
    )


def expected_range(plan: PartPlan, size: int, number: int) -> PartRange | None:
    """The range part ``number`` covers in a file of ``size`` bytes, if the file holds it whole:
    a full part, or the short final part ending at ``size``."""
    if not 1 <= number <= MAX_PARTS or size <= 0:
        return None
    if number <= plan.full_parts_available(size):
        return plan.part_range(number)
    rng = plan.part_range(number)
    if rng.start < size < rng.end:
        return PartRange(number, rng.start, size)
    return None


def reconcile_parts(
    parts: Mapping[int, PartRecord],
    listed: Sequence[UploadedPart],
    plan: PartPlan,
    size: int,
) -> Reconciliation:
    """Compare the checkpoint with ListParts: keep, forget, or check against the file."""
    versions: dict[int, list[UploadedPart]] = {}
    for item in listed:
        versions.setdefault(item.number, []).append(item)
    keep: list[int] = []
    forget: list[int] = []
    candidates: dict[int, tuple[PartRange, tuple[str, ...]]] = {}
    for number in sorted(set(parts) | set(versions)):
        recorded = parts.get(number)
        listed_here = versions.get(number, [])
        etags = {normalize_etag(v.etag) for v in listed_here}
        if recorded is not None and normalize_etag(recorded.etag) in etags:
            keep.append(number)
            continue
        if recorded is not None:
            forget.append(number)
        rng = expected_range(plan, size, number)
        if rng is None:
            continue
        fitting = tuple(v.etag for v in listed_here if v.size == rng.size)
        if fitting:
            candidates[number] = (rng, fitting)
    return Reconciliation(tuple(keep), tuple(forget), candidates)


def adopt_parts(
    candidates: Mapping[int, tuple[PartRange, tuple[str, ...]]],
    digests: Mapping[int, PartDigest],
    uploaded_at: str,
) -> tuple[PartRecord, ...]:
    """Parts whose listed ETag is the MD5 of the file's bytes for them now (S3's part ETag is the
    plain MD5 of the part)."""
    adopted: list[PartRecord] = []
    for number, (rng, etags) in sorted(candidates.items()):
        digest = digests.get(number)
        if digest is None or digest.size != rng.size:
            continue
        matching = [etag for etag in etags if normalize_etag(etag) == digest.md5_hex]
        if matching:
            adopted.append(
                PartRecord(
                    number, rng.size, digest.crc32, matching[0], uploaded_at, digest.checksum
                )
            )
    return tuple(adopted)


def completed_object_matches(
    parts: Mapping[int, PartRecord],
    plan: PartPlan,
    size: int,
    info: ObjectInfo | None,
    algorithm: ChecksumAlgorithm = ChecksumAlgorithm.CRC32,
) -> bool:
    """True if the object at the key is exactly what completing the checkpointed parts makes for
    a file of ``size`` bytes: CompleteMultipartUpload succeeded before the crash. By its ETag, or
    where the server's ETags say nothing, by its checksum (``info`` from a HEAD that asked for
    it); its size alone proves nothing."""
    if info is None or info.size != size or size <= 0:
        return False
    try:
        layout = plan.final_layout(size)
    except ValueError:
        return False
    found = [parts.get(rng.number) for rng in layout]
    recorded = [p for p, rng in zip(found, layout, strict=True) if p and p.size == rng.size]
    if len(recorded) != len(layout):
        return False
    check, method = check_object_against_parts(
        size=size,
        expected_etag=expected_multipart_etag([p.etag for p in recorded]),
        object_size=info.size,
        object_etag=info.etag,
        reported=info.checksum,
        algorithm=algorithm,
        parts=[p for p in recorded if p is not None],
    )
    return check.ok and method is not VerifiedBy.SIZE


def upload_gone(
    parts: Mapping[int, PartRecord],
    plan: PartPlan,
    size: int,
    info: ObjectInfo | None,
    orphans: tuple[str, ...] = (),
    algorithm: ChecksumAlgorithm = ChecksumAlgorithm.CRC32,
) -> ResumeDecision:
    """The checkpoint names an upload S3 no longer has (NoSuchUpload): the object decides."""
    if completed_object_matches(parts, plan, size, info, algorithm):
        return ResumeDecision(
            Verdict.CONTINUE,
            "the multipart upload was completed just before tailup stopped; finishing the stream",
            orphans=orphans,
        )
    return ResumeDecision(
        Verdict.RESTART_UPLOAD,
        "the multipart upload no longer exists (expired or aborted); sending the file again "
        "from part 1",
        orphans=orphans,
    )


def continue_with(
    reconciliation: Reconciliation,
    adopted: tuple[PartRecord, ...],
    orphans: tuple[str, ...] = (),
) -> ResumeDecision:
    kept, forgotten = len(reconciliation.keep), len(reconciliation.forget)
    reason = f"same file: {kept} checkpointed parts confirmed by S3"
    if adopted:
        reason += f", {len(adopted)} parts S3 had beyond the checkpoint adopted"
    if forgotten:
        reason += f", {forgotten} checkpointed parts missing from S3 will be sent again"
    return ResumeDecision(
        Verdict.CONTINUE,
        reason,
        forget=reconciliation.forget,
        adopt=adopted,
        orphans=orphans,
    )
