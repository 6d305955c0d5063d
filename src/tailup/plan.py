"""The part plan: which byte range of the file each S3 part number covers.

Pure functions of the stream's base part size and part sizing, both fixed when the stream starts
(and stored in its checkpoint), so a config change never shifts the parts of a running stream.

S3 multipart rules: at most 10,000 parts, every part but the last at least 5 MiB, a part at most
5 GiB, an object at most 5 TiB. A fixed part size cannot satisfy all of them for an unbounded
recording (8 MiB x 10,000 = 78 GiB), so part sizes double every ``PARTS_PER_TIER`` parts, capped at
5 GiB. With 500 parts per tier even the smallest base (5 MiB) reaches 5 TiB well before part
10,000 (see tests/unit/test_plan.py), while the first 2.4 GiB of a recording still go up in
small parts, which keeps the lag behind a live writer low.

No part is larger than the memory budget (--max-inflight-bytes) the stream started under: a part is
read whole into memory before it is sent, so a larger one would be allocated past the budget
however the budget grants it. ``max_part_size_bytes`` caps the growth there (``part_size_cap``);
it is kept in the stream's record with the base part size. The price is capacity: 1.26 TiB for
the default 160 MiB budget and 8 MiB parts, past which a recording fails (PlanExceeded, naming a
larger budget). Records from before the cap have none: S3's 5 GiB.

Some servers refuse parts of different sizes: Cloudflare R2 ("All non-trailing parts must have
the same length", InvalidPart at Complete) and Backblaze B2 Live Read. ``PartSizing.UNIFORM``
makes every part the base size; the price is a capacity of 10,000 x the base part size (78.1 GiB
at 8 MiB), past which a recording fails (PlanExceeded, with the capacity and a larger --part-size
to use).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from tailup.units import format_size

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


class PartSizing(enum.Enum):
    GROWING = "growing"  # part sizes double every PARTS_PER_TIER parts (reaches 5 TiB)
    UNIFORM = "uniform"  # every part is the base size (R2, B2 Live Read): 10,000 x base at most


@dataclass(frozen=True, slots=True)
class PartRange:
    number: int
    start: int  # first byte offset, inclusive
    end: int  # offset past the last byte, exclusive

    @property
    def size(self) -> int:
        return self.end - self.start


def part_size_cap(budget_bytes: int) -> int:
    """The largest part of a plan made under a memory budget of ``budget_bytes``: the whole
    budget (one part in flight at a time, daemon-wide, is the least that still moves), at most
    S3's 5 GiB. A budget below S3's smallest part is refused by the settings."""
    if budget_bytes < MIN_PART_SIZE_BYTES:
        raise ValueError(f"a budget of {budget_bytes} bytes is below one part (5 MiB)")
    return min(budget_bytes, MAX_PART_SIZE_BYTES)


@dataclass(frozen=True, slots=True)
class PartPlan:
    base_part_size_bytes: int
    sizing: PartSizing = PartSizing.GROWING
    # No part is larger (part_size_cap); at least the base part size.
    max_part_size_bytes: int = MAX_PART_SIZE_BYTES

    def __post_init__(self) -> None:
        if not MIN_PART_SIZE_BYTES <= self.base_part_size_bytes <= MAX_PART_SIZE_BYTES:
            raise ValueError(
                f"base part size {self.base_part_size_bytes} bytes is outside "
                f"{MIN_PART_SIZE_BYTES}..{MAX_PART_SIZE_BYTES} (5 MiB..5 GiB)"
            )
        if not self.base_part_size_bytes <= self.max_part_size_bytes <= MAX_PART_SIZE_BYTES:
            raise ValueError(
                f"largest part size {self.max_part_size_bytes} bytes is outside "
                f"{self.base_part_size_bytes}..{MAX_PART_SIZE_BYTES} (the base part size..5 GiB)"
            )

    @property
    def capped(self) -> bool:
        """Parts stop growing below S3's limit (a memory budget smaller than 5 GiB)."""
        return self.max_part_size_bytes < MAX_PART_SIZE_BYTES

    @property
    def _tier_parts(self) -> int:
        """Parts of one size in a row: a uniform plan is one tier of all 10,000 parts."""
        return PARTS_PER_TIER if self.sizing is PartSizing.GROWING else MAX_PARTS

    def part_size(self, number: int) -> int:
        """Nominal size of part ``number`` (1-based); the final part of a file may be shorter."""
        _check_number(number)
        tier = (number - 1) // self._tier_parts
        # The shift is bounded: tier <= 19, so base << 19 fits easily before the cap applies.
        return min(self.base_part_size_bytes << tier, self.max_part_size_bytes)

    def part_start(self, number: int) -> int:
        """Offset of the first byte of part ``number``: the sum of the sizes of parts before it."""
        _check_number(number)
        offset = 0
        per_tier = self._tier_parts
        full_tiers, within = divmod(number - 1, per_tier)
        for tier in range(full_tiers):
            offset += per_tier * self.part_size(tier * per_tier + 1)
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
        per_tier = self._tier_parts
        for tier in range(MAX_PARTS // per_tier):
            first = tier * per_tier + 1
            tier_end = self.part_start(first) + per_tier * self.part_size(first)
            if offset < tier_end:
                return first + (offset - self.part_start(first)) // self.part_size(first)
            number = first + per_tier
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
                f"file size {file_size_bytes} bytes exceeds {self.describe_capacity()}"
            )
        if file_size_bytes <= 0:
            return []
        last = self.part_containing(file_size_bytes - 1)
        parts = [self.part_range(n) for n in range(1, last)]
        tail = self.part_range(last)
        parts.append(PartRange(last, tail.start, min(tail.end, file_size_bytes)))
        return parts

    def describe_capacity(self) -> str:
        """What the plan can hold, for logs and errors: '78.1 GiB (83886080000 bytes, 10,000 parts
        of 8.0 MiB, --part-sizing uniform)'."""
        capacity = self.capacity_bytes()
        if capacity >= MAX_OBJECT_SIZE_BYTES:
            return f"{format_size(capacity)} ({capacity} bytes, S3's largest object)"
        if self.sizing is PartSizing.UNIFORM:
            parts = f"{MAX_PARTS:,} parts of {format_size(self.base_part_size_bytes)}"
            return f"{format_size(capacity)} ({capacity} bytes, {parts}, --part-sizing uniform)"
        if self.capped:
            largest = format_size(self.max_part_size_bytes)
            return f"{format_size(capacity)} ({capacity} bytes, parts of {largest} at most)"
        return f"{format_size(capacity)} ({capacity} bytes)"

    def exceeded_reason(self, size_bytes: int) -> str:
        """Why a file of ``size_bytes`` cannot be uploaded with this plan, and what would do."""
        reason = f"grew to {format_size(size_bytes)} ({size_bytes} bytes), past the capacity of "
        reason += f"its part plan: {self.describe_capacity()}"
        larger = part_size_for(size_bytes)
        if self.sizing is PartSizing.UNIFORM and larger is not None:
            reason += (
                f"; a larger --part-size (at least {larger // MiB}MiB) holds it: recordings "
                "started after the change use it"
            )
        elif self.sizing is PartSizing.GROWING and self.capped:
            reason += (
                "; parts stop growing at the memory budget: a larger --max-inflight-bytes holds "
                "it (recordings started after the change use it)"
            )
        return reason


def part_size_for(size_bytes: int) -> int | None:
    """The smallest uniform part size, a whole number of MiB, whose 10,000 parts hold
    ``size_bytes``; None past S3's limits (5 GiB parts, 5 TiB objects)."""
    if size_bytes > MAX_OBJECT_SIZE_BYTES:
        return None
    needed = max(MIN_PART_SIZE_BYTES, -(-size_bytes // MAX_PARTS))
    rounded = -(-needed // MiB) * MiB
    return rounded if rounded <= MAX_PART_SIZE_BYTES else None


def _check_number(number: int) -> None:
    if not 1 <= number <= MAX_PARTS:
        raise ValueError(f"part number {number} is outside 1..{MAX_PARTS}")
