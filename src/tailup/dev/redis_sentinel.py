"""A Redis master, its replica and one Sentinel watching them, on 127.0.0.1, with a way to kill
the master and wait for the failover."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Self

from tailup.dev.ports import LOOPBACK, free_port
from tailup.dev.process import DevServerError, _ManagedProcess, _ServerGroup, _wait_for
from tailup.dev.redis import RedisServer, _info_fields, _redis_call


class _SentinelProcess(_ManagedProcess):
    """``redis-server sentinel.conf --sentinel`` on 127.0.0.1, monitoring one master."""

    name = "redis-sentinel"

    def __init__(
        self,
        directory: Path,
        *,
        master_name: str,
        master_port: int,
        down_after_ms: int,
        failover_timeout_ms: int,
        startup_timeout: float,
    ) -> None:
        super().__init__(directory, startup_timeout=startup_timeout)
        self.port = free_port()
        self.master_name = master_name
        self.master_port = master_port
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms

    @property
    def log_path(self) -> Path:
        return self.dir / "sentinel.log"

    @property
    def conf_path(self) -> Path:
        return self.dir / "sentinel.conf"

    def _argv(self) -> list[str]:
        # Sentinel rewrites its file as it learns (replicas, a new master): a restart keeps what
        # it knew, so the file is written once.
        if not self.conf_path.exists():
            name = self.master_name
            self.conf_path.write_text(
                f"bind {LOOPBACK}\n"
                f"port {self.port}\n"
                "daemonize no\n"
                f"dir {self.dir}\n"
                f"logfile {self.log_path}\n"
                f"sentinel monitor {name} {LOOPBACK} {self.master_port} 1\n"
                f"sentinel down-after-milliseconds {name} {self.down_after_ms}\n"
                f"sentinel failover-timeout {name} {self.failover_timeout_ms}\n"
                f"sentinel parallel-syncs {name} 1\n"
            )
        binary = shutil.which("redis-server")
        if binary is None:
            raise DevServerError("redis-server not found on PATH (it runs Sentinel too)")
        return [binary, str(self.conf_path), "--sentinel"]

    def _is_ready(self) -> bool:
        try:
            return bool(_redis_call(self.port, "PING", timeout=1.0))
        except Exception:
            return False


class RedisSentinel(_ServerGroup):
    """A master, its replica (``--replicaof``) and one Sentinel (quorum 1) on 127.0.0.1.

    :meth:`start` returns once the replica is in sync and the Sentinel knows both;
    :meth:`kill_master_and_wait_for_failover` kills the master with SIGKILL and returns once the
    Sentinel names the replica as the new master and the replica says so too. After that
    ``master`` is the promoted server and ``replica`` the dead one (started again, Sentinel would
    turn it into a replica of the new master).

    >>> with RedisSentinel() as deployment:
    ...     url = deployment.url  # redis+sentinel://127.0.0.1:PORT/mymaster/0
    """

    name = "redis-sentinel"

    def __init__(
        self,
        directory: Path | str | None = None,
        *,
        master_name: str = "mymaster",
        down_after_ms: int = 2000,
        failover_timeout_ms: int = 10_000,
        startup_timeout: float = 30.0,
        extra_args: Sequence[str] = (),
    ) -> None:
        super().__init__(directory, startup_timeout=startup_timeout)
        self.master_name = master_name
        self.master = RedisServer(
            self.dir / "node-a", startup_timeout=startup_timeout, extra_args=extra_args
        )
        self.replica = RedisServer(
            self.dir / "node-b",
            startup_timeout=startup_timeout,
            extra_args=["--replicaof", LOOPBACK, str(self.master.port), *extra_args],
        )
        self.sentinel = _SentinelProcess(
            self.dir / "sentinel",
            master_name=master_name,
            master_port=self.master.port,
            down_after_ms=down_after_ms,
            failover_timeout_ms=failover_timeout_ms,
            startup_timeout=startup_timeout,
        )

    @property
    def url(self) -> str:
        return f"redis+sentinel://{LOOPBACK}:{self.sentinel.port}/{self.master_name}/0"

    def _members(self) -> list[_ManagedProcess]:
        # The Sentinel first: it must not fail over while the others stop.
        return [self.sentinel, self.replica, self.master]

    def start(self) -> Self:
        for server in (self.master, self.replica, self.sentinel):
            if not server.running:
                server.start()
        _wait_for(
            self._not_ready,
            self.startup_timeout,
            "the Sentinel deployment did not get ready",
            self._logs(),
        )
        return self

    def master_address(self) -> tuple[str, int]:
        """Where the Sentinel says the master is now."""
        reply = _redis_call(
            self.sentinel.port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name
        )
        if not reply:
            raise DevServerError(f"Sentinel knows no master named {self.master_name!r}")
        return str(reply[0]), int(reply[1])

    def _replicas_seen(self) -> dict[int, str]:
        """Replicas the Sentinel knows, port -> flags."""
        rows = _redis_call(self.sentinel.port, "SENTINEL", "REPLICAS", self.master_name)
        seen: dict[int, str] = {}
        for row in rows:
            fields = dict(zip(row[::2], row[1::2], strict=True)) if isinstance(row, list) else row
            seen[int(fields["port"])] = str(fields["flags"])
        return seen

    def _not_ready(self) -> str | None:
        link = _info_fields(_redis_call(self.replica.port, "INFO", "replication"))
        if link.get("master_link_status") != "up":
            return (
                f"replica {self.replica.port}: master_link_status {link.get('master_link_status')}"
            )
        if self.master_address() != (LOOPBACK, self.master.port):
            return f"Sentinel names {self.master_address()} as master"
        flags = self._replicas_seen().get(self.replica.port)
        if flags != "slave":
            return f"Sentinel sees replica {self.replica.port} with flags {flags}"
        return None

    def kill_master_and_wait_for_failover(self, timeout: float = 60.0) -> RedisServer:
        """SIGKILL the master, wait until the replica is the master, and return it."""
        old, new = self.master, self.replica
        old.kill()

        def not_promoted() -> str | None:
            where = self.master_address()
            if where != (LOOPBACK, new.port):
                return f"Sentinel still names {where[0]}:{where[1]} as master"
            role = _info_fields(_redis_call(new.port, "INFO", "replication")).get("role")
            if role != "master":
                return f"{LOOPBACK}:{new.port} still has role {role}"
            return None

        _wait_for(
            not_promoted,
            timeout,
            f"Sentinel did not promote {LOOPBACK}:{new.port} after the master was killed",
            self._logs(),
        )
        self.master, self.replica = new, old
        return new

    def __repr__(self) -> str:
        return (
            f"<RedisSentinel sentinel={self.sentinel.port} master={self.master.port} "
            f"replica={self.replica.port} dir={self.dir}>"
        )
