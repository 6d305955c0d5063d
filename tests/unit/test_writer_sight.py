"""tailup.rules.writers: "no writer visible" is a close only where /proc sees every writer (N1)."""

from __future__ import annotations

import pytest

from tailup.rules.writers import Sight, Writer, seen_writer_open, writer_fact

HOST = Sight(proc_sees_all=True)
CONTAINER = Sight(proc_sees_all=False)
SHARE = Sight(proc_sees_all=True, shared=True)
POLL = Sight(proc_sees_all=True, polling=True)


@pytest.mark.parametrize(
    ("found", "sight", "state", "event_writer_open"),
    [
        (True, HOST, Writer.OPEN, True),
        (False, HOST, Writer.CLOSED, False),
        (None, HOST, Writer.UNKNOWN, None),
        (True, CONTAINER, Writer.OPEN, True),
        (False, CONTAINER, Writer.UNKNOWN, None),
        (None, CONTAINER, Writer.UNKNOWN, None),
        (False, SHARE, Writer.UNKNOWN, None),
        (True, SHARE, Writer.OPEN, True),
        (False, POLL, Writer.UNKNOWN, None),
        (False, Sight(proc_sees_all=False, shared=True, polling=True), Writer.UNKNOWN, None),
    ],
)
def test_no_writer_visible_is_a_close_only_where_proc_sees_every_writer(
    found: bool | None, sight: Sight, state: Writer, event_writer_open: bool | None
) -> None:
    fact = writer_fact(found, sight)
    assert fact.state is state
    assert fact.why
    assert seen_writer_open(found, sight) is event_writer_open


@pytest.mark.parametrize(
    ("sight", "sees", "why"),
    [
        (HOST, True, ""),
        (CONTAINER, False, "PID namespace"),
        (SHARE, False, "shared folder"),
        (POLL, False, "--poll"),
    ],
)
def test_sight_per_deployment(sight: Sight, sees: bool, why: str) -> None:
    assert sight.sees_every_writer is sees
    assert why in sight.why_blind
