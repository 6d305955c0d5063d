"""Gathering what ``tailup.resume`` decides on: the file, the stream's uploads, its parts in S3.

Thin I/O: every decision is in ``tailup.resume``. Reads happen in worker threads.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Mapping
from pathlib import Path

from tailup.body import PartBody
from tailup.errors import NoSuchUpload, SourceGone
from tailup.integrity import crc32_of
from tailup.model import PartRecord, StreamRecord, iso, utc_now
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
from tailup.source import read_range, stat_file


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
        info = await store.head_object(record.key)
        return upload_gone(parts, plan, facts.size, info, orphans)
    reconciliation = reconcile_parts(parts, listed, plan, facts.size)
    digests = await _digests(record, [rng for rng, _ in reconciliation.candidates.values()])
    adopted = adopt_parts(reconciliation.candidates, digests, iso(utc_now()))
    return continue_with(reconciliation, adopted, orphans)


async def file_facts(
    record: StreamRecord, parts: Mapping[int, PartRecord], plan: PartPlan
) -> FileFacts:
    path = Path(record.path)
    try:
        st = stat_file(path)
    except SourceGone:
        return FileFacts(exists=False)
    crc: int | None = None
    last = compared_part_range(plan, parts)
    if st.same_file(record.device, record.inode) and last is not None and st.size >= last.end:
        data = await read_range(path, last.start, last.size, device=st.device, inode=st.inode)
        crc = crc32_of(data) if len(data) == last.size else None
    return FileFacts(True, st.device, st.inode, st.size, crc)


async def _digests(record: StreamRecord, ranges: list[PartRange]) -> dict[int, PartDigest]:
    digests: dict[int, PartDigest] = {}
    for rng in ranges:
        data = await read_range(
            Path(record.path), rng.start, rng.size, device=record.device, inode=record.inode
        )
        digests[rng.number] = await asyncio.to_thread(_digest, data)
    return digests


def _digest(data: PartBody) -> PartDigest:
    # Runs in a worker thread: hashlib and zlib release the GIL on large buffers.
    return PartDigest(
        len(data), hashlib.md5(data, usedforsecurity=False).hexdigest(), crc32_of(data)
    )
