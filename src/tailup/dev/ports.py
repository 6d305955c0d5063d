"""Loopback ports for the dev servers."""

from __future__ import annotations

import random
import socket

from tailup.dev.process import DevServerError

LOOPBACK = "127.0.0.1"
_GRPC_PORT_OFFSET = 10_000  # SeaweedFS derives gRPC ports as HTTP port + 10000 in places


def _port_is_free(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def _free_port_with_grpc(taken: set[int]) -> int:
    """A free port P such that P + 10000 is free too (SeaweedFS's gRPC convention).

    Chosen below the kernel's ephemeral range so that P + 10000 stays a valid port.
    """
    rng = random.SystemRandom()
    for _ in range(500):
        port = rng.randrange(20_000, 30_000)
        grpc = port + _GRPC_PORT_OFFSET
        if {port, grpc} & taken:
            continue
        if _port_is_free(port) and _port_is_free(grpc):
            taken.update((port, grpc))
            return port
    raise DevServerError("no free port pair (P, P+10000) found between 20000 and 40000")
