"""The Lua scripts behind the Redis checkpoint store, and the expiry rule they apply: the
atomicity and fencing contract, readable on its own.

A part's checkpoint (its record, next part, bytes sent, last activity) is one script on keys that
share the stream's hash tag, so it is atomic also under Redis Cluster. Every script that writes a
stream first refuses to write a record Redis lost (``TAILUP-LOST``: RecordLost) or one whose lease
another node took (``TAILUP-STALE``: ClaimLost), so a node presumed dead never writes over the one
that took over. The index keys of a scope (tailup.keys) live in other slots and are written after
these scripts, by the store (tailup.checkpoint.index).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis

from tailup.checkpoint.protocol import RenewResult
from tailup.keys import RedisKeys
from tailup.model import StreamState

if TYPE_CHECKING:
    from redis.commands.core import AsyncScript

# Every script that writes a stream checks first that its record exists (else Redis lost it: a
# write would half rebuild it) and, for a shared folder's recording, that this node still holds
# its lease (fencing: a node presumed dead must never write over the one that took over). A lease
# that vanished while the fence is unchanged (Redis restarted, or this node was slow to renew) is
# taken back: nobody else took it in between.
# KEYS: meta, parts, lease, fence. ARGV[1]: the lease value held ('' = no lease), ARGV[2]: its
# fence, ARGV[3]: lease TTL (ms), ARGV[4]: what to do with the record's expiry ('0' nothing,
# '-1' persist, else a TTL in ms), ARGV[5]: now. The script's own arguments follow.
GUARD = """
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
-- A key the script creates (the parts of a record that had none) expires with the record: a
-- part committed just after a `tailup abort` ended it must not outlive it.
local function follow(key)
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl > 0 then redis.call('PEXPIRE', key, ttl) end
end
"""
GUARD_ARGS = 5

# Atomic part commit: the parts hash and the meta fields derived from it change together, inside
# one script, so concurrent commits of out-of-order parts can never leave them inconsistent.
DERIVE_COUNTERS = """
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
COMMIT_PART = (
    GUARD
    + """
local old = redis.call('HGET', KEYS[2], ARGV[6])
local delta = cjson.decode(ARGV[7])['size']
if old then delta = delta - cjson.decode(old)['size'] end
redis.call('HSET', KEYS[2], ARGV[6], ARGV[7])
follow(KEYS[2])
redis.call('HINCRBY', KEYS[1], 'total_bytes_sent', delta)
local nxt = tonumber(redis.call('HGET', KEYS[1], 'next_part_to_upload') or '1')
while redis.call('HEXISTS', KEYS[2], nxt) == 1 do nxt = nxt + 1 end
redis.call('HSET', KEYS[1], 'next_part_to_upload', nxt, 'last_activity_at_utc', ARGV[5])
return nxt
"""
)
# ARGV[6..]: field pairs. Returns {key, path, watch root, the record's PTTL, the key before}: the
# store gives a new path entry or key claim the record's lifetime, and releases a replaced key.
UPDATE = (
    GUARD
    + """
local before = redis.call('HGET', KEYS[1], 'key') or ''
redis.call('HSET', KEYS[1], unpack(ARGV, 6))
expiry()
return {redis.call('HGET', KEYS[1], 'key') or '', redis.call('HGET', KEYS[1], 'path') or '',
        redis.call('HGET', KEYS[1], 'watch_root') or '', redis.call('PTTL', KEYS[1]), before}
"""
)
# A state change that a `tailup abort` (or any state outside the allowed ones) wins over.
# ARGV[6] is the new state, ARGV[7] the number of allowed current states, then those states,
# then field pairs. Returns {refused state or '', key, path}.
SET_STATE = (
    GUARD
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
DROP_PARTS = (
    GUARD + "for i = 6, #ARGV do redis.call('HDEL', KEYS[2], ARGV[i]) end" + DERIVE_COUNTERS
)
# KEYS: meta, parts, fence. ARGV[1]: '1' only if no record exists yet, ARGV[2]: the expiry ('0'
# none, else a TTL in ms), ARGV[3]: number of meta field pairs, then the pairs, then part
# number/JSON pairs. Returns 0 when a record was there already.
WRITE_RECORD = """
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
LOAD = "return {redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2])}"
# KEYS[1]: a path entry (or an object claim). ARGV[1]: stream id, ARGV[2]: 'del', 'persist' or
# a TTL in ms. Only an entry that still names the stream is touched.
IF_OWNED = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == 'del' then return redis.call('DEL', KEYS[1]) end
if ARGV[2] == 'persist' then return redis.call('PERSIST', KEYS[1]) end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
"""
# Claims of a shared recording. KEYS: lease, fence, meta. ARGV[1]: node id, ARGV[2]: TTL (ms).
# Returns {1, value} when this node holds it now, {0, value} for another live holder. A fence
# the claim creates expires with the record (one that ended just before it was claimed).
CLAIM = """
local held = redis.call('GET', KEYS[1])
if held then
  if string.sub(held, 1, #ARGV[1] + 1) == ARGV[1] .. '|' then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return {1, held}
  end
  return {0, held}
end
local value = ARGV[1] .. '|' .. redis.call('INCR', KEYS[2])
local ttl = redis.call('PTTL', KEYS[3])
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
redis.call('SET', KEYS[1], value, 'PX', ARGV[2])
return {1, value}
"""
# Renewing a lease (a claim: KEYS lease, fence; a node lease: KEYS lease only). ARGV[1]: the
# value held, ARGV[2]: TTL (ms), ARGV[3]: the fence ('' for a node lease). 1 renewed, 2 taken back
# after it vanished, 0 another holder has it.
RENEW = """
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
ACQUIRE_NODE = """
local held = redis.call('GET', KEYS[1])
if held and held ~= ARGV[1] and held ~= ARGV[3] then return held end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ''
"""
RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end"

# What RENEW answers.
RENEWED = {0: RenewResult.TAKEN, 1: RenewResult.RENEWED, 2: RenewResult.RESTORED}


def guard_keys(keys: RedisKeys, stream_id: str) -> list[str]:
    """GUARD's KEYS for a stream: meta, parts, lease, fence (one hash tag: one slot)."""
    return [
        keys.stream_meta(stream_id),
        keys.stream_parts(stream_id),
        keys.stream_lease(stream_id),
        keys.stream_fence(stream_id),
    ]


def ms(seconds: float) -> int:
    """A duration as Redis's milliseconds, never 0 (which PX and PEXPIRE refuse)."""
    return max(1, int(seconds * 1000))


def expiry_arg(state: object, keep_records_s: float) -> str:
    """What a write of ``state`` does to the record's expiry (GUARD's ARGV[4]): a live stream's
    record is kept ('-1': persist), an ended one expires after --keep-records (0: kept
    forever); '0' leaves the expiry alone (the write changes no state)."""
    if not isinstance(state, StreamState):
        return "0"
    if state.is_resumable:
        return "-1"
    return str(ms(keep_records_s)) if keep_records_s > 0 else "0"


def pairs(flat: Any) -> dict[str, str]:
    """A HGETALL reply from a script (a flat list) as a dict."""
    if isinstance(flat, dict):
        return {str(k): str(v) for k, v in flat.items()}
    items = list(flat or [])
    return {str(items[i]): str(items[i + 1]) for i in range(0, len(items) - 1, 2)}


@dataclass(frozen=True, slots=True)
class Scripts:
    """Every script, registered on one client (EVALSHA, loaded again when Redis lost it)."""

    commit_part: AsyncScript
    drop_parts: AsyncScript
    update: AsyncScript
    set_state: AsyncScript
    write_record: AsyncScript
    load: AsyncScript
    if_owned: AsyncScript
    claim: AsyncScript
    renew: AsyncScript
    acquire_node: AsyncScript
    release: AsyncScript

    @classmethod
    def register(cls, client: aioredis.Redis) -> Scripts:
        return cls(
            commit_part=client.register_script(COMMIT_PART),
            drop_parts=client.register_script(DROP_PARTS),
            update=client.register_script(UPDATE),
            set_state=client.register_script(SET_STATE),
            write_record=client.register_script(WRITE_RECORD),
            load=client.register_script(LOAD),
            if_owned=client.register_script(IF_OWNED),
            claim=client.register_script(CLAIM),
            renew=client.register_script(RENEW),
            acquire_node=client.register_script(ACQUIRE_NODE),
            release=client.register_script(RELEASE),
        )
