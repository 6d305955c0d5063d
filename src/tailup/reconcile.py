"""Gathering what ``tailup.resume`` decides on: the file, the stream's uploads, its parts in S3.

Thin I/O: every decision is in ``tailup.resume``. Reads happen in worker threads.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from tailup import permissions
from tailup.checksums import ChecksumAlgorithm, crc_of, encode
from tailup.errors import AccessRefused, NoSuchUpload, SourceGone
from tailup.model import PartRecord, StreamRecord, iso, utc_now
from tailup.offload import run_blocking
from tailup.plan import PartPlan, PartRange
from tailup.resume import (
    FileFacts,
    PartDigest,
    ResumeDecision,
    Verdict,
    adopt_parts,
    compared_part_range,
    continue_with,
    judge_file,
    orphan_uploads,
    reconcile_parts,
    upload_gone,
)
from tailup.s3 import MultipartStore
from tailup.source import crc32_of_range_blocking, hash_range_blocking, stat_file

if TYPE_CHECKING:
    from typing_extensions import Buffer  # collections.abc.Buffer from Python 3.12


async def plan_resume(
    store: MultipartStore,
    record: StreamRecord,
    parts: Mapping[int, PartRecord],
    plan: PartPlan,
) -> ResumeDecision:
    facts = await file_facts(record, parts, plan)
    verdict = judge_file(record, parts, plan, facts)
    if verdict is not None:
        return verdict
    orphans = orphan_uploads(record, await store.list_uploads(record.key))
    if not record.upload_id:
        return ResumeDecision(
            Verdict.CONTINUE, "same file; no multipart upload yet", orphans=orphans
        )
    try:
        listed = await store.list_parts(record.key, record.upload_id)
    except NoSuchUpload:
        algorithm = record.checksum
        try:
            info = await store.head_object(
                record.key, checksum=algorithm is not ChecksumAlgorithm.NONE
            )
        except AccessRefused as exc:  # no s3:GetObject: taken as no object (If-None-Match)
            permissions.refused("s3:GetObject", str(exc))
            info = None
        return upload_gone(parts, plan, facts.size, info, orphans, algorithm)
    reconciliation = reconcile_parts(parts, listed, plan, facts.size)
    digests = await _digests(record, [rng for rng, _ in reconciliation.candidates.values()])
    adopted = adopt_parts(reconciliation.candidates, digests, iso(utc_now()))
    return continue_with(reconciliation, adopted, orphans)


async def file_facts(
    record: StreamRecord, parts: Mapping[int, PartRecord], plan: PartPlan
) -> FileFacts:
    path = Path(record.path)
    try:
        st = await run_blocking(stat_file, path, what=str(path))
    except SourceGone:
        return FileFacts(exists=False)
    crc: int | None = None
    last = compared_part_range(plan, parts)
    same = st.same_file(record.device, record.inode, record.birth_ns)
    if same and last is not None and st.size >= last.end:
        got, crc_now = await run_blocking(
            crc32_of_range_blocking, path, last.start, last.size, st.device, st.inode
        )
        crc = crc_now if got == last.size else None
    return FileFacts(True, st.device, st.inode, st.size, birth_ns=st.birth_ns, last_part_crc32=crc)


async def _digests(record: StreamRecord, ranges: list[PartRange]) -> dict[int, PartDigest]:
    digests: dict[int, PartDigest] = {}
    for rng in ranges:
        digests[rng.number] = await run_blocking(
            digest_range_blocking,
            Path(record.path),
            rng,
            record.device,
            record.inode,
            record.checksum,
            what=f"reading part {rng.number} of {record.path}",
        )
    return digests


class _PartHashes:
    """The MD5 (a part's ETag) and the stored CRC of the bytes fed to it, as they go by."""

    def __init__(self, algorithm: ChecksumAlgorithm) -> None:
        self.algorithm = algorithm
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.crc = 0

    def update(self, data: Buffer, /) -> None:
        self.md5.update(data)
        if self.algorithm.stored:
            self.crc = crc_of(self.algorithm, data, self.crc)


def digest_range_blocking(
    path: Path, rng: PartRange, device: int, inode: int, algorithm: ChecksumAlgorithm
) -> PartDigest:
    """A part's digest (what S3 holds is compared with it), read through the small buffer of
    this thread (tailup.source.hash_range_blocking): a resume that compares whole parts holds
    no part-sized buffer outside the memory budget, however large its parts."""
    hashes = _PartHashes(algorithm)
    got, crc = hash_range_blocking(path, rng.start, rng.size, device, inode, hashes)
    stored = encode(algorithm, hashes.crc) if algorithm.stored else ""
    return PartDigest(got, hashes.md5.hexdigest(), crc, stored)
