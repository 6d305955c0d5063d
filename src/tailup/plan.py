"""The part plan: which byte range of the file each S3 part number covers.

Pure functions of the stream's base part size, which is fixed when the stream starts (and stored in
its checkpoint), so a config change never shifts the parts of a running stream.

S3 multipart rules: at most 10,000 parts, every part but the last at least 5 MiB, a part at most
5 GiB, an object at most 5 TiB. A fixed part size cannot satisfy all of them for an unbounded
recording (8 MiB x 10,000 = 78 GiB), so part sizes double every ``PARTS_PER_TIER`` parts, capped at
5 GiB. With 500 parts per tier even the smallest base (5 MiB) reaches 5 TiB well before part
10,000 (see tests/unit/test_plan.py), while the first 2.4 GiB of a recording still go up in
small parts, which keeps the lag behind a live writer low.
"""

from __future__ import annotations

from dataclasses import dataclass

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
TiB = 1024 * GiB

MIN_PART_SIZE_BYTES = 5 * MiB
MAX_PART_SIZE_BYTES = 5 * GiB
MAX_PARTS = 10_000
MAX_OBJECT_SIZE_BYTES = 5 * TiB
PARTS_PER_TIER = 500
# Single PUT is used below one part; S3's single-PUT limit is 5 GiB, far above any base part size.


@dataclass(frozen=True, slots=True)
class PartRange:
    number: int
    start: int  # first byte offset, inclusive
    end: int  # offset past the last byte, exclusive

    @property
    def size(self) -> int:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class PartPlan:
    base_part_size_bytes: int

    def __post_init__(self) -> None:
        if not MIN_PART_SIZE_BYTES <= self.base_part_size_bytes <= MAX_PART_SIZE_BYTES:
            raise ValueError(
                f"base part size {self.base_part_size_bytes} bytes is outside "
                f"{MIN_PART_SIZE_BYTES}..{MAX_PART_SIZE_BYTES} (5 MiB..5 GiB)"
            )

    def part_size(self, number: int) -> int:
        """Nominal size of part ``number`` (1-based); the final part of a file may be shorter."""
        _check_number(number)
        tier = (number - 1) // PARTS_PER_TIER
        # The shift is bounded: tier <= 19, so base << 19 fits easily before the cap applies.
        return min(self.base_part_size_bytes << tier, MAX_PART_SIZE_BYTES)

    def part_start(self, number: int) -> int:
        """Offset of the first byte of part ``number``: the sum of the sizes of parts before it."""
        _check_number(number)
        offset = 0
        full_tiers, within = divmod(number - 1, PARTS_PER_TIER)
        for tier in range(full_tiers):
            offset += PARTS_PER_TIER * self.part_size(tier * PARTS_PER_TIER + 1)
        return offset + within * self.part_size(number)

    def part_range(self, number: int) -> PartRange:
        start = self.part_start(number)
        return PartRange(number, start, start + self.part_size(number))

    def capacity_bytes(self) -> int:
        """Largest file this plan can carry: S3's object limit or the sum of 10,000 parts."""
        return min(self.part_range(MAX_PARTS).end, MAX_OBJECT_SIZE_BYTES)

    def part_containing(self, offset: int) -> int:
        """Number of the part whose nominal range contains byte ``offset``."""
        if offset < 0:
            raise ValueError(f"offset {offset} is negative")
        if offset >= self.part_range(MAX_PARTS).end:
            raise ValueError(f"offset {offset} is past the last part of the plan")
        number = 1
        for tier in range(MAX_PARTS // PARTS_PER_TIER):
            first = tier * PARTS_PER_TIER + 1
            tier_end = self.part_start(first) + PARTS_PER_TIER * self.part_size(first)
            if offset < tier_end:
                return first + (offset - self.part_start(first)) // self.part_size(first)
            number = first + PARTS_PER_TIER
        return number  # unreachable: guarded above

    def full_parts_available(self, file_size_bytes: int) -> int:
        """How many parts are complete in a file of this size (parts that may be sent now)."""
        if file_size_bytes <= 0:
            return 0
        if file_size_bytes >= self.part_range(MAX_PARTS).end:
            return MAX_PARTS
        number = self.part_containing(file_size_bytes - 1)
        return number if self.part_range(number).end <= file_size_bytes else number - 1

    def final_layout(self, file_size_bytes: int) -> list[PartRange]:
        """The parts of a finished file of this size: full parts, then a shorter final one."""
        if file_size_bytes > self.capacity_bytes():
            raise ValueError(
                f"file size {file_size_bytes} bytes exceeds what S3 multipart can hold "
                f"({self.capacity_bytes()} bytes)"
            )
        if file_size_bytes <= 0:
            return []
        last = self.part_containing(file_size_bytes - 1)
        parts = [self.part_range(n) for n in range(1, last)]
        tail = self.part_range(last)
        parts.append(PartRange(last, tail.start, min(tail.end, file_size_bytes)))
        return parts


def _check_number(number: int) -> None:
    if not 1 <= number <= MAX_PARTS:
        raise ValueError(f"part number {number} is outside 1..{MAX_PARTS}")
