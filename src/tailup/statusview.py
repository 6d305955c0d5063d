"""How `tailup status` shows what tailup.status collects: a table per scope fitted to the terminal,
plain tab-separated rows for a pipe, or JSON; once, refreshed (--watch), or every record a page at
a time (--all)."""

from __future__ import annotations

import asyncio
import enum
import json
import sys
import textwrap
from datetime import datetime
from typing import IO, Any

from rich.console import Console, Group, RenderableType
from rich.text import Text

from tailup.checkpoint import RedisCheckpointStore
from tailup.config import Settings
from tailup.selection import Selection, Tally, scope_label
from tailup.status import SizeProbe, StatusView, collect_view, scan_rows, status_scopes
from tailup.statustable import RateTracker, StatusTable, plain_header, plain_line


class Output(enum.Enum):
    """How rows are shown: the table fitted to a terminal, plain tab-separated rows (the default
    when stdout is not a terminal), or JSON."""

    TABLE = "table"
    WIDE = "wide"
    JSON = "json"


def choose_output(asked: str | None, *, terminal: bool) -> Output:
    """``-o``/``--wide``/``--json`` when given; else the table on a terminal, plain rows
    elsewhere (a pipe, a file)."""
    if asked is not None:
        return Output(asked)
    return Output.TABLE if terminal else Output.WIDE


def build_status_table(
    rows: list[dict[str, Any]],
    rates: RateTracker | None = None,
    now: datetime | None = None,
    *,
    title: str | None = "tailup streams",
    caption: bool = True,
) -> StatusTable:
    """The rows' table, laid out for the width of the console it is printed on."""
    return StatusTable(rows, rates, now, title=title, caption=caption)


def _title(tally: Tally, scopes: int) -> str:
    """One table per scope; the node's own alone keeps the plain title."""
    return "tailup streams" if scopes == 1 else f"tailup streams: {scope_label(tally.scope)}"


def build_status_view(
    view: StatusView, rates: RateTracker | None = None, now: datetime | None = None
) -> RenderableType:
    """A table per scope that has rows, then the summary line of each scope."""
    shown: list[RenderableType] = []
    if not view.rows:
        shown.append(Text("No streams yet."))
    for tally, rows in view.sections:
        if rows:
            shown.append(
                build_status_table(rows, rates, now, title=_title(tally, len(view.sections)))
            )
    shown.extend(Text(line) for line in view.report_lines())
    return Group(*shown)


def render_status_view(view: StatusView, console: Console | None = None) -> None:
    (console or Console()).print(build_status_view(view))


def print_plain_view(view: StatusView, out: IO[str] | None = None) -> None:
    """Plain rows: a header line, then one line per stream, every field in full
    (tailup.statustable.plain_line); the summary lines go to stderr, so that what a pipe reads
    is rows only."""
    stream = out or sys.stdout
    print(plain_header(), file=stream)
    for row in view.rows:
        print(plain_line(row), file=stream)
    stream.flush()
    print_summary(view, always=True)


def print_summary(view: StatusView, *, always: bool) -> None:
    """The summary lines on stderr: ``always``, or only when it is a terminal (with --json: a
    script that reads stdout and stderr together still gets JSON alone)."""
    if always or sys.stderr.isatty():
        for line in view.report_lines():
            print(line, file=sys.stderr)


def print_json_summary(view: StatusView) -> None:
    print_summary(view, always=False)


def print_view(view: StatusView, output: Output) -> None:
    if output is Output.JSON:
        print(json.dumps(view.rows, indent=2, ensure_ascii=False))
        print_json_summary(view)
    elif output is Output.WIDE:
        print_plain_view(view)
    else:
        render_status_view(view)


async def watch_status(
    settings: Settings,
    selection: Selection,
    *,
    node: str | None = None,
    interval_s: float,
    output: Output,
) -> None:
    """Refresh until interrupted: a live screen on a terminal; elsewhere (or with -o wide or
    --json) one sample per refresh, so a pipe or a log file sees every one: plain rows under
    their header, a JSON line, or a table with -o table."""
    from rich.live import Live

    console = Console()
    rates = RateTracker()
    scopes = status_scopes(settings, node)
    sizes = SizeProbe()
    async with RedisCheckpointStore.for_settings(settings) as cps:
        if output is not Output.TABLE or not console.is_terminal:
            while True:
                view = await collect_view(cps, scopes, selection, sizes)
                if output is Output.JSON:
                    print(json.dumps(view.rows, ensure_ascii=False), flush=True)
                elif output is Output.WIDE:
                    print_plain_view(view)
                else:
                    console.print(build_status_view(view, rates))
                await asyncio.sleep(interval_s)
        with Live(console=console, auto_refresh=False) as live:
            while True:
                view = await collect_view(cps, scopes, selection, sizes)
                live.update(build_status_view(view, rates), refresh=True)
                await asyncio.sleep(interval_s)


async def print_every_record(
    settings: Settings, selection: Selection, *, node: str | None = None, output: Output
) -> int:
    """``--all``: every record of the scopes, read from Redis a page at a time and printed as
    it comes (a table per page, plain rows under one header, or one JSON array), so memory
    stays flat at any count. A note of how many there are goes to stderr first, and a progress
    line while it reads when stderr is a terminal. Returns the rows printed."""
    console = Console()
    scopes = status_scopes(settings, node)
    progress = sys.stderr.isatty()
    sizes = SizeProbe()
    printed = 0
    stalled = False
    tallies: list[Tally] = []
    as_json = output is Output.JSON
    async with RedisCheckpointStore.for_settings(settings) as cps:
        counts = [(len(await cps.live_stream_ids(s)), await cps.count_ended(s)) for s in scopes]
        total = sum(live + ended for live, ended in counts)
        each = "; ".join(
            f"{scope_label(s)}: {live:,} live, {ended:,} ended"
            for s, (live, ended) in zip(scopes, counts, strict=True)
        )
        print(f"tailup: --all: {total:,} records ({each})", file=sys.stderr, flush=True)
        if as_json:
            sys.stdout.write("[")
        elif output is Output.WIDE:
            sys.stdout.write(plain_header() + "\n")
        titled: Tally | None = None
        async for tally, rows in scan_rows(cps, scopes, selection, sizes):
            if not tallies or tallies[-1] is not tally:
                tallies.append(tally)
            if progress:
                sys.stderr.write("\r\x1b[K")
            if as_json:
                for row in rows:
                    text = json.dumps(row, indent=2, ensure_ascii=False)
                    sys.stdout.write(("," if printed else "") + "\n" + textwrap.indent(text, "  "))
                    printed += 1
            elif output is Output.WIDE:
                sys.stdout.writelines(plain_line(row) + "\n" for row in rows)
                printed += len(rows)
            elif rows:
                title = _title(tally, len(scopes)) if titled is not tally else None
                titled = tally
                console.print(build_status_table(rows, title=title, caption=False))
                printed += len(rows)
            sys.stdout.flush()
            stalled |= sizes.stalled
            if progress:
                sys.stderr.write(f"{printed:,} of {total:,} records read")
                sys.stderr.flush()
        if progress:
            sys.stderr.write("\r\x1b[K")
        if as_json:
            sys.stdout.write("\n]\n" if printed else "]\n")
            sys.stdout.flush()
    view = StatusView(selection, [(t, []) for t in tallies], sizes_stalled=stalled)
    lines = view.summary()
    if output is Output.TABLE:
        if not printed:
            console.print("No streams yet.")
        for line in lines:
            console.print(Text(line))
    else:
        for line in lines:
            print(line, file=sys.stderr)
    return printed
