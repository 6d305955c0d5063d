"""--hls against the real servers (SeaweedFS, Redis, ffmpeg's HLS muxer): a player reading the
playlist from the bucket while it is recorded never meets a missing segment; the final playlist
and every segment in S3 equal the local files; each segment is sent once, as one stream; a
playlist naming files outside the folder is published once the ones inside are there. With a
sliding window (ffmpeg deletes each segment that left the playlist), each segment is in S3 byte
for byte or, deleted before tailup had read it, nowhere and named by no playlist put."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections import Counter
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from botocore.exceptions import ClientError
from structlog.testing import capture_logs

from harness import Daemon, content, object_bytes, running_daemon, wait_until
from tailup.checkpoint import RedisCheckpointStore
from tailup.dev import MemoryMultipartStore, RedisServer
from tailup.errors import PermanentError
from tailup.integrity import crc32_of
from tailup.keyclaim import claim_key
from tailup.keys import SIDECAR_SUFFIX
from tailup.model import EndCause, StreamState
from tailup.rules.hls import named_files

pytestmark = pytest.mark.asyncio
PLAYER_REFRESH_S = 0.2  # how often the player reads the playlist again, as hls.js does


def _get(s3_client: Any, bucket: str, key: str) -> bytes | None:
    """The object's bytes; None for NoSuchKey."""
    try:
        return bytes(s3_client.get_object(Bucket=bucket, Key=key)["Body"].read())
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None
        raise


async def _in_s3(s3_client: Any, bucket: str, key: str, expected: bytes) -> bool:
    # Off the loop: the daemon runs in this process.
    return await asyncio.to_thread(_get, s3_client, bucket, key) == expected


class Player:
    """Reads the playlist from the bucket, as a player does, and every file it names."""

    def __init__(self, s3_client: Any, bucket: str, playlist_key: str) -> None:
        self.s3, self.bucket, self.key = s3_client, bucket, playlist_key
        self.reads = 0  # playlist reads that found one
        self.segment_reads = 0
        self.missing: list[tuple[int, str]] = []  # (read number, segment key) never found
        self.last: bytes | None = None

    def read_once(self) -> None:
        body = _get(self.s3, self.bucket, self.key)
        if body is None:
            return  # not published yet: a player retries
        self.reads += 1
        self.last = body
        folder = str(PurePosixPath(self.key).parent)
        for rel in named_files(body.decode(), PurePosixPath("x.m3u8")).inside:
            key = f"{folder}/{rel}"
            if _get(self.s3, self.bucket, key) is None:
                self.missing.append((self.reads, key))
            self.segment_reads += 1

    async def play_until(self, done: asyncio.Event) -> None:
        while not done.is_set():
            await asyncio.to_thread(self.read_once)
            await asyncio.sleep(PLAYER_REFRESH_S)


@pytest.mark.parametrize("fmt", ["hls", "hls-fmp4"])
async def test_live_hls_plays_from_s3_with_no_missing_segment(
    daemon_args: dict[str, Any], s3_client: Any, record: Any, fmt: str
) -> None:
    watch: Path = daemon_args["watch"]
    cam = watch / "cam1"
    cam.mkdir()
    playlist = cam / "live.m3u8"
    prefix = f"site-{uuid.uuid4().hex[:6]}"
    bucket = daemon_args["bucket"]
    async with running_daemon(**daemon_args, hls=True, prefix=prefix) as daemon:
        player = Player(s3_client, bucket, f"{prefix}/cam1/live.m3u8")
        done = asyncio.Event()
        playing = asyncio.create_task(player.play_until(done))
        proc = record(playlist, fmt, 6, gop=25)
        assert await asyncio.to_thread(proc.wait) == 0, proc.log_path.read_text()
        local = playlist.read_bytes()
        assert b"#EXT-X-ENDLIST" in local
        await wait_until(
            lambda: _in_s3(s3_client, bucket, player.key, local), "the final playlist in S3"
        )
        done.set()
        await playing
        # The player read the playlist while it grew and never met a missing segment.
        assert player.reads >= 2 and player.segment_reads > 0
        assert player.missing == []
        names = named_files(local.decode(), PurePosixPath(playlist.name)).inside
        await _each_segment_one_stream(daemon, cam, names)
    for rel in names:
        assert object_bytes(s3_client, bucket, f"{prefix}/cam1/{rel}") == (cam / rel).read_bytes()
    head = s3_client.head_object(Bucket=bucket, Key=player.key)
    assert head["ContentType"] == "application/vnd.apple.mpegurl"
    # The playlist never became a recording, and was replaced in place (one key).
    keys = {o["Key"] for o in s3_client.list_objects_v2(Bucket=bucket)["Contents"]}
    media = {k for k in keys if not k.endswith(SIDECAR_SUFFIX)}
    assert media == {player.key} | {f"{prefix}/cam1/{rel}" for rel in names}
    assert daemon.supervisor._hls is not None and daemon.supervisor._hls.puts >= 2


async def _each_segment_one_stream(daemon: Daemon, folder: Path, names: Any) -> None:
    """Every segment completed as one stream, sent once: one PUT or one completed upload of its
    key, never a second; the playlist has no record at all."""
    records = [await daemon.wait_for_state(folder / r, {StreamState.COMPLETED}) for r in names]
    sent = Counter(k for k in daemon.store.puts if not k.endswith(SIDECAR_SUFFIX))
    sent.update(k for k, _ in daemon.store.completes)
    for record in records:
        assert record.generation == 1
        assert sent[record.key] == 1, (record.key, sent)
    assert await daemon.record_for(folder / "live.m3u8") is None


async def test_hls_in_one_folders_table_leaves_the_other_folder_ordinary(
    daemon_args: dict[str, Any], tmp_path: Path, s3_client: Any, record: Any
) -> None:
    """Issue 20.3: hls = true in one folder's [[watch]] table, no --hls. That folder's playlist
    is published in place beside its segments (keyed by their paths); in the other folder a
    playlist and a segment are ordinary recordings (its include names *.m3u8), each under its
    own stream id, never handed to the publisher."""
    live, cams = tmp_path / "live", tmp_path / "cams"
    (live / "door").mkdir(parents=True)
    cams.mkdir()
    playlist = live / "door" / "live.m3u8"
    prefix = f"site-{uuid.uuid4().hex[:6]}"
    bucket = daemon_args["bucket"]
    tables = [
        {"path": str(live), "hls": True, "prefix": prefix},
        {"path": str(cams), "include": ["*.ts", "*.m3u8"]},
    ]
    args = {**daemon_args, "watch": [live, cams]}
    async with running_daemon(**args, watch_tables=tables) as daemon:
        proc = record(playlist, "hls", 4, gop=25)
        desk, notes = cams / "desk0.ts", cams / "notes.m3u8"
        desk.write_bytes(content(188 * 500, "desk"))
        text = b"#EXTM3U\n#EXTINF:1,\ndesk0.ts\n#EXT-X-ENDLIST\n"
        (cams / "notes.m3u8.tmp").write_bytes(text)
        os.rename(cams / "notes.m3u8.tmp", notes)  # as ffmpeg's HLS muxer puts a playlist
        assert await asyncio.to_thread(proc.wait) == 0, proc.log_path.read_text()
        local = playlist.read_bytes()
        key = f"{prefix}/door/live.m3u8"
        await wait_until(lambda: _in_s3(s3_client, bucket, key, local), "the final playlist in S3")
        names = named_files(local.decode(), PurePosixPath(playlist.name)).inside
        await _each_segment_one_stream(daemon, live / "door", names)
        done = {p: await daemon.wait_for_state(p, {StreamState.COMPLETED}) for p in (desk, notes)}
        hls = daemon.supervisor._hls
        assert hls is not None and hls.puts >= 1 and hls.waiting() == {}
    for rel in names:
        object_key = f"{prefix}/door/{rel}"
        assert object_bytes(s3_client, bucket, object_key) == (live / "door" / rel).read_bytes()
    for path, rec in done.items():  # the default template: streams/{stream_id}/{name}
        assert rec.key == f"streams/{rec.stream_id}/{path.name}"
        assert object_bytes(s3_client, bucket, rec.key) == path.read_bytes()
    assert _get(s3_client, bucket, f"{prefix}/notes.m3u8") is None
    assert _get(s3_client, bucket, "notes.m3u8") is None


async def test_a_playlist_naming_files_outside_the_folder_is_published_with_a_warning(
    daemon_args: dict[str, Any], s3_client: Any
) -> None:
    watch: Path = daemon_args["watch"]
    bucket = daemon_args["bucket"]
    outside = watch.parent / "x.ts"
    outside.write_bytes(b"outside")
    text = (
        b"#EXTM3U\n#EXT-X-TARGETDURATION:1\n"
        b"#EXTINF:1,\n../x.ts\n#EXTINF:1,\nhttps://cdn.example/y.ts\n#EXTINF:1,\na.ts\n"
        b"#EXT-X-ENDLIST\n"
    )
    with capture_logs() as logs:
        async with running_daemon(**daemon_args, hls=True) as daemon:
            # The playlist first: it waits for a.ts alone, which comes next.
            tmp = watch / "live.m3u8.tmp"
            tmp.write_bytes(text)
            os.rename(tmp, watch / "live.m3u8")
            hls = daemon.supervisor._hls
            assert hls is not None
            await wait_until(
                lambda: watch / "live.m3u8" in hls.waiting(), "the playlist waiting for a.ts"
            )
            assert hls.waiting()[watch / "live.m3u8"] == {watch / "a.ts"}
            (watch / "a.ts").write_bytes(b"\x47" * 188 * 10)
            await wait_until(
                lambda: _in_s3(s3_client, bucket, "live.m3u8", text), "the playlist in S3"
            )
            assert hls.waiting() == {}
    assert _get(s3_client, bucket, "a.ts") == b"\x47" * 188 * 10
    assert _get(s3_client, bucket, "x.ts") is None  # never uploaded
    warnings = [e for e in logs if e["event"].startswith("playlist names files outside")]
    assert len(warnings) == 1, warnings
    assert warnings[0]["outside"] == ["../x.ts", "https://cdn.example/y.ts"]


async def test_hls_never_suffixes_a_taken_key(redis_server: RedisServer) -> None:
    """A segment's key is its path: taken by another recording (or an object tailup does not
    know), it is an error naming the key and --hls, not a renamed segment the playlist misses."""
    store: Any = MemoryMultipartStore()  # a MultipartStore (its memory twin)
    key = f"hls/{uuid.uuid4().hex[:8]}/live0.ts"
    async with RedisCheckpointStore.connect(redis_server.url, f"t-{uuid.uuid4().hex[:8]}") as cps:
        assert await claim_key(cps, store, key, "s1", check=True, exact=True) == key
        with pytest.raises(PermanentError, match=r"live0\.ts.*--hls"):
            await claim_key(cps, store, key, "s2", check=True, exact=True)
        other = key.replace("live0", "live1")
        await store.put_object(other, b"x", crc32_of(b"x"), "video/mp2t")
        with pytest.raises(PermanentError, match=r"live1\.ts.*--hls"):
            await claim_key(cps, store, other, "s3", check=True, exact=True)


async def test_after_a_restart_a_playlist_finds_its_segments_in_s3_and_none_is_sent_again(
    daemon_args: dict[str, Any], s3_client: Any
) -> None:
    """Segments completed before this daemon started (no completion of theirs reaches its
    publisher) are looked up in S3: the playlist goes up, and no segment is sent a second time."""
    watch: Path = daemon_args["watch"]
    bucket = daemon_args["bucket"]
    segments = {name: bytes([n]) * 188 * 20 for n, name in enumerate(("a.ts", "b.ts"), 1)}
    async with running_daemon(**daemon_args, hls=True) as first:
        for name, data in segments.items():
            (watch / name).write_bytes(data)
        for name in segments:
            await first.wait_for_state(watch / name, {StreamState.COMPLETED})
    text = b"#EXTM3U\n#EXTINF:1,\na.ts\n#EXTINF:1,\nb.ts\n#EXT-X-ENDLIST\n"
    async with running_daemon(**daemon_args, hls=True) as second:
        tmp = watch / "live.m3u8.tmp"
        tmp.write_bytes(text)
        os.rename(tmp, watch / "live.m3u8")
        await wait_until(lambda: _in_s3(s3_client, bucket, "live.m3u8", text), "the playlist in S3")
        resent = [k for k in second.store.puts if k in segments]
        resent += [k for k, _ in second.store.completes if k in segments]
        assert resent == []
    for name, data in segments.items():
        assert _get(s3_client, bucket, name) == data


# -- a sliding window: ffmpeg -hls_list_size 3 -hls_flags delete_segments --------------------

KEEPER_POLL_S = 0.05  # a segment lives about 3 s after it is named: many looks catch it
# Longer than a segment lives after its close (about 3 s), so that ffmpeg deletes the segments
# that leave the window while their streams wait out the grace.
WINDOW_GRACE_S = 8.0
WINDOW_SECONDS = 8  # live0.ts .. live7.ts; ffmpeg deletes live0..live3, keeps live4 (threshold)


class WindowStore:
    """The real store; notes every playlist it puts (each version a player could read), and
    holds the PutObject of ``hold`` (a key and its file) until ffmpeg has deleted the file: a
    segment deleted while its object is being made."""

    def __init__(self, inner: Any, hold: tuple[str, Path] | None) -> None:
        self.inner = inner
        self.hold = hold
        self.held = False  # the held PutObject went on after its file was deleted
        self.playlists: list[bytes] = []

    async def put_object(
        self, key: str, body: Any, crc32: int, content_type: str, **kw: Any
    ) -> str:
        if self.hold is not None and key == self.hold[0]:
            gone = self.hold[1]
            await wait_until(lambda: not gone.exists(), f"ffmpeg deleting {gone.name}", 60)
            self.held = True
        etag = await self.inner.put_object(key, body, crc32, content_type, **kw)
        if key.endswith(".m3u8"):
            self.playlists.append(bytes(body))
        return str(etag)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class Keeper:
    """Copies each segment the local playlist names while it is there (ffmpeg writes a segment
    whole before it names it, and deletes it seconds later): what each segment held, to compare
    S3 with once the file is gone."""

    def __init__(self, playlist: Path) -> None:
        self.playlist = playlist
        self.kept: dict[str, bytes] = {}

    def look(self) -> None:
        try:
            text = self.playlist.read_text()
        except FileNotFoundError:
            return
        for rel in named_files(text, PurePosixPath(self.playlist.name)).inside:
            if str(rel) not in self.kept:
                # Deleted already: the test finds it missing from what was kept.
                with contextlib.suppress(FileNotFoundError):
                    self.kept[str(rel)] = (self.playlist.parent / rel).read_bytes()

    async def keep_until(self, done: asyncio.Event) -> None:
        while not done.is_set():
            await asyncio.to_thread(self.look)
            await asyncio.sleep(KEEPER_POLL_S)


@pytest.mark.parametrize("lifetime", ["deleted-while-its-put-is-in-flight", "deleted-in-grace"])
async def test_a_sliding_window_plays_from_s3_and_each_segment_is_whole_there_or_absent(
    daemon_args: dict[str, Any], s3_client: Any, record: Any, lifetime: str
) -> None:
    """ffmpeg's live configuration: the playlist names the last 3 segments and ffmpeg deletes
    each one that left it, seconds after writing it. A player reading the playlist from S3
    never meets a missing segment; the final playlist in S3 is the local one; each segment is in
    S3 byte for byte, sent once, COMPLETED, or (deleted before tailup had read it all) ABORTED
    with no object at all, and no playlist put names it.

    ``deleted-while-its-put-is-in-flight``: live1.ts's one PutObject is held until ffmpeg has
    deleted the file; it carried every byte, so the segment is COMPLETED (it used to end
    ABORTED, its object left in S3 with no record and no metadata.json owning it).
    ``deleted-in-grace``: 6-MB segments (parts sent while ffmpeg writes them) and a close grace
    longer than a segment lives: the segments that leave the window are deleted mid-upload, and
    their uploads are aborted."""
    watch: Path = daemon_args["watch"]
    cam = watch / "cam1"
    cam.mkdir()
    playlist = cam / "live.m3u8"
    prefix = f"site-{uuid.uuid4().hex[:6]}"
    bucket = daemon_args["bucket"]
    folder_key = f"{prefix}/cam1"
    in_flight = lifetime == "deleted-while-its-put-is-in-flight"
    hold = (f"{folder_key}/live1.ts", cam / "live1.ts") if in_flight else None
    stores: list[WindowStore] = []

    def wrap(real: Any) -> WindowStore:
        stores.append(WindowStore(real, hold))
        return stores[0]

    settings: dict[str, Any] = {} if in_flight else {"close_grace": WINDOW_GRACE_S}
    encode: dict[str, Any] = {"gop": 25} if in_flight else {"gop": 25, "bitrate": "48M"}
    async with running_daemon(
        **daemon_args, hls=True, prefix=prefix, wrap_store=wrap, **settings
    ) as daemon:
        player = Player(s3_client, bucket, f"{folder_key}/live.m3u8")
        keeper = Keeper(playlist)
        done = asyncio.Event()
        watching = [
            asyncio.create_task(player.play_until(done)),
            asyncio.create_task(keeper.keep_until(done)),
        ]
        proc = record(playlist, "hls-window", WINDOW_SECONDS, **encode)
        assert await asyncio.to_thread(proc.wait) == 0, proc.log_path.read_text()
        local = playlist.read_bytes()
        assert b"#EXT-X-ENDLIST" in local
        await wait_until(
            lambda: _in_s3(s3_client, bucket, player.key, local), "the final playlist in S3", 60
        )
        done.set()
        await asyncio.gather(*watching)
        await asyncio.to_thread(player.read_once)  # the final one, at least
        assert player.reads >= 1 and player.missing == []

        on_disk = {p.name for p in cam.glob("*.ts")}
        names = sorted(set(keeper.kept) | on_disk)
        assert len(names) == WINDOW_SECONDS and on_disk < set(names), (names, on_disk)
        for name in on_disk & set(keeper.kept):  # the keeper copied whole segments
            assert keeper.kept[name] == (cam / name).read_bytes(), name
        ended = {StreamState.COMPLETED, StreamState.ABORTED}  # never FAILED, STALLED, live
        records = {n: await daemon.wait_for_state(cam / n, ended, 60) for n in names}
        hls = daemon.supervisor._hls
        assert hls is not None and hls.waiting() == {}
        sent = Counter(k for k in daemon.store.puts if not k.endswith(SIDECAR_SUFFIX))
        sent.update(k for k, _ in daemon.store.completes)
        with_parts = {p.key for p in daemon.store.parts}
        published = list(stores[0].playlists)
    assert published[-1] == local

    completed: set[str] = set()
    for name, rec in records.items():
        key = f"{folder_key}/{name}"
        got = _get(s3_client, bucket, key)
        if rec.state is StreamState.COMPLETED:
            completed.add(name)
            whole = (cam / name).read_bytes() if name in on_disk else keeper.kept[name]
            assert got == whole, f"{name} in S3 is not the segment"
            assert rec.generation == 1 and sent[key] == 1, (name, rec.generation, sent[key])
        else:  # deleted before tailup had read it all: nothing of it in S3
            assert name not in on_disk and rec.end_cause is EndCause.SOURCE_GONE, (name, rec)
            assert got is None, f"{name}: ABORTED, yet its object is in S3"
            assert sent[key] == 0, f"{name}: ABORTED, yet sent"
    # Every version put named segments in S3 only (the player's reads saw some of them).
    for body in published:
        named = {str(p) for p in named_files(body.decode(), PurePosixPath("x.m3u8")).inside}
        assert named <= completed, (named - completed, body)
    # Nothing else: the playlist at one key, each completed segment and its metadata.json; no
    # object of an aborted segment, no upload card, no playlist as a recording.
    listed = s3_client.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/")
    keys = {o["Key"] for o in listed.get("Contents", [])}
    segments = {f"{folder_key}/{n}" for n in completed}
    assert keys == {player.key} | segments | {k + SIDECAR_SUFFIX for k in segments}
    assert on_disk <= completed  # what ffmpeg kept, tailup completed
    aborted = set(names) - completed
    if in_flight:
        assert stores[0].held, "live1.ts's PutObject never waited for its delete"
        assert "live1.ts" in completed
    else:
        # The lifetime under test happened: a segment deleted after some of its parts were in
        # S3, whose upload was aborted and whose object never appeared.
        assert {f"{folder_key}/{n}" for n in aborted} & with_parts, (aborted, with_parts)
