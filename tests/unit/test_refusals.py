"""What a stream does when S3 refuses a part (tailup.rules.refusals): pure."""

from __future__ import annotations

import pytest

from tailup.rules.refusals import MAX_NEW_UPLOADS, RefusalAction, after_part_refused

REFUSAL = "S3 upload part 1: NotImplemented: part 1 has already been streamed to the backend"


def test_a_part_the_upload_holds_refused_goes_up_again_in_a_new_upload() -> None:
    decision = after_part_refused(part_number=1, replacing=True, new_uploads=0, refusal=REFUSAL)
    assert decision.action is RefusalAction.NEW_UPLOAD
    assert "part 1" in decision.reason and "new upload" in decision.reason
    assert REFUSAL in decision.reason


@pytest.mark.parametrize("new_uploads", range(MAX_NEW_UPLOADS))
def test_new_uploads_are_started_up_to_the_bound(new_uploads: int) -> None:
    decision = after_part_refused(
        part_number=3, replacing=True, new_uploads=new_uploads, refusal=REFUSAL
    )
    assert decision.action is RefusalAction.NEW_UPLOAD


def test_refused_again_after_the_bound_the_stream_fails_never_retried_forever() -> None:
    decision = after_part_refused(
        part_number=1, replacing=True, new_uploads=MAX_NEW_UPLOADS, refusal=REFUSAL
    )
    assert decision.action is RefusalAction.FAIL
    assert f"after {MAX_NEW_UPLOADS} new uploads" in decision.reason and REFUSAL in decision.reason


def test_a_part_the_upload_never_held_is_not_a_replacement_and_fails() -> None:
    # A new upload would be refused the same way: the server lacks something else.
    decision = after_part_refused(part_number=2, replacing=False, new_uploads=0, refusal=REFUSAL)
    assert decision.action is RefusalAction.FAIL
    assert "never held" in decision.reason and REFUSAL in decision.reason
