"""`tailup` as a subprocess for operations tests: the daemon, the CLI, and its HTTP endpoint."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
SRC = str(ROOT / "src")
T = TypeVar("T")


def tailup_env(extra: dict[str, str]) -> dict[str, str]:
    """This checkout's tailup, unbuffered, and no TAILUP_ setting leaking in from outside: none
    from the environment, none from a .env file in the working directory (TAILUP_ENV_FILE)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("TAILUP_")}
    return {**base, "PYTHONUNBUFFERED": "1", "PYTHONPATH": SRC, "TAILUP_ENV_FILE": "", **extra}


def run_cli(
    args: Sequence[str], env: dict[str, str], timeout_s: float = 60, *, cwd: Path | None = None
) -> Any:
    """`python -m tailup ARGS`; returns the CompletedProcess (text). It runs in ``cwd``, by
    default an empty folder of its own: tailup reads a .env file in its working folder, and the
    test's (the checkout, where a developer keeps theirs) must not reach it."""
    with tempfile.TemporaryDirectory(prefix="tailup-cli-") as empty:
        return subprocess.run(
            [sys.executable, "-m", "tailup", *args],
            env=tailup_env(env),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            cwd=cwd or empty,
        )


@dataclass(frozen=True)
class TerminalRun:
    returncode: int
    screen: str  # what the terminal showed, colours and cursor codes taken out, "\n" line ends
    stderr: str


_TERMINAL_CODES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07|\x1b[=>]")


def run_cli_in_terminal(
    args: Sequence[str], env: dict[str, str], *, columns: int, timeout_s: float = 60
) -> TerminalRun:
    """`python -m tailup ARGS` with stdout on a pseudo-terminal ``columns`` wide (set on the
    terminal itself, as a resized window sets it: COLUMNS and LINES are not passed); stderr is
    a pipe."""
    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    environ = {k: v for k, v in tailup_env(env).items() if k not in ("COLUMNS", "LINES")}
    environ.setdefault("TERM", "xterm-256color")
    try:
        with tempfile.TemporaryDirectory(prefix="tailup-cli-") as empty:  # no .env (run_cli)
            proc = subprocess.Popen(
                [sys.executable, "-m", "tailup", *args],
                env=environ,
                stdin=subprocess.DEVNULL,
                stdout=child,
                stderr=subprocess.PIPE,
                cwd=empty,
            )
    finally:
        os.close(child)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([main], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(main, 65536)
                except OSError:  # EIO: the child closed its end
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            elif proc.poll() is not None:
                break
        else:
            proc.kill()
            raise AssertionError(f"tailup {' '.join(args)} did not end in {timeout_s}s")
        stderr = proc.stderr.read() if proc.stderr else b""
        code = proc.wait(timeout=timeout_s)
    finally:
        os.close(main)
        if proc.stderr:
            proc.stderr.close()
    text = b"".join(chunks).decode(errors="replace").replace("\r\n", "\n")
    return TerminalRun(code, _TERMINAL_CODES.sub("", text), stderr.decode(errors="replace"))


@dataclass
class DaemonProcess:
    proc: subprocess.Popen[bytes]
    log_path: Path
    # Events parsed so far and where the next read starts: a debug log grows by megabytes, and
    # tests poll it every few milliseconds.
    _events: list[dict[str, Any]] = field(default_factory=list)
    _offset: int = 0

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def events(self) -> list[dict[str, Any]]:
        with self.log_path.open("rb") as log:
            log.seek(self._offset)
            chunk = log.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]  # a line being written waits for next time
        self._offset += len(complete)
        for line in complete.decode(errors="replace").splitlines():
            try:
                self._events.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return list(self._events)

    def wait_for_event(self, name: str, timeout_s: float = 30.0, **fields: Any) -> dict[str, Any]:
        """The first ``name`` event (with these field values, if given)."""

        def matches(event: dict[str, Any]) -> bool:
            return event.get("event") == name and all(event.get(k) == v for k, v in fields.items())

        return poll(
            lambda: next((e for e in self.events() if matches(e)), None),
            f"a {name!r} event {fields or ''}",
            timeout_s,
            alive=self,
        )

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def kill9(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.text().splitlines()[-lines:])

    def stop(self, timeout_s: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"tailup did not stop on SIGTERM: {self.tail()}") from None


def start_daemon(
    args: Sequence[str],
    env: dict[str, str],
    log_path: Path,
    cwd: Path,
    *,
    wrapper: Sequence[str] = (),
) -> DaemonProcess:
    """`tailup run ARGS`, logging to ``log_path``; ``wrapper`` prefixes the command (setpriv)."""
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [*wrapper, sys.executable, "-m", "tailup", "run", *args],
            env=tailup_env(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
        )
    return DaemonProcess(proc, log_path)


def poll(
    probe: Callable[[], T | None],
    what: str,
    timeout_s: float = 30.0,
    *,
    alive: DaemonProcess | None = None,
) -> T:
    """Poll state this process does not control (another process, a server), bounded."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last is not None and last is not False:
            return last
        if alive is not None and alive.proc.poll() is not None:
            raise AssertionError(f"tailup exited ({alive.proc.returncode}): {alive.tail()}")
        time.sleep(0.05)
    detail = f"; last log lines:\n{alive.tail()}" if alive is not None else ""
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}{detail}")


def http_get(url: str, timeout_s: float = 5.0) -> tuple[int, str]:
    """(status, body); HTTP errors are answers too (503 is what /healthz says when unhealthy)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def metric_samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Prometheus text -> {(sample name, labels): value}."""
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def sample(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def dockerfile_healthcheck_argv() -> list[str]:
    """The HEALTHCHECK command of deploy/Dockerfile (exec form), to run it for real."""
    text = (ROOT / "deploy" / "Dockerfile").read_text().replace("\\\n", " ")
    line = next(line for line in text.splitlines() if line.startswith("HEALTHCHECK"))
    argv: list[str] = json.loads(line.split(" CMD ", 1)[1])
    return argv
