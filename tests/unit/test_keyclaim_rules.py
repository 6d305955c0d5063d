"""tailup.rules.keyclaims: when an ended stream gives its key's claim back, and when a record
made from an ended one claims its key again. Each row changes one fact of a row that releases
(or claims again), so that every condition is seen to matter."""

from __future__ import annotations

from typing import Any

import pytest

from tailup.model import StreamRecord, StreamState
from tailup.rules.keyclaims import ENDS_WITHOUT_OBJECT, KeyAtEnd, claims_key_again, gives_key_back

A = StreamState.ABORTED
NOTHING_THERE = KeyAtEnd(uploads_ended=True, object_sent=False)


def rec(**changes: Any) -> StreamRecord:
    base = StreamRecord(
        stream_id="s1",
        path="/rec/2026-12-07 18-44-03.mkv",
        watch_root="/rec",
        bucket="b",
        key="2026-12-07 18-44-03.mkv",
        base_part_size=5 << 20,
    )
    return base.with_changes(**changes)


GIVES_BACK = [
    ("aborted, first generation, nothing sent", rec(), A, NOTHING_THERE, True),
    ("skipped as empty", rec(), StreamState.SKIPPED, NOTHING_THERE, True),
    ("completed: its object is there", rec(), StreamState.COMPLETED, NOTHING_THERE, False),
    ("failed: its upload and parts are kept", rec(), StreamState.FAILED, NOTHING_THERE, False),
    ("salvaged: its prefix is there", rec(), StreamState.SALVAGED, NOTHING_THERE, False),
    ("a later generation: an earlier one's object", rec(generation=2), A, NOTHING_THERE, False),
    ("an upload left open (its abort failed)", rec(), A, KeyAtEnd(False, False), False),
    ("a PutObject or completion sent", rec(), A, KeyAtEnd(True, True), False),
    ("a pending key: never claimed", rec(key_pending=True), A, NOTHING_THERE, False),
    ("no key", rec(key=""), A, NOTHING_THERE, False),
]


@pytest.mark.parametrize(
    ("record", "ended_as", "at_end", "expected"),
    [pytest.param(r, e, s, x, id=name) for name, r, e, s, x in GIVES_BACK],
)
def test_gives_key_back(
    record: StreamRecord, ended_as: StreamState, at_end: KeyAtEnd, expected: bool
) -> None:
    assert gives_key_back(record, ended_as, at_end) is expected


CLAIMS_AGAIN = [
    ("aborted: its claim may be gone", rec(state=A), True, True),
    ("skipped: its claim may be gone", rec(state=StreamState.SKIPPED), True, True),
    ("a later generation too (one round trip)", rec(state=A, generation=3), True, True),
    ("keys not claimed (unique template, overwrite)", rec(state=A), False, False),
    ("completed: its claim is kept", rec(state=StreamState.COMPLETED), True, False),
    ("salvaged: its claim is kept", rec(state=StreamState.SALVAGED), True, False),
    ("failed: its claim is kept", rec(state=StreamState.FAILED), True, False),
    ("a pending key: the stream claims it", rec(state=A, key_pending=True), True, False),
    ("no key", rec(state=A, key=""), True, False),
]


@pytest.mark.parametrize(
    ("previous", "check_keys", "expected"),
    [pytest.param(p, c, x, id=name) for name, p, c, x in CLAIMS_AGAIN],
)
def test_claims_key_again(previous: StreamRecord, check_keys: bool, expected: bool) -> None:
    assert claims_key_again(previous, check_keys=check_keys) is expected


def test_the_two_rules_agree_on_the_ends_without_an_object() -> None:
    """Every end that may give the key back is one after which the key is claimed again."""
    for state in StreamState:
        released = gives_key_back(rec(), state, NOTHING_THERE)
        assert released is (state in ENDS_WITHOUT_OBJECT)
        if released:
            assert claims_key_again(rec(state=state), check_keys=True)
