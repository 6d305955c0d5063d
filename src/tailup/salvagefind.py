"""`tailup salvage`: which uploads to salvage, and the node leases that make it safe.

- ``--node NODE``: every live (or failed) record of the node's own folders with an upload;
- ``STREAM...``: those streams (an id, a unique prefix or a path, as `status` names them);
- ``--from-s3``: every open upload under --prefix with an upload card (tailup.uploadcard) naming
  it, quiet for at least --older-than (its last part's time): Redis is gone, or has no record.

A node whose lease is held has a daemon that may be alive (or died less than --lease-ttl ago):
its uploads are not salvaged, since it would go on sending parts of an upload completed under
it. While salvage works it holds the lease itself, so that a daemon of the node starting then
waits for it. The work on each upload is tailup.salvage.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime

import structlog

from tailup.checkpoint import CheckpointStore, RedisCheckpointStore
from tailup.config import Settings
from tailup.errors import (
    AccessRefused,
    PermanentError,
    RetryableError,
    StoragePermanentError,
    TailupError,
)
from tailup.hygiene import describe_age
from tailup.keys import node_scope
from tailup.model import SALVAGEABLE_STATES, StreamState
from tailup.nodelease import Holder, this_process
from tailup.s3 import MultipartStore, S3MultipartStore
from tailup.salvage import Candidate, Row, Salvager
from tailup.status import share_roots, status_scopes
from tailup.streamref import find_stream, short_id
from tailup.uploadcard import card_key, decode_card

log = structlog.get_logger("tailup.salvage")


@dataclass(frozen=True, slots=True)
class Request:
    node: str | None = None
    streams: tuple[str, ...] = ()
    from_s3: bool = False
    prefixes: tuple[str, ...] = ("",)  # --from-s3 lists the uploads under each
    older_than_s: float = 0.0
    dry_run: bool = False


class NodeAlive(PermanentError):
    """A node's lease is held: its daemon may be alive."""


class Leases:
    """The node leases salvage holds while it works (released at the end)."""

    def __init__(self, checkpoints: CheckpointStore, ttl_s: float) -> None:
        self._checkpoints = checkpoints
        self._ttl_s = ttl_s
        self._holder = this_process().encode()
        self._held: dict[str, str] = {}  # node -> "" (held) or why not

    async def take(self, node: str) -> str:
        """ "" once the node's lease is salvage's, else why it is not to be salvaged."""
        if node in self._held:
            if not self._held[node]:
                await self._checkpoints.renew_node(node, self._holder, self._ttl_s)
            return self._held[node]
        holder = await self._checkpoints.acquire_node(node, self._holder, self._ttl_s)
        why = ""
        if holder is not None:
            who = Holder.decode(holder)
            shown = who.describe() if who else repr(holder)
            why = (
                f"node {node}'s lease is held ({shown}): its daemon is alive, or died less than "
                f"--lease-ttl ({self._ttl_s:g} s) ago; salvage it once the lease expired"
            )
        self._held[node] = why
        return why

    async def release(self) -> None:
        for node, why in self._held.items():
            if not why:
                with contextlib.suppress(TailupError):
                    await self._checkpoints.release_node(node, self._holder)


async def salvage(settings: Settings, request: Request, now: datetime) -> list[Row]:
    async with (
        _redis(settings, required=not request.from_s3) as checkpoints,
        S3MultipartStore.connect(
            settings.bucket, endpoint_url=settings.endpoint_url, region=settings.region
        ) as store,
    ):
        return await salvage_with(settings, request, now, store, checkpoints)


async def salvage_with(
    settings: Settings,
    request: Request,
    now: datetime,
    store: MultipartStore,
    checkpoints: CheckpointStore | None,
) -> list[Row]:
    """``request`` on these stores (a daemon's own, for --salvage-after), the node leases held
    while it works."""
    leases = Leases(checkpoints, settings.lease_ttl) if checkpoints else None
    try:
        return await _salvage(settings, request, now, store, checkpoints, leases)
    finally:
        if leases is not None:
            await leases.release()


async def _salvage(
    settings: Settings,
    request: Request,
    now: datetime,
    store: MultipartStore,
    checkpoints: CheckpointStore | None,
    leases: Leases | None,
) -> list[Row]:
    salvager = Salvager(
        store,
        checkpoints,
        now=now,
        dry_run=request.dry_run,
        older_than_s=request.older_than_s if request.from_s3 else 0.0,
    )
    if request.node is not None and not request.streams and leases is not None:
        why = await leases.take(request.node)
        if why:
            raise NodeAlive(why)
    if request.from_s3:
        found, rows = await from_s3(store, checkpoints, request.prefixes)
    else:
        assert checkpoints is not None
        found, rows = await from_redis(settings, checkpoints, request)
    for candidate in found:
        record = candidate.record
        why = await leases.take(record.owner) if leases is not None and record.owner else ""
        if why:
            if request.node is not None:
                raise NodeAlive(why)
            rows.append(Row(record.stream_id, record.key, "skipped", why=why))
            continue
        try:
            rows.append(await salvager.salvage(candidate))
        except TailupError as exc:
            rows.append(Row(record.stream_id, record.key, "failed", why=str(exc)))
    return rows


@contextlib.asynccontextmanager
async def _redis(settings: Settings, *, required: bool) -> AsyncIterator[CheckpointStore | None]:
    """Redis, or (``required`` False: --from-s3) None when it does not answer: salvage goes on
    from S3 alone, without the node leases."""
    async with RedisCheckpointStore.for_settings(settings) as checkpoints:
        try:
            await checkpoints.ping()
        except RetryableError as exc:
            if required:
                raise
            log.warning(
                "Redis does not answer: salvaging from S3 alone, without the node leases "
                "(--older-than keeps away from uploads still sent to)",
                reason=str(exc),
            )
            yield None
            return
        yield checkpoints


async def from_redis(
    settings: Settings, checkpoints: CheckpointStore, request: Request
) -> tuple[list[Candidate], list[Row]]:
    """The records named (every live one of --node, or the STREAMs), with their parts."""
    rows: list[Row] = []
    if request.streams:
        scopes = status_scopes(settings, request.node)
        records = [
            await find_stream(checkpoints, given, scopes, share_roots(settings))
            for given in request.streams
        ]
    else:
        assert request.node is not None
        scope = node_scope(request.node)
        records = await checkpoints.load_records(await checkpoints.live_stream_ids(scope))
    found: list[Candidate] = []
    for record in records:
        row = Row(record.stream_id, record.key, "skipped")
        if record.state is StreamState.SALVAGED:
            row.why = "salvaged already"
        elif record.state not in SALVAGEABLE_STATES:
            row.why = f"its recording is {record.state.value}: nothing to salvage"
        elif not record.upload_id:
            row.why = "no multipart upload: nothing of it in S3 yet"
        else:
            loaded = await checkpoints.load(record.stream_id)
            if loaded is not None:
                found.append(Candidate(loaded[0], loaded[1]))
                continue
            row.why = "its record vanished meanwhile"
        rows.append(row)
    return found, rows


async def from_s3(
    store: MultipartStore, checkpoints: CheckpointStore | None, prefixes: Sequence[str]
) -> tuple[list[Candidate], list[Row]]:
    """Every open upload under ``prefixes`` (none inside another) whose card names it (others'
    uploads are left alone, not even listed). Redis's parts, where it still has the record, are
    hints."""
    found: list[Candidate] = []
    rows: list[Row] = []
    uploads = [u for prefix in prefixes for u in await store.list_uploads(prefix)]
    for upload in sorted(uploads, key=lambda u: (u.key, u.initiated)):
        if upload.key.endswith(".upload.json"):
            continue
        try:
            data = await store.get_object(card_key(upload.key))
        except AccessRefused:
            raise  # without s3:GetObject no card can be read: said, not taken for "none"
        except StoragePermanentError:
            continue  # no card: not tailup's (or its card could not be written)
        record, why = decode_card(data, key=upload.key, upload_id=upload.upload_id)
        if record is None:
            if "another upload" in why:
                rows.append(
                    Row("?", upload.key, "skipped", why=f"upload {upload.upload_id}: {why}")
                )
            continue
        loaded = await checkpoints.load(record.stream_id) if checkpoints is not None else None
        if loaded is not None and loaded[0].upload_id == upload.upload_id:
            if loaded[0].state is StreamState.SALVAGED:
                rows.append(Row(record.stream_id, record.key, "skipped", why="salvaged already"))
                continue
            found.append(Candidate(loaded[0], loaded[1], upload.initiated))
        else:
            found.append(Candidate(record, {}, upload.initiated, from_card=True))
    return found, rows


def format_rows(rows: Sequence[Row]) -> list[str]:
    """The report: a table (stream, key, parts used/held, bytes, quiet for, outcome), then why
    for each row that has a reason."""
    header = ("STREAM", "KEY", "PARTS", "BYTES", "AGE", "OUTCOME")
    table = [
        (
            short_id(r.stream_id),
            r.key,
            r.parts or "-",
            str(r.size_bytes) if r.parts else "-",
            _age(r.age_s),
            r.outcome,
        )
        for r in rows
    ]
    widths = [max(len(str(c)) for c in column) for column in zip(header, *table, strict=True)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
        for line in (header, *table)
    ]
    lines += [f"{short_id(r.stream_id)}: {r.why}" for r in rows if r.why]
    return lines


def _age(seconds: float | None) -> str:
    return "-" if seconds is None else describe_age(seconds)
