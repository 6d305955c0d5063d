"""`tailup status` and `tailup abort`: read and change stream records from outside the daemon."""

from __future__ import annotations

import os
from typing import Any

from tailup.checkpoint import RedisCheckpointStore
from tailup.config import Settings
from tailup.errors import PermanentError
from tailup.model import LIVE_STATES, StreamState
from tailup.units import format_size


async def collect_status(settings: Settings) -> list[dict[str, Any]]:
    """Every stream known to Redis, newest last, with the file's current size."""
    async with RedisCheckpointStore.connect(settings.redis_url, settings.redis_prefix) as cps:
        rows = []
        for stream_id in await cps.all_stream_ids():
            loaded = await cps.load(stream_id)
            if loaded is None:
                continue
            record, parts = loaded
            try:
                file_size: int | None = os.stat(record.path).st_size
            except OSError:
                file_size = None
            rows.append(
                {
                    "stream_id": record.stream_id,
                    "path": record.path,
                    "state": record.state.value,
                    "bytes_uploaded": record.total_bytes_sent
                    if record.state is not StreamState.COMPLETED
                    else record.final_size,
                    "file_size": file_size,
                    "parts": len(parts),
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
            )
        return rows


_STATE_STYLE = {
    "uploading": "cyan",
    "finalizing": "blue",
    "completed": "green",
    "stalled": "yellow",
    "skipped": "dim",
    "failed": "bold red",
    "aborted": "red",
}


def render_status_table(rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not rows:
        console.print("No streams yet.")
        return
    table = Table(title="tailup streams", header_style="bold")
    for column in ("stream", "state", "uploaded / file", "parts", "key", "last activity", "error"):
        table.add_column(column, overflow="fold")
    for row in rows:
        size = row["file_size"]
        progress = f"{format_size(row['bytes_uploaded'])} / " + (
            format_size(size) if size is not None else "(gone)"
        )
        state = row["state"]
        table.add_row(
            row["stream_id"],
            f"[{_STATE_STYLE.get(state, '')}]{state}[/]",
            progress,
            str(row["parts"]),
            row["key"],
            (row["last_activity"] or "")[:19].replace("T", " "),
            row["error"] or (f"note: {row['note']}" if row.get("note") else ""),
        )
    console.print(table)


async def abort_stream(settings: Settings, stream_id: str, reason: str) -> str:
    """Mark the stream ABORTED, then abort its upload. In this order: a daemon working on the
    stream finds ABORTED when its upload vanishes or when it next writes its state, and stops;
    the other order would let it take the vanished upload for an expired one and start again."""
    from tailup.s3 import S3MultipartStore

    async with RedisCheckpointStore.connect(settings.redis_url, settings.redis_prefix) as cps:
        loaded = await cps.load(stream_id)
        if loaded is None:
            raise PermanentError(f"no stream {stream_id!r} in Redis (see `tailup status`)")
        record, _ = loaded
        if not record.state.is_live:
            return f"stream {stream_id} is {record.state.value}; nothing to abort"
        refused = await cps.set_state(
            stream_id, StreamState.ABORTED, allowed_from=LIVE_STATES, error=reason
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
