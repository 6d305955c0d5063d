"""The after-upload action (--after-upload delete | move:DIR): when it may run, and running it.

A file is deleted or moved only after a verified completion, and only when its writer is known
gone: a close was seen (or /proc shows no writer and /proc sees every process) and no process
holds it open for writing. A stream that finalized on idle while its writer holds the file open
(a stalled camera feed, a paused OBS) leaves the action pending: the writer's later bytes are
uploaded as the same recording, and its close runs the action. Pending actions are in the
stream's record, so a restart finishes them.
"""

from __future__ import annotations

import enum
import os
import shutil
from pathlib import Path

import structlog

from tailup.config import AfterUploadKind
from tailup.errors import SourceError, SourceStalled
from tailup.offload import run_blocking
from tailup.rules.writers import may_act
from tailup.sameupload import UploadedFile, holds_upload
from tailup.source import FileStat, stat_file
from tailup.watcher import writers_open

log = structlog.get_logger(__name__)

__all__ = ["AfterUpload", "act", "may_act", "proc_sees_every_writer", "run_after_upload"]

# The initial PID namespace has this fixed inode number (include/linux/proc_ns.h).
_INIT_PID_NS_INODE = 0xEFFFFFFC


def proc_sees_every_writer(proc: Path = Path("/proc")) -> bool:
    """False when tailup runs in a PID namespace of its own (a container): /proc then does not
    show processes outside it, which may be writing the watched files."""
    try:
        return os.stat(proc / "self" / "ns" / "pid").st_ino == _INIT_PID_NS_INODE
    except OSError:
        return False


def act(
    kind: AfterUploadKind,
    target: Path | None,
    path: Path,
    watch_root: Path,
    expected: UploadedFile | None = None,
) -> str:
    """Delete or move the file (blocking: run it off the loop). Returns what was done.
    ``expected``: the file uploaded; the path is left alone unless it still holds that very file
    (tailup.sameupload), checked in the same thread just before the unlink or the move."""
    if expected is not None and not holds_upload(expected, _stat_or_none(path)):
        raise NotTheUpload(f"{path} no longer holds the uploaded file; it is left alone")
    if kind is AfterUploadKind.DELETE:
        os.unlink(path)
        return "deleted"
    if kind is AfterUploadKind.MOVE and target is not None:
        # Keep the path below the watched folder: cam1/rec.mp4 and cam2/rec.mp4 differ.
        relative = path.relative_to(watch_root) if path.is_relative_to(watch_root) else None
        destination = target / (relative or path.name)
        if destination.exists():
            raise FileExistsError(f"{destination} already exists; the source is kept")
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(path, destination)
        return f"moved to {destination}"
    return "kept"


class NotTheUpload(OSError):
    """The path holds another file than the one uploaded (or none): no action on it."""


def _stat_or_none(path: Path) -> FileStat | None:
    try:
        return stat_file(path)
    except (SourceError, SourceStalled):
        return None


class AfterUpload(enum.Enum):
    NOTHING = "nothing"  # --after-upload keep
    DONE = "done"  # deleted or moved
    PENDING = "pending"  # a writer may still hold the file: later
    FAILED = "failed"  # tried and refused (logged): the upload is verified, nothing is lost
    # The file system did not answer within the deadline (a hung mount): not done, not refused;
    # it stays pending and is tried again later.
    STALLED = "stalled"

    @property
    def pending(self) -> bool:
        """The action is still to be done: the record keeps after_upload_pending."""
        return self in (AfterUpload.PENDING, AfterUpload.STALLED)


async def run_after_upload(
    action: tuple[AfterUploadKind, Path | None],
    path: Path,
    watch_root: Path,
    *,
    close_seen: bool,
    proc_sees_all: bool,
    timeout_s: float,
    expected: UploadedFile | None = None,
) -> AfterUpload:
    """The after-upload action for a verified object, if its writer is known gone: the one place
    both a finishing stream and a pending action (after a restart, a writer's late close) use."""
    kind, target = action
    if kind is AfterUploadKind.KEEP:
        return AfterUpload.NOTHING
    # Both calls count against the file's own watch root (tailup.offload): on a hung mount they
    # wait for that root's slots, never for the workers every other root needs.
    try:
        found = await run_blocking(writers_open, [path], timeout_s=timeout_s, what="/proc", on=path)
    except SourceStalled as exc:
        return _stalled(path, exc)  # realpath on the file's mount: the act would hang too
    writer_open = found[path]
    if not may_act(close_seen=close_seen, writer_open=writer_open, proc_sees_all=proc_sees_all):
        log.info(
            "after-upload action pending: a writer may still hold the file",
            path=str(path),
            close_seen=close_seen,
            writer_open=writer_open,
        )
        return AfterUpload.PENDING
    try:
        done = await run_blocking(
            act,
            kind,
            target,
            path,
            watch_root,
            expected,
            timeout_s=timeout_s,
            what=str(path),
            on=path,
        )
    except SourceStalled as exc:
        return _stalled(path, exc)
    except OSError as exc:
        log.warning("after-upload action failed", path=str(path), reason=str(exc))
        return AfterUpload.FAILED
    log.info("source handled after verified upload", path=str(path), action=done)
    return AfterUpload.DONE


def _stalled(path: Path, exc: SourceStalled) -> AfterUpload:
    log.warning("after-upload action stalled; it stays pending", path=str(path), reason=str(exc))
    return AfterUpload.STALLED
