"""The demo's live line: what it says, and how it is shown on a terminal and through a pipe."""

from __future__ import annotations

import hashlib
import io
import json
import re
from typing import Any

import pytest
from rich.console import Console

from tailup.cli.demo import Progress, ProgressView, progress_line, show_metadata
from tailup.plan import MiB


@pytest.mark.parametrize(
    ("sample", "expected"),
    [
        (
            Progress(0.0, None, 0, 0, recording=True),
            "  0.0 s  recording  on disk         -  in S3       0 B         0 parts",
        ),
        (
            Progress(4.06, 6 * MiB, 5 * MiB, 1, recording=True, state="uploading"),
            "  4.1 s  recording  on disk   6.0 MiB  in S3   5.0 MiB (83%)   1 part  uploading",
        ),
        (
            Progress(7.8, 12 * MiB, 10 * MiB, 2, recording=False, state="uploading"),
            "  7.8 s  closed     on disk  12.0 MiB  in S3  10.0 MiB (83%)   2 parts  uploading",
        ),
        (
            Progress(8.0, 12 * MiB, 12 * MiB, 3, recording=False, state="completed"),
            "  8.0 s  closed     on disk  12.0 MiB  in S3  12.0 MiB (100%)  3 parts  completed",
        ),
        (  # an empty file: no share of nothing
            Progress(1.0, 0, 0, 0, recording=True),
            "  1.0 s  recording  on disk       0 B  in S3       0 B         0 parts",
        ),
    ],
)
def test_progress_line(sample: Progress, expected: str) -> None:
    assert progress_line(sample) == expected


def test_columns_stay_in_place_as_the_numbers_grow() -> None:
    small = progress_line(Progress(1.0, 1 * MiB, 0, 0, recording=True))
    large = progress_line(Progress(100.0, 900 * MiB, 850 * MiB, 170, recording=True))
    assert small.index("in S3") == large.index("in S3")
    assert small.index("on disk") == large.index("on disk")


SAMPLES = [
    Progress(1.0, 1 * MiB, 0, 0, recording=True),
    Progress(2.0, 6 * MiB, 5 * MiB, 1, recording=True, state="uploading"),
    Progress(2.5, 7 * MiB, 7 * MiB, 2, recording=False, state="completed"),
]


def test_piped_one_plain_line_per_sample() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=40)  # narrower than a line
    with ProgressView(console) as view:
        for sample in SAMPLES:
            view.show(sample)
    assert out.getvalue().splitlines() == [progress_line(s) for s in SAMPLES]
    assert "\x1b" not in out.getvalue()


def test_on_a_terminal_one_line_rewritten_in_place() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120, color_system=None)
    with ProgressView(console) as view:
        for sample in SAMPLES:
            view.show(sample)
    text = out.getvalue()
    for sample in SAMPLES:
        assert progress_line(sample) in text
    # Each new line goes over the last (carriage return, erase line): no line break until the
    # view ends, and then one line, the last, stays on screen.
    assert text.count("\x1b[2K") >= len(SAMPLES)
    assert text.count("\n") == 1
    assert text.split("\x1b[2K")[-1].startswith(progress_line(SAMPLES[-1]) + "\n")


# The end of the demo: metadata.json, whose SHA-256 (64 hex digits) and paths are longer than a
# panel's line at 80 columns.
METADATA: dict[str, Any] = {
    "key": "streams/0123456789abcdef/demo-20261207-163000.mp4",
    "source": {"path": "/home/someone/projects/tailup/.demo/recordings/demo-20261207-163000.mp4"},
    "checksums": {"sha256": hashlib.sha256(b"demo").hexdigest(), "multipart_etag": "abc-3"},
}
TITLE = "s3://tailup-demo/streams/0123456789abcdef/demo-20261207-163000.mp4.metadata.json"


def test_piped_metadata_json_is_printed_whole() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=80, soft_wrap=True)
    show_metadata(console, TITLE, json.dumps(METADATA).encode())
    title, _, rest = out.getvalue().partition("\n")
    assert title == TITLE
    assert json.loads(rest) == METADATA  # valid JSON, every value whole
    assert re.search(r'"sha256": "[0-9a-f]{64}"', rest)


def test_on_a_terminal_metadata_json_is_in_a_panel() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=160, color_system=None)
    show_metadata(console, TITLE, json.dumps(METADATA).encode())
    text = out.getvalue()
    assert TITLE in text and "╭" in text and "│" in text
    assert METADATA["checksums"]["sha256"] in text  # wide enough here
