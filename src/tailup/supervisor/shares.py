"""Scopes and shared folders: live streams resumed at start and taken over, claims,
records localized to this node's mounts, path entries."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import TypeVar

import structlog

from tailup.checkpoint import Claim
from tailup.errors import (
    RetryableError,
    SourceStalled,
    TailupError,
)
from tailup.keys import (
    index_path,
)
from tailup.model import (
    PartRecord,
    StreamRecord,
)
from tailup.retry import Backoff
from tailup.supervisor.state import (
    SupervisorState,
    containing_root,
)

log = structlog.get_logger("tailup.supervisor")
T = TypeVar("T")


class Shares(SupervisorState):
    async def _resume_live_streams(self, stop: asyncio.Event) -> None:
        """Start every stream Redis has as live; each reconciles itself with its file and S3.
        Waits for Redis if it is not there yet (events queue up meanwhile)."""
        backoff = Backoff(cap_s=10.0)
        while not stop.is_set():
            try:
                await self._resume_each()
                return
            except RetryableError as exc:
                delay = backoff.next_delay_s()
                log.warning(
                    "cannot load live streams yet; retrying",
                    reason=str(exc),
                    retry_in_s=round(delay, 2),
                )
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await stop.wait()

    async def _resume_each(self) -> None:
        await self._look_at_shares()
        own = [str(r) for r in self._roots if r not in self._shares]
        if own and (taken := await self._checkpoints.adopt_legacy(own)):
            log.info("records of tailup before nodes taken over by this node", streams=taken)
        await self._resume_scope(self._scope)
        for _name, scope in self._shares.values():
            await self._resume_scope(scope)

    async def _resume_scope(self, scope: str) -> None:
        """Start every live stream of a scope that runs nowhere here. In a shared folder's scope
        the claim comes first and the record is loaded only once claimed: a round costs one
        claim per recording other nodes hold, not a load of each with its parts (N11), and a
        record completed meanwhile is read as completed, not resumed stale. A claim that
        starts no stream is given back (N7)."""
        shared = scope != self._scope
        for stream_id in await self._checkpoints.live_stream_ids(scope):
            if stream_id in self._by_id:
                continue
            if shared and not await self._claim(stream_id):
                continue
            try:
                started = await self._resume_one(stream_id, shared=shared)
            except TailupError:
                if shared:
                    await self._release_claim(stream_id)
                raise
            if shared and not started:
                await self._release_claim(stream_id)

    async def _claim(self, stream_id: str) -> bool:
        got = await self._checkpoints.claim(stream_id, self._node_id, self._settings.lease_ttl)
        if not isinstance(got, Claim):
            log.debug("another node uploads it", stream_id=stream_id, holder=got)
        return isinstance(got, Claim)

    async def _release_claim(self, stream_id: str) -> None:
        with contextlib.suppress(TailupError):
            await self._checkpoints.release_claim(stream_id)

    async def _resume_one(self, stream_id: str, *, shared: bool) -> bool:
        """Resume one live record (claimed already, in a shared folder): whether it started."""
        loaded = await self._checkpoints.load(stream_id)
        if loaded is None:
            return False
        record, parts = self._localize(loaded[0]), loaded[1]
        if not record.state.is_resumable:
            await self._leave_live_set(record)
            return False
        if containing_root(Path(record.path), self._roots) is None:
            # Not this daemon's folders (any more): touch nothing, delete nothing.
            log.warning(
                "live stream not resumed: its folder is not watched",
                stream_id=stream_id,
                path=record.path,
            )
            return False
        record = await self._follow_renamed(record)  # renamed while tailup was down (N6)
        if Path(record.path) in self._streams or stream_id in self._by_id:
            return False
        if shared and record.owner != self._node_id:
            log.info(
                "taking over a shared folder's recording",
                stream_id=stream_id,
                previous_owner=record.owner,
                path=record.path,
            )
            await self._checkpoints.update(stream_id, owner=self._node_id)
            record = record.with_changes(owner=self._node_id)
        log.info(
            "resuming stream",
            stream_id=stream_id,
            path=record.path,
            parts=len(parts),
            state=record.state.value,
        )
        self._start(record, parts, writer_closed=False, resumed=True)
        return True

    async def _leave_live_set(self, record: StreamRecord) -> None:
        """A stream that ended, still in the live set: the process died between the state write
        and the index update (other hash slots under Redis Cluster, so not one transaction).
        Writing the same state again moves it out; its last activity is kept."""
        log.info("ended stream left in the live set", stream_id=record.stream_id)
        await self._checkpoints.update(
            record.stream_id,
            state=record.state,
            last_activity_at_utc=record.last_activity_at_utc,
        )

    def _scope_of(self, path: Path) -> tuple[str, Path | None]:
        """The scope a file is indexed in (this node's, or its shared folder's) and its root."""
        root = containing_root(path, self._roots)
        if root is not None and root in self._shares:
            return self._shares[root][1], root
        return self._scope, root

    def _entry(self, path: Path) -> tuple[str, str]:
        """(scope, name in the scope's path index) of a watched file."""
        scope, root = self._scope_of(path)
        return scope, index_path(scope, str(path), str(root) if root else "")

    def _localize(self, record: StreamRecord) -> StreamRecord:
        """A shared folder's record as this node sees it: under this node's mount of it."""
        if not record.scope.startswith("share:"):
            return record
        root = next((r for r, (_, sc) in self._shares.items() if sc == record.scope), None)
        if root is None:
            return record
        rel = index_path(record.scope, record.path, record.watch_root)
        device = self._share_devices.get(root, record.device)
        return record.with_changes(path=str(root / rel), watch_root=str(root), device=device)

    async def _look_at_shares(self) -> None:
        for root in self._shares:
            with contextlib.suppress(OSError, SourceStalled):
                self._share_devices[root] = (await self._io(os.stat, root)).st_dev

    async def _forget_path(self, path: Path, stream_id: str) -> None:
        scope, entry = self._entry(path)
        await self._checkpoints.forget_path(entry, stream_id, scope)

    async def _path_history(self, path: Path) -> tuple[StreamRecord | None, dict[int, PartRecord]]:
        """The path's latest recording and its parts, if that record still names this path."""
        scope, entry = self._entry(path)
        stream_id = await self._checkpoints.stream_for_path(entry, scope)
        loaded = await self._checkpoints.load(stream_id) if stream_id else None
        if loaded is None:
            return None, {}
        record = self._localize(loaded[0])
        if record.path != str(path):
            return None, {}  # renamed away since: that record is another path's now
        return record, loaded[1]
