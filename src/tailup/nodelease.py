"""The node lease: one live daemon per --node-id on one Redis prefix.

The lease names its holder (host, boot, pid and the process's start time) and is renewed while
the daemon lives. A second daemon with the same node id refuses to start and says who holds it.
A daemon restarted after a crash takes its node back at once when the old holder is provably
gone (same host and boot, and its pid is not that process any more); otherwise it waits for the
lease to expire (--lease-ttl), since the holder on another host may well be alive.

The decisions (``Holder``, ``provably_gone``) are pure; ``this_process`` and ``process_started``
read /proc.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


@dataclass(frozen=True, slots=True)
class Holder:
    host: str
    boot_id: str
    pid: int
    started: int  # the process's start time in clock ticks since boot (/proc/PID/stat)
    token: str

    def encode(self) -> str:
        return "|".join((self.host, self.boot_id, str(self.pid), str(self.started), self.token))

    @classmethod
    def decode(cls, text: str) -> Holder | None:
        fields = text.split("|")
        if len(fields) != 5:
            return None
        host, boot_id, pid, started, token = fields
        try:
            return cls(host, boot_id, int(pid), int(started), token)
        except ValueError:
            return None

    def describe(self) -> str:
        return f"pid {self.pid} on host {self.host}"


def provably_gone(holder: Holder, here: Holder, started_of: Callable[[int], int | None]) -> bool:
    """True when ``holder`` cannot be alive: it ran on this host, and either the machine booted
    since or its pid is no longer that process (gone, or another process with another start
    time). ``started_of(pid)``: the start time of the process with that pid now, None if none."""
    if holder.host != here.host:
        return False
    if holder.boot_id != here.boot_id:
        return True
    return started_of(holder.pid) != holder.started


def process_started(pid: int) -> int | None:
    """The start time (ticks since boot) of process ``pid``, None when there is none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    rest = stat.rpartition(")")[2].split()
    try:
        return int(rest[19])  # field 22 of the whole line
    except (IndexError, ValueError):
        return None


def this_process() -> Holder:
    try:
        boot_id = _BOOT_ID.read_text().strip()
    except OSError:
        boot_id = "unknown"
    pid = os.getpid()
    return Holder(
        socket.gethostname(), boot_id, pid, process_started(pid) or 0, secrets.token_hex(4)
    )
