"""The part plan against S3's multipart limits and against a brute-force reference; the uniform
plan (--part-sizing uniform) against tables of literal values.

Expected values are derived here from S3's rules, from the plan's stated rule (sizes double every
500 parts, capped at 5 GiB) written out as a loop, and from literal numbers; never asked of the
implementation. Prefix sums of the sizes give every part's start and end, and a bisect over those
ends answers "which part holds this offset" independently of the plan's own arithmetic.
"""

from __future__ import annotations

import bisect
import random
from functools import cache

import pytest

from tailup.plan import PartPlan, PartRange, PartSizing, part_size_cap, part_size_for

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB
TIB = 1024 * GIB

# S3's multipart limits (https://docs.aws.amazon.com/AmazonS3/latest/userguide/qfacts.html).
S3_MIN_PART = 5 * MIB
S3_MAX_PART = 5 * GIB
S3_MAX_PARTS = 10_000
S3_MAX_OBJECT = 5 * TIB

BASES = [5 * MIB, 8 * MIB, 16 * MIB, 100 * MIB, 5 * GIB]
BASE_IDS = ["5MiB", "8MiB", "16MiB", "100MiB", "5GiB"]
# Part numbers around the tier changes (every 500 parts) and the 10,000-part limit.
BOUNDARY_PARTS = [1, 2, 499, 500, 501, 999, 1000, 1001, 1500, 1501, 5000, 5001, 9999, 10_000]


# The rule the plan promises (src/tailup/plan.py): part sizes double every 500 parts, from the
# base, capped at 5 GiB. Written out here as a loop, never asking the plan.
PARTS_PER_DOUBLING = 500


@cache
def sizes_of(base: int) -> tuple[int, ...]:
    """The nominal size of parts 1..10,000 by the rule above (index 0 is part 1)."""
    sizes = []
    size = base
    for number in range(1, S3_MAX_PARTS + 1):
        if number > 1 and (number - 1) % PARTS_PER_DOUBLING == 0:
            size = min(size * 2, S3_MAX_PART)
        sizes.append(size)
    return tuple(sizes)


@cache
def ends_of(base: int) -> tuple[int, ...]:
    """Offset past the last byte of parts 1..10,000: running sums of the sizes, by a plain loop."""
    ends = []
    total = 0
    for size in sizes_of(base):
        total += size
        ends.append(total)
    return tuple(ends)


def ref_start(base: int, number: int) -> int:
    return 0 if number == 1 else ends_of(base)[number - 2]


def ref_part_containing(base: int, offset: int) -> int:
    # The first part whose end is past the offset.
    return bisect.bisect_right(ends_of(base), offset) + 1


def ref_full_parts(base: int, file_size: int) -> int:
    # Parts whose whole range lies inside the file.
    return bisect.bisect_right(ends_of(base), file_size)


def ref_final_layout(base: int, file_size: int) -> list[tuple[int, int, int]]:
    layout = []
    start = 0
    number = 1
    for size in sizes_of(base):
        if start >= file_size:
            break
        layout.append((number, start, min(start + size, file_size)))
        start += size
        number += 1
    return layout


def interesting_offsets(base: int, count: int = 150, seed: int = 1234) -> list[int]:
    """Random offsets over the whole plan, plus the bytes around every boundary that matters."""
    rng = random.Random(seed + base)
    total = ends_of(base)[-1]
    offsets = {0, 1, total - 1}
    offsets.update(rng.randrange(total) for _ in range(count))
    # Small offsets too: the first parts are where a live recording spends its time.
    offsets.update(rng.randrange(50 * base) for _ in range(count // 3))
    for number in BOUNDARY_PARTS:
        start = ref_start(base, number)
        for delta in (-1, 0, 1):
            if 0 <= start + delta < total:
                offsets.add(start + delta)
    for limit in (S3_MAX_OBJECT - 1, S3_MAX_OBJECT):
        if limit < total:
            offsets.add(limit)
    return sorted(offsets)


# -- part sizes --


@pytest.mark.parametrize("base", BASES, ids=BASE_IDS)
def test_every_part_size_is_within_s3_limits(base: int) -> None:
    for number, size in enumerate(sizes_of(base), start=1):
        assert S3_MIN_PART <= size <= S3_MAX_PART, (number, size)


@pytest.mark.parametrize("base", BASES, ids=BASE_IDS)
def test_first_part_is_the_base_size(base: int) -> None:
    assert PartPlan(base).part_size(1) == base


@pytest.mark.parametrize("base", BASES, ids=BASE_IDS)
def test_part_sizes_follow_the_doubling_rule(base: int) -> None:
    plan = PartPlan(base)
    for number, size in enumerate(sizes_of(base), start=1):
        assert plan.part_size(number) == size, number


@pytest.mark.parametrize(
    ("base", "number", "size"),
    [
        # 5 MiB base: 500 parts of 5 MiB, 500 of 10 MiB, ... doubling until the 5 GiB cap.
        (5 * MIB, 1, 5 * MIB),
        (5 * MIB, 500, 5 * MIB),
        (5 * MIB, 501, 10 * MIB),
        (5 * MIB, 1000, 10 * MIB),
        (5 * MIB, 1001, 20 * MIB),
        (5 * MIB, 1501, 40 * MIB),
        (5 * MIB, 5000, 2560 * MIB),
        (5 * MIB, 5001, 5 * GIB),  # 5120 MiB: the cap is reached exactly
        (5 * MIB, 10_000, 5 * GIB),
        # 100 MiB base: 3200 MiB in the sixth tier, then capped (6400 MiB would pass 5 GiB).
        (100 * MIB, 2500, 1600 * MIB),
        (100 * MIB, 2501, 3200 * MIB),
        (100 * MIB, 3001, 5 * GIB),
        (100 * MIB, 10_000, 5 * GIB),
        (5 * GIB, 1, 5 * GIB),
        (5 * GIB, 501, 5 * GIB),
    ],
)
def test_part_size_literal_values(base: int, number: int, size: int) -> None:
    assert PartPlan(base).part_size(number) == size


@pytest.mark.parametrize(
    ("base", "start", "parts_for_5tib"),
    [
        # Part 501 starts after 500 parts of the base; 5 TiB needs 5,525 parts at 5 MiB.
        (5 * MIB, 500 * 5 * MIB, 5525),
        (100 * MIB, 500 * 100 * MIB, 3409),
    ],
)
def test_tier_start_and_parts_for_the_largest_object(
    base: int, start: int, parts_for_5tib: int
) -> None:
    plan = PartPlan(base)
    assert plan.part_start(501) == start
    assert len(plan.final_layout(S3_MAX_OBJECT)) == parts_for_5tib


@pytest.mark.parametrize("base", BASES, ids=BASE_IDS)
def test_part_sizes_never_decrease(base: int) -> None:
    sizes = sizes_of(base)
    for number in range(2, len(sizes) + 1):
        assert sizes[number - 1] >= sizes[number - 2], number


@pytest.mark.parametrize("base", BASES, ids=BASE_IDS)
def test_part_sizes_grow_so_parts_are_not_all_base_size(base: int) -> None:
    # A plan that never grows cannot reach 5 TiB in 10,000 parts unless the base is large.
    sizes = sizes_of(base)
    if base * S3_MAX_PARTS < S3_MAX_OBJECT:
        assert sizes[-1] > base


# -- starts and ranges --


@pytest.mark.parametrize("number", BOUNDARY_PARTS)
@pytest.mark.parametrize("base", BASES, ids=BASE_IDS)
def test_part_start_is_the_sum_of_the_sizes_before_it(base: int, number: int) -> None:
    plan = PartPlan(base)
    expected = 0
    for earlier in range(1, number):
        expected += plan.part_size(earlier)
    assert plan.part_start(number) == expected


@pytest.mark.parametrize("base", BASES, ids=BASE_IDS)
def test_part_ranges_are_contiguous_over_all_parts(base: int) -> None:
    plan = PartPlan(base)
    previous_end = 0
    for number in range(1, S3_MAX_PARTS + 1):
        rng = plan.part_range(number)
        assert rng.number == number
        assert rng.start == previous_end, number
        assert rng.size == sizes_of(base)[number - 1]
        previous_end = rng.end
    assert previous_end == ends_of(base)[-1]


# -- capacity --


@pytest.mark.parametrize("base", BASES, ids=BASE_IDS)
def test_capacity_reaches_s3_object_limit_within_10000_parts(base: int) -> None:
    plan = PartPlan(base)
    assert plan.capacity_bytes() >= S3_MAX_OBJECT
    # And the 10,000 parts really hold it: the plan's capacity is not only a claim.
    assert ends_of(base)[-1] >= S3_MAX_OBJECT
    layout = plan.final_layout(S3_MAX_OBJECT)
    assert len(layout) <= S3_MAX_PARTS
    assert layout[-1].end == S3_MAX_OBJECT


@pytest.mark.parametrize("base", BASES, ids=BASE_IDS)
def test_capacity_never_exceeds_s3_object_limit(base: int) -> None:
    assert PartPlan(base).capacity_bytes() <= S3_MAX_OBJECT


@pytest.mark.parametrize("base", BASES, ids=BASE_IDS)
def test_size_past_capacity_is_refused(base: int) -> None:
    plan = PartPlan(base)
    with pytest.raises(ValueError, match="exceeds"):
        plan.final_layout(plan.capacity_bytes() + 1)
    with pytest.raises(ValueError):
        plan.final_layout(100 * TIB)


# -- lookups against the brute-force reference --


@pytest.mark.parametrize("base", BASES, ids=BASE_IDS)
def test_part_containing_matches_reference(base: int) -> None:
    plan = PartPlan(base)
    for offset in interesting_offsets(base):
        number = plan.part_containing(offset)
        assert number == ref_part_containing(base, offset), offset
        rng = plan.part_range(number)
        assert rng.start <= offset < rng.end, offset


@pytest.mark.parametrize("base", BASES, ids=BASE_IDS)
def test_part_containing_refuses_offsets_outside_the_plan(base: int) -> None:
    plan = PartPlan(base)
    with pytest.raises(ValueError):
        plan.part_containing(-1)
    with pytest.raises(ValueError):
        plan.part_containing(ends_of(base)[-1])


@pytest.mark.parametrize("base", BASES, ids=BASE_IDS)
def test_full_parts_available_matches_reference(base: int) -> None:
    plan = PartPlan(base)
    sizes = [0, -5, *(offset + 1 for offset in interesting_offsets(base))]
    sizes += [ends_of(base)[-1], ends_of(base)[-1] + 1]
    for file_size in sizes:
        expected = ref_full_parts(base, max(file_size, 0))
        assert plan.full_parts_available(file_size) == expected, file_size


@pytest.mark.parametrize(
    ("file_size", "expected"),
    [
        (0, 0),
        (1, 0),
        (5 * MIB - 1, 0),
        (5 * MIB, 1),
        (5 * MIB + 1, 1),
        (10 * MIB - 1, 1),
        (10 * MIB, 2),
    ],
)
def test_full_parts_available_small_files_5mib_base(file_size: int, expected: int) -> None:
    # With 5 MiB parts, a file holds one full part per whole 5 MiB (well inside the first tier).
    assert PartPlan(5 * MIB).full_parts_available(file_size) == expected


@pytest.mark.parametrize("base", BASES, ids=BASE_IDS)
def test_final_layout_matches_reference(base: int) -> None:
    plan = PartPlan(base)
    capacity = plan.capacity_bytes()
    sizes = [1, 2, base - 1, base, base + 1, capacity - 1, capacity]
    sizes += [offset + 1 for offset in interesting_offsets(base, count=15) if offset < capacity]
    for file_size in sizes:
        got = [(r.number, r.start, r.end) for r in plan.final_layout(file_size)]
        assert got == ref_final_layout(base, file_size), file_size


# -- final layout properties --


def check_layout(layout: list[PartRange], file_size: int) -> None:
    assert layout, file_size
    assert layout[0].start == 0
    assert layout[-1].end == file_size
    assert len(layout) <= S3_MAX_PARTS
    for index, rng in enumerate(layout):
        assert rng.number == index + 1
        assert 0 < rng.size <= S3_MAX_PART
        if index:
            assert rng.start == layout[index - 1].end
        if index < len(layout) - 1:
            assert rng.size >= S3_MIN_PART, (file_size, rng)
    assert sum(r.size for r in layout) == file_size


@pytest.mark.parametrize("base", BASES, ids=BASE_IDS)
def test_final_layout_of_an_empty_file_is_empty(base: int) -> None:
    assert PartPlan(base).final_layout(0) == []


@pytest.mark.parametrize(
    "file_size",
    [1, 1000, 5 * MIB - 1, 5 * MIB, 5 * MIB + 1, 8 * MIB, 8 * MIB + 1, 100 * MIB + 7, 3 * GIB],
)
@pytest.mark.parametrize("base", BASES, ids=BASE_IDS)
def test_final_layout_properties(base: int, file_size: int) -> None:
    check_layout(PartPlan(base).final_layout(file_size), file_size)


@pytest.mark.parametrize("base", BASES, ids=BASE_IDS)
def test_final_layout_properties_random_sizes(base: int) -> None:
    plan = PartPlan(base)
    rng = random.Random(base)
    capacity = plan.capacity_bytes()
    for _ in range(30):
        # Log-uniform sizes: as many small files as huge ones.
        file_size = max(1, int(2 ** rng.uniform(0, capacity.bit_length() - 1)))
        file_size = min(file_size, capacity)
        check_layout(plan.final_layout(file_size), file_size)


@pytest.mark.parametrize("base", BASES, ids=BASE_IDS)
def test_final_layout_agrees_with_full_parts_available(base: int) -> None:
    # Every part a live stream sent early (a full part) is part of the final layout unchanged.
    plan = PartPlan(base)
    rng = random.Random(7 * base)
    for _ in range(40):
        file_size = rng.randrange(1, min(plan.capacity_bytes(), 600 * base))
        layout = plan.final_layout(file_size)
        full = plan.full_parts_available(file_size)
        assert full in (len(layout), len(layout) - 1)
        for part in layout[:full]:
            assert part == plan.part_range(part.number)


# -- refusals --


@pytest.mark.parametrize(
    "base", [0, -1, 1, 5 * MIB - 1, 5 * GIB + 1, 6 * GIB], ids=lambda b: f"base={b}"
)
def test_bad_base_size_is_refused(base: int) -> None:
    with pytest.raises(ValueError, match="part size"):
        PartPlan(base)


@pytest.mark.parametrize("number", [0, -1, 10_001, 20_000])
@pytest.mark.parametrize("method", ["part_size", "part_start", "part_range"])
def test_bad_part_number_is_refused(method: str, number: int) -> None:
    plan = PartPlan(8 * MIB)
    with pytest.raises(ValueError, match="part number"):
        getattr(plan, method)(number)


@pytest.mark.parametrize("number", [1, 10_000])
def test_part_number_limits_are_accepted(number: int) -> None:
    plan = PartPlan(8 * MIB)
    assert plan.part_size(number) >= S3_MIN_PART
    assert plan.part_range(number).number == number


# -- uniform part sizing (--part-sizing uniform: Cloudflare R2, Backblaze B2 Live Read) --
# Every part is the base size, so part n covers [(n - 1) x base, n x base): the expected values
# below are that product, or literal numbers.


def uniform(base: int) -> PartPlan:
    return PartPlan(base, PartSizing.UNIFORM)


def test_growing_is_the_default_plan() -> None:
    assert PartPlan(8 * MIB) == PartPlan(8 * MIB, PartSizing.GROWING)
    assert PartPlan(8 * MIB).part_size(501) == 16 * MIB


@pytest.mark.parametrize(
    ("base", "number", "start", "size"),
    [
        (5 * MIB, 1, 0, 5 * MIB),
        (5 * MIB, 2, 5 * MIB, 5 * MIB),
        (5 * MIB, 500, 499 * 5 * MIB, 5 * MIB),
        (5 * MIB, 501, 500 * 5 * MIB, 5 * MIB),  # where a growing plan doubles
        (8 * MIB, 1001, 1000 * 8 * MIB, 8 * MIB),
        (8 * MIB, 5001, 5000 * 8 * MIB, 8 * MIB),  # where a growing 5 MiB plan reaches 5 GiB
        (8 * MIB, 10_000, 9999 * 8 * MIB, 8 * MIB),
        (100 * MIB, 3001, 3000 * 100 * MIB, 100 * MIB),
        (5 * GIB, 1024, 1023 * 5 * GIB, 5 * GIB),
    ],
)
def test_uniform_part_ranges_literal_values(base: int, number: int, start: int, size: int) -> None:
    plan = uniform(base)
    assert plan.part_size(number) == size
    assert plan.part_start(number) == start
    assert plan.part_range(number) == PartRange(number, start, start + size)


@pytest.mark.parametrize("base", BASES, ids=BASE_IDS)
def test_uniform_every_part_is_the_base_size(base: int) -> None:
    plan = uniform(base)
    for number in range(1, S3_MAX_PARTS + 1):
        assert plan.part_range(number) == PartRange(number, (number - 1) * base, number * base)


@pytest.mark.parametrize(
    ("base", "capacity", "described"),
    [
        # 10,000 x the base part size, as the docs and --help say.
        (5 * MIB, 52_428_800_000, "48.8 GiB (52428800000 bytes, 10,000 parts of 5.0 MiB"),
        (8 * MIB, 83_886_080_000, "78.1 GiB (83886080000 bytes, 10,000 parts of 8.0 MiB"),
        (64 * MIB, 671_088_640_000, "625.0 GiB (671088640000 bytes, 10,000 parts of 64.0 MiB"),
        (100 * MIB, 1_048_576_000_000, "976.6 GiB (1048576000000 bytes, 10,000 parts of 100.0"),
        # From 525 MiB up, 10,000 parts pass 5 TiB: S3's object limit is the capacity.
        (525 * MIB, S3_MAX_OBJECT, "5.0 TiB (5497558138880 bytes, S3's largest object)"),
        (5 * GIB, S3_MAX_OBJECT, "5.0 TiB (5497558138880 bytes, S3's largest object)"),
    ],
)
def test_uniform_capacity(base: int, capacity: int, described: str) -> None:
    plan = uniform(base)
    assert plan.capacity_bytes() == capacity
    assert plan.describe_capacity().startswith(described)
    layout = plan.final_layout(capacity)
    assert len(layout) <= S3_MAX_PARTS and layout[-1].end == capacity
    with pytest.raises(ValueError, match=r"exceeds .*\(" + str(capacity) + " bytes"):
        plan.final_layout(capacity + 1)


@pytest.mark.parametrize("base", BASES, ids=BASE_IDS)
def test_growing_capacity_is_described_as_the_object_limit(base: int) -> None:
    assert PartPlan(base).describe_capacity() == (
        "5.0 TiB (5497558138880 bytes, S3's largest object)"
    )


@pytest.mark.parametrize(
    ("file_size", "full_parts"),
    [
        (0, 0),
        (1, 0),
        (8 * MIB - 1, 0),
        (8 * MIB, 1),
        (8 * MIB + 1, 1),
        (500 * 8 * MIB, 500),
        (500 * 8 * MIB + 16 * MIB - 1, 501),  # a growing plan's part 501 would be 16 MiB
        (500 * 8 * MIB + 16 * MIB, 502),
        (83_886_080_000 - 1, 9999),
        (83_886_080_000, 10_000),
        (83_886_080_000 + 1, 10_000),
    ],
)
def test_uniform_full_parts_available(file_size: int, full_parts: int) -> None:
    assert uniform(8 * MIB).full_parts_available(file_size) == full_parts


@pytest.mark.parametrize(
    ("offset", "number"),
    [
        (0, 1),
        (8 * MIB - 1, 1),
        (8 * MIB, 2),
        (500 * 8 * MIB, 501),
        (500 * 8 * MIB + 8 * MIB, 502),
        (83_886_080_000 - 1, 10_000),
    ],
)
def test_uniform_part_containing(offset: int, number: int) -> None:
    assert uniform(8 * MIB).part_containing(offset) == number


def test_uniform_part_containing_refuses_offsets_outside_the_plan() -> None:
    with pytest.raises(ValueError):
        uniform(8 * MIB).part_containing(-1)
    with pytest.raises(ValueError, match="past the last part"):
        uniform(8 * MIB).part_containing(83_886_080_000)


@pytest.mark.parametrize(
    ("file_size", "parts", "last_size"),
    [
        (1, 1, 1),
        (8 * MIB, 1, 8 * MIB),
        (8 * MIB + 1, 2, 1),
        (4 * GIB, 512, 8 * MIB),
        (4 * GIB + 5, 513, 5),  # past ~3.9 GiB, where a growing plan's parts change size
        (83_886_080_000, 10_000, 8 * MIB),
    ],
)
def test_uniform_final_layout(file_size: int, parts: int, last_size: int) -> None:
    layout = uniform(8 * MIB).final_layout(file_size)
    check_layout(layout, file_size)
    assert len(layout) == parts
    assert layout[-1].size == last_size
    # R2's rule: every part but the last has one length, the last is no longer.
    assert {rng.size for rng in layout[:-1]} <= {8 * MIB}


@pytest.mark.parametrize("base", BASES, ids=BASE_IDS)
def test_uniform_final_layout_random_sizes_keep_one_length(base: int) -> None:
    plan = uniform(base)
    rng = random.Random(base + 1)
    for _ in range(30):
        file_size = max(1, int(2 ** rng.uniform(0, plan.capacity_bytes().bit_length() - 1)))
        file_size = min(file_size, plan.capacity_bytes())
        layout = plan.final_layout(file_size)
        check_layout(layout, file_size)
        assert all(part.size == base for part in layout[:-1])
        assert 0 < layout[-1].size <= base


@pytest.mark.parametrize(
    ("size", "part_size"),
    [
        (0, 5 * MIB),
        (50_000 * MIB, 5 * MIB),
        (50_000 * MIB + 1, 6 * MIB),
        (80 * GIB, 9 * MIB),
        (S3_MAX_OBJECT, 525 * MIB),
        (S3_MAX_OBJECT + 1, None),
    ],
)
def test_part_size_for(size: int, part_size: int | None) -> None:
    assert part_size_for(size) == part_size
    if part_size is not None:
        assert uniform(part_size).capacity_bytes() >= size


@pytest.mark.parametrize(
    ("plan", "size", "expected", "absent"),
    [
        (
            uniform(8 * MIB),
            80 * GIB,
            [
                "grew to 80.0 GiB (85899345920 bytes)",
                "78.1 GiB (83886080000 bytes, 10,000 parts of 8.0 MiB, --part-sizing uniform)",
                "a larger --part-size (at least 9MiB)",
            ],
            [],
        ),
        (
            uniform(5 * MIB),
            52_428_800_001,
            ["48.8 GiB (52428800000 bytes", "--part-size (at least 6MiB)"],
            [],
        ),
        # No part size holds more than 5 TiB: nothing to suggest.
        (uniform(5 * GIB), S3_MAX_OBJECT + 1, ["S3's largest object"], ["--part-size"]),
        (PartPlan(8 * MIB), S3_MAX_OBJECT + 1, ["5.0 TiB", "S3's largest object"], ["--part-size"]),
    ],
    ids=["uniform-8MiB", "uniform-5MiB", "uniform-5GiB", "growing"],
)
def test_exceeded_reason_names_the_capacity_and_what_would_do(
    plan: PartPlan, size: int, expected: list[str], absent: list[str]
) -> None:
    reason = plan.exceeded_reason(size)
    for text in expected:
        assert text in reason
    for text in absent:
        assert text not in reason


# -- parts capped at the memory budget (issue 17: a part is held in memory whole) --


@pytest.mark.parametrize(
    ("budget", "cap"),
    [
        (5 * MIB, 5 * MIB),  # the smallest budget the settings take: one smallest part
        (12 * MIB, 12 * MIB),
        (160 * MIB, 160 * MIB),  # the default budget
        (5 * GIB, 5 * GIB),
        (64 * GIB, 5 * GIB),  # S3's largest part, whatever the budget
    ],
)
def test_part_size_cap_is_the_budget_within_s3s_largest_part(budget: int, cap: int) -> None:
    assert part_size_cap(budget) == cap


def test_a_budget_below_one_part_has_no_cap() -> None:
    with pytest.raises(ValueError, match="below one part"):
        part_size_cap(5 * MIB - 1)


@pytest.mark.parametrize(
    ("base", "cap", "number", "size"),
    [
        (8 * MIB, 160 * MIB, 1, 8 * MIB),
        (8 * MIB, 160 * MIB, 2001, 128 * MIB),  # tier 4, below the cap
        (8 * MIB, 160 * MIB, 2501, 160 * MIB),  # 256 MiB uncapped
        (8 * MIB, 160 * MIB, 10_000, 160 * MIB),
        (5 * MIB, 12 * MIB, 501, 10 * MIB),
        (5 * MIB, 12 * MIB, 1001, 12 * MIB),  # not a doubling of the base: the budget itself
        (8 * MIB, 8 * MIB, 10_000, 8 * MIB),  # a budget of one part: no growth at all
    ],
)
def test_capped_part_sizes_literal_values(base: int, cap: int, number: int, size: int) -> None:
    assert PartPlan(base, PartSizing.GROWING, cap).part_size(number) == size


@pytest.mark.parametrize("cap", [8 * MIB, 12 * MIB, 160 * MIB, 1 * GIB])
def test_no_capped_part_is_larger_than_the_cap(cap: int) -> None:
    plan = PartPlan(8 * MIB, PartSizing.GROWING, cap)
    assert max(plan.part_size(n) for n in range(1, S3_MAX_PARTS + 1)) == cap
    # The ranges still tile the file: the plan's own arithmetic agrees with the sizes.
    end = 0
    for number in (1, 500, 501, 2500, 2501, 10_000):
        rng = plan.part_range(number)
        assert rng.size == plan.part_size(number)
        assert plan.part_containing(rng.start) == number
        assert rng.start >= end
        end = rng.end
    assert plan.capacity_bytes() == min(plan.part_range(S3_MAX_PARTS).end, S3_MAX_OBJECT)


def test_the_default_budget_holds_1_26_tib() -> None:
    plan = PartPlan(8 * MIB, PartSizing.GROWING, part_size_cap(160 * MIB))
    # 500 parts each of 8, 16, 32, 64 and 128 MiB, then 7,500 of 160 MiB.
    assert plan.capacity_bytes() == 500 * (8 + 16 + 32 + 64 + 128) * MIB + 7500 * 160 * MIB
    assert "parts of 160.0 MiB at most" in plan.describe_capacity()
    assert "--max-inflight-bytes" in plan.exceeded_reason(plan.capacity_bytes() + 1)


def test_an_uncapped_plan_is_the_plan_of_records_from_before() -> None:
    assert PartPlan(8 * MIB) == PartPlan(8 * MIB, PartSizing.GROWING, S3_MAX_PART)
    assert "--max-inflight-bytes" not in PartPlan(8 * MIB).exceeded_reason(6 * TIB)


@pytest.mark.parametrize("cap", [8 * MIB - 1, 5 * GIB + 1])
def test_a_cap_below_the_base_or_past_s3s_largest_part_is_refused(cap: int) -> None:
    with pytest.raises(ValueError, match="largest part size"):
        PartPlan(8 * MIB, PartSizing.GROWING, cap)
