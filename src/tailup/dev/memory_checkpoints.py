"""In-process checkpoint store for fast tests of stream logic. The contract suite in
tests/integration/test_store_contracts.py holds it to the Redis store's behaviour."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from tailup.checkpoint.protocol import Claim, RenewResult
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
