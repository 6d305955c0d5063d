"""tailup.salvage.Salvager on the memory stores: the cases the e2e test does not reach (a hole in
the parts, another recording's object at the key, a run cut short after its Complete)."""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Collection
from datetime import UTC, datetime
from typing import cast

import pytest

from fakes import FaultyMemoryStore
from tailup.checksums import ChecksumAlgorithm, ChecksumType
from tailup.dev import MemoryCheckpointStore, MemoryMultipartStore
from tailup.errors import StorageUnavailable
from tailup.keys import is_staging_key, metadata_key, segment_key
from tailup.model import PartRecord, StreamRecord, StreamState
from tailup.plan import MiB
from tailup.s3 import MultipartStore
from tailup.salvage import Candidate, Salvager
from tailup.uploadcard import card_key, encode_card

pytestmark = pytest.mark.asyncio

KEY = "streams/s1/cam1.ts"
NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
PART = 5 * MiB


def salvager(
    store: MemoryMultipartStore, checkpoints: MemoryCheckpointStore, *, dry_run: bool = False
) -> Salvager:
    # The memory store is a MultipartStore but for the Body types mypy compares.
    return Salvager(cast(MultipartStore, store), checkpoints, now=NOW, dry_run=dry_run)


def body(number: int, size: int = PART) -> bytes:
    return bytes([number]) * size


async def rig(
    sizes: dict[int, int],
    *,
    unrecorded: Collection[int] = (),
    store: MemoryMultipartStore | None = None,
    kind: ChecksumType | None = None,
) -> tuple[MemoryMultipartStore, MemoryCheckpointStore, Candidate]:
    """An upload holding parts of ``sizes`` (number -> bytes), its record live in Redis with
    those parts checkpointed but the ``unrecorded`` ones (S3 acknowledged them, the daemon died
    before it wrote their checkpoint), and its card beside it. ``kind``: of the object's
    checksum, as the daemon creates uploads now (FULL_OBJECT); None: a record from before the
    field (COMPOSITE)."""
    store = store if store is not None else MemoryMultipartStore()
    checkpoints = MemoryCheckpointStore(scope="node:n1")
    upload_id = await store.create_upload(KEY, "video/mp2t", checksum_type=kind)
    parts: dict[int, PartRecord] = {}
    for number, size in sizes.items():
        data = body(number, size)
        crc = zlib.crc32(data)
        etag = await store.upload_part(KEY, upload_id, number, data, crc)
        if number not in unrecorded:
            parts[number] = PartRecord(number, size, crc, etag)
    record = StreamRecord(
        stream_id="s1",
        path="/rec/cam1.ts",
        watch_root="/rec",
        bucket="b",
        key=KEY,
        base_part_size=PART,
        checksum=ChecksumAlgorithm.CRC32,
        checksum_type=kind.value if kind is not None else "",
        upload_id=upload_id,
        owner="n1",
        scope="node:n1",
    )
    await checkpoints.restore(record, parts)
    card = encode_card(record, upload_id, host="h")
    await store.put_object(card_key(KEY), card, zlib.crc32(card), "application/json")
    loaded = await checkpoints.load("s1")
    assert loaded is not None
    return store, checkpoints, Candidate(*loaded)


async def test_a_hole_ends_the_object_before_it() -> None:
    store, checkpoints, candidate = await rig({1: PART, 2: PART, 4: 100})
    row = await salvager(store, checkpoints).salvage(candidate)
    assert row.outcome == "salvaged" and row.parts == "2/3"
    assert store.objects[KEY] == body(1) + body(2)
    sidecar = json.loads(store.objects[metadata_key(KEY)])
    assert sidecar["salvage"]["parts_left_out"] == [4]
    assert "part 3 is missing" in sidecar["salvage"]["why"]
    assert sidecar["checksums"]["object"]["algorithm"] == "crc32"  # from the checkpoint
    assert card_key(KEY) not in store.objects
    loaded = await checkpoints.load("s1")
    assert loaded is not None and loaded[0].state is StreamState.SALVAGED
    assert loaded[0].final_size == 2 * PART and "part 3 is missing" in loaded[0].note


async def test_a_dry_run_changes_nothing() -> None:
    store, checkpoints, candidate = await rig({1: PART, 2: 77})
    row = await salvager(store, checkpoints, dry_run=True).salvage(candidate)
    assert (row.outcome, row.parts, row.size_bytes) == ("would salvage", "2/2", PART + 77)
    assert sorted(store.objects) == [card_key(KEY)]
    loaded = await checkpoints.load("s1")
    assert loaded is not None and loaded[0].state is StreamState.UPLOADING


async def test_another_recordings_object_at_the_key_is_never_written_over() -> None:
    store, checkpoints, candidate = await rig({1: PART, 2: 10})
    theirs = b"another recording"
    await store.put_object(KEY, theirs, zlib.crc32(theirs), "video/mp2t")
    row = await salvager(store, checkpoints).salvage(candidate)
    assert row.outcome == "skipped" and "another recording's object" in row.why
    assert store.objects[KEY] == theirs
    assert candidate.record.upload_id in store.uploads  # left open
    loaded = await checkpoints.load("s1")
    assert loaded is not None and loaded[0].state is StreamState.UPLOADING


async def test_a_run_cut_short_after_its_complete_is_finished_by_the_next() -> None:
    store, checkpoints, candidate = await rig({1: PART, 2: 10})
    salvaging = salvager(store, checkpoints)
    assert (await salvaging.salvage(candidate)).outcome == "salvaged"
    # As if the first run died before it marked the record: it is live again, upload gone.
    await checkpoints.set_state(
        "s1", StreamState.UPLOADING, allowed_from=[StreamState.SALVAGED], final_size=0
    )
    row = await salvaging.salvage(candidate)
    assert (row.outcome, row.why) == ("skipped", "salvaged already: its record is marked now")
    loaded = await checkpoints.load("s1")
    assert loaded is not None and loaded[0].state is StreamState.SALVAGED
    assert loaded[0].final_size == PART + 10


async def test_an_upload_gone_otherwise_is_left_alone() -> None:
    store, checkpoints, candidate = await rig({1: PART})
    await store.abort_upload(KEY, candidate.record.upload_id)
    row = await salvager(store, checkpoints).salvage(candidate)
    assert (row.outcome, row.why) == (
        "skipped",
        "its upload is no longer open (completed or aborted)",
    )
    loaded = await checkpoints.load("s1")
    assert loaded is not None and loaded[0].state is StreamState.UPLOADING


async def test_from_s3_alone_it_completes_without_checksums_and_writes_the_record() -> None:
    store, checkpoints, candidate = await rig({1: PART, 2: 5})
    await checkpoints.set_state("s1", StreamState.ABORTED, allowed_from=[StreamState.UPLOADING])
    checkpoints.meta.clear()  # Redis emptied
    bare = Candidate(candidate.record, {}, None, from_card=True)
    row = await salvager(store, checkpoints).salvage(bare)
    assert row.outcome == "salvaged" and "record written anew" in row.why
    assert store.objects[KEY] == body(1) + body(2, 5)
    sidecar = json.loads(store.objects[metadata_key(KEY)])
    assert [p["crc32"] for p in sidecar["parts"]] == [None, None]
    assert sidecar["checksums"]["object"] is None
    loaded = await checkpoints.load("s1")
    assert loaded is not None and loaded[0].state is StreamState.SALVAGED


async def test_a_part_missing_from_the_checkpoint_has_the_object_read_back_for_its_sha256() -> None:
    """S3 acknowledged part 2, the daemon died before its checkpoint: no CRC of it is known, so
    no whole-object checksum (and SeaweedFS lists none): metadata.json gets the SHA-256 of the
    object as completed, one GET of it, and the record too."""
    store, checkpoints, candidate = await rig(
        {1: PART, 2: PART, 3: 10}, unrecorded={2}, kind=ChecksumType.FULL_OBJECT
    )
    assert sorted(candidate.parts) == [1, 3]
    row = await salvager(store, checkpoints).salvage(candidate)
    assert (row.outcome, row.parts) == ("salvaged", "3/3")
    whole = body(1) + body(2) + body(3, 10)
    assert store.objects[KEY] == whole
    sidecar = json.loads(store.objects[metadata_key(KEY)])
    assert sidecar["checksums"]["object"] is None
    assert sidecar["checksums"]["sha256"] == hashlib.sha256(whole).hexdigest()
    assert f"one GET of {len(whole)} bytes" in row.why
    loaded = await checkpoints.load("s1")
    assert loaded is not None and loaded[0].state is StreamState.SALVAGED
    assert loaded[0].sha256 == hashlib.sha256(whole).hexdigest()


async def test_every_part_checkpointed_gives_a_whole_object_crc_and_reads_nothing_back() -> None:
    store = FaultyMemoryStore()
    kind = ChecksumType.FULL_OBJECT
    store, checkpoints, candidate = await rig({1: PART, 2: 10}, store=store, kind=kind)
    row = await salvager(store, checkpoints).salvage(candidate)
    assert row.outcome == "salvaged" and "GET" not in row.why
    sidecar = json.loads(store.objects[metadata_key(KEY)])
    assert sidecar["checksums"]["object"]["type"] == "full_object"
    assert sidecar["checksums"]["sha256"] == ""
    assert ("get", KEY) not in store.calls


async def test_a_composite_whole_object_checksum_has_the_object_read_back() -> None:
    """A record from before uploads were FULL_OBJECT: its composite checksum is of the parts'
    checksums, which `tailup verify` cannot check the bytes against."""
    store, checkpoints, candidate = await rig({1: PART, 2: 10})
    row = await salvager(store, checkpoints).salvage(candidate)
    sidecar = json.loads(store.objects[metadata_key(KEY)])
    assert sidecar["checksums"]["object"]["type"] == "composite"
    assert sidecar["checksums"]["sha256"] == hashlib.sha256(body(1) + body(2, 10)).hexdigest()
    assert "one GET" in row.why


async def test_a_dry_run_reads_nothing_back_but_says_it_would() -> None:
    store = FaultyMemoryStore()
    store, checkpoints, candidate = await rig({1: PART, 2: 10}, unrecorded={1}, store=store)
    row = await salvager(store, checkpoints, dry_run=True).salvage(candidate)
    assert row.outcome == "would salvage"
    assert f"one GET of {PART + 10} bytes" in row.why
    assert ("get", KEY) not in store.calls


async def test_a_run_cut_short_before_its_sha256_is_finished_by_the_next() -> None:
    store = FaultyMemoryStore()
    store, checkpoints, candidate = await rig({1: PART, 2: 10}, unrecorded={2}, store=store)
    store.fault = lambda op, key: StorageUnavailable("reset") if (op, key) == ("get", KEY) else None
    row = await salvager(store, checkpoints).salvage(candidate)
    assert row.outcome == "failed" and "the next run" in row.why, row
    sidecar = json.loads(store.objects[metadata_key(KEY)])
    assert sidecar["salvaged"] is True and sidecar["checksums"]["sha256"] == ""
    loaded = await checkpoints.load("s1")
    assert loaded is not None and loaded[0].state is StreamState.UPLOADING  # not marked yet

    store.fault = None
    row = await salvager(store, checkpoints).salvage(candidate)
    assert row.outcome == "skipped" and "its record is marked now" in row.why, row
    digest = hashlib.sha256(body(1) + body(2, 10)).hexdigest()
    sidecar = json.loads(store.objects[metadata_key(KEY)])
    assert sidecar["checksums"]["sha256"] == digest
    loaded = await checkpoints.load("s1")
    assert loaded is not None and loaded[0].state is StreamState.SALVAGED
    assert loaded[0].sha256 == digest


async def test_an_object_replaced_before_it_is_read_back_gets_no_sha256() -> None:
    """Its hash would vouch for bytes salvage did not make."""
    store = FaultyMemoryStore()
    store, checkpoints, candidate = await rig({1: PART, 2: 10}, unrecorded={2}, store=store)
    store.fault = lambda op, key: StorageUnavailable("reset") if (op, key) == ("get", KEY) else None
    assert (await salvager(store, checkpoints).salvage(candidate)).outcome == "failed"
    store.fault = None
    theirs = b"written over meanwhile"
    await store.put_object(KEY, theirs, zlib.crc32(theirs), "video/mp2t")
    row = await salvager(store, checkpoints).salvage(candidate)
    assert f"the object read back is {len(theirs)} bytes, not {PART + 10}" in row.why, row
    sidecar = json.loads(store.objects[metadata_key(KEY)])
    assert sidecar["checksums"]["sha256"] == ""


async def stage(store: MemoryMultipartStore, upload_id: str, start: int, data: bytes) -> None:
    """An --rpo tail segment of the upload: the recording's bytes [start, start + len)."""
    key = segment_key(KEY, upload_id, start, start + len(data))
    await store.put_object(key, data, zlib.crc32(data), "application/octet-stream")


def staged_keys(store: MemoryMultipartStore) -> list[str]:
    return [k for k in store.objects if is_staging_key(k)]


async def test_rpo_tail_segments_past_the_parts_are_stitched_in_then_deleted() -> None:
    store, checkpoints, candidate = await rig({1: PART, 2: PART})
    upload_id = candidate.record.upload_id
    await stage(store, upload_id, 2 * PART, b"t" * 1000)
    await stage(store, upload_id, 2 * PART + 600, b"u" * 900)  # overlaps it, reaches further
    row = await salvager(store, checkpoints).salvage(candidate)
    assert (row.outcome, row.parts, row.size_bytes) == ("salvaged", "2+1/2", 2 * PART + 1500)
    assert store.objects[KEY] == body(1) + body(2) + b"t" * 1000 + b"u" * 500
    assert staged_keys(store) == []
    sidecar = json.loads(store.objects[metadata_key(KEY)])
    assert sidecar["salvage"]["bytes"] == 2 * PART + 1500
    assert "from --rpo's staged tail segments" in sidecar["salvage"]["why"]
    assert sidecar["checksums"]["object"] is not None  # the stitched part's CRC is known too
    loaded = await checkpoints.load("s1")
    assert loaded is not None and loaded[0].final_size == 2 * PART + 1500


async def test_rpo_tail_segments_alone_make_a_recording_shorter_than_a_part() -> None:
    store, checkpoints, candidate = await rig({})
    await stage(store, candidate.record.upload_id, 0, b"s" * 4000)
    row = await salvager(store, checkpoints).salvage(candidate)
    assert (row.outcome, row.parts) == ("salvaged", "0+1/0")
    assert store.objects[KEY] == b"s" * 4000


async def test_rpo_tail_segments_past_a_short_last_part_are_not_the_recording() -> None:
    """A last part shorter than its plan is where the recording ended as finalized."""
    store, checkpoints, candidate = await rig({1: PART, 2: 100})
    await stage(store, candidate.record.upload_id, PART + 100, b"x" * 10)
    row = await salvager(store, checkpoints).salvage(candidate)
    assert (row.outcome, row.parts) == ("salvaged", "2/2")
    assert store.objects[KEY] == body(1) + body(2, 100)
    assert staged_keys(store) == []  # deleted all the same


async def test_from_s3_finds_the_uploads_under_each_prefix_and_none_outside() -> None:
    """`salvage --from-s3` lists under the global prefix and each [[watch]] table's (gc's
    prefixes): a folder's own prefix outside the global one is not missed."""
    from tailup.salvagefind import from_s3

    store = MemoryMultipartStore()
    for key in ("nvr/cam1.ts", "guest/cam2.ts", "other/cam3.ts"):
        upload_id = await store.create_upload(key, "video/mp2t")
        record = StreamRecord(
            stream_id=key, path=f"/rec/{key}", watch_root="/rec", bucket="b", key=key,
            base_part_size=PART, checksum=ChecksumAlgorithm.CRC32, upload_id=upload_id,
        )  # fmt: skip
        card = encode_card(record, upload_id, host="h")
        await store.put_object(card_key(key), card, zlib.crc32(card), "application/json")

    found, rows = await from_s3(cast(MultipartStore, store), None, ["guest/", "nvr/"])

    assert sorted(c.record.key for c in found) == ["guest/cam2.ts", "nvr/cam1.ts"]
    assert all(c.from_card for c in found) and rows == []
