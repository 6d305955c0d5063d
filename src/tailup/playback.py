"""`tailup url KEY|STREAM`: a presigned GET URL of a recording in S3, to play or download it from
the bucket with no credentials (a browser, VLC, curl).

Presigning is local: the client signs the GET with its credentials (SigV4, in the query string)
and sends nothing. A HEAD first checks that the object is there, so a URL never points at nothing.
A presigned URL holds its signature (and, with temporary credentials, the session token): it is
printed on stdout to whoever asked and never logged; the redacting log formatter
(tailup.observe) takes the signature out of botocore's debug records too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from tailup.config import Settings, check_storage_settings
from tailup.errors import ConfigError, PermanentError
from tailup.integrity import normalize_etag
from tailup.keys import metadata_key
from tailup.model import StreamRecord, StreamState
from tailup.streamref import short_id
from tailup.units import DURATION_FORM, parse_duration

log = structlog.get_logger(__name__)

# SigV4 caps X-Amz-Expires at 7 days; S3 refuses a URL signed for longer when it is used.
MAX_EXPIRES_S = 7 * 24 * 3600
# States whose object at the record's key is the recording: completed whole, or salvaged (the
# prefix S3 held, completed by `tailup salvage`).
PLAYABLE_STATES = frozenset({StreamState.COMPLETED, StreamState.SALVAGED})
_EXPIRES_FORM = f"{DURATION_FORM}; at least 1 s, at most 7d (S3's limit for a presigned URL)"


class NothingToPlay(PermanentError):
    """The stream's recording is not an object in S3 (not completed), or no object is there."""


def parse_expires(text: str) -> int:
    """Whole seconds a URL stays valid (X-Amz-Expires); ConfigError naming the accepted form."""
    try:
        seconds = parse_duration(text)
    except ValueError:
        raise ConfigError(f"--expires: got {text!r}. Accepted: {_EXPIRES_FORM}") from None
    if seconds < 1:
        raise ConfigError(f"--expires: {text!r} is under 1 s. Accepted: {_EXPIRES_FORM}")
    if seconds > MAX_EXPIRES_S:
        raise ConfigError(
            f"--expires: {text!r} is {seconds / 86400:g} days, more than the 7 days (604800 s) "
            "a presigned URL can be valid (SigV4). Accepted: at most 7d"
        )
    return int(seconds)


def refusal(record: StreamRecord) -> str | None:
    """Why ``record``'s stream has no recording to play, or None when it has one."""
    if record.state in PLAYABLE_STATES:
        return None
    shown = f"{short_id(record.stream_id)} ({record.path})"
    return (
        f"stream {shown} is {record.state.value}: there is no recording to play until it is "
        "completed (or salvaged); see `tailup status`"
    )


@dataclass(frozen=True, slots=True)
class Playback:
    bucket: str
    key: str
    size_bytes: int
    url: str
    expires_at: datetime
    metadata_url: str | None = None
    notes: tuple[str, ...] = ()  # for the person, on stderr


async def presign_target(
    settings: Settings, target: str, *, expires_s: int, metadata: bool, now: datetime
) -> Playback:
    """The URL of the recording ``target`` names: a stream (as `verify` takes it) or an object
    key; with ``metadata`` its metadata.json's too."""
    from tailup.s3.presign import presigned_get_urls
    from tailup.verify import resolve_target

    record, note = await resolve_target(settings, target)
    if record is None:
        check_storage_settings(settings)
    elif (why := refusal(record)) is not None:
        raise NothingToPlay(why)
    bucket, key = (record.bucket, record.key) if record else (settings.bucket, target)
    keys = [key, metadata_key(key)] if metadata else [key]
    size, notes = await _check_objects(settings, bucket, keys, record)
    urls = await presigned_get_urls(
        bucket,
        keys,
        expires_s=expires_s,
        endpoint_url=settings.endpoint_url,
        region=settings.region,
    )
    log.debug("presigned a GET url", bucket=bucket, key=key, expires_s=expires_s)
    return Playback(
        bucket=bucket,
        key=key,
        size_bytes=size,
        url=urls[0],
        expires_at=now + timedelta(seconds=expires_s),
        metadata_url=urls[1] if metadata else None,
        notes=tuple([note] if note else []) + notes,
    )


async def _check_objects(
    settings: Settings, bucket: str, keys: Sequence[str], record: StreamRecord | None
) -> tuple[int, tuple[str, ...]]:
    """(the recording's size, notes): a HEAD of each key, so that no URL points at nothing;
    NothingToPlay when one is missing."""
    from tailup.s3 import S3MultipartStore

    async with S3MultipartStore.connect(
        bucket, endpoint_url=settings.endpoint_url, region=settings.region
    ) as store:
        found = [await store.head_object(key) for key in keys]
    info = found[0]
    if info is None:
        raise NothingToPlay(_missing(bucket, keys[0], record))
    if any(other is None for other in found[1:]):
        raise NothingToPlay(f"no metadata.json at s3://{bucket}/{keys[1]}")
    if record is None or not record.etag:
        return info.size, ()
    if normalize_etag(info.etag) == normalize_etag(record.etag):
        return info.size, ()
    replaced = (
        f"the object at s3://{bucket}/{keys[0]} has ETag {info.etag}, the stream's record "
        f"{record.etag}: another upload replaced it since (`tailup verify` compares them)"
    )
    return info.size, (replaced,)


def _missing(bucket: str, key: str, record: StreamRecord | None) -> str:
    missing = f"no object at s3://{bucket}/{key}"
    if record is not None:
        return missing + f" although stream {short_id(record.stream_id)} is {record.state.value}"
    return missing + (
        f", and no stream matches {key!r} (a stream id, a unique prefix of one of at least 4 "
        "characters, or a recording's path; see `tailup status`)"
    )
