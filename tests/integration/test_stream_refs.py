"""`tailup abort | retry | verify` name a stream by its id, a unique prefix of it or its file's
path, against a real Redis (and SeaweedFS where verify reads S3): unique, ambiguous, unknown."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness import isolate_cli
from tailup import cli
from tailup.checkpoint import RedisCheckpointStore
from tailup.dev import RedisServer, SeaweedS3
from tailup.keys import node_scope, share_scope
from tailup.model import RETRY_FIELD, StreamRecord, StreamState
from tailup.plan import MiB

# cli.main runs in-process here: no TAILUP_ variable nor .env of the developer reaches it.
pytestmark = pytest.mark.usefixtures("outside_settings_removed")

NODE = "cam-a"
S = StreamState


@pytest.fixture(autouse=True)
def _no_developer_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """cli.main runs in this process: no TAILUP_* of the developer's, no .env of the checkout."""
    isolate_cli(monkeypatch, tmp_path)


@dataclass
class Streams:
    redis_url: str
    prefix: str
    live: StreamRecord  # uploading, /rec/site/cam1.mp4
    twin: StreamRecord  # completed; its id shares 10 digits with live's
    failed: StreamRecord  # failed, /rec/site/door.ts
    shared: StreamRecord  # uploading in the shared folder nas, /mnt/nas/lobby.ts

    def connection(self) -> list[str]:
        return [
            "--redis-url", self.redis_url, "--redis-prefix", self.prefix,
            "--node-id", NODE, "--bucket", "no-such-bucket",
        ]  # fmt: skip

    def load(self, sid: str) -> StreamRecord:
        async def read() -> StreamRecord:
            async with RedisCheckpointStore.connect(self.redis_url, self.prefix) as cps:
                loaded = await cps.load(sid)
                assert loaded is not None
                return loaded[0]

        return asyncio.run(read())


def _record(sid: str, path: str, state: StreamState, scope: str, root: str) -> StreamRecord:
    return StreamRecord(
        stream_id=sid,
        path=path,
        watch_root=root,
        bucket="no-such-bucket",
        key=f"streams/{sid}/{path.rsplit('/', 1)[-1]}",
        base_part_size=8 * MiB,
        state=state,
        total_bytes_sent=8 * MiB,
        next_part_to_upload=2,
        error="S3 refused: AccessDenied" if state is S.FAILED else "",
        created_at="2026-12-01T10:00:00+00:00",
        last_activity_at_utc="2026-12-01T10:01:00+00:00",
        scope=scope,
        owner=scope,
    )


@pytest.fixture
def streams(redis_server: RedisServer, key_prefix: str) -> Iterator[Streams]:
    base = uuid.uuid4().hex[:8]
    mine, nas = node_scope(NODE), share_scope("nas")
    made = Streams(
        redis_server.url,
        key_prefix,
        live=_record(base + "11110000", "/rec/site/cam1.mp4", S.UPLOADING, mine, "/rec"),
        twin=_record(base + "11220000", "/rec/site/cam2.mp4", S.COMPLETED, mine, "/rec"),
        failed=_record(base + "99990000", "/rec/site/door.ts", S.FAILED, mine, "/rec"),
        shared=_record(base + "55550000", "/mnt/nas/lobby.ts", S.UPLOADING, nas, "/mnt/nas"),
    )

    async def write() -> None:
        async with RedisCheckpointStore.connect(redis_server.url, key_prefix) as cps:
            for record in (made.live, made.twin, made.failed, made.shared):
                await cps.create(record)

    asyncio.run(write())
    yield made


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def _named(record: StreamRecord) -> str:
    return f"{record.stream_id[:12]} ({record.path})"


@pytest.mark.parametrize(
    "how",
    [
        pytest.param(lambda r: r.stream_id, id="the full id"),
        pytest.param(lambda r: r.stream_id[:12], id="the short id"),
        pytest.param(lambda r: r.stream_id[:11].upper(), id="a shorter prefix in capitals"),
        pytest.param(lambda r: r.path, id="the file's path"),
    ],
)
def test_abort_takes_an_id_a_unique_prefix_or_the_path(
    streams: Streams, capsys: pytest.CaptureFixture[str], how: object
) -> None:
    given = how(streams.live)  # type: ignore[operator]
    code, out, err = _run(capsys, "abort", given, "--reason", "wrong camera", *streams.connection())
    assert code == 0, err
    assert out.strip() == f"stream {_named(streams.live)} aborted: wrong camera"
    record = streams.load(streams.live.stream_id)
    assert record.state is S.ABORTED and record.error == "wrong camera"
    assert streams.load(streams.twin.stream_id).state is S.COMPLETED  # its neighbour untouched


def test_an_ambiguous_prefix_is_an_error_listing_the_candidates(
    streams: Streams, capsys: pytest.CaptureFixture[str]
) -> None:
    prefix = streams.live.stream_id[:9]  # shared by live and twin
    for command in (["abort", prefix], ["retry", prefix], ["verify", prefix]):
        code, out, err = _run(capsys, *command, *streams.connection())
        assert code == 1 and out == "", command
        lines = err.splitlines()
        assert (
            lines[0] == f"tailup: {prefix!r} matches 2 streams; give more of the id (or the path):"
        )
        # Each candidate by the short id that tells them apart, its state and its path.
        assert lines[1:] == [
            f"  {streams.live.stream_id[:12]}  uploading   /rec/site/cam1.mp4",
            f"  {streams.twin.stream_id[:12]}  completed   /rec/site/cam2.mp4",
        ]
    assert streams.load(streams.live.stream_id).state is S.UPLOADING  # nothing was done


@pytest.mark.parametrize("command", ["abort", "retry"])
@pytest.mark.parametrize(
    ("given", "says"),
    [
        ("deadbeefdead", "no stream matches 'deadbeefdead': it is not a stream id, a prefix of"),
        ("/rec/site/nothing.mp4", "no stream matches '/rec/site/nothing.mp4'"),
        ("abc", "(a prefix needs at least 4 characters)"),
    ],
)
def test_an_unknown_stream_is_a_clear_error(
    streams: Streams, capsys: pytest.CaptureFixture[str], command: str, given: str, says: str
) -> None:
    code, out, err = _run(capsys, command, given, *streams.connection())
    assert code == 1 and out == ""
    assert says in err and f"records of node {NODE}" in err and "tailup status" in err


def test_retry_takes_a_prefix_or_the_path(
    streams: Streams, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(capsys, "retry", streams.failed.stream_id[:12], *streams.connection())
    assert code == 0, err
    shown = _named(streams.failed)
    assert out.strip() == f"stream {shown} will be retried now (was: S3 refused: AccessDenied)"
    assert streams.load(streams.failed.stream_id).extra.get(RETRY_FIELD)
    code, out, _ = _run(capsys, "retry", streams.live.path, *streams.connection())
    assert code == 0
    assert out.strip() == f"stream {_named(streams.live)} is uploading; nothing to retry"


def test_a_shared_folder_s_streams_with_shared_watch(
    streams: Streams, capsys: pytest.CaptureFixture[str]
) -> None:
    sid = streams.shared.stream_id
    code, _, err = _run(capsys, "abort", sid[:12], *streams.connection())
    assert code == 1 and "no stream matches" in err and "--shared-watch" in err
    shared = ["--shared-watch", "nas=/mnt/nas"]
    code, _, err = _run(capsys, "retry", "/mnt/nas/lobby.ts", *shared, *streams.connection())
    assert code == 0, err
    code, out, err = _run(capsys, "abort", sid[:12], *shared, *streams.connection())
    assert code == 0, err
    assert out.strip() == f"stream {_named(streams.shared)} aborted: aborted by the operator"
    assert streams.load(sid).state is S.ABORTED


def test_verify_takes_a_prefix_or_the_path(
    streams: Streams, capsys: pytest.CaptureFixture[str]
) -> None:
    for given in (streams.live.stream_id[:12], streams.live.path):
        code, out, _ = _run(capsys, "verify", given, *streams.connection())
        assert code == 1
        assert f"stream {_named(streams.live)} is uploading, not completed" in out


def test_verify_of_what_is_neither_a_stream_nor_an_object(
    streams: Streams,
    s3_server: SeaweedS3,
    bucket: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    connection = [*streams.connection()[:-2], "--bucket", bucket]
    connection += ["--endpoint-url", s3_server.endpoint_url]
    code, out, _ = _run(capsys, "verify", "deadbeefdead", *connection)
    assert code == 1
    assert (
        f"no object at s3://{bucket}/deadbeefdead, and no stream matches 'deadbeefdead' (a "
        "stream id, a unique prefix of one of at least 4 characters, or a recording's path"
    ) in out
