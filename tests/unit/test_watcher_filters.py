"""The watcher's pure filter and its /proc writer probe."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tailup.watcher import DEFAULT_INCLUDE, is_candidate, writers_open
from tailup.watcher.scan import files_with_inodes

CANDIDATES = [
    "clip.mp4",
    "CLIP.MP4",
    "Clip.Mp4",
    "rec.mov",
    "rec.mkv",
    "stream.ts",
    "x.m4v",
    "old.flv",
    "with spaces in name.mp4",
    "odd #?%+& chars.mkv",
    "[brackets] (1).mov",
    "émission à 20h.mp4",
    "日本語の録画.ts",
    "emoji 🎥.mp4",
    "2024-01-01T12:00:00Z.mp4",
    "no_ext_dot.mp4.mp4",
    "a.part.mp4",  # only the last suffix says "partial"
]

NOT_CANDIDATES = [
    ".hidden.mp4",
    ".~lock.clip.mp4#",
    "~$clip.mp4",
    "clip.mp4.part",
    "clip.mp4.PART",
    "clip.mp4.tmp",
    "clip.mp4.crdownload",
    "clip.mp4.partial",
    "clip.mp4.download",
    "clip.mp4~",
    "clip.txt",
    "clip.mp4.json",
    "clip.mp3",
    "mp4",
    "clip.mp4 ",  # trailing space: not the .mp4 extension
    "",
]


@pytest.mark.parametrize("name", CANDIDATES)
def test_candidates(name: str) -> None:
    assert is_candidate(Path("/rec") / name, DEFAULT_INCLUDE)


@pytest.mark.parametrize("name", NOT_CANDIDATES)
def test_not_candidates(name: str) -> None:
    assert not is_candidate(Path("/rec") / name if name else Path("/"), DEFAULT_INCLUDE)


@pytest.mark.parametrize(
    ("name", "include", "expected"),
    [
        ("cam1.MP4", ["cam?.mp4"], True),
        ("cam12.mp4", ["cam?.mp4"], False),
        ("CAM-A.mov", ["cam-[ab].MOV"], True),
        ("clip.mp4", [], False),
        ("clip.webm", ["*.mp4", "*.webm"], True),
        ("clip.mp4.part", ["*"], False),  # partial-file rule beats a wide glob
        ("notes.txt", ["*"], True),
        ("sub/clip.mp4", ["sub/*.mp4"], False),  # globs match the name, never a path
    ],
)
def test_include_patterns(name: str, include: list[str], expected: bool) -> None:
    assert is_candidate(Path("/rec") / name, include) is expected


def test_only_the_name_matters_not_the_folder() -> None:
    assert is_candidate(Path("/.hidden dir/x.mp4.d/clip.mp4"), DEFAULT_INCLUDE)
    assert not is_candidate(Path("/videos.mp4/notes.txt"), DEFAULT_INCLUDE)


# --- writers_open ---------------------------------------------------------------------------------


def test_writers_open_sees_our_own_write_handle(tmp_path: Path) -> None:
    writing = tmp_path / "writing.mp4"
    closed = tmp_path / "closed.mp4"
    reading = tmp_path / "reading.mp4"
    both = tmp_path / "rdwr.mp4"
    closed.write_bytes(b"done")
    reading.write_bytes(b"x")
    both.write_bytes(b"x")
    with (
        writing.open("wb") as w,
        reading.open("rb"),
        both.open("r+b"),
    ):
        w.write(b"growing")
        result = writers_open([writing, closed, reading, both])
    assert result == {writing: True, closed: False, reading: False, both: True}


def test_writers_open_matches_through_a_symlinked_folder(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    alias = tmp_path / "alias"
    alias.symlink_to(real)
    with (real / "clip.mp4").open("wb"):
        assert writers_open([alias / "clip.mp4"]) == {alias / "clip.mp4": True}


def test_writers_open_of_nothing_is_empty() -> None:
    assert writers_open([]) == {}


def test_writers_open_without_proc_cannot_tell(tmp_path: Path) -> None:
    target = tmp_path / "clip.mp4"
    assert writers_open([target], proc=tmp_path / "no-proc") == {target: None}


def _fake_proc(root: Path, target: Path, flags: str) -> Path:
    proc = root / "proc"
    (proc / "self" / "fd").mkdir(parents=True)
    (proc / "4242" / "fd").mkdir(parents=True)
    (proc / "4242" / "fdinfo").mkdir()
    (proc / "4242" / "fd" / "7").symlink_to(target)
    (proc / "4242" / "fdinfo" / "7").write_text(f"pos:\t0\nflags:\t{flags}\nmnt_id:\t24\n")
    return proc


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ("0100000", False),  # O_RDONLY|O_LARGEFILE
        ("0100001", True),  # O_WRONLY
        ("02100002", True),  # O_RDWR|O_CLOEXEC
        ("0101101", True),  # O_WRONLY|O_TRUNC|O_CREAT
    ],
)
def test_writers_open_reads_fdinfo_flags(tmp_path: Path, flags: str, expected: bool) -> None:
    target = tmp_path / "clip.mp4"
    target.write_bytes(b"")
    proc = _fake_proc(tmp_path, target, flags)
    assert writers_open([target], proc=proc) == {target: expected}


def test_writers_open_same_file_twice(tmp_path: Path) -> None:
    target = tmp_path / "clip.mp4"
    fd = os.open(target, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        via_dotdot = tmp_path / "x" / ".." / "clip.mp4"
        (tmp_path / "x").mkdir()
        assert writers_open([target, via_dotdot]) == {target: True, via_dotdot: True}
    finally:
        os.close(fd)


def test_files_with_inodes_finds_every_name_of_an_inode_and_nothing_else(tmp_path: Path) -> None:
    """The walk for a recording's other names (tailup.rules.names): any name, in subfolders,
    hard links included; symlinks (to files or folders) neither listed nor entered."""
    root, outside = tmp_path / "rec", tmp_path / "outside"
    (root / "day1").mkdir(parents=True)
    outside.mkdir()
    first = root / "a.ts"
    first.write_bytes(b"x")
    os.link(first, root / "day1" / "keep.bak")
    os.link(first, outside / "a.ts")  # not under the folders walked
    (root / "other.ts").write_bytes(b"y")
    (root / "link.ts").symlink_to(first)
    (root / "into-outside").symlink_to(outside, target_is_directory=True)
    inode = first.stat().st_ino
    found = files_with_inodes([root], {inode})
    assert found == {inode: [root / "a.ts", root / "day1" / "keep.bak"]}
    assert files_with_inodes([root], {inode + 10**9}) == {}
