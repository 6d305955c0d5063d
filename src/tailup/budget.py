"""A byte budget shared by every stream: memory held by parts being read, hashed or uploaded.

A part takes its bytes from the budget *before* it is read from disk, so however many streams there
are, tailup never holds more than the budget in part buffers (tusd's s3store does the same with its
upload slots). No part is larger than the budget: a stream's part plan stops growing there
(tailup.plan.part_size_cap) and the settings refuse a budget smaller than --part-size. Only a
stream whose plan was made under a larger budget may still have one (started before parts were
capped, or before the budget was lowered, or on another node of a shared folder): such a part
waits until the budget is free and then takes all of it, so it can never deadlock (its memory is
then the part's, not the budget's).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class ByteBudget:
    def __init__(self, capacity_bytes: int) -> None:
        if capacity_bytes <= 0:
            raise ValueError("the byte budget must be positive")
        self.capacity_bytes = capacity_bytes
        self._in_use = 0
        self._waiting = 0  # acquirers waiting for bytes: try_acquire never goes before them
        self._changed = asyncio.Condition()

    @property
    def in_use_bytes(self) -> int:
        return self._in_use

    def _grant(self, requested: int) -> int:
        return min(requested, self.capacity_bytes)

    async def acquire(self, requested_bytes: int) -> int:
        """Wait for and take ``requested_bytes`` (capped at the capacity); returns what was taken,
        to hand back to ``release``."""
        if requested_bytes < 0:
            raise ValueError(f"cannot acquire a negative number of bytes ({requested_bytes})")
        grant = self._grant(requested_bytes)
        async with self._changed:
            self._waiting += 1
            try:
                await self._changed.wait_for(lambda: self._in_use + grant <= self.capacity_bytes)
            finally:
                self._waiting -= 1
            self._in_use += grant
        return grant

    def try_acquire(self, requested_bytes: int) -> int | None:
        """Take ``requested_bytes`` now if they are free and nobody waits for bytes, else None:
        for work that must never hold back a part (--rpo's tail segments)."""
        if requested_bytes < 0:
            raise ValueError(f"cannot acquire a negative number of bytes ({requested_bytes})")
        if self._waiting or self._in_use + requested_bytes > self.capacity_bytes:
            return None
        self._in_use += requested_bytes
        return requested_bytes

    async def release(self, granted_bytes: int) -> None:
        async with self._changed:
            self._in_use -= granted_bytes
            self._changed.notify_all()

    @asynccontextmanager
    async def hold(self, requested_bytes: int) -> AsyncIterator[int]:
        grant = await self.acquire(requested_bytes)
        try:
            yield grant
        finally:
            # Shielded so a cancelled holder still returns its bytes.
            await asyncio.shield(self.release(grant))
