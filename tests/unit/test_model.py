"""The stream state machine and the records kept in the checkpoint store."""

from __future__ import annotations

import itertools
import json

import pytest

from tailup.checksums import ChecksumAlgorithm
from tailup.model import (
    InvalidTransition,
    PartialRecord,
    PartRecord,
    StreamRecord,
    StreamState,
    check_transition,
    lowest_gap,
)
from tailup.plan import PartSizing

S = StreamState

# (from, to, allowed, why)
TRANSITIONS = [
    (S.UPLOADING, S.FINALIZING, True, "the writer is done"),
    (S.UPLOADING, S.STALLED, True, "S3 or Redis unreachable"),
    (S.UPLOADING, S.FAILED, True, "permanent error"),
    (S.UPLOADING, S.ABORTED, True, "source gone"),
    (S.UPLOADING, S.COMPLETED, False, "never complete without finalizing (verify pass)"),
    (S.UPLOADING, S.SKIPPED, False, "only finalizing decides a file is empty"),
    (S.STALLED, S.UPLOADING, True, "the fault cleared"),
    (S.STALLED, S.FINALIZING, True, "the writer finished while stalled"),
    (S.STALLED, S.FAILED, True, "gave up"),
    (S.STALLED, S.ABORTED, True, "operator abort"),
    (S.STALLED, S.COMPLETED, False, "never complete without finalizing"),
    (S.FINALIZING, S.COMPLETED, True, "verified"),
    (S.FINALIZING, S.SKIPPED, True, "closed empty"),
    (S.FINALIZING, S.UPLOADING, True, "the file changed again"),
    (S.FINALIZING, S.STALLED, True, "fault while completing"),
    (S.FINALIZING, S.FAILED, True, "verification failed"),
    (S.FINALIZING, S.ABORTED, True, "source gone"),
    (S.COMPLETED, S.UPLOADING, True, "the file changed after completion: a new generation"),
    (S.COMPLETED, S.FINALIZING, False, "a completed stream restarts by uploading"),
    (S.COMPLETED, S.FAILED, False, "a verified object does not fail later"),
    (S.COMPLETED, S.ABORTED, False, "a verified object is never aborted"),
    (S.COMPLETED, S.STALLED, False, "nothing in flight"),
    (S.SKIPPED, S.UPLOADING, True, "an empty file got data"),
    (S.SKIPPED, S.COMPLETED, False, "nothing was uploaded"),
    (S.FAILED, S.UPLOADING, True, "retried"),
    (S.FAILED, S.ABORTED, True, "operator abort of a failed upload"),
    (S.FAILED, S.COMPLETED, False, "never complete without finalizing"),
    # A failed stream keeps its upload and parts: its retry may find nothing left to send.
    (S.FAILED, S.FINALIZING, True, "retried, every part already sent"),
    (S.FAILED, S.STALLED, True, "retried into a transient fault"),
    *[(S.ABORTED, target, False, "aborted is final") for target in S if target is not S.ABORTED],
    # `tailup salvage` ends a stream whose node died with its file (issue 18).
    *[(live, S.SALVAGED, True, "its node died: salvaged") for live in (S.UPLOADING, S.STALLED)],
    (S.FINALIZING, S.SALVAGED, True, "died while finalizing: salvaged"),
    (S.FAILED, S.SALVAGED, True, "a failed stream's parts salvaged"),
    (S.COMPLETED, S.SALVAGED, False, "a whole object is never salvaged"),
    (S.SALVAGED, S.UPLOADING, True, "its file came back: uploaded whole over the prefix"),
    (S.SALVAGED, S.COMPLETED, False, "only the new generation completes"),
    (S.SALVAGED, S.SALVAGED, True, "salvaged twice changes nothing"),
]


@pytest.mark.parametrize(
    ("current", "target", "allowed"),
    [(c, t, a) for c, t, a, _ in TRANSITIONS],
    ids=[f"{c.value}->{t.value}:{why}" for c, t, _, why in TRANSITIONS],
)
def test_transition_table(current: StreamState, target: StreamState, allowed: bool) -> None:
    if allowed:
        check_transition(current, target)
    else:
        with pytest.raises(InvalidTransition) as info:
            check_transition(current, target)
        assert current.value in str(info.value)
        assert target.value in str(info.value)


@pytest.mark.parametrize("state", list(S), ids=lambda s: s.value)
def test_staying_in_a_state_is_allowed(state: StreamState) -> None:
    check_transition(state, state)


def test_invalid_transition_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        check_transition(S.ABORTED, S.UPLOADING)


def test_terminal_states_never_go_back_to_finalizing_or_stalled() -> None:
    for current, target in itertools.product(
        [S.COMPLETED, S.SKIPPED, S.ABORTED], [S.FINALIZING, S.STALLED]
    ):
        with pytest.raises(InvalidTransition):
            check_transition(current, target)


def test_only_finalizing_leads_to_completed() -> None:
    for current in S:
        if current in (S.FINALIZING, S.COMPLETED):
            continue
        with pytest.raises(InvalidTransition):
            check_transition(current, S.COMPLETED)


@pytest.mark.parametrize(
    ("state", "live"),
    [
        (S.UPLOADING, True),
        (S.STALLED, True),
        (S.FINALIZING, True),
        (S.COMPLETED, False),
        (S.SKIPPED, False),
        (S.FAILED, False),
        (S.ABORTED, False),
        (S.SALVAGED, False),
    ],
)
def test_is_live(state: StreamState, live: bool) -> None:
    assert state.is_live is live


def test_state_values_are_the_stored_ones() -> None:
    # The values are written into Redis (the stream hash's `state` field, read back by the next
    # start and by `tailup status`), shown by `tailup status --json` and the `tailup_streams`
    # metric's `state` label, and named by deploy/prometheus-alerts.yml: renaming one orphans
    # every stream recorded with it.
    assert {s.name: s.value for s in S} == {
        "UPLOADING": "uploading",
        "STALLED": "stalled",
        "FINALIZING": "finalizing",
        "COMPLETED": "completed",
        "SKIPPED": "skipped",
        "FAILED": "failed",
        "ABORTED": "aborted",
        "SALVAGED": "salvaged",
    }


# -- StreamRecord --


def full_record(**changes: object) -> StreamRecord:
    record = StreamRecord(
        stream_id="s-01",
        path="/srv/rec/site a/café 日本.mp4",
        watch_root="/srv/rec",
        bucket="videos",
        key="streams/s-01/café 日本.mp4",
        base_part_size=8 * 1024 * 1024,
        state=S.FINALIZING,
        upload_id="upl-XYZ==",
        next_part_to_upload=42,
        total_bytes_sent=41 * 8 * 1024 * 1024,
        last_activity_at_utc="2024-05-06T07:08:09.123456+00:00",
        error="S3 throttled: SlowDown",
        device=2049,
        inode=1234567,
        generation=3,
        created_at="2024-05-06T07:00:00+00:00",
        completed_at="",
        final_size=12345678901,
        final_mtime_ns=1714979289123456789,
        sha256="ab" * 32,
        etag='"0123-41"',
        extra={"future_field": "1", "remark": "héllo"},  # not a field (note is one)
    )
    return record.with_changes(**changes) if changes else record


@pytest.mark.parametrize(
    "record",
    [
        full_record(),
        full_record(state=S.UPLOADING, extra={}),
        full_record(state=S.COMPLETED, completed_at="2024-05-06T08:00:00+00:00"),
        full_record(state=S.ABORTED, error="line 1\nline 2: ü"),
        full_record(part_sizing=PartSizing.UNIFORM, checksum=ChecksumAlgorithm.CRC64NVME),
        full_record(checksum=ChecksumAlgorithm.NONE),
        full_record(max_part_size=160 * 1024 * 1024),
        StreamRecord("s-2", "/p", "/", "b", "k", 5 * 1024 * 1024),
    ],
    ids=[
        "full",
        "uploading",
        "completed",
        "aborted",
        "uniform-crc64nvme",
        "none",
        "capped",
        "defaults",
    ],
)
def test_stream_record_hash_round_trip(record: StreamRecord) -> None:
    data = record.to_hash()
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in data.items())
    assert StreamRecord.from_hash(data) == record


def test_stream_record_hash_uses_schema_names() -> None:
    data = full_record().to_hash()
    assert data["state"] == "finalizing"
    assert data["next_part_to_upload"] == "42"
    assert data["total_bytes_sent"] == str(41 * 8 * 1024 * 1024)
    assert data["last_activity_at_utc"] == "2024-05-06T07:08:09.123456+00:00"
    assert data["upload_id"] == "upl-XYZ=="
    assert "extra" not in data


def test_unknown_fields_are_preserved() -> None:
    # A newer tailup may write fields this one does not know: keep them on the way back.
    data = full_record(extra={}).to_hash()
    data["added_in_v2"] = "yes"
    data["another"] = ""
    record = StreamRecord.from_hash(data)
    assert record.extra == {"added_in_v2": "yes", "another": ""}
    again = record.to_hash()
    assert again["added_in_v2"] == "yes"
    assert again["another"] == ""
    assert again == data


def test_missing_fields_take_defaults_and_empty_ints_are_zero() -> None:
    data = {
        "stream_id": "s",
        "path": "/p",
        "watch_root": "/",
        "bucket": "b",
        "key": "k",
        "base_part_size": "5242880",
        "device": "",
    }
    record = StreamRecord.from_hash(data)
    assert record.state is S.UPLOADING
    assert record.next_part_to_upload == 1
    assert record.device == 0
    assert record.base_part_size == 5242880
    assert record.extra == {}
    # Records written before --part-sizing and --checksum: the plan and header they were made with.
    assert record.part_sizing is PartSizing.GROWING
    assert record.checksum is ChecksumAlgorithm.CRC32


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("part_sizing", "uniform", PartSizing.UNIFORM),
        ("part_sizing", "growing", PartSizing.GROWING),
        ("checksum", "crc32c", ChecksumAlgorithm.CRC32C),
        ("checksum", "none", ChecksumAlgorithm.NONE),
    ],
)
def test_part_sizing_and_checksum_are_stored_by_value(
    field: str, value: str, expected: object
) -> None:
    data = full_record(**{field: expected}).to_hash()
    assert data[field] == value
    assert getattr(StreamRecord.from_hash(data), field) is expected


def test_an_unknown_part_sizing_is_a_partial_record() -> None:
    data = full_record().to_hash()
    data["part_sizing"] = "spiral"
    with pytest.raises(PartialRecord, match="does not parse"):
        StreamRecord.from_hash(data)


def test_with_changes_returns_a_new_record() -> None:
    record = full_record()
    changed = record.with_changes(state=S.COMPLETED)
    assert changed.state is S.COMPLETED
    assert record.state is S.FINALIZING


# -- PartRecord --


@pytest.mark.parametrize(
    "part",
    [
        PartRecord(1, 8 * 1024 * 1024, 0x3610A686, '"5d41402abc4b2a76b9719d911017c592"', "t"),
        PartRecord(10_000, 5 * 1024**3, 0xFFFFFFFF, '"e"', "2024-05-06T07:08:09+00:00"),
        PartRecord(2, 1, 0, "unquoted"),
        PartRecord(3, 5 * 1024**2, 1, '"e"', "t", "kIH2hw=="),  # a crc32c stream's part
    ],
)
def test_part_record_json_round_trip(part: PartRecord) -> None:
    text = part.to_json()
    json.loads(text)  # plain JSON, readable by other tools
    assert PartRecord.from_json(part.number, text) == part


def test_part_record_json_fields() -> None:
    data = json.loads(PartRecord(3, 100, 7, '"x"', "when").to_json())
    assert data["etag"] == '"x"'
    assert data["size"] == 100
    assert data["crc32"] == 7
    # Only a CRC32C or CRC64NVME stream's parts carry a checksum of their own.
    assert "checksum" not in data
    assert json.loads(PartRecord(3, 100, 7, '"x"', "w", "NB2bFxkaSrM=").to_json())["checksum"] == (
        "NB2bFxkaSrM="
    )


def test_part_record_json_of_older_tailup_has_no_checksum() -> None:
    old = '{"etag": "\\"x\\"", "size": 100, "crc32": 7, "at": "when"}'
    assert PartRecord.from_json(3, old) == PartRecord(3, 100, 7, '"x"', "when", "")


# -- lowest_gap --


@pytest.mark.parametrize(
    ("numbers", "expected"),
    [
        (set(), 1),
        ({1}, 2),
        ({1, 2, 3}, 4),
        ({2, 3}, 1),
        ({1, 3}, 2),
        ({1, 2, 4, 5}, 3),
        (frozenset({1, 2, 3, 5}), 4),
        (set(range(1, 10_001)), 10_001),
    ],
)
def test_lowest_gap(numbers: set[int], expected: int) -> None:
    assert lowest_gap(numbers) == expected


def test_a_record_keeps_the_largest_part_it_started_with() -> None:
    capped = full_record(max_part_size=160 * 1024 * 1024).to_hash()
    assert capped["max_part_size"] == str(160 * 1024 * 1024)
    assert StreamRecord.from_hash(capped).max_part_size == 160 * 1024 * 1024
    # A record from before the cap: 0, which the stream takes for S3's 5 GiB (tailup.stream.core).
    before = full_record().to_hash()
    before.pop("max_part_size")
    assert StreamRecord.from_hash(before).max_part_size == 0
