"""The checkpoint store: stream records and acknowledged parts, in Redis.

- protocol.py: the CheckpointStore protocol every store follows, and its values (Claim,
  RenewResult).
- scripts.py: the Lua scripts and the expiry rule, the atomicity and fencing contract: a part's
  checkpoint (its record, next part, bytes sent, last activity) is one script on keys that share
  the stream's hash tag, atomic also under Redis Cluster; the same scripts refuse to write a
  record Redis lost (RecordLost) or one whose lease another node took (ClaimLost).
- redis_store.py: RedisCheckpointStore, which writes records with those scripts and delegates to
  index.py (the scope's live set, ended index and path entries, and object-key claims, written
  after the record: a crash in between leaves at worst an index entry without a stream, ignored,
  or a stream missing from the live set, which the path entry still finds), claims.py (the
  claims of shared recordings, node leases) and legacy.py (the index of tailup before nodes).
- redis_errors.py: Redis's errors as tailup's CheckpointUnavailable and CheckpointRefused.

Ended records expire after --keep-records; S3 answers for them after that (tailup.recovery). The
in-memory store for tests is tailup.dev.MemoryCheckpointStore.
"""

from tailup.checkpoint.protocol import CheckpointStore, Claim, RenewResult
from tailup.checkpoint.redis_errors import translate_redis_error
from tailup.checkpoint.redis_store import RedisCheckpointStore

__all__ = [
    "CheckpointStore",
    "Claim",
    "RedisCheckpointStore",
    "RenewResult",
    "translate_redis_error",
]
