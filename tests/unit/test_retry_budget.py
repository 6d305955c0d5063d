"""Back-off delays, and the byte budget shared by every stream's parts in flight."""

from __future__ import annotations

import asyncio
import itertools
import random

import pytest

from tailup.budget import ByteBudget
from tailup.retry import Backoff, backoff_delay_s

# -- backoff --

BASE, CAP = 0.5, 30.0


def window(attempt: int) -> float:
    """The upper bound of the delay before retry ``attempt``: base doubling, capped."""
    value = BASE
    for _ in range(attempt - 1):
        value = min(CAP, value * 2)
    return value


@pytest.mark.parametrize("jitter", [0.0, 0.5, 0.999])
def test_backoff_grows_then_caps(jitter: float) -> None:
    delays = [backoff_delay_s(a, base_s=BASE, cap_s=CAP, jitter=jitter) for a in range(1, 20)]
    for earlier, later in itertools.pairwise(delays):
        assert later >= earlier
    # Doubling while under the cap: 0.5, 1, 2, 4, 8, 16 -> then 30.
    for attempt in range(1, 6):
        assert delays[attempt] == pytest.approx(2 * delays[attempt - 1])
    assert delays[6] < 2 * delays[5]
    assert delays[-1] == delays[-2]
    assert delays[-1] <= CAP


@pytest.mark.parametrize("attempt", [1, 2, 3, 5, 6, 7, 10, 50, 1000, 1025, 5000, 10**6])
@pytest.mark.parametrize("jitter", [0.0, 0.25, 0.5, 0.75, 0.999999])
def test_backoff_jitter_bounds(attempt: int, jitter: float) -> None:
    delay = backoff_delay_s(attempt, base_s=BASE, cap_s=CAP, jitter=jitter)
    upper = window(min(attempt, 100))  # the window stops changing once capped
    assert upper / 2 <= delay <= upper
    assert delay <= CAP


def test_backoff_jitter_spreads_delays() -> None:
    low = backoff_delay_s(4, base_s=BASE, cap_s=CAP, jitter=0.0)
    high = backoff_delay_s(4, base_s=BASE, cap_s=CAP, jitter=0.99)
    assert high > low


@pytest.mark.parametrize("attempt", [0, -1])
def test_backoff_attempt_counts_from_one(attempt: int) -> None:
    with pytest.raises(ValueError):
        backoff_delay_s(attempt, base_s=BASE, cap_s=CAP, jitter=0.5)


def test_backoff_object_sequence_and_reset() -> None:
    backoff = Backoff(base_s=BASE, cap_s=CAP, rng=random.Random(42))
    delays = [backoff.next_delay_s() for _ in range(12)]
    assert backoff.attempt == 12
    for attempt, delay in enumerate(delays, start=1):
        assert window(attempt) / 2 <= delay <= window(attempt)
    backoff.reset()
    assert backoff.attempt == 0
    assert backoff.next_delay_s() <= window(1)


def test_backoff_survives_a_very_long_outage() -> None:
    # A stream stalled for days keeps asking for the next delay: it must stay capped, not crash.
    backoff = Backoff(base_s=BASE, cap_s=CAP, rng=random.Random(1))
    for _ in range(3000):
        delay = backoff.next_delay_s()
        assert 0 < delay <= CAP


# -- byte budget --


async def spin(times: int = 5) -> None:
    """Let every ready task run, without sleeping."""
    for _ in range(times):
        await asyncio.sleep(0)


@pytest.mark.parametrize(
    ("capacity", "requests"),
    [(100, [100]), (100, [40, 60]), (100, [10] * 10), (100, [1, 2, 3]), (100, [0])],
)
async def test_acquire_within_capacity_does_not_block(capacity: int, requests: list[int]) -> None:
    budget = ByteBudget(capacity)
    async with asyncio.timeout(1):
        grants = [await budget.acquire(r) for r in requests]
    assert grants == requests
    assert budget.in_use_bytes == sum(requests)


@pytest.mark.parametrize(
    ("capacity", "held", "requested", "released"),
    [(100, 100, 1, 1), (100, 60, 50, 10), (100, 90, 20, 90), (10, 5, 6, 5)],
)
async def test_acquire_over_capacity_waits_for_a_release(
    capacity: int, held: int, requested: int, released: int
) -> None:
    budget = ByteBudget(capacity)
    grant_held = await budget.acquire(held)
    waiter = asyncio.create_task(budget.acquire(requested))
    await spin()
    assert not waiter.done()
    assert budget.in_use_bytes == held
    await budget.release(released)
    async with asyncio.timeout(1):
        grant = await waiter
    assert grant == requested
    assert budget.in_use_bytes == grant_held - released + requested


async def test_a_release_too_small_keeps_the_waiter_waiting() -> None:
    budget = ByteBudget(100)
    await budget.acquire(90)
    waiter = asyncio.create_task(budget.acquire(50))
    await spin()
    await budget.release(30)  # 60 in use: 50 more does not fit yet
    await spin()
    assert not waiter.done()
    await budget.release(10)  # 50 in use: now it fits
    async with asyncio.timeout(1):
        assert await waiter == 50
    assert budget.in_use_bytes == 100


@pytest.mark.parametrize("requested", [101, 1000, 10**12])
async def test_request_larger_than_capacity_gets_capacity(requested: int) -> None:
    budget = ByteBudget(100)
    async with asyncio.timeout(1):
        grant = await budget.acquire(requested)
    assert grant == 100
    assert budget.in_use_bytes == 100
    await budget.release(grant)
    assert budget.in_use_bytes == 0


async def test_oversized_request_waits_for_the_whole_budget_without_deadlock() -> None:
    budget = ByteBudget(100)
    first = await budget.acquire(30)
    second = await budget.acquire(30)
    big = asyncio.create_task(budget.acquire(500))
    await spin()
    assert not big.done()
    await budget.release(first)
    await spin()
    assert not big.done()  # 30 still held
    await budget.release(second)
    async with asyncio.timeout(1):
        assert await big == 100


async def test_hold_releases_on_exit_and_on_error() -> None:
    budget = ByteBudget(100)
    async with budget.hold(70) as grant:
        assert grant == 70
        assert budget.in_use_bytes == 70
    assert budget.in_use_bytes == 0
    with pytest.raises(RuntimeError):
        async with budget.hold(200) as grant:
            assert grant == 100
            raise RuntimeError("upload failed")
    assert budget.in_use_bytes == 0


async def test_hold_releases_on_cancellation() -> None:
    budget = ByteBudget(100)
    entered = asyncio.Event()
    never = asyncio.Event()

    async def holder() -> None:
        async with budget.hold(80):
            entered.set()
            await never.wait()

    task = asyncio.create_task(holder())
    async with asyncio.timeout(1):
        await entered.wait()
    assert budget.in_use_bytes == 80
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(1):
            await task
    await spin()
    assert budget.in_use_bytes == 0
    # And the budget is usable in full again.
    async with asyncio.timeout(1):
        assert await budget.acquire(100) == 100


async def test_cancelling_a_waiter_takes_nothing() -> None:
    budget = ByteBudget(100)
    await budget.acquire(100)
    waiter = asyncio.create_task(budget.acquire(50))
    await spin()
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(1):
            await waiter
    assert budget.in_use_bytes == 100
    await budget.release(100)
    assert budget.in_use_bytes == 0


async def test_many_waiters_all_get_through() -> None:
    budget = ByteBudget(100)

    async def worker() -> None:
        async with budget.hold(60):
            await spin(2)

    async with asyncio.timeout(2):
        await asyncio.gather(*(worker() for _ in range(20)))
    assert budget.in_use_bytes == 0


@pytest.mark.parametrize("capacity", [0, -1])
def test_budget_must_be_positive(capacity: int) -> None:
    with pytest.raises(ValueError):
        ByteBudget(capacity)


async def test_budget_refuses_a_negative_request() -> None:
    budget = ByteBudget(10)
    with pytest.raises(ValueError, match="negative"):
        await budget.acquire(-1)
    assert budget.in_use_bytes == 0
