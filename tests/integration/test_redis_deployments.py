"""Redis as it is deployed: a Cluster (named, or found behind a plain redis:// URL), Sentinel with
a failover, TLS, ACL users, and what tailup says about eviction and persistence. Real servers on
127.0.0.1 (tests/conftest.py, tailup.dev)."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster as ClusterClient
from structlog.testing import capture_logs

from conftest import DEPLOYMENT_PASSWORD, DEPLOYMENT_USER, add_acl_user, make_tls_files
from daemonproc import start_daemon
from tailup.checkpoint import Claim, RedisCheckpointStore
from tailup.dev import RedisCluster, RedisSentinel, RedisServer, SeaweedS3, free_port
from tailup.errors import CheckpointRefused, CheckpointUnavailable, ConfigError
from tailup.keys import RedisKeys, node_scope
from tailup.model import LIVE_STATES, PartRecord, StreamRecord, StreamState
from tailup.plan import MiB
from tailup.redisconn import open_redis, redis_durability_warnings

USER, PW = DEPLOYMENT_USER, DEPLOYMENT_PASSWORD


def _record(stream_id: str, **changes: Any) -> StreamRecord:
    base = StreamRecord(
        stream_id=stream_id,
        path=f"/rec/{stream_id}/cam é.mp4",
        watch_root="/rec",
        bucket="b",
        key=f"streams/{stream_id}/cam é.mp4",
        base_part_size=8 * MiB,
        device=1,
        inode=2,
        created_at="2026-01-01T00:00:00+00:00",
    )
    return base.with_changes(**changes)


def _part(number: int, size: int) -> PartRecord:
    return PartRecord(number, size, number * 7, f'"etag{number}"', "2026-01-01T00:00:00+00:00")


def _with_user(url: str, user: str = USER, password: str = PW) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{user}:{password}@{rest}"


# -- Cluster ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("node", [0, 1, 2])
async def test_a_plain_redis_url_to_any_cluster_node_finds_the_cluster(
    redis_cluster: RedisCluster, node: int, key_prefix: str
) -> None:
    url = redis_cluster.nodes[node].url
    with capture_logs() as logs:
        async with open_redis(url) as client:
            assert isinstance(client, ClusterClient)
            await client.initialize()  # the slot map, for get_node_from_key
            # Keys in every slot range: a plain client to one node would get MOVED for most.
            keys = [f"{key_prefix}:k{i}" for i in range(30)]
            owners = {client.get_node_from_key(k).port for k in keys}
            assert owners == set(redis_cluster.ports)
            for key in keys:
                await client.set(key, key.upper())
            assert [await client.get(k) for k in keys] == [k.upper() for k in keys]
    found = [e for e in logs if "Cluster node" in e["event"]]
    assert len(found) == 1, logs
    assert (
        found[0]["log_level"] == "info"
        and found[0]["node"] == f"127.0.0.1:{redis_cluster.ports[node]}"
    )


@pytest.mark.parametrize("form", ["named", "named, with a user", "found, with a user"])
async def test_cluster_forms_spread_keys_over_every_master(
    redis_cluster: RedisCluster, form: str, key_prefix: str
) -> None:
    url = {
        "named": redis_cluster.cluster_url,
        "named, with a user": _with_user(redis_cluster.cluster_url),
        "found, with a user": _with_user(redis_cluster.url),
    }[form]
    async with open_redis(url) as client:
        assert isinstance(client, ClusterClient)
        keys = [f"{key_prefix}:{i}" for i in range(30)]
        for key in keys:
            await client.set(key, key.upper())
        owners = {key: client.get_node_from_key(key).port for key in keys}
    assert set(owners.values()) == set(redis_cluster.ports)
    for key, port in owners.items():  # each key is on its master, read straight from it
        plain = redis.Redis(port=port, decode_responses=True)
        try:
            assert plain.get(key) == key.upper()
        finally:
            plain.close()


async def test_the_checkpoint_store_works_on_a_cluster(
    redis_cluster: RedisCluster, key_prefix: str
) -> None:
    """Every method of RedisCheckpointStore, through a plain redis:// URL to one node: the stream's
    own keys (one hash tag, one slot) and the index keys live on different masters."""
    async with RedisCheckpointStore.connect(redis_cluster.url, key_prefix) as store:
        await store.ping()
        # Fixed ids (the key prefix keeps tests apart): their hash slots (1347, 13303, 10283,
        # 7839, 4018, 14598) fall on every master; random ones all fell on one node at times.
        ids = [f"s{i}-a1" for i in range(6)]
        for sid in ids:
            await store.create(_record(sid))
        sid = ids[0]
        loaded = await store.load(sid)
        assert loaded is not None and loaded[1] == {}
        assert loaded[0].to_hash() == _record(sid).with_changes(scope=store.scope).to_hash()
        # Atomic part commits (a Lua script on the stream's two keys), out of order.
        await store.commit_part(sid, _part(2, 20))
        await store.commit_part(sid, _part(1, 10))
        await store.commit_part(sid, _part(3, 30))
        loaded = await store.load(sid)
        assert loaded is not None
        assert (loaded[0].next_part_to_upload, loaded[0].total_bytes_sent) == (4, 60)
        assert set(loaded[1]) == {1, 2, 3}
        await store.drop_parts(sid, [3])
        loaded = await store.load(sid)
        assert loaded is not None
        assert (loaded[0].next_part_to_upload, loaded[0].total_bytes_sent) == (3, 30)
        await store.update(sid, state=StreamState.STALLED, error="why")
        assert await store.get_field(sid, "state") == "stalled"
        assert await store.set_state(sid, StreamState.UPLOADING, allowed_from=LIVE_STATES) is None
        await store.update(ids[1], state=StreamState.ABORTED)
        refused = await store.set_state(ids[1], StreamState.FINALIZING, allowed_from=LIVE_STATES)
        assert refused is StreamState.ABORTED
        assert set(await store.live_stream_ids()) == set(ids) - {ids[1]}
        assert await store.ended_stream_ids() == [ids[1]]
        assert await store.find_stream_ids("s1-") == [ids[1]]  # the ended index
        assert await store.find_stream_ids(ids[2][:4]) == [ids[2]]  # the live set
        # Records of two nodes' own scopes, on different masters, never mix.
        other = await store.load_records(ids)
        assert [r.stream_id for r in other] == ids
        assert await store.stream_for_path(_record(sid).path) == sid
        await store.forget_path(_record(sid).path, "another-stream")
        assert await store.stream_for_path(_record(sid).path) == sid
        await store.forget_path(_record(sid).path, sid)
        assert await store.stream_for_path(_record(sid).path) is None
        assert await store.reserve_key("k/1.mp4", sid) is None
        assert await store.reserve_key("k/1.mp4", sid) is None
        assert await store.reserve_key("k/1.mp4", ids[2]) == sid
        await store.release_key("k/1.mp4", sid)
        assert await store.reserve_key("k/1.mp4", ids[2]) is None
        # A rename and a rekey: the script's reply says where the index writes go (N12).
        await store.update(ids[4], path="/rec/renamed.mp4")
        assert await store.stream_for_path("/rec/renamed.mp4") == ids[4]
        assert await store.reserve_key("k/2.mp4", ids[4]) is None
        await store.update(ids[4], upload_id="", key="k/2.mp4")
        assert await store.reserve_key(_record(ids[4]).key, ids[2]) is None, "the old key let go"
        claim = await store.claim(ids[5], "node-a", 30)  # the lease, fence and record: one slot
        assert isinstance(claim, Claim)
        await store.release_claim(ids[5])
        await store.create(_record(sid, generation=2))  # a new generation: no parts
        loaded = await store.load(sid)
        assert loaded is not None and loaded[1] == {} and loaded[0].generation == 2

    # The test meant something: the records are spread over the masters, away from the index.
    async with open_redis(redis_cluster.cluster_url) as client:
        assert isinstance(client, ClusterClient)
        await client.initialize()
        meta_nodes = {
            client.get_node_from_key(f"{key_prefix}:stream:{{{s}}}:meta").port for s in ids
        }
        live = RedisKeys(key_prefix).scope(node_scope(socket.gethostname())).live
        index_node = client.get_node_from_key(live).port
    assert len(meta_nodes) >= 2 and meta_nodes - {index_node}


async def test_a_database_other_than_0_on_a_cluster_node_is_refused(
    redis_cluster: RedisCluster,
) -> None:
    with pytest.raises(ConfigError, match="Cluster has database 0 only, not 3"):
        async with open_redis(f"redis://127.0.0.1:{redis_cluster.ports[0]}/3"):
            pass


async def test_a_plain_server_stays_one_in_its_database(
    redis_server: RedisServer, key_prefix: str
) -> None:
    with capture_logs() as logs:
        async with open_redis(f"redis://127.0.0.1:{redis_server.port}/3") as client:
            assert type(client) is aioredis.Redis
            await client.set(f"{key_prefix}:k", "in 3")
    assert not [e for e in logs if "Cluster" in e["event"]]
    plain = redis.Redis(port=redis_server.port, db=3, decode_responses=True)
    try:
        assert plain.get(f"{key_prefix}:k") == "in 3"
    finally:
        plain.close()


async def test_an_unreachable_cluster_is_unavailable_not_a_crash() -> None:
    # RedisCluster raises RedisClusterException (no RedisError) when it reaches no node.
    url = f"redis+cluster://127.0.0.1:{free_port()},127.0.0.1:{free_port()}"
    async with RedisCheckpointStore.connect(url, "t") as store:
        with pytest.raises(CheckpointUnavailable, match="cannot be connected"):
            await store.ping()
        with pytest.raises(CheckpointUnavailable):
            await store.load("s1")


# -- Sentinel --------------------------------------------------------------------------------------


async def test_sentinel_writes_go_to_the_master(
    redis_sentinel: RedisSentinel, key_prefix: str
) -> None:
    master, replica = redis_sentinel.master, redis_sentinel.replica
    async with open_redis(_with_user(redis_sentinel.url)) as client:
        assert isinstance(client, aioredis.Redis)
        await client.set(f"{key_prefix}:k", "v")
        assert await client.execute_command("WAIT", 1, 5000) == 1  # the replica has it too
        info = await client.info("replication")
        assert info["role"] == "master"
    on_master = redis.Redis(port=master.port, decode_responses=True)
    on_replica = redis.Redis(port=replica.port, decode_responses=True)
    try:
        assert on_master.get(f"{key_prefix}:k") == "v"
        assert on_replica.get(f"{key_prefix}:k") == "v"
        with pytest.raises(redis.ReadOnlyError):  # so the write above did not land there
            on_replica.set(f"{key_prefix}:k2", "v")
    finally:
        on_master.close()
        on_replica.close()


async def test_sentinel_failover_is_followed_by_the_same_store(
    tmp_path: Path, key_prefix: str
) -> None:
    with RedisSentinel(tmp_path / "sentinel") as deployment:
        old_master = deployment.master.port
        async with RedisCheckpointStore.connect(deployment.url, key_prefix) as store:
            await store.create(_record("s1"))
            await store.commit_part("s1", _part(1, 10))
            # Replicated before the kill, so the failover keeps it (what WAIT is for).
            check = redis.Redis(port=old_master)
            try:
                assert check.execute_command("WAIT", 1, 5000) == 1  # type: ignore[no-untyped-call]
            finally:
                check.close()

            new_master = deployment.kill_master_and_wait_for_failover().port
            assert new_master != old_master

            deadline = time.monotonic() + 30
            errors: list[str] = []
            while True:
                try:
                    await store.commit_part("s1", _part(2, 20))
                    break
                except CheckpointUnavailable as exc:  # connections to the dead master
                    errors.append(str(exc))
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"no write through the store within 30 s of the failover to "
                        f"127.0.0.1:{new_master}; errors: {errors[-3:]}"
                    )
                await asyncio.sleep(0.2)
            loaded = await store.load("s1")
            assert loaded is not None
            assert set(loaded[1]) == {1, 2} and loaded[0].total_bytes_sent == 30
        on_new = redis.Redis(port=new_master, decode_responses=True)
        try:
            assert on_new.hget(f"{key_prefix}:stream:{{s1}}:meta", "next_part_to_upload") == "3"
        finally:
            on_new.close()


async def test_a_sentinel_that_knows_no_such_master_is_unavailable(
    redis_sentinel: RedisSentinel,
) -> None:
    url = f"redis+sentinel://127.0.0.1:{redis_sentinel.sentinel.port}/no-such-master/0"
    async with RedisCheckpointStore.connect(url, "t") as store:
        with pytest.raises(CheckpointUnavailable, match="No master found for 'no-such-master'"):
            await store.ping()


# -- durability warnings ---------------------------------------------------------------------------


async def _warnings(url: str) -> list[str]:
    async with open_redis(url) as client:
        return await redis_durability_warnings(client)


async def test_eviction_and_no_persistence_are_both_warned_about(tmp_path: Path) -> None:
    with RedisServer(tmp_path, extra_args=["--maxmemory-policy", "allkeys-lru"]) as server:
        warnings = await _warnings(server.url)
    assert warnings == [
        "Redis may evict tailup's keys under memory pressure (maxmemory-policy=allkeys-lru); "
        "set noeviction",
        'Redis persists nothing (appendonly no, save ""): a restart of Redis loses every '
        "checkpoint; turn on appendonly yes or RDB snapshots (save)",
    ]


async def test_noeviction_with_an_aof_gives_no_warning(tmp_path: Path) -> None:
    with RedisServer(
        tmp_path, appendonly=True, extra_args=["--maxmemory-policy", "noeviction"]
    ) as server:
        assert await _warnings(server.url) == []


async def test_rdb_snapshots_alone_count_as_persistence(tmp_path: Path) -> None:
    with RedisServer(tmp_path, extra_args=["--save", "3600 1"]) as server:
        assert await _warnings(server.url) == []


@pytest.mark.parametrize("how", ["renamed", "acl"])
async def test_config_get_refused_gives_one_line(tmp_path: Path, how: str) -> None:
    extra = ["--rename-command", "CONFIG", ""] if how == "renamed" else []
    with RedisServer(tmp_path, extra_args=extra) as server:
        url = server.url
        if how == "acl":
            add_acl_user(server.port, "noconfig", "pw-noconfig", "~*", "+@all", "-config")
            url = f"redis://noconfig:pw-noconfig@127.0.0.1:{server.port}/0"
        warnings = await _warnings(url)
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("could not check whether Redis may evict or lose tailup's keys")
    assert "pw-noconfig" not in warnings[0]


async def test_each_cluster_master_is_checked(redis_cluster: RedisCluster) -> None:
    warnings = await _warnings(redis_cluster.cluster_url)
    nodes = ", ".join(sorted(f"127.0.0.1:{p}" for p in redis_cluster.ports))
    assert warnings == [
        'Redis persists nothing (appendonly no, save ""): a restart of Redis loses every '
        f"checkpoint; turn on appendonly yes or RDB snapshots (save) (on {nodes})"
    ]


async def test_one_cluster_master_that_may_evict_is_named(tmp_path: Path) -> None:
    with RedisCluster(tmp_path / "cluster") as cluster:
        odd = cluster.ports[1]
        node = redis.Redis(port=odd)
        try:
            node.config_set("maxmemory-policy", "volatile-lru")
        finally:
            node.close()
        warnings = await _warnings(cluster.url)
    assert warnings[0] == (
        "Redis may evict tailup's keys under memory pressure (maxmemory-policy=volatile-lru); "
        f"set noeviction (on 127.0.0.1:{odd})"
    )
    assert len(warnings) == 2 and warnings[1].startswith("Redis persists nothing")


# -- ACL users and TLS -----------------------------------------------------------------------------


@pytest.fixture
def acl_redis(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path / "acl") as server:
        add_acl_user(server.port, "tailup", "secret", "~tailup:*", "+@all")
        yield server


@pytest.mark.parametrize("form", ["user:password@", "user@ and ?password="])
async def test_an_acl_user_checkpoints_within_its_keys(acl_redis: RedisServer, form: str) -> None:
    port = acl_redis.port
    url = (
        f"redis://tailup:secret@127.0.0.1:{port}/0"
        if form == "user:password@"
        else f"redis://tailup@127.0.0.1:{port}/0?password=secret"
    )
    prefix = f"tailup:{uuid.uuid4().hex[:8]}"
    async with RedisCheckpointStore.connect(url, prefix) as store:
        await store.ping()
        await store.create(_record("s1"))
        await store.commit_part("s1", _part(1, 10))
        loaded = await store.load("s1")
        assert loaded is not None and loaded[0].next_part_to_upload == 2
        who = await store._redis.execute_command("ACL", "WHOAMI")
        assert who == "tailup"
    # Its ACL is really in force: keys outside ~tailup:* are refused, for good.
    async with RedisCheckpointStore.connect(url, "elsewhere") as store:
        with pytest.raises(CheckpointRefused, match="no permissions to access one of the keys"):
            await store.create(_record("s2"))


def _refused_logins(server: RedisServer, user: str) -> int:
    """How many times ``user`` was refused its password (the server's ACL LOG counts them)."""
    client = redis.Redis(port=server.port)
    try:
        entries = client.acl_log()
        return sum(e["count"] for e in entries if e["reason"] == "auth" and e["username"] == user)
    finally:
        client.close()


async def test_a_wrong_password_is_refused(acl_redis: RedisServer) -> None:
    """... and said after one more try, not after redis-py's own retries (10 over ~4 s in 8.x)
    of each command (tailup.redisconn.ONE_RETRY)."""
    url = f"redis://tailup:not-the-secret@127.0.0.1:{acl_redis.port}/0"
    before = _refused_logins(acl_redis, "tailup")
    async with RedisCheckpointStore.connect(url, "tailup:x") as store:
        with pytest.raises(CheckpointRefused) as info:
            await store.ping()
    assert "not-the-secret" not in str(info.value)
    # Two commands (INFO cluster: is it a Cluster node?, then PING), each tried at most twice:
    # 4 on redis-py 8.x, 2 on 5.x (which retries no refused login); 22 with 8.x's own retries.
    assert 2 <= _refused_logins(acl_redis, "tailup") - before <= 4


async def test_a_unix_socket_in_its_database(tmp_path: Path) -> None:
    sock = tmp_path / "redis.sock"
    with RedisServer(tmp_path / "redis", extra_args=["--unixsocket", str(sock)]) as server:
        async with RedisCheckpointStore.connect(f"unix://{sock}?db=2", "t") as store:
            await store.create(_record("s1"))
            assert await store.get_field("s1", "state") == "uploading"
        plain = redis.Redis(port=server.port, db=2)
        try:
            assert plain.exists("t:stream:{s1}:meta") == 1
        finally:
            plain.close()


async def test_rediss_with_the_servers_ca_and_an_acl_user(tmp_path: Path) -> None:
    tls = make_tls_files(tmp_path / "tls")
    tls_port = free_port()
    extra = ["--tls-port", str(tls_port), "--tls-cert-file", str(tls["cert"]),
             "--tls-key-file", str(tls["key"]), "--tls-ca-cert-file", str(tls["ca"]),
             "--tls-auth-clients", "no"]  # fmt: skip
    with RedisServer(tmp_path / "redis", extra_args=extra) as server:
        add_acl_user(server.port, "tailup", "secret", "~tailup:*", "+@all")
        base = f"rediss://tailup:secret@127.0.0.1:{tls_port}/0"
        async with RedisCheckpointStore.connect(
            f"{base}?ssl_ca_certs={tls['ca']}", "tailup:t"
        ) as s:
            await s.create(_record("s1"))
            loaded = await s.load("s1")
            assert loaded is not None
            # Over the TLS port (the server's plain port is another one).
            assert (await s._redis.client_info())["laddr"] == f"127.0.0.1:{tls_port}"
        # Without the CA the certificate is not trusted: no checkpoint goes over that link.
        async with RedisCheckpointStore.connect(base, "tailup:t") as s:
            with pytest.raises(CheckpointUnavailable, match=r"(?i)certificate verify failed"):
                await s.ping()


# -- no password in any log line -------------------------------------------------------------------

WRONG = "Wr9x"  # short too: only the patterns can hide it


@pytest.fixture
def password_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis with requirepass PW, and the ACL user USER with the same password."""
    with RedisServer(tmp_path / "pw-redis", extra_args=["--requirepass", PW]) as server:
        client = redis.Redis(port=server.port, password=PW)
        try:
            client.execute_command(  # type: ignore[no-untyped-call]
                "ACL", "SETUSER", USER, "on", f">{PW}", "~*", "+@all"
            )
        finally:
            client.close()
        yield server


def test_no_redis_password_in_any_log_line(
    tmp_path: Path,
    s3_server: SeaweedS3,
    bucket: str,
    password_redis: RedisServer,
    redis_cluster: RedisCluster,
    redis_sentinel: RedisSentinel,
    key_prefix: str,
) -> None:
    """The daemon at debug level with every URL form, and refused with a wrong password in each
    kind: the password is printed in no line (the settings line, library records, errors)."""
    plain = f"127.0.0.1:{password_redis.port}/0"
    nodes = ",".join(f"127.0.0.1:{p}" for p in redis_cluster.ports)
    node = f"127.0.0.1:{redis_cluster.ports[0]}/0"
    sentinel = f"127.0.0.1:{redis_sentinel.sentinel.port}/mymaster/0"
    good = {
        "redis://:pw@": f"redis://:{PW}@{plain}",
        "redis://u:pw@": f"redis://{USER}:{PW}@{plain}",
        "?password=": f"redis://{plain}?password={PW}",
        "redis+cluster://u:pw@": f"redis+cluster://{USER}:{PW}@{nodes}",
        "redis+cluster ?password=": f"redis+cluster://{USER}@{nodes}?password={PW}",
        "found cluster, redis://u:pw@": f"redis://{USER}:{PW}@{node}",
        "redis+sentinel://u:pw@": f"redis+sentinel://{USER}:{PW}@{sentinel}",
        "redis+sentinel ?password=": f"redis+sentinel://{USER}@{sentinel}?password={PW}",
    }
    wrong = {
        "wrong, redis://u:pw@": f"redis://{USER}:{WRONG}@{plain}",
        "wrong, ?password=": f"redis://{plain}?password={WRONG}",
        "wrong, redis+cluster://u:pw@": f"redis+cluster://{USER}:{WRONG}@{nodes}",
        "wrong, redis+sentinel://u:pw@": f"redis+sentinel://{USER}:{WRONG}@{sentinel}",
    }
    watch = tmp_path / "watch"
    watch.mkdir()
    outputs: dict[str, str] = {}
    for name, url in {**good, **wrong}.items():
        args = ["--watch", str(watch), "--bucket", bucket, "--endpoint-url",
                s3_server.endpoint_url, "--redis-url", url, "--redis-prefix", key_prefix,
                "--log-level", "debug", "--log-format", "json"]  # fmt: skip
        log = tmp_path / f"{len(outputs)}.log"
        daemon = start_daemon(args, s3_server.env(), log, tmp_path)
        try:
            if name in good:
                daemon.wait_for_event("tailup started", timeout_s=60)
                assert daemon.stop() == 0, daemon.tail()
            else:
                assert daemon.proc.wait(timeout=60) == 1, f"{name}: {daemon.tail()}"
        finally:
            if daemon.proc.poll() is None:
                daemon.kill9()
        outputs[name] = daemon.text()

    for name, text in outputs.items():
        assert PW not in text, f"the password is printed by the run {name!r}"
        assert WRONG not in text, f"the wrong password is printed by the run {name!r}"
    # The search meant something: every run logged its URL, redacted; the refused ones said why.
    for name, text in outputs.items():
        assert '"redis_url": "redis' in text and "***" in text, name
    for name in wrong:
        assert "Redis refused the credentials in --redis-url" in outputs[name], name
    # The durability check ran on each kind (none of these servers persists anything).
    for name in good:
        assert "Redis persists nothing" in outputs[name], name
    assert "Cluster node" in outputs["found cluster, redis://u:pw@"]
