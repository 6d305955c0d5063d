"""`tailup status` and `tailup abort`: read and change stream records from outside the daemon.

Redis is the source of truth, so status works from any host that reaches it, daemon running or
not. The file's current size comes from the local file system when the file is visible here.
"""

from __future__ import annotations

import asyncio
import enum
import json
import os
import sys
import textwrap
import threading
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Final

from rich.console import Console, Group, RenderableType
from rich.text import Text

from tailup.checkpoint import CheckpointStore, RedisCheckpointStore
from tailup.config import Settings
from tailup.errors import SourceStalled
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
from tailup.selection import (
    ALL_PAGE,
    LOAD_CHUNK,
    Selection,
    Tally,
    scope_label,
    summary_lines,
)
from tailup.statustable import RateTracker, StatusTable, plain_header, plain_line
from tailup.streamref import find_stream, short_id


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
    uploaded = record.final_size if completed else record.total_bytes_sent
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
        return self.summary() + [daemon_line(n, info) for n, info in self.daemons.items()]

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
    return (
        f"node {node}: daemon pid {info.get('pid', '?')} on {info.get('host', '?')}, "
        f"--bwlimit {shown}"
    )


async def collect_status(
    settings: Settings, selection: Selection, node: str | None = None
) -> StatusView:
    async with RedisCheckpointStore.for_settings(settings) as cps:
        return await collect_view(cps, status_scopes(settings, node), selection)


# -- rendering --


class Output(enum.Enum):
    """How rows are shown: the table fitted to a terminal, plain tab-separated rows (the default
    when stdout is not a terminal), or JSON."""

    TABLE = "table"
    WIDE = "wide"
    JSON = "json"


def choose_output(asked: str | None, *, terminal: bool) -> Output:
    """``-o``/``--wide``/``--json`` when given; else the table on a terminal, plain rows
    elsewhere (a pipe, a file)."""
    if asked is not None:
        return Output(asked)
    return Output.TABLE if terminal else Output.WIDE


def build_status_table(
    rows: list[dict[str, Any]],
    rates: RateTracker | None = None,
    now: datetime | None = None,
    *,
    title: str | None = "tailup streams",
    caption: bool = True,
) -> StatusTable:
    """The rows' table, laid out for the width of the console it is printed on."""
    return StatusTable(rows, rates, now, title=title, caption=caption)


def _title(tally: Tally, scopes: int) -> str:
    """One table per scope; the node's own alone keeps the plain title."""
    return "tailup streams" if scopes == 1 else f"tailup streams: {scope_label(tally.scope)}"


def build_status_view(
    view: StatusView, rates: RateTracker | None = None, now: datetime | None = None
) -> RenderableType:
    """A table per scope that has rows, then the summary line of each scope."""
    shown: list[RenderableType] = []
    if not view.rows:
        shown.append(Text("No streams yet."))
    for tally, rows in view.sections:
        if rows:
            shown.append(
                build_status_table(rows, rates, now, title=_title(tally, len(view.sections)))
            )
    shown.extend(Text(line) for line in view.report_lines())
    return Group(*shown)


def render_status_view(view: StatusView, console: Console | None = None) -> None:
    (console or Console()).print(build_status_view(view))


def print_plain_view(view: StatusView, out: IO[str] | None = None) -> None:
    """Plain rows: a header line, then one line per stream, every field in full
    (tailup.statustable.plain_line); the summary lines go to stderr, so that what a pipe reads
    is rows only."""
    stream = out or sys.stdout
    print(plain_header(), file=stream)
    for row in view.rows:
        print(plain_line(row), file=stream)
    stream.flush()
    print_summary(view, always=True)


def print_summary(view: StatusView, *, always: bool) -> None:
    """The summary lines on stderr: ``always``, or only when it is a terminal (with --json: a
    script that reads stdout and stderr together still gets JSON alone)."""
    if always or sys.stderr.isatty():
        for line in view.report_lines():
            print(line, file=sys.stderr)


def print_json_summary(view: StatusView) -> None:
    print_summary(view, always=False)


def print_view(view: StatusView, output: Output) -> None:
    if output is Output.JSON:
        print(json.dumps(view.rows, indent=2, ensure_ascii=False))
        print_json_summary(view)
    elif output is Output.WIDE:
        print_plain_view(view)
    else:
        render_status_view(view)


async def watch_status(
    settings: Settings,
    selection: Selection,
    *,
    node: str | None = None,
    interval_s: float,
    output: Output,
) -> None:
    """Refresh until interrupted: a live screen on a terminal; elsewhere (or with -o wide or
    --json) one sample per refresh, so a pipe or a log file sees every one: plain rows under
    their header, a JSON line, or a table with -o table."""
    from rich.live import Live

    console = Console()
    rates = RateTracker()
    scopes = status_scopes(settings, node)
    sizes = SizeProbe()
    async with RedisCheckpointStore.for_settings(settings) as cps:
        if output is not Output.TABLE or not console.is_terminal:
            while True:
                view = await collect_view(cps, scopes, selection, sizes)
                if output is Output.JSON:
                    print(json.dumps(view.rows, ensure_ascii=False), flush=True)
                elif output is Output.WIDE:
                    print_plain_view(view)
                else:
                    console.print(build_status_view(view, rates))
                await asyncio.sleep(interval_s)
        with Live(console=console, auto_refresh=False) as live:
            while True:
                view = await collect_view(cps, scopes, selection, sizes)
                live.update(build_status_view(view, rates), refresh=True)
                await asyncio.sleep(interval_s)


async def print_every_record(
    settings: Settings, selection: Selection, *, node: str | None = None, output: Output
) -> int:
    """``--all``: every record of the scopes, read from Redis a page at a time and printed as
    it comes (a table per page, plain rows under one header, or one JSON array), so memory
    stays flat at any count. A note of how many there are goes to stderr first, and a progress
    line while it reads when stderr is a terminal. Returns the rows printed."""
    console = Console()
    scopes = status_scopes(settings, node)
    progress = sys.stderr.isatty()
    sizes = SizeProbe()
    printed = 0
    stalled = False
    tallies: list[Tally] = []
    as_json = output is Output.JSON
    async with RedisCheckpointStore.for_settings(settings) as cps:
        counts = [(len(await cps.live_stream_ids(s)), await cps.count_ended(s)) for s in scopes]
        total = sum(live + ended for live, ended in counts)
        each = "; ".join(
            f"{scope_label(s)}: {live:,} live, {ended:,} ended"
            for s, (live, ended) in zip(scopes, counts, strict=True)
        )
        print(f"tailup: --all: {total:,} records ({each})", file=sys.stderr, flush=True)
        if as_json:
            sys.stdout.write("[")
        elif output is Output.WIDE:
            sys.stdout.write(plain_header() + "\n")
        titled: Tally | None = None
        async for tally, rows in scan_rows(cps, scopes, selection, sizes):
            if not tallies or tallies[-1] is not tally:
                tallies.append(tally)
            if progress:
                sys.stderr.write("\r\x1b[K")
            if as_json:
                for row in rows:
                    text = json.dumps(row, indent=2, ensure_ascii=False)
                    sys.stdout.write(("," if printed else "") + "\n" + textwrap.indent(text, "  "))
                    printed += 1
            elif output is Output.WIDE:
                sys.stdout.writelines(plain_line(row) + "\n" for row in rows)
                printed += len(rows)
            elif rows:
                title = _title(tally, len(scopes)) if titled is not tally else None
                titled = tally
                console.print(build_status_table(rows, title=title, caption=False))
                printed += len(rows)
            sys.stdout.flush()
            stalled |= sizes.stalled
            if progress:
                sys.stderr.write(f"{printed:,} of {total:,} records read")
                sys.stderr.flush()
        if progress:
            sys.stderr.write("\r\x1b[K")
        if as_json:
            sys.stdout.write("\n]\n" if printed else "]\n")
            sys.stdout.flush()
    view = StatusView(selection, [(t, []) for t in tallies], sizes_stalled=stalled)
    lines = view.summary()
    if output is Output.TABLE:
        if not printed:
            console.print("No streams yet.")
        for line in lines:
            console.print(Text(line))
    else:
        for line in lines:
            print(line, file=sys.stderr)
    return printed


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
        if upload_id:
            async with S3MultipartStore.connect(
                record.bucket, endpoint_url=settings.endpoint_url, region=settings.region
            ) as store:
                await store.abort_upload(record.key, upload_id)
        return f"stream {shown} aborted: {reason}"


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
