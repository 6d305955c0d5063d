"""Local retention (--keep-local, --min-free; issue 20.1): which local recordings to delete, in
which order, and why the others wait. Pure: no I/O (tailup.retention carries it out).

Only a recording tailup completed and verified may go: its record COMPLETED, the object in S3
still the one the record describes (size and ETag, asked again just before the delete), the path
still holding the very file uploaded (tailup.sameupload), inside a watched folder, and its writer
known gone (tailup.rules.writers: where /proc cannot see every writer, "none visible" is UNKNOWN
and the file waits). Oldest completed first: what is older than its keep-local duration, then,
on a file system with less free space than --min-free, as many as bring it back above.

The keep-local duration is each recording's own (``Candidate.keep_local_s``): its folder's
``keep_local`` (a [[watch]] table's, else --keep-local), so one sweep serves folders of different
retention. --min-free stays one setting: free space is a file system's, not a folder's.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from tailup.integrity import normalize_etag
from tailup.model import StreamRecord, StreamState
from tailup.rules.writers import Writer
from tailup.units import SIZE_FORM, parse_size

PERCENT_FORM = "a percentage of the file system like 15%"
MIN_FREE_FORM = f"{SIZE_FORM} (like 10GiB), or {PERCENT_FORM}"
_PERCENT_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


@dataclass(frozen=True, slots=True)
class MinFree:
    """--min-free: bytes, or a percentage of the file system's size (0: off)."""

    size_bytes: int = 0
    percent: float = 0.0

    @property
    def off(self) -> bool:
        return self.size_bytes == 0 and self.percent == 0

    def bytes_of(self, total_bytes: int) -> int:
        if self.percent:
            return int(total_bytes * self.percent / 100)
        return self.size_bytes


def parse_min_free(text: object) -> MinFree:
    """``10GiB``, ``500MB``, ``15%``; "", "0" and "off" turn it off. ValueError naming the forms."""
    if isinstance(text, MinFree):
        return text
    if isinstance(text, str) and text.strip().lower() in ("", "off", "0"):
        return MinFree()
    if isinstance(text, str) and "%" in text:
        match = _PERCENT_RE.match(text)
        percent = float(match.group(1)) if match else -1.0
        if not 0 < percent < 100:
            raise ValueError(f"{text!r} is not {MIN_FREE_FORM}; a percentage is above 0, below 100")
        return MinFree(percent=percent)
    try:
        return MinFree(size_bytes=parse_size(text))
    except ValueError:
        raise ValueError(f"{text!r} is not {MIN_FREE_FORM}") from None


class Wait(enum.Enum):
    """Why a recording that is due stays on disk."""

    NOT_VERIFIED = "its upload is not verified"
    OBJECT_CHANGED = "the object in S3 is not the one recorded"
    WRITER = "a writer may still hold it"
    NOT_THE_UPLOAD = "the path no longer holds the file uploaded"
    OUTSIDE = "it is outside the watched folders"
    BEING_UPLOADED = "a stream is uploading it again"


class Why(enum.Enum):
    AGE = "older than its folder's keep_local"
    SPACE = "free space below --min-free"


@dataclass(frozen=True, slots=True)
class Candidate:
    """One completed recording's local file, as the sweep found it."""

    stream_id: str
    path: str
    device: int  # the file system it is on (its free space decides --min-free)
    completed_at_s: float  # unix time
    size_bytes: int
    verified: bool  # record COMPLETED with a size and ETag, and S3 agreed when last asked
    writer: Writer
    inside: bool = True
    holds_upload: bool = True
    being_uploaded: bool = False
    object_changed: bool = False  # S3 answered, before a delete, with another object
    # Its folder's keep_local (0: off for it); None: the policy's (--keep-local).
    keep_local_s: float | None = None

    def keep_local_of(self, policy: Policy) -> float:
        return policy.keep_local_s if self.keep_local_s is None else self.keep_local_s

    @property
    def wait(self) -> Wait | None:
        """Why it may not be deleted now; None: it may."""
        for reason, holds in (
            (Wait.OUTSIDE, not self.inside),
            (Wait.NOT_VERIFIED, not self.verified),
            (Wait.OBJECT_CHANGED, self.object_changed),
            (Wait.NOT_THE_UPLOAD, not self.holds_upload),
            (Wait.BEING_UPLOADED, self.being_uploaded),
            (Wait.WRITER, self.writer is not Writer.CLOSED),
        ):
            if holds:
                return reason
        return None


@dataclass(frozen=True, slots=True)
class Disk:
    free_bytes: int
    total_bytes: int


@dataclass(frozen=True, slots=True)
class Policy:
    keep_local_s: float = 0.0  # --keep-local, of a recording without its own; 0: off
    min_free: MinFree = field(default_factory=MinFree)

    @property
    def off(self) -> bool:
        return self.keep_local_s <= 0 and self.min_free.off


def sweeps_needed(policy: Policy, folders_keep_local_s: Iterable[float]) -> bool:
    """Whether the sweep has anything to do: --min-free is on, or a watched folder has a
    keep_local (each folder's, its table's or --keep-local: the global one alone is no folder's
    when every table sets its own)."""
    return not policy.min_free.off or any(keep_s > 0 for keep_s in folders_keep_local_s)


@dataclass(frozen=True, slots=True)
class Plan:
    deletes: tuple[tuple[Candidate, Why], ...] = ()
    waiting: tuple[tuple[Candidate, Wait], ...] = ()
    # Per device: bytes still missing to reach --min-free once every planned delete is done.
    short_bytes: dict[int, int] = field(default_factory=dict)


def plan(
    candidates: Iterable[Candidate],
    *,
    now_s: float,
    policy: Policy,
    disks: dict[int, Disk],
) -> Plan:
    """The deletes, oldest completed first, and the due recordings that must wait (and why)."""
    deficit = {
        device: max(0, policy.min_free.bytes_of(disk.total_bytes) - disk.free_bytes)
        for device, disk in disks.items()
    }
    deletes: list[tuple[Candidate, Why]] = []
    waiting: list[tuple[Candidate, Wait]] = []
    for cand in sorted(candidates, key=lambda c: (c.completed_at_s, c.stream_id)):
        why = _due(cand, now_s, policy, deficit.get(cand.device, 0))
        if why is None:
            continue
        wait = cand.wait
        if wait is not None:
            waiting.append((cand, wait))
            continue
        deletes.append((cand, why))
        if cand.device in deficit:
            deficit[cand.device] = max(0, deficit[cand.device] - cand.size_bytes)
    short = {device: missing for device, missing in deficit.items() if missing}
    return Plan(tuple(deletes), tuple(waiting), short)


def _due(cand: Candidate, now_s: float, policy: Policy, deficit_bytes: int) -> Why | None:
    keep_local_s = cand.keep_local_of(policy)
    if keep_local_s > 0 and now_s - cand.completed_at_s >= keep_local_s:
        return Why.AGE
    if deficit_bytes > 0:
        return Why.SPACE
    return None


def upload_verified(record: StreamRecord) -> bool:
    """Completed and checked at completion, with a size and ETag to ask S3 about again; its
    SHA-256 not still to be taken from the file (sha256_pending: deleting the file would leave
    metadata.json without it for good)."""
    return (
        record.state is StreamState.COMPLETED
        and bool(record.etag)
        and record.final_size > 0
        and not record.sha256_pending
    )


def object_matches(
    *, record_size: int, record_etag: str, object_size: int | None, object_etag: str
) -> bool:
    """Whether S3's object (None: not there) is still the one the record completed: the same
    size and ETag (a multipart object's is made of its parts' MD5s: any rewrite changes it)."""
    if object_size is None or not record_etag:
        return False
    return object_size == record_size and normalize_etag(object_etag) == normalize_etag(record_etag)


def summary(deleted: Sequence[Candidate], waiting: Sequence[tuple[Candidate, Wait]]) -> str:
    """The status line: what one sweep freed and what waits."""
    freed = sum(c.size_bytes for c in deleted)
    line = f"retention: {len(deleted)} deleted ({freed} bytes freed)"
    if not waiting:
        return line
    counts: dict[Wait, int] = {}
    for _, reason in waiting:
        counts[reason] = counts.get(reason, 0) + 1
    parts = ", ".join(f"{reason.value}: {n}" for reason, n in counts.items())
    return f"{line}; {len(waiting)} due but waiting ({parts})"
