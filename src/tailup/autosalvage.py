"""--salvage-after: a live daemon salvages the open uploads of another node gone that long (as
`tailup salvage --node NODE` would; tailup.salvagefind). Off by default: a node that is only cut
off from Redis, not dead, goes on sending parts of an upload completed under it (its stream then
fails on the vanished upload), so the delay must outlast any partition the site expects.

A node is gone when its daemon's published account (tailup.keys.RedisKeys.node_info, which a
live daemon renews every --lease-ttl/3 and which expires after 2 x --lease-ttl) is missing while
it still has live records; the delay counts from when this daemon first saw it so. Salvage then
takes the node's lease (refused while held) for as long as it works.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from datetime import UTC, datetime

import structlog

from tailup.checkpoint import RedisCheckpointStore
from tailup.config import Settings
from tailup.errors import RetryableError, TailupError
from tailup.rules.salvage import nodes_due
from tailup.s3 import MultipartStore
from tailup.salvage import Row
from tailup.salvagefind import NodeAlive, Request, salvage_with

log = structlog.get_logger("tailup.salvage")


async def nodes_with_live_records(checkpoints: RedisCheckpointStore) -> set[str]:
    """Every node id on the Redis prefix whose own folders have a live record."""
    prefix = checkpoints.keys.prefix
    found = set()
    async for name in checkpoints.client.scan_iter(match=f"{prefix}:node:*:live", count=1000):
        base = str(name)[len(prefix) + 1 : -len(":live")]
        found.add(base.removeprefix("node:"))
    return found


class AutoSalvage:
    def __init__(
        self,
        settings: Settings,
        checkpoints: RedisCheckpointStore,
        store: MultipartStore,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._checkpoints = checkpoints
        self._store = store
        self._clock = clock
        self._gone_since: dict[str, float] = {}
        # Nodes salvaged since last seen alive: what was left (an upload with no part 1, a key
        # taken) is not tried again every round.
        self._done: set[str] = set()

    @classmethod
    def for_settings(
        cls, settings: Settings, checkpoints: object, store: MultipartStore
    ) -> AutoSalvage | None:
        if settings.salvage_after <= 0 or not isinstance(checkpoints, RedisCheckpointStore):
            return None
        return cls(settings, checkpoints, store)

    async def run(self, stop: asyncio.Event) -> None:
        """A round every --lease-ttl/3 until ``stop``."""
        while not stop.is_set():
            try:
                for row in await self.round():
                    if row.why:
                        log.warning(
                            f"--salvage-after: {row.outcome}",
                            stream_id=row.stream_id,
                            key=row.key,
                            size=row.size_bytes,
                            why=row.why,
                        )
            except RetryableError as exc:
                log.warning("--salvage-after: not now", reason=str(exc))
            except TailupError as exc:
                log.error("--salvage-after: failed", reason=str(exc))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._settings.lease_ttl / 3):
                    await stop.wait()

    async def round(self) -> list[Row]:
        own = self._settings.node_id
        nodes = sorted(await nodes_with_live_records(self._checkpoints) - {own})
        alive = {node: bool(await self._checkpoints.node_info(node)) for node in nodes}
        due, self._gone_since = nodes_due(
            alive, self._gone_since, self._clock(), self._settings.salvage_after
        )
        self._done &= set(self._gone_since)
        rows: list[Row] = []
        for node in (n for n in due if n not in self._done):
            log.warning("--salvage-after: salvaging a node gone that long", node=node)
            try:
                rows += await salvage_with(
                    self._settings,
                    Request(node=node),
                    datetime.now(UTC),
                    self._store,
                    self._checkpoints,
                )
            except NodeAlive as exc:
                self._gone_since.pop(node, None)
                log.info("--salvage-after: the node is back", node=node, reason=str(exc))
                continue
            self._done.add(node)
        return rows
