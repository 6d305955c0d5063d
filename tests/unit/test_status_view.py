"""The status rows and screen, from stream records (no servers)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from rich.console import Console

from tailup.model import PartRecord, StreamRecord, StreamState, iso, utc_now
from tailup.plan import MiB
from tailup.status import status_row
from tailup.statustable import RateTracker
from tailup.statusview import build_status_table


def _record(path: Path, state: StreamState, **changes: object) -> StreamRecord:
    started = utc_now() - timedelta(seconds=10)
    return StreamRecord(
        stream_id="abc123",
        path=str(path),
        watch_root=str(path.parent),
        bucket="b",
        key="streams/abc123/cam.mp4",
        base_part_size=5 * MiB,
        state=state,
        created_at=iso(started),
        last_activity_at_utc=iso(started),
    ).with_changes(**changes)


def _parts(n: int) -> dict[int, PartRecord]:
    return {i: PartRecord(i, 5 * MiB, 0, f'"{i}"') for i in range(1, n + 1)}


def _render(rows: list[dict[str, object]]) -> str:
    console = Console(width=200, record=True, color_system=None)
    console.print(build_status_table(rows))  # type: ignore[arg-type]
    return console.export_text()


def test_live_stream_row_has_lag_rate_and_a_progress_bar(tmp_path: Path) -> None:
    path = tmp_path / "cam.mp4"
    path.write_bytes(b"\0" * (12 * MiB))
    row = status_row(_record(path, StreamState.UPLOADING, total_bytes_sent=10 * MiB), _parts(2))
    assert row["bytes_uploaded"] == 10 * MiB and row["file_size"] == 12 * MiB
    assert row["lag_bytes"] == 2 * MiB
    assert row["rate_bytes_per_s"] is not None and 0 < row["rate_bytes_per_s"] <= 10 * MiB / 9
    screen = _render([row])
    assert "uploading" in screen and " 83% 10.0/12.0 MiB" in screen
    assert "━" in screen  # the bar
    assert "2.0 MiB" in screen and "streams/abc123/cam.mp4" in screen


def test_completed_stream_row_has_no_lag_and_its_final_size(tmp_path: Path) -> None:
    path = tmp_path / "cam.mp4"
    path.write_bytes(b"\0" * 100)
    done_at = utc_now()
    record = _record(
        path,
        StreamState.COMPLETED,
        total_bytes_sent=0,
        final_size=100,
        completed_at=iso(done_at),
        sha256="f" * 64,
    )
    row = status_row(record, _parts(1))
    assert row["bytes_uploaded"] == 100 and row["lag_bytes"] is None
    assert row["completed_at"] == iso(done_at) and row["sha256"] == "f" * 64
    screen = _render([row])
    assert "completed" in screen and "100 B" in screen and "%" not in screen


def test_failed_stream_shows_its_error_and_a_gone_file(tmp_path: Path) -> None:
    record = _record(tmp_path / "gone.mp4", StreamState.FAILED, error="S3 refused: AccessDenied")
    row = status_row(record, {})
    assert row["file_size"] is None and row["rate_bytes_per_s"] is None
    screen = _render([row])
    assert "failed" in screen and "S3 refused: AccessDenied" in screen and "(gone)" in screen
    assert "1 failed" in screen  # the summary line


def test_rate_tracker_measures_between_refreshes() -> None:
    now = [100.0]
    rates = RateTracker(clock=lambda: now[0])
    row = {"stream_id": "s", "bytes_uploaded": 0}
    assert rates.rate(row) is None
    now[0] += 2.0
    assert rates.rate({"stream_id": "s", "bytes_uploaded": 10 * MiB}) == 5 * MiB


def test_a_single_put_counts_as_one_part(tmp_path: Path) -> None:
    record = _record(tmp_path / "small.mp4", StreamState.COMPLETED, final_size=1000)
    assert status_row(record, {})["parts"] == 1
    assert status_row(_record(tmp_path / "x.mp4", StreamState.UPLOADING), {})["parts"] == 0
