"""What a recording is over time, decided in one place. Pure: the supervisor gathers the facts
(tailup.source: statx, the inode generation, a read of the file's first part) and hands them in.

A recording is one *inode life*: the file a recorder created, from its creation until it is
deleted. A path is only where a recording is now:

- ``(device, inode)`` alone does not name a life: ext4 hands a freed inode number out again when a
  create follows the delete within ~0.5 s. The life is told apart by what the kernel sets anew
  at every allocation: the birth time (``statx`` btime) and the inode generation
  (``FS_IOC_GETVERSION``), whichever the file system keeps. Where it keeps neither (some network
  file systems), a delete seen at the path ends the recording there.
- A rename carries the recording (the supervisor moves its stream and its path entry).
- ``O_TRUNC`` (``ffmpeg -y`` over an existing file) keeps the inode, its birth time and its
  generation, and writes new bytes from byte 0: a file that got *shorter* than what was uploaded,
  or whose first part's bytes differ from what was uploaded, is a new recording, with a key of its
  own. A file at least as long as what was uploaded, with the same first part, *grew*: the same
  recording, uploaded again under the same key (a new generation of its stream).

The first part is compared, not a few bytes of it: the start of a container (an MP4's ``ftyp``, a
TS's PAT) is the same for every recording a recorder makes, while the first part (>= 5 MiB)
holds the recording's own frames.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass

from tailup.model import EndCause, StreamRecord, StreamState


@dataclass(frozen=True, slots=True)
class FileIdentity:
    """Who a file is. ``birth_ns`` 0 and ``generation`` -1 mean "not kept by the file system"."""

    device: int
    inode: int
    birth_ns: int = 0
    generation: int = -1


class Life(enum.Enum):
    SAME = "same"  # the same inode life
    OTHER = "other"  # another file (another inode, or the inode number reused)
    UNKNOWN = "unknown"  # the same inode number; the file system keeps nothing that tells more


def same_life(recorded: FileIdentity, seen: FileIdentity) -> Life:
    if (recorded.device, recorded.inode) != (seen.device, seen.inode):
        return Life.OTHER
    told = False
    if recorded.birth_ns and seen.birth_ns:
        if recorded.birth_ns != seen.birth_ns:
            return Life.OTHER
        told = True
    if recorded.generation >= 0 and seen.generation >= 0:
        if recorded.generation != seen.generation:
            return Life.OTHER
        told = True
    return Life.SAME if told else Life.UNKNOWN


def stream_id_for(scope: str, identity: FileIdentity, *, life: int = 0) -> str:
    """A recording's stream id, derived from who the file is, so that the same recording gets the
    same id (and, with the default key template, the same key) after Redis lost its record or
    the record expired: S3 is then asked about that key (tailup.recovery). ``life`` counts up
    when the id is taken by another recording (an inode reused where the file system keeps no
    birth time or generation, a file rewritten from byte 0).

    In a node's own folders the device is part of the identity. In a shared folder it is not:
    each NFS client sees another ``st_dev`` for the same file, while the inode number (the NFS
    file id) and birth time are the server's, and the same for every node."""
    device = identity.device if scope.startswith("node:") else 0
    text = "\0".join(
        str(v)
        for v in (scope, device, identity.inode, identity.birth_ns, identity.generation, life)
    )
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8).hexdigest()


def needs_generation(recorded: FileIdentity, seen: FileIdentity) -> bool:
    """Whether the inode generation must be read to tell the lives apart: the birth time
    cannot (missing on either side) and the record has a generation to compare."""
    if (recorded.device, recorded.inode) != (seen.device, seen.inode):
        return False
    return recorded.generation >= 0 and not (recorded.birth_ns and seen.birth_ns)


def record_identity(record: StreamRecord) -> FileIdentity:
    return FileIdentity(record.device, record.inode, record.birth_ns, record.inode_generation)


class Seen(enum.Enum):
    """What a file found at a path is, given the path's latest record."""

    NEW = "new"  # a new recording: a new stream with a key of its own
    RESUME = "resume"  # the live (or failed, retrying) stream of this very file: resume it
    UNCHANGED = "unchanged"  # nothing to do
    GREW = "grew"  # the same recording, changed after it completed: upload it again, same key
    RESTART = "restart"  # the same recording, whose upload ended when the file vanished: again
    CHECK_HEAD = "check_head"  # undecided: compare the file's first part, then ask again


@dataclass(frozen=True, slots=True)
class FileNow:
    identity: FileIdentity
    size: int
    mtime_ns: int


@dataclass(frozen=True, slots=True)
class Judgement:
    seen: Seen
    reason: str


def judge_file(
    previous: StreamRecord | None,
    now: FileNow,
    *,
    head_unchanged: bool | None = None,
) -> Judgement:
    """What the file at ``previous.path`` is. ``head_unchanged``: whether its first part's bytes
    are those uploaded as part 1 (None: not compared yet; CHECK_HEAD asks for it)."""
    if previous is None:
        return Judgement(Seen.NEW, "no recording was known at this path")
    life = same_life(record_identity(previous), now.identity)
    if life is Life.OTHER:
        return Judgement(Seen.NEW, "another file than the path's last recording")
    if life is Life.UNKNOWN and previous.path_ended:
        # Nothing but the bytes can tell the inode's new life from a file moved back.
        if head_unchanged is None:
            return _check_head(previous, "the path's last recording was deleted")
        if not head_unchanged:
            return Judgement(Seen.NEW, "a new file where a deleted recording was")
    state = previous.state
    if state.is_live or state is StreamState.FAILED:
        return Judgement(Seen.RESUME, f"the file of a {state.value} stream")
    if state is StreamState.SKIPPED:
        if now.size == 0:
            return Judgement(Seen.UNCHANGED, "still empty")
        return Judgement(Seen.GREW, "written to after it was closed empty")
    if state is StreamState.COMPLETED:
        return _judge_completed(previous, now, head_unchanged)
    if state is StreamState.SALVAGED:
        return _judge_salvaged(previous, now, head_unchanged)
    # ABORTED
    if previous.end_cause is EndCause.REPLACED:
        return Judgement(Seen.NEW, "its recording ended when the file was rewritten or replaced")
    if previous.end_cause is EndCause.OPERATOR:
        if head_unchanged is False:
            return Judgement(Seen.NEW, "rewritten from byte 0 after an operator aborted it")
        return Judgement(Seen.UNCHANGED, "aborted by an operator (`tailup abort` sticks)")
    if head_unchanged is None and previous.total_bytes_sent > 0:
        return _check_head(previous, "its upload ended when the file vanished")
    if head_unchanged is False:
        return Judgement(Seen.NEW, "came back rewritten from byte 0")
    return Judgement(Seen.RESTART, "the file came back after its upload was given up")


def _judge_completed(previous: StreamRecord, now: FileNow, head: bool | None) -> Judgement:
    if (now.size, now.mtime_ns) == (previous.final_size, previous.final_mtime_ns):
        return Judgement(Seen.UNCHANGED, "unchanged since its upload completed")
    if now.size < previous.final_size:
        return Judgement(
            Seen.NEW,
            f"{now.size} bytes, shorter than the {previous.final_size} uploaded: rewritten",
        )
    if head is None:
        return _check_head(previous, "changed since its upload completed")
    if not head:
        return Judgement(Seen.NEW, "its first part differs from the uploaded one: rewritten")
    return Judgement(Seen.GREW, "grew after its upload completed (first part unchanged)")


def _judge_salvaged(previous: StreamRecord, now: FileNow, head: bool | None) -> Judgement:
    """Its node came back with its file: the whole recording goes over the salvaged prefix
    (a new generation, same key), unless the file is shorter than that prefix or starts with
    other bytes (rewritten: a recording of its own)."""
    if now.size < previous.final_size:
        return Judgement(
            Seen.NEW,
            f"{now.size} bytes, shorter than the {previous.final_size} salvaged: rewritten",
        )
    if head is None:
        return _check_head(previous, "the file of a salvaged recording came back")
    if not head:
        return Judgement(Seen.NEW, "its first part differs from the salvaged one: rewritten")
    return Judgement(
        Seen.GREW, "the file of a salvaged recording came back: uploaded whole over the prefix"
    )


def _check_head(previous: StreamRecord, why: str) -> Judgement:
    return Judgement(Seen.CHECK_HEAD, f"{why}: comparing its first part with the uploaded one")
