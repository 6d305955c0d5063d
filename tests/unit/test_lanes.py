"""Which events may be routed at once (tailup.lanes): one path's events in order, a delete, move or
removed folder alone, other paths' opens side by side."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from tailup.events import EventKind, FileEvent
from tailup.lanes import Lanes, lane_of

A, B = Path("/w/a.ts"), Path("/w/b.ts")
Job = Callable[[], Awaitable[None]]


@pytest.mark.parametrize(
    ("event", "lane"),
    [
        (FileEvent(EventKind.CREATED, A), frozenset({A})),
        (FileEvent(EventKind.MODIFIED, A), frozenset({A})),
        (FileEvent(EventKind.CLOSED, A), frozenset({A})),
        (FileEvent(EventKind.DISCOVERED, A, writer_open=False), frozenset({A})),
        # Each touches more than its path (a destination, a folder, an inode number set free).
        (FileEvent(EventKind.DELETED, A), None),
        (FileEvent(EventKind.MOVED, A, dest_path=B), None),
        (FileEvent(EventKind.ROOT_GONE, Path("/w")), None),
    ],
)
def test_lane_of(event: FileEvent, lane: frozenset[Path] | None) -> None:
    assert lane_of(event) == lane


async def test_one_paths_jobs_wait_for_each_other_and_other_paths_do_not() -> None:
    log: list[str] = []
    gate = asyncio.Event()
    other_done = asyncio.Event()

    async def first() -> None:
        log.append("a1 start")
        await gate.wait()
        log.append("a1 end")

    async def second() -> None:
        log.append("a2")

    async def other() -> None:
        log.append("b")
        other_done.set()

    async with asyncio.TaskGroup() as group:
        lanes = Lanes(group.create_task, limit=8)
        await lanes.submit(frozenset({A}), first)
        await lanes.submit(frozenset({A}), second)
        await lanes.submit(frozenset({B}), other)
        await other_done.wait()  # b ran while a1 was still waiting: a2 must not have
        assert log == ["a1 start", "b"]
        gate.set()
    assert log == ["a1 start", "b", "a1 end", "a2"]
    assert lanes.pending == 0


async def test_a_job_alone_follows_everything_before_and_precedes_everything_after() -> None:
    log: list[str] = []
    gate = asyncio.Event()

    def job(name: str, wait: bool = False) -> Job:
        async def run() -> None:
            log.append(f"{name} start")
            if wait:
                await gate.wait()
            log.append(f"{name} end")

        return run

    async def opener() -> None:
        gate.set()

    async with asyncio.TaskGroup() as group:
        lanes = Lanes(group.create_task, limit=8)
        await lanes.submit(frozenset({A}), job("a", wait=True))
        # Runs beside a (another path), and lets it end only once everything was submitted.
        await lanes.submit(frozenset({Path("/w/c.ts")}), opener)
        await lanes.submit(None, job("delete"))
        await lanes.submit(frozenset({B}), job("b"))
    assert log == ["a start", "a end", "delete start", "delete end", "b start", "b end"]


async def test_no_more_jobs_than_the_limit_are_in_flight() -> None:
    gate = asyncio.Event()
    started: list[Path] = []

    def job(path: Path) -> Job:
        async def run() -> None:
            started.append(path)
            await gate.wait()

        return run

    async with asyncio.TaskGroup() as group:
        lanes = Lanes(group.create_task, limit=1)
        await lanes.submit(frozenset({A}), job(A))
        third = asyncio.ensure_future(lanes.submit(frozenset({B}), job(B)))
        await asyncio.wait({third}, timeout=0)  # nothing frees a slot: the submit waits
        assert not third.done() and started == [A]
        gate.set()
        await third
    assert started == [A, B]


async def test_join_cancels_what_outlives_its_timeout() -> None:
    cancelled = asyncio.Event()

    async def stuck() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async with asyncio.TaskGroup() as group:
        lanes = Lanes(group.create_task, limit=2)
        await lanes.submit(frozenset({A}), stuck)
        await lanes.join(timeout_s=0)
    assert cancelled.is_set() and lanes.pending == 0
