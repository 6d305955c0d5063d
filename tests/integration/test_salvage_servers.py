"""Salvage on real S3 servers: an upload created and sent the way tailup's streams do (FULL_OBJECT
checksum, each part with its checksum header) is completed from Redis's checkpoint, or from S3
alone (its card, no part checksum known), on SeaweedFS and on moto (AWS's semantics)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from tailup.checksums import (
    ChecksumAlgorithm,
    new_upload_type,
    part_checksum,
    stored_checksum,
)
from tailup.dev import MotoS3, SeaweedS3
from tailup.integrity import crc32_of
from tailup.keys import metadata_key
from tailup.model import PartRecord, StreamRecord
from tailup.plan import MiB
from tailup.s3 import S3MultipartStore
from tailup.salvage import Candidate, Salvager
from tailup.uploadcard import card_key, encode_card

pytestmark = pytest.mark.asyncio


@pytest.fixture(params=["seaweedfs", "moto"])
async def real_store(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[S3MultipartStore, str]]:
    server: SeaweedS3 | MotoS3
    if request.param == "seaweedfs":
        server = request.getfixturevalue("s3_server")
        bucket: str = request.getfixturevalue("bucket")
    else:
        server = request.getfixturevalue("moto_server")
        bucket = request.getfixturevalue("moto_bucket")
    for name, value in server.env().items():
        monkeypatch.setenv(name, value)
    async with S3MultipartStore.connect(
        bucket, endpoint_url=server.endpoint_url, region="us-east-1"
    ) as store:
        yield store, bucket


@pytest.mark.parametrize("algorithm", [ChecksumAlgorithm.CRC32, ChecksumAlgorithm.CRC32C])
@pytest.mark.parametrize("from_card", [False, True], ids=["redis", "s3-alone"])
async def test_an_upload_sent_as_tailup_sends_it_is_salvaged(
    real_store: tuple[S3MultipartStore, str], algorithm: ChecksumAlgorithm, from_card: bool
) -> None:
    store, bucket = real_store
    key = f"streams/s1-{algorithm.value}-{from_card}/cam1.ts"
    record = StreamRecord(
        stream_id="s1",
        path="/rec/cam1.ts",
        watch_root="/rec",
        bucket=bucket,
        key=key,
        base_part_size=5 * MiB,
        checksum=algorithm,
        owner="n1",
        scope="node:n1",
    )
    kind = new_upload_type(algorithm)
    upload_id = await store.create_upload(key, "video/mp2t", checksum=algorithm, checksum_type=kind)
    bodies = [bytes([1]) * (5 * MiB), b"tail of the recording"]
    parts: dict[int, PartRecord] = {}
    for number, body in enumerate(bodies, start=1):
        crc, stored = crc32_of(body), stored_checksum(algorithm, body)
        etag = await store.upload_part(
            key, upload_id, number, body, crc, checksum=part_checksum(algorithm, crc, stored)
        )
        parts[number] = PartRecord(number, len(body), crc, etag, checksum=stored)
    record = record.with_changes(upload_id=upload_id)
    card = encode_card(record, upload_id, host="h")
    await store.put_object(card_key(key), card, crc32_of(card), "application/json")

    salvager = Salvager(store, None, now=datetime.now(UTC), dry_run=False)
    candidate = Candidate(record, {} if from_card else parts, from_card=from_card)
    row = await salvager.salvage(candidate)

    assert row.outcome == "salvaged", row
    assert await store.get_object(key) == b"".join(bodies)
    sidecar = json.loads(await store.get_object(metadata_key(key)))
    assert sidecar["salvaged"] is True and sidecar["size_bytes"] == sum(map(len, bodies))
    assert await store.head_object(card_key(key)) is None
    assert [u for u in await store.list_uploads(key) if u.key == key] == []
