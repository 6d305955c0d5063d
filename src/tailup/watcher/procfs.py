"""Who holds a file open for writing, from /proc/[pid]/fd and fdinfo (one pass for many paths).
Blocking: call it off the event loop."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Final

_PF_KTHREAD: Final = 0x00200000  # include/linux/sched.h


def writers_open(paths: Iterable[Path], *, proc: Path = Path("/proc")) -> dict[Path, bool | None]:
    """For each path: True if a process holds it open for writing, False if no visible one does,
    None if it cannot be told (no usable /proc, or a process whose fds we may not read).

    One pass over /proc/[pid]/fd for all paths.
    """
    by_target: dict[str, list[Path]] = {}
    for path in paths:
        # fd links show the kernel's path: absolute, symlinks resolved.
        by_target.setdefault(os.path.realpath(path), []).append(path)
    found = _scan_proc(proc, set(by_target)) if by_target else (set(), False)
    result: dict[Path, bool | None] = {}
    for target, originals in by_target.items():
        verdict: bool | None
        if found is None:
            verdict = None
        elif target in found[0]:
            verdict = True
        else:
            verdict = None if found[1] else False
        result.update(dict.fromkeys(originals, verdict))
    return result


def _scan_proc(proc: Path, targets: set[str]) -> tuple[set[str], bool] | None:
    """(targets open for writing, whether some process's fds were hidden from us), or None."""
    try:
        os.listdir(proc / "self" / "fd")  # proves this is a procfs we can use
        pids = [name for name in os.listdir(proc) if name.isdigit()]
    except OSError:
        return None
    written: set[str] = set()
    blind = False
    for pid in pids:
        fd_dir = f"{proc}/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except PermissionError:
            # Another user's process (we are not root): it might be the writer.
            blind = blind or not _is_kernel_thread(proc, pid)
            continue
        except OSError:
            continue  # exited meanwhile
        for fd in fds:
            try:
                target = os.readlink(f"{fd_dir}/{fd}")
            except OSError:
                continue
            if target in targets and target not in written and _fd_writable(proc, pid, fd):
                written.add(target)
        if written == targets:
            break
    return written, blind


def _fd_writable(proc: Path, pid: str, fd: str) -> bool:
    try:
        with open(f"{proc}/{pid}/fdinfo/{fd}", encoding="ascii") as info:
            for line in info:
                if line.startswith("flags:"):
                    mode = int(line.split()[1], 8) & os.O_ACCMODE
                    return mode in (os.O_WRONLY, os.O_RDWR)
    except (OSError, ValueError, IndexError):
        pass  # closed meanwhile
    return False


def _is_kernel_thread(proc: Path, pid: str) -> bool:
    """Kernel threads hide their (empty) fd tables from non-root; they never write files."""
    try:
        with open(f"{proc}/{pid}/stat", encoding="utf-8", errors="replace") as f:
            fields = f.read().rpartition(")")[2].split()
        return bool(int(fields[6]) & _PF_KTHREAD)
    except (OSError, ValueError, IndexError):
        return True  # exited meanwhile: it holds nothing
