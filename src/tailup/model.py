"""Stream and part records, the stream state machine. Pure: no I/O."""

from __future__ import annotations

import enum
import json
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any

from tailup.checksums import ChecksumAlgorithm
from tailup.plan import PartSizing


class StreamState(enum.Enum):
    UPLOADING = "uploading"  # parts are sent as the file grows
    STALLED = "stalled"  # a retryable fault (S3 or Redis unreachable, throttled): backing off
    FINALIZING = "finalizing"  # the writer is done: tail, verify pass, complete, metadata
    COMPLETED = "completed"  # verified object and metadata.json in S3
    SKIPPED = "skipped"  # nothing to upload (the file was closed empty)
    FAILED = "failed"  # a permanent error; the reason is in `error`
    ABORTED = "aborted"  # the source went away or a user aborted; the upload was aborted
    # Its node died with its file: `tailup salvage` completed the parts S3 held (a prefix of the
    # recording, described by a metadata.json that says so). Its file coming back is uploaded
    # whole over it (a new generation, same key).
    SALVAGED = "salvaged"

    @property
    def is_live(self) -> bool:
        """Being uploaded: its file is read and its parts sent."""
        return self in LIVE_STATES

    @property
    def is_resumable(self) -> bool:
        """Taken up again by the next start (the live set): live, or failed and retried."""
        return self in RESUMABLE_STATES


class EndCause(enum.Enum):
    """Why a stream ended ABORTED: only an operator's abort sticks; a file that vanished and
    comes back is uploaded again."""

    NONE = ""
    OPERATOR = "operator"  # `tailup abort`
    SOURCE_GONE = "source_gone"  # the file or its folder vanished before the upload completed
    REPLACED = "replaced"  # its path held another file, or its bytes were rewritten from byte 0


LIVE_STATES = frozenset({StreamState.UPLOADING, StreamState.STALLED, StreamState.FINALIZING})
# A failed stream keeps its upload and parts and is retried on a long back-off (and at start).
RESUMABLE_STATES = LIVE_STATES | {StreamState.FAILED}

_ALLOWED: dict[StreamState, frozenset[StreamState]] = {
    StreamState.UPLOADING: frozenset(
        {
            StreamState.STALLED,
            StreamState.FINALIZING,
            StreamState.FAILED,
            StreamState.ABORTED,
            StreamState.SALVAGED,
        }
    ),
    StreamState.STALLED: frozenset(
        {
            StreamState.UPLOADING,
            StreamState.FINALIZING,
            StreamState.FAILED,
            StreamState.ABORTED,
            StreamState.SALVAGED,
        }
    ),
    StreamState.FINALIZING: frozenset(
        {
            StreamState.COMPLETED,
            StreamState.SKIPPED,
            StreamState.UPLOADING,  # the file changed again while finalizing
            StreamState.STALLED,
            StreamState.FAILED,
            StreamState.ABORTED,
            StreamState.SALVAGED,
        }
    ),
    # A completed or skipped file that changes later is uploaded again (a new generation).
    StreamState.COMPLETED: frozenset({StreamState.UPLOADING}),
    StreamState.SKIPPED: frozenset({StreamState.UPLOADING}),
    StreamState.SALVAGED: frozenset({StreamState.UPLOADING}),
    StreamState.FAILED: frozenset(
        {
            StreamState.UPLOADING,
            StreamState.STALLED,
            StreamState.FINALIZING,
            StreamState.ABORTED,
            StreamState.SALVAGED,
        }
    ),
    StreamState.ABORTED: frozenset(),
}


# What `tailup salvage` takes over: a stream its daemon was still uploading.
SALVAGEABLE_STATES = RESUMABLE_STATES

# A meta field that `tailup retry` sets to ask a failed stream to try again now.
RETRY_FIELD = "retry_requested_at"


class InvalidTransition(ValueError):
    pass


class PartialRecord(ValueError):
    """A stream hash that is not a whole record: skipped, with a log line, never loaded."""


REQUIRED_FIELDS = ("stream_id", "path", "base_part_size")


def check_transition(current: StreamState, target: StreamState) -> None:
    if target != current and target not in _ALLOWED[current]:
        raise InvalidTransition(f"a stream cannot go from {current.value} to {target.value}")


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime | None) -> str:
    return moment.isoformat() if moment else ""


def parse_iso(text: str) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


@dataclass(frozen=True, slots=True)
class PartRecord:
    """A part S3 acknowledged: what is needed to complete the upload and to detect a change."""

    number: int
    size: int
    # Of the bytes sent: what tells whether the part changed since. Also its x-amz-checksum-crc32
    # when the stream's checksum is crc32 (tailup.checksums).
    crc32: int
    etag: str  # as S3 returned it, quotes included
    uploaded_at: str = ""
    # The CRC32C or CRC64NVME it was sent with (base64), for a stream with that --checksum: named
    # again in CompleteMultipartUpload. "" otherwise.
    checksum: str = ""

    def to_json(self) -> str:
        data: dict[str, Any] = {
            "etag": self.etag,
            "size": self.size,
            "crc32": self.crc32,
            "at": self.uploaded_at,
        }
        if self.checksum:
            data["checksum"] = self.checksum
        return json.dumps(data)

    @classmethod
    def from_json(cls, number: int, text: str) -> PartRecord:
        data = json.loads(text)
        return cls(
            number,
            int(data["size"]),
            int(data["crc32"]),
            str(data["etag"]),
            data["at"],
            str(data.get("checksum", "")),
        )


@dataclass(frozen=True, slots=True)
class StreamRecord:
    """The meta hash of a stream, as stored in the checkpoint store."""

    stream_id: str
    path: str
    watch_root: str
    bucket: str
    key: str
    base_part_size: int
    # How part sizes go on from the base (tailup.plan), kept for the stream's whole life like the
    # base part size. Records older than the setting are growing, the only plan they knew.
    part_sizing: PartSizing = PartSizing.GROWING
    # No part grows past this (the memory budget it started under: tailup.plan.part_size_cap),
    # kept for the stream's life too. 0 in records from before: S3's 5 GiB.
    max_part_size: int = 0
    # The checksum its parts are sent with (--checksum, tailup.checksums): its multipart upload was
    # created for it, so it too is kept for the stream's life. Older records: crc32.
    checksum: ChecksumAlgorithm = ChecksumAlgorithm.CRC32
    # Its upload's ChecksumType (tailup.checksums.effective_type): "" in records from before.
    checksum_type: str = ""
    state: StreamState = StreamState.UPLOADING
    upload_id: str = ""
    next_part_to_upload: int = 1
    total_bytes_sent: int = 0
    last_activity_at_utc: str = ""
    error: str = ""
    # Something worth knowing that is not a failure (the file shrank while being uploaded).
    note: str = ""
    device: int = 0
    inode: int = 0
    # What tells a reused inode number apart (tailup.identity): 0 / -1 when not kept.
    birth_ns: int = 0
    inode_generation: int = -1
    generation: int = 1
    created_at: str = ""
    completed_at: str = ""
    # Set at completion, to recognise an unchanged file after a restart.
    final_size: int = 0
    final_mtime_ns: int = 0
    sha256: str = ""
    etag: str = ""
    # The uploaded first part (or the whole of a one-request upload): an O_TRUNC rewrite of the
    # file changes it (tailup.identity). head_size 0: not known.
    head_size: int = 0
    head_crc32: int = 0
    end_cause: EndCause = EndCause.NONE
    # A delete or a rename away was seen at ``path`` after this stream ended: the next file
    # there is not this recording unless its identity says so.
    path_ended: bool = False
    # The after-upload action (delete, move) is still to be done: its writer was not known gone
    # yet, or a shutdown cut it off.
    after_upload_pending: bool = False
    # ``key`` is the template's, not yet claimed (tailup.keyclaim): the stream claims it before
    # anything else, so that a key it cannot get fails the stream where `tailup status` shows it
    # and `tailup retry` reaches it.
    key_pending: bool = False
    # The multipart upload adopted from S3 (tailup.recovery) rather than created by this
    # record: a Complete or a part refused for its checksum starts the upload again.
    adopted_upload: str = ""
    # The SHA-256 that follows publication (tailup.hashplan AFTER) is not in the record and
    # metadata.json yet: cut short (a shutdown, a read error, a failed write), it is finished
    # when the recording is next looked at (tailup.stream.sha256after.finish_sha256).
    sha256_pending: bool = False
    # Its writer's close was seen before it completed: where /proc cannot see every writer (a
    # container, --poll), local retention trusts "no writer visible" only then, as the
    # after-upload action does (tailup.rules.writers.may_act).
    close_seen: bool = False
    # The node that uploads it (tailup.keys.node_scope) and the index it is in: the node's own
    # (``node:ID``) or a shared folder's (``share:NAME``). Empty in records older than nodes.
    owner: str = ""
    scope: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def to_hash(self) -> dict[str, str]:
        data = asdict(self)
        data.pop("extra")
        out = {k: encode_field(v) for k, v in data.items()}
        out.update(self.extra)
        return out

    @classmethod
    def from_hash(cls, data: dict[str, str]) -> StreamRecord:
        """Raises PartialRecord when fields a record cannot lack are missing (Redis lost the
        record and something wrote a few fields of it since) or a value does not parse."""
        missing = [name for name in REQUIRED_FIELDS if not data.get(name)]
        if missing:
            raise PartialRecord(f"the record lacks {', '.join(missing)}")
        try:
            return cls._from_complete_hash(data)
        except (ValueError, TypeError) as exc:
            raise PartialRecord(f"the record does not parse: {exc}") from exc

    @classmethod
    def _from_complete_hash(cls, data: dict[str, str]) -> StreamRecord:
        kwargs: dict[str, Any] = {}
        known = {f.name: f for f in fields(cls)}
        for name, value in data.items():
            spec = known.get(name)
            if spec is None or name == "extra":
                continue
            if name == "state":
                kwargs[name] = StreamState(value)
            elif name == "end_cause":
                kwargs[name] = EndCause(value)
            elif name == "part_sizing":
                kwargs[name] = PartSizing(value)
            elif name == "checksum":
                kwargs[name] = ChecksumAlgorithm(value)
            elif spec.type in ("bool", bool):
                kwargs[name] = value == "1"
            elif spec.type in ("int", int):
                kwargs[name] = int(value or 0)
            else:
                kwargs[name] = value
        kwargs["extra"] = {k: v for k, v in data.items() if k not in known}
        return cls(**kwargs)

    def with_changes(self, **changes: Any) -> StreamRecord:
        return replace(self, **changes)


def encode_field(value: object) -> str:
    """A record field as stored in the Redis hash (bools as 1/0, enums by value)."""
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def lowest_gap(part_numbers: set[int] | frozenset[int]) -> int:
    """Next part to upload when parts complete out of order: the lowest missing number."""
    number = 1
    while number in part_numbers:
        number += 1
    return number
