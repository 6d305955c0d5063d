"""Where a filesystem event goes. Pure: the supervisor gathers the facts and carries it out.

A delete ends the recording at its path (its stream, if any, is told and no longer reachable
there, so a file created at that path next is a new stream even on the same inode number); a
rename carries the recording to its new path (stream, path entry and key with it); a close tells
the stream its writer may be gone; anything else at a path with no stream may start one.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from tailup.events import EventKind, FileEvent


class Action(enum.Enum):
    IGNORE = "ignore"
    TELL_CLOSED = "tell_closed"  # the stream's writer closed the file (if no writer is left)
    TELL_GONE = "tell_gone"  # the stream's file was deleted or moved out: it ends
    END_PATH = "end_path"  # no stream: note in the path's record that the path ended
    CARRY_STREAM = "carry_stream"  # the running stream follows its file to dest
    CARRY_RECORD = "carry_record"  # no stream: the path's ended record follows to dest
    OPEN = "open"  # maybe start a stream for the path (the identity decides which)
    OPEN_DEST = "open_dest"  # maybe start a stream for dest
    ROOT_GONE = "root_gone"  # every stream under the folder ends


@dataclass(frozen=True, slots=True)
class Facts:
    has_stream: bool  # a stream of this daemon runs for event.path
    candidate: bool  # event.path matches the include globs
    dest_inside: bool = False  # event.dest_path is below a watched folder
    dest_candidate: bool = False  # event.dest_path matches the include globs


_OPENING = frozenset(
    {EventKind.CREATED, EventKind.MODIFIED, EventKind.CLOSED, EventKind.DISCOVERED}
)


def route(event: FileEvent, facts: Facts) -> tuple[Action, ...]:
    kind = event.kind
    if kind is EventKind.ROOT_GONE:
        return (Action.ROOT_GONE,)
    if kind is EventKind.DELETED:
        return (Action.TELL_GONE,) if facts.has_stream else (Action.END_PATH,)
    if kind is EventKind.MOVED:
        return _moved(facts)
    if kind in _OPENING:
        if facts.has_stream:
            # A live stream watches its file's size itself; MODIFIED is an open (our own reads
            # open the file), not a write. Only a close is news.
            closed = kind is EventKind.CLOSED or (
                kind is EventKind.DISCOVERED and event.writer_open is False
            )
            return (Action.TELL_CLOSED,) if closed else (Action.IGNORE,)
        return (Action.OPEN,) if facts.candidate else (Action.IGNORE,)
    return (Action.IGNORE,)


def _moved(facts: Facts) -> tuple[Action, ...]:
    if facts.has_stream:
        return (Action.CARRY_STREAM,) if facts.dest_inside else (Action.TELL_GONE,)
    if not facts.dest_inside:
        return (Action.END_PATH,)
    # The record follows first (a completed recording renamed is not uploaded again); then the
    # destination is looked at like any file: the identity decides whether there is anything new.
    return (
        (Action.CARRY_RECORD, Action.OPEN_DEST) if facts.dest_candidate else (Action.CARRY_RECORD,)
    )
