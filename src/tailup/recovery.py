"""What S3 knows of a recording Redis has no record of: Redis lost its data (FLUSHALL, a restart
without persistence, an eviction) or the record expired under --keep-records. S3 is the truth
and Redis a cache of it: before a file with no record is uploaded as a new recording, its key
(from its identity-derived stream id, tailup.identity.stream_id_for) is looked up in S3.

- A metadata.json sidecar of the same stream, size and mtime: the recording is uploaded
  already; its record is written again and nothing is sent.
- Open multipart uploads at the key (ours by construction: the key carries the stream id, or
  was reserved for it): the newest is adopted and resumed (its parts are checked against the
  file, tailup.resume), the others are aborted as orphans.
- Anything else at the key: another recording's; the new one gets another key or id.

The decisions are pure (``judge``); ``look_up`` gathers the facts (a HEAD of the sidecar and a
GET of it when there is one, else a ListMultipartUploads; a HEAD of the key where the template
can name one key for two recordings). Without s3:GetObject only the open uploads are looked up
(tailup.permissions). A recording renamed since its upload has a key with its old name: where
the template puts ``{stream_id}`` before the name, every key of the stream begins with the same
prefix (tailup.keys.stable_prefix), and the uploads and objects under it find it.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from dataclasses import dataclass
from typing import Any

from tailup import permissions
from tailup.checksums import ChecksumAlgorithm, ChecksumType, new_upload_type
from tailup.errors import AccessRefused, StoragePermanentError
from tailup.keys import CARD_SUFFIX, SIDECAR_SUFFIX, metadata_key
from tailup.model import StreamRecord
from tailup.s3 import MultipartStore, UploadInfo


class Found(enum.Enum):
    NOTHING = "nothing"  # S3 has nothing of it: a new upload
    COMPLETED = "completed"  # uploaded and verified: record it, send nothing
    IN_FLIGHT = "in_flight"  # an open multipart upload at its key: adopt it
    OTHER = "other"  # the key holds something else: not this recording's to write over


@dataclass(frozen=True, slots=True)
class Finding:
    found: Found
    reason: str
    sidecar: dict[str, Any] | None = None
    upload_id: str = ""
    orphans: tuple[str, ...] = ()
    # IN_FLIGHT: what S3 says the upload was created with (None: it did not say).
    checksum: ChecksumAlgorithm | None = None
    checksum_type: ChecksumType | None = None
    # COMPLETED, IN_FLIGHT: the key it was found at, where that is not the key asked about (the
    # recording was renamed since; tailup.keys.stable_prefix). "": the key asked about.
    key: str = ""

    def adopt(self, record: StreamRecord) -> StreamRecord:
        """``record`` (made from today's settings) resuming the upload found: with the upload's
        own checksum algorithm and type where S3 names them, since its parts and its Complete
        must use those. Where S3 does not, today's are a guess; a Complete or a part refused
        for its checksum then starts the upload again (tailup.stream: adopted_upload)."""
        algorithm = self.checksum or record.checksum
        kind = self.checksum_type or (
            None if self.checksum is None else new_upload_type(self.checksum)
        )
        return record.with_changes(
            upload_id=self.upload_id,
            adopted_upload=self.upload_id,
            checksum=algorithm,
            checksum_type=record.checksum_type if kind is None else kind.value,
        )


def s3_may_know(
    *,
    born_ns: int,
    started_ns: int,
    now_ns: int,
    keep_records_s: float,
    redis_lost: bool,
) -> bool:
    """Whether a file with no record may be uploaded already. ``born_ns``: its birth time, or
    its mtime where the file system keeps none. A file born since this daemon started, while
    Redis kept its data and younger than --keep-records, was seen from its start: no lookup
    (most new recordings, so they cost no request more)."""
    if redis_lost or born_ns <= 0 or born_ns < started_ns:
        return True
    return keep_records_s > 0 and born_ns < now_ns - int(keep_records_s * 1e9)


def judge(
    *,
    stream_id: str,
    size: int,
    mtime_ns: int,
    key: str,
    sidecar: dict[str, Any] | None,
    object_size: int | None,
    uploads: list[UploadInfo],
) -> Finding:
    if sidecar is not None:
        source = sidecar.get("source", {})
        if not isinstance(source, dict):
            return Finding(Found.OTHER, "the key's metadata.json is not one tailup wrote")
        same = (
            sidecar.get("stream_id") == stream_id
            and sidecar.get("size_bytes") == size
            and object_size == size
            # Sidecars from before mtime was written name no mtime: size and id decide.
            and source.get("mtime_ns", 0) in (0, mtime_ns)
        )
        if same:
            return Finding(
                Found.COMPLETED, "its verified object and metadata.json are in S3", sidecar
            )
        return Finding(Found.OTHER, "the key holds another recording (or an older version)")
    if object_size is not None:
        return Finding(Found.OTHER, "the key holds an object tailup did not describe")
    at_key = sorted((u for u in uploads if u.key == key), key=lambda u: u.initiated)
    # One sent with a checksum tailup does not make (another tool's SHA-256) cannot be resumed.
    mine = [u for u in at_key if not u.foreign_checksum]
    if mine:
        chosen = mine[-1]
        return Finding(
            Found.IN_FLIGHT,
            f"{len(at_key)} open multipart upload(s) at its key",
            upload_id=chosen.upload_id,
            orphans=tuple(u.upload_id for u in at_key if u is not chosen),
            checksum=chosen.checksum,
            checksum_type=chosen.checksum_type,
        )
    if at_key:
        return Finding(
            Found.NOTHING,
            "the open uploads at its key use a checksum tailup does not send",
            orphans=tuple(u.upload_id for u in at_key),
        )
    return Finding(Found.NOTHING, "S3 has nothing at its key")


async def look_up(
    store: MultipartStore,
    key: str,
    stream_id: str,
    size: int,
    mtime_ns: int,
    *,
    check_object: bool = True,
    prefix: str = "",
) -> Finding:
    """Two requests for a file S3 has nothing of (a HEAD of the sidecar, a ListMultipartUploads),
    one more when ``check_object``. Without it (a key that carries the stream id) an object
    there without a sidecar is found at completion instead: If-None-Match refuses it, and the
    ETag tells whether it is this very upload (tailup.stream.finalize).

    ``prefix``: the start of every key the stream may have had (tailup.keys.stable_prefix).
    The open uploads are listed under it rather than under the key, and when S3 has nothing at
    the key, one ListObjectsV2 under it finds the recording under the name it was uploaded as
    (renamed since): one request more for a file S3 has nothing of."""
    sidecar: dict[str, Any] | None = None
    readable = True
    try:
        has_sidecar = await store.head_object(metadata_key(key)) is not None
    except AccessRefused as exc:
        # No s3:GetObject (or, on AWS, no s3:ListBucket for a key that is not there): S3's
        # objects cannot be looked at; its open uploads still can. An object already at the key
        # is never written over: completion is If-None-Match.
        permissions.refused("s3:GetObject", str(exc))
        has_sidecar = check_object = readable = False
    if has_sidecar:
        sidecar = await _sidecar(store, key)
    info = await store.head_object(key) if check_object or sidecar is not None else None
    listed = sidecar is None and info is None
    uploads = await store.list_uploads(prefix or key) if listed else []
    found = judge(
        stream_id=stream_id,
        size=size,
        mtime_ns=mtime_ns,
        key=key,
        sidecar=sidecar,
        object_size=info.size if info is not None else None,
        uploads=uploads,
    )
    if found.found is not Found.NOTHING or found.orphans or not prefix or prefix == key:
        return found
    moved = await _renamed(store, prefix, stream_id, size, mtime_ns, uploads, read_objects=readable)
    return found if moved is None else moved


async def _sidecar(store: MultipartStore, key: str) -> dict[str, Any]:
    try:
        sidecar = json.loads(await store.get_object(metadata_key(key)))
    except (StoragePermanentError, ValueError):
        return {}  # there, but unreadable: not proof of anything but "taken"
    return sidecar if isinstance(sidecar, dict) else {}


# Keys under one stream's prefix: its object and sidecar, a suffixed key's (KeyTaken), an
# earlier name's. More means the prefix is not one stream's.
PREFIX_KEYS_LISTED = 20


async def _renamed(
    store: MultipartStore,
    prefix: str,
    stream_id: str,
    size: int,
    mtime_ns: int,
    uploads: list[UploadInfo],
    *,
    read_objects: bool,
) -> Finding | None:
    """The recording under another key of its stream (renamed since it was uploaded): an open
    upload, or an object with its sidecar. Anything else there is another version of it (OTHER:
    this id is spent). None: S3 has nothing under the prefix, or its objects cannot be read
    (``read_objects`` False: no s3:GetObject)."""
    if uploads:
        newest = max(uploads, key=lambda u: u.initiated).key
        found = judge(
            stream_id=stream_id,
            size=size,
            mtime_ns=mtime_ns,
            key=newest,
            sidecar=None,
            object_size=None,
            uploads=uploads,
        )
        if found.found is Found.IN_FLIGHT:
            return dataclasses.replace(found, key=newest)
    if not read_objects:
        return None
    try:
        objects = await store.list_objects(prefix, limit=PREFIX_KEYS_LISTED)
        # An upload's card (tailup.uploadcard) is no version of the recording: one stays after
        # its upload without s3:DeleteObject.
        listed = {o.key: o.size for o in objects if not o.key.endswith(CARD_SUFFIX)}
    except AccessRefused as exc:
        permissions.refused("s3:ListBucket", str(exc))
        return None
    for name in sorted(listed):
        other = name.removesuffix(SIDECAR_SUFFIX)
        if other == name or other not in listed:
            continue
        found = judge(
            stream_id=stream_id,
            size=size,
            mtime_ns=mtime_ns,
            key=other,
            sidecar=await _sidecar(store, other),
            object_size=listed[other],
            uploads=[],
        )
        if found.found is Found.COMPLETED:
            why = f"{found.reason}, under {other} (renamed since)"
            return dataclasses.replace(found, key=other, reason=why)
    if listed:
        return Finding(Found.OTHER, f"S3 holds another version of this recording under {prefix}")
    return None
