"""Which stream an id, a prefix of one or a path names (tailup.streamref; no servers)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tailup.dev import MemoryCheckpointStore
from tailup.model import StreamRecord, StreamState
from tailup.plan import MiB
from tailup.streamref import (
    AmbiguousStream,
    Found,
    StreamNotFound,
    find_stream,
    index_entries,
    resolve_reference,
)

A = "7f1c7ad60d824c7b"
B = "7f1c7ad6ffff0000"  # shares 8 digits with A
C = "0a1b2c3d4e5f6789"
LEGACY = "abcd"  # an id that is a prefix of another
LONGER = "abcd0123456789ef"
IDS = {A, B, C, LEGACY, LONGER}


@pytest.mark.parametrize(
    ("given", "path_hits", "found", "candidates"),
    [
        pytest.param(A, (), Found.ONE, (A,), id="the full id"),
        pytest.param("7f1c7ad60d82", (), Found.ONE, (A,), id="the 12 digits status shows"),
        pytest.param("7f1c7ad60", (), Found.ONE, (A,), id="a shorter unique prefix"),
        pytest.param("0a1b", (), Found.ONE, (C,), id="4 characters are enough"),
        pytest.param("7F1C7AD60D82", (), Found.ONE, (A,), id="in capitals"),
        pytest.param(f"  {A[:12]}\n", (), Found.ONE, (A,), id="blanks around it"),
        pytest.param("7f1c", (), Found.AMBIGUOUS, (A, B), id="an ambiguous prefix"),
        pytest.param("7f1c7ad6", (), Found.AMBIGUOUS, (A, B), id="8 shared digits"),
        pytest.param(LEGACY, (), Found.ONE, (LEGACY,), id="an exact id beats a prefix"),
        pytest.param("0a1", (), Found.TOO_SHORT, (), id="3 characters"),
        pytest.param("deadbeef", (), Found.NONE, (), id="unknown"),
        pytest.param("", (), Found.NONE, (), id="empty"),
        pytest.param("/rec/cam1.mp4", (C,), Found.ONE, (C,), id="a path"),
        pytest.param("a.ts", (C,), Found.ONE, (C,), id="a short relative path"),
        pytest.param("/rec/x.ts", (), Found.NONE, (), id="a path nobody recorded"),
        pytest.param("7f1c7ad60d82", (A,), Found.ONE, (A,), id="path and prefix: one stream"),
        pytest.param(
            "7f1c7ad60d82", (C,), Found.AMBIGUOUS, (C, A), id="a file named like another's id"
        ),
        pytest.param("cam1.mp4", (A, C), Found.AMBIGUOUS, (C, A), id="a path in two scopes"),
    ],
)
def test_resolve_reference(
    given: str, path_hits: tuple[str, ...], found: Found, candidates: tuple[str, ...]
) -> None:
    resolution = resolve_reference(given, ids=IDS, path_hits=path_hits)
    assert resolution.found is found
    assert resolution.candidates == tuple(sorted(candidates))
    if found is Found.ONE:
        assert resolution.stream_id == candidates[0]
    else:
        with pytest.raises(ValueError):
            _ = resolution.stream_id


@pytest.mark.parametrize(
    ("given", "scope", "roots", "expected"),
    [
        ("/rec/cam1.mp4", "node:web1", {}, ["/rec/cam1.mp4"]),
        ("/rec/./site/../cam1.mp4", "node:web1", {}, ["/rec/cam1.mp4"]),
        ("/mnt/nas/site/cam1.mp4", "share:nas", {"share:nas": Path("/mnt/nas")}, ["site/cam1.mp4"]),
        ("/elsewhere/cam1.mp4", "share:nas", {"share:nas": Path("/mnt/nas")}, []),
        ("/mnt/nas/site/cam1.mp4", "share:nas", {}, []),  # a share this command was not given
        ("", "node:web1", {}, []),
    ],
)
def test_a_path_is_looked_up_as_each_scope_indexes_it(
    given: str, scope: str, roots: dict[str, Path], expected: list[str]
) -> None:
    assert index_entries(given, scope, roots) == expected


def test_a_relative_path_is_taken_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    real = str(tmp_path.resolve())
    assert index_entries("cam1.mp4", "node:web1", {})[-1] == f"{real}/cam1.mp4"


# -- against a store --

NODE, SHARE = "node:web1", "share:nas"


def _record(sid: str, path: str, state: StreamState, scope: str = NODE) -> StreamRecord:
    return StreamRecord(
        stream_id=sid,
        path=path,
        watch_root="/mnt/nas" if scope == SHARE else "/rec",
        bucket="b",
        key=f"streams/{sid}/x.ts",
        base_part_size=8 * MiB,
        state=state,
        scope=scope,
    )


@pytest.fixture
async def store() -> MemoryCheckpointStore:
    store = MemoryCheckpointStore(scope=NODE)
    for record in [
        _record(A, "/rec/cam1.mp4", StreamState.UPLOADING),
        _record(B, "/rec/cam2.mp4", StreamState.COMPLETED),
        _record(C, "/mnt/nas/site/door.ts", StreamState.FAILED, SHARE),
    ]:
        await store.create(record)
    return store


ROOTS = {SHARE: Path("/mnt/nas")}


@pytest.mark.parametrize(
    ("given", "scopes", "expected"),
    [
        (A, [NODE], A),
        (A[:12], [NODE], A),
        (B[:12], [NODE], B),  # ended records count
        ("/rec/cam2.mp4", [NODE], B),
        (C[:6], [NODE, SHARE], C),
        ("/mnt/nas/site/door.ts", [NODE, SHARE], C),
    ],
)
async def test_find_stream(
    store: MemoryCheckpointStore, given: str, scopes: list[str], expected: str
) -> None:
    assert (await find_stream(store, given, scopes, ROOTS)).stream_id == expected


async def test_an_ambiguous_prefix_lists_each_candidate_with_its_state_and_path(
    store: MemoryCheckpointStore,
) -> None:
    with pytest.raises(AmbiguousStream) as info:
        await find_stream(store, "7f1c", [NODE], ROOTS)
    assert info.value.candidates == (A, B)
    assert str(info.value).splitlines() == [
        "'7f1c' matches 2 streams; give more of the id (or the path):",
        f"  {A[:12]}  uploading   /rec/cam1.mp4",
        f"  {B[:12]}  completed   /rec/cam2.mp4",
    ]


@pytest.mark.parametrize(
    ("given", "scopes", "says"),
    [
        ("deadbeef", [NODE], "no stream matches 'deadbeef': it is not a stream id, a prefix"),
        ("7f1", [NODE], "(a prefix needs at least 4 characters)"),
        # A shared folder's streams only with --shared-watch.
        (C[:12], [NODE], "among the live and ended records of node web1 (see"),
        ("/mnt/nas/site/door.ts", [NODE], "--shared-watch for a shared folder's"),
    ],
)
async def test_an_unknown_stream_says_where_it_was_looked_for(
    store: MemoryCheckpointStore, given: str, scopes: list[str], says: str
) -> None:
    with pytest.raises(StreamNotFound, match=None) as info:
        await find_stream(store, given, scopes, ROOTS)
    assert says in str(info.value)
