"""Names: S3 object keys rendered from the key template, and Redis key names (all in one place)."""

from __future__ import annotations

import string
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath

PLACEHOLDERS: dict[str, str] = {
    "stream_id": "the stream's id",
    "name": "the file name, e.g. cam1.mp4",
    "stem": "the file name without its extension, e.g. cam1",
    "ext": "the extension without the dot, e.g. mp4",
    "relpath": "the path below the watched folder, e.g. site-a/cam1.mp4",
    "watch": "the name of the watched folder the file is in",
    "date": "the UTC date the stream started, YYYY-MM-DD",
    "time": "the UTC time the stream started, HHMMSS",
    "hostname": "this machine's host name",
}
DEFAULT_KEY_TEMPLATE = "streams/{stream_id}/{name}"


def template_problems(template: str) -> list[str]:
    """What is wrong with a key template; empty when it can be used."""
    problems: list[str] = []
    try:
        fields = [f for _, f, spec, conv in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        return [f"it is not a valid template ({exc}); write a literal brace as {{{{ or }}}}"]
    for field in fields:
        if field not in PLACEHOLDERS:
            shown = "{" + field + "}" if field else "{}"
            problems.append(f"unknown placeholder {shown}")
    if "stream_id" not in fields and "relpath" not in fields and "name" not in fields:
        problems.append("it names no file: use {stream_id}, {name} or {relpath} so keys differ")
    return problems


@dataclass(frozen=True, slots=True)
class KeyContext:
    stream_id: str
    relpath: PurePosixPath  # path below the watched folder
    watch_name: str
    started_at: datetime
    hostname: str


def render_key(template: str, ctx: KeyContext, *, prefix: str = "") -> str:
    """The S3 key for a stream. Any UTF-8 file name is kept as is: S3 keys are UTF-8 strings."""
    name = ctx.relpath.name
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:
        stem, ext = name, ""
    key = template.format(
        stream_id=ctx.stream_id,
        name=name,
        stem=stem,
        ext=ext,
        relpath=str(ctx.relpath),
        watch=ctx.watch_name,
        date=ctx.started_at.strftime("%Y-%m-%d"),
        time=ctx.started_at.strftime("%H%M%S"),
        hostname=ctx.hostname,
    )
    key = key.lstrip("/")
    prefix = prefix.strip("/")
    if prefix:
        key = prefix + "/" + key
    return key


def suffixed_key(key: str, number: int) -> str:
    """The ``number``-th choice for a key already taken: ``a/cam1.ts`` -> ``a/cam1-2.ts``."""
    folder, slash, name = key.rpartition("/")
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:
        stem, dot, ext = name, "", ""
    return f"{folder}{slash}{stem}-{number}{dot}{ext}"


def template_is_unique(template: str) -> bool:
    """True if every stream gets a key of its own from the template alone."""
    try:
        return any(f == "stream_id" for _, f, _, _ in string.Formatter().parse(template))
    except ValueError:
        return False


def metadata_key(object_key: str) -> str:
    return object_key + ".metadata.json"


@dataclass(frozen=True, slots=True)
class RedisKeys:
    """Every Redis key tailup uses. A stream's keys share a hash tag ``{id}`` so that one
    MULTI/EXEC can touch them all under Redis Cluster."""

    prefix: str = "tailup"

    def stream_meta(self, stream_id: str) -> str:
        return f"{self.prefix}:stream:{{{stream_id}}}:meta"

    def stream_parts(self, stream_id: str) -> str:
        return f"{self.prefix}:stream:{{{stream_id}}}:parts"

    @property
    def live_streams(self) -> str:
        """Set of stream ids not yet completed, aborted or failed: what a restart resumes."""
        return f"{self.prefix}:streams:live"

    @property
    def all_streams(self) -> str:
        """Sorted set of every stream id, scored by creation time: what status lists."""
        return f"{self.prefix}:streams:all"

    @property
    def object_keys(self) -> str:
        """Hash: S3 object key -> id of the stream that owns it (two recordings never share one)."""
        return f"{self.prefix}:objects"

    @property
    def paths(self) -> str:
        """Hash: absolute source path -> stream id of the latest stream for that path."""
        return f"{self.prefix}:paths"
