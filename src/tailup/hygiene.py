"""`tailup gc`: abort multipart uploads nobody will complete.

An upload is left open when tailup is killed between CreateMultipartUpload and writing its id to
the checkpoint, when an abort fails (S3 unreachable at that moment), or by other tools. Open
uploads cost storage for their parts until aborted. An upload is garbage when no live stream in
Redis names it and it was initiated at least ``older_than`` ago; the age keeps gc away from an
upload a running daemon has just created and not yet checkpointed.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime

import structlog

from tailup.checkpoint import RedisCheckpointStore
from tailup.config import Settings
from tailup.config.folders import folder_settings
from tailup.rpo import delete_tails_after_abort
from tailup.s3 import S3MultipartStore, UploadInfo

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Garbage:
    key: str
    upload_id: str
    initiated: datetime
    age_s: float


def select_garbage(
    uploads: Iterable[UploadInfo],
    owned: Collection[str],
    *,
    now: datetime,
    older_than_s: float,
) -> list[Garbage]:
    """Uploads no live stream owns, initiated at least ``older_than_s`` before ``now``. Pure."""
    selected = []
    for upload in uploads:
        age = (now - upload.initiated).total_seconds()
        if upload.upload_id not in owned and age >= older_than_s:
            selected.append(Garbage(upload.key, upload.upload_id, upload.initiated, age))
    return sorted(selected, key=lambda g: (g.initiated, g.key))


async def owned_upload_ids(checkpoints: RedisCheckpointStore) -> set[str]:
    """Uploads some live stream names, whichever node's or shared folder's index it is in: gc
    aborts only what no daemon on this Redis prefix owns."""
    owned = set()
    pattern = f"{checkpoints.keys.prefix}:*:live"
    scopes = set()
    async for name in checkpoints.client.scan_iter(match=pattern, count=1000):
        base = str(name)[len(checkpoints.keys.prefix) + 1 : -len(":live")]
        if base.startswith(("node:", "share:")):
            scopes.add(base)
    for scope in sorted(scopes):
        for record in await checkpoints.load_records(await checkpoints.live_stream_ids(scope)):
            if record.upload_id:
                owned.add(record.upload_id)
    return owned


async def collect_garbage(
    settings: Settings, *, older_than_s: float, dry_run: bool, now: datetime
) -> list[Garbage]:
    """Find (and unless ``dry_run``, abort) the garbage under ``settings.prefix`` and each
    folder's own prefix ([[watch]] tables). Redis must answer: without it, which uploads are
    owned is unknown, and nothing is aborted blind."""
    async with RedisCheckpointStore.for_settings(settings) as cps:
        owned = await owned_upload_ids(cps)
    async with S3MultipartStore.connect(
        settings.bucket, endpoint_url=settings.endpoint_url, region=settings.region
    ) as store:
        uploads = []
        for prefix in gc_prefixes(settings):
            uploads.extend(await store.list_uploads(prefix))
        garbage = select_garbage(uploads, owned, now=now, older_than_s=older_than_s)
        if not dry_run:
            for item in garbage:
                await store.abort_upload(item.key, item.upload_id)
                left = await delete_tails_after_abort(store, item.key, item.upload_id)  # --rpo
                if left:
                    log.warning("gc left staged segments", key=item.key, problem=left)
    return garbage


def gc_prefixes(settings: Settings) -> list[str]:
    """The prefixes whose uploads gc looks at: the global one and each folder's, none inside
    another (its uploads would be listed twice)."""
    given = sorted({settings.prefix, *(f.prefix for f in folder_settings(settings))})
    return [p for p in given if not any(p != q and p.startswith(q) for q in given)]


def describe_age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"
