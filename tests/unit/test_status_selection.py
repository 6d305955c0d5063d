"""Which records `tailup status` and /streams read, and their summary line (pure: no servers)."""

from __future__ import annotations

import pytest

from tailup.model import StreamState
from tailup.selection import (
    ENDED_STATES,
    SCAN_PAGE,
    STATE_VALUES,
    Selection,
    Tally,
    parse_limit,
    parse_states,
    summary_line,
)

S = StreamState


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ([], set()),
        (["failed"], {S.FAILED}),
        (["failed,aborted"], {S.FAILED, S.ABORTED}),
        (["failed", "aborted"], {S.FAILED, S.ABORTED}),
        ([" Completed , skipped "], {S.COMPLETED, S.SKIPPED}),
        (["uploading,", ",stalled"], {S.UPLOADING, S.STALLED}),
        (["failed", "failed"], {S.FAILED}),
    ],
)
def test_states_are_parsed_from_repeats_and_comma_lists(
    given: list[str], expected: set[StreamState]
) -> None:
    assert parse_states(given) == frozenset(expected)


@pytest.mark.parametrize("bad", ["done", "failed,done", "live", "*"])
def test_a_bad_state_names_every_accepted_value(bad: str) -> None:
    with pytest.raises(ValueError, match="is not a stream state") as info:
        parse_states([bad])
    assert all(value in str(info.value) for value in STATE_VALUES)


@pytest.mark.parametrize(("given", "expected"), [("1", 1), ("20", 20), (" 7 ", 7), (500, 500)])
def test_limits(given: str | int, expected: int) -> None:
    assert parse_limit(given) == expected


@pytest.mark.parametrize(
    ("bad", "says"),
    [("0", "below 1"), ("-3", "below 1"), ("ten", "not a whole number"), ("2.5", "whole")],
)
def test_bad_limits(bad: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_limit(bad)


@pytest.mark.parametrize(
    ("states", "live", "ended"),
    [
        (set(), True, True),
        ({S.FAILED}, True, False),
        ({S.UPLOADING, S.STALLED}, True, False),
        ({S.COMPLETED}, False, True),
        ({S.ABORTED, S.SKIPPED}, False, True),
        ({S.FAILED, S.ABORTED}, True, True),
    ],
)
def test_which_indexes_a_filter_reads(states: set[StreamState], live: bool, ended: bool) -> None:
    selection = Selection(states=frozenset(states))
    assert (selection.wants_live, selection.wants_ended) == (live, ended)


def test_ended_states_are_those_outside_the_live_set() -> None:
    assert frozenset({S.COMPLETED, S.SKIPPED, S.ABORTED, S.SALVAGED}) == ENDED_STATES


@pytest.mark.parametrize(
    ("selection", "found", "scanned", "page"),
    [
        # No filter: exactly the newest `limit` first, then full pages for what expired.
        (Selection(limit=20), 0, 0, 20),
        (Selection(limit=20), 20, 20, 0),
        (Selection(limit=20), 17, 20, SCAN_PAGE),
        (Selection(limit=2000), 0, 0, 2000),
        (Selection(limit=2000), 1990, 2000, SCAN_PAGE),
        # A filter reads full pages until `limit` match...
        (Selection(limit=20, states=frozenset({S.ABORTED})), 0, 0, SCAN_PAGE),
        (Selection(limit=20, states=frozenset({S.ABORTED})), 19, 5000, SCAN_PAGE),
        (Selection(limit=20, states=frozenset({S.ABORTED})), 20, 5000, 0),
        (Selection(limit=900, states=frozenset({S.ABORTED})), 100, 500, 800),
        # ... or `scan_limit` were looked at (the last page only up to it).
        (Selection(limit=20, states=frozenset({S.ABORTED}), scan_limit=1200), 3, 1000, 200),
        (Selection(limit=20, states=frozenset({S.ABORTED}), scan_limit=1200), 3, 1200, 0),
        (Selection(limit=20, scan_limit=10), 0, 0, 10),
        (Selection(limit=5, states=frozenset({S.ABORTED}), page=7), 1, 14, 7),
        # --all: pages until the index ends, whatever was found.
        (Selection(every=True), 0, 0, 1000),
        (Selection(every=True, scan_limit=10), 10_000, 10_000, 1000),
        (Selection(every=True, page=3), 9, 9, 3),
    ],
)
def test_pages_of_the_ended_index(
    selection: Selection, found: int, scanned: int, page: int
) -> None:
    assert selection.next_page(found, scanned) == page


FAILED_ONLY = Selection(states=frozenset({S.FAILED}))
ABORTED = Selection(limit=20, states=frozenset({S.ABORTED}))


@pytest.mark.parametrize(
    ("tally", "selection", "line"),
    [
        (Tally("node:web1"), Selection(), "node web1: 0 live, 0 ended; 0 shown"),
        (
            Tally("node:web1", live=3, ended=5, shown_live=3, shown_ended=5, scanned=5),
            Selection(),
            "node web1: 3 live, 5 ended; 8 shown",
        ),
        (
            Tally("node:web1", live=3, ended=1_000_000, shown_live=3, shown_ended=20, scanned=20),
            Selection(),
            "node web1: 3 live, 1,000,000 ended; 23 shown (the 20 newest ended; "
            "--limit N or --all for more)",
        ),
        (
            # Index entries of expired records, not yet trimmed: the scan ran out first.
            Tally("node:web1", live=0, ended=30, shown_ended=12, scanned=30, exhausted=True),
            Selection(),
            "node web1: 0 live, 30 ended; 12 shown",
        ),
        (
            Tally("share:nas", live=2, ended=9, shown_live=1),
            FAILED_ONLY,
            "shared folder nas: 2 live, 9 ended; 1 failed shown (only live states asked for)",
        ),
        (
            Tally("node:a", ended=10**6, shown_ended=20, scanned=7000),
            ABORTED,
            "node a: 0 live, 1,000,000 ended; 20 aborted shown (the 20 newest matching; "
            "--limit N for more)",
        ),
        (
            Tally("node:a", ended=10**6, shown_ended=2, scanned=100_000),
            ABORTED,
            "node a: 0 live, 1,000,000 ended; 2 aborted shown (looked at the newest 100,000 "
            "ended only; --all --state aborted looks at every one)",
        ),
        (
            Tally("node:a", ended=900, shown_ended=2, scanned=900, exhausted=True),
            ABORTED,
            "node a: 0 live, 900 ended; 2 aborted shown",
        ),
        (
            Tally("node:a", live=1, ended=4, shown_live=1, shown_ended=4),
            Selection(every=True),
            "node a: 1 live, 4 ended; 5 shown (--all)",
        ),
    ],
)
def test_summary_lines(tally: Tally, selection: Selection, line: str) -> None:
    assert summary_line(tally, selection) == line
