"""Opening Redis: what ``--redis-url`` names (one server, a Cluster, a Sentinel-watched master), a
client for it, and what the server's settings risk for tailup's keys.

- :func:`parse_redis_url` (pure) reads every accepted form into a :class:`RedisTarget`, or raises
  :class:`RedisUrlError` naming what is wrong and listing the accepted forms;
- :func:`open_redis` yields a ``redis.asyncio`` client for it (``Redis``, ``RedisCluster``, or
  Sentinel's ``master_for``, which follows failovers), and closes it on the way out. A plain
  ``redis://`` URL that names a Cluster node gets a ``RedisCluster`` all the same;
- :func:`redis_durability_warnings` reads ``CONFIG GET`` and says when Redis may evict tailup's keys
  or persists nothing.

Passwords never appear in an error or a log line from here: errors name the part of the URL that is
wrong, never the URL.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any, TypeAlias
from urllib.parse import parse_qsl, unquote

import redis.asyncio as aioredis
import redis.exceptions as rex
import structlog
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

from tailup.errors import ConfigError

RedisClient: TypeAlias = "aioredis.Redis | RedisCluster"

DEFAULT_PORT = 6379
DEFAULT_SENTINEL_PORT = 26379
# redis-py's retries of a command whose connection failed: one, at once (a stale pooled one is
# replaced); its default moved (none in 5.x, 10 over ~4 s in 8.x), then tailup's back-off, shown.
ONE_RETRY = Retry(NoBackoff(), 1)

# No USER:PASSWORD@ after a scheme here, nor ?password=: log redaction would hide the placeholders.
REDIS_URL_FORMS = (
    "redis://HOST[:PORT][/DB], rediss://HOST[:PORT][/DB] (TLS), unix:///PATH/TO/SOCKET[?db=DB], "
    "redis+cluster://HOST:PORT[,HOST:PORT...] (or rediss+cluster://, TLS), "
    "redis+sentinel://HOST:PORT[,HOST:PORT...]/MASTER[/DB] (or rediss+sentinel://, TLS); "
    "credentials as USER:PASSWORD@ or :PASSWORD@ before the host(s), or in the query parameter "
    "named password (behind Sentinel: the master's); rediss forms also take the query "
    "parameters ssl_ca_certs=FILE, ssl_certfile=FILE, ssl_keyfile=FILE, "
    "ssl_cert_reqs=required|optional|none and ssl_check_hostname=true|false"
)


class RedisKind(enum.Enum):
    STANDALONE = "standalone"
    CLUSTER = "cluster"
    SENTINEL = "sentinel"


class RedisUrlError(ConfigError):
    """``--redis-url`` is not one of the accepted forms. ``reason`` says what is wrong (never the
    password); the message adds the accepted forms."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"--redis-url: {reason}. Accepted: {REDIS_URL_FORMS}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """What a ``--redis-url`` names. ``hosts`` are the server (standalone), the nodes to start from
    (cluster) or the Sentinels (sentinel); empty for a unix socket (``path``)."""

    kind: RedisKind
    hosts: tuple[tuple[str, int], ...] = ()
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    master: str | None = None  # the Sentinel service name
    path: str | None = None  # unix socket
    tls_options: tuple[tuple[str, str | bool], ...] = ()


_SCHEMES: dict[str, tuple[RedisKind, bool]] = {
    "redis": (RedisKind.STANDALONE, False),
    "rediss": (RedisKind.STANDALONE, True),
    "unix": (RedisKind.STANDALONE, False),
    "redis+cluster": (RedisKind.CLUSTER, False),
    "rediss+cluster": (RedisKind.CLUSTER, True),
    "redis+sentinel": (RedisKind.SENTINEL, False),
    "rediss+sentinel": (RedisKind.SENTINEL, True),
}
_TLS_FILE_OPTIONS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")
_CERT_REQS = ("required", "optional", "none")
_TRUE, _FALSE = ("true", "yes", "1", "on"), ("false", "no", "0", "off")


def _port(text: str, where: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise RedisUrlError(f"port {text!r} of {where} is not a port number (1..65535)")
    return int(text)


def _host_port(item: str, default_port: int) -> tuple[str, int]:
    if item.startswith("["):  # [IPv6]:port
        host, bracket, rest = item[1:].partition("]")
        if not bracket or not host:
            raise RedisUrlError(f"host {item!r} opens a [ without closing it")
        if rest and not rest.startswith(":"):
            raise RedisUrlError(f"host {item!r} has {rest!r} after its address")
        return host, _port(rest[1:], f"host {item!r}") if rest else default_port
    host, colon, port = item.rpartition(":") if ":" in item else (item, "", "")
    if not host:
        raise RedisUrlError(f"host {item!r} has no host name" if item else "a host is missing")
    if ":" in host:
        raise RedisUrlError(f"host {item!r}: write an IPv6 address in brackets, [::1]:6379")
    return unquote(host), _port(port, f"host {item!r}") if colon else default_port


def _db(text: str, what: str) -> int:
    if not text.isdigit():
        raise RedisUrlError(f"{what} {text!r} is not a database number (0, 1, ...)")
    return int(text)


def _query(query: str, tls: bool) -> tuple[str | None, str | None, tuple[tuple[str, Any], ...]]:
    """(password, db, TLS options) from the query string."""
    password: str | None = None
    db: str | None = None
    options: dict[str, str | bool] = {}
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise RedisUrlError("its query (after ?) is not NAME=VALUE&NAME=VALUE") from None
    seen: set[str] = set()
    for name, value in pairs:
        if name in seen:
            raise RedisUrlError(f"query parameter {name!r} is given twice")
        seen.add(name)
        if name == "password":
            password = value
        elif name == "db":
            db = value
        elif name in _TLS_FILE_OPTIONS or name in ("ssl_cert_reqs", "ssl_check_hostname"):
            if not tls:
                raise RedisUrlError(f"query parameter {name!r} needs TLS (a rediss scheme)")
            if name == "ssl_cert_reqs":
                if value.lower() not in _CERT_REQS:
                    raise RedisUrlError(f"ssl_cert_reqs={value!r} is not one of {_CERT_REQS}")
                options[name] = value.lower()
            elif name == "ssl_check_hostname":
                if value.lower() not in _TRUE + _FALSE:
                    raise RedisUrlError(f"ssl_check_hostname={value!r} is not true or false")
                options[name] = value.lower() in _TRUE
            elif not value:
                raise RedisUrlError(f"query parameter {name!r} names no file")
            else:
                options[name] = value
        else:
            raise RedisUrlError(
                f"query parameter {name!r} is not one tailup takes (password, db for redis:// "
                "and unix://, ssl_* for rediss forms)"
            )
    return password, db, tuple(options.items())


def parse_redis_url(url: str) -> RedisTarget:
    """Read ``--redis-url``; raises :class:`RedisUrlError` (a ConfigError) naming what is wrong."""
    scheme, sep, rest = url.strip().partition("://")
    if not sep:
        raise RedisUrlError("it has no scheme (redis://, rediss://, redis+cluster://, ...)")
    scheme = scheme.lower()
    if scheme not in _SCHEMES:
        raise RedisUrlError(f"scheme {scheme + '://'!r} is not a Redis form")
    kind, tls = _SCHEMES[scheme]
    rest, _, fragment = rest.partition("#")
    if fragment:
        raise RedisUrlError("it has a #fragment, which no form has")
    rest, _, query = rest.partition("?")
    authority, slash, path = rest.partition("/")
    path = slash + path
    # The user info runs to the *last* @ of the authority, as URL parsers read it.
    userinfo, at, hostlist = authority.rpartition("@")
    username: str | None = None
    password: str | None = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon and secret else None
    query_password, query_db, tls_options = _query(query, tls)
    if query_password is not None:
        if password is not None:
            raise RedisUrlError(
                "a password is given twice (before @ and as the query parameter password)"
            )
        password = query_password or None
    if query_db is not None and (kind is not RedisKind.STANDALONE):
        raise RedisUrlError(f"?db= is for redis:// and unix:// only, not {scheme}://")

    if scheme == "unix":
        if hostlist:
            raise RedisUrlError(
                f"unix:// takes a socket path, not a host ({hostlist!r}): unix:///run/redis.sock"
            )
        if path in ("", "/"):
            raise RedisUrlError("unix:// names no socket path: unix:///run/redis/redis.sock")
        db = _db(query_db, "?db=") if query_db is not None else 0
        return RedisTarget(
            kind, (), db, username, password, False, None, unquote(path), tls_options
        )

    default_port = DEFAULT_SENTINEL_PORT if kind is RedisKind.SENTINEL else DEFAULT_PORT
    items = hostlist.split(",")
    if not hostlist:
        raise RedisUrlError(f"{scheme}:// names no host")
    hosts = tuple(_host_port(item.strip(), default_port) for item in items)
    segments = [unquote(s) for s in path.split("/")[1:]] if path not in ("", "/") else []

    if kind is RedisKind.STANDALONE:
        if len(hosts) > 1:
            raise RedisUrlError(
                f"{scheme}:// names {len(hosts)} hosts; for a Redis Cluster write "
                f"{scheme}+cluster://, for Sentinels {scheme}+sentinel://"
            )
        if len(segments) > 1:
            raise RedisUrlError(f"the path {path!r} is not /DB")
        db = _db(segments[0], "the database") if segments else 0
        if query_db is not None:
            if segments:
                raise RedisUrlError("the database is given twice (/DB and ?db=)")
            db = _db(query_db, "?db=")
        return RedisTarget(kind, hosts, db, username, password, tls, None, None, tls_options)

    if kind is RedisKind.CLUSTER:
        if segments and segments != ["0"]:
            raise RedisUrlError(f"a Redis Cluster has database 0 only; the path is {path!r}")
        return RedisTarget(kind, hosts, 0, username, password, tls, None, None, tls_options)

    if not segments or not segments[0]:
        raise RedisUrlError(
            f"{scheme}:// names no master: write the name the Sentinels monitor, "
            f"{scheme}://HOST:PORT/mymaster"
        )
    if len(segments) > 2:
        raise RedisUrlError(f"the path {path!r} is not /MASTER or /MASTER/DB")
    db = _db(segments[1], "the database") if len(segments) == 2 else 0
    return RedisTarget(kind, hosts, db, username, password, tls, segments[0], None, tls_options)


# -- clients --------------------------------------------------------------------------------------


def _credentials(target: RedisTarget) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"username": target.username, "password": target.password}
    if target.tls:
        kwargs["ssl"] = True
        kwargs.update(target.tls_options)
    return kwargs


def _standalone(target: RedisTarget, timeouts: dict[str, Any]) -> aioredis.Redis:
    where: dict[str, Any] = (
        {"unix_socket_path": target.path}
        if target.path is not None
        else {"host": target.hosts[0][0], "port": target.hosts[0][1]}
    )
    kwargs = {**where, **_credentials(target), **timeouts}
    return aioredis.Redis(db=target.db, decode_responses=True, retry=ONE_RETRY, **kwargs)


def _cluster(target: RedisTarget, timeouts: dict[str, Any]) -> RedisCluster:
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in target.hosts],
        decode_responses=True,
        **_credentials(target),
        **timeouts,
    )


async def _is_cluster_node(client: aioredis.Redis) -> bool:
    """Whether the server says it is a Cluster node. Unknown (unreachable, INFO refused) is
    no: the daemon starts and waits for Redis as before."""
    try:
        info = await client.info("cluster")
    except (rex.RedisError, OSError) as exc:
        structlog.get_logger("tailup.redis").debug(
            "could not ask Redis whether it is a Cluster node", reason=str(exc)
        )
        return False
    return str(info.get("cluster_enabled", "0")) == "1"


async def _close(client: Any) -> None:
    # Shielded: a cancellation while closing still lets the sockets close.
    await asyncio.shield(client.aclose())


@asynccontextmanager
async def open_redis(
    url: str,
    *,
    socket_connect_timeout: float = 5,
    socket_timeout: float = 10,
    health_check_interval: float = 15,
    quiet: bool = False,
) -> AsyncIterator[RedisClient]:
    """A ``redis.asyncio`` client for ``--redis-url`` (responses decoded), closed on exit.

    No command is sent but, for a plain ``redis://``/``rediss://`` URL, ``INFO cluster``: a
    Cluster node found that way gets a ``RedisCluster`` started from it, said in one info line
    (unless ``quiet``: a second client to a Redis already announced). An unreachable Redis is no
    error here: the first command reports it.
    """
    target = parse_redis_url(url)
    timeouts: dict[str, Any] = {
        "socket_connect_timeout": socket_connect_timeout,
        "socket_timeout": socket_timeout,
        "health_check_interval": health_check_interval,
    }
    log = structlog.get_logger("tailup.redis")
    client: RedisClient
    sentinel: Sentinel | None = None
    if target.kind is RedisKind.CLUSTER:
        client = _cluster(target, timeouts)
    elif target.kind is RedisKind.SENTINEL:
        assert target.master is not None
        sentinel_kwargs: dict[str, Any] = {
            "socket_connect_timeout": socket_connect_timeout,
            "socket_timeout": socket_timeout,
        }
        if target.tls:
            sentinel_kwargs.update(ssl=True, **dict(target.tls_options))
        sentinel = Sentinel(list(target.hosts), sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call,unused-ignore]
        client = sentinel.master_for(
            target.master,
            db=target.db,
            decode_responses=True,
            retry=ONE_RETRY,
            **_credentials(target),
            **timeouts,
        )
    else:
        # Asked in database 0: a Cluster node refuses SELECT, so a probe in another database
        # would never hear that it is one.
        probe = _standalone(replace(target, db=0), timeouts)
        try:
            found = target.path is None and await _is_cluster_node(probe)
        except BaseException:
            await _close(probe)
            raise
        if found or target.db != 0:
            await _close(probe)
        if found:
            host, port = target.hosts[0]
            if target.db:
                raise RedisUrlError(
                    f"{host}:{port} is a Redis Cluster node, and a Cluster has database 0 only, "
                    f"not {target.db}"
                )
            if not quiet:
                log.info("Redis is a Cluster node; talking to the Cluster", node=f"{host}:{port}")
            client = _cluster(target, timeouts)
        else:
            client = probe if target.db == 0 else _standalone(target, timeouts)
    try:
        yield client
    finally:
        try:
            await _close(client)
        finally:
            if sentinel is not None:
                await asyncio.shield(_close_sentinel(sentinel))


async def _close_sentinel(sentinel: Any) -> None:
    """Sentinel.aclose() exists from redis-py 6.1 on; before it, each Sentinel's own client is
    closed (the floor in pyproject.toml is older: `make test-lowest`)."""
    closing = getattr(sentinel, "aclose", None)
    if closing is not None:
        await closing()
        return
    for client in sentinel.sentinels:
        await client.aclose()


# -- durability -----------------------------------------------------------------------------------

_SETTINGS = ("maxmemory-policy", "appendonly", "save")
_EVICT = "Redis may evict tailup's keys"


def _setting_warnings(values: dict[str, str]) -> list[str]:
    warnings = []
    policy = values.get("maxmemory-policy")
    if policy is not None and policy != "noeviction":
        warnings.append(
            f"{_EVICT} under memory pressure (maxmemory-policy={policy}); set noeviction"
        )
    if values.get("appendonly") == "no" and values.get("save") == "":
        warnings.append(
            'Redis persists nothing (appendonly no, save ""): a restart of Redis loses every '
            "checkpoint; turn on appendonly yes or RDB snapshots (save)"
        )
    return warnings


async def _read_settings(
    config_get: Callable[[str], Awaitable[Any]],
) -> dict[str, str]:
    values: dict[str, str] = {}
    for name in _SETTINGS:  # one by one: Redis before 7 takes one pattern per CONFIG GET
        reply = await config_get(name)
        if isinstance(reply, dict) and name in reply:
            values[name] = str(reply[name])
    return values


async def redis_durability_warnings(client: RedisClient) -> list[str]:
    """What Redis's settings risk for tailup's keys: eviction (a ``maxmemory-policy`` other than
    ``noeviction``) and no persistence at all (no AOF, no RDB ``save``). Each master of a Cluster is
    asked. When ``CONFIG GET`` is refused (renamed away, an ACL, a managed Redis), one line says the
    settings could not be checked."""
    try:
        if isinstance(client, RedisCluster):
            await client.initialize()
            by_message: dict[str, list[str]] = {}
            for node in client.get_primaries():

                async def node_get(name: str, node: ClusterNode = node) -> Any:
                    return await client.config_get(name, target_nodes=node)

                for message in _setting_warnings(await _read_settings(node_get)):
                    by_message.setdefault(message, []).append(node.name)
            # Eviction first, as for one server; each message names the masters it is about.
            return [
                f"{message} (on {', '.join(sorted(nodes))})"
                for message, nodes in sorted(
                    by_message.items(), key=lambda item: (not item[0].startswith(_EVICT), item[0])
                )
            ]
        return _setting_warnings(await _read_settings(client.config_get))
    except (rex.RedisError, rex.RedisClusterException, OSError) as exc:
        return [
            f"could not check whether Redis may evict or lose tailup's keys (CONFIG GET: {exc}); "
            "make sure maxmemory-policy is noeviction and persistence is on"
        ]
