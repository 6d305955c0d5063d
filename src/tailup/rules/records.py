"""The records of recordings, made from facts: pure factories (the clock comes in as ``now``).

A record's ``after_upload_pending`` belongs to the generation that completed: a later generation
starts without it (N3), and the action runs only for a COMPLETED record whose file is still what
was completed (``pending_action_may_run``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from tailup.checksums import ChecksumAlgorithm, ChecksumType, new_upload_type
from tailup.keys import KeyContext, render_key, stable_prefix
from tailup.model import EndCause, StreamRecord, StreamState, iso
from tailup.plan import MAX_PART_SIZE_BYTES, PartSizing

if TYPE_CHECKING:
    from tailup.identity import FileIdentity
    from tailup.source import FileStat


@dataclass(frozen=True, slots=True)
class RecordDefaults:
    """What a new record takes from this daemon's settings."""

    bucket: str
    key_template: str
    prefix: str
    part_size: int
    part_sizing: PartSizing
    checksum: ChecksumAlgorithm
    hostname: str
    node_id: str
    # The largest part a new stream's plan may have (tailup.plan.part_size_cap of the budget).
    max_part_size: int = MAX_PART_SIZE_BYTES


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a file is watched: its folder, the name keys call it by, and its index scope."""

    root: Path
    watch_name: str
    scope: str


def new_record(
    defaults: RecordDefaults,
    place: Placement,
    path: Path,
    st: FileStat,
    seen: FileIdentity,
    stream_id: str,
    now: datetime,
) -> StreamRecord:
    """A new recording's record, generation 1, not yet written anywhere."""
    key = render_key(
        defaults.key_template,
        _key_context(defaults, place, path, stream_id, now),
        prefix=defaults.prefix,
    )
    return StreamRecord(
        stream_id=stream_id,
        path=str(path),
        watch_root=str(place.root),
        bucket=defaults.bucket,
        key=key,
        base_part_size=defaults.part_size,
        part_sizing=defaults.part_sizing,
        max_part_size=defaults.max_part_size,
        checksum=defaults.checksum,
        checksum_type=_type_value(new_upload_type(defaults.checksum)),
        device=st.device,
        inode=st.inode,
        birth_ns=seen.birth_ns,
        inode_generation=seen.generation,
        created_at=iso(now),
        last_activity_at_utc=iso(now),
        owner=defaults.node_id,
        scope=place.scope,
    )


def key_prefix(
    defaults: RecordDefaults, place: Placement, path: Path, stream_id: str, now: datetime
) -> str:
    """The start of every key the stream may have had, under any name of its file
    (tailup.keys.stable_prefix); "" where the template has none."""
    ctx = _key_context(defaults, place, path, stream_id, now)
    return stable_prefix(defaults.key_template, ctx, prefix=defaults.prefix)


def _key_context(
    defaults: RecordDefaults, place: Placement, path: Path, stream_id: str, now: datetime
) -> KeyContext:
    return KeyContext(
        stream_id=stream_id,
        relpath=PurePosixPath(path.relative_to(place.root).as_posix()),
        watch_name=place.watch_name,
        started_at=now,
        hostname=defaults.hostname,
    )


def next_generation(
    prev: StreamRecord, st: FileStat, seen: FileIdentity, now: datetime
) -> StreamRecord:
    """The same recording, uploaded again under its key: it grew after it completed, or came
    back after it vanished. Nothing of the previous generation's end is kept: not its
    completion, and not its pending after-upload action (that file is not in S3 whole now)."""
    at = iso(now)
    return prev.with_changes(
        state=StreamState.UPLOADING,
        generation=prev.generation + 1,
        upload_id="",
        next_part_to_upload=1,
        total_bytes_sent=0,
        error="",
        note="",
        device=st.device,
        inode=st.inode,
        birth_ns=seen.birth_ns,
        inode_generation=seen.generation,
        end_cause=EndCause.NONE,
        path_ended=False,
        after_upload_pending=False,
        created_at=at,
        completed_at="",
        last_activity_at_utc=at,
    )


def completed_from_sidecar(
    record: StreamRecord, st: FileStat, sidecar: dict[str, Any], now: datetime
) -> StreamRecord:
    """The record of a recording S3 has whole (tailup.recovery found its metadata.json)."""
    checksums = sidecar.get("checksums") or {}
    parts = sidecar.get("parts") or [{}]
    first = parts[0] if isinstance(parts[0], dict) else {}
    try:
        head_crc32 = int(str(first.get("crc32", "0")), 16)
    except ValueError:
        head_crc32 = 0
    return record.with_changes(
        state=StreamState.COMPLETED,
        generation=int(sidecar.get("generation") or 1),
        completed_at=str(sidecar.get("finished_at") or iso(now)),
        final_size=st.size,
        final_mtime_ns=st.mtime_ns,
        sha256=str(checksums.get("sha256") or ""),
        etag='"' + str(checksums.get("multipart_etag") or "").strip('"') + '"',
        head_size=int(first.get("size_bytes") or 0),
        head_crc32=head_crc32,
        note="recovered from S3's metadata.json (Redis had no record of it)",
    )


def pending_action_may_run(record: StreamRecord, size: int, mtime_ns: int) -> bool:
    """Whether a record's pending after-upload action may be finished for the file now at its
    path: only a COMPLETED record, and only while the file is what was completed (an aborted,
    failed or later generation's file holds bytes S3 has not got whole)."""
    return (
        record.after_upload_pending
        and record.state is StreamState.COMPLETED
        and (size, mtime_ns) == (record.final_size, record.final_mtime_ns)
    )


def _type_value(kind: ChecksumType | None) -> str:
    return kind.value if kind is not None else ""
