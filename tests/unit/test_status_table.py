"""The status table at a terminal's width, and the plain rows of a pipe (no servers)."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from rich.cells import cell_len
from rich.console import Console

from tailup.model import StreamRecord, StreamState, iso, utc_now
from tailup.plan import MiB
from tailup.status import status_row
from tailup.statustable import (
    COLUMNS,
    PLAIN_COLUMNS,
    Column,
    cut_middle,
    fit_columns,
    plain_header,
    plain_line,
    plain_value,
)
from tailup.statusview import Output, build_status_table, choose_output
from tailup.streamref import short_ids

LONG_NAME = "2026-12-01T10-00-00_lobby-camera-east-entrance-hall.mkv"
ERROR = "S3 refused the part: AccessDenied (s3:PutObject is not allowed for this identity)"


def _row(tmp_path: Path, sid: str, name: str, state: StreamState, **changes: Any) -> dict[str, Any]:
    path = tmp_path / "site-a" / name
    started = utc_now() - timedelta(seconds=75)
    record = StreamRecord(
        stream_id=sid,
        path=str(path),
        watch_root=str(tmp_path),
        bucket="archive",
        key=f"recordings/site-a/{sid}/{name}",
        base_part_size=8 * MiB,
        state=state,
        total_bytes_sent=16 * MiB,
        next_part_to_upload=3,
        created_at=iso(started),
        last_activity_at_utc=iso(started + timedelta(seconds=70)),
    ).with_changes(**changes)
    return status_row(record, file_size=22 * MiB if state.is_live else None)


@pytest.fixture
def rows(tmp_path: Path) -> list[dict[str, Any]]:
    return [
        _row(tmp_path, "7f1c7ad60d824c7b", "cam1.mp4", StreamState.UPLOADING),
        _row(
            tmp_path,
            "f630549ea98a488e",
            LONG_NAME,
            StreamState.COMPLETED,
            final_size=35 * MiB,
            completed_at=iso(utc_now()),
        ),
        _row(tmp_path, "6d08080ec21c4a19", "door.ts", StreamState.FAILED, error=ERROR),
    ]


def _screen(rows: list[dict[str, Any]], width: int) -> list[str]:
    console = Console(width=width, record=True, color_system=None)
    console.print(build_status_table(rows))
    return console.export_text().splitlines()


def _table_lines(lines: list[str], rows: list[dict[str, Any]]) -> dict[str, str]:
    """The table line of each row, by stream id."""
    return {
        r["stream_id"]: next(line for line in lines if line.startswith(r["stream_id"][:12]))
        for r in rows
    }


def _header(lines: list[str]) -> list[str]:
    line = next(line for line in lines if line.startswith("stream "))
    return re.split(r" {2,}", line.strip())


def test_at_80_columns_nothing_wraps_and_id_state_name_and_progress_stay(
    rows: list[dict[str, Any]],
) -> None:
    lines = _screen(rows, 80)
    assert max(cell_len(line) for line in lines) <= 80
    header = _header(lines)
    assert header[:4] == ["stream", "state", "file", "uploaded / file"]
    assert not {"rate", "active", "key"} & set(header)  # given up first
    by_id = _table_lines(lines, rows)
    live, done, failed = (by_id[r["stream_id"]] for r in rows)
    # One line each: the short id, the state, the name (a long one cut in the middle, its
    # extension kept) and the progress.
    assert "7f1c7ad60d82 " in live and "uploading" in live and "cam1.mp4" in live
    assert " 73% 16.0/22.0 MiB" in live
    assert "completed" in done and "35.0 MiB" in done
    name = next(w for w in done.split() if w.endswith(".mkv"))
    assert "…" in name and name.startswith("2026-12-01T") and name.endswith("hall.mkv")
    assert cell_len(name) >= 20
    assert "door.ts" in failed and "failed" in failed and "(gone)" in failed
    # No room for the error in the table: it follows, in full (wrapped), with the short id.
    after = " ".join(" ".join(lines[lines.index(failed) + 1 :]).split())
    assert f"6d08080ec21c {ERROR}" in after
    assert not any("7f1c7ad60d824c7b" in line for line in lines)  # short ids only


def test_at_200_columns_every_column_is_shown(rows: list[dict[str, Any]]) -> None:
    short_error = [dict(r, error="S3: AccessDenied" if r["error"] else None) for r in rows]
    lines = _screen(short_error, 200)
    assert max(cell_len(line) for line in lines) <= 200
    assert _header(lines) == [c.header for c in COLUMNS]
    by_id = _table_lines(lines, rows)
    live, done, failed = (by_id[r["stream_id"]] for r in rows)
    name = next(w for w in done.split() if w.endswith(".mkv"))
    assert name.startswith("2026-12-01T10-00") and name.endswith("-entrance-hall.mkv")
    key = next(w for w in done.split() if w.startswith("recordings/"))
    assert key.startswith("recordings/site-a/") and key.endswith("-entrance-hall.mkv")
    assert "━" in live and "6.0 MiB" in live and re.search(r" \d+s ago ", live)
    assert "S3: AccessDenied" in failed
    # A long error does not fit beside the rest: it follows the table, whole.
    lines = _screen(rows, 200)
    assert "error" not in _header(lines) and "key" in _header(lines)
    assert any(ERROR in line for line in lines)


def test_a_column_with_nothing_in_it_takes_no_room(rows: list[dict[str, Any]]) -> None:
    done = [rows[1]]  # completed: no bar, no lag, no error
    header = " ".join(_header(_screen(done, 200)))
    assert header == "stream state file uploaded / file rate parts active key"


@pytest.mark.parametrize("width", [40, 60, 80, 100, 120, 160, 200, 300])
def test_no_line_is_wider_than_the_console_and_id_and_name_are_always_there(
    rows: list[dict[str, Any]], width: int
) -> None:
    lines = _screen(rows, width)
    assert max(cell_len(line) for line in lines) <= width
    for row in rows:
        line = _table_lines(lines, [row])[row["stream_id"]]
        name = Path(row["path"]).name
        shown = next((w for w in line.split() if w[:3] == name[:3]), "")
        assert len(shown) >= min(len(name), 8), (width, line)


def test_wide_characters_count_as_two_cells(tmp_path: Path) -> None:
    rows = [
        _row(
            tmp_path,
            "a" * 16,
            "ロビーのカメラ東入口ホール録画二〇二六年十二月一日.mp4",
            StreamState.UPLOADING,
        )
    ]
    for width in (60, 80):
        lines = _screen(rows, width)
        assert max(cell_len(line) for line in lines) <= width
        assert any(".mp4" in line for line in lines)


def test_the_shown_ids_are_long_enough_to_tell_apart() -> None:
    assert short_ids(["abcdef0123456789", "abcdef0123459999", "0123456789abcdef"]) == {
        "abcdef0123456789": "abcdef0123456",
        "abcdef0123459999": "abcdef0123459",
        "0123456789abcdef": "0123456789ab",
    }
    assert short_ids(["abc", "abcdef0123456789ff"]) == {
        "abc": "abc",
        "abcdef0123456789ff": "abcdef012345",
    }


@pytest.mark.parametrize(
    ("text", "width", "expected"),
    [
        ("cam1.mp4", 20, "cam1.mp4"),
        ("cam1.mp4", 8, "cam1.mp4"),
        ("lobby-camera-east.mp4", 11, "lobby…t.mp4"),
        ("lobby-camera-east.mp4", 12, "lobby…st.mp4"),
        ("abcdef", 2, "…f"),
        ("abcdef", 1, "…"),
        ("abcdef", 0, ""),
        # A wide character takes two cells; one that does not fit leaves its room to the end.
        ("カメラ東入口.mp4", 11, "カメ…口.mp4"),
        ("カメラ東入口.mp4", 10, "カメ….mp4"),
        ("カメラ東入口.mp4", 9, "カメ….mp4"),
    ],
)
def test_cut_in_the_middle(text: str, width: int, expected: str) -> None:
    got = cut_middle(text, width)
    assert got == expected and cell_len(got) <= width


def _cols() -> list[Column]:
    return [
        Column("id", "id", 0),
        Column("name", "name", 0, flex=True, min_width=10),
        Column("big", "big", 2),
        Column("small", "small", 1),
        Column("key", "key", 3, flex=True, min_width=10),
    ]


@pytest.mark.parametrize(
    ("width", "expected"),
    [
        # id 12, name 30 (at least 10), big 20, small 5, key 40 (at least 10); 3 between.
        (200, {"id": 12, "name": 30, "big": 20, "small": 5, "key": 40}),
        # What is left (31) is shared evenly by name and key, the lower rank first.
        (100, {"id": 12, "name": 26, "big": 20, "small": 5, "key": 25}),
        (60, {"id": 12, "name": 14, "big": 20, "small": 5}),
        # big (rank 2) does not fit, key (rank 3) does: key is shown.
        (50, {"id": 12, "name": 12, "small": 5, "key": 12}),
        (40, {"id": 12, "name": 17, "small": 5}),
        (25, {"id": 12, "name": 10}),
        (20, {"id": 12, "name": 5}),  # narrower than the least: the name takes what is left
    ],
)
def test_fit_columns_by_rank_and_share_what_is_left(width: int, expected: dict[str, int]) -> None:
    natural = {"id": 12, "name": 30, "big": 20, "small": 5, "key": 40}
    got = fit_columns(_cols(), natural, width)
    assert got == expected
    assert list(got) == [k for k in natural if k in got]  # display order
    if width >= 25:
        assert sum(got.values()) + 3 * (len(got) - 1) <= width


def test_the_terminal_table_gives_up_progress_then_state_when_very_narrow(
    rows: list[dict[str, Any]],
) -> None:
    header = _header(_screen(rows, 62))
    assert header[:3] == ["stream", "state", "file"] and "uploaded / file" not in header
    header = _header(_screen(rows, 40))
    assert header == ["stream", "file"]


# -- plain rows --


def test_plain_columns_are_the_json_fields_in_their_order(rows: list[dict[str, Any]]) -> None:
    assert list(PLAIN_COLUMNS) == list(rows[0])
    assert plain_header().split("\t") == list(PLAIN_COLUMNS)


def test_a_plain_row_has_every_field_in_full(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        line = plain_line(row)
        fields = line.split("\t")
        assert len(fields) == len(PLAIN_COLUMNS)
        for name, text in zip(PLAIN_COLUMNS, fields, strict=True):
            value = row[name]
            assert text == ("-" if value is None or value == "" else str(value)), name
        assert "…" not in line and "\x1b" not in line
    done = dict(zip(PLAIN_COLUMNS, plain_line(rows[1]).split("\t"), strict=True))
    assert done["stream_id"] == "f630549ea98a488e"  # in full
    assert done["path"].endswith("/site-a/" + LONG_NAME)
    assert done["bytes_uploaded"] == str(35 * MiB) and done["file_size"] == "-"
    failed = dict(zip(PLAIN_COLUMNS, plain_line(rows[2]).split("\t"), strict=True))
    assert failed["error"] == ERROR


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "-"),
        ("", "-"),
        (0, "0"),
        (1402896.1, "1402896.1"),
        ("/rec/cam 1/é.mp4", "/rec/cam 1/é.mp4"),
        ("line one\nline two", "line one\\nline two"),
        ("a\tb\rc", "a\\tb\\rc"),
        ("back\\slash", "back\\\\slash"),
        ("bell\x07", "bell\\x07"),
    ],
)
def test_plain_values_keep_one_row_one_line_and_one_field_one_column(
    value: object, text: str
) -> None:
    assert plain_value(value) == text


@pytest.mark.parametrize(
    ("asked", "terminal", "expected"),
    [
        (None, True, Output.TABLE),
        (None, False, Output.WIDE),
        ("wide", True, Output.WIDE),
        ("table", False, Output.TABLE),
        ("json", True, Output.JSON),
        ("json", False, Output.JSON),
    ],
)
def test_the_output_is_the_table_on_a_terminal_and_plain_rows_elsewhere(
    asked: str | None, terminal: bool, expected: Output
) -> None:
    assert choose_output(asked, terminal=terminal) is expected
