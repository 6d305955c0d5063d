"""The checkpoint store: stream records and acknowledged parts, in Redis.

A part's checkpoint (its record, next part, bytes sent, last activity) is one Lua script on
keys that share the stream's hash tag, so it is atomic also under Redis Cluster; the same scripts
refuse to write a record Redis lost (RecordLost) or one whose lease another node took (ClaimLost).
The index keys of a scope (live set, ended set, path entries; tailup.keys) live in other slots
and are written after the stream's own keys: a crash in between leaves at worst an index entry
without a stream (ignored) or a stream missing from the live set, which the path entry still
finds. Ended records expire after --keep-records; S3 answers for them after that
(tailup.recovery).
"""

from __future__ import annotations

import contextlib
import enum
import socket
import time
from collections import OrderedDict
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Iterable,
    Mapping,
    Sequence,
)
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

import redis.asyncio as aioredis
import redis.exceptions as rex
import structlog

from tailup.errors import CheckpointRefused, CheckpointUnavailable, ClaimLost, RecordLost
from tailup.keys import RedisKeys, index_path, node_scope
from tailup.model import (
    PartialRecord,
    PartRecord,
    StreamRecord,
    StreamState,
    encode_field,
    iso,
    lowest_gap,
    utc_now,
)
from tailup.redisconn import open_redis

if TYPE_CHECKING:
    from tailup.config import Settings

T = TypeVar("T")
log = structlog.get_logger(__name__)


class RenewResult(enum.Enum):
    """What renewing a lease (a node's, or a shared recording's claim) found."""

    RENEWED = "renewed"
    RESTORED = "restored"  # it had vanished (Redis lost its data) and nobody else took it: ours
    TAKEN = "taken"  # another holder has it now: stop using it


@dataclass(frozen=True, slots=True)
class Claim:
    """This node's lease on a shared folder's recording: ``node|fence``."""

    value: str
    fence: int


class CheckpointStore(Protocol):
    """Stream records, their acknowledged parts and the indexes of one *scope* (tailup.keys):
    ``scope`` arguments default to the store's own (the node's folders)."""

    scope: str

    async def create(self, record: StreamRecord) -> None:
        """Store a new stream (or a new generation of one), with no parts, and index it in the
        record's scope."""

    async def create_new(self, record: StreamRecord) -> bool:
        """Like create, only if no record has this id; False (nothing written) otherwise."""

    async def restore(self, record: StreamRecord, parts: Mapping[int, PartRecord]) -> None:
        """Write a stream's whole record and parts again after Redis lost them."""

    async def load(self, stream_id: str) -> tuple[StreamRecord, dict[int, PartRecord]] | None:
        """None when there is no record, or only part of one (logged)."""

    async def load_records(self, stream_ids: Sequence[str]) -> list[StreamRecord]:
        """The records (without parts) of the ids that have whole ones, in the given order."""

    async def update(self, stream_id: str, **fields: Any) -> None:
        """Change meta fields; a change of ``state`` also moves the stream between the live and
        ended indexes. RecordLost when the record is gone, ClaimLost when another node holds
        the stream's claim."""

    async def set_state(
        self,
        stream_id: str,
        state: StreamState,
        *,
        allowed_from: Collection[StreamState],
        **fields: Any,
    ) -> StreamState | None:
        """Atomically: set ``state`` (and ``fields``) if the stored state is ``state`` already or
        one of ``allowed_from``. Returns None when written, else the stored state that refused
        it: a daemon that has not yet noticed a `tailup abort` must not bring the stream back."""

    async def commit_part(self, stream_id: str, part: PartRecord) -> None:
        """Atomically: the part, next part to upload (lowest gap), bytes sent, last activity."""

    async def drop_parts(self, stream_id: str, numbers: Iterable[int]) -> None:
        """Forget parts (past a shrunk end), keeping next part and bytes sent consistent."""

    async def stream_for_path(self, path: str, scope: str | None = None) -> str | None: ...

    async def forget_path(self, path: str, stream_id: str, scope: str | None = None) -> None:
        """Drop the path's entry if it still names ``stream_id`` (a rename moved the stream on;
        another stream may own the path by now)."""

    async def reserve_key(self, object_key: str, stream_id: str) -> str | None:
        """Claim an S3 key for a stream. None when it is the stream's (now or already), else the
        id of the stream that holds it: two recordings never share a key."""

    async def next_key_number(self, object_key: str) -> int:
        """1, 2, 3, ...: a counter per taken S3 key, so that a new recording's suffixed key is
        one guess, not a walk past every earlier one (tailup.keyclaim)."""

    async def get_field(self, stream_id: str, name: str) -> str | None:
        """One meta field, without loading the parts (polled by failed streams)."""

    async def get_fields(self, stream_ids: Sequence[str], name: str) -> list[str | None]:
        """One meta field of each stream, in the given order (None: no record or no such
        field), in one round trip: `tailup status --state` scans states this way and loads
        whole records for the matches only."""

    async def live_stream_ids(self, scope: str | None = None) -> list[str]: ...

    async def ended_stream_ids(
        self, scope: str | None = None, *, limit: int = 100, offset: int = 0
    ) -> list[str]:
        """Ended streams, the latest ended first."""

    async def count_ended(self, scope: str | None = None) -> int: ...

    async def find_stream_ids(self, prefix: str, scope: str | None = None) -> list[str]:
        """Ids in the scope's live set and ended index that begin with ``prefix`` (the ids a
        person's short prefix may mean), sorted, without reading the whole index into the
        client: Redis matches them (~1 s per million ended records)."""

    async def trim_ended(self, before_unix_s: float, scope: str | None = None) -> int:
        """Drop index entries of streams that ended before ``before_unix_s`` (their records
        expire by themselves); returns how many."""

    async def claim(self, stream_id: str, node_id: str, ttl_s: float) -> Claim | str:
        """Take (or keep) a shared recording's lease: the Claim, or the ``node|fence`` value of
        the live holder. Every later write of the stream checks it (fencing)."""

    async def renew_claim(self, stream_id: str, ttl_s: float) -> RenewResult: ...

    async def release_claim(self, stream_id: str) -> None:
        """Give the lease up (the stream ended, or this node stops): another node may take it
        at once rather than after the TTL."""

    def held_claims(self) -> list[str]: ...

    async def acquire_node(
        self, node_id: str, holder: str, ttl_s: float, *, replacing: str = ""
    ) -> str | None:
        """Take the node lease: None when taken, else the live holder's value. ``replacing``:
        take it over from that exact holder (provably gone)."""

    async def renew_node(self, node_id: str, holder: str, ttl_s: float) -> RenewResult: ...

    async def release_node(self, node_id: str, holder: str) -> None: ...

    async def publish_node_info(self, node_id: str, info: Mapping[str, str], ttl_s: float) -> None:
        """What the node's daemon says of itself (tailup.keys.RedisKeys.node_info)."""

    async def node_info(self, node_id: str) -> dict[str, str]:
        """The node's daemon's own account; empty when no daemon of it runs."""

    async def adopt_legacy(self, roots: Sequence[str]) -> int:
        """Take this node's entries over from the single index of tailup before nodes: live
        streams, path entries and ended streams whose files are under ``roots``, and every
        object-key claim. Returns how many streams were taken over; 0 when nothing is left."""

    async def ping(self) -> None: ...


# Faults that pass: the server is down, loading its data, failing over, or out of memory until
# someone frees some. Anything else Redis refuses (credentials, ACLs, a wrong command) will not.
# Sentinel's MasterNotFoundError and SlaveNotFoundError are ConnectionErrors. RedisCluster raises
# RedisClusterException, which is no RedisError, when no node of the Cluster can be reached or a
# slot has no node (SlotNotCoveredError).
_REDIS_TRANSIENT: tuple[type[Exception], ...] = (
    rex.BusyLoadingError,
    rex.ReadOnlyError,
    rex.TryAgainError,
    rex.ClusterDownError,
    rex.OutOfMemoryError,
    rex.TimeoutError,
    rex.RedisClusterException,
)
_REDIS_ERRORS: tuple[type[Exception], ...] = (rex.RedisError, rex.RedisClusterException, OSError)
_REDIS_REFUSED: tuple[type[Exception], ...] = (
    rex.AuthenticationError,
    rex.AuthorizationError,
    rex.NoPermissionError,
    rex.AuthenticationWrongNumberOfArgsError,
)
_AUTH_REPLIES = ("NOAUTH", "WRONGPASS", "NOPERM")


def _is_refusal(exc: BaseException) -> bool:
    return isinstance(exc, _REDIS_REFUSED) or str(exc).startswith(_AUTH_REPLIES)


def translate_redis_error(exc: Exception) -> Exception:
    """Map a redis-py error to tailup's family. Messages never carry the password (redis-py
    does not put it in them, and URLs are not included)."""
    # RedisCluster wraps what its startup nodes answered (a refused password too) in a
    # RedisClusterException "cannot be connected": the refusal is what it wraps.
    wrapped = None
    if isinstance(exc, rex.RedisClusterException):
        wrapped = exc.__cause__ or exc.__context__
    if _is_refusal(exc) or (wrapped is not None and _is_refusal(wrapped)):
        return CheckpointRefused(f"Redis refused the credentials in --redis-url: {exc}")
    if isinstance(exc, _REDIS_TRANSIENT):
        return CheckpointUnavailable(f"Redis cannot take checkpoints now: {exc}")
    if isinstance(exc, rex.ConnectionError | OSError):
        return CheckpointUnavailable(f"Redis is unreachable: {exc}")
    # Anything else (MISCONF when Redis cannot write its disk, BUSY with a script running, a reply
    # this redis-py does not know) is something an operator or time fixes: back off and retry.
    # Only refused credentials stop a stream.
    return CheckpointUnavailable(f"Redis cannot take checkpoints now: {exc}")


async def _guarded(call: Callable[[], Awaitable[T]]) -> T:
    try:
        return await call()
    except _REDIS_ERRORS as exc:
        raise translate_redis_error(exc) from exc


# Every script that writes a stream checks first that its record exists (else Redis lost it: a
# write would half rebuild it) and, for a shared folder's recording, that this node still holds
# its lease (fencing: a node presumed dead must never write over the one that took over). A lease
# that vanished while the fence is unchanged (Redis restarted, or this node was slow to renew) is
# taken back: nobody else took it in between.
# KEYS: meta, parts, lease, fence. ARGV[1]: the lease value held ('' = no lease), ARGV[2]: its
# fence, ARGV[3]: lease TTL (ms), ARGV[4]: what to do with the record's expiry ('0' nothing,
# '-1' persist, else a TTL in ms), ARGV[5]: now. The script's own arguments follow.
_GUARD = """
if redis.call('EXISTS', KEYS[1]) == 0 then return redis.error_reply('TAILUP-LOST') end
if ARGV[1] ~= '' then
  local held = redis.call('GET', KEYS[3])
  if held ~= ARGV[1] then
    if held == false and redis.call('GET', KEYS[4]) == ARGV[2] then
      redis.call('SET', KEYS[3], ARGV[1], 'PX', ARGV[3])
    else
      return redis.error_reply('TAILUP-STALE')
    end
  end
end
local function expiry()
  if ARGV[4] == '-1' then
    redis.call('PERSIST', KEYS[1]) redis.call('PERSIST', KEYS[2]) redis.call('PERSIST', KEYS[4])
  elseif ARGV[4] ~= '0' then
    for i = 1, 4 do
      if i ~= 3 then redis.call('PEXPIRE', KEYS[i], ARGV[4]) end
    end
  end
end
"""
_GUARD_ARGS = 5

# Atomic part commit: the parts hash and the meta fields derived from it change together, inside
# one script, so concurrent commits of out-of-order parts can never leave them inconsistent.
_DERIVE_COUNTERS = """
local present = {}
for _, n in ipairs(redis.call('HKEYS', KEYS[2])) do present[tonumber(n)] = true end
local nxt = 1
while present[nxt] do nxt = nxt + 1 end
local total = 0
for _, v in ipairs(redis.call('HVALS', KEYS[2])) do total = total + cjson.decode(v)['size'] end
redis.call('HSET', KEYS[1], 'next_part_to_upload', nxt, 'total_bytes_sent', total,
           'last_activity_at_utc', ARGV[5])
return nxt
"""
# ARGV[6], ARGV[7]: part number and its JSON record. Incremental, so a commit costs the same at
# part 10,000 as at part 1: every part below next_part_to_upload is present by construction.
_COMMIT_PART = (
    _GUARD
    + """
local old = redis.call('HGET', KEYS[2], ARGV[6])
local delta = cjson.decode(ARGV[7])['size']
if old then delta = delta - cjson.decode(old)['size'] end
redis.call('HSET', KEYS[2], ARGV[6], ARGV[7])
redis.call('HINCRBY', KEYS[1], 'total_bytes_sent', delta)
local nxt = tonumber(redis.call('HGET', KEYS[1], 'next_part_to_upload') or '1')
while redis.call('HEXISTS', KEYS[2], nxt) == 1 do nxt = nxt + 1 end
redis.call('HSET', KEYS[1], 'next_part_to_upload', nxt, 'last_activity_at_utc', ARGV[5])
return nxt
"""
)
# ARGV[6..]: field pairs.
_UPDATE = (
    _GUARD
    + """
redis.call('HSET', KEYS[1], unpack(ARGV, 6))
expiry()
return {redis.call('HGET', KEYS[1], 'key') or '', redis.call('HGET', KEYS[1], 'path') or '',
        redis.call('HGET', KEYS[1], 'watch_root') or ''}
"""
)
# A state change that a `tailup abort` (or any state outside the allowed ones) wins over.
# ARGV[6] is the new state, ARGV[7] the number of allowed current states, then those states,
# then field pairs. Returns {refused state or '', key, path}.
_SET_STATE = (
    _GUARD
    + """
local current = redis.call('HGET', KEYS[1], 'state')
local count = tonumber(ARGV[7])
if current and current ~= ARGV[6] then
  local allowed = false
  for i = 8, 7 + count do
    if ARGV[i] == current then allowed = true end
  end
  if not allowed then return {current, '', '', ''} end
end
redis.call('HSET', KEYS[1], 'state', ARGV[6], unpack(ARGV, 8 + count))
expiry()
return {'', redis.call('HGET', KEYS[1], 'key') or '', redis.call('HGET', KEYS[1], 'path') or '',
        redis.call('HGET', KEYS[1], 'watch_root') or ''}
"""
)
# ARGV[6..]: part numbers to forget; rare (a file shrank), so the counters are derived afresh.
_DROP_PARTS = (
    _GUARD + "for i = 6, #ARGV do redis.call('HDEL', KEYS[2], ARGV[i]) end" + _DERIVE_COUNTERS
)
# KEYS: meta, parts, fence. ARGV[1]: '1' only if no record exists yet, ARGV[2]: the expiry ('0'
# none, else a TTL in ms), ARGV[3]: number of meta field pairs, then the pairs, then part
# number/JSON pairs. Returns 0 when a record was there already.
_WRITE_RECORD = """
-- Only a whole record counts as there: a partial one (fields written after Redis lost it) is
-- replaced, or its file would never be uploaded.
if ARGV[1] == '1' and redis.call('HEXISTS', KEYS[1], 'path') == 1
   and redis.call('HEXISTS', KEYS[1], 'base_part_size') == 1 then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
local count = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], unpack(ARGV, 4, 3 + 2 * count))
if #ARGV > 3 + 2 * count then redis.call('HSET', KEYS[2], unpack(ARGV, 4 + 2 * count)) end
if ARGV[2] ~= '0' then
  for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ARGV[2]) end
else
  redis.call('PERSIST', KEYS[3])
end
return 1
"""
_LOAD = "return {redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2])}"
# KEYS[1]: a path entry (or an object claim). ARGV[1]: stream id, ARGV[2]: 'del', 'persist' or
# a TTL in ms. Only an entry that still names the stream is touched.
_IF_OWNED = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == 'del' then return redis.call('DEL', KEYS[1]) end
if ARGV[2] == 'persist' then return redis.call('PERSIST', KEYS[1]) end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
"""
# Claims of a shared recording. KEYS: lease, fence. ARGV[1]: node id, ARGV[2]: TTL (ms).
# Returns {1, value} when this node holds it now, {0, value} for another live holder.
_CLAIM = """
local held = redis.call('GET', KEYS[1])
if held then
  if string.sub(held, 1, #ARGV[1] + 1) == ARGV[1] .. '|' then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return {1, held}
  end
  return {0, held}
end
local value = ARGV[1] .. '|' .. redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], value, 'PX', ARGV[2])
return {1, value}
"""
# Renewing a lease (a claim: KEYS lease, fence; a node lease: KEYS lease only). ARGV[1]: the
# value held, ARGV[2]: TTL (ms), ARGV[3]: the fence ('' for a node lease). 1 renewed, 2 taken back
# after it vanished, 0 another holder has it.
_RENEW = """
local held = redis.call('GET', KEYS[1])
if held == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if held == false and (ARGV[3] == '' or redis.call('GET', KEYS[2]) == ARGV[3]) then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 2
end
return 0
"""
# KEYS[1]: node lease. ARGV[1]: holder, ARGV[2]: TTL (ms), ARGV[3]: a holder known gone ('' =
# none). Returns '' when taken, else the live holder.
_ACQUIRE_NODE = """
local held = redis.call('GET', KEYS[1])
if held and held ~= ARGV[1] and held ~= ARGV[3] then return held end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ''
"""
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end"

_SCOPES_REMEMBERED = 20_000


# Ended index entries Redis looks at per ZSCAN call when a prefix is looked up: each call takes
# ~5 ms of the server, so the daemon's checkpoint writes wait no longer than that behind it.
_SCAN_COUNT = 5000


def _glob_escape(text: str) -> str:
    """``text`` as a literal in a Redis MATCH pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _expiry_arg(state: object, keep_records_s: float) -> str:
    """What a write of ``state`` does to the record's expiry: a live stream's record is kept,
    an ended one expires after --keep-records (0: kept forever)."""
    if not isinstance(state, StreamState):
        return "0"
    if state.is_resumable:
        return "-1"
    return str(_ms(keep_records_s)) if keep_records_s > 0 else "0"


class RedisCheckpointStore:
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
        self._lease_ttl_s = lease_ttl_s
        self._commit = client.register_script(_COMMIT_PART)
        self._drop = client.register_script(_DROP_PARTS)
        self._update = client.register_script(_UPDATE)
        self._set_state = client.register_script(_SET_STATE)
        self._write_record = client.register_script(_WRITE_RECORD)
        self._load = client.register_script(_LOAD)
        self._if_owned = client.register_script(_IF_OWNED)
        self._claim = client.register_script(_CLAIM)
        self._renew = client.register_script(_RENEW)
        self._acquire_node = client.register_script(_ACQUIRE_NODE)
        self._release = client.register_script(_RELEASE)
        # Which scope each stream is indexed in (index keys sit in other slots than the record,
        # so scripts cannot look it up); filled by create and load, else read from the record.
        self._scopes: OrderedDict[str, str] = OrderedDict()
        self._claims: dict[str, Claim] = {}
        # Claims this node held and lost to another node: every write of those streams is
        # refused from then on (until claimed again), not sent unguarded.
        self._lost_claims: set[str] = set()

    def _drop_claim(self, stream_id: str) -> None:
        if self._claims.pop(stream_id, None) is not None:
            self._lost_claims.add(stream_id)

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

    async def ping(self) -> None:
        await _guarded(lambda: self._redis.ping())

    # -- scopes and guards --

    def _remember_scope(self, stream_id: str, scope: str) -> None:
        self._scopes[stream_id] = scope or self.scope
        self._scopes.move_to_end(stream_id)
        while len(self._scopes) > _SCOPES_REMEMBERED:
            self._scopes.popitem(last=False)

    async def _scope_of(self, stream_id: str) -> str:
        known = self._scopes.get(stream_id)
        if known is not None:
            return known
        stored = await self._redis.hget(self._keys.stream_meta(stream_id), "scope")
        scope = str(stored) if stored else self.scope
        self._remember_scope(stream_id, scope)
        return scope

    def _stream_keys(self, stream_id: str) -> list[str]:
        k = self._keys
        return [
            k.stream_meta(stream_id),
            k.stream_parts(stream_id),
            k.stream_lease(stream_id),
            k.stream_fence(stream_id),
        ]

    def _guard_args(self, stream_id: str, expiry: str = "0") -> list[Any]:
        claim = self._claims.get(stream_id)
        value, fence = (claim.value, str(claim.fence)) if claim else ("", "")
        return [value, fence, _ms(self._lease_ttl_s), expiry, iso(utc_now())]

    async def _run_guarded(self, stream_id: str, call: Callable[[], Awaitable[T]]) -> T:
        if stream_id in self._lost_claims:
            raise ClaimLost(f"another node holds stream {stream_id} now")
        try:
            return await call()
        except rex.ResponseError as exc:
            text = str(exc)
            if "TAILUP-LOST" in text:
                raise RecordLost(f"Redis lost the record of stream {stream_id}") from exc
            if "TAILUP-STALE" in text:
                self._drop_claim(stream_id)
                raise ClaimLost(f"another node holds stream {stream_id} now") from exc
            raise

    async def _index(
        self,
        stream_id: str,
        scope: str,
        state: StreamState,
        key: str,
        path: str,
        *,
        entries: Mapping[str, bool] | None = None,
    ) -> None:
        """Move the stream between its scope's indexes after a state write, and give its path
        entry and object claim the record's lifetime. ``entries``: keys to point at the stream
        first (True: only if no other stream has it, SET NX).

        One round trip: the commands were never one transaction (under Redis Cluster they live
        in other hash slots), only in this order, which a pipeline keeps on each connection.
        The scripts go as EVAL (Redis caches them by hash all the same): a pipeline of a
        RedisCluster cannot load a script an EVALSHA does not find."""
        idx = self._keys.scope(scope)
        async with self._redis.pipeline(transaction=False) as pipe:
            for name, only_new in (entries or {}).items():
                pipe.set(name, stream_id, nx=only_new)
            if state.is_resumable:
                pipe.sadd(idx.live, stream_id)
                pipe.zrem(idx.ended, stream_id)
                how = "persist"
            else:
                pipe.srem(idx.live, stream_id)
                pipe.zadd(idx.ended, {stream_id: time.time()})
                how = str(_ms(self._keep_records_s)) if self._keep_records_s > 0 else "persist"
            if path:
                pipe.eval(_IF_OWNED, 1, idx.path(path), stream_id, how)
            if key:
                pipe.eval(_IF_OWNED, 1, self._keys.object_claim(key), stream_id, how)
            await pipe.execute()

    # -- records --

    async def _write(
        self, record: StreamRecord, parts: Mapping[int, PartRecord], *, only_new: bool
    ) -> bool:
        sid, scope = record.stream_id, record.scope or self.scope
        if not record.scope:
            record = record.with_changes(scope=scope)
        meta = record.to_hash()
        expiry = _expiry_arg(record.state, self._keep_records_s)
        args: list[Any] = ["1" if only_new else "0", expiry if expiry != "-1" else "0", len(meta)]
        for name, value in meta.items():
            args += [name, value]
        for number, part in sorted(parts.items()):
            args += [number, part.to_json()]

        async def run() -> bool:
            keys = self._keys
            written = await self._write_record(
                keys=[keys.stream_meta(sid), keys.stream_parts(sid), keys.stream_fence(sid)],
                args=args,
            )
            if not written:
                return False
            self._remember_scope(sid, scope)
            entry = index_path(scope, record.path, record.watch_root)
            entries = {keys.scope(scope).path(entry): False}
            if record.key:
                entries[keys.object_claim(record.key)] = True
            await self._index(sid, scope, record.state, record.key, entry, entries=entries)
            return True

        return await _guarded(run)

    async def create(self, record: StreamRecord) -> None:
        await self._write(record, {}, only_new=False)

    async def create_new(self, record: StreamRecord) -> bool:
        return await self._write(record, {}, only_new=True)

    async def restore(self, record: StreamRecord, parts: Mapping[int, PartRecord]) -> None:
        await self._write(record, parts, only_new=False)

    async def load(self, stream_id: str) -> tuple[StreamRecord, dict[int, PartRecord]] | None:
        keys = self._keys
        reply = await _guarded(
            lambda: self._load(keys=[keys.stream_meta(stream_id), keys.stream_parts(stream_id)])
        )
        meta, raw_parts = _pairs(reply[0]), _pairs(reply[1])
        if not meta:
            return None
        try:
            record = StreamRecord.from_hash(meta)
            parts = {int(n): PartRecord.from_json(int(n), t) for n, t in raw_parts.items()}
        except (PartialRecord, ValueError, KeyError, TypeError) as exc:
            log.warning("partial stream record skipped", stream_id=stream_id, reason=str(exc))
            return None
        self._remember_scope(stream_id, record.scope)
        return record, parts

    async def load_records(self, stream_ids: Sequence[str]) -> list[StreamRecord]:
        if not stream_ids:
            return []

        async def run() -> list[dict[str, str]]:
            async with self._redis.pipeline(transaction=False) as pipe:
                for sid in stream_ids:
                    pipe.hgetall(self._keys.stream_meta(sid))
                return list(await pipe.execute())

        records = []
        for sid, meta in zip(stream_ids, await _guarded(run), strict=True):
            if not meta:
                continue
            try:
                records.append(StreamRecord.from_hash(meta))
            except PartialRecord as exc:
                log.warning("partial stream record skipped", stream_id=sid, reason=str(exc))
        return records

    async def update(self, stream_id: str, **fields: Any) -> None:
        pairs: list[str] = []
        for name, value in {"last_activity_at_utc": iso(utc_now()), **fields}.items():
            pairs += [name, encode_field(value)]
        state = fields.get("state")
        expiry = _expiry_arg(state, self._keep_records_s)

        async def run() -> None:
            key, path, root = await self._run_guarded(
                stream_id,
                lambda: self._update(
                    keys=self._stream_keys(stream_id),
                    args=[*self._guard_args(stream_id, expiry), *pairs],
                ),
            )
            scope = await self._scope_of(stream_id)
            entry = index_path(scope, str(path), str(root))
            if isinstance(state, StreamState):
                await self._index(stream_id, scope, state, str(key), entry)
            elif "path" in fields:
                await self._redis.set(self._keys.scope(scope).path(entry), stream_id)

        await _guarded(run)

    async def set_state(
        self,
        stream_id: str,
        state: StreamState,
        *,
        allowed_from: Collection[StreamState],
        **fields: Any,
    ) -> StreamState | None:
        pairs: list[str] = []
        for name, value in {"last_activity_at_utc": iso(utc_now()), **fields}.items():
            pairs += [name, encode_field(value)]
        allowed = [s.value for s in allowed_from]
        expiry = _expiry_arg(state, self._keep_records_s)

        async def run() -> StreamState | None:
            refused, key, path, root = await self._run_guarded(
                stream_id,
                lambda: self._set_state(
                    keys=self._stream_keys(stream_id),
                    args=[
                        *self._guard_args(stream_id, expiry),
                        state.value,
                        len(allowed),
                        *allowed,
                        *pairs,
                    ],
                ),
            )
            if refused:
                return StreamState(str(refused))
            scope = await self._scope_of(stream_id)
            entry = index_path(scope, str(path), str(root))
            await self._index(stream_id, scope, state, str(key), entry)
            return None

        return await _guarded(run)

    async def commit_part(self, stream_id: str, part: PartRecord) -> None:
        await _guarded(
            lambda: self._run_guarded(
                stream_id,
                lambda: self._commit(
                    keys=self._stream_keys(stream_id),
                    args=[*self._guard_args(stream_id), part.number, part.to_json()],
                ),
            )
        )

    async def drop_parts(self, stream_id: str, numbers: Iterable[int]) -> None:
        numbers = list(numbers)
        if not numbers:
            return
        await _guarded(
            lambda: self._run_guarded(
                stream_id,
                lambda: self._drop(
                    keys=self._stream_keys(stream_id),
                    args=[*self._guard_args(stream_id), *numbers],
                ),
            )
        )

    async def get_field(self, stream_id: str, name: str) -> str | None:
        value = await _guarded(lambda: self._redis.hget(self._keys.stream_meta(stream_id), name))
        return None if value is None else str(value)

    async def get_fields(self, stream_ids: Sequence[str], name: str) -> list[str | None]:
        if not stream_ids:
            return []

        async def run() -> list[Any]:
            async with self._redis.pipeline(transaction=False) as pipe:
                for sid in stream_ids:
                    pipe.hget(self._keys.stream_meta(sid), name)
                return list(await pipe.execute())

        return [None if value is None else str(value) for value in await _guarded(run)]

    # -- indexes --

    async def stream_for_path(self, path: str, scope: str | None = None) -> str | None:
        key = self._keys.scope(scope or self.scope).path(path)
        result = await _guarded(lambda: self._redis.get(key))
        return str(result) if result else None

    async def forget_path(self, path: str, stream_id: str, scope: str | None = None) -> None:
        key = self._keys.scope(scope or self.scope).path(path)
        await _guarded(lambda: self._if_owned(keys=[key], args=[stream_id, "del"]))

    async def reserve_key(self, object_key: str, stream_id: str) -> str | None:
        claim = self._keys.object_claim(object_key)

        async def run() -> str | None:
            # A lost SET NX means the GET finds the winner (a claim is only ever dropped by its
            # expiry, long after its stream ended).
            if await self._redis.set(claim, stream_id, nx=True):
                return None
            owner = await self._redis.get(claim)
            if owner is None:
                return await run()
            return None if owner == stream_id else str(owner)

        return await _guarded(run)

    async def next_key_number(self, object_key: str) -> int:
        counter = self._keys.key_counter(object_key)

        async def run() -> int:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.incr(counter)
                if self._keep_records_s > 0:
                    pipe.pexpire(counter, _ms(self._keep_records_s))
                number, *_ = await pipe.execute()
            return int(number)

        return await _guarded(run)

    async def live_stream_ids(self, scope: str | None = None) -> list[str]:
        live = self._keys.scope(scope or self.scope).live
        members = await _guarded(lambda: self._redis.smembers(live))
        return sorted(str(m) for m in members)

    async def ended_stream_ids(
        self, scope: str | None = None, *, limit: int = 100, offset: int = 0
    ) -> list[str]:
        ended = self._keys.scope(scope or self.scope).ended
        if limit <= 0:
            return []
        members = await _guarded(
            lambda: self._redis.zrevrange(ended, offset, offset + max(0, limit) - 1)
        )
        return [str(m) for m in members]

    async def count_ended(self, scope: str | None = None) -> int:
        ended = self._keys.scope(scope or self.scope).ended
        return int(await _guarded(lambda: self._redis.zcard(ended)))

    async def find_stream_ids(self, prefix: str, scope: str | None = None) -> list[str]:
        idx = self._keys.scope(scope or self.scope)
        pattern = _glob_escape(prefix) + "*"

        async def run() -> list[str]:
            found = {str(m) async for m in self._redis.sscan_iter(idx.live, match=pattern)}
            # ZSCAN walks the index in slices of _SCAN_COUNT on the server; an entry may come
            # twice while the index changes: the set keeps it once.
            async for member, _ in self._redis.zscan_iter(
                idx.ended, match=pattern, count=_SCAN_COUNT
            ):
                found.add(str(member))
            return sorted(found)

        return await _guarded(run)

    async def trim_ended(self, before_unix_s: float, scope: str | None = None) -> int:
        ended = self._keys.scope(scope or self.scope).ended
        return int(
            await _guarded(lambda: self._redis.zremrangebyscore(ended, "-inf", before_unix_s))
        )

    # -- leases --

    async def claim(self, stream_id: str, node_id: str, ttl_s: float) -> Claim | str:
        k = self._keys
        mine, value = await _guarded(
            lambda: self._claim(
                keys=[k.stream_lease(stream_id), k.stream_fence(stream_id)],
                args=[node_id, _ms(ttl_s)],
            )
        )
        if not int(mine):
            self._drop_claim(stream_id)
            return str(value)
        claim = Claim(str(value), int(str(value).rpartition("|")[2]))
        self._claims[stream_id] = claim
        self._lost_claims.discard(stream_id)
        return claim

    async def renew_claim(self, stream_id: str, ttl_s: float) -> RenewResult:
        claim = self._claims.get(stream_id)
        if claim is None:
            return RenewResult.TAKEN
        k = self._keys
        result = await _guarded(
            lambda: self._renew(
                keys=[k.stream_lease(stream_id), k.stream_fence(stream_id)],
                args=[claim.value, _ms(ttl_s), str(claim.fence)],
            )
        )
        if not int(result):
            self._drop_claim(stream_id)
        return _RENEWED[int(result)]

    async def release_claim(self, stream_id: str) -> None:
        claim = self._claims.pop(stream_id, None)
        if claim is not None:
            lease = self._keys.stream_lease(stream_id)
            await _guarded(lambda: self._release(keys=[lease], args=[claim.value]))

    def held_claims(self) -> list[str]:
        return list(self._claims)

    async def acquire_node(
        self, node_id: str, holder: str, ttl_s: float, *, replacing: str = ""
    ) -> str | None:
        lease = self._keys.node_lease(node_id)
        held = await _guarded(
            lambda: self._acquire_node(keys=[lease], args=[holder, _ms(ttl_s), replacing])
        )
        return str(held) if held else None

    async def renew_node(self, node_id: str, holder: str, ttl_s: float) -> RenewResult:
        lease = self._keys.node_lease(node_id)
        result = await _guarded(
            lambda: self._renew(keys=[lease, lease], args=[holder, _ms(ttl_s), ""])
        )
        return _RENEWED[int(result)]

    async def release_node(self, node_id: str, holder: str) -> None:
        lease = self._keys.node_lease(node_id)
        await _guarded(lambda: self._release(keys=[lease], args=[holder]))

    async def adopt_legacy(self, roots: Sequence[str]) -> int:
        return await _guarded(lambda: _adopt_legacy(self, roots))

    async def publish_node_info(self, node_id: str, info: Mapping[str, str], ttl_s: float) -> None:
        key = self._keys.node_info(node_id)

        async def run() -> None:
            await self._redis.hset(key, mapping=dict[Any, Any](info))
            await self._redis.pexpire(key, _ms(ttl_s))

        await _guarded(run)

    async def node_info(self, node_id: str) -> dict[str, str]:
        key = self._keys.node_info(node_id)
        found = await _guarded(lambda: self._redis.hgetall(key))
        return {str(k): str(v) for k, v in found.items()}


async def _adopt_legacy(store: RedisCheckpointStore, roots: Sequence[str]) -> int:
    client, keys = store.client, store.keys
    idx = keys.scope(store.scope)
    prefixes = tuple(r.rstrip("/") + "/" for r in roots)
    if not await client.exists(
        keys.legacy_live_streams,
        keys.legacy_paths,
        keys.legacy_all_streams,
        keys.legacy_object_keys,
    ):
        return 0
    taken = 0
    async for path, sid in client.hscan_iter(keys.legacy_paths, count=1000):
        if str(path).startswith(prefixes):
            await client.set(idx.path(str(path)), str(sid), nx=True)
            await client.hdel(keys.legacy_paths, path)
    async for object_key, sid in client.hscan_iter(keys.legacy_object_keys, count=1000):
        await client.set(keys.object_claim(str(object_key)), str(sid), nx=True)
        await client.hdel(keys.legacy_object_keys, object_key)
    async for sid, created in client.zscan_iter(keys.legacy_all_streams, count=1000):
        sid = str(sid)
        meta = await client.hmget(keys.stream_meta(sid), ["path", "state", "scope"])
        path, state, scope = (str(v) if v is not None else "" for v in meta)
        if not path.startswith(prefixes) or scope:
            continue
        await client.hset(keys.stream_meta(sid), mapping={"scope": store.scope})
        try:
            resumable = StreamState(state).is_resumable
        except ValueError:
            continue
        if resumable:
            await client.sadd(idx.live, sid)
        else:
            await client.zadd(idx.ended, {sid: float(created)})
        await client.srem(keys.legacy_live_streams, sid)
        await client.zrem(keys.legacy_all_streams, sid)
        taken += 1
    return taken


_RENEWED = {0: RenewResult.TAKEN, 1: RenewResult.RENEWED, 2: RenewResult.RESTORED}


def _pairs(flat: Any) -> dict[str, str]:
    """A HGETALL reply from a script (a flat list) as a dict."""
    if isinstance(flat, dict):
        return {str(k): str(v) for k, v in flat.items()}
    items = list(flat or [])
    return {str(items[i]): str(items[i + 1]) for i in range(0, len(items) - 1, 2)}


class MemoryCheckpointStore:
    """In-process store for unit tests of stream logic; the contract suite holds it to Redis's
    behaviour (expiry aside: records here never expire)."""

    def __init__(self, *, scope: str = "node:test") -> None:
        self.scope = scope
        self.meta: dict[str, dict[str, str]] = {}
        self.parts: dict[str, dict[int, PartRecord]] = {}
        self.lives: dict[str, set[str]] = {}
        self.ended: dict[str, dict[str, float]] = {}
        self.paths: dict[tuple[str, str], str] = {}
        self.object_keys: dict[str, str] = {}
        self.key_numbers: dict[str, int] = {}
        self.leases: dict[str, str] = {}  # stream id or "node:ID" -> holder
        self.fences: dict[str, int] = {}
        self._claims: dict[str, Claim] = {}
        self._lost_claims: set[str] = set()
        self.infos: dict[str, dict[str, str]] = {}
        self.available = True

    def _drop_claim(self, stream_id: str) -> None:
        if self._claims.pop(stream_id, None) is not None:
            self._lost_claims.add(stream_id)

    @property
    def live(self) -> set[str]:
        """The live set of the store's own scope."""
        return self.lives.setdefault(self.scope, set())

    def _check(self) -> None:
        if not self.available:
            raise CheckpointUnavailable("memory store marked unavailable")

    def _guard(self, stream_id: str) -> dict[str, str]:
        self._check()
        if stream_id in self._lost_claims:
            raise ClaimLost(f"another node holds stream {stream_id} now")
        meta = self.meta.get(stream_id)
        if meta is None:
            raise RecordLost(f"the record of stream {stream_id} is gone")
        claim = self._claims.get(stream_id)
        if claim is not None:
            held = self.leases.get(stream_id)
            if held != claim.value:
                if held is None and self.fences.get(stream_id) == claim.fence:
                    self.leases[stream_id] = claim.value
                else:
                    self._drop_claim(stream_id)
                    raise ClaimLost(f"another node holds stream {stream_id} now")
        return meta

    def _scope_of(self, stream_id: str) -> str:
        return self.meta.get(stream_id, {}).get("scope") or self.scope

    def _index(self, stream_id: str, state: StreamState) -> None:
        scope = self._scope_of(stream_id)
        if state.is_resumable:
            self.lives.setdefault(scope, set()).add(stream_id)
            self.ended.setdefault(scope, {}).pop(stream_id, None)
        else:
            self.lives.setdefault(scope, set()).discard(stream_id)
            self.ended.setdefault(scope, {})[stream_id] = time.time()

    async def ping(self) -> None:
        self._check()

    def _write(self, record: StreamRecord, parts: Mapping[int, PartRecord]) -> None:
        if not record.scope:
            record = record.with_changes(scope=self.scope)
        sid = record.stream_id
        self.meta[sid] = record.to_hash()
        self.parts[sid] = dict(parts)
        self.paths[(record.scope, index_path(record.scope, record.path, record.watch_root))] = sid
        if record.key:
            self.object_keys.setdefault(record.key, sid)
        self._index(sid, record.state)

    async def create(self, record: StreamRecord) -> None:
        self._check()
        self._write(record, {})

    async def create_new(self, record: StreamRecord) -> bool:
        self._check()
        existing = self.meta.get(record.stream_id, {})
        if existing.get("path") and existing.get("base_part_size"):
            return False
        self._write(record, {})
        return True

    async def restore(self, record: StreamRecord, parts: Mapping[int, PartRecord]) -> None:
        self._check()
        self._write(record, parts)

    async def load(self, stream_id: str) -> tuple[StreamRecord, dict[int, PartRecord]] | None:
        self._check()
        if stream_id not in self.meta:
            return None
        try:
            record = StreamRecord.from_hash(dict(self.meta[stream_id]))
        except PartialRecord:
            return None
        return record, dict(self.parts.get(stream_id, {}))

    async def load_records(self, stream_ids: Sequence[str]) -> list[StreamRecord]:
        self._check()
        out = []
        for sid in stream_ids:
            with contextlib.suppress(PartialRecord):
                if sid in self.meta:
                    out.append(StreamRecord.from_hash(dict(self.meta[sid])))
        return out

    async def update(self, stream_id: str, **fields: Any) -> None:
        meta = self._guard(stream_id)
        # Like Redis's update: every write refreshes it unless the caller gives it.
        for k, v in {"last_activity_at_utc": iso(utc_now()), **fields}.items():
            meta[k] = encode_field(v)
        state = fields.get("state")
        if isinstance(state, StreamState):
            self._index(stream_id, state)
        if "path" in fields:
            scope = self._scope_of(stream_id)
            entry = index_path(scope, str(fields["path"]), meta.get("watch_root", ""))
            self.paths[(scope, entry)] = stream_id

    def _derive(self, stream_id: str) -> None:
        parts = self.parts.setdefault(stream_id, {})
        self.meta[stream_id].update(
            next_part_to_upload=str(lowest_gap(set(parts))),
            total_bytes_sent=str(sum(p.size for p in parts.values())),
            last_activity_at_utc=iso(utc_now()),
        )

    async def set_state(
        self,
        stream_id: str,
        state: StreamState,
        *,
        allowed_from: Collection[StreamState],
        **fields: Any,
    ) -> StreamState | None:
        current = self._guard(stream_id).get("state")
        if current not in (None, state.value) and StreamState(current) not in allowed_from:
            return StreamState(current)
        await self.update(stream_id, state=state, **fields)
        return None

    async def commit_part(self, stream_id: str, part: PartRecord) -> None:
        self._guard(stream_id)
        self.parts.setdefault(stream_id, {})[part.number] = part
        self._derive(stream_id)

    async def drop_parts(self, stream_id: str, numbers: Iterable[int]) -> None:
        numbers = list(numbers)
        if not numbers:
            return
        self._guard(stream_id)
        for n in numbers:
            self.parts.get(stream_id, {}).pop(n, None)
        self._derive(stream_id)

    async def stream_for_path(self, path: str, scope: str | None = None) -> str | None:
        self._check()
        return self.paths.get((scope or self.scope, path))

    async def forget_path(self, path: str, stream_id: str, scope: str | None = None) -> None:
        self._check()
        entry = (scope or self.scope, path)
        if self.paths.get(entry) == stream_id:
            del self.paths[entry]

    async def reserve_key(self, object_key: str, stream_id: str) -> str | None:
        self._check()
        owner = self.object_keys.setdefault(object_key, stream_id)
        return None if owner == stream_id else owner

    async def next_key_number(self, object_key: str) -> int:
        self._check()
        self.key_numbers[object_key] = self.key_numbers.get(object_key, 0) + 1
        return self.key_numbers[object_key]

    async def get_field(self, stream_id: str, name: str) -> str | None:
        self._check()
        return self.meta.get(stream_id, {}).get(name)

    async def get_fields(self, stream_ids: Sequence[str], name: str) -> list[str | None]:
        self._check()
        return [self.meta.get(sid, {}).get(name) for sid in stream_ids]

    async def live_stream_ids(self, scope: str | None = None) -> list[str]:
        self._check()
        return sorted(self.lives.get(scope or self.scope, set()))

    async def ended_stream_ids(
        self, scope: str | None = None, *, limit: int = 100, offset: int = 0
    ) -> list[str]:
        self._check()
        ended = self.ended.get(scope or self.scope, {})
        newest = sorted(ended, key=lambda sid: ended[sid], reverse=True)
        return newest[offset : offset + max(0, limit)]

    async def count_ended(self, scope: str | None = None) -> int:
        self._check()
        return len(self.ended.get(scope or self.scope, {}))

    async def find_stream_ids(self, prefix: str, scope: str | None = None) -> list[str]:
        self._check()
        scope = scope or self.scope
        ids = self.lives.get(scope, set()) | set(self.ended.get(scope, {}))
        return sorted(sid for sid in ids if sid.startswith(prefix))

    async def trim_ended(self, before_unix_s: float, scope: str | None = None) -> int:
        self._check()
        ended = self.ended.get(scope or self.scope, {})
        old = [sid for sid, at in ended.items() if at < before_unix_s]
        for sid in old:
            del ended[sid]
        return len(old)

    async def claim(self, stream_id: str, node_id: str, ttl_s: float) -> Claim | str:
        self._check()
        held = self.leases.get(stream_id)
        if held is not None and not held.startswith(node_id + "|"):
            self._drop_claim(stream_id)
            return held
        if held is None:
            self.fences[stream_id] = self.fences.get(stream_id, 0) + 1
            held = f"{node_id}|{self.fences[stream_id]}"
            self.leases[stream_id] = held
        claim = Claim(held, int(held.rpartition("|")[2]))
        self._claims[stream_id] = claim
        self._lost_claims.discard(stream_id)
        return claim

    async def renew_claim(self, stream_id: str, ttl_s: float) -> RenewResult:
        self._check()
        claim = self._claims.get(stream_id)
        if claim is None:
            return RenewResult.TAKEN
        held = self.leases.get(stream_id)
        if held == claim.value:
            return RenewResult.RENEWED
        if held is None and self.fences.get(stream_id) == claim.fence:
            self.leases[stream_id] = claim.value
            return RenewResult.RESTORED
        self._drop_claim(stream_id)
        return RenewResult.TAKEN

    async def release_claim(self, stream_id: str) -> None:
        self._check()
        claim = self._claims.pop(stream_id, None)
        if claim is not None and self.leases.get(stream_id) == claim.value:
            del self.leases[stream_id]

    def held_claims(self) -> list[str]:
        return list(self._claims)

    async def acquire_node(
        self, node_id: str, holder: str, ttl_s: float, *, replacing: str = ""
    ) -> str | None:
        self._check()
        lease = "node:" + node_id
        held = self.leases.get(lease)
        if held is not None and held not in (holder, replacing):
            return held
        self.leases[lease] = holder
        return None

    async def renew_node(self, node_id: str, holder: str, ttl_s: float) -> RenewResult:
        self._check()
        lease = "node:" + node_id
        held = self.leases.get(lease)
        if held == holder:
            return RenewResult.RENEWED
        if held is None:
            self.leases[lease] = holder
            return RenewResult.RESTORED
        return RenewResult.TAKEN

    async def adopt_legacy(self, roots: Sequence[str]) -> int:
        self._check()
        return 0

    async def publish_node_info(self, node_id: str, info: Mapping[str, str], ttl_s: float) -> None:
        self._check()
        self.infos[node_id] = dict(info)

    async def node_info(self, node_id: str) -> dict[str, str]:
        self._check()
        return dict(self.infos.get(node_id, {}))

    async def release_node(self, node_id: str, holder: str) -> None:
        self._check()
        if self.leases.get("node:" + node_id) == holder:
            del self.leases["node:" + node_id]
