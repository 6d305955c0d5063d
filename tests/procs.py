"""`tailup` as a subprocess, the way an operator runs it: this checkout's code, JSON logs to a
file, and helpers to read its events, signal it and kill it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

SRC = str(Path(__file__).resolve().parents[1] / "src")

Event = dict[str, Any]


def tailup_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a tailup subprocess: this checkout's src first."""
    return {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": SRC, **(extra or {})}


def tailup_cmd(*args: str, wrapper: Sequence[str] = ()) -> list[str]:
    return [*wrapper, sys.executable, "-m", "tailup", *args]


def run_tailup(
    *args: str, env: dict[str, str] | None = None, timeout_s: float = 60
) -> subprocess.CompletedProcess[str]:
    """A one-shot subcommand (status, abort, gc); its output, its exit code."""
    return subprocess.run(
        tailup_cmd(*args),
        env=tailup_env(env),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        stdin=subprocess.DEVNULL,
    )


class DaemonProcess:
    def __init__(self, proc: subprocess.Popen[bytes], log_path: Path) -> None:
        self.proc = proc
        self.log_path = log_path

    @classmethod
    def start(
        cls,
        args: Sequence[str],
        *,
        log_path: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        wrapper: Sequence[str] = (),
    ) -> DaemonProcess:
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                tailup_cmd("run", *args, wrapper=wrapper),
                env=tailup_env(env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
            )
        return cls(proc, log_path)

    def events(self) -> list[Event]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # a line being written right now
        return out

    def wait_for(
        self,
        predicate: Callable[[Event], bool],
        what: str,
        timeout_s: float = 30.0,
    ) -> Event:
        """The first event matching ``predicate``, waiting for it to be logged. Polled: the log
        is another process's file."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for event in self.events():
                if predicate(event):
                    return event
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"tailup exited ({self.proc.returncode}) before {what}: {self.log_tail()}"
                )
            time.sleep(0.02)
        raise AssertionError(f"no {what} within {timeout_s}s: {self.log_tail()}")

    def wait_for_event(self, name: str, timeout_s: float = 30.0, **fields: Any) -> Event:
        def matches(event: Event) -> bool:
            return event.get("event") == name and all(event.get(k) == v for k, v in fields.items())

        return self.wait_for(matches, f"{name!r} {fields or ''}", timeout_s)

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def kill9(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM, then the exit code (SIGKILL if it does not exit in time)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
                raise AssertionError(f"tailup ignored SIGTERM: {self.log_tail()}") from None
        return self.proc.returncode
