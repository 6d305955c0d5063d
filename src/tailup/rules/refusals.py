"""What a stream does when S3 refuses a part (PartReplaceRefused): pure.

MP4, MOV and Matroska muxers rewrite the head of the file at close, so part 1, sent while the
recording grew, is sent again under its number. AWS, SeaweedFS and moto take it; a server that
streams each part to its backend as it arrives (rclone serve s3) cannot, and refuses it
(NotImplemented). Retrying sends the same request to the same server: never.

The recording is finished in a new multipart upload of the same key instead: the old one is
aborted and every part is sent again from the file as it is now. Of the ways to finish it, this
is the one correct on every server:
- it needs only the calls every upload makes (no UploadPartCopy, which some S3 servers lack,
  and no temporary object to read back and delete, which needs s3:GetObject and
  s3:DeleteObject the documented policy does not grant);
- a new upload has sent no part yet, so nothing in it can be refused for replacing;
- what it costs is sending the recording twice, only on a server that refuses, and only for
  recordings whose head changed (an append-only TS or fragmented MP4 never does).

A refusal of a part the upload cannot already hold is not about replacing (a header the server
lacks, say): a new upload would be refused the same way, so the stream fails, visibly, as any
permanent refusal does. So does a refusal that comes back after MAX_NEW_UPLOADS new uploads: the
file keeps changing behind what was sent, or the server refuses something else.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

# New uploads one stream starts for refused parts before it fails (counted while the daemon
# runs). One is what a head rewritten at close needs; the second covers a writer that came back
# once while the first was sent.
MAX_NEW_UPLOADS = 2


class RefusalAction(enum.Enum):
    NEW_UPLOAD = "new_upload"  # abort the upload, send the recording again in a new one
    FAIL = "fail"  # a permanent refusal: the stream fails (status shows why; `tailup retry`)


@dataclass(frozen=True, slots=True)
class RefusalDecision:
    action: RefusalAction
    reason: str


def after_part_refused(
    *, part_number: int, replacing: bool, new_uploads: int, refusal: str
) -> RefusalDecision:
    """``replacing``: the upload may hold part ``part_number`` already (the stream recorded it
    sent, or the upload was made before this run, whose sends the stream does not know);
    ``new_uploads``: how many the stream already started for refusals; ``refusal``: S3's
    words."""
    if not replacing:
        return RefusalDecision(
            RefusalAction.FAIL,
            f"S3 refused part {part_number}, which this upload never held ({refusal}): "
            "a new upload would be refused the same way",
        )
    if new_uploads >= MAX_NEW_UPLOADS:
        return RefusalDecision(
            RefusalAction.FAIL,
            f"S3 refused to replace part {part_number} again after {new_uploads} new uploads "
            f"({refusal})",
        )
    return RefusalDecision(
        RefusalAction.NEW_UPLOAD,
        f"S3 cannot replace part {part_number} with its new bytes ({refusal}): the recording "
        "is sent again in a new upload",
    )
