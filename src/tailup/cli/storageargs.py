"""`tailup run`'s flags of how objects are stored (issue 20.2; tailup.objectoptions)."""

from __future__ import annotations

from typing import Any

from tailup.objectoptions import SSE_KINDS, STORAGE_CLASSES

STORAGE_FLAGS: list[tuple[str, dict[str, Any]]] = [
    (
        "--storage-class",
        {
            "metavar": "CLASS",
            "help": "S3 storage class of recordings and their metadata.json: "
            + ", ".join(STORAGE_CLASSES)
            + " (default: the bucket's). The upload card and --rpo's segments stay STANDARD.",
        },
    ),
    (
        "--sse",
        {
            "metavar": "|".join(SSE_KINDS),
            "help": "server-side encryption of every object tailup writes (default: the "
            "bucket's). aws:kms needs kms:GenerateDataKey and kms:Decrypt on the key.",
        },
    ),
    (
        "--sse-kms-key-id",
        {"metavar": "ID", "help": "the KMS key (id, ARN or alias) of --sse aws:kms."},
    ),
    (
        "--tag",
        {
            "action": "append",
            "metavar": "KEY=VALUE",
            "help": "object tag of recordings and their metadata.json, set at creation "
            "(repeat, at most 10); needs s3:PutObjectTagging.",
        },
    ),
]
