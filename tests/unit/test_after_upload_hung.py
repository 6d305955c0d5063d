"""N8's last point: an after-upload action never waits behind a hung mount. A hung root's actions
take only that root's file-I/O slots (tailup.offload), so another root's action goes on; on its
own root the action gives up at its deadline and stays pending, to be tried again.

The hung mount is played by the blocking calls themselves: the /proc pass and the delete or move
block in their worker thread for any path under the hung root, as a kernel call on a hard NFS
mount does, and answer as the real ones do elsewhere."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tailup import afterupload, offload, watcher
from tailup.afterupload import AfterUpload, run_after_upload
from tailup.config import AfterUploadKind
from tailup.offload import PER_ROOT_WORKERS, register_roots, unregister_roots


@pytest.fixture
def roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, Path]]:
    hung_root, other_root = tmp_path / "nfs", tmp_path / "local"
    hung_root.mkdir()
    other_root.mkdir()
    answering = threading.Event()
    real_writers_open, real_act = watcher.writers_open, afterupload.act

    def writers_open(paths: list[Path]) -> dict[Path, bool | None]:
        if any(p.is_relative_to(hung_root) for p in paths):
            answering.wait(30)  # realpath on the hung mount
        return {p: False for p in paths} | real_writers_open(
            [p for p in paths if not p.is_relative_to(hung_root)]
        )

    def act(kind: AfterUploadKind, target: Path | None, path: Path, *args: Any) -> str:
        if path.is_relative_to(hung_root):
            answering.wait(30)  # the unlink or the rename on the hung mount
        return real_act(kind, target, path, *args)

    monkeypatch.setattr(afterupload, "writers_open", writers_open)
    monkeypatch.setattr(afterupload, "act", act)
    register_roots([hung_root, other_root])
    try:
        yield hung_root, other_root
    finally:
        answering.set()
        unregister_roots([hung_root, other_root])


def _move(tmp_path: Path) -> tuple[AfterUploadKind, Path]:
    return AfterUploadKind.MOVE, tmp_path / "done"


async def _action(
    action: tuple[AfterUploadKind, Path | None], path: Path, root: Path, timeout_s: float
) -> AfterUpload:
    return await run_after_upload(
        action, path, root, close_seen=True, proc_sees_all=True, timeout_s=timeout_s
    )


@pytest.mark.parametrize("kind", [AfterUploadKind.MOVE, AfterUploadKind.DELETE])
async def test_a_hung_roots_actions_leave_other_roots_actions_alone(
    roots: tuple[Path, Path], tmp_path: Path, kind: AfterUploadKind
) -> None:
    hung_root, other_root = roots
    action = _move(tmp_path) if kind is AfterUploadKind.MOVE else (kind, None)
    # More actions waiting on the hung root than there are file-I/O workers in the daemon, each
    # within its deadline. One turn of the loop: each has handed its first call over.
    stuck = [
        asyncio.create_task(_action(action, hung_root / f"cam{n}.ts", hung_root, timeout_s=20))
        for n in range(offload.MAX_WORKERS + 16)
    ]
    await asyncio.sleep(0)
    try:
        recording = other_root / "cam1.ts"
        recording.write_bytes(b"verified")
        # The bound is a hang detector: on a free worker this takes milliseconds.
        assert await _action(action, recording, other_root, timeout_s=3) is AfterUpload.DONE
        assert not recording.exists()
        assert offload._SLOTS.busy(str(hung_root)) == PER_ROOT_WORKERS
    finally:
        for task in stuck:
            task.cancel()
        await asyncio.gather(*stuck, return_exceptions=True)


async def test_an_action_on_a_hung_mount_stays_pending_past_its_deadline(
    roots: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not FAILED, which would clear the record's pending flag: the action was never refused,
    it could not be done yet."""
    hung_root, _ = roots
    # The /proc pass answers (realpath from the dentry cache); the unlink hangs.
    monkeypatch.setattr(afterupload, "writers_open", lambda paths: dict.fromkeys(paths, False))
    path = hung_root / "cam1.ts"
    result = await _action((AfterUploadKind.DELETE, None), path, hung_root, timeout_s=0.3)
    assert result.value == "stalled"
