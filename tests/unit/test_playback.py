"""`tailup url`'s decisions: how long a URL may be valid, and which streams have a recording."""

from __future__ import annotations

import pytest

from tailup.errors import ConfigError
from tailup.model import StreamRecord, StreamState
from tailup.playback import MAX_EXPIRES_S, PLAYABLE_STATES, parse_expires, refusal


@pytest.mark.parametrize(
    ("given", "seconds"),
    [("1h", 3600), ("15m", 900), ("90", 90), ("1", 1), ("2.5", 2), ("7d", 604800)],
)
def test_expires_accepted(given: str, seconds: int) -> None:
    assert parse_expires(given) == seconds


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ("8d", "more than the 7 days (604800 s)"),
        (str(MAX_EXPIRES_S + 1), "more than the 7 days"),
        ("0", "under 1 s"),
        ("0.5", "under 1 s"),
        ("soon", "Accepted: a number of seconds"),
        ("-5m", "Accepted: a number of seconds"),
        ("", "Accepted: a number of seconds"),
    ],
)
def test_expires_refused_naming_what_is_accepted(given: str, said: str) -> None:
    with pytest.raises(ConfigError, match="--expires") as caught:
        parse_expires(given)
    assert said in str(caught.value)


@pytest.mark.parametrize("state", list(StreamState))
def test_only_completed_or_salvaged_streams_have_a_recording_to_play(state: StreamState) -> None:
    record = StreamRecord(
        stream_id="0123456789abcdef",
        path="/rec/cam.mp4",
        watch_root="/rec",
        bucket="b",
        key="streams/0123456789abcdef/cam.mp4",
        base_part_size=8 << 20,
        state=state,
    )
    why = refusal(record)
    if state in PLAYABLE_STATES:
        assert why is None
    else:
        assert why is not None
        assert f"stream 0123456789ab (/rec/cam.mp4) is {state.value}" in why
