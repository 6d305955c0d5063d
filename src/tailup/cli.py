"""Command line: `tailup run | status | verify | abort | gc | demo`.

Every setting can be given as a flag, as TAILUP_<NAME> in the environment, in a .env file or in a
TOML file (--config or TAILUP_CONFIG); flags win, then env, .env, the file. Bad settings exit with
code 2 and a message naming the setting and the accepted form. Settings are loaded in one place,
``main``, for every subcommand: each one reads the same sources and refuses the same mistakes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tailup import __version__
from tailup.config import (
    ACCEPTED_FORMS,
    NODE_ID_FORM,
    Settings,
    check_daemon_settings,
    check_storage_settings,
    dotenv_file,
    is_node_id,
    load_settings,
    unknown_variables,
)
from tailup.errors import ConfigError, PermanentError, TailupError
from tailup.selection import (
    DEFAULT_LIMIT,
    DEFAULT_SCAN_LIMIT,
    STATE_VALUES,
    Selection,
    parse_limit,
    parse_states,
)

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

_CONNECTION_FLAGS: list[tuple[str, dict[str, Any]]] = [
    ("--bucket", {"help": "S3 bucket (required)."}),
    ("--prefix", {"help": "S3 key prefix put before every key (default: none)."}),
    ("--endpoint-url", {"help": "S3 endpoint for non-AWS servers, e.g. http://127.0.0.1:8333."}),
    ("--region", {"help": "S3 region (default us-east-1)."}),
    (
        "--redis-url",
        {
            "help": "Redis URL for checkpoints (default redis://127.0.0.1:6379/0): redis://, "
            "rediss:// (TLS), unix://, redis+cluster://HOST:PORT[,HOST:PORT...] or "
            "redis+sentinel://HOST:PORT[,HOST:PORT...]/MASTER[/DB]."
        },
    ),
    ("--redis-prefix", {"help": "prefix of every Redis key (default tailup)."}),
    (
        "--node-id",
        {
            "help": "this daemon's node on the Redis prefix: its records, folders and lease "
            "(default: the host name). Two live daemons never share one."
        },
    ),
]

# Settings that `status`, `verify`, `abort` and `retry` take too (the shared folders whose
# streams they list or look among).
_STATUS_SETTINGS: list[tuple[str, dict[str, Any]]] = [
    (
        "--shared-watch",
        {
            "action": "append",
            "metavar": "[NAME=]DIR",
            "help": "also this shared folder's streams (listed, or looked among for a "
            "STREAM_ID), named as `run --shared-watch` names it (repeat for more).",
        },
    ),
]

_RUN_FLAGS: list[tuple[str, dict[str, Any]]] = [
    (
        "--watch",
        {
            "action": "append",
            "metavar": "DIR",
            "help": "folder to watch, recursively; repeat for more.",
        },
    ),
    (
        "--shared-watch",
        {
            "action": "append",
            "metavar": "[NAME=]DIR",
            "help": "a folder several nodes watch (a NAS share): each recording is uploaded once, "
            "by the node holding its lease; NAME= for nodes that mount it at other paths.",
        },
    ),
    (
        "--lease-ttl",
        {"help": "seconds before a dead node's streams are taken over (default 30)."},
    ),
    (
        "--keep-records",
        {
            "help": "how long ended stream records stay in Redis, e.g. 30d (default); 0 = forever. "
            "Older recordings are looked up in S3 instead."
        },
    ),
    (
        "--include",
        {
            "nargs": "+",
            "metavar": "GLOB",
            "help": "file name patterns (default: *.mp4 *.mov *.mkv *.ts *.m4v *.flv).",
        },
    ),
    ("--part-size", {"help": "base part size, 5MiB..5GiB (default 8MiB); parts grow after 500."}),
    (
        "--part-sizing",
        {
            "choices": ["growing", "uniform"],
            "help": "growing = part sizes double every 500 parts, up to S3's 5 TiB object "
            "(default); uniform = every part is --part-size, for servers that need one size "
            "(Cloudflare R2, Backblaze B2 Live Read): a recording then holds at most 10,000 x "
            "--part-size (78.1 GiB at 8MiB, 625.0 GiB at 64MiB) and fails past it.",
        },
    ),
    ("--idle-timeout", {"help": "finalize after this many seconds without growth (default 30)."}),
    (
        "--close-grace",
        {"help": "finalize this long after the last writer closed the file (default 0)."},
    ),
    ("--key-template", {"help": "S3 key of each file (default streams/{stream_id}/{name})."}),
    (
        "--key-conflict",
        {
            "choices": ["suffix", "overwrite"],
            "help": "a template without {stream_id} naming a key that holds another recording: "
            "suffix = use cam1-2.ts, cam1-3.ts, ... (default); overwrite = the last one wins.",
        },
    ),
    (
        "--io-timeout",
        {
            "help": "seconds a stat or read of a watched file may take before its stream counts as "
            "stalled, e.g. a hung NFS mount (default 30)."
        },
    ),
    (
        "--failed-retry",
        {"help": "seconds before a failed stream is tried again, doubling to 30 min (default 60)."},
    ),
    (
        "--after-upload",
        {"help": "keep | delete | move:DIR, after a verified upload (default keep)."},
    ),
    (
        "--poll",
        {
            "action": "store_const",
            "const": True,
            "help": "poll the folders instead of inotify (network filesystems).",
        },
    ),
    ("--poll-interval", {"help": "seconds between polls with --poll (default 1)."}),
    ("--part-concurrency", {"type": int, "help": "parts of one stream in flight (default 4)."}),
    ("--max-inflight-bytes", {"help": "memory for parts in flight, all streams (default 160MiB)."}),
    (
        "--payload-signing",
        {
            "choices": ["auto", "always", "never"],
            "help": "sign each body's SHA-256 (~0.7 CPU s per GiB): auto = only over plain http "
            "to another host (default); never = also trust plain http (a private LAN); always.",
        },
    ),
    (
        "--bwlimit",
        {
            "metavar": "RATE",
            "help": "upload bandwidth, all streams together: bytes per second like 8MiB, bits "
            "like 20Mbit, or a timetable of local times like '08:00,2MiB 19:00,off' "
            "(default off).",
        },
    ),
    (
        "--checksum",
        {
            "choices": ["crc32", "crc32c", "crc64nvme", "none"],
            "help": "checksum header S3 verifies on every part, BadDigest otherwise (default "
            "crc32); none = no checksum header, for servers that refuse them.",
        },
    ),
    (
        "--sha256",
        {
            "choices": ["auto", "off"],
            "help": "whole-file SHA-256 in metadata.json: auto (default: at close when the "
            "bytes were hashed while uploading, else just after the object is published) or "
            "off (metadata.json names the object's full-object CRC only).",
        },
    ),
    ("--shutdown-grace", {"help": "seconds in-flight parts may finish on SIGTERM (default 20)."}),
    ("--metrics-port", {"type": int, "help": "port for /metrics and /healthz; 0 = off."}),
    ("--metrics-host", {"help": "address /metrics and /healthz listen on (default 127.0.0.1)."}),
    ("--health-interval", {"help": "seconds between Redis and S3 health probes (default 5)."}),
    ("--log-format", {"choices": ["auto", "json", "console"], "help": "default auto."}),
    ("--log-level", {"choices": ["debug", "info", "warning", "error"], "help": "default info."}),
]


# What names a stream on the command line (tailup.streamref).
_STREAM_FORMS = (
    "its id, a unique prefix of it (at least 4 characters; the 12 `status` shows are enough) "
    "or its file's path, among this node's live and ended records and each --shared-watch "
    "folder's"
)


# tailup.status.Output's values (that module imports rich: not loaded for every command).
_OUTPUTS = ("table", "wide", "json")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # exit 2 with a short message, no usage dump
        self.exit(EXIT_USAGE, f"tailup: {message}\nTry '{self.prog} --help'.\n")


def _add_flags(parser: argparse.ArgumentParser, flags: list[tuple[str, dict[str, Any]]]) -> None:
    for flag, options in flags:
        parser.add_argument(flag, default=None, **options)
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="FILE",
        help="TOML file of settings (env TAILUP_CONFIG); flags and env override it.",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="tailup",
        description=(
            "Stream video recordings to S3 while they are being written: multipart upload, "
            "checkpoints in Redis, verified byte for byte, with a metadata.json beside each object."
        ),
        epilog="Every flag can also be set as TAILUP_<FLAG> (e.g. TAILUP_PART_SIZE=16MiB), in "
        'a .env file or in a TOML file given with --config (part_size = "16MiB"). AWS '
        "credentials come from the standard AWS chain.",
    )
    parser.add_argument("--version", action="version", version=f"tailup {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    run = commands.add_parser(
        "run",
        help="watch folders and upload (the daemon)",
        description="Watch folders and stream every recording to S3.",
    )
    _add_flags(run, _CONNECTION_FLAGS + _RUN_FLAGS)

    status = commands.add_parser(
        "status",
        help="list the live streams and the newest ended ones, with their progress",
        description="The live streams (all of them), then the newest ended ones (--limit), of "
        "this node (--node-id, or --node) and of each --shared-watch folder, from Redis: it "
        "works from any host that reaches Redis, daemon running or not. A summary line per "
        "scope says how many live and ended records there are and how many are shown. On a "
        "terminal, a table fitted to its width (the short id, state, file name and progress "
        "always; the other columns while they fit); when stdout is not a terminal (or with "
        "-o wide), one tab-separated line per stream with every field in full, the summary on "
        "stderr.",
    )
    _add_flags(status, _CONNECTION_FLAGS + _STATUS_SETTINGS)
    output = status.add_mutually_exclusive_group()
    output.add_argument(
        "-o",
        "--output",
        choices=_OUTPUTS,
        help="table = fitted to the terminal's width, the default on a terminal; wide = one "
        "plain line per stream, every field in full, tab-separated under a header line, the "
        "default when stdout is not a terminal (summary on stderr); json = as --json",
    )
    output.add_argument(
        "--wide", dest="output", action="store_const", const="wide", help="the same as -o wide"
    )
    output.add_argument(
        "--json", dest="output", action="store_const", const="json", help="machine-readable output"
    )
    how_many = status.add_mutually_exclusive_group()
    how_many.add_argument(
        "--limit",
        metavar="N",
        help=f"ended streams to show, newest first, of the node and of each shared folder "
        f"(default {DEFAULT_LIMIT}); live ones are always all shown",
    )
    how_many.add_argument(
        "--all",
        dest="every",
        action="store_true",
        help="every record, read from Redis a page at a time (a progress line on stderr when "
        "it is a terminal); can be millions",
    )
    status.add_argument(
        "--state",
        action="append",
        metavar="STATE",
        help=f"only streams in these states: {', '.join(STATE_VALUES)} (repeat, or a comma "
        "list). Ended states are looked for among the newest ended records page by page, up to "
        f"{DEFAULT_SCAN_LIMIT:,} of them: a rare state over a huge history may take longer "
        "(a few seconds), and the summary line says when it stopped before the oldest",
    )
    status.add_argument(
        "--node",
        metavar="NODE",
        help="show another node's records (its --node-id) instead of this node's",
    )
    # dest differs from run's --watch DIR, which is a setting: this one is not.
    status.add_argument(
        "--watch", dest="refresh", action="store_true", help="refresh until interrupted"
    )
    status.add_argument(
        "--interval", type=float, default=2.0, metavar="SECONDS", help="refresh period (default 2)"
    )

    verify = commands.add_parser(
        "verify",
        help="re-check a completed object against its local file or its metadata.json",
        description="Stream the object from S3 and compare size, SHA-256, multipart ETag and "
        "every part with the local file (when present) and metadata.json. Exit 0 when "
        "everything matches, 1 when anything differs.",
    )
    _add_flags(verify, _CONNECTION_FLAGS + _STATUS_SETTINGS)
    verify.add_argument(
        "target",
        metavar="KEY|STREAM_ID",
        help=f"a stream ({_STREAM_FORMS}), or an object key",
    )

    abort = commands.add_parser(
        "abort",
        help="abort a stream's upload and record why",
        description=f"STREAM_ID: {_STREAM_FORMS}.",
    )
    _add_flags(abort, _CONNECTION_FLAGS + _STATUS_SETTINGS)
    abort.add_argument("stream_id", metavar="STREAM_ID")
    abort.add_argument("--reason", default="aborted by the operator", help="recorded reason")

    retry = commands.add_parser(
        "retry",
        help="try failed streams again now, without sending checkpointed parts again",
        description="A failed stream keeps its multipart upload and parts and is retried on a "
        "long back-off (--failed-retry, doubling to 30 min). This asks for a retry now. "
        f"STREAM_ID: {_STREAM_FORMS}.",
    )
    _add_flags(retry, _CONNECTION_FLAGS + _STATUS_SETTINGS)
    which = retry.add_mutually_exclusive_group(required=True)
    which.add_argument("stream_id", metavar="STREAM_ID", nargs="?")
    which.add_argument("--failed", action="store_true", help="every failed stream")

    gc = commands.add_parser(
        "gc",
        help="abort multipart uploads under --prefix that no live stream owns",
        description="Abort multipart uploads under the key prefix (--prefix; with none, the "
        "whole bucket) that no live stream owns and that were initiated at least --older-than "
        "ago, and print them. Try --dry-run first.",
    )
    _add_flags(gc, _CONNECTION_FLAGS)
    gc.add_argument(
        "--older-than",
        required=True,
        metavar="DURATION",
        help="minimum age, e.g. 1h, 2d, 90m (keeps away from uploads a daemon just created)",
    )
    gc.add_argument("--dry-run", action="store_true", help="list what would be aborted, only")

    demo = commands.add_parser(
        "demo",
        help="run everything locally: S3 server, Redis, a live recording, verified result",
        description="Run everything locally. --config, TAILUP_* and .env are checked like for "
        "every command, but the demo's daemon runs on the demo's own settings.",
    )
    _add_flags(demo, [])
    demo.add_argument("--seconds", type=float, default=8.0, help="length of the demo recording")
    demo.add_argument("--workdir", type=Path, default=Path(".demo"), help="where to keep files")
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    flags = _CONNECTION_FLAGS + _STATUS_SETTINGS + _RUN_FLAGS
    names = sorted({flag.lstrip("-").replace("-", "_") for flag, _ in flags})
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = _HANDLERS[args.command]
    try:
        return handler(args, _settings(args))
    except ConfigError as exc:
        _print_error(exc)
        return EXIT_USAGE
    except TailupError as exc:
        _print_error(exc)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130


def _print_error(exc: Exception) -> None:
    from tailup.observe import redact_text

    print(f"tailup: {redact_text(str(exc))}", file=sys.stderr)


def _config_file(args: argparse.Namespace) -> Path | None:
    given: Path | None = getattr(args, "config", None)
    from_env = os.environ.get("TAILUP_CONFIG")
    return given if given is not None else (Path(from_env) if from_env else None)


def _settings(args: argparse.Namespace) -> Settings:
    """The settings of any subcommand, the one place they are loaded: a warning for each unknown
    TAILUP_ variable, then flags, environment, .env and the config file, then logging (every
    command logs through the redacting formatter, library warnings included; the daemon at
    --log-level, the other commands at warning)."""
    for warning in unknown_variables(os.environ, dotenv_file()):
        print(f"tailup: warning: {warning}", file=sys.stderr)
    settings = load_settings(_overrides(args), _config_file(args))
    from tailup.observe import configure_logging, url_password

    configure_logging(
        settings.log_format.value,
        settings.log_level if args.command == "run" else "warning",
        secrets=[url_password(settings.redis_url)],
    )
    return settings


# -- run --


def _cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from tailup.body import return_part_memory_promptly

    check_daemon_settings(settings)
    return_part_memory_promptly()
    return asyncio.run(_run_daemon(settings))


async def _run_daemon(settings: Settings) -> int:
    import structlog

    from tailup.checkpoint import RedisCheckpointStore
    from tailup.errors import RetryableError
    from tailup.plan import PartPlan
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
        try:
            await store.check_bucket()
        except PermanentError as exc:
            # Concerns every stream (credentials, bucket): say it once, loudly, and stop.
            log.error("S3 refuses this bucket; nothing can be uploaded", reason=str(exc))
            _print_error(exc)
            return EXIT_FAILURE
        except RetryableError as exc:
            log.warning("S3 is not reachable yet; streams will wait for it", reason=str(exc))
        try:
            await cps.ping()
        except RetryableError as exc:
            log.warning("Redis is not reachable yet; streams will wait for it", reason=str(exc))
        except PermanentError as exc:
            log.error("Redis refuses this daemon; nothing can be checkpointed", reason=str(exc))
            _print_error(exc)
            return EXIT_FAILURE
        else:
            for warning in await _redis_durability(settings.redis_url):
                log.warning(warning)
        log.info(
            "tailup started",
            version=__version__,
            bucket=settings.bucket,
            endpoint=settings.endpoint_url or "aws",
            part_size=settings.part_size,
            part_sizing=settings.part_sizing.value,
            checksum=settings.checksum.value,
            # What one recording can reach with these settings (a stream keeps its own).
            capacity=PartPlan(settings.part_size, settings.part_sizing).describe_capacity(),
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
        ):
            await supervisor.run(stop)
    log.info("tailup stopped")
    return EXIT_OK


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


# -- status --


def _status_selection(args: argparse.Namespace) -> Selection:
    try:
        states = parse_states(args.state or [])
    except ValueError as exc:
        raise ConfigError(f"--state: {exc}") from None
    try:
        limit = DEFAULT_LIMIT if args.limit is None else parse_limit(args.limit)
    except ValueError as exc:
        raise ConfigError(f"--limit: {exc}") from None
    if args.node is not None and not is_node_id(args.node):
        raise ConfigError(f"--node: {args.node!r} is not a node id. Accepted: {NODE_ID_FORM}")
    if args.every and args.refresh:
        raise ConfigError("--all reads every record once; it cannot be used with --watch")
    return Selection(limit=limit, states=states, every=args.every)


def _cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from tailup.status import (
        choose_output,
        collect_status,
        print_every_record,
        print_view,
        watch_status,
    )

    selection = _status_selection(args)
    output = choose_output(args.output, terminal=sys.stdout.isatty())
    if args.refresh:
        if args.interval <= 0:
            raise ConfigError(f"--interval: {args.interval:g} is not above 0")
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is the way to leave --watch
            asyncio.run(
                watch_status(
                    settings,
                    selection,
                    node=args.node,
                    interval_s=args.interval,
                    output=output,
                )
            )
        return EXIT_OK
    if selection.every:
        asyncio.run(print_every_record(settings, selection, node=args.node, output=output))
        return EXIT_OK
    print_view(asyncio.run(collect_status(settings, selection, node=args.node)), output)
    return EXIT_OK


# -- verify --


def _cmd_verify(args: argparse.Namespace, settings: Settings) -> int:
    from tailup.verify import print_report, verify_target

    report = asyncio.run(verify_target(settings, args.target))
    print_report(report)
    return EXIT_OK if report.ok else EXIT_FAILURE


# -- abort --


def _cmd_abort(args: argparse.Namespace, settings: Settings) -> int:
    check_storage_settings(settings)
    from tailup.status import abort_stream

    message = asyncio.run(abort_stream(settings, args.stream_id, args.reason))
    print(message)
    return EXIT_OK


# -- retry --


def _cmd_retry(args: argparse.Namespace, settings: Settings) -> int:
    from tailup.status import retry_streams

    for line in asyncio.run(retry_streams(settings, args.stream_id, failed=args.failed)):
        print(line)
    return EXIT_OK


# -- gc --


def _cmd_gc(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import UTC, datetime

    from tailup.hygiene import collect_garbage, describe_age
    from tailup.units import DURATION_FORM, parse_duration

    check_storage_settings(settings)
    try:
        older_than_s = parse_duration(args.older_than)
    except ValueError:
        raise ConfigError(
            f"--older-than: got {args.older_than!r}. Accepted: {DURATION_FORM}"
        ) from None
    garbage = asyncio.run(
        collect_garbage(
            settings, older_than_s=older_than_s, dry_run=args.dry_run, now=datetime.now(UTC)
        )
    )
    verb = "would abort" if args.dry_run else "aborted"
    for item in garbage:
        print(
            f"{verb} s3://{settings.bucket}/{item.key} upload {item.upload_id} "
            f"(initiated {item.initiated.isoformat()}, {describe_age(item.age_s)} ago)"
        )
    where = f"under {settings.prefix!r}" if settings.prefix else "in the bucket"
    done = "to abort (dry run: none aborted)" if args.dry_run else "aborted"
    print(f"{len(garbage)} upload(s) {done} {where}")
    return EXIT_OK


# -- demo --


def _cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    # The settings were checked (a bad config file stops the demo as it stops every command);
    # the demo's daemon does not use them: it has its own servers, folder and settings.
    del settings
    from tailup.demo import run_demo

    return run_demo(seconds=args.seconds, workdir=args.workdir)


_HANDLERS: dict[str, Callable[[argparse.Namespace, Settings], int]] = {
    "run": _cmd_run,
    "status": _cmd_status,
    "verify": _cmd_verify,
    "abort": _cmd_abort,
    "retry": _cmd_retry,
    "gc": _cmd_gc,
    "demo": _cmd_demo,
}


__all__ = ["ACCEPTED_FORMS", "build_parser", "main"]
