"""The supervisor's small pure rules: which deferred event to retry, when a file may be deleted
or moved after upload."""

from __future__ import annotations

from pathlib import Path

import pytest

from tailup.afterupload import may_act
from tailup.events import EventKind, FileEvent
from tailup.supervisor import merge_deferred

P = Path("/rec/cam1.ts")
E = EventKind


@pytest.mark.parametrize(
    ("earlier", "later", "kept"),
    [
        (None, E.MODIFIED, E.MODIFIED),
        (E.CLOSED, E.MODIFIED, E.CLOSED),  # a close is not lost behind a later open
        (E.MODIFIED, E.CLOSED, E.CLOSED),
        (E.CREATED, E.MODIFIED, E.CREATED),
        (E.DISCOVERED, E.CLOSED, E.CLOSED),
        (E.CLOSED, E.DELETED, E.DELETED),  # a delete ends the recording: it wins
        (E.DELETED, E.CREATED, E.CREATED),  # a new file after the delete
    ],
)
def test_one_deferred_event_per_path(
    earlier: EventKind | None, later: EventKind, kept: EventKind
) -> None:
    before = FileEvent(earlier, P) if earlier is not None else None
    assert merge_deferred(before, FileEvent(later, P)).kind is kept


@pytest.mark.parametrize(
    ("close_seen", "writer_open", "proc_sees_all", "allowed"),
    [
        (True, False, True, True),  # closed, no writer left
        (True, True, True, False),  # another descriptor still writes
        (False, True, True, False),  # idle finalize, the writer holds it (a stalled feed)
        (False, False, True, True),  # no close seen, but /proc sees every process: none writes
        (False, False, False, False),  # in a container: a writer outside may hold it
        (True, False, False, True),  # in a container, after a close
        (True, None, True, False),  # /proc cannot tell
        (False, None, False, False),
    ],
)
def test_after_upload_only_when_the_writer_is_known_gone(
    close_seen: bool, writer_open: bool | None, proc_sees_all: bool, allowed: bool
) -> None:
    assert (
        may_act(close_seen=close_seen, writer_open=writer_open, proc_sees_all=proc_sees_all)
        is allowed
    )
