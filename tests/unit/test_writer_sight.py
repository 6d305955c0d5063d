"""tailup.rules.writers: "no writer visible" is a close only where /proc sees every writer (N1)."""

from __future__ import annotations

import pytest

from tailup.rules.writers import Sight, Writer, seen_writer_open, writer_fact

HOST = Sight(proc_sees_all=True)
CONTAINER = Sight(proc_sees_all=False)
SHARE = Sight(proc_sees_all=True, shared=True)
POLL = Sight(proc_sees_all=True, polling=True)
OPEN_WHY = "a process holds it open for writing"
CONTAINER_WHY = "a PID namespace of its own: /proc does not list writers outside it"
SHARE_WHY = "a shared folder: its writers may be on other hosts"
POLL_WHY = "--poll: the file system's writers may be on other hosts"


@pytest.mark.parametrize(
    ("found", "sight", "state", "event_writer_open", "why"),
    [
        (True, HOST, Writer.OPEN, True, OPEN_WHY),
        (False, HOST, Writer.CLOSED, False, "no process holds it open for writing"),
        (None, HOST, Writer.UNKNOWN, None, "/proc could not tell"),
        (True, CONTAINER, Writer.OPEN, True, OPEN_WHY),
        (False, CONTAINER, Writer.UNKNOWN, None, f"no writer visible, but {CONTAINER_WHY}"),
        (None, CONTAINER, Writer.UNKNOWN, None, "/proc could not tell"),
        (False, SHARE, Writer.UNKNOWN, None, f"no writer visible, but {SHARE_WHY}"),
        (True, SHARE, Writer.OPEN, True, OPEN_WHY),
        (False, POLL, Writer.UNKNOWN, None, f"no writer visible, but {POLL_WHY}"),
        (
            False,
            Sight(proc_sees_all=False, shared=True, polling=True),
            Writer.UNKNOWN,
            None,
            f"no writer visible, but {SHARE_WHY}",
        ),
    ],
)
def test_no_writer_visible_is_a_close_only_where_proc_sees_every_writer(
    found: bool | None, sight: Sight, state: Writer, event_writer_open: bool | None, why: str
) -> None:
    """The why is part of the fact: the reason a blind scope's file waits for a close event."""
    fact = writer_fact(found, sight)
    assert fact.state is state
    assert fact.why == why
    assert seen_writer_open(found, sight) is event_writer_open


@pytest.mark.parametrize(
    ("sight", "sees", "why"),
    [
        (HOST, True, ""),
        (CONTAINER, False, CONTAINER_WHY),
        (SHARE, False, SHARE_WHY),
        (POLL, False, POLL_WHY),
        # the first reason that applies: a shared folder's, then --poll's, then the namespace's
        (Sight(proc_sees_all=False, shared=True, polling=True), False, SHARE_WHY),
        (Sight(proc_sees_all=False, polling=True), False, POLL_WHY),
        (Sight(proc_sees_all=True, shared=True, polling=True), False, SHARE_WHY),
    ],
)
def test_sight_per_deployment(sight: Sight, sees: bool, why: str) -> None:
    assert sight.sees_every_writer is sees
    assert sight.why_blind == why
