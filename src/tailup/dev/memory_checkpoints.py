"""In-process checkpoint store for fast tests of stream logic. The contract suite in
tests/integration/test_store_contracts.py holds it to the Redis store's behaviour, lifetimes
included: each entry it keeps has the deadline Redis would give its key (nothing is dropped at
the deadline: no test here runs that long)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from tailup.checkpoint.protocol import Claim
from tailup.dev.memory_leases import MemoryLeases
from tailup.errors import CheckpointUnavailable, ClaimLost, RecordLost
from tailup.keys import index_path
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


class MemoryCheckpointStore(MemoryLeases):
    """In-process store for unit tests of stream logic; the contract suite holds it to Redis's
    behaviour. ``keep_records_s``: --keep-records (0: ended records are kept forever)."""

    def __init__(self, *, scope: str = "node:test", keep_records_s: float = 0.0) -> None:
        self.scope = scope
        self.keep_records_s = keep_records_s
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
        # Unix s at which each entry would expire, by name ("meta ID", "parts ID", "fence ID",
        # "path SCOPE ENTRY", "claim KEY", "counter KEY", "ended SCOPE"); one not here is kept
        # forever, as a Redis key with no TTL.
        self.expires_at: dict[str, float] = {}
        self.available = True

    # -- lifetimes: Redis's TTLs, as deadlines --

    def _until(self, entry: str, deadline: float | None) -> None:
        if deadline is None:
            self.expires_at.pop(entry, None)
        else:
            self.expires_at[entry] = deadline

    def _ended_deadline(self) -> float | None:
        """When an entry of a record that ends now expires (None: --keep-records 0)."""
        return time.time() + self.keep_records_s if self.keep_records_s > 0 else None

    def _record_deadline(self, stream_id: str) -> float | None:
        return self.expires_at.get(f"meta {stream_id}")

    def _path_entry(self, stream_id: str) -> tuple[str, str]:
        meta = self.meta[stream_id]
        scope = self._scope_of(stream_id)
        return scope, index_path(scope, meta.get("path", ""), meta.get("watch_root", ""))

    def _live_for(self, stream_id: str, state: StreamState) -> None:
        """A state write: the record, its parts, fence, path entry and key claim are kept while
        it is resumable and expire after --keep-records once it ends (Redis's scripts and
        ScopeIndexes.index)."""
        deadline = None if state.is_resumable else self._ended_deadline()
        for kind in ("meta", "parts", "fence"):
            self._until(f"{kind} {stream_id}", deadline)
        scope, entry = self._path_entry(stream_id)
        if self.paths.get((scope, entry)) == stream_id:
            self._until(f"path {scope} {entry}", deadline)
        key = self.meta[stream_id].get("key", "")
        if key and self.object_keys.get(key) == stream_id:
            self._until(f"claim {key}", deadline)
        if not state.is_resumable:
            self._until(f"ended {scope}", deadline)

    def _fence_written(self, stream_id: str) -> None:
        if (deadline := self._record_deadline(stream_id)) is not None:
            self._until(f"fence {stream_id}", deadline)

    def kept_forever(self) -> list[str]:
        """Every entry with no deadline (a key Redis would keep with no TTL), by name."""
        names = [f"meta {sid}" for sid in self.meta]
        names += [f"parts {sid}" for sid, parts in self.parts.items() if parts]
        names += [f"fence {sid}" for sid in self.fences]
        names += [f"path {scope} {entry}" for scope, entry in self.paths]
        names += [f"claim {key}" for key in self.object_keys]
        names += [f"counter {key}" for key in self.key_numbers]
        names += [f"live {scope}" for scope, live in self.lives.items() if live]
        names += [f"ended {scope}" for scope, ended in self.ended.items() if ended]
        return sorted(name for name in names if name not in self.expires_at)

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
        self._live_for(sid, record.state)

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
        key_before = meta.get("key", "")
        # Like Redis's update: every write refreshes it unless the caller gives it.
        for k, v in {"last_activity_at_utc": iso(utc_now()), **fields}.items():
            meta[k] = encode_field(v)
        if "path" in fields:
            scope, entry = self._path_entry(stream_id)
            self.paths[(scope, entry)] = stream_id
            self._until(f"path {scope} {entry}", self._record_deadline(stream_id))
        key = meta.get("key", "")
        if "key" in fields and key and self.object_keys.get(key) == stream_id:
            self._until(f"claim {key}", self._record_deadline(stream_id))
        state = fields.get("state")
        if isinstance(state, StreamState):
            self._index(stream_id, state)
            self._live_for(stream_id, state)
        if key_before and key_before != key:
            await self.release_key(key_before, stream_id)

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
        if (deadline := self._record_deadline(stream_id)) is not None:
            self._until(f"parts {stream_id}", deadline)
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
            self._until(f"path {entry[0]} {path}", None)

    async def reserve_key(self, object_key: str, stream_id: str) -> str | None:
        self._check()
        if object_key not in self.object_keys:
            self.object_keys[object_key] = stream_id
            self._until(f"claim {object_key}", self._ended_deadline())
        owner = self.object_keys[object_key]
        return None if owner == stream_id else owner

    async def release_key(self, object_key: str, stream_id: str) -> None:
        self._check()
        if self.object_keys.get(object_key) == stream_id:
            del self.object_keys[object_key]
            self._until(f"claim {object_key}", None)

    async def next_key_number(self, object_key: str) -> int:
        self._check()
        self.key_numbers[object_key] = self.key_numbers.get(object_key, 0) + 1
        if (deadline := self._ended_deadline()) is not None:
            self._until(f"counter {object_key}", deadline)
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

    async def adopt_legacy(self, roots: Sequence[str]) -> int:
        self._check()
        return 0
