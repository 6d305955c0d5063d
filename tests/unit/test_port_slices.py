"""Each process's slice of loopback ports (tailup.dev.port_slices): disjoint between pytest-xdist
workers, and with their +10000 twins outside the kernel's ephemeral range."""

from __future__ import annotations

import pytest

from tailup.dev.port_slices import (
    HIGHEST_PORT,
    LOWEST_PORT,
    OTHER_SLOTS,
    SLOTS,
    TWIN_OFFSET,
    XDIST_SLOTS,
    NoPortRegion,
    base_region,
    parse_ephemeral_range,
    slice_for,
    slot_for,
    slot_preference,
)

RANGES = [
    (32_768, 60_999),  # Linux's default
    (49_152, 65_535),  # IANA's (BSD, Windows)
    (20_000, 30_000),  # no room below for a full region: above it
    (15_000, 40_000),
    (32_768, 32_768),
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("32768\t60999\n", (32_768, 60_999)), ("1024 65535", (1024, 65_535))],
)
def test_parse_ephemeral_range(text: str, expected: tuple[int, int]) -> None:
    assert parse_ephemeral_range(text) == expected


@pytest.mark.parametrize("text", ["", "32768", "60999 32768", "80 1000", "1 2 3", "a b"])
def test_parse_ephemeral_range_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_ephemeral_range(text)


@pytest.mark.parametrize(
    ("ephemeral", "region"),
    [
        ((32_768, 60_999), range(12_768, 22_768)),
        ((49_152, 65_535), range(29_152, 39_152)),
        ((20_000, 30_000), range(30_001, 40_001)),
        ((15_000, 40_000), range(40_001, 50_001)),
        ((25_000, 60_999), range(5_000, 15_000)),
        ((12_000, 60_000), range(1_024, 2_000)),
    ],
)
def test_base_region(ephemeral: tuple[int, int], region: range) -> None:
    assert base_region(ephemeral) == region


@pytest.mark.parametrize("ephemeral", [(1024, 65_535), (1024, 60_000), (11_000, 56_000)])
def test_no_region_when_the_ephemeral_range_leaves_no_room(ephemeral: tuple[int, int]) -> None:
    with pytest.raises(NoPortRegion):
        base_region(ephemeral)


@pytest.mark.parametrize(
    ("worker", "pid", "slot"),
    [
        ("gw0", 4242, 0),
        ("gw1", 4242, 1),
        ("gw47", 7, 47),
        (f"gw{XDIST_SLOTS}", 7, 0),  # more workers than slots: they share, bind checks decide
        (None, 5, XDIST_SLOTS + 5),
        (None, OTHER_SLOTS + 5, XDIST_SLOTS + 5),
        ("", 3, XDIST_SLOTS + 3),
        ("master", 3, XDIST_SLOTS + 3),
        ("gwx", 3, XDIST_SLOTS + 3),
        ("gw-1", 3, XDIST_SLOTS + 3),
    ],
)
def test_slot_for(worker: str | None, pid: int, slot: int) -> None:
    assert slot_for(worker, pid) == slot


@pytest.mark.parametrize("ephemeral", RANGES)
def test_slices_and_their_twins_are_disjoint_and_outside_the_ephemeral_range(
    ephemeral: tuple[int, int],
) -> None:
    region = base_region(ephemeral)
    low, high = ephemeral
    seen: set[int] = set()
    for slot in range(SLOTS):
        ports = slice_for(slot, region)
        assert len(ports) >= 100
        mine = {*ports, *(p + TWIN_OFFSET for p in ports)}
        assert len(mine) == 2 * len(ports), "a base port is another's twin"
        assert not mine & seen, f"slot {slot} shares ports with another slot"
        assert all(LOWEST_PORT <= p <= HIGHEST_PORT for p in mine)
        assert not any(low <= p <= high for p in mine), "a port in the ephemeral range"
        seen |= mine


def test_a_slot_outside_the_slots_is_refused() -> None:
    region = base_region((32_768, 60_999))
    with pytest.raises(ValueError):
        slice_for(SLOTS, region)
    with pytest.raises(ValueError):
        slice_for(-1, region)


@pytest.mark.parametrize(
    ("worker", "pid", "first"),
    [
        ("gw0", 1, [0, 1, 2]),
        ("gw47", 1, [47, 0, 1]),
        (None, 3, [XDIST_SLOTS + 3, XDIST_SLOTS + 4]),
        (None, OTHER_SLOTS - 1, [SLOTS - 1, XDIST_SLOTS, XDIST_SLOTS + 1]),
    ],
)
def test_slot_preference_starts_with_its_own_then_its_kind(
    worker: str | None, pid: int, first: list[int]
) -> None:
    order = slot_preference(worker, pid)
    assert order[: len(first)] == first
    assert sorted(order) == list(range(SLOTS)), "every slot, once"
    own_kind = range(XDIST_SLOTS) if worker else range(XDIST_SLOTS, SLOTS)
    assert set(order[: len(own_kind)]) == set(own_kind), "its kind before the others"
