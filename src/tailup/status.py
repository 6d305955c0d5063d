"""`tailup status` and `tailup abort`: read and change stream records from outside the daemon.

Redis is the source of truth, so status works from any host that reaches it, daemon running or
not. The file's current size comes from the local file system when the file is visible here.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rich.console import Console, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from tailup.checkpoint import CheckpointStore, RedisCheckpointStore
from tailup.config import Settings
from tailup.errors import PermanentError
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
from tailup.units import format_size


def _file_size(path: str) -> int | None:
    try:
        return os.stat(path).st_size
    except OSError:
        return None


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


def status_row(
    record: StreamRecord, parts: dict[int, PartRecord], now: datetime | None = None
) -> dict[str, Any]:
    """One stream as `tailup status --json` and /streams show it."""
    now = now or utc_now()
    completed = record.state is StreamState.COMPLETED
    uploaded = record.final_size if completed else record.total_bytes_sent
    size = _file_size(record.path)
    lag = max(0, size - uploaded) if size is not None and record.state.is_live else None
    return {
        "stream_id": record.stream_id,
        "path": record.path,
        "state": record.state.value,
        "bytes_uploaded": uploaded,
        "file_size": size,
        "lag_bytes": lag,
        "rate_bytes_per_s": _average_rate(record, uploaded, now),
        # A file that fits in one part goes up in one PUT and records no parts: one request.
        "parts": len(parts) or (1 if completed and uploaded > 0 else 0),
        "bucket": record.bucket,
        "key": record.key,
        "generation": record.generation,
        "last_activity": record.last_activity_at_utc,
        "created_at": record.created_at,
        "completed_at": record.completed_at or None,
        "sha256": record.sha256 or None,
        "error": record.error or None,
        "note": record.note or None,
    }


async def stream_rows(checkpoints: CheckpointStore, limit: int = 50) -> list[dict[str, Any]]:
    """The live streams, then the ``limit`` latest ended ones."""
    rows = []
    now = utc_now()
    ids = await checkpoints.live_stream_ids() + await checkpoints.ended_stream_ids(limit=limit)
    for stream_id in ids:
        loaded = await checkpoints.load(stream_id)
        if loaded is not None:
            rows.append(status_row(*loaded, now=now))
    return rows


async def collect_status(settings: Settings) -> list[dict[str, Any]]:
    async with RedisCheckpointStore.for_settings(settings) as cps:
        return await stream_rows(cps)


# -- rendering --

_STATE_STYLE = {
    "uploading": "cyan",
    "finalizing": "blue",
    "completed": "green",
    "stalled": "yellow",
    "skipped": "dim",
    "failed": "bold red",
    "aborted": "red",
}


@dataclass
class RateTracker:
    """Upload rate between two refreshes of `status --watch` (the rows carry only the average
    over the stream's life, which hides a stall that just began)."""

    clock: Callable[[], float] = time.monotonic
    _seen: dict[str, tuple[float, int]] = field(default_factory=dict)

    def rate(self, row: dict[str, Any]) -> float | None:
        now, uploaded = self.clock(), int(row["bytes_uploaded"])
        previous = self._seen.get(row["stream_id"])
        self._seen[row["stream_id"]] = (now, uploaded)
        if previous is None or now <= previous[0]:
            return None
        return (uploaded - previous[1]) / (now - previous[0])


def _size_pair(uploaded: int, size: int | None) -> str:
    """'16.0/22.5 MiB' when both share a unit (the common case), else both in full."""
    if size is None:
        return f"{format_size(uploaded)} / (gone)"
    done, total = format_size(uploaded), format_size(size)
    done_value, _, done_unit = done.partition(" ")
    if total.endswith(" " + done_unit):
        return f"{done_value}/{total}"
    return f"{done} / {total}"


def _progress_cell(row: dict[str, Any]) -> RenderableType:
    uploaded, size = row["bytes_uploaded"], row["file_size"]
    if row["state"] == "completed":
        return Text(format_size(uploaded))
    text = _size_pair(uploaded, size)
    if row["state"] not in ("uploading", "stalled", "finalizing") or not size:
        return Text(text)
    # Two lines, bar above numbers: narrow enough to leave the key room on a 120-column screen.
    label = f"{min(100.0, 100.0 * uploaded / size):3.0f}% {text}"
    cell = Table.grid()
    cell.add_row(ProgressBar(total=float(size), completed=float(min(uploaded, size)), width=17))
    cell.add_row(Text(label))
    return cell


def _rate_text(rate: float | None) -> str:
    return "" if rate is None else f"{format_size(rate)}/s"


def _age(moment: str, now: datetime) -> str:
    """How long ago, as people read a status screen: 4s, 12m, 3h, 2d."""
    then = parse_iso(moment)
    if then is None:
        return ""
    seconds = max(0, int((now - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def build_status_table(
    rows: list[dict[str, Any]], rates: RateTracker | None = None, now: datetime | None = None
) -> Table:
    now = now or utc_now()
    table = Table(title="tailup streams", header_style="bold", caption=_summary(rows))
    # Short values never wrap; ids and keys fold to take the width that is left.
    table.add_column("stream", overflow="fold", min_width=8)
    for column in ("state", "uploaded / file", "rate", "lag", "parts", "active"):
        table.add_column(column, no_wrap=True)
    table.add_column("key", overflow="fold", ratio=1, min_width=12)
    with_errors = any(row["error"] or row.get("note") for row in rows)
    if with_errors:
        table.add_column("error", overflow="fold", style="red", ratio=1, min_width=12)
    for row in rows:
        measured = rates.rate(row) if rates is not None else None
        rate = measured if measured is not None else row["rate_bytes_per_s"]
        state = row["state"]
        cells: list[RenderableType] = [
            row["stream_id"],
            Text(state, style=_STATE_STYLE.get(state, "")),
            _progress_cell(row),
            _rate_text(rate),
            format_size(row["lag_bytes"]) if row["lag_bytes"] is not None else "",
            str(row["parts"]),
            _age(row["last_activity"], now),
            row["key"],
        ]
        if with_errors:
            cells.append(row["error"] or (f"note: {row['note']}" if row.get("note") else ""))
        table.add_row(*cells)
    return table


def _summary(rows: list[dict[str, Any]]) -> str:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["state"]] = counts.get(row["state"], 0) + 1
    return ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "no streams"


def render_status_table(rows: list[dict[str, Any]], console: Console | None = None) -> None:
    console = console or Console()
    if not rows:
        console.print("No streams yet.")
        return
    console.print(build_status_table(rows))


async def watch_status(settings: Settings, *, interval_s: float, as_json: bool) -> None:
    """Refresh until interrupted: a live screen on a terminal; one table (or one JSON line) per
    refresh otherwise, so a pipe or a log file sees every sample."""
    from rich.live import Live

    console = Console()
    rates = RateTracker()
    async with RedisCheckpointStore.for_settings(settings) as cps:
        if as_json or not console.is_terminal:
            while True:
                rows = await stream_rows(cps)
                if as_json:
                    print(json.dumps(rows, ensure_ascii=False), flush=True)
                else:
                    console.print(build_status_table(rows, rates))
                await asyncio.sleep(interval_s)
        with Live(console=console, auto_refresh=False) as live:
            while True:
                live.update(build_status_table(await stream_rows(cps), rates), refresh=True)
                await asyncio.sleep(interval_s)


async def abort_stream(settings: Settings, stream_id: str, reason: str) -> str:
    """Mark the stream ABORTED, then abort its upload. In this order: a daemon working on the
    stream finds ABORTED when its upload vanishes or when it next writes its state, and stops;
    the other order would let it take the vanished upload for an expired one and start again."""
    from tailup.s3 import S3MultipartStore

    async with RedisCheckpointStore.for_settings(settings) as cps:
        loaded = await cps.load(stream_id)
        if loaded is None:
            raise PermanentError(f"no stream {stream_id!r} in Redis (see `tailup status`)")
        record, _ = loaded
        if not record.state.is_resumable:
            return f"stream {stream_id} is {record.state.value}; nothing to abort"
        refused = await cps.set_state(
            stream_id,
            StreamState.ABORTED,
            allowed_from=RESUMABLE_STATES,
            error=reason,
            end_cause=EndCause.OPERATOR,
        )
        if refused is not None:
            return f"stream {stream_id} is {refused.value}; nothing to abort"
        # Read again: the daemon may have created the upload since the first read.
        loaded = await cps.load(stream_id)
        upload_id = loaded[0].upload_id if loaded else record.upload_id
        if upload_id:
            async with S3MultipartStore.connect(
                record.bucket, endpoint_url=settings.endpoint_url, region=settings.region
            ) as store:
                await store.abort_upload(record.key, upload_id)
        return f"stream {stream_id} aborted: {reason}"


async def retry_streams(settings: Settings, stream_id: str | None, *, failed: bool) -> list[str]:
    """Ask the daemon to try failed streams again now (it polls this field while it waits; a
    daemon started later resumes failed streams anyway). Checkpointed parts are not sent again:
    the stream reconciles them with S3's part list first. Returns one line per stream."""
    async with RedisCheckpointStore.for_settings(settings) as cps:
        ids = await cps.live_stream_ids() if failed else [stream_id or ""]
        lines: list[str] = []
        for sid in ids:
            loaded = await cps.load(sid)
            if loaded is None:
                raise PermanentError(f"no stream {sid!r} in Redis (see `tailup status`)")
            record = loaded[0]
            if record.state is not StreamState.FAILED:
                if not failed:
                    lines.append(f"stream {sid} is {record.state.value}; nothing to retry")
                continue
            await cps.update(sid, **{RETRY_FIELD: iso(utc_now())})
            lines.append(f"stream {sid} will be retried now (was: {record.error})")
        if failed and not lines:
            lines.append("no failed stream")
        return lines
