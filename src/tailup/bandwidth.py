"""The upload bandwidth limit (--bwlimit): one rate, in bytes per second, for all streams together.

``--bwlimit`` is a rate (``8MiB``, ``500KiB``, ``20Mbit``, ``off``) or a timetable in rclone's form,
``"08:00,2MiB 19:00,off"``: each rate applies from its local time of day until the next entry's,
wrapping at midnight. Parsing and "the rate at this time of day" are pure (:class:`Schedule`).

The limit is a token bucket shared by every stream (:class:`TokenBucket`), consulted as part bodies
are written to their connections (tailup.body), a chunk at a time (16 KiB..1 MiB, ~1/32 s of the
rate): a part is not delayed and then sent at full speed, its bytes leave at the rate. The bucket
serves chunks in arrival order (a FIFO lock), so parts in flight share the rate evenly.
:class:`BandwidthLimit` is the daemon's: the schedule, the bucket, and a tick each second that
applies the timetable; a new rate wakes whoever waits, so it takes effect within a second.

No ``--bwlimit`` (or ``off``) means no limiter at all: bodies go out as before, untouched. A
timetable whose current entry is ``off`` costs one attribute check per MiB sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog

from tailup.units import format_size, parse_size

log = structlog.get_logger(__name__)

KiB = 1024
MiB = 1024 * KiB

MIN_RATE_BYTES = 16 * KiB  # one smallest chunk a second: slower leaves connections idle too long
MIN_CHUNK_BYTES = 16 * KiB
MAX_CHUNK_BYTES = 1 * MiB  # tailup.body's slice: at high rates, as many loop turns as unlimited
CHUNKS_PER_SECOND = 32  # a chunk is ~1/32 s of the rate: smooth, and few wake-ups
BURST_SECONDS = 0.125  # what the bucket holds when nobody sends: ~1/8 s of the rate
REFRESH_S = 1.0  # how often the timetable is looked at: a change applies within this

RATE_FORM = (
    "a rate in bytes per second like 8MiB, 500KiB or 2.5MB (a /s after it is fine), in bits "
    "like 20Mbit, or off (also 0); at least 16KiB"
)
TIMETABLE_FORM = (
    'a timetable of HH:MM,RATE entries, times ascending, like "08:00,2MiB 19:00,off": each '
    "rate applies from its local time until the next entry's, wrapping at midnight"
)
BWLIMIT_FORM = f"{RATE_FORM}; or {TIMETABLE_FORM}"

_BITS = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmg]?)bit$", re.IGNORECASE)
_BIT_PREFIXES = {"": 1, "k": 1000, "m": 1000**2, "g": 1000**3}
# 20Mb: megabits to a network engineer, megabytes to parse_size. Refused rather than guessed.
_AMBIGUOUS = re.compile(r"^\d+(?:\.\d+)?\s*[KMGT]b$")
_TIME = re.compile(r"^(\d{1,2}):(\d{2})$")


def parse_rate(text: str) -> int:
    """Bytes per second in ``text`` (0 for off); ValueError naming what is wrong."""
    shown = text.strip()
    body = shown.removesuffix("/s").removesuffix("/S").strip()
    if body.lower() == "off":
        return 0
    if ":" in body:
        raise ValueError(
            f"{shown!r} is not a rate (one upload rate only: rclone's UPLOAD:DOWNLOAD pairs are "
            "not accepted)"
        )
    if _AMBIGUOUS.match(body):
        number, unit = body[:-2].strip(), body[-2]
        raise ValueError(
            f"{shown!r} is ambiguous: write {number}{unit}bit for bits or {number}{unit}B for "
            "bytes per second"
        )
    bits = _BITS.match(body)
    if bits:
        rate = int(float(bits.group(1)) * _BIT_PREFIXES[bits.group(2).lower()] / 8)
    else:
        try:
            rate = parse_size(body)
        except ValueError:
            raise ValueError(f"{shown!r} is not a rate") from None
    if 0 < rate < MIN_RATE_BYTES:
        raise ValueError(f"{shown!r} is below the smallest limit, 16KiB per second")
    return rate


def describe_rate(bytes_per_second: int) -> str:
    return "off" if bytes_per_second == 0 else f"{format_size(bytes_per_second)}/s"


@dataclass(frozen=True, slots=True)
class Entry:
    minute: int  # of the day, local time: 0..1439
    rate: int  # bytes per second, 0 = off

    @property
    def at(self) -> str:
        return f"{self.minute // 60:02d}:{self.minute % 60:02d}"


@dataclass(frozen=True, slots=True)
class Schedule:
    """A constant rate (one entry at 00:00, ``timetable`` False) or a timetable."""

    entries: tuple[Entry, ...]
    timetable: bool
    text: str  # as given, spaces normalised

    @classmethod
    def constant(cls, rate: int, text: str | None = None) -> Schedule:
        return cls((Entry(0, rate),), False, describe_rate(rate) if text is None else text)

    @property
    def always_off(self) -> bool:
        return all(entry.rate == 0 for entry in self.entries)

    def entry_at(self, minute: int) -> Entry:
        """The entry in force at ``minute`` of the day: the last one at or before it, or, before
        the first entry, the day's last one (the timetable wraps at midnight)."""
        current = self.entries[-1]
        for entry in self.entries:
            if entry.minute > minute:
                break
            current = entry
        return current

    def rate_at(self, minute: int) -> int:
        return self.entry_at(minute).rate

    def next_entry(self, minute: int) -> Entry:
        """The entry that follows the one in force at ``minute`` (itself if it is the only one)."""
        current = self.entries.index(self.entry_at(minute))
        return self.entries[(current + 1) % len(self.entries)]


def parse_bwlimit(text: object) -> Schedule:
    """The schedule in a --bwlimit value; ValueError naming the entry that is wrong."""
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not text")
    tokens = text.split()
    if not tokens:
        raise ValueError("no rate given")
    if len(tokens) == 1 and "," not in tokens[0]:
        return Schedule.constant(parse_rate(tokens[0]), tokens[0])
    entries: list[Entry] = []
    for token in tokens:
        at, comma, rate = token.partition(",")
        if not comma:
            raise ValueError(f"{token!r} in the timetable is not HH:MM,RATE")
        minute = _parse_time(at, token)
        if entries and minute <= entries[-1].minute:
            raise ValueError(
                f"{at!r} follows {entries[-1].at!r}: times must ascend (the last entry applies "
                "until the first one the next day)"
            )
        try:
            entries.append(Entry(minute, parse_rate(rate)))
        except ValueError as exc:
            raise ValueError(f"in {token!r}: {exc}") from None
    return Schedule(tuple(entries), True, " ".join(tokens))


def _parse_time(at: str, token: str) -> int:
    match = _TIME.match(at)
    if match is None:
        hint = " (days of the week are not supported)" if "-" in at else ""
        raise ValueError(f"{at!r} in {token!r} is not a time of day HH:MM{hint}")
    hours, minutes = int(match.group(1)), int(match.group(2))
    if hours > 23 or minutes > 59:
        raise ValueError(f"{at!r} in {token!r} is not a time of day from 00:00 to 23:59")
    return hours * 60 + minutes


def chunk_bytes_for(rate: int) -> int:
    """The slice of a body sent per token request at ``rate``: a power of two near 1/32 s of
    it, 16 KiB..1 MiB."""
    chunk = MIN_CHUNK_BYTES
    while chunk * 2 <= min(rate // CHUNKS_PER_SECOND, MAX_CHUNK_BYTES):
        chunk *= 2
    return chunk


def burst_bytes_for(rate: int) -> int:
    return 0 if rate == 0 else max(chunk_bytes_for(rate), int(rate * BURST_SECONDS))


# How the bucket waits: ``seconds``, or less when ``woken`` is set (the rate changed).
Pause = Callable[[float, asyncio.Event], Awaitable[None]]


async def pause_until(seconds: float, woken: asyncio.Event) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await woken.wait()


class TokenBucket:
    """``rate`` bytes per second (0 = unlimited), holding at most ``burst_bytes_for(rate)``.

    ``take(n)`` returns once ``n`` bytes may be sent. Takers are served one at a time, in the
    order they came (asyncio.Lock is FIFO), each waiting only for its own bytes: no herd wakes
    at once, and parts in flight share the rate. A chunk larger than the burst (taken as the rate
    dropped) is let through once the bucket is full and leaves it in debt, paid by the next
    takers' waits. A new rate wakes the waiting taker, which computes its wait again.
    """

    def __init__(
        self,
        rate: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        pause: Pause = pause_until,
    ) -> None:
        self._clock = clock
        self._pause = pause
        self._rate = rate
        self._burst = burst_bytes_for(rate)
        self._tokens = float(self._burst)
        self._stamp = clock()
        self._lock = asyncio.Lock()
        self._changed = asyncio.Event()
        self.pauses = 0  # how often a taker had to wait (observable, for tests and debugging)

    @property
    def rate(self) -> int:
        return self._rate

    def set_rate(self, rate: int) -> None:
        if rate == self._rate:
            return
        self._refill(self._clock())  # what accrued so far, at the old rate
        was_off = self._rate == 0
        self._rate = rate
        self._burst = burst_bytes_for(rate)
        self._tokens = float(self._burst) if was_off else min(self._tokens, self._burst)
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self._stamp)
        self._stamp = now
        self._tokens = min(float(self._burst), self._tokens + elapsed * self._rate)

    async def take(self, n: int) -> None:
        if self._rate == 0:
            return
        async with self._lock:
            while self._rate > 0:
                self._refill(self._clock())
                needed = min(n, self._burst)
                if self._tokens > needed - 1:  # within a byte: float sums never quite get there
                    self._tokens -= n
                    return
                self.pauses += 1
                await self._pause((needed - self._tokens) / self._rate, self._changed)


def local_minute() -> int:
    """The minute of the day, local time (the timetable's clock)."""
    now = time.localtime()
    return now.tm_hour * 60 + now.tm_min


class BandwidthLimit:
    """The daemon's limit: its schedule, the one bucket all streams share, and the tick that
    applies the timetable (``run``). What tailup.body's payload asks: ``limiting``,
    ``chunk_bytes``, ``take``."""

    def __init__(
        self,
        schedule: Schedule,
        *,
        clock: Callable[[], float] = time.monotonic,
        pause: Pause = pause_until,
        minute_of_day: Callable[[], int] = local_minute,
    ) -> None:
        self.schedule = schedule
        self._minute_of_day = minute_of_day
        self._entry = schedule.entry_at(minute_of_day())
        self.bucket = TokenBucket(self._entry.rate, clock=clock, pause=pause)

    @classmethod
    def for_setting(cls, text: str) -> BandwidthLimit | None:
        """The limit for a --bwlimit value; None for one that is always off (nothing to do)."""
        schedule = parse_bwlimit(text)
        return None if schedule.always_off else cls(schedule)

    @property
    def bytes_per_second(self) -> int:
        return self.bucket.rate

    @property
    def limiting(self) -> bool:
        return self.bucket.rate > 0

    @property
    def chunk_bytes(self) -> int:
        return chunk_bytes_for(self.bucket.rate)

    async def take(self, n: int) -> None:
        await self.bucket.take(n)

    def refresh(self) -> bool:
        """Apply the timetable's entry for now; True (and a log line) if the rate changed."""
        entry = self.schedule.entry_at(self._minute_of_day())
        if entry == self._entry:
            return False
        self._entry = entry
        previous = self.bucket.rate
        self.bucket.set_rate(entry.rate)
        if entry.rate != previous:
            log.info(
                "bandwidth limit changed",
                bwlimit=describe_rate(entry.rate),
                bytes_per_second=entry.rate,
                previous=describe_rate(previous),
                since=entry.at,
            )
            return True
        return False

    def describe(self) -> dict[str, Any]:
        """For /healthz: the rate in force, and with a timetable, the next change."""
        body: dict[str, Any] = {
            "bytes_per_second": self.bytes_per_second,
            "rate": describe_rate(self.bytes_per_second),
            "timetable": None,
        }
        if self.schedule.timetable:
            following = self.schedule.next_entry(self._minute_of_day())
            body["timetable"] = self.schedule.text
            body["next_change"] = {"at": following.at, "rate": describe_rate(following.rate)}
        return body

    async def run(self, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        """Log the limit, then apply the timetable every REFRESH_S until cancelled."""
        log.info(
            "bandwidth limit",
            bwlimit=describe_rate(self.bytes_per_second),
            bytes_per_second=self.bytes_per_second,
            timetable=self.schedule.text if self.schedule.timetable else None,
        )
        if not self.schedule.timetable:
            return
        while True:
            await sleep(REFRESH_S)
            self.refresh()


def describe_limit(limit: BandwidthLimit | None) -> dict[str, Any]:
    """/healthz's ``bwlimit``: the rate in force now (0 and "off" when there is none)."""
    if limit is None:
        return {"bytes_per_second": 0, "rate": "off", "timetable": None}
    return limit.describe()
