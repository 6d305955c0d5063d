"""Whether a file's writer is gone, as far as this daemon can tell, per scope.

/proc lists only the processes of this PID namespace on this host. Where it cannot list every
process that may write a file (tailup in a container of its own, a shared folder whose writers
may be on other hosts, `--poll` for a network file system), "no writer visible" says nothing: it
is UNKNOWN, never a close. There only a real close event (inotify's CLOSE_WRITE) ends the
writing; an idle timeout finalizes the upload but leaves the after-upload action pending.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Writer(enum.Enum):
    OPEN = "open"  # a process holds the file open for writing
    CLOSED = "closed"  # no process that could write it holds it
    UNKNOWN = "unknown"  # cannot be told here


@dataclass(frozen=True, slots=True)
class Sight:
    """How much of the world this daemon's /proc shows for one scope's files."""

    proc_sees_all: bool  # /proc is the initial PID namespace's (tailup.afterupload)
    shared: bool = False  # a shared folder: its writers may be on other hosts
    polling: bool = False  # --poll: a network file system, writers on other hosts

    @property
    def sees_every_writer(self) -> bool:
        return self.proc_sees_all and not self.shared and not self.polling

    @property
    def why_blind(self) -> str:
        if self.shared:
            return "a shared folder: its writers may be on other hosts"
        if self.polling:
            return "--poll: the file system's writers may be on other hosts"
        if not self.proc_sees_all:
            return "a PID namespace of its own: /proc does not list writers outside it"
        return ""


@dataclass(frozen=True, slots=True)
class WriterFact:
    state: Writer
    why: str


def writer_fact(found: bool | None, sight: Sight) -> WriterFact:
    """What a /proc pass's answer (tailup.watcher.writers_open: True, False, or None when it
    could not tell) means for a file of a scope seen with ``sight``."""
    if found is True:
        return WriterFact(Writer.OPEN, "a process holds it open for writing")
    if found is None:
        return WriterFact(Writer.UNKNOWN, "/proc could not tell")
    if not sight.sees_every_writer:
        return WriterFact(Writer.UNKNOWN, f"no writer visible, but {sight.why_blind}")
    return WriterFact(Writer.CLOSED, "no process holds it open for writing")


def seen_writer_open(found: bool | None, sight: Sight) -> bool | None:
    """``found`` as an event's ``writer_open``: False only where False means closed."""
    state = writer_fact(found, sight).state
    return {Writer.OPEN: True, Writer.CLOSED: False, Writer.UNKNOWN: None}[state]


def may_act(*, close_seen: bool, writer_open: bool | None, proc_sees_all: bool) -> bool:
    """Whether the file's writer is known gone, so that deleting or moving it loses nothing: no
    writer in /proc, and either a real close was seen or /proc sees every writer (``writer_open``
    is the raw /proc answer; ``proc_sees_all`` is the scope's Sight.sees_every_writer)."""
    if writer_open is not False:
        return False  # a writer holds it, or /proc cannot tell
    return close_seen or proc_sees_all
