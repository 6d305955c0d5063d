"""The metadata.json of a salvaged object (tailup.salvage): tailup.metadata's document, plus
what salvage made of the upload."""

from __future__ import annotations

import socket
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tailup.checksums import effective_type
from tailup.metadata import build_metadata
from tailup.model import PartRecord, iso
from tailup.rules.salvage import PartChoice, Playability
from tailup.stream.publish import whole_object_checksum
from tailup.verify import checkable_whole_checksum

if TYPE_CHECKING:
    from tailup.salvage import Candidate


def salvaged_document(
    candidate: Candidate,
    choice: PartChoice,
    etag: str,
    playable: Playability,
    why: str,
    now: datetime,
) -> dict[str, Any]:
    """metadata.json of a salvaged object: tailup.metadata's document of its parts, saying
    ``salvaged``, how many bytes, why, and whether the container plays cut short."""
    record = candidate.record
    known = _known(candidate, choice)
    parts = [known.get(p.number) or PartRecord(p.number, p.size, 0, p.etag) for p in choice.parts]
    document = build_metadata(
        stream_id=record.stream_id,
        source_path=Path(record.path),
        bucket=record.bucket,
        key=record.key,
        size_bytes=choice.size_bytes,
        sha256_hex="",
        etag=etag,
        parts=parts,
        started_at=record.created_at,
        finished_at=iso(now),
        upload_duration_s=0.0,
        finalize_duration_s=0.0,
        generation=record.generation,
        media=None,
        inode=record.inode,
        birth_ns=record.birth_ns,
        node_id=record.owner,
        checksum=record.checksum,
        verified_by="salvage",
        object_checksum=whole_checksum(candidate, choice),
    )
    for listed, part in zip(document["parts"], parts, strict=True):
        if part.number not in known:
            listed["crc32"] = None  # not known from S3 alone
    document["salvaged"] = True
    document["salvage"] = {
        "upload_id": record.upload_id,
        "bytes": choice.size_bytes,
        "parts_used": len(choice.parts),
        "parts_left_out": list(choice.left_out),
        "why": "its node and file are gone: the parts S3 held, completed as a prefix of "
        "the recording" + (f" ({why})" if why else ""),
        "plays_truncated": playable.plays.value,
        "playability": playable.why,
        "container": playable.container,
        "found_by": "upload card (Redis had no record)" if candidate.from_card else "Redis",
        "salvaged_at": iso(now),
        "salvaged_by": socket.gethostname(),
    }
    return document


def reads_back(candidate: Candidate, choice: PartChoice) -> bool:
    """Whether salvage reads the completed object back for its SHA-256: metadata.json would
    name no whole-object checksum `tailup verify` checks every byte against (a part's CRC is
    unknown: Redis never checkpointed it, and SeaweedFS lists none; or the upload is from
    before FULL_OBJECT ones)."""
    return checkable_whole_checksum(whole_checksum(candidate, choice)) is None


def sha256_wanted(document: dict[str, Any]) -> bool:
    """A salvaged metadata.json naming nothing that checks every byte: no SHA-256 yet, no
    checkable whole-object checksum (a run cut short before it read the object back)."""
    checksums = document.get("checksums")
    if not isinstance(checksums, dict):
        return False
    return not checksums.get("sha256") and checkable_whole_checksum(checksums.get("object")) is None


def whole_checksum(candidate: Candidate, choice: PartChoice) -> dict[str, str] | None:
    """The whole object's checksum, combined from the checkpointed parts' (as publish does):
    what `tailup verify` checks the salvaged object against; None unless Redis checkpointed
    every part chosen."""
    known = _known(candidate, choice)
    if len(known) != len(choice.parts):
        return None
    record = candidate.record
    parts = [known[p.number] for p in choice.parts]
    kind = effective_type(record.checksum, record.checksum_type)
    whole = whole_object_checksum(record, kind, parts)
    if whole is None or kind is None:
        return None
    return {"algorithm": whole.algorithm.value, "type": kind.value, "value": whole.value}


def _known(candidate: Candidate, choice: PartChoice) -> dict[int, PartRecord]:
    """The parts chosen that Redis checkpointed (the same ETag): their CRCs are known."""
    return {
        n: p
        for n, p in candidate.parts.items()
        if any(c.number == n and _same(c.etag, p.etag) for c in choice.parts)
    }


def _same(a: str, b: str) -> bool:
    return a.strip('"') == b.strip('"')
