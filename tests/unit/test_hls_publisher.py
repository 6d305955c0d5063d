"""tailup.hlspublish on the memory S3: what it remembers as in S3 follows the playlists (a
bound on memory), and what it forgot is looked up in S3 once, not re-sent nor waited for."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tailup import hlspublish
from tailup.dev import MemoryMultipartStore
from tailup.hlspublish import HlsPublisher
from tailup.integrity import crc32_of

pytestmark = pytest.mark.asyncio


class CountingStore(MemoryMultipartStore):
    heads = 0

    async def head_object(self, key: str, *, checksum: bool = False) -> Any:
        self.heads += 1
        return await super().head_object(key, checksum=checksum)


async def _io(call: Callable[..., Any], *args: Any) -> Any:
    return call(*args)


def _playlist(folder: Path, *names: str) -> Path:
    lines = "".join(f"#EXTINF:1,\n{n}\n" for n in names)
    path = folder / "live.m3u8"
    path.write_text(f"#EXTM3U\n{lines}")
    return path


async def test_what_a_playlist_names_is_remembered_with_it_and_forgotten_ones_are_looked_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hlspublish, "RECENT_KEPT", 1)
    store = CountingStore()
    publisher = HlsPublisher(
        store,  # type: ignore[arg-type]
        prefix_of=lambda _root: "p",
        options_of=lambda _root: None,
        io=_io,
        root_of=lambda _path: tmp_path,
    )
    for name in ("a.ts", "b.ts", "c.ts"):
        (tmp_path / name).write_bytes(name.encode())
    await store.put_object("p/a.ts", b"a.ts", crc32_of(b"a.ts"), "video/mp2t")
    await publisher.file_in_s3(tmp_path / "a.ts")
    await publisher.file_in_s3(tmp_path / "b.ts")  # a.ts is forgotten (RECENT_KEPT = 1)
    playlist = _playlist(tmp_path, "a.ts", "b.ts")
    await publisher.playlist_changed(playlist)
    assert store.heads == 1  # a.ts, found in S3 with its size: not waited for
    assert await store.get_object("p/live.m3u8") == playlist.read_bytes()
    # Rewritten with c.ts: it waits for c.ts alone; a.ts and b.ts are known as the playlist's.
    playlist = _playlist(tmp_path, "a.ts", "b.ts", "c.ts")
    await publisher.playlist_changed(playlist)
    assert publisher.waiting() == {playlist: frozenset({tmp_path / "c.ts"})}
    await publisher.file_in_s3(tmp_path / "c.ts")
    assert await store.get_object("p/live.m3u8") == playlist.read_bytes()
    assert store.heads == 2 and publisher.puts == 2  # c.ts looked up once, while missing
    publisher.close()


async def test_a_window_naming_a_segment_deleted_before_its_upload_waits_for_the_next_one(
    tmp_path: Path,
) -> None:
    """A sliding window (ffmpeg's delete_segments): live1.ts was deleted before tailup had read
    it (its stream aborted, nothing in S3). The version naming it is never put; the recorder's
    next version, which names only segments in S3, is, and nothing waits any more."""
    store = CountingStore()
    publisher = HlsPublisher(
        store,  # type: ignore[arg-type]
        prefix_of=lambda _root: "p",
        options_of=lambda _root: None,
        io=_io,
        root_of=lambda _path: tmp_path,
    )
    for name in ("live0.ts", "live2.ts", "live3.ts", "live4.ts"):
        (tmp_path / name).write_bytes(name.encode())
        await store.put_object(f"p/{name}", name.encode(), crc32_of(name.encode()), "video/mp2t")
    await publisher.file_in_s3(tmp_path / "live0.ts")
    await publisher.file_in_s3(tmp_path / "live2.ts")
    first = _playlist(tmp_path, "live0.ts", "live1.ts", "live2.ts")
    await publisher.playlist_changed(first)
    assert publisher.waiting() == {first: frozenset({tmp_path / "live1.ts"})}
    assert await store.head_object("p/live.m3u8") is None  # looked up: not in S3, not put
    await publisher.file_in_s3(tmp_path / "live3.ts")
    await publisher.file_in_s3(tmp_path / "live4.ts")
    assert publisher.waiting() == {first: frozenset({tmp_path / "live1.ts"})}
    window = _playlist(tmp_path, "live2.ts", "live3.ts", "live4.ts")
    await publisher.playlist_changed(window)
    assert publisher.waiting() == {}
    assert await store.get_object("p/live.m3u8") == window.read_bytes()
    assert publisher.puts == 1
    publisher.close()
