"""What follows a stream's end, and a look at a recording completed on idle: pure.

A stream that ended may leave a file worth looking at again: one replaced, changed after its
completion or back after it vanished is looked at as if found at start (its identity decides
what it is). One completed is watched a little longer: events that reached the stream while it
finished are not lost, and one completed on idle while its writer may hold it (COMPLETED with
the action pending) is looked at every idle timeout until it grows (a later generation) or its
writer is known gone (the pending action).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from tailup.stream.context import Outcome


@dataclass(frozen=True, slots=True)
class LookAgain:
    """Queue a look at the path: as a close (its close came too late for the stream), or as a
    file found (its writer asked of /proc first)."""

    closed: bool


@dataclass(frozen=True, slots=True)
class WatchCompleted:
    linger: bool  # completed on idle while a writer may hold it


class Nothing(enum.Enum):
    NOTHING = "nothing"


NOTHING = Nothing.NOTHING
FollowUp = LookAgain | WatchCompleted | Nothing

_LOOK_AGAIN = frozenset({Outcome.REPLACED, Outcome.CHANGED_AFTER_COMPLETE, Outcome.ABORTED})


def after_outcome(
    outcome: Outcome, *, stopping: bool, close_seen: bool, path_taken: bool
) -> FollowUp:
    """``close_seen``: the stream was told its writer's close and saw nothing written since;
    ``path_taken``: another stream holds the path now."""
    if stopping or outcome is Outcome.STOPPED:
        return NOTHING
    if outcome is Outcome.COMPLETED_WRITER_OPEN and close_seen:
        # Its close came while it finalized on idle: where /proc is blind nothing else would
        # tell it, and the look as a close runs the pending action.
        return LookAgain(closed=True)
    if outcome in (Outcome.COMPLETED, Outcome.COMPLETED_WRITER_OPEN):
        return WatchCompleted(linger=outcome is not Outcome.COMPLETED)
    if outcome in _LOOK_AGAIN and not path_taken:
        # Its writer may be gone already (its close went to the stream that just ended), and
        # then it must not wait for the idle timeout.
        return LookAgain(closed=False)
    return NOTHING


class Settled(enum.Enum):
    DONE = "done"  # nothing more to look at
    LOOK = "look"  # queue a look at the file now
    WAIT = "wait"  # look again after the idle timeout (or at a close event)


def after_look(*, changed: bool, linger: bool, writer_open: bool | None) -> Settled:
    """One look at a completed recording. ``changed``: its size or mtime is not what was
    completed; ``writer_open`` as tailup.rules.writers says (None: unknown, never a close)."""
    if changed:
        return Settled.LOOK
    if not linger:
        return Settled.DONE  # the common case: one stat, no /proc pass
    if writer_open is False:
        return Settled.LOOK
    return Settled.WAIT
