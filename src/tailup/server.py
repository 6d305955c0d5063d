"""The daemon's operations endpoint: /metrics (Prometheus), /healthz, /streams.

Started by `tailup run` when ``--metrics-port`` is not 0, bound to ``--metrics-host`` (127.0.0.1 by
default: metrics and stream paths are not for the whole network unless the operator says so).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

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
from tailup.status import stream_rows

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class OpsContext:
    owner: StreamOwner
    health: HealthMonitor
    checkpoints: CheckpointStore
    bandwidth: BandwidthLimit | None = None


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
        }
        return web.json_response(body, status=200 if report.healthy else 503)

    async def streams(_request: web.Request) -> web.Response:
        return web.json_response(await stream_rows(ctx.checkpoints))

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/streams", streams)
    return app


def health_monitor(
    store: MultipartStore, checkpoints: CheckpointStore, *, interval_s: float
) -> HealthMonitor:
    return HealthMonitor(
        {"redis": checkpoints.ping, "s3": store.check_bucket}, interval_s=interval_s
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
    bandwidth: BandwidthLimit | None = None,
) -> AsyncIterator[OpsContext | None]:
    """Serve while the block runs; yields None (and serves nothing) when ``port`` is 0."""
    if port == 0:
        yield None
        return
    declare_known_labels()
    health = health_monitor(store, checkpoints, interval_s=health_interval_s)
    ctx = OpsContext(owner, health, checkpoints, bandwidth)
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
