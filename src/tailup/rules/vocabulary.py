"""The vocabulary of tailup.rules.admission: its questions (each the key of its own answer,
typed by what answers it), its commands, and the facts and daemon state it reads. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, TypeVar, cast

from tailup.model import PartRecord, StreamRecord
from tailup.recovery import Finding
from tailup.rules.records import Placement, RecordDefaults
from tailup.source import FileStat

T = TypeVar("T")

Look = tuple[int, int, int, int]  # (inode, birth_ns, size, mtime_ns)
Loaded = tuple[StreamRecord, dict[int, PartRecord]]
History = tuple[StreamRecord | None, dict[int, PartRecord]]


# -- questions: each is the key of its own answer -----------------------------------------------


class Ask(Generic[T]):
    """A fact that costs I/O; ``T`` is the type of its answer."""


@dataclass(frozen=True, slots=True)
class Unreadable:
    reason: str


@dataclass(frozen=True, slots=True)
class AskStat(Ask[FileStat | Unreadable]):
    path: Path


@dataclass(frozen=True, slots=True)
class AskHistory(Ask[History]):
    """The path's latest record and parts, if that record still names the path (localized)."""

    path: Path


@dataclass(frozen=True, slots=True)
class AskGeneration(Ask[int]):
    path: Path
    inode: int


@dataclass(frozen=True, slots=True)
class AskHead(Ask[bool]):
    """Whether the file's first ``size`` bytes have CRC32 ``crc32`` (one read)."""

    path: Path
    size: int
    crc32: int
    device: int
    inode: int


@dataclass(frozen=True, slots=True)
class AskRecord(Ask["Loaded | None"]):
    stream_id: str


@dataclass(frozen=True, slots=True)
class AskClaim(Ask[bool]):
    """A shared folder's recording: whether this node holds (or now took) its lease."""

    stream_id: str


@dataclass(frozen=True, slots=True)
class AskSha256(Ask[bool]):
    """A completed recording whose SHA-256 was cut short (N14): finish it now. True once it is
    settled (recorded, or the file changed so that nothing can finish it), False while pending."""

    stream_id: str


@dataclass(frozen=True, slots=True)
class AskS3(Ask[Finding]):
    """What S3 holds of the recording (tailup.recovery.look_up): at ``key``, else under
    ``prefix``, the start of every key its stream may have had ("": none)."""

    key: str
    stream_id: str
    size: int
    mtime_ns: int
    check_object: bool
    prefix: str = ""


@dataclass(frozen=True, slots=True)
class AskReserve(Ask["str | None"]):
    """Reserve the key for the stream: None when reserved, else the stream holding it."""

    key: str
    stream_id: str


@dataclass(frozen=True, slots=True)
class AskKey(Ask[str | None]):
    """A free key for the stream, from ``key`` (tailup.keyclaim); None when none could be had
    (the stream then claims one itself and fails where `status` shows it)."""

    key: str
    stream_id: str
    check: bool


@dataclass(frozen=True, slots=True)
class AskCreate(Ask[bool]):
    """Write ``record`` if no record has its id: whether it was written."""

    stream_id: str
    record: StreamRecord = field(compare=False, hash=False)


# -- commands -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Start:
    record: StreamRecord
    parts: dict[int, PartRecord]
    resumed: bool
    why: str  # "" for a resumed stream (its own log line says so)


@dataclass(frozen=True, slots=True)
class Write:
    """checkpoints.create: a record written over the one under its id (a new generation of the
    same recording, or a new recording taking over the id of one S3 holds nothing of)."""

    record: StreamRecord


@dataclass(frozen=True, slots=True)
class MoveRecord:
    """The record follows its file to ``new``; the old path's entry is forgotten."""

    record: StreamRecord
    new: Path


@dataclass(frozen=True, slots=True)
class Alias:
    """``path`` is a second name (a hard link) of the recording whose stream runs here: kept
    with the stream, which goes on under it if its own name goes (tailup.rules.names).
    ``closed``: the look was prompted by a close under this name, the stream's writer's."""

    stream_id: str
    path: Path
    closed: bool


@dataclass(frozen=True, slots=True)
class Remember:
    path: Path
    look: Look


@dataclass(frozen=True, slots=True)
class LookLater:
    """Another node's recording: its events are not looked at until ``until_mono``."""

    path: Path
    until_mono: float


@dataclass(frozen=True, slots=True)
class FinishAfterUpload:
    record: StreamRecord
    close_seen: bool


@dataclass(frozen=True, slots=True)
class Release:
    """Give back a shared folder's claim taken for a file that starts no stream here (N7)."""

    stream_id: str


@dataclass(frozen=True, slots=True)
class Note:
    """An info log line."""

    event: str
    fields: tuple[tuple[str, str], ...] = ()
    warn: bool = False


Command = (
    Start | Write | MoveRecord | Alias | Remember | LookLater | FinishAfterUpload | Release | Note
)


@dataclass(frozen=True, slots=True)
class Act:
    commands: tuple[Command, ...]
    why: str


# -- facts --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Where:
    """This daemon, for one open: built by the shell once, the clocks and the fresh id fixed."""

    placement: Placement  # the file's folder, its key name and index scope
    shared: bool  # a shared folder: its recordings are claimed first
    defaults: RecordDefaults
    now: datetime  # UTC, for the records made
    now_ns: int
    now_mono: float
    started_ns: int  # when this daemon started
    fresh_id: str  # the id of a recording past MAX_LIVES
    redis_lost: bool
    keep_records_s: float
    lease_ttl_s: float
    unique_template: bool  # every key holds {stream_id}
    check_keys: bool  # keys are checked in S3 before use (tailup.keyclaim)
    running: frozenset[str] = frozenset()  # ids with a stream in this daemon
    elsewhere_until: float = 0.0  # another node's recording at this path, until then
    unchanged: Look | None = None  # what the path was when last judged unchanged


class Unasked:
    def __repr__(self) -> str:
        return "UNASKED"


UNASKED = Unasked()


@dataclass(frozen=True, slots=True)
class Facts:
    path: Path
    writer_closed: bool  # the event that prompted the look says its writer closed it
    answers: Mapping[Ask[Any], object] = field(default_factory=dict)

    def get(self, ask: Ask[T]) -> T | Unasked:
        got = self.answers.get(ask, UNASKED)
        return got if isinstance(got, Unasked) else cast(T, got)

    def answered(self, ask: Ask[T], answer: T) -> Facts:
        return Facts(self.path, self.writer_closed, {**self.answers, ask: answer})
