"""metadata.json: what was uploaded, how, and what the media is. Never a credential."""

from __future__ import annotations

import json
import mimetypes
import socket
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import structlog

from tailup import __version__
from tailup.checksums import ChecksumAlgorithm
from tailup.model import PartRecord

log = structlog.get_logger(__name__)

_CONTENT_TYPES = {
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".mov": "video/quicktime",
    ".mkv": "video/x-matroska",
    ".ts": "video/mp2t",
    ".flv": "video/x-flv",
    # HLS (--hls): what players and CDNs expect of a playlist and an fMP4 media segment.
    ".m3u8": "application/vnd.apple.mpegurl",
    ".m4s": "video/iso.segment",
}


def content_type_for(name: str) -> str:
    suffix = Path(name).suffix.lower()
    return _CONTENT_TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"


@dataclass(frozen=True, slots=True)
class StreamInfo:
    index: int
    kind: str  # video, audio, subtitle, data
    codec: str
    width: int | None = None
    height: int | None = None
    frame_rate: float | None = None
    sample_rate: int | None = None
    channels: int | None = None


@dataclass(frozen=True, slots=True)
class MediaInfo:
    container: str
    duration_s: float | None
    bit_rate: int | None
    streams: list[StreamInfo] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        video = next((s for s in self.streams if s.kind == "video"), None)
        audio = next((s for s in self.streams if s.kind == "audio"), None)
        return {
            "container": self.container,
            "duration_s": self.duration_s,
            "bit_rate": self.bit_rate,
            "video_codec": video.codec if video else None,
            "audio_codec": audio.codec if audio else None,
            "width": video.width if video else None,
            "height": video.height if video else None,
            "frame_rate": video.frame_rate if video else None,
            "streams": [asdict(s) for s in self.streams],
        }


# How far into a file ffmpeg looks for a container it knows (its formatprobesize; 1 MiB by
# default). The recorders' containers say what they are in their first bytes (MP4/MOV's ftyp,
# Matroska's EBML header, FLV's signature, MPEG-TS's sync byte every 188 bytes), so a recording is
# known within a few KiB and this never changes its media info; a file that is no media (random
# bytes, a recording cut before its header) was tried against every demuxer at each doubling up to
# 1 MiB: ~55 ms of CPU per file, 100 of them at once serializing the closes of bench c; ~4 ms so.
FORMAT_PROBE_BYTES = 64 * 1024


def _rate(value: Fraction | None) -> float | None:
    return round(float(value), 3) if value else None


def probe_media(path: Path) -> MediaInfo | None:
    """Container and streams of a media file, or None when it does not probe as media.

    Blocking (PyAV opens and parses the file): call it in a thread."""
    import av  # heavy import kept off the daemon's start-up path

    try:
        with av.open(
            str(path),
            metadata_errors="ignore",
            options={"formatprobesize": str(FORMAT_PROBE_BYTES)},
        ) as container:
            streams = []
            for stream in container.streams:
                ctx = stream.codec_context
                kind = stream.type
                info = StreamInfo(
                    index=stream.index,
                    kind=kind,
                    codec=ctx.name if ctx else "unknown",
                    width=getattr(ctx, "width", None) if kind == "video" else None,
                    height=getattr(ctx, "height", None) if kind == "video" else None,
                    frame_rate=_rate(stream.average_rate) if kind == "video" else None,
                    sample_rate=getattr(ctx, "sample_rate", None) if kind == "audio" else None,
                    channels=getattr(ctx, "channels", None) if kind == "audio" else None,
                )
                streams.append(info)
            duration = container.duration / 1_000_000 if container.duration else None
            return MediaInfo(
                container=container.format.name,
                duration_s=round(duration, 3) if duration else None,
                bit_rate=container.bit_rate or None,
                streams=streams,
            )
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        log.info("media probe failed", path=str(path), reason=str(exc))
        return None


def build_metadata(
    *,
    stream_id: str,
    source_path: Path,
    bucket: str,
    key: str,
    size_bytes: int,
    sha256_hex: str,
    etag: str,
    parts: list[PartRecord],
    started_at: str,
    finished_at: str,
    upload_duration_s: float,
    finalize_duration_s: float,
    generation: int,
    media: MediaInfo | None,
    mtime_ns: int = 0,
    inode: int = 0,
    birth_ns: int = 0,
    node_id: str = "",
    checksum: ChecksumAlgorithm = ChecksumAlgorithm.CRC32,
    verified_by: str = "etag",
    object_checksum: dict[str, str] | None = None,
    storage: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``checksum``: the header every part was sent with (its value per part when it is not the
    part's crc32); ``verified_by``: how the completed object was checked (tailup.integrity);
    ``object_checksum``: the whole object's (algorithm, type, value: as HEAD reports it).
    ``sha256_hex`` may be "" while the SHA-256 follows (tailup.hashplan), or with --sha256 off.
    ``storage``: the class, encryption and tags the object was created with
    (tailup.objectoptions.ObjectOptions.summary), left out when all are the bucket's defaults."""
    return {
        "schema": "tailup.metadata/1",
        "stream_id": stream_id,
        "generation": generation,
        # What tells this recording apart when Redis no longer has its record
        # (tailup.recovery): the same stream id, size and mtime mean it is uploaded.
        "source": {
            "path": str(source_path),
            "name": source_path.name,
            "mtime_ns": mtime_ns,
            "inode": inode,
            "birth_ns": birth_ns,
        },
        "bucket": bucket,
        "key": key,
        "size_bytes": size_bytes,
        "content_type": content_type_for(source_path.name),
        **({"storage": storage} if storage else {}),
        "checksums": {
            "sha256": sha256_hex,
            "object": object_checksum,
            "multipart_etag": etag.strip('"'),
            "part_checksum_algorithm": checksum.value,
            "verified_by": verified_by,
        },
        "part_count": len(parts),
        "parts": [
            {
                "number": p.number,
                "size_bytes": p.size,
                "etag": p.etag.strip('"'),
                "crc32": f"{p.crc32:08x}",
                **({checksum.value: p.checksum} if checksum.stored else {}),
                "uploaded_at": p.uploaded_at,
            }
            for p in parts
        ],
        "started_at": started_at,
        "finished_at": finished_at,
        "upload_duration_s": round(upload_duration_s, 3),
        "finalize_duration_s": round(finalize_duration_s, 3),
        "media": media.summary() if media else None,
        "tailup": {"version": __version__, "host": socket.gethostname(), "node": node_id},
    }


def encode_metadata(document: dict[str, Any]) -> bytes:
    return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
