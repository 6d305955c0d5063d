"""What a stream does when S3 refuses a part (tailup.rules.refusals): pure. Each row compares
the whole decision, its reason included: the stream's failure or its log says it."""

from __future__ import annotations

import pytest

from tailup.rules.refusals import (
    MAX_NEW_UPLOADS,
    RefusalAction,
    RefusalDecision,
    after_part_refused,
)

REFUSAL = "S3 upload part 1: NotImplemented: part 1 has already been streamed to the backend"


def again(part_number: int) -> RefusalDecision:
    return RefusalDecision(
        RefusalAction.NEW_UPLOAD,
        f"S3 cannot replace part {part_number} with its new bytes ({REFUSAL}): the recording is "
        "sent again in a new upload",
    )


ROWS: list[tuple[str, int, bool, int, RefusalDecision]] = [
    ("a part the upload holds, refused: goes up again in a new upload", 1, True, 0, again(1)),
    *(
        (f"new uploads are started up to the bound ({n} started)", 3, True, n, again(3))
        for n in range(1, MAX_NEW_UPLOADS)
    ),
    (
        "refused again after the bound: the stream fails, never retried forever",
        1,
        True,
        MAX_NEW_UPLOADS,
        RefusalDecision(
            RefusalAction.FAIL,
            f"S3 refused to replace part 1 again after {MAX_NEW_UPLOADS} new uploads ({REFUSAL})",
        ),
    ),
    (
        # A new upload would be refused the same way: the server lacks something else.
        "a part the upload never held is not a replacement: fails",
        2,
        False,
        0,
        RefusalDecision(
            RefusalAction.FAIL,
            f"S3 refused part 2, which this upload never held ({REFUSAL}): a new upload would "
            "be refused the same way",
        ),
    ),
]


@pytest.mark.parametrize(
    ("part_number", "replacing", "new_uploads", "decision"),
    [pytest.param(*row[1:], id=row[0]) for row in ROWS],
)
def test_after_part_refused(
    part_number: int, replacing: bool, new_uploads: int, decision: RefusalDecision
) -> None:
    got = after_part_refused(
        part_number=part_number, replacing=replacing, new_uploads=new_uploads, refusal=REFUSAL
    )
    assert got == decision
