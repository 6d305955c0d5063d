"""The supervisor's routing decisions (tailup.routing), as a table."""

from __future__ import annotations

from pathlib import Path

import pytest

from tailup.events import EventKind, FileEvent
from tailup.routing import Action, Facts, route

P, D = Path("/rec/live.ts"), Path("/rec/take1.ts")
E = EventKind
A = Action

CASES = [
    # (name, event, has_stream, candidate, dest_inside, dest_candidate, actions)
    ("root removed", FileEvent(E.ROOT_GONE, P), False, False, False, False, (A.ROOT_GONE,)),
    (
        "delete of a streamed file",
        FileEvent(E.DELETED, P),
        True,
        True,
        False,
        False,
        (A.TELL_GONE,),
    ),
    ("delete, no stream", FileEvent(E.DELETED, P), False, True, False, False, (A.END_PATH,)),
    ("create, no stream", FileEvent(E.CREATED, P), False, True, False, False, (A.OPEN,)),
    ("create, not included", FileEvent(E.CREATED, P), False, False, False, False, (A.IGNORE,)),
    ("open of a streamed file", FileEvent(E.MODIFIED, P), True, True, False, False, (A.IGNORE,)),
    (
        "close of a streamed file",
        FileEvent(E.CLOSED, P),
        True,
        True,
        False,
        False,
        (A.TELL_CLOSED,),
    ),
    ("close, no stream", FileEvent(E.CLOSED, P), False, True, False, False, (A.OPEN,)),
    (
        "found at start, no writer",
        FileEvent(E.DISCOVERED, P, writer_open=False),
        True,
        True,
        False,
        False,
        (A.TELL_CLOSED,),
    ),
    (
        "found at start, written",
        FileEvent(E.DISCOVERED, P, writer_open=True),
        True,
        True,
        False,
        False,
        (A.IGNORE,),
    ),
    (
        "found at start, writers unknown",
        FileEvent(E.DISCOVERED, P, writer_open=None),
        True,
        True,
        False,
        False,
        (A.IGNORE,),
    ),
    # 4. A rename carries the stream; the new file at the old name is another event (a create).
    (
        "rename of a streamed file",
        FileEvent(E.MOVED, P, D),
        True,
        True,
        True,
        True,
        (A.CARRY_STREAM,),
    ),
    (
        "rename of a streamed file to a name not included",
        FileEvent(E.MOVED, P, Path("/rec/x.part")),
        True,
        True,
        True,
        False,
        (A.CARRY_STREAM,),
    ),
    (
        "streamed file moved out",
        FileEvent(E.MOVED, P, Path("/else/x.ts")),
        True,
        True,
        False,
        False,
        (A.TELL_GONE,),
    ),
    (
        "ended recording renamed",
        FileEvent(E.MOVED, P, D),
        False,
        True,
        True,
        True,
        (A.CARRY_RECORD, A.OPEN_DEST),
    ),
    (
        "renamed from a temporary name",
        FileEvent(E.MOVED, Path("/rec/x.part"), D),
        False,
        False,
        True,
        True,
        (A.CARRY_RECORD, A.OPEN_DEST),
    ),
    (
        "ended recording moved out",
        FileEvent(E.MOVED, P, Path("/else/x.ts")),
        False,
        True,
        False,
        False,
        (A.END_PATH,),
    ),
]


@pytest.mark.parametrize(
    ("event", "has_stream", "candidate", "dest_inside", "dest_candidate", "actions"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_route(
    event: FileEvent,
    has_stream: bool,
    candidate: bool,
    dest_inside: bool,
    dest_candidate: bool,
    actions: tuple[Action, ...],
) -> None:
    facts = Facts(has_stream, candidate, dest_inside, dest_candidate)
    assert route(event, facts) == actions
