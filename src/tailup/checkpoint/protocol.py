"""What every checkpoint store offers (the CheckpointStore protocol) and the values it returns."""

from __future__ import annotations

import enum
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from tailup.model import PartRecord, StreamRecord, StreamState


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

    async def release_key(self, object_key: str, stream_id: str) -> None:
        """Give up a key reserved for the stream, if the stream still holds it: one it will
        not use (S3 holds an object there), or the key of a record that ended with nothing in
        S3 there (tailup.rules.keyclaims); no later write of that record claims it again, only
        a record written whole (create) claims a free key it names. A key the record names is
        let go by the update that names another."""

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
        at once rather than after the TTL. A lease already lost is forgotten."""

    def held_claims(self) -> list[str]: ...

    def lost_claims(self) -> list[str]:
        """Streams whose claim another node took from this one, until release_claim says this
        node is done with them: each write of them is refused meanwhile."""

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
