"""A private ``redis-server`` on 127.0.0.1, and helpers to talk to the dev Redis servers."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tailup.dev.ports import LOOPBACK, free_port
from tailup.dev.process import DevServerError, _ManagedProcess


class RedisServer(_ManagedProcess):
    """A private ``redis-server`` on 127.0.0.1.

    ``appendonly=True`` turns on the AOF (in ``directory``), so data survives ``stop()``/``start()``
    and ``kill()``/``start()``; without it nothing is persisted (``--save ""``).

    >>> with RedisServer() as redis_server:
    ...     url = redis_server.url
    """

    name = "redis-server"

    def __init__(
        self,
        directory: Path | str | None = None,
        *,
        port: int | None = None,
        appendonly: bool = False,
        binary: str | None = None,
        startup_timeout: float = 15.0,
        extra_args: Sequence[str] = (),
    ) -> None:
        super().__init__(directory, startup_timeout=startup_timeout)
        self.host = LOOPBACK
        self.port = port if port is not None else free_port()
        self.appendonly = appendonly
        self._binary = binary
        self.extra_args = list(extra_args)

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.dir / "redis.log"

    def _find_binary(self) -> str:
        if self._binary is not None:
            return self._binary
        found = shutil.which("redis-server")
        if found is None:
            raise DevServerError(
                "redis-server not found on PATH; install it "
                "(Debian/Ubuntu: apt-get install -y redis-server; `make` does this for you)"
            )
        return found

    def _argv(self) -> list[str]:
        return [
            self._find_binary(),
            "--bind", self.host,
            "--port", str(self.port),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--dir", str(self.dir),
            "--daemonize", "no",
            "--logfile", str(self.log_path),
            *self.extra_args,
        ]  # fmt: skip

    def _is_ready(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=1.0) as sock:
                sock.sendall(b"PING\r\n")
                reply = sock.recv(64)
        except OSError:
            return False
        # "-LOADING ..." while the AOF is being read; "-NOAUTH ..." means up, with --requirepass.
        return reply.startswith((b"+PONG", b"-NOAUTH"))


def _redis_call(port: int, *args: str, timeout: float = 2.0) -> Any:
    """One command to a dev server on 127.0.0.1 (decoded replies); raises redis-py's errors."""
    import redis

    client = redis.Redis(
        host=LOOPBACK,
        port=port,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        decode_responses=True,
    )
    try:
        return client.execute_command(*args)  # type: ignore[no-untyped-call]
    finally:
        client.close()


def _info_fields(text: Any) -> dict[str, str]:
    """``CLUSTER INFO``'s text (or an ``INFO`` reply already parsed) as a dict of strings."""
    if isinstance(text, dict):
        return {str(k): str(v) for k, v in text.items()}
    fields = {}
    for line in str(text).splitlines():
        name, sep, value = line.partition(":")
        if sep:
            fields[name.strip()] = value.strip()
    return fields
