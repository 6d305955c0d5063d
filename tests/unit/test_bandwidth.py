"""--bwlimit: rates and timetables as people write them, the rate at each time of day, the token
bucket every stream shares (on a fake clock: no test here waits for real time), and the payload
that asks it before each chunk."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from prometheus_client import CollectorRegistry, generate_latest
from structlog.testing import capture_logs as _capture_logs

import tailup.bandwidth
from tailup.bandwidth import (
    MIN_RATE_BYTES,
    REFRESH_S,
    BandwidthLimit,
    Entry,
    Schedule,
    TokenBucket,
    burst_bytes_for,
    chunk_bytes_for,
    describe_limit,
    parse_bwlimit,
    parse_rate,
)
from tailup.body import SLICE_BYTES, write_throttled
from tailup.config import ACCEPTED_FORMS, load_settings, read_config_file
from tailup.errors import ConfigError
from tailup.metrics import DaemonCollector


@contextlib.contextmanager
def capture_logs() -> Iterator[list[dict[str, Any]]]:
    """structlog's capture, with a logger of tailup.bandwidth made inside it: the module's own
    is cached at its first use (cache_logger_on_first_use) with whatever an earlier test of the
    session configured, and would log past the capture."""
    saved = structlog.get_config()
    # An earlier test of the session may have configured a level filter (the daemon's
    # --log-level) that drops info lines before any processor sees them.
    structlog.reset_defaults()
    original = tailup.bandwidth.log
    try:
        with _capture_logs() as logs:
            tailup.bandwidth.log = structlog.get_logger("tailup.bandwidth")
            yield logs
    finally:
        tailup.bandwidth.log = original
        structlog.configure(**saved)


KIB = 1024
MIB = 1024 * KIB


def hm(text: str) -> int:
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


# -- rates --


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8MiB", 8 * MIB),
        ("8M", 8 * MIB),
        ("8MB", 8_000_000),
        ("8mb", 8_000_000),
        ("8MiB/s", 8 * MIB),
        (" 8 MiB/s ", 8 * MIB),
        ("500KiB", 500 * KIB),
        ("2.5MB", 2_500_000),
        ("1GiB", 1024 * MIB),
        ("16KiB", 16 * KIB),
        ("1000000", 1_000_000),
        ("20Mbit", 2_500_000),
        ("20mbit", 2_500_000),
        ("20 Mbit/s", 2_500_000),
        ("1.5Gbit", 187_500_000),
        ("800kbit", 100_000),
        ("off", 0),
        ("OFF", 0),
        ("0", 0),
        ("0B", 0),
    ],
)
def test_rates_are_bytes_per_second(text: str, expected: int) -> None:
    assert parse_rate(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("fast", "'fast' is not a rate"),
        ("", "'' is not a rate"),
        ("-1MiB", "is not a rate"),
        ("8 parsecs", "is not a rate"),
        ("20Mb", "ambiguous: write 20Mbit for bits or 20MB for bytes"),
        ("100Kb", "ambiguous"),
        ("1KiB", "below the smallest limit, 16KiB"),
        ("100", "below the smallest limit"),
        ("10M:off", "UPLOAD:DOWNLOAD pairs are not accepted"),
        ("20Kibit", "is not a rate"),
    ],
)
def test_bad_rates_say_what_is_wrong(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_rate(text)


def test_the_smallest_rate_is_accepted() -> None:
    assert parse_rate(str(MIN_RATE_BYTES)) == MIN_RATE_BYTES


# -- timetables --


@pytest.mark.parametrize(
    ("text", "entries", "timetable"),
    [
        ("8MiB", [("00:00", 8 * MIB)], False),
        ("off", [("00:00", 0)], False),
        ("08:00,2MiB", [("08:00", 2 * MIB)], True),
        ("08:00,2MiB 19:00,off", [("08:00", 2 * MIB), ("19:00", 0)], True),
        (
            "00:00,off  06:30,512KiB\t12:00,20Mbit 23:59,1M",
            [("00:00", 0), ("06:30", 512 * KIB), ("12:00", 2_500_000), ("23:59", MIB)],
            True,
        ),
        ("8:05,1MiB", [("08:05", MIB)], True),
    ],
)
def test_timetables_parse(text: str, entries: list[tuple[str, int]], timetable: bool) -> None:
    schedule = parse_bwlimit(text)
    assert schedule.entries == tuple(Entry(hm(at), rate) for at, rate in entries)
    assert schedule.timetable is timetable
    assert schedule.text == " ".join(text.split())


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "no rate given"),
        ("   ", "no rate given"),
        ("08:00,2MiB 07:00,off", "'07:00' follows '08:00': times must ascend"),
        ("08:00,2MiB 08:00,off", "'08:00' follows '08:00'"),
        ("08:00,2MiB 19:00", "'19:00' in the timetable is not HH:MM,RATE"),
        ("08:00,2MiB off", "'off' in the timetable is not HH:MM,RATE"),
        ("24:00,1MiB", "'24:00' in '24:00,1MiB' is not a time of day from 00:00 to 23:59"),
        ("08:60,1MiB", "not a time of day from 00:00 to 23:59"),
        ("8h,1MiB", "'8h' in '8h,1MiB' is not a time of day HH:MM"),
        ("Mon-08:00,1MiB", "days of the week are not supported"),
        ("08:00,fast", "in '08:00,fast': 'fast' is not a rate"),
        ("08:00,1KiB 19:00,off", "in '08:00,1KiB': '1KiB' is below the smallest limit"),
        ("08:00,20Mb", "ambiguous"),
    ],
)
def test_bad_timetables_name_the_entry(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_bwlimit(text)


def test_only_text_is_a_bwlimit() -> None:
    with pytest.raises(ValueError, match="is not text"):
        parse_bwlimit(8 * MIB)


DAY = parse_bwlimit("08:00,2MiB 12:30,4MiB 19:00,off")


@pytest.mark.parametrize(
    ("at", "rate"),
    [
        ("00:00", 0),  # before the first entry: the last one, from the evening before
        ("07:59", 0),
        ("08:00", 2 * MIB),
        ("12:29", 2 * MIB),
        ("12:30", 4 * MIB),
        ("18:59", 4 * MIB),
        ("19:00", 0),
        ("23:59", 0),
    ],
)
def test_each_entry_applies_until_the_next_wrapping_at_midnight(at: str, rate: int) -> None:
    assert DAY.rate_at(hm(at)) == rate


@pytest.mark.parametrize(
    ("at", "following"),
    [("07:00", "08:00"), ("08:00", "12:30"), ("13:00", "19:00"), ("23:00", "08:00")],
)
def test_the_next_change(at: str, following: str) -> None:
    assert DAY.next_entry(hm(at)).at == following


def test_one_entry_applies_all_day() -> None:
    single = parse_bwlimit("08:00,2MiB")
    assert {single.rate_at(minute) for minute in range(0, 1440, 7)} == {2 * MIB}


def test_always_off() -> None:
    assert parse_bwlimit("off").always_off
    assert parse_bwlimit("08:00,off 19:00,0").always_off
    assert not DAY.always_off
    assert BandwidthLimit.for_setting("off") is None  # nothing to do: no limiter at all
    assert BandwidthLimit.for_setting("0") is None
    assert BandwidthLimit.for_setting("8MiB") is not None


# -- chunks and bursts --


@pytest.mark.parametrize(
    ("rate", "chunk"),
    [
        (16 * KIB, 16 * KIB),
        (512 * KIB, 16 * KIB),
        (1 * MIB, 32 * KIB),
        (2 * MIB, 64 * KIB),
        (2_500_000, 64 * KIB),
        (8 * MIB, 256 * KIB),
        (32 * MIB, 1 * MIB),
        (1024 * MIB, 1 * MIB),
    ],
)
def test_chunks_are_about_a_32nd_of_a_second(rate: int, chunk: int) -> None:
    assert chunk_bytes_for(rate) == chunk
    assert burst_bytes_for(rate) >= chunk  # a chunk always fits a full bucket


def test_burst_is_an_eighth_of_a_second_and_nothing_when_off() -> None:
    assert burst_bytes_for(8 * MIB) == MIB
    assert burst_bytes_for(0) == 0


# -- the token bucket, on a fake clock --


class FakeTime:
    """A monotonic clock that moves only when the bucket pauses (by what it asked for), unless
    ``hold`` is set: then a pause waits until the bucket is woken (a rate change)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.pauses: list[float] = []
        self.hold = False
        self.paused = asyncio.Event()

    def clock(self) -> float:
        return self.now

    async def pause(self, seconds: float, woken: asyncio.Event) -> None:
        self.pauses.append(seconds)
        self.paused.set()
        if self.hold:
            await woken.wait()
        else:
            self.now += seconds
        await asyncio.sleep(0)


def bucket_on(fake: FakeTime, rate: int) -> TokenBucket:
    return TokenBucket(rate, clock=fake.clock, pause=fake.pause)


async def send(bucket: TokenBucket, total: int, chunk: int) -> None:
    for start in range(0, total, chunk):
        await bucket.take(min(chunk, total - start))


async def test_a_full_bucket_lets_a_burst_through_at_once() -> None:
    fake = FakeTime()
    bucket = bucket_on(fake, 8 * MIB)
    await send(bucket, burst_bytes_for(8 * MIB), 256 * KIB)
    assert fake.pauses == [] and bucket.pauses == 0


@pytest.mark.parametrize(
    ("rate", "total", "chunk"),
    [
        (8 * MIB, 64 * MIB, 256 * KIB),
        (2 * MIB, 10 * MIB, 64 * KIB),
        (2_500_000, 7 * MIB + 12345, 64 * KIB),  # 20Mbit, a size no chunk divides
        (16 * KIB, 100 * KIB, 16 * KIB),
    ],
)
async def test_bytes_take_their_time_at_the_rate(rate: int, total: int, chunk: int) -> None:
    fake = FakeTime()
    bucket = bucket_on(fake, rate)
    await send(bucket, total, chunk)
    # What the full bucket held went at once; every other byte waited for its tokens.
    assert fake.now - 1000.0 == pytest.approx((total - burst_bytes_for(rate)) / rate)
    assert bucket.pauses == len(fake.pauses) > 0


async def test_takers_share_the_rate_in_the_order_they_came() -> None:
    fake = FakeTime()
    rate, chunk = 2 * MIB, 64 * KIB
    bucket = bucket_on(fake, rate)
    order: list[str] = []

    async def stream(name: str, chunks: int) -> None:
        for _ in range(chunks):
            await bucket.take(chunk)
            order.append(name)

    await asyncio.gather(stream("a", 40), stream("b", 40), stream("c", 40))
    total = 120 * chunk
    assert fake.now - 1000.0 == pytest.approx((total - burst_bytes_for(rate)) / rate)
    # Once the full bucket's burst is spent, and while all three still send, each gets every
    # third chunk: nobody is starved, nobody barges in.
    last_a = len(order) - order[::-1].index("a")
    steady = order[order.index("b") : last_a]
    assert len(steady) > 90
    for i in range(0, len(steady) - 2, 3):
        assert sorted(steady[i : i + 3]) == ["a", "b", "c"], steady


async def test_turning_the_limit_off_wakes_a_waiting_taker_at_once() -> None:
    fake = FakeTime()
    bucket = bucket_on(fake, 16 * KIB)
    await bucket.take(burst_bytes_for(16 * KIB))  # empty now
    fake.hold = True  # the next pause lasts until the bucket is woken
    waiting = asyncio.create_task(bucket.take(16 * KIB))
    await fake.paused.wait()
    assert fake.pauses == [pytest.approx(1.0)]  # 16 KiB at 16 KiB/s
    bucket.set_rate(0)
    await asyncio.wait_for(waiting, timeout=5)  # done, and the fake clock never moved
    assert fake.now == 1000.0 and len(fake.pauses) == 1
    await bucket.take(100 * MIB)  # off: nothing to wait for
    assert len(fake.pauses) == 1


async def test_a_new_rate_applies_to_the_taker_already_waiting() -> None:
    fake = FakeTime()
    bucket = bucket_on(fake, 32 * KIB)
    await bucket.take(burst_bytes_for(32 * KIB))
    fake.hold = True
    waiting = asyncio.create_task(bucket.take(16 * KIB))
    await fake.paused.wait()
    assert fake.pauses == [pytest.approx(0.5)]
    fake.paused.clear()
    fake.hold = False
    fake.now += 0.25  # a quarter second later the rate doubles: half the tokens are there
    bucket.set_rate(64 * KIB)
    await asyncio.wait_for(waiting, timeout=5)
    # 8 KiB came at the old rate; the other 8 KiB at the new one: 1/8 s more, not 1/4.
    assert fake.pauses[1:] == [pytest.approx(0.125)]


async def test_a_chunk_bigger_than_the_burst_goes_when_the_bucket_is_full_and_leaves_a_debt() -> (
    None
):
    fake = FakeTime()
    bucket = bucket_on(fake, 16 * KIB)  # burst 16 KiB
    await bucket.take(MIB)  # a chunk sized for a faster rate, taken as the rate dropped
    assert fake.pauses == []
    await bucket.take(16 * KIB)  # the debt (1 MiB - 16 KiB) is paid first
    assert fake.now - 1000.0 == pytest.approx((MIB - 16 * KIB + 16 * KIB) / (16 * KIB))


async def test_off_back_to_on_starts_with_a_full_bucket() -> None:
    fake = FakeTime()
    bucket = bucket_on(fake, 0)
    await bucket.take(100 * MIB)
    bucket.set_rate(8 * MIB)
    await send(bucket, burst_bytes_for(8 * MIB), 256 * KIB)
    assert fake.pauses == []


# -- the daemon's limit: the timetable's tick --


class Minute:
    def __init__(self, at: str) -> None:
        self.value = hm(at)

    def set(self, at: str) -> None:
        self.value = hm(at)

    def __call__(self) -> int:
        return self.value


def limit_on(schedule: Schedule, minute: Callable[[], int], fake: FakeTime) -> BandwidthLimit:
    return BandwidthLimit(schedule, clock=fake.clock, pause=fake.pause, minute_of_day=minute)


def test_the_limit_starts_at_the_entry_in_force_and_follows_the_timetable() -> None:
    minute = Minute("07:00")
    limit = limit_on(DAY, minute, FakeTime())
    assert (limit.bytes_per_second, limit.limiting) == (0, False)  # 19:00,off since last night
    with capture_logs() as logs:
        assert not limit.refresh()
        minute.set("08:00")
        assert limit.refresh()
        assert (limit.bytes_per_second, limit.limiting) == (2 * MIB, True)
        assert limit.chunk_bytes == 64 * KIB
        minute.set("08:01")
        assert not limit.refresh()
        minute.set("19:00")
        assert limit.refresh()
        assert (limit.bytes_per_second, limit.limiting) == (0, False)
    changes = [e for e in logs if e["event"] == "bandwidth limit changed"]
    assert [(e["bwlimit"], e["previous"], e["since"]) for e in changes] == [
        ("2.0 MiB/s", "off", "08:00"),
        ("off", "2.0 MiB/s", "19:00"),
    ]
    assert changes[0]["bytes_per_second"] == 2 * MIB


def test_entries_with_the_same_rate_change_nothing() -> None:
    minute = Minute("08:00")
    limit = limit_on(parse_bwlimit("08:00,2MiB 12:00,2MiB"), minute, FakeTime())
    minute.set("12:00")
    with capture_logs() as logs:
        assert not limit.refresh()
    assert logs == []


async def test_the_timetable_is_looked_at_every_second_and_the_limit_logged_at_start() -> None:
    minute = Minute("07:59")
    limit = limit_on(DAY, minute, FakeTime())
    slept: list[float] = []
    seen: list[int] = []

    async def one_second(seconds: float) -> None:
        slept.append(seconds)
        seen.append(limit.bytes_per_second)
        if len(slept) == 2:
            minute.set("08:00")  # the clock passes 08:00 during the second tick
        if len(slept) == 4:
            raise asyncio.CancelledError

    with capture_logs() as logs, pytest.raises(asyncio.CancelledError):
        await limit.run(sleep=one_second)
    assert slept == [REFRESH_S] * 4 and REFRESH_S <= 1.0
    assert seen == [0, 0, 2 * MIB, 2 * MIB]  # applied at the tick right after 08:00
    assert logs[0]["event"] == "bandwidth limit"
    assert logs[0]["bwlimit"] == "off" and logs[0]["timetable"] == DAY.text


async def test_a_constant_limit_is_logged_and_needs_no_tick() -> None:
    limit = BandwidthLimit(parse_bwlimit("8MiB"))

    async def never(seconds: float) -> None:
        raise AssertionError("a constant limit has nothing to look at")

    with capture_logs() as logs:
        await limit.run(sleep=never)
    assert logs == [
        {
            "event": "bandwidth limit",
            "log_level": "info",
            "bwlimit": "8.0 MiB/s",
            "bytes_per_second": 8 * MIB,
            "timetable": None,
        }
    ]


def test_healthz_describes_the_limit_in_force() -> None:
    minute = Minute("13:00")
    limit = limit_on(DAY, minute, FakeTime())
    assert describe_limit(limit) == {
        "bytes_per_second": 4 * MIB,
        "rate": "4.0 MiB/s",
        "timetable": "08:00,2MiB 12:30,4MiB 19:00,off",
        "next_change": {"at": "19:00", "rate": "off"},
    }
    assert describe_limit(BandwidthLimit(parse_bwlimit("20Mbit"))) == {
        "bytes_per_second": 2_500_000,
        "rate": "2.4 MiB/s",
        "timetable": None,
    }
    assert describe_limit(None) == {"bytes_per_second": 0, "rate": "off", "timetable": None}


# -- the gauge --


class _Owner:
    def stream_states(self) -> dict[str, int]:
        return {}

    @property
    def streams(self) -> dict[Any, Any]:
        return {}


def _gauge(bandwidth: BandwidthLimit | None) -> float:
    registry = CollectorRegistry()
    registry.register(DaemonCollector(_Owner(), None, bandwidth))
    text = generate_latest(registry).decode()
    line = next(line for line in text.splitlines() if line.startswith("tailup_bwlimit"))
    name, value = line.split()
    assert name == "tailup_bwlimit_bytes_per_second"
    return float(value)


def test_the_gauge_shows_the_limit_in_force_and_0_when_off() -> None:
    minute = Minute("09:00")
    limit = limit_on(DAY, minute, FakeTime())
    assert _gauge(limit) == 2 * MIB
    minute.set("20:00")
    limit.refresh()
    assert _gauge(limit) == 0
    assert _gauge(None) == 0


# -- the payload: every chunk asks first --


class FakeThrottle:
    def __init__(self, chunk: int, *, off_after: int | None = None) -> None:
        self._chunk = chunk
        self.limiting = True
        self.off_after = off_after  # bytes taken after which the limit turns off
        self.taken: list[int] = []
        self.log: list[tuple[str, int]] = []

    @property
    def chunk_bytes(self) -> int:
        return self._chunk

    async def take(self, n: int) -> None:
        self.taken.append(n)
        self.log.append(("take", n))
        if self.off_after is not None and sum(self.taken) >= self.off_after:
            self.limiting = False


class FakeWriter:
    def __init__(self, log: list[tuple[str, int]]) -> None:
        self.log = log
        self.data = bytearray()

    async def write(self, chunk: memoryview) -> None:
        self.log.append(("write", len(chunk)))
        self.data += chunk


async def test_every_chunk_of_a_body_is_taken_from_the_bucket_before_it_is_written() -> None:
    body = bytes(range(256)) * (3 * 1024 + 7)  # not a multiple of the chunk
    throttle = FakeThrottle(64 * KIB)
    writer = FakeWriter(throttle.log)
    await write_throttled(writer, memoryview(body), len(body), throttle)  # type: ignore[arg-type]
    assert writer.data == body
    assert sum(throttle.taken) == len(body)
    assert max(throttle.taken) == 64 * KIB
    # take, write, take, write ...: each write is exactly what was taken just before it.
    kinds = [kind for kind, _ in throttle.log]
    assert kinds == ["take", "write"] * len(throttle.taken)
    pairs = zip(throttle.log[::2], throttle.log[1::2], strict=True)
    assert all(take[1] == write[1] for take, write in pairs)


async def test_a_limit_turned_off_mid_body_sends_the_rest_in_whole_slices() -> None:
    body = b"x" * (3 * SLICE_BYTES + 5)
    throttle = FakeThrottle(64 * KIB, off_after=128 * KIB)
    writer = FakeWriter(throttle.log)
    await write_throttled(writer, memoryview(body), len(body), throttle)  # type: ignore[arg-type]
    assert writer.data == body
    assert throttle.taken == [64 * KIB, 64 * KIB]
    writes = [n for kind, n in throttle.log if kind == "write"]
    assert writes == [64 * KIB, 64 * KIB, SLICE_BYTES, SLICE_BYTES, SLICE_BYTES + 5 - 128 * KIB]


# -- the setting --


def test_the_setting_takes_rates_and_timetables() -> None:
    assert load_settings({}).bwlimit == "off"
    assert load_settings({"bwlimit": "8MiB"}).bwlimit == "8MiB"
    assert load_settings({"bwlimit": " 08:00,2MiB   19:00,off "}).bwlimit == (
        "08:00,2MiB 19:00,off"
    )


def test_the_env_variable_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAILUP_BWLIMIT", "20Mbit")
    assert load_settings({}).bwlimit == "20Mbit"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("08:00,2MiB 07:00,off", "'07:00' follows '08:00'"),
        ("20Mb", "ambiguous"),
        ("lots", "'lots' is not a rate"),
    ],
)
def test_a_bad_setting_names_the_flag_the_variable_and_the_forms(value: str, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"bwlimit": value})
    message = str(info.value)
    assert "--bwlimit (TAILUP_BWLIMIT)" in message and reason in message
    assert f"Accepted: {ACCEPTED_FORMS['bwlimit']}" in message
    assert "8MiB" in message and "20Mbit" in message and "08:00,2MiB 19:00,off" in message


def test_in_a_config_file_it_is_a_string(tmp_path: Path) -> None:
    config = tmp_path / "tailup.toml"
    config.write_text('bwlimit = "08:00,2MiB 19:00,off"\n')
    assert load_settings({}, config).bwlimit == "08:00,2MiB 19:00,off"
    config.write_text("bwlimit = 8388608\n")
    with pytest.raises(ConfigError) as info:
        read_config_file(config)
    message = str(info.value)
    assert f"--bwlimit (TAILUP_BWLIMIT, bwlimit in {config})" in message
    assert "a TOML integer" in message
    assert 'in the file, a string in quotes, e.g. "value"' in message
