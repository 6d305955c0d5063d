"""Which stream records `tailup status` and /streams show, and what their summary says. Pure.

Redis may hold millions of ended records (one per recording, kept --keep-records), so nothing
here ever asks for all of them unless told to (``--all``): every live stream of a scope (few:
those being uploaded, or failed and retried), then the newest ended ones, read page by page from
the scope's ended index (newest first) until ``limit`` match or ``scan_limit`` were looked at.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tailup.model import StreamState

# In the ended index (completed, skipped, aborted); the others are in the live set.
ENDED_STATES = frozenset(s for s in StreamState if not s.is_resumable)
STATE_VALUES = tuple(s.value for s in StreamState)
STATE_FORM = ", ".join(STATE_VALUES) + " (repeat --state or separate them with commas)"

DEFAULT_LIMIT = 20
# Ended ids read per round trip while a --state filter looks for matches (their state field
# only, pipelined; whole records for the matches): few round trips, ~10 ms of work each.
SCAN_PAGE = 500
# How many ended records a --state filter looks at, at most, before it says it stopped: the
# newest 100,000 take a few seconds (bench/RESULTS.md). --all looks at every one.
DEFAULT_SCAN_LIMIT = 100_000
# Ended ids per page with --all (and live ids per batch).
ALL_PAGE = 1000
# Whole records per pipeline: redis-py parses a reply in one go on the event loop, ~0.2 ms a
# record without hiredis, so this bounds what one slice of the daemon's loop costs (~20 ms).
LOAD_CHUNK = 100


def parse_states(values: Iterable[str]) -> frozenset[StreamState]:
    """``--state`` values, each one a state or a comma list of them; ValueError naming the
    accepted values for anything else. Empty: every state."""
    states: set[StreamState] = set()
    for value in values:
        for item in value.split(","):
            name = item.strip().lower()
            if not name:
                continue
            try:
                states.add(StreamState(name))
            except ValueError:
                raise ValueError(
                    f"{item.strip()!r} is not a stream state. Accepted: {STATE_FORM}"
                ) from None
    return frozenset(states)


def parse_limit(text: str | int) -> int:
    """``--limit``: a whole number of ended rows, at least 1."""
    try:
        limit = int(text)
    except (TypeError, ValueError):
        raise ValueError(
            f"{text!r} is not a whole number; give the ended rows to show, e.g. 50"
        ) from None
    if limit < 1:
        raise ValueError(f"{limit} is below 1; give the ended rows to show, e.g. 50 (or --all)")
    return limit


@dataclass(frozen=True, slots=True)
class Selection:
    """What to show: every live stream, then the ``limit`` newest ended ones (per scope), of
    ``states`` only when given; ``every`` (--all): every record."""

    limit: int = DEFAULT_LIMIT
    states: frozenset[StreamState] = frozenset()
    every: bool = False
    scan_limit: int = DEFAULT_SCAN_LIMIT
    page: int | None = None  # ids per round trip; None: SCAN_PAGE, or ALL_PAGE with ``every``

    @property
    def page_size(self) -> int:
        return self.page or (ALL_PAGE if self.every else SCAN_PAGE)

    def wants(self, state: StreamState) -> bool:
        return not self.states or state in self.states

    @property
    def wants_live(self) -> bool:
        return not self.states or any(s.is_resumable for s in self.states)

    @property
    def wants_ended(self) -> bool:
        return not self.states or bool(self.states & ENDED_STATES)

    def next_page(self, found: int, scanned: int) -> int:
        """How many ended ids to read next, having ``found`` matches among ``scanned``; 0: stop.

        Without a filter the first page is exactly what is missing (the newest ``limit``); a
        shortfall (records expired before the daemon trimmed their index entries) is read in
        full pages. With a filter every page is full, and the scan stops at ``scan_limit``."""
        if self.every:
            return self.page_size
        missing = self.limit - found
        if missing <= 0:
            return 0
        left = self.scan_limit - scanned
        if left <= 0:
            return 0
        if not self.states and scanned == 0:
            return min(missing, left)
        return min(max(missing, self.page_size), left)

    def describe_states(self) -> str:
        return ",".join(s.value for s in StreamState if s in self.states)


@dataclass(slots=True)
class Tally:
    """One scope's counts, for its summary line."""

    scope: str
    live: int = 0  # streams in the live set (of any state)
    ended: int = 0  # entries of the ended index (ZCARD)
    shown_live: int = 0
    shown_ended: int = 0
    scanned: int = 0  # ended index entries looked at
    exhausted: bool = False  # the scan reached the oldest ended entry

    @property
    def shown(self) -> int:
        return self.shown_live + self.shown_ended


def scope_label(scope: str) -> str:
    """``node:web1`` -> ``node web1``; ``share:nas`` -> ``shared folder nas``."""
    kind, _, name = scope.partition(":")
    return {"node": f"node {name}", "share": f"shared folder {name}"}.get(kind, scope)


def summary_line(tally: Tally, selection: Selection) -> str:
    """E.g. ``node web1: 3 live, 1,000,000 ended; 23 shown (the 20 newest ended; --limit N
    or --all for more)``."""
    head = f"{scope_label(tally.scope)}: {tally.live:,} live, {tally.ended:,} ended"
    filtered = f" {selection.describe_states()}" if selection.states else ""
    shown = f"{tally.shown:,}{filtered} shown"
    if selection.every:
        return f"{head}; {shown} (--all)"
    if not selection.wants_ended:
        return f"{head}; {shown} (only live states asked for)"
    if not selection.states:
        if tally.shown_ended >= tally.ended or tally.exhausted:
            return f"{head}; {shown}"
        return (
            f"{head}; {shown} (the {tally.shown_ended:,} newest ended; --limit N or --all for more)"
        )
    if tally.exhausted or tally.scanned >= tally.ended:
        return f"{head}; {shown}"
    if tally.shown_ended >= selection.limit:
        return f"{head}; {shown} (the {selection.limit:,} newest matching; --limit N for more)"
    return (
        f"{head}; {shown} (looked at the newest {tally.scanned:,} ended only; "
        f"--all --state {selection.describe_states()} looks at every one)"
    )


def summary_lines(tallies: Sequence[Tally], selection: Selection) -> list[str]:
    return [summary_line(t, selection) for t in tallies]
