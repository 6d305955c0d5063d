"""The S3 permissions tailup needs, in one place: the IAM action each S3 call it makes needs, what
each action is for, and what tailup does without the optional ones.

``IAM_ACTIONS`` maps every botocore operation tailup.s3 calls to its IAM action (AWS's "Actions,
resources, and condition keys for Amazon S3"); deploy/iam-policy.json and docs/operations.md are
checked against it (tests/unit/test_permissions.py), and S3's refusals name the action from it.

The daemon needs to write its objects, read them back and manage its own multipart uploads. Three
actions are optional: without one, only the features that need it are off, said once in the log
(``refused``), and the daemon goes on:

- ``s3:ListBucket`` (HeadBucket, ListObjectsV2): the bucket check at start, and the lookup of a
  file Redis has no record of under the start of its stream's keys (renamed since its upload:
  tailup.recovery). Refused, the check is skipped (S3 answering at all is then what /healthz
  checks) and the lookup is made at the key the file's name gives now only. On AWS, ListBucket is
  also what makes a HEAD of a missing key answer 404; without it, 403, which tailup takes as
  "cannot tell" (below).
- ``s3:GetObject`` (HeadObject, GetObject): reading objects back. Refused, the object is checked
  after completion by the ETag CompleteMultipartUpload (or PutObject) returned instead of a HEAD;
  a file Redis has no record of is not looked up by its metadata.json (its open uploads still
  are: a completed recording whose record was lost is uploaded again, never over the object
  already there, which If-None-Match keeps); a key is taken as free without a HEAD (If-None-Match
  again keeps any object there). `tailup verify` needs it.
- ``s3:DeleteObject``: deleting tailup's own helper objects once they are of no use: the card
  beside an open upload (tailup.uploadcard, ``<key>.upload.json``) once the upload is completed
  or aborted, and with --rpo its tail segments (tailup.rpo, under ``<key>.tailup/``). The
  recommended policy grants it on those two key shapes only (``*.upload.json``, ``*.tailup/*``;
  no recording's key has either, tailup.keys.render_key), so a recorder node's credentials
  cannot delete a recording or its metadata.json. Refused, those helper objects stay. Taking back
  a first generation's object that landed after `tailup abort` (the abort raced its PutObject or
  its completion: tailup.stream.bookkeeping) needs it on the recording's keys, which the policy
  does not grant: refused, the object stays and the log names it. tailup deletes nothing else,
  ever.
"""

from __future__ import annotations

from typing import Final

import structlog
from botocore import xform_name

# botocore operation name -> the IAM action it needs. Every operation tailup.s3 calls is here,
# and nothing else (tests/unit/test_permissions.py reads tailup/s3/client.py to check it).
IAM_ACTIONS: Final[dict[str, str]] = {
    "HeadBucket": "s3:ListBucket",
    "ListObjectsV2": "s3:ListBucket",
    "CreateMultipartUpload": "s3:PutObject",
    "UploadPart": "s3:PutObject",
    "CompleteMultipartUpload": "s3:PutObject",
    "PutObject": "s3:PutObject",
    "AbortMultipartUpload": "s3:AbortMultipartUpload",
    "ListParts": "s3:ListMultipartUploadParts",
    "ListMultipartUploads": "s3:ListBucketMultipartUploads",
    "HeadObject": "s3:GetObject",
    "GetObject": "s3:GetObject",
    "DeleteObject": "s3:DeleteObject",
}
# The same, by the client method tailup.s3 calls (botocore's snake_case names).
IAM_ACTION_OF_METHOD: Final[dict[str, str]] = {
    xform_name(operation): action for operation, action in IAM_ACTIONS.items()
}

# What each action is for; the required ones first. docs/operations.md has the same table.
REQUIRED: Final[dict[str, str]] = {
    "s3:PutObject": "uploads: CreateMultipartUpload, UploadPart, CompleteMultipartUpload, and "
    "PutObject for short recordings and metadata.json",
    "s3:AbortMultipartUpload": "aborting its own uploads: a recording closed empty or replaced, "
    "`tailup abort`, `tailup gc`, orphan uploads a lost reply or a crash left",
    "s3:ListMultipartUploadParts": "resume after a restart or a crash (ListParts: which parts "
    "S3 holds)",
    "s3:ListBucketMultipartUploads": "resume and recovery (its key's open uploads), the orphan "
    "sweep, `tailup gc`",
}
# Optional: what is off without it (said in the log once, at the first refusal).
OPTIONAL: Final[dict[str, str]] = {
    "s3:ListBucket": "the bucket check at start is skipped (the first upload tells whether the "
    "bucket takes writes) and /healthz checks only that S3 answers; a file Redis has no record "
    "of is looked up at the key its name gives now only (one renamed since its upload is "
    "uploaded again under its new name); with --rpo, the tail segments of an earlier run or "
    "another node are not found, nor deleted",
    "s3:GetObject": "objects are not read back: the ETag S3 returns to the upload is checked "
    "instead after completion; metadata.json is not looked up for a file Redis has no record "
    "of, and keys are taken as free without a HEAD (If-None-Match still refuses to write over "
    "an object); `tailup verify` cannot run",
    "s3:DeleteObject": "a recording's object that lands after `tailup abort` (its one PutObject "
    "or its completion was in flight) stays in the bucket, with its metadata.json, and is named "
    "in the log (the recommended policy grants s3:DeleteObject on tailup's own helper objects "
    "only); where it is refused on those too, the upload card beside each open upload "
    "(`<key>.upload.json`, what `tailup salvage --from-s3` finds it by) stays after the upload "
    "completes (salvage ignores cards whose upload is no longer open), and with --rpo, tail "
    "segments stay beside the object under <key>.tailup/",
}

# Needed only when a flag asks for it (issue 20.2; tailup.objectoptions), hence not in
# deploy/iam-policy.json: flag -> the actions its CreateMultipartUpload and PutObject need (the
# AWS API reference of both). docs/operations.md names them (tests/unit/test_permissions.py).
FLAG_ACTIONS: Final[dict[str, tuple[str, ...]]] = {
    "--tag": ("s3:PutObjectTagging",),
    "--sse aws:kms": ("kms:GenerateDataKey", "kms:Decrypt"),
}

log = structlog.get_logger("tailup.permissions")
_said: set[str] = set()


def action_of(method: str) -> str:
    """The IAM action a tailup.s3 client method needs ("" for one tailup does not call)."""
    return IAM_ACTION_OF_METHOD.get(method, "")


def refused(action: str, reason: str = "") -> None:
    """An optional permission was refused: say once what is off, and go on."""
    if action in _said:
        return
    _said.add(action)
    log.warning(
        f"S3 refuses {action}: {OPTIONAL.get(action, 'the feature that needs it is off')}",
        action=action,
        reason=reason,
    )


def forget_refusals() -> None:
    """Forget what was said (tests run several daemons' worth of stores in one process)."""
    _said.clear()
