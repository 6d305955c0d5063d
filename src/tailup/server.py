"""The daemon's operations endpoint: /metrics (Prometheus), /healthz, /streams.

Started by `tailup run` when ``--metrics-port`` is not 0, bound to ``--metrics-host`` (127.0.0.1 by
default: metrics and stream paths are not for the whole network unless the operator says so).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from tailup import __version__
from tailup.bandwidth import BandwidthLimit, describe_limit
from tailup.checkpoint import CheckpointStore
from tailup.errors import ConfigError
from tailup.health import HealthMonitor
from tailup.metrics import REGISTRY, DaemonCollector, StreamOwner, declare_labels
from tailup.s3 import MultipartStore
from tailup.selection import DEFAULT_LIMIT, STATE_FORM, Selection, parse_limit, parse_states
from tailup.status import SizeProbe, collect_view
from tailup.watcher import unwatched_roots

log = structlog.get_logger(__name__)

# /streams does bounded work per request: at most this many ended rows per scope, and at most
# STREAMS_SCAN_LIMIT ended records looked at for a ?state= filter (the CLI looks further).
STREAMS_MAX_LIMIT: Final = 1000
STREAMS_SCAN_LIMIT: Final = 20_000
# A stat of a row's file that takes longer (a hung mount) leaves its size unknown (null).
STREAMS_STAT_TIMEOUT_S: Final = 2.0


@dataclass(frozen=True)
class OpsContext:
    owner: StreamOwner
    health: HealthMonitor
    checkpoints: CheckpointStore
    # The scopes /streams lists: the node's own, then its shared folders'. Empty: the store's.
    scopes: tuple[str, ...] = ()
    sizes: SizeProbe = field(default_factory=lambda: SizeProbe(STREAMS_STAT_TIMEOUT_S))
    # One /streams answer is computed at a time: scrapes in a burst queue, not multiply.
    streams_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    bandwidth: BandwidthLimit | None = None
    retention: RetentionView | None = None  # --keep-local / --min-free (tailup.retention)


class RetentionView(Protocol):
    def status(self) -> dict[str, Any]: ...


class BadQuery(ValueError):
    pass


def streams_selection(query: dict[str, list[str]]) -> Selection:
    """``?limit=N&state=S[,S...]`` (state repeatable) as a bounded Selection."""
    try:
        states = parse_states(query.get("state", []))
    except ValueError as exc:
        raise BadQuery(f"state: {exc}") from None
    given = query.get("limit", [])
    try:
        limit = parse_limit(given[-1]) if given else DEFAULT_LIMIT
    except ValueError as exc:
        raise BadQuery(f"limit: {exc}") from None
    if limit > STREAMS_MAX_LIMIT:
        raise BadQuery(
            f"limit: {limit} is above {STREAMS_MAX_LIMIT} (`tailup status --all` reads more)"
        )
    return Selection(limit=limit, states=states, scan_limit=STREAMS_SCAN_LIMIT)


def build_app(ctx: OpsContext) -> web.Application:
    async def metrics(_request: web.Request) -> web.Response:
        # generate_latest walks the registry (our collector included) synchronously; it is fast.
        body = generate_latest(REGISTRY)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_request: web.Request) -> web.Response:
        report = ctx.health.report()
        body = {
            **report.body,
            "version": __version__,
            "streams": ctx.owner.stream_states(),
            "bwlimit": describe_limit(ctx.bandwidth),
            **({"retention": ctx.retention.status()} if ctx.retention is not None else {}),
        }
        return web.json_response(body, status=200 if report.healthy else 503)

    async def streams(request: web.Request) -> web.Response:
        query: dict[str, list[str]] = {}
        for name, value in request.query.items():
            query.setdefault(name, []).append(value)
        try:
            selection = streams_selection(query)
        except BadQuery as exc:
            accepted = {"limit": f"1..{STREAMS_MAX_LIMIT}", "state": STATE_FORM}
            return web.json_response({"error": str(exc), "accepted": accepted}, status=400)
        async with ctx.streams_lock:
            view = await collect_view(
                ctx.checkpoints, ctx.scopes or (ctx.checkpoints.scope,), selection, ctx.sizes
            )
        tallies = view.tallies
        headers = {
            "X-Tailup-Live": str(sum(t.live for t in tallies)),
            "X-Tailup-Ended": str(sum(t.ended for t in tallies)),
            "X-Tailup-Shown": str(sum(t.shown for t in tallies)),
        }
        return web.json_response(view.rows, headers=headers)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/streams", streams)
    return app


def health_monitor(
    store: MultipartStore, checkpoints: CheckpointStore, *, interval_s: float
) -> HealthMonitor:
    return HealthMonitor(
        {"redis": checkpoints.ping, "s3": store.check_bucket},
        interval_s=interval_s,
        unwatched=unwatched_roots,
    )


def declare_known_labels() -> None:
    from tailup.errors import TailupError
    from tailup.stream import Outcome

    kinds: list[str] = []
    pending: list[type[TailupError]] = [TailupError]
    while pending:
        cls = pending.pop()
        kinds.append(cls.__name__)
        pending.extend(cls.__subclasses__())
    kinds = sorted(k for k in set(kinds) if not k.startswith("_"))
    declare_labels(outcomes=[*(o.value for o in Outcome), "crashed"], error_kinds=kinds)


@asynccontextmanager
async def ops_server(
    owner: StreamOwner,
    store: MultipartStore,
    checkpoints: CheckpointStore,
    *,
    host: str,
    port: int,
    health_interval_s: float,
    scopes: Sequence[str] = (),
    bandwidth: BandwidthLimit | None = None,
    retention: RetentionView | None = None,
) -> AsyncIterator[OpsContext | None]:
    """Serve while the block runs; yields None (and serves nothing) when ``port`` is 0."""
    if port == 0:
        yield None
        return
    declare_known_labels()
    health = health_monitor(store, checkpoints, interval_s=health_interval_s)
    ctx = OpsContext(
        owner, health, checkpoints, tuple(scopes), bandwidth=bandwidth, retention=retention
    )
    collector = DaemonCollector(owner, health, bandwidth)
    REGISTRY.register(collector)
    # Until the first probe answers, /healthz says so with 503: "not answered yet" is the truth.
    prober = asyncio.create_task(health.run(), name="health-probe")
    runner = web.AppRunner(build_app(ctx), access_log=None)  # scrapes are not events
    await runner.setup()
    try:
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as exc:
            raise ConfigError(
                f"--metrics-port (TAILUP_METRICS_PORT): cannot listen on {host}:{port}: "
                f"{exc.strerror or exc}"
            ) from exc
        log.info("operations endpoint listening", url=f"http://{host}:{port}", port=port)
        yield ctx
    finally:
        prober.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await prober
        await runner.cleanup()
        REGISTRY.unregister(collector)
