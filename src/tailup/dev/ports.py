"""Loopback ports for the dev servers, each process from its own slice (tailup.dev.port_slices):
two processes asking at once never get the same port, nor the same port + 10000."""

from __future__ import annotations

import fcntl
import os
import random
import socket
import tempfile
import threading
from collections.abc import Callable, Sequence

from tailup.dev.port_slices import (
    LINUX_DEFAULT_EPHEMERAL,
    TWIN_OFFSET,
    base_region,
    parse_ephemeral_range,
    slice_for,
    slot_preference,
)
from tailup.dev.process import DevServerError

LOOPBACK = "127.0.0.1"
_GRPC_PORT_OFFSET = TWIN_OFFSET  # SeaweedFS derives gRPC ports as HTTP port + 10000 in places
_EPHEMERAL_RANGE_FILE = "/proc/sys/net/ipv4/ip_local_port_range"


def _port_is_free(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _ephemeral_range() -> tuple[int, int]:
    try:
        with open(_EPHEMERAL_RANGE_FILE) as fh:
            return parse_ephemeral_range(fh.read())
    except (OSError, ValueError):  # not Linux: assume its default
        return LINUX_DEFAULT_EPHEMERAL


class _Slice:
    """This process's ports, handed out in turn from a random start: a port comes back only
    after the whole slice went round, and only if it is free again then."""

    def __init__(self, ports: range) -> None:
        self.ports = ports
        self._next = random.SystemRandom().randrange(len(ports))
        self._lock = threading.Lock()

    def take(self, fits: Callable[[int], bool]) -> int:
        with self._lock:
            for step in range(len(self.ports)):
                port = self.ports[(self._next + step) % len(self.ports)]
                if fits(port):
                    self._next = (self._next + step + 1) % len(self.ports)
                    return port
        raise DevServerError(
            f"no free port in this process's slice {self.ports.start}..{self.ports.stop - 1}"
        )


_SLICES: dict[int, _Slice] = {}  # by pid: a forked child takes its own
_SLICES_LOCK = threading.Lock()
_HELD: list[int] = []  # the slot locks' descriptors, open (locked) until the process exits


def _hold_slot(order: Sequence[int]) -> int:
    """The first slot in ``order`` whose lock nobody holds, locked for this process's life
    (the kernel lets go when it exits, however it exits); the first if every one is held."""
    for slot in order:
        path = os.path.join(tempfile.gettempdir(), f"tailup-dev-ports-{slot}.lock")
        try:
            # Read-only: flock needs no write access, so another user's lock file serves too.
            fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o666)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        _HELD.append(fd)
        return slot
    return order[0]


def _my_slice() -> _Slice:
    pid = os.getpid()
    with _SLICES_LOCK:
        found = _SLICES.get(pid)
        if found is None:
            slot = _hold_slot(slot_preference(os.environ.get("PYTEST_XDIST_WORKER"), pid))
            found = _SLICES[pid] = _Slice(slice_for(slot, base_region(_ephemeral_range())))
        return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, from this process's slice."""
    return _my_slice().take(_port_is_free)


def _free_port_with_grpc(taken: set[int]) -> int:
    """A free port P such that P + 10000 is free too (SeaweedFS's gRPC convention, Redis
    Cluster's bus), neither in ``taken``; both are added to it."""

    def fits(port: int) -> bool:
        twin = port + _GRPC_PORT_OFFSET
        return not {port, twin} & taken and _port_is_free(port) and _port_is_free(twin)

    port = _my_slice().take(fits)
    taken.update((port, port + _GRPC_PORT_OFFSET))
    return port
