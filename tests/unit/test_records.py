"""tailup.rules.records: pure record factories, and when a pending after-upload action may run
(N3: a later generation never inherits it; an aborted one never triggers it)."""

from __future__ import annotations

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
