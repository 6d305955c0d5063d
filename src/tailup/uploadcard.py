"""The upload card: a small JSON object beside an open multipart upload, `<key>.upload.json`,
that says it is tailup's and what recording it carries. Pure: encoding and decoding only.

Why an object: S3 keeps no readable trace of what an upload was created with. ListMultipartUploads
names each upload's key, id, initiation time, owner and checksum algorithm; ListParts its parts;
neither returns the user metadata given to CreateMultipartUpload (it reaches the object only at
completion), and an open upload has no HEAD. When Redis dies with its node (the embedded default
runs Redis on the recorder), `tailup salvage --from-s3` finds the recording's upload by its card:
an upload with no card naming it is not tailup's and is left alone.

The card is written once, just after the upload is created and checkpointed (one small PutObject
per recording), and deleted after completion (s3:DeleteObject, which the recommended policy grants
on cards and tail segments only; refused, the card stays, and salvage ignores cards whose upload
is no longer open).
"""

from __future__ import annotations

import json
from typing import Any

from tailup.keys import CARD_SUFFIX as CARD_SUFFIX  # the name is keys.py's (render_key avoids it)
from tailup.model import PartialRecord, StreamRecord

CARD_SCHEMA = "tailup.upload/1"


def card_key(object_key: str) -> str:
    return object_key + CARD_SUFFIX


def encode_card(record: StreamRecord, upload_id: str, *, host: str) -> bytes:
    """The card of ``record``'s upload ``upload_id``: its whole record as Redis holds it (the
    fields salvage needs to complete it and to write the record again: stream id, node, source
    path and identity, part plan, checksum, generation)."""
    document = {
        "schema": CARD_SCHEMA,
        "upload_id": upload_id,
        "key": record.key,
        "host": host,
        "record": record.with_changes(upload_id=upload_id).to_hash(),
    }
    return (json.dumps(document, indent=1, sort_keys=True) + "\n").encode("utf-8")


def decode_card(data: bytes, *, key: str, upload_id: str) -> tuple[StreamRecord | None, str]:
    """The record a card describes, if it is tailup's card of upload ``upload_id`` at ``key``;
    else None and why not."""
    try:
        document: Any = json.loads(data)
    except (UnicodeDecodeError, ValueError):
        return None, "its card is not JSON"
    if not isinstance(document, dict) or document.get("schema") != CARD_SCHEMA:
        return None, "its card is not tailup's"
    if document.get("upload_id") != upload_id:
        return None, "its card names another upload of the key"
    if document.get("key") != key or not isinstance(document.get("record"), dict):
        return None, "its card names another key"
    try:
        record = StreamRecord.from_hash({str(k): str(v) for k, v in document["record"].items()})
    except PartialRecord as exc:
        return None, f"its card's record does not parse: {exc}"
    return record.with_changes(upload_id=upload_id), ""
