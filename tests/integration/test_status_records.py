"""`tailup status` and /streams against a real Redis: which records they read and show (the live
ones always, the newest ended ones up to --limit, --state, --all, other nodes' and shared
folders' scopes), at the CLI and the HTTP level."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

import tailup.status
from daemonproc import run_cli
from harness import IsolatedSettings, isolate_cli
from tailup import cli
from tailup.checkpoint import RedisCheckpointStore
from tailup.dev import RedisServer
from tailup.health import HealthMonitor
from tailup.keys import node_scope, share_scope
from tailup.model import StreamRecord, StreamState
from tailup.plan import MiB
from tailup.selection import Selection, Tally
from tailup.server import OpsContext, build_app
from tailup.status import SizeProbe, collect_view, scan_records, status_scopes
from tailup.statustable import PLAIN_COLUMNS

# cli.main runs in-process here: no TAILUP_ variable nor .env of the developer reaches it.
pytestmark = pytest.mark.usefixtures("outside_settings_removed")

S = StreamState
NODE_A, NODE_B = "cam-a", "cam-b"


def _record(scope: str, state: StreamState, n: int, **changes: Any) -> StreamRecord:
    sid = f"{scope.replace(':', '-')}-{state.value}-{n:05d}-{uuid.uuid4().hex[:4]}"
    return StreamRecord(
        stream_id=sid,
        path=f"/rec/{scope}/cam-{n:05d}.ts",
        watch_root="/rec",
        bucket="b",
        key=f"streams/{sid}/cam.ts",
        base_part_size=8 * MiB,
        state=state,
        total_bytes_sent=3 * 8 * MiB,
        next_part_to_upload=4,
        final_size=3 * 8 * MiB + 5 if state is S.COMPLETED else 0,
        created_at="2026-12-01T10:00:00+00:00",
        last_activity_at_utc="2026-12-01T10:01:00+00:00",
        completed_at="2026-12-01T10:01:00+00:00" if state is S.COMPLETED else "",
        scope=scope,
        owner=scope,
    ).with_changes(**changes)


class Records:
    """Writes records as the daemon's store does (RedisCheckpointStore.create), then pins the
    ended index's scores (end times) so that "newest" is exact: the n-th ended record of a
    scope ended at second n."""

    def __init__(self, store: RedisCheckpointStore) -> None:
        self.store = store
        self.ended_at: dict[str, int] = {}

    async def add(self, scope: str, states: Iterable[StreamState]) -> list[StreamRecord]:
        made = []
        for state in states:
            n = self.ended_at.setdefault(scope, 0) + 1
            self.ended_at[scope] = n
            record = _record(scope, state, n)
            await self.store.create(record)
            if not state.is_resumable:
                ended = self.store.keys.scope(scope).ended
                await self.store.client.zadd(ended, {record.stream_id: 1_000_000 + n})
            made.append(record)
        return made


@pytest.fixture
async def store(redis_server: RedisServer, key_prefix: str) -> AsyncIterator[RedisCheckpointStore]:
    async with RedisCheckpointStore.connect(
        redis_server.url, key_prefix, scope=node_scope(NODE_A)
    ) as cps:
        yield cps


@pytest.fixture
def records(store: RedisCheckpointStore) -> Records:
    return Records(store)


def _ids(view_rows: list[dict[str, Any]]) -> list[str]:
    return [row["stream_id"] for row in view_rows]


def _newest_first(records: list[StreamRecord]) -> list[str]:
    return [r.stream_id for r in reversed(records)]


A = node_scope(NODE_A)


async def test_live_streams_always_then_the_newest_ended_up_to_the_limit(
    store: RedisCheckpointStore, records: Records
) -> None:
    live = await records.add(A, [S.UPLOADING, S.STALLED, S.FAILED, S.FINALIZING])
    ended = await records.add(A, [S.COMPLETED] * 30)

    view = await collect_view(store, [A], Selection())
    assert _ids(view.rows) == sorted(r.stream_id for r in live) + _newest_first(ended)[:20]
    (tally,) = view.tallies
    assert (tally.live, tally.ended, tally.shown_live, tally.shown_ended) == (4, 30, 4, 20)
    assert tally.scanned == 20  # read: the live set, the 20 newest ended; nothing else
    assert view.summary() == [
        f"node {NODE_A}: 4 live, 30 ended; 24 shown (the 20 newest ended; "
        "--limit N or --all for more)"
    ]
    view = await collect_view(store, [A], Selection(limit=3))
    assert _ids(view.rows)[4:] == _newest_first(ended)[:3]
    view = await collect_view(store, [A], Selection(limit=100))
    assert _ids(view.rows)[4:] == _newest_first(ended)
    assert view.summary() == [f"node {NODE_A}: 4 live, 30 ended; 34 shown"]


async def test_rows_keep_their_shape_with_parts_counted_from_the_record(
    store: RedisCheckpointStore, records: Records
) -> None:
    (done,) = await records.add(A, [S.COMPLETED])
    (row,) = (await collect_view(store, [A], Selection())).rows
    assert list(row) == [
        "stream_id", "path", "state", "bytes_uploaded", "file_size", "lag_bytes",
        "rate_bytes_per_s", "parts", "bucket", "key", "generation", "last_activity",
        "created_at", "completed_at", "sha256", "error", "note", "scope",
    ]  # fmt: skip
    assert row["parts"] == 3 and row["bytes_uploaded"] == done.final_size
    assert row["file_size"] is None and row["scope"] == A


async def test_a_state_filter_pages_through_the_ended_index_until_the_limit_matches(
    store: RedisCheckpointStore, records: Records, monkeypatch: pytest.MonkeyPatch
) -> None:
    await records.add(A, [S.UPLOADING, S.FAILED])
    # 60 ended, every 10th aborted (the oldest first): aborted are 10, 20, ..., 60.
    ended = await records.add(A, [S.ABORTED if n % 10 == 0 else S.COMPLETED for n in range(1, 61)])
    aborted = [r for r in ended if r.state is S.ABORTED]

    loaded: list[str] = []
    load_records = store.load_records

    async def spy(ids: Sequence[str]) -> list[StreamRecord]:
        loaded.extend(ids)
        return await load_records(ids)

    monkeypatch.setattr(store, "load_records", spy)
    selection = Selection(limit=3, states=frozenset({S.ABORTED}), page=7)
    view = await collect_view(store, [A], selection)
    assert _ids(view.rows) == _newest_first(aborted)[:3]
    # The ended pages cost a state each; whole records were read for the matches only.
    assert loaded == _newest_first(aborted)[:3]
    monkeypatch.undo()
    (tally,) = view.tallies
    # The 3rd newest aborted is the 21st newest ended: 3 pages of 7, not the whole index.
    assert tally.scanned == 21 and not tally.exhausted
    assert "the 3 newest matching" in view.summary()[0]

    # Bounded: the scan stops at scan_limit and says how far it looked.
    selection = Selection(limit=3, states=frozenset({S.ABORTED}), page=7, scan_limit=12)
    view = await collect_view(store, [A], selection)
    assert _ids(view.rows) == _newest_first(aborted)[:2] and view.tallies[0].scanned == 12
    assert "looked at the newest 12 ended only; --all --state aborted" in view.summary()[0]

    # Live states with ended ones: every live match, then the ended matches.
    both = Selection(limit=10, states=frozenset({S.FAILED, S.ABORTED}), page=25)
    rows = (await collect_view(store, [A], both)).rows
    assert [r["state"] for r in rows] == ["failed"] + ["aborted"] * 6


async def test_live_states_alone_never_read_the_ended_index(
    store: RedisCheckpointStore, records: Records, monkeypatch: pytest.MonkeyPatch
) -> None:
    await records.add(A, [S.UPLOADING, S.FAILED, S.FAILED, S.COMPLETED, S.ABORTED])

    async def refuse(*_: Any, **__: Any) -> list[str]:
        raise AssertionError("the ended index was read")

    monkeypatch.setattr(store, "ended_stream_ids", refuse)
    view = await collect_view(store, [A], Selection(states=frozenset({S.FAILED})))
    assert [r["state"] for r in view.rows] == ["failed", "failed"]
    assert view.summary() == [
        f"node {NODE_A}: 3 live, 2 ended; 2 failed shown (only live states asked for)"
    ]


async def test_expired_records_left_in_the_index_are_skipped_and_the_limit_still_filled(
    store: RedisCheckpointStore, records: Records
) -> None:
    ended = await records.add(A, [S.COMPLETED] * 40)
    newest = _newest_first(ended)
    # The 5 newest expired (their TTL) before the daemon trimmed the index: entries, no records.
    await store.client.delete(*(store.keys.stream_meta(sid) for sid in newest[:5]))
    view = await collect_view(store, [A], Selection(limit=10))
    assert _ids(view.rows) == newest[5:15]


async def test_all_pages_through_every_record(
    store: RedisCheckpointStore, records: Records
) -> None:
    live = await records.add(A, [S.UPLOADING, S.FAILED])
    ended = await records.add(A, [S.SKIPPED if n % 3 else S.COMPLETED for n in range(350)])

    tally = Tally(A)
    batches = [b async for b in scan_records(store, A, Selection(every=True, page=100), tally)]
    assert [len(b) for b in batches] == [2, 100, 100, 100, 50]
    got = [r.stream_id for b in batches for r in b]
    assert got == sorted(r.stream_id for r in live) + _newest_first(ended)
    assert (tally.live, tally.ended, tally.shown, tally.exhausted) == (2, 350, 352, True)

    only = Selection(every=True, page=100, states=frozenset({S.COMPLETED}), limit=1)
    view = await collect_view(store, [A], only)
    assert _ids(view.rows) == [r.stream_id for r in reversed(ended) if r.state is S.COMPLETED]
    assert len(view.rows) == 117  # --all ignores --limit


async def test_an_entry_pushed_to_the_next_page_mid_scan_is_shown_once(
    store: RedisCheckpointStore, records: Records
) -> None:
    ended = await records.add(A, [S.COMPLETED] * 12)
    tally = Tally(A)
    scan = scan_records(store, A, Selection(every=True, page=5), tally)
    first = await anext(scan)
    # Two streams end while the scan reads: everything older moves two places down.
    await records.add(A, [S.COMPLETED] * 2)
    rest = [r async for batch in scan for r in batch]
    got = [r.stream_id for r in first + rest]
    assert got == _newest_first(ended)
    assert len(set(got)) == len(got)


def _settings(redis_url: str, prefix: str, **more: Any) -> IsolatedSettings:
    return IsolatedSettings(redis_url=redis_url, redis_prefix=prefix, node_id=NODE_A, **more)


async def test_another_nodes_records_only_with_node_and_shared_folders_after_the_nodes(
    store: RedisCheckpointStore, records: Records, redis_server: RedisServer, key_prefix: str
) -> None:
    mine = await records.add(A, [S.UPLOADING, S.COMPLETED])
    theirs = await records.add(node_scope(NODE_B), [S.UPLOADING, S.COMPLETED, S.ABORTED])
    shared = await records.add(share_scope("nas"), [S.STALLED, S.COMPLETED])

    settings = _settings(redis_server.url, key_prefix)
    view = await collect_view(store, status_scopes(settings), Selection())
    assert _ids(view.rows) == [r.stream_id for r in mine]

    view = await collect_view(store, status_scopes(settings, NODE_B), Selection())
    assert _ids(view.rows) == [theirs[0].stream_id, theirs[2].stream_id, theirs[1].stream_id]

    settings = _settings(redis_server.url, key_prefix, shared_watch=["nas=/mnt/nas"])
    view = await collect_view(store, status_scopes(settings), Selection())
    assert _ids(view.rows) == [r.stream_id for r in mine + shared]
    assert view.summary() == [
        f"node {NODE_A}: 1 live, 1 ended; 2 shown",
        "shared folder nas: 1 live, 1 ended; 2 shown",
    ]


async def test_sizes_are_taken_off_the_event_loop_and_a_hung_stat_costs_one_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    here = tmp_path / "cam.ts"
    here.write_bytes(b"x" * 1234)
    threads: list[str] = []
    release = threading.Event()

    def size(path: str) -> int | None:
        threads.append(threading.current_thread().name)
        with pytest.raises(RuntimeError):
            asyncio.get_running_loop()  # not on the loop's thread
        if path.endswith("hung.ts"):
            release.wait(30)
        return here.stat().st_size if path == str(here) else None

    monkeypatch.setattr(tailup.status, "_file_size", size)
    probe = SizeProbe(timeout_s=0.3)
    assert await probe.sizes([str(here), "/gone.ts"]) == {str(here): 1234, "/gone.ts": None}
    assert threads and "MainThread" not in threads and not probe.stalled

    try:
        got = await probe.sizes([str(here), "/nfs/hung.ts", "/after.ts"])
        assert got == {str(here): 1234, "/nfs/hung.ts": None, "/after.ts": None}
        assert probe.stalled
        # While that stat hangs, later looks start no thread: every size is unknown.
        before = len(threads)
        assert await probe.sizes([str(here)]) == {str(here): None}
        assert len(threads) == before
    finally:
        release.set()
    for _ in range(100):
        if await probe.sizes([str(here)]) == {str(here): 1234}:
            break
        await asyncio.sleep(0.05)
    assert not probe.stalled


# -- /streams --


class _Owner:
    def stream_states(self) -> dict[str, int]:
        return {}

    @property
    def streams(self) -> dict[str, Any]:
        return {}


@pytest.fixture
async def http(store: RedisCheckpointStore) -> AsyncIterator[TestClient[Any, Any]]:
    ctx = OpsContext(
        _Owner(),
        HealthMonitor({}, interval_s=60),
        store,
        (A, share_scope("nas")),
    )
    async with TestClient(TestServer(build_app(ctx))) as client:
        yield client


async def test_streams_endpoint_selects_like_the_cli(
    http: TestClient[Any, Any], records: Records
) -> None:
    live = await records.add(A, [S.UPLOADING])
    ended = await records.add(A, [S.ABORTED if n % 4 == 0 else S.COMPLETED for n in range(1, 41)])
    shared = await records.add(share_scope("nas"), [S.COMPLETED])

    answer = await http.get("/streams")
    assert answer.status == 200
    rows = await answer.json()
    newest = _newest_first(ended)
    assert _ids(rows) == [live[0].stream_id, *newest[:20], shared[0].stream_id]
    assert (answer.headers["X-Tailup-Live"], answer.headers["X-Tailup-Ended"]) == ("1", "41")
    assert answer.headers["X-Tailup-Shown"] == "22"

    answer = await http.get("/streams", params=[("limit", "2"), ("state", "aborted,uploading")])
    aborted = [r.stream_id for r in reversed(ended) if r.state is S.ABORTED]
    assert _ids(await answer.json()) == [live[0].stream_id, *aborted[:2]]


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("state=done", "state: 'done' is not a stream state. Accepted: uploading, stalled"),
        ("limit=0", "limit: 0 is below 1"),
        ("limit=many", "limit: 'many' is not a whole number"),
        ("limit=5000", "limit: 5000 is above 1000"),
    ],
)
async def test_streams_endpoint_refuses_a_bad_query_with_400(
    http: TestClient[Any, Any], query: str, says: str
) -> None:
    answer = await http.get(f"/streams?{query}")
    assert answer.status == 400
    body = await answer.json()
    assert body["error"].startswith(says) and "completed" in body["accepted"]["state"]


# -- the command line --


@pytest.fixture
def cli_records(redis_server: RedisServer, key_prefix: str) -> Iterator[dict[str, list[str]]]:
    async def write() -> dict[str, list[str]]:
        async with RedisCheckpointStore.connect(redis_server.url, key_prefix) as cps:
            made = Records(cps)
            a = await made.add(A, [S.UPLOADING] + [S.COMPLETED] * 4 + [S.ABORTED])
            b = await made.add(node_scope(NODE_B), [S.COMPLETED])
            return {"a": [r.stream_id for r in a], "b": [r.stream_id for r in b]}

    yield asyncio.run(write())


@pytest.fixture
def no_developer_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """cli.main runs in this process: no TAILUP_* of the developer's, no .env of the checkout."""
    isolate_cli(monkeypatch, tmp_path)


def _connection(redis_server: RedisServer, key_prefix: str) -> list[str]:
    return ["--redis-url", redis_server.url, "--redis-prefix", key_prefix, "--node-id", NODE_A]


def test_cli_status_json_with_limit_state_and_node(
    no_developer_settings: None,
    cli_records: dict[str, list[str]],
    redis_server: RedisServer,
    key_prefix: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    a, b = cli_records["a"], cli_records["b"]
    conn = _connection(redis_server, key_prefix)

    def rows(*args: str) -> list[str]:
        assert cli.main(["status", "--json", *conn, *args]) == 0
        return [row["stream_id"] for row in json.loads(capsys.readouterr().out)]

    assert rows() == [a[0], a[5], a[4], a[3], a[2], a[1]]
    assert rows("--limit", "2") == [a[0], a[5], a[4]]
    assert rows("--state", "completed", "--limit", "2") == [a[4], a[3]]
    assert rows("--state", "uploading", "--state", "aborted") == [a[0], a[5]]
    assert rows("--node", NODE_B) == b
    assert rows("--all", "--state", "completed") == [a[4], a[3], a[2], a[1]]


def test_cli_status_plain_rows_table_and_all_as_a_real_subprocess(
    cli_records: dict[str, list[str]], redis_server: RedisServer, key_prefix: str
) -> None:
    a = cli_records["a"]
    conn = _connection(redis_server, key_prefix)
    summary = (
        f"node {NODE_A}: 1 live, 5 ended; 3 shown (the 2 newest ended; --limit N or --all for more)"
    )
    # stdout is a pipe: plain rows under a header, full ids; the summary on stderr.
    shown = run_cli(["status", *conn, "--limit", "2"], {"COLUMNS": "80"})
    assert shown.returncode == 0, shown.stderr
    header, *lines = shown.stdout.splitlines()
    assert header.split("\t") == list(PLAIN_COLUMNS)
    assert [line.split("\t")[0] for line in lines] == [a[0], a[5], a[4]]
    # ... then whether the node's daemon runs (none here: records written straight into Redis).
    assert shown.stderr.strip().splitlines() == [summary, f"node {NODE_A}: no daemon running"]
    # -o table: the table in a pipe too, at COLUMNS's width.
    table = run_cli(["status", *conn, "--limit", "2", "-o", "table"], {"COLUMNS": "100"})
    assert table.returncode == 0, table.stderr
    assert "tailup streams" in table.stdout and summary in " ".join(table.stdout.split())
    assert max(len(line) for line in table.stdout.splitlines()) <= 100
    # By file name (these ids are not hex: their first 12 characters are alike).
    assert all(f"cam-{n:05d}.ts" in table.stdout for n in (1, 6, 5))
    assert not any(f"cam-{n:05d}.ts" in table.stdout for n in (2, 3, 4))

    every = run_cli(["status", *conn, "--all", "--json"], {})
    assert every.returncode == 0, every.stderr
    assert [row["stream_id"] for row in json.loads(every.stdout)] == [a[0], *reversed(a[1:])]
    assert f"--all: 6 records (node {NODE_A}: 1 live, 5 ended)" in every.stderr
    assert f"node {NODE_A}: 1 live, 5 ended; 6 shown (--all)" in every.stderr

    plain = run_cli(["status", *conn, "--all"], {})
    assert plain.returncode == 0, plain.stderr
    header, *lines = plain.stdout.splitlines()
    assert header.split("\t") == list(PLAIN_COLUMNS)  # once, however many pages
    assert [line.split("\t")[0] for line in lines] == [a[0], *reversed(a[1:])]
    assert "6 shown (--all)" in plain.stderr

    table = run_cli(["status", *conn, "--all", "--output", "table"], {"COLUMNS": "250"})
    assert table.returncode == 0, table.stderr
    assert all(f"cam-{n:05d}.ts" in table.stdout for n in range(1, 7))
    assert "6 shown (--all)" in table.stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--state", "done"], "--state: 'done' is not a stream state. Accepted: uploading, "),
        (["--state", "failed,nope"], "--state: 'nope' is not a stream state"),
        (["--limit", "0"], "--limit: 0 is below 1"),
        (["--limit", "lots"], "--limit: 'lots' is not a whole number"),
        (["--node", "not a node!"], "--node: 'not a node!' is not a node id. Accepted: "),
        (["--all", "--watch"], "--all reads every record once; it cannot be used with --watch"),
        (["--all", "--limit", "3"], "argument --limit: not allowed with argument --all"),
        (["--json", "--wide"], "argument --wide: not allowed with argument --json"),
        (["-o", "yaml"], "argument -o/--output: invalid choice: 'yaml'"),
    ],
)
def test_cli_status_refuses_bad_selections_with_exit_2(
    no_developer_settings: None, args: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    conn = ["--redis-url", "redis://127.0.0.1:1/0"]  # never reached: refused before
    try:
        code = cli.main(["status", *conn, *args])
    except SystemExit as exc:  # argparse's own refusals
        code = int(exc.code or 0)
    assert code == 2
    assert says in capsys.readouterr().err
