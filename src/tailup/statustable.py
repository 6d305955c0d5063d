"""How `tailup status` shows its rows: a table that fits the terminal, or plain rows.

On a terminal the table is laid out for the console's width each time it is drawn (so a resized
`--watch` screen follows): one line per stream, nothing wrapped. The short id, state, file name
and progress are always there; the other columns are given up as the width shrinks, the key and
the rate first (``COLUMNS``, by rank). The file name and the key share the width that is left,
long ones shortened in the middle (the name's end and extension stay). Errors are never cut:
when they do not fit in a column, each follows the table, in full, on lines of its own. A
column with nothing in it (no lag when no stream is live) is not shown.

Elsewhere (a pipe, a file, or ``-o wide``) each stream is one plain line of tab-separated fields,
every field of ``--json`` in full and in its order (``PLAIN_COLUMNS``), under one header line.
Pure: rows in, renderables and text out.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from rich import box
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from tailup.model import parse_iso, utc_now
from tailup.streamref import short_ids
from tailup.units import format_size

_STATE_STYLE = {
    "uploading": "cyan",
    "finalizing": "blue",
    "completed": "green",
    "stalled": "yellow",
    "skipped": "dim",
    "failed": "bold red",
    "aborted": "red",
    "salvaged": "magenta",
}
LIVE_STATE_VALUES = frozenset({"uploading", "stalled", "finalizing"})
BAR_WIDTH = 10
# Between two columns: a space of padding each side of the (blank) column rule.
GAP = 3
ELLIPSIS = "…"


@dataclass
class RateTracker:
    """Upload rate between two refreshes of `status --watch` (the rows carry only the average
    over the stream's life, which hides a stall that just began)."""

    clock: Callable[[], float] = time.monotonic
    _seen: dict[str, tuple[float, int]] = field(default_factory=dict)

    def rate(self, row: dict[str, Any]) -> float | None:
        now, uploaded = self.clock(), int(row["bytes_uploaded"])
        previous = self._seen.get(row["stream_id"])
        self._seen[row["stream_id"]] = (now, uploaded)
        if previous is None or now <= previous[0]:
            return None
        return (uploaded - previous[1]) / (now - previous[0])


# -- cells --


def _size_pair(uploaded: int, size: int | None) -> str:
    """'16.0/22.5 MiB' when both share a unit (the common case), else both in full."""
    if size is None:
        return f"{format_size(uploaded)} / (gone)"
    done, total = format_size(uploaded), format_size(size)
    done_value, _, done_unit = done.partition(" ")
    if total.endswith(" " + done_unit):
        return f"{done_value}/{total}"
    return f"{done} / {total}"


def _has_bar(row: Mapping[str, Any]) -> bool:
    return row["state"] in LIVE_STATE_VALUES and bool(row["file_size"])


def progress_text(row: Mapping[str, Any]) -> str:
    """'83% 10.0/12.0 MiB' while live, the final size once completed."""
    uploaded, size = row["bytes_uploaded"], row["file_size"]
    if row["state"] in ("completed", "salvaged"):
        return format_size(uploaded)
    text = _size_pair(uploaded, size)
    if not _has_bar(row):
        return text
    return f"{min(100.0, 100.0 * uploaded / size):3.0f}% {text}"


def _rate_text(rate: float | None) -> str:
    return "" if rate is None else f"{format_size(rate)}/s"


def age(moment: str, now: datetime) -> str:
    """How long ago, as people read a status screen: 4s, 12m, 3h, 2d."""
    then = parse_iso(moment)
    if then is None:
        return ""
    seconds = max(0, int((now - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def error_text(row: Mapping[str, Any]) -> str:
    if row.get("error"):
        return str(row["error"])
    return f"note: {row['note']}" if row.get("note") else ""


def _take(chars: Iterable[str], room: int) -> tuple[str, int]:
    """The characters of ``chars`` that fit in ``room`` cells, and the cells they take."""
    taken: list[str] = []
    used = 0
    for char in chars:
        width = cell_len(char)
        if used + width > room:
            break
        taken.append(char)
        used += width
    return "".join(taken), used


def cut_middle(text: str, width: int) -> str:
    """``text`` in ``width`` cells at most, an ellipsis in place of its middle: the start and the
    end (a file's extension, the name at the end of a key) stay; the end gets the larger half."""
    if cell_len(text) <= width:
        return text
    if width <= 1:
        return ELLIPSIS[:width]
    room = width - 1
    head, used = _take(text, room // 2)
    tail, _ = _take(reversed(text), room - used)  # what a wide character left over, too
    return head + ELLIPSIS + tail[::-1]


# -- columns --


@dataclass(frozen=True, slots=True)
class Column:
    """One column of the terminal table. ``rank`` 0: always shown (but see NARROW_DROPS); the
    others are shown while they fit, the lowest rank first. A ``flex`` column is shown at
    ``min_width`` at least and widened from what is left; its cells are cut in the middle."""

    key: str
    header: str
    rank: int
    flex: bool = False
    min_width: int = 0
    justify: Literal["left", "right"] = "left"


# In the order they are shown.
COLUMNS: tuple[Column, ...] = (
    Column("stream", "stream", 0),
    Column("state", "state", 0),
    Column("file", "file", 0, flex=True, min_width=20),
    Column("bar", "progress", 6),
    Column("progress", "uploaded / file", 0),
    Column("rate", "rate", 4, justify="right"),
    Column("lag", "lag", 2, justify="right"),
    Column("parts", "parts", 1, justify="right"),
    Column("active", "active", 3),
    Column("key", "key", 5, flex=True, min_width=20),
    # Only when every error fits in full after the rest; else they follow the table, in full.
    Column("error", "error", 8),
)
# Given up, in this order, when even the rank-0 columns do not fit (under ~70 columns): the id
# and the file name stay.
NARROW_DROPS = ("progress", "state")


def fit_columns(
    columns: Sequence[Column], natural: Mapping[str, int], width: int
) -> dict[str, int]:
    """The columns shown in ``width`` cells and the width of each, in display order.

    ``natural``: each column's widest cell (header included). A fixed column is shown at its
    natural width; a flex one at no less than min(natural, min_width). Columns are taken by rank
    while they fit; the width left over widens the flex ones evenly, up to their natural
    width."""

    def least(column: Column) -> int:
        full = natural[column.key]
        return min(full, max(column.min_width, cell_len(column.header))) if column.flex else full

    def need(chosen: Sequence[Column]) -> int:
        return sum(least(c) for c in chosen) + GAP * max(0, len(chosen) - 1)

    chosen = [c for c in columns if c.rank == 0]
    for key in NARROW_DROPS:
        if need(chosen) <= width:
            break
        chosen = [c for c in chosen if c.key != key]
    for column in sorted((c for c in columns if c.rank > 0), key=lambda c: c.rank):
        if need([*chosen, column]) <= width:
            chosen.append(column)
    widths = {c.key: least(c) for c in chosen}
    spare = width - need(chosen)
    flexible = sorted((c for c in chosen if c.flex), key=lambda c: c.rank)
    while spare > 0:
        # Evenly, so that one long name does not leave the key at its least.
        short = [c for c in flexible if widths[c.key] < natural[c.key]]
        if not short:
            break
        share = max(1, spare // len(short))
        for column in short:
            give = min(share, spare, natural[column.key] - widths[column.key])
            widths[column.key] += give
            spare -= give
    if spare < 0 and flexible:
        # Narrower than the id and the file name at their least: the name takes what is left.
        widths[flexible[0].key] = max(1, widths[flexible[0].key] + spare)
    order = [c.key for c in columns]
    return {key: widths[key] for key in order if key in widths}


@dataclass(frozen=True, slots=True)
class _Line:
    row: Mapping[str, Any]
    cells: dict[str, str]


def _lines(
    rows: Sequence[Mapping[str, Any]], rates: RateTracker | None, now: datetime
) -> list[_Line]:
    shown = short_ids(str(row["stream_id"]) for row in rows)
    lines = []
    for row in rows:
        measured = rates.rate(dict(row)) if rates is not None else None
        rate = measured if measured is not None else row["rate_bytes_per_s"]
        cells = {
            "stream": shown[str(row["stream_id"])],
            "state": str(row["state"]),
            "file": os.path.basename(str(row["path"])) or str(row["path"]),
            "bar": "━" * BAR_WIDTH if _has_bar(row) else "",  # drawn as a ProgressBar
            "progress": progress_text(row),
            "rate": _rate_text(rate),
            "lag": format_size(row["lag_bytes"]) if row["lag_bytes"] is not None else "",
            "parts": str(row["parts"]),
            "active": age(str(row["last_activity"] or ""), now),
            "key": str(row["key"] or ""),
            "error": error_text(row),
        }
        lines.append(_Line(row, cells))
    return lines


def _summary(rows: Sequence[Mapping[str, Any]]) -> str:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["state"]] = counts.get(row["state"], 0) + 1
    return ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "no streams"


class StatusTable:
    """The table of some rows, laid out for the width it is drawn in. The cells (and the rates
    of `--watch`, measured once) are taken when it is made."""

    def __init__(
        self,
        rows: Sequence[Mapping[str, Any]],
        rates: RateTracker | None = None,
        now: datetime | None = None,
        *,
        title: str | None = "tailup streams",
        caption: bool = True,
    ) -> None:
        self.lines = _lines(rows, rates, now or utc_now())
        self.title = title
        self.caption = _summary(rows) if caption else None
        # A column with nothing in it (no live stream: no bar, no lag) takes no room.
        self.columns = tuple(
            c for c in COLUMNS if c.rank == 0 or any(x.cells[c.key].strip() for x in self.lines)
        )

    def natural_widths(self) -> dict[str, int]:
        return {
            c.key: max([cell_len(c.header), *(cell_len(x.cells[c.key]) for x in self.lines)])
            for c in self.columns
        }

    def layout(self, width: int) -> dict[str, int]:
        return fit_columns(self.columns, self.natural_widths(), width)

    def table(self, width: int) -> Table:
        widths = self.layout(width)
        table = Table(
            title=self.title,
            caption=self.caption,
            header_style="bold",
            box=box.SIMPLE_HEAD,
            show_edge=False,
            pad_edge=False,
            padding=(0, 1),
        )
        by_key = {c.key: c for c in self.columns}
        for key, size in widths.items():
            column = by_key[key]
            table.add_column(
                column.header,
                width=size,
                no_wrap=True,
                overflow="ellipsis",
                justify=column.justify,
            )
        for line in self.lines:
            cells: list[RenderableType] = []
            for key, size in widths.items():
                text = line.cells[key]
                column = by_key[key]
                if key == "bar":
                    cells.append(_bar(line.row) if text else "")
                elif key == "state":
                    cells.append(Text(text, style=_STATE_STYLE.get(text, "")))
                elif key == "error":
                    cells.append(Text(text, style="red"))
                elif column.flex:
                    cells.append(Text(cut_middle(text, size)))
                else:
                    cells.append(Text(text))
            table.add_row(*cells)
        return table

    def notes(self, widths: Mapping[str, int]) -> RenderableType | None:
        """Each error (or note) on lines of its own, when the table has no room for them."""
        if "error" in widths or not any(x.cells["error"] for x in self.lines):
            return None
        grid = Table.grid(padding=(0, 2))
        grid.add_column(no_wrap=True)
        grid.add_column(overflow="fold")
        for line in self.lines:
            if line.cells["error"]:
                grid.add_row(line.cells["stream"], Text(line.cells["error"], style="red"))
        return grid

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        widths = self.layout(options.max_width)
        yield self.table(options.max_width)
        notes = self.notes(widths)
        if notes is not None:
            yield notes


def _bar(row: Mapping[str, Any]) -> ProgressBar:
    size, uploaded = float(row["file_size"]), float(row["bytes_uploaded"])
    return ProgressBar(total=size, completed=min(uploaded, size), width=BAR_WIDTH)


# -- plain rows --

# The fields of a `--json` row, in its order.
PLAIN_COLUMNS: tuple[str, ...] = (
    "stream_id",
    "path",
    "state",
    "bytes_uploaded",
    "file_size",
    "lag_bytes",
    "rate_bytes_per_s",
    "parts",
    "bucket",
    "key",
    "generation",
    "last_activity",
    "created_at",
    "completed_at",
    "sha256",
    "error",
    "note",
    "scope",
)
MISSING = "-"
# A tab, a line break or another control character inside a value would split its row or field.
_ESCAPES = {i: f"\\x{i:02x}" for i in [*range(0x20), 0x7F]} | {
    ord("\\"): "\\\\",
    ord("\t"): "\\t",
    ord("\n"): "\\n",
    ord("\r"): "\\r",
}


def plain_value(value: object) -> str:
    """A field as plain text: in full (bytes as numbers, times in ISO 8601), ``-`` when there is
    none, with a backslash, tab, line break or other control character escaped as \\\\, \\t,
    \\n, \\r or \\xNN."""
    if value is None or value == "":
        return MISSING
    return str(value).translate(_ESCAPES)


def plain_header() -> str:
    return "\t".join(PLAIN_COLUMNS)


def plain_line(row: Mapping[str, Any]) -> str:
    return "\t".join(plain_value(row.get(name)) for name in PLAIN_COLUMNS)
