"""Health: does the daemon still reach Redis and S3?

A background task probes each dependency every few seconds with the cheapest call that proves it
answers for this daemon (Redis PING, S3 HeadBucket, on the daemon's own long-lived clients). The
daemon is healthy while every dependency answered within ``max_age_s``; one failed probe inside
that window is a blip, not an outage. The verdict is a pure function of the recorded times, so it
is tested without servers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from tailup.observe import redact_text

log = structlog.get_logger(__name__)

Probe = Callable[[], Awaitable[None]]


@dataclass
class DependencyState:
    last_success: float | None = None  # monotonic
    last_success_unix: float | None = None
    last_ok: bool = False
    last_error: str | None = None
    last_error_unix: float | None = None


@dataclass(frozen=True, slots=True)
class HealthReport:
    healthy: bool
    body: dict[str, Any]


def evaluate(
    states: Mapping[str, DependencyState],
    *,
    now: float,
    max_age_s: float,
    unwatched: Mapping[str, str] | None = None,
) -> HealthReport:
    """Healthy when every dependency answered within ``max_age_s`` of ``now`` (monotonic) and
    every watch folder is watched (``unwatched``: the folders that are not, with why)."""
    problems = [
        f"watch folder {root} is not watched: {why}" for root, why in (unwatched or {}).items()
    ]
    details: dict[str, Any] = {}
    for name, state in states.items():
        age = None if state.last_success is None else max(0.0, now - state.last_success)
        fresh = age is not None and age <= max_age_s
        details[name] = {
            "ok": fresh,
            "last_success_age_s": None if age is None else round(age, 3),
            "last_error": state.last_error,
        }
        if not fresh:
            problems.append(_problem(name, age, state.last_error, max_age_s))
    body: dict[str, Any] = {"status": "ok" if not problems else "unhealthy"}
    if problems:
        body["reason"] = "; ".join(problems)
    body["dependencies"] = details
    if unwatched:
        body["unwatched"] = dict(unwatched)
    return HealthReport(not problems, body)


def _problem(name: str, age: float | None, error: str | None, max_age_s: float) -> str:
    when = "has not answered yet" if age is None else f"has not answered for {age:.1f} s"
    because = f": {error}" if error else ""
    return f"{name} {when} (limit {max_age_s:g} s){because}"


class HealthMonitor:
    def __init__(
        self,
        probes: Mapping[str, Probe],
        *,
        interval_s: float,
        timeout_s: float | None = None,
        max_age_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        unwatched: Callable[[], Mapping[Path, str]] = dict,
    ) -> None:
        self._probes = dict(probes)
        self._unwatched = unwatched
        self.interval_s = interval_s
        self.timeout_s = timeout_s if timeout_s is not None else max(1.0, min(interval_s, 5.0))
        # Two missed probes in a row plus the time one may take: a single blip is not an outage.
        self.max_age_s = max_age_s if max_age_s is not None else 2 * interval_s + self.timeout_s
        self._clock = clock
        self.states = {name: DependencyState() for name in self._probes}

    async def probe_once(self) -> None:
        await asyncio.gather(*(self._probe(name, probe) for name, probe in self._probes.items()))

    async def _probe(self, name: str, probe: Probe) -> None:
        state = self.states[name]
        try:
            async with asyncio.timeout(self.timeout_s):
                await probe()
        except TimeoutError:
            self._failed(name, state, f"no answer within {self.timeout_s:g} s")
        except Exception as exc:  # any failure is the dependency's state, not the daemon's crash
            self._failed(name, state, str(exc) or type(exc).__name__)
        else:
            if not state.last_ok and state.last_error is not None:
                log.info("dependency answers again", dependency=name)
            state.last_success = self._clock()
            state.last_success_unix = time.time()
            state.last_ok = True

    def _failed(self, name: str, state: DependencyState, reason: str) -> None:
        reason = redact_text(reason)
        if state.last_ok or state.last_error != reason:
            log.warning("dependency probe failed", dependency=name, reason=reason)
        state.last_ok = False
        state.last_error = reason
        state.last_error_unix = time.time()

    async def run(self) -> None:
        """Probe forever (cancel to stop)."""
        while True:
            await self.probe_once()
            await asyncio.sleep(self.interval_s)

    def report(self) -> HealthReport:
        unwatched = {str(root): why for root, why in self._unwatched().items()}
        return evaluate(
            self.states, now=self._clock(), max_age_s=self.max_age_s, unwatched=unwatched
        )

    def dependency_status(self) -> dict[str, tuple[bool, float | None]]:
        return {name: (s.last_ok, s.last_success_unix) for name, s in self.states.items()}
