"""A private Redis Cluster of masters on 127.0.0.1 (cluster bus on port + 10000)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Self

from tailup.dev.ports import LOOPBACK, _free_port_with_grpc
from tailup.dev.process import (
    DevServerError,
    _ManagedProcess,
    _parent_death_hook,
    _ServerGroup,
    _tail,
    _wait_for,
)
from tailup.dev.redis import RedisServer, _info_fields, _redis_call

CLUSTER_SLOTS = 16_384


class RedisCluster(_ServerGroup):
    """A private Redis Cluster of ``masters`` masters and no replicas, on 127.0.0.1.

    Each node is a :class:`RedisServer` (no persistence) with ``--cluster-enabled yes`` in a
    folder of its own; its cluster bus listens on its port + 10000, so a node's port is picked
    with that port free too (tailup.dev.port_slices). :meth:`start` forms the cluster with
    ``redis-cli --cluster create`` (once: a restarted node finds its ``nodes.conf``) and waits
    until every node reports ``cluster_state:ok`` with all slots assigned.

    >>> with RedisCluster() as cluster:
    ...     url = cluster.url  # redis:// to the first node; cluster.cluster_url names them all
    """

    name = "redis-cluster"

    def __init__(
        self,
        directory: Path | str | None = None,
        *,
        masters: int = 3,
        startup_timeout: float = 30.0,
        extra_args: Sequence[str] = (),
    ) -> None:
        if masters < 3:
            raise ValueError(f"a Redis Cluster needs at least 3 masters, got {masters}")
        super().__init__(directory, startup_timeout=startup_timeout)
        taken: set[int] = set()  # the node ports and their cluster bus ports (+10000)
        cluster_args = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                        "--cluster-node-timeout", "5000"]  # fmt: skip
        self.nodes = [
            RedisServer(
                self.dir / f"node-{index}",
                port=_free_port_with_grpc(taken),
                startup_timeout=startup_timeout,
                extra_args=[*cluster_args, *extra_args],
            )
            for index in range(masters)
        ]

    @property
    def host(self) -> str:
        return LOOPBACK

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    @property
    def url(self) -> str:
        """A plain redis:// URL to the first node (tailup finds out it is a cluster)."""
        return self.nodes[0].url

    @property
    def cluster_url(self) -> str:
        return "redis+cluster://" + ",".join(f"{LOOPBACK}:{p}" for p in self.ports)

    @property
    def running(self) -> bool:
        return all(node.running for node in self.nodes)

    def _members(self) -> list[_ManagedProcess]:
        return list(self.nodes)

    def start(self) -> Self:
        for node in self.nodes:
            if not node.running:
                node.start()
        if not self._formed():
            self._create()
        self.wait_ok()
        return self

    def _formed(self) -> bool:
        info = _info_fields(_redis_call(self.nodes[0].port, "CLUSTER", "INFO"))
        return info.get("cluster_slots_assigned") == str(CLUSTER_SLOTS)

    def _create(self) -> None:
        cli = shutil.which("redis-cli")
        if cli is None:
            raise DevServerError(
                "redis-cli not found on PATH; it comes with redis-server "
                "(Debian/Ubuntu: apt-get install -y redis-server)"
            )
        argv = [cli, "--cluster", "create", *(f"{LOOPBACK}:{p}" for p in self.ports),
                "--cluster-replicas", "0", "--cluster-yes"]  # fmt: skip
        try:
            done = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=self.startup_timeout,
                start_new_session=True,
                preexec_fn=_parent_death_hook(),
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DevServerError(f"{' '.join(argv)} failed: {exc}") from exc
        if done.returncode != 0:
            output = (done.stdout + done.stderr).decode("utf-8", "replace")[-4000:]
            tails = "\n".join(f"log {log}:\n{_tail(log)}" for log in self._logs())
            raise DevServerError(
                f"{' '.join(argv)} exited with code {done.returncode}:\n{output}\n{tails}"
            )

    def _not_ok(self) -> str | None:
        for node in self.nodes:
            info = _info_fields(_redis_call(node.port, "CLUSTER", "INFO"))
            wanted = {
                "cluster_state": "ok",
                "cluster_slots_assigned": str(CLUSTER_SLOTS),
                "cluster_known_nodes": str(len(self.nodes)),
            }
            for name, value in wanted.items():
                if info.get(name) != value:
                    return f"node {LOOPBACK}:{node.port} has {name}:{info.get(name)}"
        return None

    def wait_ok(self, timeout: float | None = None) -> None:
        """Wait until every node sees the whole cluster, every slot served (state ok)."""
        _wait_for(
            self._not_ok,
            self.startup_timeout if timeout is None else timeout,
            f"the Redis Cluster on ports {self.ports} did not become ok",
            self._logs(),
        )

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<RedisCluster {state} ports={self.ports} dir={self.dir}>"
