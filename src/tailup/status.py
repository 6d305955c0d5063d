"""`tailup status`, `tailup abort` and `tailup retry`: read and change stream records from
outside the daemon (how status shows them: tailup.statusview).

Redis is the source of truth, so status works from any host that reaches it, daemon running or
not. The file's current size comes from the local file system when the file is visible here.
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import threading
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from tailup.checkpoint import CheckpointStore, RedisCheckpointStore
from tailup.config import Settings
from tailup.errors import SourceStalled, TailupError
from tailup.keys import node_scope, share_scope
from tailup.model import (
    RESUMABLE_STATES,
    RETRY_FIELD,
    EndCause,
    PartRecord,
    StreamRecord,
    StreamState,
    iso,
    parse_iso,
    utc_now,
)
from tailup.offload import run_blocking
from tailup.selection import ALL_PAGE, LOAD_CHUNK, Selection, Tally, summary_lines
from tailup.streamref import find_stream, short_id

if TYPE_CHECKING:
    from tailup.s3 import MultipartStore


def _file_size(path: str) -> int | None:
    try:
        return os.stat(path).st_size
    except OSError:
        return None


class SizeProbe:
    """The current size of each row's file, off the event loop and with a deadline: a stat on a
    hung network mount blocks in the kernel for as long as the mount is gone. One batch at a
    time: while a batch is stuck, later ones report every size as unknown (``None``, as for a
    file not visible here) instead of parking one more thread each."""

    def __init__(self, timeout_s: float = 5.0) -> None:
        self.timeout_s = timeout_s
        self._running: threading.Event | None = None
        self.stalled = False  # the last batch did not finish in time (sizes missing)

    async def sizes(self, paths: Sequence[str]) -> dict[str, int | None]:
        if not paths:
            return {}
        if self._running is not None and not self._running.is_set():
            self.stalled = True
            return dict.fromkeys(paths)
        done = threading.Event()
        found: dict[str, int | None] = {}

        def stat_all() -> None:
            try:
                for path in paths:
                    found[path] = _file_size(path)
            finally:
                done.set()

        self._running = done
        try:
            await run_blocking(stat_all, timeout_s=self.timeout_s, what="a stat of a recording")
        except SourceStalled:
            self.stalled = True
            return {path: found.get(path) for path in paths}
        self.stalled = False
        return found


def _seconds_between(start: str, end: datetime) -> float | None:
    began = parse_iso(start)
    return (end - began).total_seconds() if began else None


def _average_rate(record: StreamRecord, uploaded: int, now: datetime) -> float | None:
    """Bytes per second over the stream's life: to now while live, to completion after."""
    if record.state is StreamState.COMPLETED:
        end = parse_iso(record.completed_at)
    elif record.state.is_live:
        end = now
    else:
        return None
    seconds = _seconds_between(record.created_at, end) if end else None
    return round(uploaded / seconds, 1) if seconds and seconds > 0 else None


class _Stat(enum.Enum):
    HERE = "stat the file here"


STAT_HERE: Final = _Stat.HERE


def status_row(
    record: StreamRecord,
    parts: Mapping[int, PartRecord] | None = None,
    now: datetime | None = None,
    *,
    file_size: int | _Stat | None = STAT_HERE,
) -> dict[str, Any]:
    """One stream as `tailup status --json` and /streams show it. Without ``parts`` (the table
    reads records only) the part count is the parts below the first gap, every part there is
    acknowledged (``next_part_to_upload - 1``); ``file_size`` given: not stat'ed here (None:
    not visible)."""
    now = now or utc_now()
    completed = record.state is StreamState.COMPLETED
    # A salvaged recording's object is the prefix S3 held (final_size), not what was sent.
    ended_whole = completed or record.state is StreamState.SALVAGED
    uploaded = record.final_size if ended_whole else record.total_bytes_sent
    size = _file_size(record.path) if file_size is STAT_HERE else file_size
    lag = max(0, size - uploaded) if size is not None and record.state.is_live else None
    count = len(parts) if parts is not None else max(0, record.next_part_to_upload - 1)
    return {
        "stream_id": record.stream_id,
        "path": record.path,
        "state": record.state.value,
        "bytes_uploaded": uploaded,
        "file_size": size,
        "lag_bytes": lag,
        "rate_bytes_per_s": _average_rate(record, uploaded, now),
        # A file that fits in one part goes up in one PUT and records no parts: one request.
        "parts": count or (1 if completed and uploaded > 0 else 0),
        "bucket": record.bucket,
        "key": record.key,
        "generation": record.generation,
        "last_activity": record.last_activity_at_utc,
        "created_at": record.created_at,
        "completed_at": record.completed_at or None,
        "sha256": record.sha256 or None,
        "error": record.error or None,
        "note": record.note or None,
        "scope": record.scope or None,
    }


# -- which records --


def status_scopes(settings: Settings, node: str | None = None) -> list[str]:
    """The scopes `tailup status` lists: the node's own (--node, default --node-id), then each
    shared folder's (--shared-watch)."""
    return [
        node_scope(node or settings.node_id),
        *(share_scope(name) for name, _ in settings.shares),
    ]


async def _load(store: CheckpointStore, ids: Sequence[str]) -> list[StreamRecord]:
    """Records in pipelines of LOAD_CHUNK: each reply is parsed in one go on the event loop
    (~0.2 ms a record without hiredis), so a chunk is what one slice of the loop costs."""
    records: list[StreamRecord] = []
    for start in range(0, len(ids), LOAD_CHUNK):
        records += await store.load_records(ids[start : start + LOAD_CHUNK])
    return records


async def scan_records(
    store: CheckpointStore, scope: str, selection: Selection, tally: Tally
) -> AsyncIterator[list[StreamRecord]]:
    """One scope's records as ``selection`` picks them, in batches: every live one, then the
    ended ones newest first. Counts go to ``tally``. Never reads more than the selection
    bounds (``every`` aside). With a state filter, a page of the ended index costs one field
    per id (its state); whole records are loaded for the matches only."""
    live_ids = await store.live_stream_ids(scope)
    tally.live, tally.ended = len(live_ids), await store.count_ended(scope)
    if selection.wants_live:
        for start in range(0, len(live_ids), ALL_PAGE):
            records = await _load(store, live_ids[start : start + ALL_PAGE])
            batch = [r for r in records if selection.wants(r.state)]
            tally.shown_live += len(batch)
            if batch:
                yield batch
    if not selection.wants_ended:
        return
    wanted = {s.value for s in selection.states}
    # A stream that moved between the indexes while we read is shown once; so is an entry
    # that a newer ended stream pushed down onto the next page.
    live, previous = set(live_ids), set[str]()
    found = 0
    while (size := selection.next_page(found, tally.scanned)) > 0:
        ids = await store.ended_stream_ids(scope, limit=size, offset=tally.scanned)
        tally.scanned += len(ids)
        tally.exhausted = len(ids) < size
        fresh = [sid for sid in ids if sid not in live and sid not in previous]
        previous = set(ids)
        if wanted:
            states = await store.get_fields(fresh, "state")
            fresh = [sid for sid, state in zip(fresh, states, strict=True) if state in wanted]
        if not selection.every:
            fresh = fresh[: selection.limit - found]
        # Loaded, a record may say otherwise (it changed since): the record decides.
        batch = [r for r in await _load(store, fresh) if selection.wants(r.state)]
        found += len(batch)
        tally.shown_ended += len(batch)
        if batch:
            yield batch
        if tally.exhausted:
            break


async def scan_rows(
    store: CheckpointStore,
    scopes: Sequence[str],
    selection: Selection,
    sizes: SizeProbe,
    *,
    now: datetime | None = None,
) -> AsyncIterator[tuple[Tally, list[dict[str, Any]]]]:
    """Rows of every scope in turn, a batch at a time, with the scope's tally (final once the
    next scope starts, or the scan ends). A scope with nothing to show yields one empty batch,
    so that its tally is seen."""
    now = now or utc_now()
    for scope in scopes:
        tally = Tally(scope)
        yielded = False
        async for records in scan_records(store, scope, selection, tally):
            found = await sizes.sizes([r.path for r in records])
            yield tally, [status_row(r, now=now, file_size=found.get(r.path)) for r in records]
            yielded = True
        if not yielded:
            yield tally, []


@dataclass
class StatusView:
    """What one look at the records found: rows and the tally of each scope."""

    selection: Selection
    sections: list[tuple[Tally, list[dict[str, Any]]]] = field(default_factory=list)
    sizes_stalled: bool = False
    # node id -> what its running daemon published (tailup.keys.RedisKeys.node_info); a node
    # without an entry runs no daemon now.
    daemons: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def rows(self) -> list[dict[str, Any]]:
        return [row for _, rows in self.sections for row in rows]

    @property
    def tallies(self) -> list[Tally]:
        return [tally for tally, _ in self.sections]

    def report_lines(self) -> list[str]:
        """The summary, then a line per node on whether its daemon runs (and its --bwlimit)."""
        daemons = [daemon_line(n, info) for n, info in self.daemons.items()]
        return self.summary() + [line for text in daemons for line in text.splitlines()]

    def summary(self) -> list[str]:
        lines = summary_lines(self.tallies, self.selection)
        if self.sizes_stalled:
            lines.append("file sizes unknown: a stat did not answer in time (a hung mount?)")
        return lines


async def collect_view(
    store: CheckpointStore,
    scopes: Sequence[str],
    selection: Selection,
    sizes: SizeProbe | None = None,
) -> StatusView:
    sizes = sizes or SizeProbe()
    view = StatusView(selection)
    async for tally, rows in scan_rows(store, scopes, selection, sizes):
        if view.sections and view.sections[-1][0] is tally:
            view.sections[-1][1].extend(rows)
        else:
            view.sections.append((tally, list(rows)))
        view.sizes_stalled |= sizes.stalled
    for scope in scopes:
        if scope.startswith("node:"):
            node = scope.removeprefix("node:")
            view.daemons[node] = await store.node_info(node)
    return view


def daemon_line(node: str, info: Mapping[str, str]) -> str:
    """The summary's line about a node's daemon: running (with the --bwlimit in force) or not."""
    if not info:
        return f"node {node}: no daemon running"
    limit = info.get("bwlimit", "off")
    timetable = info.get("bwlimit_timetable", "")
    shown = f"{limit} (timetable {timetable!r})" if timetable else limit
    line = (
        f"node {node}: daemon pid {info.get('pid', '?')} on {info.get('host', '?')}, "
        f"--bwlimit {shown}"
    )
    return "\n".join([line, *folder_lines(info.get("folders", ""))])


def folder_lines(published: str) -> list[str]:
    """A line per watched folder with its effective settings (* where its [[watch]] table set
    them), from what the daemon published (tailup.config.folders.FolderSettings.describe)."""
    try:
        folders = json.loads(published) if published else []
    except ValueError:
        return []
    return [
        f"  folder {f.get('folder', '?')}: "
        + ", ".join(f"{k} {v}" for k, v in f.items() if k != "folder")
        for f in folders
        if isinstance(f, dict)
    ]


async def collect_status(
    settings: Settings, selection: Selection, node: str | None = None
) -> StatusView:
    async with RedisCheckpointStore.for_settings(settings) as cps:
        return await collect_view(cps, status_scopes(settings, node), selection)


# -- acting on one stream --


def share_roots(settings: Settings) -> dict[str, Path]:
    """Each --shared-watch folder's scope and where this host mounts it."""
    return {share_scope(name): folder for name, folder in settings.shares}


async def resolve_stream(cps: CheckpointStore, settings: Settings, given: str) -> StreamRecord:
    """The stream ``given`` names (an id, a unique prefix of one, or the file's path) among the
    records of this node and of each --shared-watch folder (tailup.streamref)."""
    return await find_stream(cps, given, status_scopes(settings), share_roots(settings))


async def abort_stream(settings: Settings, given: str, reason: str) -> str:
    """Mark the stream ABORTED, then abort its upload. In this order: a daemon working on the
    stream finds ABORTED when its upload vanishes or when it next writes its state, and stops;
    the other order would let it take the vanished upload for an expired one and start again."""
    from tailup.rpo import delete_tails_after_abort
    from tailup.s3 import S3MultipartStore

    async with RedisCheckpointStore.for_settings(settings) as cps:
        record = await resolve_stream(cps, settings, given)
        stream_id, shown = record.stream_id, _named(record)
        if not record.state.is_resumable:
            return f"stream {shown} is {record.state.value}; nothing to abort"
        refused = await cps.set_state(
            stream_id,
            StreamState.ABORTED,
            allowed_from=RESUMABLE_STATES,
            error=reason,
            end_cause=EndCause.OPERATOR,
        )
        if refused is not None:
            return f"stream {shown} is {refused.value}; nothing to abort"
        # Read again: the daemon may have created the upload since the first read.
        loaded = await cps.load(stream_id)
        upload_id = loaded[0].upload_id if loaded else record.upload_id
        left = ""
        if upload_id:
            async with S3MultipartStore.connect(
                record.bucket, endpoint_url=settings.endpoint_url, region=settings.region
            ) as store:
                await _drop_card(store, record.key)  # first: never a card left for good
                await store.abort_upload(record.key, upload_id)
                left = await delete_tails_after_abort(store, record.key, upload_id)  # --rpo
        return f"stream {shown} aborted: {reason}" + (f"; {left}" if left else "")


async def _drop_card(store: MultipartStore, key: str) -> None:
    """The aborted upload's card (tailup.uploadcard), best effort: salvage ignores the card of
    an upload that is no longer open."""
    from tailup.uploadcard import card_key

    with contextlib.suppress(TailupError):
        await store.delete_object(card_key(key))


def _named(record: StreamRecord) -> str:
    """A stream as a message names it: its short id and its file."""
    return f"{short_id(record.stream_id)} ({record.path})"


async def retry_streams(settings: Settings, given: str | None, *, failed: bool) -> list[str]:
    """Ask the daemon to try failed streams again now (it polls this field while it waits; a
    daemon started later resumes failed streams anyway). Checkpointed parts are not sent again:
    the stream reconciles them with S3's part list first. ``failed``: every failed stream of
    this node and of each --shared-watch folder. Returns one line per stream."""
    async with RedisCheckpointStore.for_settings(settings) as cps:
        if failed:
            records: list[StreamRecord] = []
            for scope in status_scopes(settings):
                records += await cps.load_records(await cps.live_stream_ids(scope))
        else:
            records = [await resolve_stream(cps, settings, given or "")]
        lines: list[str] = []
        for record in records:
            shown = _named(record)
            if record.state is not StreamState.FAILED:
                if not failed:
                    lines.append(f"stream {shown} is {record.state.value}; nothing to retry")
                continue
            await cps.update(record.stream_id, **{RETRY_FIELD: iso(utc_now())})
            lines.append(f"stream {shown} will be retried now (was: {record.error})")
        if failed and not lines:
            lines.append("no failed stream")
        return lines
