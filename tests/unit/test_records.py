"""tailup.rules.records: pure record factories, and when a pending after-upload action may run
(N3: a later generation never inherits it; an aborted one never triggers it)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tailup.checksums import ChecksumAlgorithm
from tailup.identity import FileIdentity
from tailup.model import EndCause, StreamRecord, StreamState
from tailup.plan import PartSizing
from tailup.rules.records import (
    Placement,
    RecordDefaults,
    completed_from_sidecar,
    key_prefix,
    new_record,
    next_generation,
    pending_action_may_run,
)
from tailup.source import FileStat

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
ROOT = Path("/rec")
ST = FileStat(size=1000, mtime_ns=5, device=1, inode=42, birth_ns=7)
SEEN = FileIdentity(device=1, inode=42, birth_ns=7, generation=-1)
DEFAULTS = RecordDefaults(
    bucket="b",
    key_template="{stream_id}/{relpath}",
    prefix="p/",
    part_size=5 << 20,
    part_sizing=PartSizing.GROWING,
    checksum=ChecksumAlgorithm.CRC32,
    hostname="h",
    node_id="n1",
)
REC = new_record(
    DEFAULTS, Placement(ROOT, "rec", "node:n1"), ROOT / "cam/a.ts", ST, SEEN, "s1", NOW
)
DONE = REC.with_changes(
    state=StreamState.COMPLETED, final_size=1000, final_mtime_ns=5, after_upload_pending=True
)


def test_a_new_record_is_generation_one_of_its_file() -> None:
    assert (REC.key, REC.scope, REC.owner, REC.watch_root) == (
        "p/s1/cam/a.ts",
        "node:n1",
        "n1",
        "/rec",
    )
    assert (REC.generation, REC.state, REC.birth_ns, REC.inode) == (1, StreamState.UPLOADING, 7, 42)
    assert REC.created_at.startswith("2026-12-07T12:00")


def test_a_later_generation_never_inherits_a_pending_after_upload_action() -> None:
    later = next_generation(DONE, ST, SEEN, NOW)
    assert later.generation == 2 and later.state is StreamState.UPLOADING
    assert not later.after_upload_pending
    assert (later.completed_at, later.end_cause, later.upload_id) == ("", EndCause.NONE, "")


def test_a_sidecar_gives_a_completed_record() -> None:
    sidecar = {
        "generation": 3,
        "checksums": {"sha256": "ab", "multipart_etag": "e-2"},
        "parts": [{"size_bytes": 10, "crc32": "ff"}],
        "finished_at": "t",
    }
    got = completed_from_sidecar(REC, ST, sidecar, NOW)
    assert (got.state, got.generation, got.etag, got.head_size, got.head_crc32) == (
        StreamState.COMPLETED,
        3,
        '"e-2"',
        10,
        255,
    )
    assert (got.final_size, got.final_mtime_ns, got.completed_at) == (1000, 5, "t")


@pytest.mark.parametrize(
    ("record", "size", "mtime_ns", "may"),
    [
        (DONE, 1000, 5, True),
        (DONE.with_changes(after_upload_pending=False), 1000, 5, False),
        (DONE, 1500, 6, False),  # grew since: not the file that was completed
        (DONE, 1000, 9, False),  # rewritten in place, same size
        (DONE.with_changes(state=StreamState.ABORTED, end_cause=EndCause.OPERATOR), 1000, 5, False),
        (DONE.with_changes(state=StreamState.FAILED), 1000, 5, False),
        (DONE.with_changes(state=StreamState.UPLOADING), 1000, 5, False),
    ],
)
def test_a_pending_action_runs_only_for_the_completed_file(
    record: StreamRecord, size: int, mtime_ns: int, may: bool
) -> None:
    assert pending_action_may_run(record, size, mtime_ns) is may


# -- every field of the records the factories build (mutation testing: docs/testing.md) ----------
# The expected records are spelled out field by field, not made by the factories, and their
# values differ from StreamRecord's defaults and from each other: a field dropped, defaulted or
# taken from the wrong source shows.

HOST_ROOT = Path("/srv/videos")
DEFAULTS_C = RecordDefaults(
    bucket="media",
    key_template="{hostname}/{watch}/{date}/{time}/{stream_id}-{stem}.{ext}",
    prefix="/pre/",
    part_size=8 << 20,
    part_sizing=PartSizing.UNIFORM,
    checksum=ChecksumAlgorithm.CRC32C,
    hostname="nvr-01",
    node_id="node-7",
    max_part_size=1 << 30,  # a cap from a small memory budget (tailup.plan.part_size_cap)
)
DEFAULTS_NONE = RecordDefaults(
    bucket="b2",
    key_template="{relpath}",
    prefix="",
    part_size=5 << 20,
    part_sizing=PartSizing.GROWING,
    checksum=ChecksumAlgorithm.NONE,
    hostname="h",
    node_id="n2",
)
ST_C = FileStat(size=300, mtime_ns=400, device=11, inode=12, birth_ns=13)
SEEN_C = FileIdentity(device=11, inode=12, birth_ns=13, generation=14)
AT_NOON = "2026-12-07T12:00:00+00:00"


@pytest.mark.parametrize(
    ("defaults", "place", "path", "expected"),
    [
        pytest.param(
            DEFAULTS_C,
            Placement(HOST_ROOT, "cams", "share:nas"),
            HOST_ROOT / "day" / "cam1.ts",
            StreamRecord(
                stream_id="sid",
                path="/srv/videos/day/cam1.ts",
                watch_root="/srv/videos",
                bucket="media",
                key="pre/nvr-01/cams/2026-12-07/120000/sid-cam1.ts",
                base_part_size=8 << 20,
                part_sizing=PartSizing.UNIFORM,
                max_part_size=1 << 30,
                checksum=ChecksumAlgorithm.CRC32C,
                checksum_type="full_object",
                device=11,
                inode=12,
                birth_ns=13,
                inode_generation=14,
                created_at=AT_NOON,
                last_activity_at_utc=AT_NOON,
                owner="node-7",
                scope="share:nas",
            ),
            id="every-setting-in-the-key",
        ),
        pytest.param(
            DEFAULTS_NONE,
            Placement(HOST_ROOT, "v", "node:n2"),
            HOST_ROOT / "a" / "b" / "c.mp4",
            StreamRecord(
                stream_id="sid",
                path="/srv/videos/a/b/c.mp4",
                watch_root="/srv/videos",
                bucket="b2",
                key="a/b/c.mp4",  # the path under the watched folder, not the whole path
                base_part_size=5 << 20,
                part_sizing=PartSizing.GROWING,
                max_part_size=5 << 30,  # S3's largest part: no budget's cap given
                checksum=ChecksumAlgorithm.NONE,
                checksum_type="",  # no checksum: no type either
                device=11,
                inode=12,
                birth_ns=13,
                inode_generation=14,
                created_at=AT_NOON,
                last_activity_at_utc=AT_NOON,
                owner="n2",
                scope="node:n2",
            ),
            id="no-checksum-relpath",
        ),
    ],
)
def test_new_record_field_by_field(
    defaults: RecordDefaults, place: Placement, path: Path, expected: StreamRecord
) -> None:
    assert new_record(defaults, place, path, ST_C, SEEN_C, "sid", NOW) == expected


@pytest.mark.parametrize(
    ("defaults", "template", "prefix"),
    [
        pytest.param(DEFAULTS, DEFAULTS.key_template, "p/s1/", id="the id first, under the prefix"),
        pytest.param(
            DEFAULTS_C,
            "{hostname}/{watch}/{stream_id}/{name}",
            "pre/nvr-01/v/s1/",
            id="every field up to the id",
        ),
        pytest.param(DEFAULTS_C, DEFAULTS_C.key_template, "", id="the time before the id: none"),
        pytest.param(DEFAULTS_NONE, DEFAULTS_NONE.key_template, "", id="no id: none"),
    ],
)
def test_key_prefix(defaults: RecordDefaults, template: str, prefix: str) -> None:
    """The start of every key a stream may have had (the Redis-loss lookup lists under it): the
    daemon's prefix and the template's fields up to the stream id, none where a rename or the
    time could change it."""
    defaults = dataclasses.replace(defaults, key_template=template)
    place = Placement(HOST_ROOT, "v", "node:n2")
    assert key_prefix(defaults, place, HOST_ROOT / "a" / "c.ts", "s1", NOW) == prefix


# A record that ended in every way a record can, each field set apart from its default.
ENDED = StreamRecord(
    stream_id="s9",
    path="/rec/x.ts",
    watch_root="/rec",
    bucket="b",
    key="k/x.ts",
    base_part_size=6 << 20,
    part_sizing=PartSizing.UNIFORM,
    max_part_size=2 << 30,
    checksum=ChecksumAlgorithm.CRC64NVME,
    checksum_type="full_object",
    state=StreamState.ABORTED,
    upload_id="u-1",
    next_part_to_upload=8,
    total_bytes_sent=7_000,
    last_activity_at_utc="old-activity",
    error="boom",
    note="shrank",
    device=2,
    inode=3,
    birth_ns=4,
    inode_generation=5,
    generation=6,
    created_at="old-created",
    completed_at="old-completed",
    final_size=9_000,
    final_mtime_ns=10,
    sha256="ab",
    etag='"e-2"',
    head_size=11,
    head_crc32=12,
    end_cause=EndCause.SOURCE_GONE,
    path_ended=True,
    after_upload_pending=True,
    key_pending=True,
    adopted_upload="u-0",
    sha256_pending=True,
    owner="n1",
    scope="node:n1",
    extra={"x-field": "kept"},
)


def test_next_generation_field_by_field() -> None:
    """What the next generation resets, what it takes from the file now, and what it keeps
    (the recording's key, settings and the last completion's sums until it completes again)."""
    expected = StreamRecord(
        stream_id="s9",
        path="/rec/x.ts",
        watch_root="/rec",
        bucket="b",
        key="k/x.ts",
        base_part_size=6 << 20,
        part_sizing=PartSizing.UNIFORM,
        max_part_size=2 << 30,  # the recording's plan: kept
        checksum=ChecksumAlgorithm.CRC64NVME,
        checksum_type="full_object",
        state=StreamState.UPLOADING,
        upload_id="",
        next_part_to_upload=1,
        total_bytes_sent=0,
        last_activity_at_utc=AT_NOON,
        error="",
        note="",
        device=11,
        inode=12,
        birth_ns=13,
        inode_generation=14,
        generation=7,
        created_at=AT_NOON,
        completed_at="",
        final_size=9_000,
        final_mtime_ns=10,
        sha256="ab",
        etag='"e-2"',
        head_size=11,
        head_crc32=12,
        end_cause=EndCause.NONE,
        path_ended=False,
        after_upload_pending=False,
        key_pending=True,
        adopted_upload="u-0",
        sha256_pending=True,
        owner="n1",
        scope="node:n1",
        extra={"x-field": "kept"},
    )
    assert next_generation(ENDED, ST_C, SEEN_C, NOW) == expected


RECOVERED = "recovered from S3's metadata.json (Redis had no record of it)"


@pytest.mark.parametrize(
    ("sidecar", "changes"),
    [
        pytest.param(
            {
                "generation": 3,
                "checksums": {"sha256": "ab", "multipart_etag": '"e-2"'},
                "parts": [{"size_bytes": 10, "crc32": "ff"}, {"size_bytes": 20, "crc32": "1"}],
                "finished_at": "t",
            },
            dict(
                generation=3,
                completed_at="t",
                sha256="ab",
                etag='"e-2"',
                head_size=10,
                head_crc32=255,
            ),
            id="whole",
        ),
        pytest.param(
            {},
            dict(
                generation=1, completed_at=AT_NOON, sha256="", etag='""', head_size=0, head_crc32=0
            ),
            id="empty: generation 1, finished now",
        ),
        pytest.param(
            {"generation": 0, "checksums": None, "parts": None, "finished_at": ""},
            dict(
                generation=1, completed_at=AT_NOON, sha256="", etag='""', head_size=0, head_crc32=0
            ),
            id="nulls",
        ),
        pytest.param(
            {"parts": [], "checksums": {"multipart_etag": "e-3"}},
            dict(
                generation=1,
                completed_at=AT_NOON,
                sha256="",
                etag='"e-3"',
                head_size=0,
                head_crc32=0,
            ),
            id="no parts, an unquoted etag",
        ),
        pytest.param(
            {"checksums": {"multipart_etag": "X-1X"}},
            dict(
                generation=1,
                completed_at=AT_NOON,
                sha256="",
                etag='"X-1X"',
                head_size=0,
                head_crc32=0,
            ),
            id="only quotes are taken off the etag",
        ),
        pytest.param(
            {"parts": ["not a part"]},
            dict(
                generation=1, completed_at=AT_NOON, sha256="", etag='""', head_size=0, head_crc32=0
            ),
            id="a part that is no object",
        ),
        pytest.param(
            {"parts": [{"size_bytes": 5, "crc32": "zz"}]},
            dict(
                generation=1, completed_at=AT_NOON, sha256="", etag='""', head_size=5, head_crc32=0
            ),
            id="a crc32 that is no hex",
        ),
        pytest.param(
            {"parts": [{"size_bytes": 5}]},
            dict(
                generation=1, completed_at=AT_NOON, sha256="", etag='""', head_size=5, head_crc32=0
            ),
            id="no crc32",
        ),
    ],
)
def test_completed_from_sidecar_field_by_field(
    sidecar: dict[str, object], changes: dict[str, object]
) -> None:
    got = completed_from_sidecar(REC, ST_C, sidecar, NOW)
    expected = REC.with_changes(
        state=StreamState.COMPLETED,
        final_size=300,
        final_mtime_ns=400,
        note=RECOVERED,
        **changes,
    )
    assert got == expected
