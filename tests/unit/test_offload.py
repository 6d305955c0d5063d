"""tailup.offload: a call stuck in the kernel (a hung NFS stat) costs its caller a deadline, not
the daemon its exit."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tailup.errors import SourceStalled
from tailup.offload import run_blocking

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
