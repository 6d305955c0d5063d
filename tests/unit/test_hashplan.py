"""When the whole-file SHA-256 is made (tailup.hashplan): a table of digests at finalize."""

from __future__ import annotations

import pytest

from tailup.hashplan import (
    INLINE_MAX_BYTES,
    PartView,
    Sha256Plan,
    Sha256Setting,
    Sha256When,
    sha256_plan,
)
from tailup.plan import MiB

OK = PartView(8 * MiB, unchanged=True, hashed=True)
NEW = PartView(8 * MiB, unchanged=False, hashed=False)  # not sent yet, or changed
CHANGED = PartView(8 * MiB, unchanged=False, hashed=True)  # hashed as sent, changed since
STALE = PartView(8 * MiB, unchanged=True, hashed=False)  # sent again after it was hashed
TAIL = PartView(3 * MiB, unchanged=False, hashed=False)
MANY = INLINE_MAX_BYTES // (8 * MiB) + 1  # parts that are more than finalize hashes itself

CASES = [
    # (name, hashed parts, layout, expected)
    ("append-only: only the tail", 3, [OK, OK, OK, TAIL], Sha256Plan(Sha256When.INLINE, 4)),
    ("everything hashed already", 2, [OK, OK], Sha256Plan(Sha256When.INLINE, 3)),
    ("digest lags two parts", 1, [OK, NEW, NEW, TAIL], Sha256Plan(Sha256When.INLINE, 2)),
    ("small file, header patched", 3, [CHANGED, OK, OK, TAIL], Sha256Plan(Sha256When.INLINE, 1)),
    ("small file, a part re-sent", 2, [OK, STALE, TAIL], Sha256Plan(Sha256When.INLINE, 2)),
    ("small file shrank into a part", 3, [OK, TAIL], Sha256Plan(Sha256When.INLINE, 2)),
    ("small file shrank to a part boundary", 3, [OK, OK], Sha256Plan(Sha256When.INLINE, 3)),
    ("big file, header patched", MANY, [CHANGED] + [OK] * (MANY - 1), Sha256Plan(Sha256When.AFTER)),
    ("big file, one middle part changed", MANY, [OK] * 5 + [CHANGED] + [OK] * (MANY - 6),
     Sha256Plan(Sha256When.AFTER)),
    ("big file resumed: nothing hashed", 0, [OK] * MANY, Sha256Plan(Sha256When.AFTER)),
    ("big file, append-only", MANY, [OK] * MANY + [TAIL], Sha256Plan(Sha256When.INLINE, MANY + 1)),
    ("big file shrank below the digest", MANY + 2, [OK] * MANY, Sha256Plan(Sha256When.AFTER)),
]  # fmt: skip


@pytest.mark.parametrize(("hashed", "layout", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_sha256_plan(hashed: int, layout: list[PartView], expected: Sha256Plan) -> None:
    assert sha256_plan(Sha256Setting.AUTO, hashed, layout) == expected


@pytest.mark.parametrize(("hashed", "layout"), [(3, [OK, OK, OK, TAIL]), (0, [NEW])])
def test_off_never_hashes(hashed: int, layout: list[PartView]) -> None:
    assert sha256_plan(Sha256Setting.OFF, hashed, layout) == Sha256Plan(Sha256When.OFF)


def test_the_inline_limit_is_inclusive() -> None:
    exactly = [PartView(INLINE_MAX_BYTES, unchanged=False, hashed=False)]
    assert sha256_plan(Sha256Setting.AUTO, 0, exactly).when is Sha256When.INLINE
    over = [PartView(INLINE_MAX_BYTES + 1, unchanged=False, hashed=False)]
    assert sha256_plan(Sha256Setting.AUTO, 0, over).when is Sha256When.AFTER
