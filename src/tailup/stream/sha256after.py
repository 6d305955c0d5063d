"""The whole-file SHA-256 that follows a published object (tailup.hashplan: AFTER), and the
same finished later when it was cut short; and the SHA-256 of an object as S3 holds it, read
back (tailup.salvage: its file is gone).

The object is complete and verified by its CRCs before this runs; only metadata.json's SHA-256
is missing. The file is hashed again part by part, each part's CRC32 checked against the one
sent (bytes that differ mean the recording changed after its completion). A pass that cannot
end (a shutdown, a read error, a stalled mount, a failed write) leaves the record's
``sha256_pending`` set; ``finish_sha256`` completes it when the recording is next looked at
(the supervisor, at an UNCHANGED verdict, before a pending after-upload action).
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import json
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

from tailup.checkpoint import CheckpointStore
from tailup.checksums import part_checksum, stored_checksum
from tailup.errors import SourceError, SourceGone, SourceStalled, TailupError
from tailup.integrity import crc32_of
from tailup.keys import metadata_key
from tailup.metadata import encode_metadata
from tailup.model import PartRecord, StreamRecord
from tailup.objectoptions import ObjectOptions
from tailup.offload import run_blocking
from tailup.s3 import MultipartStore
from tailup.source import hash_range_blocking


class Sha256Result(enum.Enum):
    RECORDED = "recorded"  # in the record and in metadata.json
    CHANGED = "changed"  # the path no longer holds the object's bytes (replaced, gone, changed)
    PENDING = "pending"  # cut short: sha256_pending stays set, finished later


async def hash_parts(
    path: Path, parts: Iterable[PartRecord], device: int, inode: int, *, timeout_s: float
) -> str | None:
    """The SHA-256 of the file as the object's parts, in order; None if a part's bytes (CRC32,
    size) are not those sent. Raises SourceGone (replaced, removed), other SourceErrors and
    SourceStalled."""
    sha = hashlib.sha256()
    offset = 0
    for part in parts:
        got, crc = await run_blocking(
            hash_range_blocking,
            path,
            offset,
            part.size,
            device,
            inode,
            sha,
            timeout_s=timeout_s,
            what=f"hashing part {part.number} of {path}",
        )
        if (got, crc) != (part.size, part.crc32):
            return None
        offset += part.size
    return sha.hexdigest()


async def put_metadata(
    store: MultipartStore, record: StreamRecord, document: dict[str, Any]
) -> None:
    """Write metadata.json beside the object, sent with the stream's checksum and stored as the
    recording is (the ``storage`` section it names, written again the same way)."""
    body = encode_metadata(document)
    crc = crc32_of(body)
    await store.put_object(
        metadata_key(record.key),
        body,
        crc,
        "application/json",
        checksum=part_checksum(record.checksum, crc, stored_checksum(record.checksum, body)),
        options=ObjectOptions.from_summary(document.get("storage")).metadata_object,
    )


async def sha256_of_stored(store: MultipartStore, key: str) -> tuple[str, int]:
    """(SHA-256, size in bytes) of the object at ``key`` as the store holds it: one GET, read in
    chunks where the store streams (S3MultipartStore.iter_object), so that a huge object is never
    held whole; the in-memory store hands its bytes at once. For an object whose file is gone
    (tailup.salvage). Raises the store's TailupErrors."""
    sha, size_bytes = hashlib.sha256(), 0
    reader = getattr(store, "iter_object", None)
    chunks: AsyncIterator[bytes] = reader(key) if reader is not None else _at_once(store, key)
    async for chunk in chunks:
        # Off the event loop (hashlib lets go of the GIL): a daemon's --salvage-after hashes
        # while its own streams upload.
        await asyncio.to_thread(sha.update, chunk)
        size_bytes += len(chunk)
    return sha.hexdigest(), size_bytes


async def _at_once(store: MultipartStore, key: str) -> AsyncIterator[bytes]:
    yield await store.get_object(key)


async def record_sha256(
    store: MultipartStore,
    checkpoints: CheckpointStore,
    record: StreamRecord,
    sha256_hex: str,
    document: dict[str, Any],
) -> None:
    """The SHA-256 into metadata.json (``document``, the one in S3) and the record, which then
    has nothing pending. metadata.json first: a crash between leaves the flag to finish again."""
    document.setdefault("checksums", {})["sha256"] = sha256_hex
    await put_metadata(store, record, document)
    await checkpoints.update(record.stream_id, sha256=sha256_hex, sha256_pending=False)


async def sha256_of_object(
    record: StreamRecord, parts: Iterable[PartRecord], *, timeout_s: float
) -> tuple[Sha256Result, str, str]:
    """(result, the SHA-256 or "", why not)."""
    try:
        digest = await hash_parts(
            Path(record.path), parts, record.device, record.inode, timeout_s=timeout_s
        )
    except SourceGone as exc:
        return Sha256Result.CHANGED, "", str(exc)
    except (SourceError, SourceStalled) as exc:
        return Sha256Result.PENDING, "", str(exc)
    if digest is None:
        return Sha256Result.CHANGED, "", "the file changed after its upload"
    return Sha256Result.RECORDED, digest, ""


async def finish_sha256(
    store: MultipartStore,
    checkpoints: CheckpointStore,
    record: StreamRecord,
    parts: dict[int, PartRecord],
    *,
    timeout_s: float,
) -> Sha256Result:
    """Finish a SHA-256 left pending (``record.sha256_pending``, a COMPLETED record): hash the
    file again, then write it to metadata.json (read back from S3) and the record. CHANGED:
    the file is not the object any more; the flag is dropped (nothing can finish it)."""
    result, digest, _why = await sha256_of_object(
        record, [parts[n] for n in sorted(parts)], timeout_s=timeout_s
    )
    if result is Sha256Result.CHANGED:
        await checkpoints.update(record.stream_id, sha256_pending=False)
        return result
    if result is Sha256Result.PENDING:
        return result
    try:
        document = json.loads(await store.get_object(metadata_key(record.key)))
        if not isinstance(document, dict):
            raise ValueError("metadata.json is not an object")
        await record_sha256(store, checkpoints, record, digest, document)
    except (TailupError, ValueError):
        return Sha256Result.PENDING
    return Sha256Result.RECORDED
