"""tailup.rules.outcomes: what follows a stream's end, and a look at a completed recording."""

from __future__ import annotations

import pytest

from tailup.rules.outcomes import (
    NOTHING,
    FollowUp,
    LookAgain,
    Settled,
    WatchCompleted,
    after_look,
    after_outcome,
)
from tailup.stream.context import Outcome


@pytest.mark.parametrize(
    ("outcome", "stopping", "close_seen", "path_taken", "follow"),
    [
        (Outcome.COMPLETED, True, False, False, NOTHING),  # shutting down
        (Outcome.STOPPED, False, False, False, NOTHING),
        (Outcome.COMPLETED, False, False, False, WatchCompleted(linger=False)),
        (Outcome.COMPLETED, False, True, False, WatchCompleted(linger=False)),
        (Outcome.COMPLETED_WRITER_OPEN, False, False, False, WatchCompleted(linger=True)),
        # its close came while it finalized on idle: a look as a close (N1, blind /proc)
        (Outcome.COMPLETED_WRITER_OPEN, False, True, False, LookAgain(closed=True)),
        (Outcome.REPLACED, False, False, False, LookAgain(closed=False)),
        (Outcome.CHANGED_AFTER_COMPLETE, False, False, False, LookAgain(closed=False)),
        (Outcome.ABORTED, False, False, False, LookAgain(closed=False)),
        (Outcome.ABORTED, False, False, True, NOTHING),  # another stream has the path
        (Outcome.FAILED, False, False, False, NOTHING),
        (Outcome.SKIPPED, False, False, False, NOTHING),
    ],
)
def test_after_outcome(
    outcome: Outcome, stopping: bool, close_seen: bool, path_taken: bool, follow: FollowUp
) -> None:
    got = after_outcome(outcome, stopping=stopping, close_seen=close_seen, path_taken=path_taken)
    assert got == follow


@pytest.mark.parametrize(
    ("changed", "linger", "writer_open", "settled"),
    [
        (False, False, None, Settled.DONE),  # the common case: one stat, no /proc pass
        (True, False, None, Settled.LOOK),
        (True, True, True, Settled.LOOK),  # grew under its writer: the next generation
        (False, True, True, Settled.WAIT),
        (False, True, None, Settled.WAIT),  # unknown (a blind /proc) is never a close
        (False, True, False, Settled.LOOK),  # the writer is known gone: the pending action
    ],
)
def test_after_look(
    changed: bool, linger: bool, writer_open: bool | None, settled: Settled
) -> None:
    assert after_look(changed=changed, linger=linger, writer_open=writer_open) is settled
