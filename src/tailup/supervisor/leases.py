"""Node lease rounds: the node lease taken and renewed, claims renewed, shared folders
looked at and taken over, ended records trimmed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import TypeVar

import structlog

from tailup import __version__
from tailup.bandwidth import describe_rate
from tailup.checkpoint import RenewResult
from tailup.errors import (
    NodeIdTaken,
    RetryableError,
)
from tailup.model import (
    iso,
    utc_now,
)
from tailup.nodelease import Holder, process_started, provably_gone
from tailup.retry import Backoff
from tailup.supervisor.state import (
    TRIM_EVERY_S,
    SupervisorState,
)

log = structlog.get_logger("tailup.supervisor")
T = TypeVar("T")


class LeaseRounds(SupervisorState):
    async def _take_node(self, stop: asyncio.Event) -> bool:
        """Hold this daemon's node lease (tailup.nodelease), waiting for Redis if need be.
        NodeIdTaken when a live daemon holds it; False when stopped first."""
        backoff = Backoff(cap_s=10.0)
        mine, ttl_s = self._holder.encode(), self._settings.lease_ttl
        while not stop.is_set():
            try:
                held = await self._checkpoints.acquire_node(self._node_id, mine, ttl_s)
                if held is None:
                    return True
                other = Holder.decode(held)
                if other is not None and provably_gone(other, self._holder, process_started):
                    if (
                        await self._checkpoints.acquire_node(
                            self._node_id, mine, ttl_s, replacing=held
                        )
                        is None
                    ):
                        log.info(
                            "node taken back from a daemon that is gone",
                            node=self._node_id,
                            previous=other.describe(),
                        )
                        return True
                    continue
                who = other.describe() if other else repr(held)
                raise NodeIdTaken(
                    f"--node-id {self._node_id!r} is held by a live tailup daemon ({who}) on "
                    f"this Redis prefix. Stop that daemon, or give this one another --node-id; "
                    f"if that daemon is dead, its lease expires within {ttl_s:g} s"
                )
            except RetryableError as exc:
                delay = backoff.next_delay_s()
                log.warning("cannot take the node lease yet; retrying", reason=str(exc))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await stop.wait()
        return False

    async def _keep_leases(self, stop: asyncio.Event) -> None:
        """Renew the node lease every third of --lease-ttl; trim the ended index now and then.
        A lease another daemon took stops this one: two daemons must never work one node."""
        ttl_s = self._settings.lease_ttl
        next_trim = 0.0
        renewed_at = time.monotonic()  # the lease was taken just before
        while not stop.is_set():
            # Every third of the TTL from the last renewal, whatever the round's other work cost.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, renewed_at + ttl_s / 3 - time.monotonic())):
                    await stop.wait()
            if stop.is_set():
                return
            try:
                asked_at = time.monotonic()
                renewed = await self._checkpoints.renew_node(
                    self._node_id, self._holder.encode(), ttl_s
                )
                if renewed is RenewResult.TAKEN:
                    log.error(
                        "another daemon took this node's lease: stopping (two daemons must "
                        "never work one node)",
                        node=self._node_id,
                    )
                    stop.set()
                    return
                if renewed is RenewResult.RESTORED:
                    if asked_at - renewed_at < ttl_s:
                        self.note_redis_lost("this node's lease was gone from Redis")
                    else:
                        # Expired because this daemon (or Redis) was slow, not lost: taken back.
                        log.warning(
                            "the node lease expired before its renewal; taken back",
                            late_s=round(asked_at - renewed_at - ttl_s, 2),
                        )
                renewed_at = asked_at
                await self._publish_info()
                await self._renew_claims()
                await self._look_at_shares()  # a remount gives the folder another device
                now = time.monotonic()
                self._elsewhere = {p: t for p, t in self._elsewhere.items() if t > now}
                for _name, scope in self._shares.values():
                    await self._resume_scope(scope)  # recordings of nodes that died
                if time.monotonic() >= next_trim:
                    await self._trim_ended()
                    next_trim = time.monotonic() + TRIM_EVERY_S
            except RetryableError as exc:
                log.warning("cannot renew the node lease now", reason=str(exc))

    async def _publish_info(self) -> None:
        """What `tailup status` shows of this daemon: it reads Redis, not the daemon."""
        limit = self.bandwidth
        timetable = limit.schedule.text if limit and limit.schedule.timetable else ""
        await self._checkpoints.publish_node_info(
            self._node_id,
            {
                "host": self._holder.host,
                "pid": str(self._holder.pid),
                "version": __version__,
                "bwlimit": describe_rate(limit.bytes_per_second) if limit else "off",
                "bwlimit_timetable": timetable,
                # Each folder's effective settings (tailup.supervisor.folders), for `status`.
                "folders": json.dumps(self._folders.described()),
                "updated_at": iso(utc_now()),
            },
            2 * self._settings.lease_ttl,
        )

    async def _renew_claims(self) -> None:
        for stream_id in self._checkpoints.held_claims():
            if await self._checkpoints.renew_claim(
                stream_id, self._settings.lease_ttl
            ) is RenewResult.TAKEN and (stream := self._by_id.get(stream_id)):
                log.warning("another node took this recording over", stream_id=stream_id)
                stream.stop()

    async def _trim_ended(self) -> None:
        keep_s = self._settings.keep_records
        if keep_s <= 0:
            return
        trimmed = 0
        for scope in [self._scope, *(sc for _, sc in self._shares.values())]:
            trimmed += await self._checkpoints.trim_ended(time.time() - keep_s, scope)
        if trimmed:
            log.info("ended records past --keep-records dropped from the index", count=trimmed)
