"""Child processes of the dev servers: their lifecycle, logs and clean-up.

Every server runs in its own session (a Ctrl-C in the terminal reaches only the parent, which then
stops them in order); children are killed when the parent exits, even on an exception, and, on
Linux, when the parent dies without cleaning up.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self


class DevServerError(RuntimeError):
    """A local server could not be found, started or used."""


_LIVE: set[subprocess.Popen[bytes]] = set()
_LIVE_LOCK = threading.Lock()


def _kill_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    """Send ``sig`` to the child's process group (it leads its own session)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)


@atexit.register
def _kill_leftovers() -> None:
    with _LIVE_LOCK:
        procs = list(_LIVE)
        _LIVE.clear()
    for proc in procs:
        _kill_group(proc, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)


def _parent_death_hook() -> Callable[[], None] | None:
    """On Linux, a pre-exec hook that makes the child get SIGKILL when its parent dies.

    PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, so it is only used for
    children started from the main thread (a worker thread may end long before the program does).
    """
    if not sys.platform.startswith("linux"):
        return None
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()
    pr_set_pdeathsig = 1

    def hook() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the call above
            os._exit(1)

    return hook


def _tail(path: Path, max_lines: int = 40, max_bytes: int = 16_384) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            data = fh.read()
    except OSError as exc:
        return f"(no log at {path}: {exc})"
    lines = data.decode("utf-8", "replace").splitlines()[-max_lines:]
    return "\n".join(lines) if lines else f"(log {path} is empty)"


def _work_dir(directory: Path | str | None, name: str) -> tuple[Path, bool]:
    """A server's folder: the one given, or a temporary one it owns (removed with it)."""
    if directory is None:
        return Path(tempfile.mkdtemp(prefix=f"tailup-{name}-")), True
    return Path(directory).absolute(), False


class _ManagedProcess:
    """One long-running child process with a log file, restartable with the same arguments."""

    name = "server"

    def __init__(self, directory: Path | str | None, *, startup_timeout: float) -> None:
        self.dir, self._owns_dir = _work_dir(directory, self.name)
        self.startup_timeout = startup_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self.last_start_seconds: float | None = None

    # -- to implement --------------------------------------------------------------------

    @property
    def log_path(self) -> Path:
        raise NotImplementedError

    def _argv(self) -> list[str]:
        raise NotImplementedError

    def _is_ready(self) -> bool:
        raise NotImplementedError

    def _after_exit(self) -> None:
        """Clean up what the process leaves behind (called after it exited)."""

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> Self:
        """Start the process and wait until it serves requests; raises DevServerError if not."""
        if self.running:
            raise DevServerError(f"{self.name} is already running (pid {self.pid})")
        self.dir.mkdir(parents=True, exist_ok=True)
        argv = self._argv()
        began = time.monotonic()
        with self.log_path.open("ab") as log:
            log.write(f"\n=== tailup.dev: starting {' '.join(argv)}\n".encode())
            log.flush()
            try:
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.dir,
                    start_new_session=True,
                    preexec_fn=_parent_death_hook(),
                )
            except OSError as exc:
                raise DevServerError(f"cannot start {self.name} ({argv[0]}): {exc}") from exc
        self._proc = proc
        with _LIVE_LOCK:
            _LIVE.add(proc)
        deadline = began + self.startup_timeout
        delay = 0.02
        while True:
            code = proc.poll()
            if code is not None:
                self._forget()
                raise DevServerError(
                    f"{self.name} exited with code {code} while starting; "
                    f"log {self.log_path}:\n{_tail(self.log_path)}"
                )
            if self._is_ready():
                break
            if time.monotonic() > deadline:
                self.kill()
                raise DevServerError(
                    f"{self.name} did not answer within {self.startup_timeout:.0f} s; "
                    f"log {self.log_path}:\n{_tail(self.log_path)}"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 0.2)
        self.last_start_seconds = time.monotonic() - began
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """Graceful stop: SIGTERM, wait up to ``timeout`` seconds, then SIGKILL."""
        proc = self._proc
        if proc is None:
            return
        _kill_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc, signal.SIGKILL)
            proc.wait(timeout=10)
        self._forget()

    def kill(self) -> None:
        """Crash it: SIGKILL, no chance to flush or clean up."""
        proc = self._proc
        if proc is None:
            return
        _kill_group(proc, signal.SIGKILL)
        proc.wait(timeout=10)
        self._forget()

    def restart(self, *, hard: bool = False) -> Self:
        """Stop (or kill, when ``hard``) and start again on the same port(s) and folder."""
        if hard:
            self.kill()
        else:
            self.stop()
        return self.start()

    def close(self) -> None:
        """Stop the process and remove the folder if this object created it."""
        try:
            self.stop()
        finally:
            if self._owns_dir:
                shutil.rmtree(self.dir, ignore_errors=True)

    def _forget(self) -> None:
        proc = self._proc
        self._proc = None
        if proc is not None:
            with _LIVE_LOCK:
                _LIVE.discard(proc)
            self._after_exit()

    def __enter__(self) -> Self:
        if not self.running:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "stopped"
        return f"<{type(self).__name__} {state} dir={self.dir}>"


def _wait_for(
    condition: Callable[[], str | None], timeout: float, what: str, logs: Sequence[Path]
) -> None:
    """Poll ``condition`` (None when met, else what is still missing) until ``timeout``."""
    deadline = time.monotonic() + timeout
    delay = 0.02
    while True:
        try:
            missing = condition()
        except Exception as exc:  # a server that is still coming up refuses or resets
            missing = f"{type(exc).__name__}: {exc}"
        if missing is None:
            return
        if time.monotonic() > deadline:
            tails = "\n".join(f"log {log}:\n{_tail(log)}" for log in logs)
            raise DevServerError(f"{what} within {timeout:.0f} s: {missing}\n{tails}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.2)


class _ServerGroup:
    """Servers started, stopped and removed together (a cluster, a Sentinel deployment)."""

    name = "servers"

    def __init__(self, directory: Path | str | None, *, startup_timeout: float) -> None:
        self.dir, self._owns_dir = _work_dir(directory, self.name)
        self.startup_timeout = startup_timeout

    def _members(self) -> list[_ManagedProcess]:
        """Every process of the group, in the order they are stopped."""
        raise NotImplementedError

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        errors: list[BaseException] = []
        for member in self._members():
            try:
                member.stop()
            except BaseException as exc:  # stop the others all the same
                errors.append(exc)
        if errors:
            raise errors[0]

    def close(self) -> None:
        try:
            self.stop()
        finally:
            if self._owns_dir:
                shutil.rmtree(self.dir, ignore_errors=True)

    def _logs(self) -> list[Path]:
        return [member.log_path for member in self._members()]

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
