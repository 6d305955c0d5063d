"""tailup.rules.salvage: which parts make a salvaged object, where it goes, whether it plays."""

from __future__ import annotations

import struct

import pytest

from tailup.plan import MiB, PartPlan, PartSizing
from tailup.rules.salvage import (
    MIN_PART_BYTES,
    AtKey,
    Listed,
    Place,
    Plays,
    choose_parts,
    choose_target,
    judge_playability,
    nodes_due,
    top_level_boxes,
    upload_age_s,
)

PLAN = PartPlan(5 * MiB, PartSizing.GROWING)
FULL = 5 * MiB


def parts(*sizes: int, start: int = 1) -> list[Listed]:
    return [Listed(start + i, f'"e{start + i}"', size) for i, size in enumerate(sizes)]


@pytest.mark.parametrize(
    ("listed", "plan", "numbers", "left_out", "why"),
    [
        # every part in a row, the last one short: all of them, nothing said
        (parts(FULL, FULL, 123), PLAN, (1, 2, 3), (), ""),
        (parts(FULL, FULL), PLAN, (1, 2), (), ""),
        # a hole: the object ends before it
        ([*parts(FULL), *parts(FULL, FULL, start=3)], PLAN, (1,), (3, 4), "part 2 is missing"),
        # no part 1: nothing
        (parts(FULL, start=2), PLAN, (), (2,), "part 1 is missing"),
        ([], PLAN, (), (), "S3 holds no part of it"),
        # a short part in the middle ends the object (S3 would refuse what follows)
        (parts(FULL, 1000, FULL), PLAN, (1, 2), (3,), "part 2 is 1000 bytes, short"),
        # longer than its plan: not where the plan puts it
        (parts(FULL, FULL + 1), PLAN, (1,), (2,), "more than the 5242880 its plan"),
        # without a plan only S3's 5 MiB rule is checked
        (parts(FULL + 7, FULL, 9), None, (1, 2, 3), (), ""),
        (parts(FULL, MIN_PART_BYTES - 1, FULL), None, (1, 2), (3,), "short of its 5242880"),
    ],
)
def test_choose_parts(
    listed: list[Listed],
    plan: PartPlan | None,
    numbers: tuple[int, ...],
    left_out: tuple[int, ...],
    why: str,
) -> None:
    choice = choose_parts(listed, plan)
    assert tuple(p.number for p in choice.parts) == numbers
    assert choice.left_out == left_out
    assert choice.size_bytes == sum(p.size for p in listed if p.number in numbers)
    if why:
        assert why in choice.why
    else:
        assert choice.why == ""


def test_a_part_listed_twice_is_the_checkpoints_version_else_the_last() -> None:
    listed = [Listed(1, '"old"', FULL), Listed(1, '"new"', FULL), Listed(2, '"b"', 10)]
    assert choose_parts(listed, PLAN).parts[0].etag == '"new"'
    chosen = choose_parts(listed, PLAN, {1: "old"}).parts[0]
    assert chosen.etag == '"old"'


def box(kind: str, body: bytes = b"") -> bytes:
    return struct.pack(">I4s", 8 + len(body), kind.encode()) + body


FTYP = box("ftyp", b"isom\0\0\2\0isomiso2avc1mp41")


@pytest.mark.parametrize(
    ("name", "head", "plays", "why"),
    [
        ("cam.ts", None, Plays.YES, "MPEG-TS"),
        ("cam.TS", None, Plays.YES, "MPEG-TS"),
        ("cam.mkv", None, Plays.YES, "Matroska"),
        ("cam.flv", None, Plays.YES, "FLV"),
        ("cam.mp4", None, Plays.UNKNOWN, "only when fragmented"),
        # ffmpeg's plain MP4 while recording: ftyp, free, mdat (moov comes at the end)
        ("cam.mp4", FTYP + box("free") + box("mdat", b"x" * 64), Plays.NO, "never was"),
        ("cam.mov", FTYP + box("wide") + box("mdat", b"x" * 64), Plays.NO, "fragmented MP4"),
        # fragmented: moov with mvex, then moof/mdat pairs
        ("cam.mp4", FTYP + box("moov", box("mvhd", b"\0" * 8) + box("mvex")), Plays.YES, "moof"),
        ("cam.mp4", FTYP + box("moof") + box("mdat"), Plays.YES, "fragmented"),
        ("cam.mp4", FTYP + box("moov", box("mvhd")) + box("mdat"), Plays.UNKNOWN, "moov"),
        ("cam.mp4", b"\xff" * 32, Plays.UNKNOWN, "no MP4 box"),
        ("cam.avi", None, Plays.UNKNOWN, "not a known container"),
    ],
)
def test_judge_playability(name: str, head: bytes | None, plays: Plays, why: str) -> None:
    judged = judge_playability(name, head)
    assert judged.plays is plays
    assert why in judged.why


def test_boxes_read_a_64_bit_size_and_stop_at_garbage() -> None:
    large = struct.pack(">I4sQ", 1, b"mdat", 16 + 4) + b"abcd"
    assert [(k, s) for k, _, s in top_level_boxes(FTYP + large)] == [
        ("ftyp", len(FTYP)),
        ("mdat", 20),
    ]
    assert top_level_boxes(struct.pack(">I4s", 3, b"ftyp")) == []


@pytest.mark.parametrize(
    ("at_key", "size", "place", "conditional", "completes"),
    [
        (None, 100, Place.FREE, True, True),
        (AtKey(50, '"own"'), 100, Place.REPLACE, False, True),
        (AtKey(100, '"own"'), 100, Place.KEEP, False, False),
        (AtKey(10, '"other"'), 100, Place.TAKEN, True, False),
    ],
)
def test_choose_target(
    at_key: AtKey | None, size: int, place: Place, conditional: bool, completes: bool
) -> None:
    target = choose_target(at_key, ['"own"', ""], size)
    assert (target.place, target.conditional, target.completes) == (place, conditional, completes)
    assert target.why


def test_upload_age_counts_from_its_last_part() -> None:
    assert upload_age_s(100.0, [150.0, 120.0], 200.0) == 50.0
    assert upload_age_s(100.0, [], 200.0) == 100.0


@pytest.mark.parametrize(
    ("alive", "gone_since", "now", "due", "since"),
    [
        # first seen gone: the clock starts
        ({"a": False}, {}, 100.0, [], {"a": 100.0}),
        # gone long enough
        ({"a": False}, {"a": 100.0}, 160.0, ["a"], {"a": 100.0}),
        ({"a": False}, {"a": 100.0}, 159.0, [], {"a": 100.0}),
        # back alive: starts over; a node no longer listed is forgotten
        ({"a": True, "b": False}, {"a": 10.0, "c": 1.0}, 200.0, [], {"b": 200.0}),
    ],
)
def test_nodes_due(
    alive: dict[str, bool],
    gone_since: dict[str, float],
    now: float,
    due: list[str],
    since: dict[str, float],
) -> None:
    assert nodes_due(alive, gone_since, now, 60.0) == (due, since)
