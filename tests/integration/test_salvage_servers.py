"""Salvage on real S3 servers: an upload created and sent the way tailup's streams do (FULL_OBJECT
checksum, each part with its checksum header) is completed from Redis's checkpoint, or from S3
alone (its card, no part checksum known), on SeaweedFS and on moto (AWS's semantics); one with a
part Redis never checkpointed gets the SHA-256 `tailup verify` checks it by."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from harness import cli_here, isolate_cli
from tailup.checkpoint import RedisCheckpointStore
from tailup.checksums import (
    ChecksumAlgorithm,
    new_upload_type,
    part_checksum,
    stored_checksum,
)
from tailup.dev import MotoS3, RedisServer, SeaweedS3
from tailup.integrity import crc32_of
from tailup.keys import metadata_key
from tailup.model import PartRecord, StreamRecord, StreamState
from tailup.plan import MiB
from tailup.s3 import S3MultipartStore
from tailup.salvage import Candidate, Salvager
from tailup.uploadcard import card_key, encode_card

pytestmark = pytest.mark.asyncio


@pytest.fixture(params=["seaweedfs", "moto"])
async def real_store(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[S3MultipartStore, str, str]]:
    """(store, bucket, endpoint URL); the server's credentials in the environment."""
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
        yield store, bucket, server.endpoint_url


@pytest.mark.parametrize("algorithm", [ChecksumAlgorithm.CRC32, ChecksumAlgorithm.CRC32C])
@pytest.mark.parametrize("from_card", [False, True], ids=["redis", "s3-alone"])
async def test_an_upload_sent_as_tailup_sends_it_is_salvaged(
    real_store: tuple[S3MultipartStore, str, str], algorithm: ChecksumAlgorithm, from_card: bool
) -> None:
    store, bucket, _ = real_store
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


async def test_a_part_redis_never_checkpointed_is_read_back_and_verify_matches(
    real_store: tuple[S3MultipartStore, str, str],
    redis_server: RedisServer,
    key_prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """S3 acknowledged part 2, the daemon was killed before it checkpointed it: no whole-object
    CRC can be combined (SeaweedFS lists no part checksums either), so salvage reads the object
    back for its SHA-256, into metadata.json and the record; `tailup verify` then matches."""
    store, bucket, endpoint_url = real_store
    key = "streams/s2/cam2.ts"
    algorithm = ChecksumAlgorithm.CRC32
    kind = new_upload_type(algorithm)
    assert kind is not None
    upload_id = await store.create_upload(key, "video/mp2t", checksum=algorithm, checksum_type=kind)
    bodies = [bytes([1]) * (5 * MiB), bytes([2]) * (5 * MiB), b"tail of the recording"]
    parts: dict[int, PartRecord] = {}
    for number, body in enumerate(bodies, start=1):
        crc, stored = crc32_of(body), stored_checksum(algorithm, body)
        etag = await store.upload_part(
            key, upload_id, number, body, crc, checksum=part_checksum(algorithm, crc, stored)
        )
        if number != 2:
            parts[number] = PartRecord(number, len(body), crc, etag, checksum=stored)
    record = StreamRecord(
        stream_id="s2",
        path="/rec/cam2.ts",
        watch_root="/rec",
        bucket=bucket,
        key=key,
        base_part_size=5 * MiB,
        checksum=algorithm,
        checksum_type=kind.value,
        upload_id=upload_id,
        owner="n1",
        scope="node:n1",
    )
    sha256_hex = hashlib.sha256(b"".join(bodies)).hexdigest()

    async with RedisCheckpointStore.connect(redis_server.url, key_prefix) as checkpoints:
        await checkpoints.restore(record, parts)
        loaded = await checkpoints.load("s2")
        assert loaded is not None and sorted(loaded[1]) == [1, 3]
        salvager = Salvager(store, checkpoints, now=datetime.now(UTC), dry_run=False)
        row = await salvager.salvage(Candidate(*loaded))
        salvaged = await checkpoints.load("s2")

    assert row.outcome == "salvaged" and row.parts == "3/3", row
    assert "SHA-256 read back" in row.why, row
    sidecar = json.loads(await store.get_object(metadata_key(key)))
    assert sidecar["checksums"]["object"] is None
    assert sidecar["checksums"]["sha256"] == sha256_hex
    assert salvaged is not None and salvaged[0].state is StreamState.SALVAGED
    assert salvaged[0].sha256 == sha256_hex
    isolate_cli(monkeypatch, tmp_path)
    connection = ["--endpoint-url", endpoint_url, "--bucket", bucket]
    connection += ["--redis-url", redis_server.url, "--redis-prefix", key_prefix]
    verified = await cli_here(capsys, ["verify", key, *connection])
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert f"sha256 (metadata.json): {sha256_hex}" in verified.stdout
    assert verified.stdout.rstrip().endswith("MATCH")
