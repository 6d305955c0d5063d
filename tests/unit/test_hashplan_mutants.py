"""tailup.hashplan where mutation testing found it unchecked (`make mutants`, docs/testing.md): a
big file whose digest covers every part already costs nothing more to finish inline."""

from __future__ import annotations

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


def test_a_big_file_hashed_to_its_last_part_is_finished_inline() -> None:
    parts = INLINE_MAX_BYTES // (8 * MiB) + 1
    assert parts * 8 * MiB > INLINE_MAX_BYTES
    assert sha256_plan(Sha256Setting.AUTO, parts, [OK] * parts) == Sha256Plan(
        Sha256When.INLINE, parts + 1
    )
