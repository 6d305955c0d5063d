"""Live HLS (--hls): which files a playlist names, and whether it may be published now. No I/O.

A player reading a playlist from the bucket resolves each segment relative to the playlist's
key, so every HLS file goes to the prefix plus its path below the watched folder (tailup.keys
``{relpath}``), and a playlist is published (replaced in place) only once every file it names
inside the folder is in S3: the player never meets a missing segment. What a playlist names
outside the folder (``../x.ts``, ``/abs/x.ts``, ``https://...``) is not tailup's to upload: it is
named in a warning, never waited for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Final
from urllib.parse import unquote

PLAYLIST_SUFFIX: Final = ".m3u8"
# What --hls adds to --include: playlists and fMP4 media segments (.ts, and .mp4 for init
# segments, are in the default list already).
HLS_INCLUDE: Final = ("*.m3u8", "*.m4s", "*.ts", "*.mp4")
HLS_KEY_TEMPLATE: Final = "{relpath}"
PLAYLIST_CONTENT_TYPE: Final = "application/vnd.apple.mpegurl"

# Tags whose URI attribute names a file the player fetches: the init segment (EXT-X-MAP), a
# rendition's playlist (EXT-X-MEDIA), an I-frame playlist, a low-latency part. Not EXT-X-KEY
# (a key server's) nor EXT-X-PRELOAD-HINT (a part that does not exist yet, by definition).
_URI_TAGS: Final = ("#EXT-X-MAP:", "#EXT-X-MEDIA:", "#EXT-X-I-FRAME-STREAM-INF:", "#EXT-X-PART:")
_URI_ATTRIBUTE = re.compile(r'(?:^|,)URI="([^"]*)"')
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")


def is_playlist(name: str) -> bool:
    return name.lower().endswith(PLAYLIST_SUFFIX)


def playlist_uris(text: str) -> tuple[str, ...]:
    """Every URI the playlist names, in order: segment lines and the URI attributes of
    _URI_TAGS (an init segment comes before the segments that need it)."""
    uris: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            if line.upper().startswith(_URI_TAGS):
                found = _URI_ATTRIBUTE.search(line.partition(":")[2])
                if found and found.group(1):
                    uris.append(found.group(1))
            continue
        uris.append(line)
    return tuple(dict.fromkeys(uris))


def resolve(uri: str, playlist: PurePosixPath) -> PurePosixPath | None:
    """The path below the watched folder that ``uri`` names from the playlist at ``playlist``
    (itself below the folder); None when it is outside: an absolute URL or path, or ``..``
    above the folder. A query or fragment is not part of the file's name."""
    if _SCHEME.match(uri) or uri.startswith(("/", "\\")):
        return None
    path = unquote(uri.split("#", 1)[0].split("?", 1)[0])
    if not path:
        return None
    parts: list[str] = list(playlist.parent.parts)
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                return None
            parts.pop()
        else:
            parts.append(part)
    return PurePosixPath(*parts) if parts else None


@dataclass(frozen=True, slots=True)
class Named:
    """What a playlist names: files inside the watched folder (paths below it), in order, and
    URIs outside it, as written."""

    inside: tuple[PurePosixPath, ...]
    outside: tuple[str, ...]


def named_files(text: str, playlist: PurePosixPath) -> Named:
    inside: list[PurePosixPath] = []
    outside: list[str] = []
    for uri in playlist_uris(text):
        found = resolve(uri, playlist)
        if found is None:
            outside.append(uri)
        else:
            inside.append(found)
    return Named(tuple(dict.fromkeys(inside)), tuple(outside))


@dataclass(frozen=True, slots=True)
class Publish:
    """Every file the playlist names inside the folder is in S3: put the playlist now."""


@dataclass(frozen=True, slots=True)
class Wait:
    """Not yet: these files it names are not in S3 (their completion is awaited)."""

    missing: tuple[PurePosixPath, ...]


def may_publish(named: Named, in_s3: frozenset[PurePosixPath]) -> Publish | Wait:
    missing = tuple(p for p in named.inside if p not in in_s3)
    return Wait(missing) if missing else Publish()


def hls_key(relpath: PurePosixPath, prefix: str) -> str:
    """An HLS file's key: the prefix, then its path below the watched folder (what the key
    template ``{relpath}`` renders), so keys keep the paths of files relative to each other."""
    key = str(relpath).lstrip("/")
    prefix = prefix.strip("/")
    return f"{prefix}/{key}" if prefix else key
