"""The supervisor's small pure rules: which deferred event to retry, when a file may be deleted
or moved after upload."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness import IsolatedSettings
from tailup.afterupload import may_act
from tailup.dev import MemoryCheckpointStore, MemoryMultipartStore
from tailup.events import EventKind, FileEvent
from tailup.keys import share_scope
from tailup.model import StreamRecord
from tailup.supervisor import Supervisor, merge_deferred

P = Path("/rec/cam1.ts")
E = EventKind


@pytest.mark.parametrize(
    ("earlier", "later", "kept"),
    [
        (None, E.MODIFIED, E.MODIFIED),
        (E.CLOSED, E.MODIFIED, E.CLOSED),  # a close is not lost behind a later open
        (E.MODIFIED, E.CLOSED, E.CLOSED),
        (E.CREATED, E.MODIFIED, E.CREATED),
        (E.DISCOVERED, E.CLOSED, E.CLOSED),
        (E.CLOSED, E.DELETED, E.DELETED),  # a delete ends the recording: it wins
        (E.DELETED, E.CREATED, E.CREATED),  # a new file after the delete
    ],
)
def test_one_deferred_event_per_path(
    earlier: EventKind | None, later: EventKind, kept: EventKind
) -> None:
    before = FileEvent(earlier, P) if earlier is not None else None
    assert merge_deferred(before, FileEvent(later, P)).kind is kept


@pytest.mark.parametrize(
    ("close_seen", "writer_open", "proc_sees_all", "allowed"),
    [
        (True, False, True, True),  # closed, no writer left
        (True, True, True, False),  # another descriptor still writes
        (False, True, True, False),  # idle finalize, the writer holds it (a stalled feed)
        (False, False, True, True),  # no close seen, but /proc sees every process: none writes
        (False, False, False, False),  # in a container: a writer outside may hold it
        (True, False, False, True),  # in a container, after a close
        (True, None, True, False),  # /proc cannot tell
        (False, None, False, False),
    ],
)
def test_after_upload_only_when_the_writer_is_known_gone(
    close_seen: bool, writer_open: bool | None, proc_sees_all: bool, allowed: bool
) -> None:
    assert (
        may_act(close_seen=close_seen, writer_open=writer_open, proc_sees_all=proc_sees_all)
        is allowed
    )


async def test_a_shared_folders_record_is_seen_under_this_nodes_mount_and_device(
    tmp_path: Path,
) -> None:
    """Another node mounts the share elsewhere, and its NFS client numbers the device its own
    way: the record it wrote is read with this node's path and st_dev, or every comparison of
    the file with its record (resume, reconcile, reads) would take it for another file."""
    mine = tmp_path / "mnt" / "nas"
    mine.mkdir(parents=True)
    settings = IsolatedSettings(bucket="b", node_id="n2", shared_watch=[f"nas={mine}"])
    supervisor = Supervisor(settings, MemoryMultipartStore(), MemoryCheckpointStore())
    await supervisor._look_at_shares()
    theirs = StreamRecord(
        stream_id="s1",
        path="/srv/other-mount/nas/site-a/cam1.ts",
        watch_root="/srv/other-mount/nas",
        bucket="b",
        key="k",
        base_part_size=5 << 20,
        device=12345,
        inode=77,
        scope=share_scope("nas"),
        owner="n1",
    )
    seen = supervisor._localize(theirs)
    assert seen.path == str(mine.resolve() / "site-a" / "cam1.ts")
    assert seen.watch_root == str(mine.resolve())
    assert seen.device == os.stat(mine).st_dev != 12345
    assert seen.inode == 77
    own = theirs.with_changes(scope="node:n2")
    assert supervisor._localize(own) == own, "a node's own records are as written"
