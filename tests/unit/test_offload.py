"""tailup.offload: a call stuck in the kernel (a hung NFS stat) costs its caller a deadline, not
the daemon its exit."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from tailup import offload
from tailup.errors import SourceStalled
from tailup.offload import PER_ROOT_WORKERS, register_roots, run_blocking, unregister_roots

SRC = str(Path(__file__).resolve().parents[2] / "src")


async def test_a_call_past_its_deadline_is_a_stall() -> None:
    import threading

    release = threading.Event()
    try:
        with pytest.raises(SourceStalled, match=r"did not answer within 0\.1 s"):
            await run_blocking(release.wait, 60, timeout_s=0.1, what="stat of /nfs/cam1.ts")
    finally:
        release.set()


async def test_results_and_errors_come_back() -> None:
    assert await run_blocking(sum, [1, 2, 3]) == 6
    with pytest.raises(ZeroDivisionError):
        await run_blocking(divmod, 1, 0)


def test_the_interpreter_exits_while_a_call_still_hangs() -> None:
    """asyncio.to_thread's executor is joined at exit: a thread stuck in the kernel would keep
    the daemon from ever exiting after SIGTERM. tailup's threads are daemon threads."""
    program = textwrap.dedent(
        """
        import asyncio, threading
        from tailup.errors import SourceStalled
        from tailup.offload import run_blocking

        async def main():
            try:
                await run_blocking(threading.Event().wait, timeout_s=0.2)
            except SourceStalled:
                print("stalled", flush=True)

        asyncio.run(main())
        """
    )
    # The bound is a hang detector, not a speed claim: the call inside never returns.
    result = subprocess.run(
        [sys.executable, "-c", program],
        env={"PYTHONPATH": SRC},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "stalled"


async def _stall(call: Any, *args: Any, timeout_s: float) -> None:
    with pytest.raises(SourceStalled):
        await run_blocking(call, *args, timeout_s=timeout_s)


async def test_a_hung_root_stalls_only_its_own_calls(tmp_path: Path) -> None:
    """N8: every worker parked on one hung mount used to stall every stream on every file
    system. One root holds at most PER_ROOT_WORKERS threads; another root's calls go on."""
    hung_root, other_root = tmp_path / "nfs", tmp_path / "local"
    hung = threading.Event()
    register_roots([hung_root, other_root])
    try:

        def stuck(path: Path) -> None:
            hung.wait(30)  # a stat on the hung mount

        await asyncio.gather(
            *(_stall(stuck, hung_root / f"cam{n}.ts", timeout_s=0.3) for n in range(80))
        )
        assert offload._SLOTS.busy(str(hung_root)) == PER_ROOT_WORKERS
        # More than MAX_WORKERS calls gave up on the hung root, and still:
        assert await run_blocking(str, other_root / "cam1.ts", timeout_s=2) == str(
            other_root / "cam1.ts"
        )
    finally:
        hung.set()
        unregister_roots([hung_root, other_root])


async def test_a_queued_call_whose_caller_gave_up_is_dropped() -> None:
    """N8: when the workers are all stuck, a call waits in the queue; if its caller gave up
    (deadline, cancellation), it must not run minutes later, when the mount answers again."""
    hung = threading.Event()
    ran: list[str] = []
    try:
        stuck = [_stall(hung.wait, 30, timeout_s=0.3) for _ in range(offload.MAX_WORKERS)]
        late = _stall(ran.append, "deleted a file decided minutes ago", timeout_s=0.3)
        await asyncio.gather(*stuck, late)
    finally:
        hung.set()
    # The workers come back and take the queue: the given-up call is skipped, not run.
    assert await run_blocking(str, "after", timeout_s=5) == "after"
    await asyncio.sleep(0.2)
    assert ran == []
