"""tailup.uploadcard: the card beside an open upload that tells salvage it is tailup's."""

from __future__ import annotations

import json

import pytest

from tailup.checksums import ChecksumAlgorithm
from tailup.model import StreamRecord, StreamState
from tailup.plan import PartSizing
from tailup.uploadcard import card_key, decode_card, encode_card

RECORD = StreamRecord(
    stream_id="0123456789abcdef",
    path="/rec/cam1.ts",
    watch_root="/rec",
    bucket="b",
    key="streams/0123456789abcdef/cam1.ts",
    base_part_size=5 << 20,
    part_sizing=PartSizing.UNIFORM,
    checksum=ChecksumAlgorithm.CRC32C,
    state=StreamState.UPLOADING,
    device=2049,
    inode=77,
    birth_ns=123,
    generation=2,
    owner="nvr-1",
    scope="node:nvr-1",
)


def test_a_card_carries_the_record_of_its_upload() -> None:
    data = encode_card(RECORD, "up-1", host="nvr")
    record, why = decode_card(data, key=RECORD.key, upload_id="up-1")
    assert why == ""
    assert record == RECORD.with_changes(upload_id="up-1")
    assert card_key(RECORD.key) == RECORD.key + ".upload.json"


@pytest.mark.parametrize(
    ("data", "key", "upload_id", "why"),
    [
        (b"\xff\xfe", RECORD.key, "up-1", "not JSON"),
        (b"[]", RECORD.key, "up-1", "not tailup's"),
        (json.dumps({"schema": "other"}).encode(), RECORD.key, "up-1", "not tailup's"),
        (encode_card(RECORD, "up-1", host="h"), RECORD.key, "up-2", "another upload"),
        (encode_card(RECORD, "up-1", host="h"), "elsewhere.ts", "up-1", "another key"),
        (
            json.dumps(
                {"schema": "tailup.upload/1", "upload_id": "u", "key": "k", "record": {"a": 1}}
            ).encode(),
            "k",
            "u",
            "does not parse",
        ),
    ],
)
def test_what_is_not_a_card_of_this_upload(data: bytes, key: str, upload_id: str, why: str) -> None:
    record, reason = decode_card(data, key=key, upload_id=upload_id)
    assert record is None
    assert why in reason
