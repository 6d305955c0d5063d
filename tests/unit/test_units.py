"""Sizes and durations as people type them: KiB/MiB/GiB and bare K/M/G binary, KB/MB/GB decimal."""

from __future__ import annotations

import pytest

from tailup.units import format_size, parse_duration, parse_size

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB
TIB = 1024 * GIB


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8MiB", 8 * MIB),
        ("8M", 8 * MIB),
        ("8MB", 8 * 1000 * 1000),
        ("8mib", 8 * MIB),
        ("8mb", 8_000_000),
        ("8m", 8 * MIB),
        ("8 MiB", 8 * MIB),
        ("  8MiB  ", 8 * MIB),
        ("\t16 MiB\n", 16 * MIB),
        ("1.5GiB", GIB + GIB // 2),
        ("1.5 gib", 3 * GIB // 2),
        ("0.5MiB", MIB // 2),
        ("5GiB", 5 * GIB),
        ("5G", 5 * GIB),
        ("5GB", 5 * 10**9),
        ("1TiB", TIB),
        ("2TB", 2 * 10**12),
        ("64KiB", 64 * KIB),
        ("64k", 64 * KIB),
        ("64KB", 64_000),
        ("12345", 12345),
        ("12345B", 12345),
        ("12345 b", 12345),
        ("0", 0),
        (" 8388608 ", 8 * MIB),
        (8 * MIB, 8 * MIB),
    ],
)
def test_parse_size(text: str | int, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "8 parsecs",
        "",
        "   ",
        "-1MiB",
        "-1",
        "MiB",
        "8 M i B",
        "1.2.3MiB",
        "1e6",
        "8MiBs",
        "8 Mebibytes",
        "eight MiB",
        "8,5MiB",
        "+8MiB",
    ],
)
def test_parse_size_refuses(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_size(text)
    message = str(info.value)
    assert repr(text) in message  # what was given
    assert "8MiB" in message  # and an example of the accepted form


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30", 30.0),
        ("2.5", 2.5),
        ("0", 0.0),
        ("90s", 90.0),
        ("15m", 15 * 60.0),
        ("2h", 2 * 3600.0),
        ("7d", 7 * 86400.0),
        ("1.5h", 5400.0),
        (" 10 s ", 10.0),
        ("0.25s", 0.25),
        ("30S", 30.0),
        ("2H", 7200.0),
        (5, 5.0),
        (1.5, 1.5),
    ],
)
def test_parse_duration(text: str | float, expected: float) -> None:
    got = parse_duration(text)
    assert isinstance(got, float)
    assert got == pytest.approx(expected)


@pytest.mark.parametrize(
    "text",
    ["", "-1", "-0.5s", "abc", "s", "10 minutes", "1.5.2", "10ms", "1w", "1e3", "ten"],
)
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(text)
    message = str(info.value)
    assert repr(text) in message
    assert "seconds" in message


# Not text nor a whole number (from a TOML file): a ValueError naming it, never a TypeError.
NOT_TEXT: list[object] = [True, False, None, [8], {"mib": 8}]


@pytest.mark.parametrize("value", [*NOT_TEXT, 8.5, 8388608.0])
def test_parse_size_refuses_what_is_not_text_or_a_whole_number(value: object) -> None:
    with pytest.raises(ValueError, match="8MiB") as info:
        parse_size(value)
    assert repr(value) in str(info.value)


@pytest.mark.parametrize("value", NOT_TEXT)
def test_parse_duration_refuses_what_is_not_text_or_a_number(value: object) -> None:
    with pytest.raises(ValueError, match="90s") as info:
        parse_duration(value)
    assert repr(value) in str(info.value)


@pytest.mark.parametrize(
    ("num_bytes", "expected"),
    [
        (0, "0 B"),
        (1, "1 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (8 * MIB, "8.0 MiB"),
        (5 * MIB + MIB // 2, "5.5 MiB"),
        (GIB + GIB // 2, "1.5 GiB"),
        (5 * TIB, "5.0 TiB"),
        (2048 * TIB, "2048.0 TiB"),  # TiB is the largest unit: no PiB
    ],
)
def test_format_size(num_bytes: int, expected: str) -> None:
    assert format_size(num_bytes) == expected


@pytest.mark.parametrize("num_bytes", [KIB, 3 * KIB, 8 * MIB, 100 * MIB, 5 * GIB, 2 * TIB])
def test_format_size_reads_back_with_parse_size(num_bytes: int) -> None:
    # Whole units print exactly, so what tailup prints can be pasted back into a flag.
    assert parse_size(format_size(num_bytes)) == num_bytes
