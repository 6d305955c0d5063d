"""Parsing and printing sizes and durations, the way people write them on a command line."""

from __future__ import annotations

import re

_SIZE_UNITS: dict[str, int] = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kib": 1024,
    "kb": 1000,
    "m": 1024**2,
    "mib": 1024**2,
    "mb": 1000**2,
    "g": 1024**3,
    "gib": 1024**3,
    "gb": 1000**3,
    "t": 1024**4,
    "tib": 1024**4,
    "tb": 1000**4,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
SIZE_FORM = "a size like 8MiB, 16MB, 1GiB or a plain number of bytes"

_DURATION_UNITS: dict[str, float] = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
DURATION_FORM = "a number of seconds like 30 or 2.5, or with a unit: 90s, 15m, 2h, 7d"


def parse_size(text: object) -> int:
    """Bytes in ``text``: binary units for KiB/MiB/GiB and bare K/M/G, decimal for KB/MB/GB.

    A whole number is bytes; anything but a whole number or text (a float, a bool, a list) is
    refused with ValueError, like bad text."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not {SIZE_FORM}")
    match = _SIZE_RE.match(text)
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _SIZE_UNITS:
        raise ValueError(f"{text!r} is not {SIZE_FORM}")
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


def parse_duration(text: object) -> float:
    """Seconds in ``text``; ValueError for what is neither a number nor text (a bool, a list)."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        return float(text)
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not {DURATION_FORM}")
    match = _DURATION_RE.match(text.lower())
    if not match:
        raise ValueError(f"{text!r} is not {DURATION_FORM}")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


def format_size(num_bytes: float) -> str:
    """Human-readable binary size: 8.0 MiB, 1.5 GiB."""
    value = float(num_bytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
