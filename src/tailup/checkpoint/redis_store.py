"""The checkpoint store in Redis: stream records and acknowledged parts, written by the scripts of
tailup.checkpoint.scripts (atomic per stream, fenced), then indexed (tailup.checkpoint.index).
Ended records expire after --keep-records; S3 answers for them after that (tailup.recovery)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Collection, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any, cast

import redis.asyncio as aioredis
import structlog

from tailup.checkpoint.claims import ClaimBook, NodeLeases
from tailup.checkpoint.index import ScopeIndexes
from tailup.checkpoint.legacy import adopt_legacy
from tailup.checkpoint.protocol import Claim, RenewResult
from tailup.checkpoint.redis_errors import guarded
from tailup.checkpoint.scripts import Scripts, expiry_arg, pairs
from tailup.keys import RedisKeys, index_path, node_scope
from tailup.model import (
    PartialRecord,
    PartRecord,
    StreamRecord,
    StreamState,
    encode_field,
    iso,
    utc_now,
)
from tailup.redisconn import open_redis

if TYPE_CHECKING:
    from tailup.config import Settings

log = structlog.get_logger(__name__)


def _field_pairs(fields: Mapping[str, Any]) -> list[str]:
    """Meta fields as HSET pairs; a write refreshes last activity unless it names it."""
    pairs: list[str] = []
    for name, value in {"last_activity_at_utc": iso(utc_now()), **fields}.items():
        pairs += [name, encode_field(value)]
    return pairs


class RedisCheckpointStore:
    """The CheckpointStore (tailup.checkpoint.protocol) of one node's scope in Redis: records
    here, indexes in ScopeIndexes, claims in ClaimBook, node leases in NodeLeases."""

    def __init__(
        self,
        client: aioredis.Redis,
        keys: RedisKeys,
        *,
        scope: str = "",
        keep_records_s: float = 0.0,
        lease_ttl_s: float = 30.0,
    ) -> None:
        self._redis = client
        self._keys = keys
        self.scope = scope or node_scope(socket.gethostname())
        self._keep_records_s = keep_records_s
        self._scripts = scripts = Scripts.register(client)
        self.indexes = ScopeIndexes(
            client, keys, scripts, scope=self.scope, keep_records_s=keep_records_s
        )
        self.claims = ClaimBook(client, keys, scripts, lease_ttl_s=lease_ttl_s)
        self.nodes = NodeLeases(client, keys, scripts)

    @classmethod
    @asynccontextmanager
    async def connect(
        cls,
        url: str,
        prefix: str,
        *,
        scope: str = "",
        keep_records_s: float = 0.0,
        lease_ttl_s: float = 30.0,
    ) -> AsyncIterator[RedisCheckpointStore]:
        # One server, a Cluster (named or found) or Sentinel's master: tailup.redisconn. A
        # RedisCluster serves every call below (tests/integration/test_redis_deployments.py)
        # though its type is not Redis's.
        async with open_redis(url) as client:
            yield cls(
                cast(aioredis.Redis, client),
                RedisKeys(prefix),
                scope=scope,
                keep_records_s=keep_records_s,
                lease_ttl_s=lease_ttl_s,
            )

    @classmethod
    def for_settings(cls, settings: Settings) -> AbstractAsyncContextManager[RedisCheckpointStore]:
        """The store of this node (--node-id) on --redis-url and --redis-prefix."""
        return cls.connect(
            settings.redis_url,
            settings.redis_prefix,
            scope=node_scope(settings.node_id),
            keep_records_s=settings.keep_records,
            lease_ttl_s=settings.lease_ttl,
        )

    @property
    def client(self) -> aioredis.Redis:
        return self._redis

    @property
    def keys(self) -> RedisKeys:
        return self._keys

    @property
    def keep_records_s(self) -> float:
        return self._keep_records_s

    async def ping(self) -> None:
        await guarded(lambda: self._redis.ping())

    # -- records --

    async def _write(
        self, record: StreamRecord, parts: Mapping[int, PartRecord], *, only_new: bool
    ) -> bool:
        sid, scope = record.stream_id, record.scope or self.scope
        if not record.scope:
            record = record.with_changes(scope=scope)
        meta = record.to_hash()
        expiry = expiry_arg(record.state, self._keep_records_s)
        args: list[Any] = ["1" if only_new else "0", expiry if expiry != "-1" else "0", len(meta)]
        for name, value in meta.items():
            args += [name, value]
        for number, part in sorted(parts.items()):
            args += [number, part.to_json()]

        async def run() -> bool:
            keys = self._keys
            written = await self._scripts.write_record(
                keys=[keys.stream_meta(sid), keys.stream_parts(sid), keys.stream_fence(sid)],
                args=args,
            )
            if not written:
                return False
            self.indexes.remember_scope(sid, scope)
            entry = index_path(scope, record.path, record.watch_root)
            entries = {keys.scope(scope).path(entry): False}
            if record.key:
                entries[keys.object_claim(record.key)] = True
            await self.indexes.index(sid, scope, record.state, record.key, entry, entries=entries)
            return True

        return await guarded(run)

    async def create(self, record: StreamRecord) -> None:
        await self._write(record, {}, only_new=False)

    async def create_new(self, record: StreamRecord) -> bool:
        return await self._write(record, {}, only_new=True)

    async def restore(self, record: StreamRecord, parts: Mapping[int, PartRecord]) -> None:
        await self._write(record, parts, only_new=False)

    async def load(self, stream_id: str) -> tuple[StreamRecord, dict[int, PartRecord]] | None:
        keys = [self._keys.stream_meta(stream_id), self._keys.stream_parts(stream_id)]
        reply = await guarded(lambda: self._scripts.load(keys=keys))
        meta, raw_parts = pairs(reply[0]), pairs(reply[1])
        if not meta:
            return None
        try:
            record = StreamRecord.from_hash(meta)
            parts = {int(n): PartRecord.from_json(int(n), t) for n, t in raw_parts.items()}
        except (PartialRecord, ValueError, KeyError, TypeError) as exc:
            log.warning("partial stream record skipped", stream_id=stream_id, reason=str(exc))
            return None
        self.indexes.remember_scope(stream_id, record.scope)
        return record, parts

    async def load_records(self, stream_ids: Sequence[str]) -> list[StreamRecord]:
        records = []
        for sid, meta in zip(stream_ids, await self._each(stream_ids, None), strict=True):
            if not meta:
                continue
            try:
                records.append(StreamRecord.from_hash(meta))
            except PartialRecord as exc:
                log.warning("partial stream record skipped", stream_id=sid, reason=str(exc))
        return records

    async def update(self, stream_id: str, **fields: Any) -> None:
        state = fields.get("state")
        expiry = expiry_arg(state, self._keep_records_s)

        async def run() -> None:
            reply = await self.claims.run_guarded(
                self._scripts.update, stream_id, _field_pairs(fields), expiry=expiry
            )
            await self.indexes.after_update(stream_id, state, fields, reply)

        await guarded(run)

    async def set_state(
        self,
        stream_id: str,
        state: StreamState,
        *,
        allowed_from: Collection[StreamState],
        **fields: Any,
    ) -> StreamState | None:
        allowed = [s.value for s in allowed_from]
        args = [state.value, len(allowed), *allowed, *_field_pairs(fields)]
        expiry = expiry_arg(state, self._keep_records_s)

        async def run() -> StreamState | None:
            refused, key, path, root = await self.claims.run_guarded(
                self._scripts.set_state, stream_id, args, expiry=expiry
            )
            if refused:
                return StreamState(str(refused))
            scope = await self.indexes.scope_of(stream_id)
            entry = index_path(scope, str(path), str(root))
            await self.indexes.index(stream_id, scope, state, str(key), entry)
            return None

        return await guarded(run)

    async def commit_part(self, stream_id: str, part: PartRecord) -> None:
        args = [part.number, part.to_json()]
        await guarded(lambda: self.claims.run_guarded(self._scripts.commit_part, stream_id, args))

    async def drop_parts(self, stream_id: str, numbers: Iterable[int]) -> None:
        numbers = list(numbers)
        if numbers:
            await guarded(
                lambda: self.claims.run_guarded(self._scripts.drop_parts, stream_id, numbers)
            )

    async def get_field(self, stream_id: str, name: str) -> str | None:
        value = await guarded(lambda: self._redis.hget(self._keys.stream_meta(stream_id), name))
        return None if value is None else str(value)

    async def get_fields(self, stream_ids: Sequence[str], name: str) -> list[str | None]:
        return [
            None if value is None else str(value) for value in await self._each(stream_ids, name)
        ]

    async def _each(self, stream_ids: Sequence[str], name: str | None) -> list[Any]:
        """One meta field (None: every field) of each stream, in one round trip."""
        if not stream_ids:
            return []

        async def run() -> list[Any]:
            async with self._redis.pipeline(transaction=False) as pipe:
                for sid in stream_ids:
                    meta = self._keys.stream_meta(sid)
                    if name is None:
                        pipe.hgetall(meta)
                    else:
                        pipe.hget(meta, name)
                return list(await pipe.execute())

        return await guarded(run)

    # -- indexes (ScopeIndexes) --

    async def stream_for_path(self, path: str, scope: str | None = None) -> str | None:
        return await self.indexes.stream_for_path(path, scope)

    async def forget_path(self, path: str, stream_id: str, scope: str | None = None) -> None:
        await self.indexes.forget_path(path, stream_id, scope)

    async def reserve_key(self, object_key: str, stream_id: str) -> str | None:
        return await self.indexes.reserve_key(object_key, stream_id)

    async def release_key(self, object_key: str, stream_id: str) -> None:
        await self.indexes.release_key(object_key, stream_id)

    async def next_key_number(self, object_key: str) -> int:
        return await self.indexes.next_key_number(object_key)

    async def live_stream_ids(self, scope: str | None = None) -> list[str]:
        return await self.indexes.live_stream_ids(scope)

    async def ended_stream_ids(
        self, scope: str | None = None, *, limit: int = 100, offset: int = 0
    ) -> list[str]:
        return await self.indexes.ended_stream_ids(scope, limit=limit, offset=offset)

    async def count_ended(self, scope: str | None = None) -> int:
        return await self.indexes.count_ended(scope)

    async def find_stream_ids(self, prefix: str, scope: str | None = None) -> list[str]:
        return await self.indexes.find_stream_ids(prefix, scope)

    async def trim_ended(self, before_unix_s: float, scope: str | None = None) -> int:
        return await self.indexes.trim_ended(before_unix_s, scope)

    async def adopt_legacy(self, roots: Sequence[str]) -> int:
        return await guarded(
            lambda: adopt_legacy(
                self._redis, self._keys, self.scope, roots, keep_records_s=self._keep_records_s
            )
        )

    # -- leases (ClaimBook, NodeLeases) --

    async def claim(self, stream_id: str, node_id: str, ttl_s: float) -> Claim | str:
        return await self.claims.claim(stream_id, node_id, ttl_s)

    async def renew_claim(self, stream_id: str, ttl_s: float) -> RenewResult:
        return await self.claims.renew_claim(stream_id, ttl_s)

    async def release_claim(self, stream_id: str) -> None:
        await self.claims.release_claim(stream_id)

    def held_claims(self) -> list[str]:
        return self.claims.held_claims()

    def lost_claims(self) -> list[str]:
        return self.claims.lost_claims()

    async def acquire_node(
        self, node_id: str, holder: str, ttl_s: float, *, replacing: str = ""
    ) -> str | None:
        return await self.nodes.acquire_node(node_id, holder, ttl_s, replacing=replacing)

    async def renew_node(self, node_id: str, holder: str, ttl_s: float) -> RenewResult:
        return await self.nodes.renew_node(node_id, holder, ttl_s)

    async def release_node(self, node_id: str, holder: str) -> None:
        await self.nodes.release_node(node_id, holder)

    async def publish_node_info(self, node_id: str, info: Mapping[str, str], ttl_s: float) -> None:
        await self.nodes.publish_node_info(node_id, info, ttl_s)

    async def node_info(self, node_id: str) -> dict[str, str]:
        return await self.nodes.node_info(node_id)
