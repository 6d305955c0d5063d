"""`tailup run`: the daemon, from its settings to its stop (SIGTERM or SIGINT: drain; a second
one: exit at once)."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from typing import TYPE_CHECKING

from tailup import __version__
from tailup.cli.exits import EXIT_FAILURE, EXIT_OK, print_error
from tailup.config import Settings, check_daemon_settings
from tailup.errors import PermanentError, RetryableError

if TYPE_CHECKING:
    from tailup.checkpoint import RedisCheckpointStore
    from tailup.s3 import S3MultipartStore


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from tailup.body import return_part_memory_promptly

    check_daemon_settings(settings)
    return_part_memory_promptly()
    return asyncio.run(_run_daemon(settings))


async def _run_daemon(settings: Settings) -> int:
    import structlog

    from tailup.checkpoint import RedisCheckpointStore
    from tailup.plan import PartPlan, part_size_cap
    from tailup.s3 import S3MultipartStore, pool_size
    from tailup.server import ops_server
    from tailup.status import status_scopes
    from tailup.supervisor import Supervisor

    log = structlog.get_logger("tailup")
    log.debug("settings", **settings.model_dump(mode="json"))  # redacted like every event
    stop = asyncio.Event()
    _install_signal_handlers(stop)
    async with (
        S3MultipartStore.connect(
            settings.bucket,
            endpoint_url=settings.endpoint_url,
            region=settings.region,
            max_connections=pool_size(settings.max_inflight_bytes, settings.part_size),
            payload_signing=settings.payload_signing,
        ) as store,
        RedisCheckpointStore.for_settings(settings) as cps,
    ):
        if not await _servers_answer(store, cps, settings.redis_url):
            return EXIT_FAILURE
        log.info(
            "tailup started",
            version=__version__,
            bucket=settings.bucket,
            endpoint=settings.endpoint_url or "aws",
            part_size=settings.part_size,
            part_sizing=settings.part_sizing.value,
            checksum=settings.checksum.value,
            # What one recording can reach with these settings (a stream keeps its own).
            capacity=PartPlan(
                settings.part_size, settings.part_sizing, part_size_cap(settings.max_inflight_bytes)
            ).describe_capacity(),
            bwlimit=settings.bwlimit,
        )
        supervisor = Supervisor(settings, store, cps)
        async with ops_server(
            supervisor,
            store,
            cps,
            host=settings.metrics_host,
            port=settings.metrics_port,
            health_interval_s=settings.health_interval,
            scopes=status_scopes(settings),
            bandwidth=supervisor.bandwidth,
            retention=supervisor.retention,
        ):
            await supervisor.run(stop)
    log.info("tailup stopped")
    return EXIT_OK


async def _servers_answer(
    store: S3MultipartStore, cps: RedisCheckpointStore, redis_url: str
) -> bool:
    """One look at S3 and Redis before any stream starts. A refusal concerns every stream
    (credentials, the bucket, Redis auth): it is said once, loudly, and the daemon stops (False).
    A server not reachable yet is a warning: streams wait for it."""
    import structlog

    log = structlog.get_logger("tailup")
    try:
        await store.check_bucket()
    except PermanentError as exc:
        # Concerns every stream (credentials, bucket): say it once, loudly, and stop.
        log.error("S3 refuses this bucket; nothing can be uploaded", reason=str(exc))
        print_error(exc)
        return False
    except RetryableError as exc:
        log.warning("S3 is not reachable yet; streams will wait for it", reason=str(exc))
    try:
        await cps.ping()
    except RetryableError as exc:
        log.warning("Redis is not reachable yet; streams will wait for it", reason=str(exc))
    except PermanentError as exc:
        log.error("Redis refuses this daemon; nothing can be checkpointed", reason=str(exc))
        print_error(exc)
        return False
    else:
        for warning in await _redis_durability(redis_url):
            log.warning(warning)
    return True


async def _redis_durability(url: str) -> list[str]:
    """Whether Redis may evict or lose tailup's keys (tailup.redisconn), on a client of its own:
    one look at start."""
    from tailup.redisconn import open_redis, redis_durability_warnings

    async with open_redis(url, quiet=True) as client:
        return await redis_durability_warnings(client)


def _install_signal_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            # Second signal: exit at once. Checkpoints already written stay; the rest is re-sent.
            os._exit(128 + signum)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
