"""When a stream next looks at its file (pure): about when its next part is due."""

from __future__ import annotations

import pytest

from tailup.stream.core import MAX_LOOK_S, next_look_s

MiB = 1024 * 1024


@pytest.mark.parametrize(
    ("to_end", "rate", "since", "expected"),
    [
        (8 * MiB, None, 0.0, 0.2),  # rate not known yet: as often as ever
        (8 * MiB, 1.0 * MiB, 0.0, MAX_LOOK_S),  # 8 s away: no sooner than the cap
        (MiB, 1.0 * MiB, 0.0, 1.0),  # due in 1 s
        (MiB, 1.0 * MiB, 0.5, 0.5),  # due in 1 s from the change seen 0.5 s ago
        (MiB // 100, 1.0 * MiB, 0.0, 0.2),  # due at once: never faster than min
        (MiB, 1.0 * MiB, 1.5, 0.2),  # past due, no change yet: keep looking often
        (MiB, 1.0 * MiB, MAX_LOOK_S + 1, MAX_LOOK_S),  # long past due: paused, like idle
        (MiB, 0.0, 0.0, MAX_LOOK_S),  # rewritten in place, not growing
        (MiB, 100.0 * MiB, 0.0, 0.2),  # fast writer: every min
    ],
)
def test_next_look(to_end: int, rate: float | None, since: float, expected: float) -> None:
    got = next_look_s(bytes_to_part_end=to_end, rate_bps=rate, since_change_s=since, min_s=0.2)
    assert got == pytest.approx(expected)
