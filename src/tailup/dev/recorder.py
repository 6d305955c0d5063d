"""ffmpeg commands that record a synthetic live source, the way a recorder writes a growing
file."""

from __future__ import annotations

from pathlib import Path

from tailup.dev.process import DevServerError

RECORD_FORMATS: tuple[str, ...] = ("mp4", "faststart", "fmp4", "mkv", "ts", "mov")

_HLS_1S = ["-f", "hls", "-hls_time", "1"]  # 1-s segments
_FORMAT_ARGS: dict[str, list[str]] = {
    "mp4": ["-f", "mp4"],
    "faststart": ["-movflags", "+faststart", "-f", "mp4"],
    "fmp4": ["-movflags", "frag_keyframe+empty_moov", "-f", "mp4"],
    "mkv": ["-f", "matroska"],
    "ts": ["-f", "mpegts"],
    "mov": ["-f", "mov"],
    # Live HLS (tailup --hls): 1-s segments (with a keyframe a second: gop=rate), every one kept
    # in the playlist; ffmpeg rewrites it as x.m3u8.tmp renamed over x.m3u8 after each segment.
    "hls": ["-f", "hls", "-hls_time", "1", "-hls_list_size", "0"],
    "hls-fmp4": ["-f", "hls", "-hls_time", "1", "-hls_list_size", "0", "-hls_segment_type", "fmp4"],
    # The common live configuration, a sliding window: the playlist names the last 3 segments,
    # and ffmpeg deletes a segment once it has left the window (one more kept, ffmpeg's
    # -hls_delete_threshold 1): about 3 s after the segment was closed. Names are never reused
    # (live0.ts, live1.ts, ... on and on).
    "hls-window": [*_HLS_1S, "-hls_list_size", "3", "-hls_flags", "delete_segments"],
}
HLS_FORMATS: tuple[str, ...] = ("hls", "hls-fmp4", "hls-window")


def ffmpeg_exe() -> str:
    """Path of the static ffmpeg shipped by the ``imageio-ffmpeg`` package."""
    try:
        import imageio_ffmpeg
    except ImportError as exc:
        raise DevServerError(
            "imageio-ffmpeg is not installed: pip install imageio-ffmpeg (part of tailup[dev])"
        ) from exc
    return str(imageio_ffmpeg.get_ffmpeg_exe())


def record_cmd(
    out: Path,
    fmt: str,
    seconds: float,
    *,
    live: bool = True,
    size: str = "640x360",
    rate: int = 25,
    bitrate: str | None = None,
    gop: int | None = None,
) -> list[str]:
    """An ffmpeg command recording ``seconds`` of a synthetic source (H.264 + AAC) to ``out``.

    ``fmt`` is one of :data:`RECORD_FORMATS`: ``mp4``, ``faststart`` (MP4 with the index moved to
    the front at the end), ``fmp4`` (fragmented MP4), ``mkv``, ``ts`` (MPEG-TS) or ``mov``; or
    of :data:`HLS_FORMATS` (``out`` is then the playlist, its segments beside it).
    ``live`` reads the source in real time (``-re``), so the file grows like a real recording;
    without it ffmpeg writes as fast as it can. ``bitrate`` (e.g. ``"4M"``) makes the video
    constant-bitrate (filler included), so the file grows at a known pace; by default x264
    picks the size. ``gop`` sets the keyframe interval in frames (x264's default is 250, which
    makes fragmented MP4 write a fragment every 10 s).
    """
    try:
        format_args = _FORMAT_ARGS[fmt]
    except KeyError:
        raise ValueError(
            f"unknown recording format {fmt!r}; accepted: {', '.join(RECORD_FORMATS + HLS_FORMATS)}"
        ) from None
    if seconds <= 0:
        raise ValueError(f"seconds must be > 0, got {seconds!r}")
    if rate <= 0:
        raise ValueError(f"rate must be > 0, got {rate!r}")
    re_flag = ["-re"] if live else []
    cmd = [
        ffmpeg_exe(), "-y", "-loglevel", "error", "-nostdin",
        *re_flag, "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}",
        *re_flag, "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
        "-map", "0:v:0", "-map", "1:a:0",
        "-t", f"{seconds:g}",
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
    ]  # fmt: skip
    if gop is not None:
        cmd += ["-g", str(gop)]
    if bitrate is not None:
        cmd += [
            "-b:v", bitrate, "-minrate", bitrate, "-maxrate", bitrate, "-bufsize", bitrate,
            "-x264-params", "nal-hrd=cbr",
        ]  # fmt: skip
    cmd += ["-c:a", "aac", "-b:a", "128k", *format_args, str(out)]
    return cmd
