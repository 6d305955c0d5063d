"""--rpo (issue 18 point 2): the pure decisions of tailup.rules.tails in tables, the staging keys
against recordings' keys, the --rpo setting's refusals, the budget's try_acquire, and the I/O of
tailup.rpo on the memory store."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any, cast

import pytest

from tailup.budget import ByteBudget
from tailup.cli.parser import build_parser, setting_overrides
from tailup.config import load_settings
from tailup.dev.memory_s3 import MemoryMultipartStore
from tailup.errors import ConfigError
from tailup.keys import (
    KeyContext,
    is_staging_key,
    metadata_key,
    render_key,
    segment_key,
    tail_prefix,
)
from tailup.rpo import delete_tails, list_tails, read_pieces
from tailup.rules.tails import (
    MAX_LOOKS,
    Piece,
    TailSegment,
    TailView,
    acked_prefix_bytes,
    obsolete,
    parse_segment,
    past_end,
    record_look,
    stitch_plan,
    tail_due,
    tail_look_s,
    tail_wait_s,
    unsent_since,
)
from tailup.s3 import MultipartStore

MIB = 1024 * 1024
KEY, UPLOAD = "cams/cam1.ts", "up-1"


def view(**changes: Any) -> TailView:
    base: dict[str, Any] = {
        "size_bytes": 1000,
        "acked_bytes": 0,
        "tail_end_bytes": 0,
        "unsent_since_s": 10.0,
        "now_s": 11.0,
        "rpo_s": 2.0,
        "write_s": 0.0,
    }
    return TailView(**(base | changes))


# -- is a tail write due now? --


@pytest.mark.parametrize(
    ("case", "changes", "due"),
    [
        ("nothing past S3's bytes", {"size_bytes": 500, "acked_bytes": 500}, None),
        ("the tail already covers the file", {"tail_end_bytes": 1000}, None),
        # S3 holds every byte seen: nothing is due, whatever the looks say of their age
        ("covered, no look's time", {"tail_end_bytes": 1000, "unsent_since_s": None}, None),
        ("parts cover it, no look's time", {"acked_bytes": 1000, "unsent_since_s": None}, None),
        ("young bytes wait", {}, None),  # at most 1 s old
        ("due at the RPO", {"now_s": 12.0}, (0, 1000)),
        ("just before it, not yet", {"now_s": 11.99}, None),
        ("a write's duration makes it due earlier", {"now_s": 11.75, "write_s": 0.3}, (0, 1000)),
        ("bytes of unknown age are due at once", {"unsent_since_s": None}, (0, 1000)),
        ("starts at the parts' end", {"now_s": 12.0, "acked_bytes": 600}, (600, 1000)),
        ("starts at the tail's end", {"now_s": 12.0, "tail_end_bytes": 700}, (700, 1000)),
        (
            "whichever is further",
            {"now_s": 12.0, "acked_bytes": 800, "tail_end_bytes": 700},
            (800, 1000),
        ),
        ("capped at a segment", {"now_s": 12.0, "max_segment_bytes": 300}, (0, 300)),
        ("a longer RPO waits longer", {"now_s": 19.9, "rpo_s": 10.0}, None),
        ("a longer RPO is due at its time", {"now_s": 20.0, "rpo_s": 10.0}, (0, 1000)),
    ],
)
def test_tail_due(case: str, changes: dict[str, Any], due: tuple[int, int] | None) -> None:
    assert tail_due(view(**changes)) == due, case


@pytest.mark.parametrize(
    ("case", "changes", "wait_s"),
    [
        ("nothing unsent: the look interval", {"tail_end_bytes": 1000}, 0.2),
        ("due far off: the look interval", {"now_s": 10.5}, 0.2),
        # due at 12.0: 0.05 s from now, not at the next look 0.2 s away
        ("due before the next look: at its time", {"now_s": 11.95}, 0.05),
        ("due now", {"now_s": 12.5}, 0.0),
    ],
)
def test_tail_wait_s(case: str, changes: dict[str, Any], wait_s: float) -> None:
    assert tail_wait_s(view(**changes)) == pytest.approx(wait_s), case


@pytest.mark.parametrize(("rpo_s", "look_s"), [(1.0, 0.1), (2.0, 0.2), (10.0, 1.0), (60.0, 1.0)])
def test_tail_look_s(rpo_s: float, look_s: float) -> None:
    assert tail_look_s(rpo_s) == pytest.approx(look_s)


@pytest.mark.parametrize(
    ("looks", "now_s", "size", "covered", "kept"),
    [
        ([], 1.0, 100, 0, [(1.0, 100)]),
        ([], 1.0, 100, 100, [(1.0, 100)]),  # S3 covers the file: the last such look stays
        ([(1.0, 100)], 2.0, 100, 0, [(2.0, 100)]),  # same size: the later look
        ([(1.0, 100)], 2.0, 150, 0, [(1.0, 100), (2.0, 150)]),
        ([(1.0, 100), (2.0, 150)], 3.0, 200, 160, [(2.0, 150), (3.0, 200)]),
        ([(1.0, 100), (2.0, 150)], 3.0, 200, 100, [(1.0, 100), (2.0, 150), (3.0, 200)]),
        # a look that saw exactly the bytes S3 holds is the last one needed
        ([(1.0, 100), (2.0, 150)], 3.0, 200, 150, [(2.0, 150), (3.0, 200)]),
        ([(1.0, 100), (2.0, 150)], 3.0, 120, 0, [(1.0, 100), (3.0, 120)]),  # it shrank
    ],
)
def test_record_look(
    looks: list[tuple[float, int]],
    now_s: float,
    size: int,
    covered: int,
    kept: list[tuple[float, int]],
) -> None:
    assert record_look(looks, now_s=now_s, size_bytes=size, covered_bytes=covered) == kept


def test_record_look_thins_out_but_keeps_the_first_and_the_last() -> None:
    looks: list[tuple[float, int]] = []
    for n in range(1, 3 * MAX_LOOKS):
        looks = record_look(looks, now_s=float(n), size_bytes=n, covered_bytes=0)
    assert len(looks) <= MAX_LOOKS
    assert looks[0] == (1.0, 1)
    assert looks[-1] == (float(3 * MAX_LOOKS - 1), 3 * MAX_LOOKS - 1)


def rising(count: int) -> list[tuple[float, int]]:
    """``count`` looks, each later and longer than the one before."""
    return [(float(n), n) for n in range(1, count + 1)]


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        (MAX_LOOKS - 1, MAX_LOOKS),  # up to MAX_LOOKS, every one
        (MAX_LOOKS, MAX_LOOKS // 2 + 1),  # one past: every other one, the first and the last
        # (a longer history than it ever keeps, given: the same rule, odd count or even)
        (MAX_LOOKS + 1, MAX_LOOKS // 2 + 2),
    ],
)
def test_record_look_thins_every_other_look(given: int, kept: int) -> None:
    looks = rising(given)
    now = (float(given + 1), given + 1)
    got = record_look(looks, now_s=now[0], size_bytes=now[1], covered_bytes=0)
    every = [*looks, now]
    if len(every) > MAX_LOOKS:
        every = [look for i, look in enumerate(every) if i % 2 == 0 or i == len(every) - 1]
    assert got == every
    assert len(got) == kept


@pytest.mark.parametrize(
    ("offset", "since"), [(0, None), (99, None), (100, 1.0), (149, 1.0), (150, 2.0), (999, 2.0)]
)
def test_unsent_since(offset: int, since: float | None) -> None:
    assert unsent_since([(1.0, 100), (2.0, 150)], offset) == since


def seg(start: int, end: int) -> TailSegment:
    return TailSegment(start, end, segment_key(KEY, UPLOAD, start, end))


@pytest.mark.parametrize(
    ("acked", "gone"), [(0, []), (99, []), (100, [(0, 100)]), (250, [(0, 100), (100, 200)])]
)
def test_obsolete(acked: int, gone: list[tuple[int, int]]) -> None:
    segments = [seg(0, 100), seg(100, 200), seg(200, 300)]
    assert obsolete(segments, acked) == [seg(*g) for g in gone]


@pytest.mark.parametrize(
    ("size", "gone"), [(300, []), (299, [(200, 300)]), (150, [(100, 200), (200, 300)])]
)
def test_past_end(size: int, gone: list[tuple[int, int]]) -> None:
    assert past_end([seg(0, 100), seg(100, 200), seg(200, 300)], size) == [seg(*g) for g in gone]


@pytest.mark.parametrize(
    ("parts", "acked"),
    [({}, 0), ({2: 8}, 0), ({1: 8}, 8), ({1: 8, 2: 8}, 16), ({1: 8, 2: 8, 4: 8}, 16)],
)
def test_acked_prefix_bytes(parts: dict[int, int], acked: int) -> None:
    assert acked_prefix_bytes(parts) == acked


# -- names --


def test_segment_keys_round_trip_and_list_in_file_order() -> None:
    prefix = tail_prefix(KEY, UPLOAD)
    keys = [segment_key(KEY, UPLOAD, s, e) for s, e in [(9, 10), (10, 1000), (1000, 10**12)]]
    assert sorted(keys) == keys
    assert [parse_segment(prefix, k) for k in keys] == [
        seg(9, 10),
        seg(10, 1000),
        seg(1000, 10**12),
    ]
    assert all(is_staging_key(k) for k in keys)


@pytest.mark.parametrize(
    ("name", "size"),
    [
        ("tail.1-2", None),
        ("tail.000000000000005-000000000000005", None),
        ("other", None),
        ("tail.000000000000000-000000000000005", 4),
    ],
)
def test_parse_segment_refuses_what_is_not_a_whole_segment(name: str, size: int | None) -> None:
    assert parse_segment(tail_prefix(KEY, UPLOAD), tail_prefix(KEY, UPLOAD) + name, size) is None


def ctx(relpath: str) -> KeyContext:
    return KeyContext("sid1", PurePosixPath(relpath), "w", datetime(2026, 12, 7, tzinfo=UTC), "h")


@pytest.mark.parametrize(
    "template", ["{relpath}", "streams/{stream_id}/{relpath}", "{name}", "x/{stem}.{ext}"]
)
def test_no_recording_key_is_a_staging_key(template: str) -> None:
    """A file whose key would look like a tail segment (a folder named like one) gets another."""
    relpath = "cam1.ts.tailup/up-1/tail.000000000000000-000000000000005"
    key = render_key(template, ctx(relpath))
    assert not is_staging_key(key)
    assert not is_staging_key(metadata_key(key))


def test_ordinary_keys_are_not_staging_keys() -> None:
    for key in ["a/cam1.ts", "a/cam1.ts.metadata.json", "a.tailup/b/tail.1-2", "tail.0-1"]:
        assert not is_staging_key(key)


# -- stitching (salvage) --


def pieces(*spec: tuple[tuple[int, int], int, int]) -> tuple[Piece, ...]:
    return tuple(Piece(seg(*s).key, offset, length) for s, offset, length in spec)


@pytest.mark.parametrize(
    ("case", "parts", "tails", "keep", "final", "end", "dropped"),
    [
        ("nothing", [], [], (), (), 0, ()),
        ("parts only", [(1, 8 * MIB), (2, 8 * MIB)], [], (1, 2), (), 16 * MIB, ()),
        (
            "tails only",
            [],
            [(0, 100), (100, 250)],
            (),
            (pieces(((0, 100), 0, 100), ((100, 250), 0, 150)),),
            250,
            (),
        ),
        (
            "tails after the parts",
            [(1, 8 * MIB)],
            [(8 * MIB, 8 * MIB + 10)],
            (1,),
            (pieces(((8 * MIB, 8 * MIB + 10), 0, 10)),),
            8 * MIB + 10,
            (),
        ),
        (
            "a tail overlapping the parts' end is cut",
            [(1, 8 * MIB)],
            [(8 * MIB - 5, 8 * MIB + 10)],
            (1,),
            (pieces(((8 * MIB - 5, 8 * MIB + 10), 5, 10)),),
            8 * MIB + 10,
            (),
        ),
        (
            "tails wholly inside the parts are left",
            [(1, 8 * MIB)],
            [(0, 100)],
            (1,),
            (),
            8 * MIB,
            (),
        ),
        (
            "a hole in the tails ends the run",
            [(1, 8 * MIB)],
            [(8 * MIB, 8 * MIB + 10), (8 * MIB + 20, 8 * MIB + 30)],
            (1,),
            (pieces(((8 * MIB, 8 * MIB + 10), 0, 10)),),
            8 * MIB + 10,
            (),
        ),
        (
            "the furthest-reaching tail is taken",
            [],
            [(0, 10), (0, 30), (5, 20), (30, 40)],
            (),
            (pieces(((0, 30), 0, 30), ((30, 40), 0, 10)),),
            40,
            (),
        ),
        (
            "parts past a gap are dropped; tails go on from the gap",
            [(1, 8 * MIB), (3, 8 * MIB)],
            [(8 * MIB, 8 * MIB + 7)],
            (1,),
            (pieces(((8 * MIB, 8 * MIB + 7), 0, 7)),),
            8 * MIB + 7,
            (3,),
        ),
        (
            "parts of the least size are not short",
            [(1, 5 * MIB), (2, 5 * MIB)],
            [(10 * MIB, 10 * MIB + 3)],
            (1, 2),
            (pieces(((10 * MIB, 10 * MIB + 3), 0, 3)),),
            10 * MIB + 3,
            (),
        ),
        (
            "the furthest-reaching of the tails covering the position, not the latest-starting",
            [],
            [(0, 10), (5, 30), (8, 20)],
            (),
            (pieces(((0, 10), 0, 10), ((5, 30), 5, 20)),),
            30,
            (),
        ),
        ("a one-byte tail", [], [(0, 1)], (), (pieces(((0, 1), 0, 1)),), 1, ()),
        (
            "a short part is the last",
            [(1, 8 * MIB), (2, 100), (3, 8 * MIB)],
            [(8 * MIB + 100, 8 * MIB + 200)],
            (1, 2),
            (),
            8 * MIB + 100,
            (3,),
        ),
    ],
)
def test_stitch_plan(
    case: str,
    parts: list[tuple[int, int]],
    tails: list[tuple[int, int]],
    keep: tuple[int, ...],
    final: tuple[tuple[Piece, ...], ...],
    end: int,
    dropped: tuple[int, ...],
) -> None:
    plan = stitch_plan(parts, [seg(*t) for t in tails])
    assert (plan.keep_parts, plan.final_parts, plan.end_bytes, plan.dropped_parts) == (
        keep,
        final,
        end,
        dropped,
    ), case
    assert plan.tail_bytes == sum(p.length for part in plan.final_parts for p in part)


def test_stitch_plan_splits_past_the_largest_part() -> None:
    plan = stitch_plan([], [seg(0, 25), seg(25, 30)], max_part_bytes=10)
    assert plan.final_parts == (
        pieces(((0, 25), 0, 10)),
        pieces(((0, 25), 10, 10)),
        pieces(((0, 25), 20, 5), ((25, 30), 0, 5)),
    )


# -- I/O on the memory store --


async def test_list_read_and_delete_tails() -> None:
    memory = MemoryMultipartStore()
    store = cast(MultipartStore, memory)
    data = bytes(range(256)) * 4
    for start, end in [(0, 300), (300, 1024)]:
        body = data[start:end]
        await store.put_object(segment_key(KEY, UPLOAD, start, end), body, _crc(body), "x")
    await store.put_object(KEY, b"the recording", _crc(b"the recording"), "x")
    await store.put_object(tail_prefix(KEY, UPLOAD) + "junk", b"j", _crc(b"j"), "x")
    tails = await list_tails(store, KEY, UPLOAD)
    assert tails == [seg(0, 300), seg(300, 1024)]
    plan = stitch_plan([], tails)
    assert bytes(await read_pieces(store, plan.final_parts[0])) == data
    assert await delete_tails(store, KEY, UPLOAD) == 2
    assert await list_tails(store, KEY, UPLOAD) == []
    assert KEY in memory.objects  # only segments go


def _crc(body: bytes) -> int:
    import zlib

    return zlib.crc32(body)


# -- the budget never lends a tail what a part waits for --


async def test_try_acquire_yields_to_waiting_parts() -> None:
    budget = ByteBudget(10)
    assert budget.try_acquire(6) == 6
    assert budget.try_acquire(6) is None  # does not fit
    waiter = asyncio.create_task(budget.acquire(8))
    await asyncio.sleep(0)
    await budget.release(6)
    assert budget.try_acquire(1) is None  # a part waits: it goes first
    assert await waiter == 8
    assert budget.try_acquire(2) == 2
    assert budget.in_use_bytes == 10


# -- the setting --


@pytest.mark.parametrize(
    ("given", "seconds"),
    [
        (None, None),
        ("off", None),
        (" OFF ", None),
        ("", None),  # TAILUP_RPO= set empty
        ("1", 1.0),  # the least it takes
        ("2", 2.0),
        ("1.5", 1.5),
        ("1m", 60.0),
        (3, 3.0),
    ],
)
def test_rpo_setting(given: object, seconds: float | None) -> None:
    overrides = {"bucket": "b"} | ({} if given is None else {"rpo": given})
    assert load_settings(overrides).rpo == seconds


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ("0", "not a positive number"),
        ("-2", "'-2' is not"),
        ("0.5", "below 1 s"),
        ("soon", "soon"),
    ],
)
def test_rpo_refusals_name_the_flag_and_the_form(given: str, said: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"bucket": "b", "rpo": given})
    message = str(info.value)
    for part in ("--rpo", "TAILUP_RPO", "off, or a number of seconds", said):
        assert part in message


def test_rpo_flag_reaches_the_settings(capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(["run", "--rpo", "2"])
    assert setting_overrides(args)["rpo"] == "2"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--help"])
    assert "--rpo SECONDS" in capsys.readouterr().out
