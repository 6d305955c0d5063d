"""tailup.routing where mutation testing found it unchecked (`make mutants`, docs/testing.md): a
recording's ended record renamed to a name the include globs leave out follows, and nothing
opens there."""

from __future__ import annotations

from pathlib import Path

from tailup.events import EventKind, FileEvent
from tailup.routing import Action, Facts, route


def test_a_record_renamed_to_an_excluded_name_follows_and_nothing_opens() -> None:
    event = FileEvent(EventKind.MOVED, Path("/rec/take1.ts"), Path("/rec/take1.ts.bak"))
    facts = Facts(has_stream=False, candidate=True, dest_inside=True, dest_candidate=False)
    assert route(event, facts) == (Action.CARRY_RECORD,)
