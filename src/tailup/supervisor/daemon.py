"""The supervisor owns the streams: it routes filesystem events to them, starts, resumes and
restarts them, and drains them on shutdown. One stream's failure never reaches another.

Its parts, one concern each: leases (node lease rounds), dispatch (events in, routing carried
out), opening (the shell of tailup.rules.admission), shares (scopes, claims, takeovers),
names (a recording's other names: hard links, renames while down), registry (running
streams and their outcomes); state holds what they share."""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from tailup.errors import (
    RetryableError,
    TailupError,
)
from tailup.lanes import Lanes
from tailup.supervisor.dispatch import Dispatch
from tailup.supervisor.leases import LeaseRounds
from tailup.supervisor.names import Names
from tailup.supervisor.opening import Opening
from tailup.supervisor.registry import Registry
from tailup.supervisor.shares import Shares
from tailup.supervisor.state import ROUTE_CONCURRENCY
from tailup.watcher import Watcher

log = structlog.get_logger("tailup.supervisor")


class Supervisor(LeaseRounds, Dispatch, Opening, Shares, Names, Registry):
    async def run(self, stop: asyncio.Event) -> None:
        if not await self._take_node(stop):
            return
        with contextlib.suppress(RetryableError):
            await self._publish_info()
        try:
            await self._run(stop)
        finally:
            with contextlib.suppress(TailupError):
                await self._checkpoints.release_node(self._node_id, self._holder.encode())

    async def _run(self, stop: asyncio.Event) -> None:
        async with (
            Watcher(
                self._roots,
                self._folders.includes,  # each folder's own: tailup.supervisor.folders
                poll=self._settings.poll,
                poll_interval_s=self._settings.poll_interval,
                io_timeout_s=self._settings.io_timeout,
            ) as watcher,
            asyncio.TaskGroup() as group,
        ):
            self._group = group
            self._lanes = lanes = Lanes(group.create_task, ROUTE_CONCURRENCY)
            forward = group.create_task(self._forward(watcher), name="watcher-forward")
            leases = group.create_task(self._keep_leases(stop), name="leases")
            timetable = (
                group.create_task(self.bandwidth.run(), name="bwlimit")
                if self.bandwidth is not None
                else None
            )
            salvaging = (
                group.create_task(self._auto_salvage.run(stop), name="salvage-after")
                if self._auto_salvage is not None
                else None
            )
            retention = (
                group.create_task(self.retention.run(stop), name="retention")
                if self.retention is not None
                else None
            )
            if not self._proc_sees_all:
                log.warning(
                    "tailup runs in a PID namespace of its own (a container): /proc does not "
                    "show writers outside it, so files are deleted or moved after upload only "
                    "once their writer closed them"
                )
            await self._resume_live_streams(stop)
            log.info("watching", folders=[str(r) for r in self._roots])
            for folder in self._folders.described():
                log.info("folder settings (* its [[watch]] table's)", **folder)
            self.ready.set()
            await self._dispatch_until(stop)
            forward.cancel()
            leases.cancel()
            if salvaging is not None:
                salvaging.cancel()
            if retention is not None:
                retention.cancel()
            # Before the streams are stopped: an event still being routed may start one.
            await lanes.join(self._settings.shutdown_grace)
            await self._drain()
            if self._hls is not None:
                self._hls.close()
            if timetable is not None:
                timetable.cancel()  # applied until the last part in flight is done
