"""`tailup gc`'s choice of uploads to abort: unowned and old enough, nothing else."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tailup.hygiene import describe_age, select_garbage
from tailup.s3 import UploadInfo

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def upload(upload_id: str, age: timedelta, key: str = "streams/x/cam.mp4") -> UploadInfo:
    return UploadInfo(key, upload_id, NOW - age)


UPLOADS = [
    upload("old-orphan", timedelta(days=2)),
    upload("young-orphan", timedelta(minutes=5)),
    upload("old-owned", timedelta(days=3)),
    upload("just-old-enough", timedelta(hours=1)),
]

CASES = [
    # (older than, owned upload ids, selected)
    (3600.0, {"old-owned"}, ["old-orphan", "just-old-enough"]),
    (0.0, {"old-owned"}, ["old-orphan", "just-old-enough", "young-orphan"]),
    (0.0, set(), ["old-owned", "old-orphan", "just-old-enough", "young-orphan"]),
    (7 * 86400.0, set(), []),
]


@pytest.mark.parametrize(("older_than_s", "owned", "selected"), CASES)
def test_select_garbage(older_than_s: float, owned: set[str], selected: list[str]) -> None:
    garbage = select_garbage(UPLOADS, owned, now=NOW, older_than_s=older_than_s)
    assert [g.upload_id for g in garbage] == selected  # oldest first
    for item in garbage:
        assert item.age_s >= older_than_s


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (59.9, "59s"),
        (61, "1m 1s"),
        (3 * 3600 + 120, "3h 2m"),
        (2 * 86400 + 3600, "2d 1h"),
    ],
)
def test_describe_age(seconds: float, text: str) -> None:
    assert describe_age(seconds) == text
