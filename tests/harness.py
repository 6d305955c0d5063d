"""In-process daemon harness for integration tests: the real Supervisor, watcher, Redis store and
S3 store, with spies that record every S3 call and check every checkpoint as it is written."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

import tailup.stream.resuming
from tailup import cli
from tailup.bandwidth import BandwidthLimit
from tailup.checkpoint import RedisCheckpointStore
from tailup.config import Settings
from tailup.errors import StorageUnavailable
from tailup.model import PartRecord, StreamRecord, StreamState
from tailup.plan import PartPlan
from tailup.resume import ResumeDecision
from tailup.retry import Backoff
from tailup.s3 import Body, S3MultipartStore
from tailup.supervisor import Supervisor


class IsolatedSettings(Settings):
    """Settings from the arguments and the defaults only: a developer's TAILUP_* variables or a
    .env file in the working directory never change what a test runs (the CLI reads both)."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def isolate_cli(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """For `cli.main` run in this process: it reads TAILUP_* variables and a .env file in the
    working folder (a developer's own, in the checkout), so take the first away and work in
    ``folder`` (a test's tmp_path, with no .env)."""
    for name in list(os.environ):
        if name.upper().startswith("TAILUP_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(folder)


async def cli_here(
    capsys: pytest.CaptureFixture[str], args: Sequence[str]
) -> subprocess.CompletedProcess[str]:
    """`tailup ARGS` run by ``tailup.cli.main`` as `python -m tailup` runs it, in this process
    (isolate_cli first), for a test whose subject is the command rather than the process: what
    daemonproc.run_cli returns, without an interpreter's start-up (~1 s of CPU). In a thread,
    since the command runs an event loop of its own; nothing else may print meanwhile."""
    capsys.readouterr()  # what was printed before is not this command's
    try:
        code = await asyncio.to_thread(cli.main, list(args))
    except SystemExit as exc:  # argparse's own refusals
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(["tailup", *args], code, out, err)


@dataclass
class PartCall:
    key: str
    number: int
    size: int
    etag: str = ""


@dataclass
class SpyStore:
    """Wraps the real S3 store and records what was sent; behaviour is the real server's."""

    inner: S3MultipartStore
    parts: list[PartCall] = field(default_factory=list)  # acknowledged by S3, in that order
    part_attempts: list[tuple[str, int]] = field(default_factory=list)  # (key, number) as sent
    puts: list[str] = field(default_factory=list)
    completes: list[tuple[str, int]] = field(default_factory=list)
    aborts: list[str] = field(default_factory=list)
    # part number -> the part whose acknowledgement it waits for before it is sent: makes parts
    # complete out of order on the real server, deterministically.
    hold_until: dict[int, int] = field(default_factory=dict)
    _acked: dict[int, asyncio.Event] = field(default_factory=dict)
    # Injected faults: method name -> how many calls fail (retryably) before the real call runs.
    faults: dict[str, int] = field(default_factory=dict)
    faults_raised: int = 0

    def _maybe_fail(self, method: str) -> None:
        if self.faults.get(method, 0) > 0:
            self.faults[method] -= 1
            self.faults_raised += 1
            raise StorageUnavailable(f"S3 {method}: injected fault (test)")

    async def upload_part(
        self, key: str, upload_id: str, number: int, body: Body, crc32: int, **kwargs: Any
    ) -> str:
        if number in self.hold_until:
            await self._acked.setdefault(self.hold_until[number], asyncio.Event()).wait()
        self.part_attempts.append((key, number))
        self._maybe_fail("upload_part")
        etag = await self.inner.upload_part(key, upload_id, number, body, crc32, **kwargs)
        self.parts.append(PartCall(key, number, len(body), etag))
        self._acked.setdefault(number, asyncio.Event()).set()
        return etag

    async def put_object(
        self,
        key: str,
        body: Body,
        crc32: int,
        content_type: str,
        *,
        if_none_match: bool = False,
        **kwargs: Any,
    ) -> str:
        self._maybe_fail("put_object")
        etag = await self.inner.put_object(
            key, body, crc32, content_type, if_none_match=if_none_match, **kwargs
        )
        self.puts.append(key)
        return etag

    async def complete_upload(
        self,
        key: str,
        upload_id: str,
        parts: Sequence[tuple[int, str, int]],
        *,
        if_none_match: bool = False,
        **kwargs: Any,
    ) -> str:
        self._maybe_fail("complete_upload")
        etag = await self.inner.complete_upload(
            key, upload_id, parts, if_none_match=if_none_match, **kwargs
        )
        self.completes.append((key, len(parts)))
        return etag

    async def abort_upload(self, key: str, upload_id: str) -> None:
        await self.inner.abort_upload(key, upload_id)
        self.aborts.append(key)

    def for_bucket(self, bucket: str) -> Any:
        return self if bucket == self.inner._bucket else self.inner.for_bucket(bucket)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@dataclass
class CheckpointSpy:
    """Wraps the Redis store; after every part commit, re-reads Redis and hands the state to a
    checker, so tests see the checkpoint exactly as a crash right then would leave it. With
    ``s3_acknowledged``, it also notes, as each commit starts, what S3 had acknowledged by then
    (``acked_at_commit[i]`` goes with ``after_commit[i]``)."""

    inner: RedisCheckpointStore
    s3_acknowledged: Callable[[], frozenset[tuple[str, int, str]]] | None = None
    after_commit: list[tuple[StreamRecord, dict[int, PartRecord]]] = field(default_factory=list)
    acked_at_commit: list[frozenset[tuple[str, int, str]]] = field(default_factory=list)
    committed: list[int] = field(default_factory=list)  # part numbers, in commit order

    async def commit_part(self, stream_id: str, part: PartRecord) -> None:
        acked = self.s3_acknowledged() if self.s3_acknowledged is not None else frozenset()
        await self.inner.commit_part(stream_id, part)
        self.acked_at_commit.append(acked)
        self.committed.append(part.number)
        loaded = await self.inner.load(stream_id)
        assert loaded is not None
        self.after_commit.append(loaded)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@dataclass
class Daemon:
    settings: Settings
    store: SpyStore
    checkpoints: CheckpointSpy
    supervisor: Supervisor
    # (stream id, decision) of every resume, in order: which branch of tailup.resume ran.
    resumes: list[tuple[str, ResumeDecision]] = field(default_factory=list)

    async def record_for(self, path: Path) -> StreamRecord | None:
        stream_id = await self.checkpoints.inner.stream_for_path(str(path))
        if stream_id is None:
            return None
        loaded = await self.checkpoints.inner.load(stream_id)
        return loaded[0] if loaded else None

    async def wait_for_state(
        self, path: Path, states: set[StreamState], timeout_s: float = 60.0
    ) -> StreamRecord:
        """Wait until the stream of ``path`` reaches one of ``states``; fail with what was seen."""
        seen: StreamRecord | None = None

        async def reached() -> bool:
            nonlocal seen
            seen = await self.record_for(path)
            return seen is not None and seen.state in states

        try:
            await wait_until(
                reached, f"{path.name} in {sorted(s.value for s in states)}", timeout_s
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last record: {seen}") from None
        assert seen is not None
        return seen


@asynccontextmanager
async def running_daemon(
    *,
    watch: Path | list[Path],
    bucket: str,
    endpoint_url: str,
    redis_url: str,
    key_prefix: str,
    hold_until: dict[int, int] | None = None,
    store_options: dict[str, Any] | None = None,
    faults: dict[str, int] | None = None,
    wrap_store: Callable[[S3MultipartStore], Any] | None = None,
    bandwidth: BandwidthLimit | None = None,
    watch_tables: Sequence[dict[str, Any]] = (),
    backoff: Callable[[], Backoff] = Backoff,
    **overrides: Any,
) -> AsyncIterator[Daemon]:
    """The daemon in this process. ``store_options`` go to S3MultipartStore.connect (timeouts);
    ``faults`` make the spy fail calls before the real ones run; ``wrap_store`` wraps the real
    store before the spy does (to play a server that answers otherwise);
    ``bandwidth`` replaces the limit --bwlimit would make (an instrumented one, on a fake clock);
    ``watch_tables``: a config file's [[watch]] tables (per-folder settings) of the folders;
    ``backoff`` makes each stream's back-off after a retryable error (shorter ones for tests whose
    outage would otherwise leave the stream asleep long after the server is back)."""
    settings = IsolatedSettings(
        watch=watch if isinstance(watch, list) else [watch],
        bucket=bucket,
        endpoint_url=endpoint_url,
        redis_url=redis_url,
        redis_prefix=key_prefix,
        **{"part_size": "5MiB", "close_grace": 0.5, "idle_timeout": 30, **overrides},
    )
    settings._watch_tables = tuple(watch_tables)
    async with (
        S3MultipartStore.connect(
            bucket, endpoint_url=endpoint_url, region="us-east-1", **(store_options or {})
        ) as real_store,
        RedisCheckpointStore.for_settings(settings) as real_checkpoints,
    ):
        inner = wrap_store(real_store) if wrap_store is not None else real_store
        store = SpyStore(inner, hold_until=dict(hold_until or {}), faults=dict(faults or {}))
        checkpoints = CheckpointSpy(
            real_checkpoints,
            s3_acknowledged=lambda: frozenset((c.key, c.number, c.etag) for c in store.parts),
        )
        supervisor = Supervisor(
            settings,
            store,  # type: ignore[arg-type]
            checkpoints,  # type: ignore[arg-type]
            bandwidth=bandwidth,
            backoff=backoff,
        )
        daemon = Daemon(settings, store, checkpoints, supervisor)
        real_plan_resume = tailup.stream.resuming.plan_resume

        async def noted_plan_resume(
            store: Any, record: StreamRecord, parts: dict[int, PartRecord], plan: PartPlan
        ) -> ResumeDecision:
            decision = await real_plan_resume(store, record, parts, plan)
            daemon.resumes.append((record.stream_id, decision))
            return decision

        tailup.stream.resuming.plan_resume = noted_plan_resume  # type: ignore[assignment]
        stop = asyncio.Event()
        task = asyncio.create_task(supervisor.run(stop))
        try:
            async with asyncio.timeout(10):
                await supervisor.ready.wait()
            yield daemon
        finally:
            stop.set()
            try:
                await asyncio.wait_for(task, timeout=30)
            finally:
                tailup.stream.resuming.plan_resume = real_plan_resume


async def wait_until(
    predicate: Callable[[], bool | Awaitable[bool]], what: str, timeout_s: float = 30.0
) -> None:
    """Wait for a condition on state outside this process's control (Redis, S3, the file system):
    polled, since no event can be awaited across those boundaries, and bounded by a timeout."""
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                result = predicate()
                if not isinstance(result, bool):
                    result = await result
                if result:
                    return
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout_s}s waiting for: {what}") from None


async def write_slowly(
    path: Path,
    total_bytes: int,
    *,
    bytes_per_s: float,
    chunk_bytes: int = 256 * 1024,
    seed: int = 1,
    on_chunk: Callable[[int], Awaitable[None]] | None = None,
) -> bytes:
    """A live writer: appends pseudo-random bytes at a steady rate, then closes the file.
    The pacing is the writer's own; the test never sleeps to wait for tailup."""
    data = hashlib.shake_256(str(seed).encode()).digest(total_bytes)
    delay = chunk_bytes / bytes_per_s
    with path.open("wb") as out:
        for offset in range(0, total_bytes, chunk_bytes):
            out.write(data[offset : offset + chunk_bytes])
            out.flush()
            if on_chunk is not None:
                await on_chunk(offset + chunk_bytes)
            await asyncio.sleep(delay)
    return data


def object_bytes(s3_client: Any, bucket: str, key: str) -> bytes:
    return bytes(s3_client.get_object(Bucket=bucket, Key=key)["Body"].read())


def content(size: int, seed: str) -> bytes:
    """Deterministic, incompressible test bytes (os.urandom can probe as media by chance)."""
    return hashlib.shake_256(seed.encode()).digest(size)
