"""The health verdict: fresh answers from every dependency, or 503 with the reason."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tailup.health import DependencyState, HealthMonitor, evaluate


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_healthy_when_every_dependency_answered_recently() -> None:
    states = {"redis": DependencyState(last_success=995.0), "s3": DependencyState(last_success=990)}
    report = evaluate(states, now=1000.0, max_age_s=10.0)
    assert report.healthy
    assert report.body["status"] == "ok" and "reason" not in report.body
    assert report.body["dependencies"]["s3"] == {
        "ok": True,
        "last_success_age_s": 10.0,
        "last_error": None,
    }


def test_stale_or_never_answered_dependencies_are_named_with_their_error() -> None:
    states = {
        "redis": DependencyState(last_success=999.0),
        "s3": DependencyState(last_success=980.0, last_error="S3 check bucket: connection refused"),
        "other": DependencyState(),
    }
    report = evaluate(states, now=1000.0, max_age_s=10.0)
    assert not report.healthy
    reason = report.body["reason"]
    assert "s3 has not answered for 20.0 s (limit 10 s): S3 check bucket: connection refused" in (
        reason
    )
    assert "other has not answered yet" in reason
    assert "redis" not in reason
    assert report.body["dependencies"]["redis"]["ok"] is True


async def test_monitor_turns_unhealthy_only_after_the_window_and_recovers() -> None:
    clock = FakeClock()
    failing = False

    async def s3_probe() -> None:
        if failing:
            raise ConnectionError("connection refused")

    async def redis_probe() -> None:
        return None

    monitor = HealthMonitor(
        {"redis": redis_probe, "s3": s3_probe}, interval_s=1.0, max_age_s=3.0, clock=clock
    )
    assert not monitor.report().healthy  # nothing probed yet
    await monitor.probe_once()
    assert monitor.report().healthy

    failing = True
    clock.now += 2.0
    await monitor.probe_once()
    # One failed probe inside the window: still healthy, but the error is visible.
    report = monitor.report()
    assert report.healthy
    assert report.body["dependencies"]["s3"]["last_error"] == "connection refused"
    assert monitor.dependency_status()["s3"][0] is False

    clock.now += 2.0  # last success 4 s ago, limit 3 s
    await monitor.probe_once()
    report = monitor.report()
    assert not report.healthy
    assert report.body["reason"].startswith("s3 has not answered for 4.0 s")
    assert "connection refused" in report.body["reason"]

    failing = False
    await monitor.probe_once()
    assert monitor.report().healthy


async def test_a_probe_that_hangs_counts_as_no_answer() -> None:
    async def hangs() -> None:
        await asyncio.Event().wait()

    monitor = HealthMonitor({"s3": hangs}, interval_s=1.0, timeout_s=0.05)
    await monitor.probe_once()
    assert monitor.states["s3"].last_error == "no answer within 0.05 s"
    assert not monitor.report().healthy


def test_default_window_tolerates_one_missed_probe() -> None:
    async def ok() -> None:
        return None

    monitor = HealthMonitor({"redis": ok}, interval_s=5.0)
    assert monitor.timeout_s == 5.0
    assert monitor.max_age_s == 15.0


def test_a_watch_folder_not_watched_is_named() -> None:
    """N9: a root that went away (and is not back) is not watched: 503 naming it, not 200."""
    states = {"redis": DependencyState(last_success=999.0)}
    report = evaluate(
        states, now=1000.0, max_age_s=10.0, unwatched={"/mnt/nas": "gone; watched again once back"}
    )
    assert not report.healthy
    assert "watch folder /mnt/nas is not watched: gone" in report.body["reason"]
    assert report.body["unwatched"] == {"/mnt/nas": "gone; watched again once back"}


def test_the_monitor_asks_which_roots_are_not_watched_at_each_report() -> None:
    away: dict[Path, str] = {Path("/mnt/nas"): "gone"}
    clock = FakeClock()
    monitor = HealthMonitor({}, interval_s=1.0, clock=clock, unwatched=lambda: away)
    assert not monitor.report().healthy
    away.clear()
    assert monitor.report().healthy
