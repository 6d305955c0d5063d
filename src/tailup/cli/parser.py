"""The command line's grammar: `tailup run | status | verify | abort | retry | gc | salvage |
url | demo`, each
subcommand with its flags. Every setting is a flag of the commands that take it; which flags are
settings (passed on to tailup.config) is ``setting_overrides``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, TypeAlias

from tailup import __version__
from tailup.cli.exits import EXIT_USAGE
from tailup.cli.retentionargs import RETENTION_FLAGS
from tailup.cli.salvageargs import add_salvage
from tailup.cli.storageargs import STORAGE_FLAGS
from tailup.cli.urlargs import add_url
from tailup.selection import DEFAULT_LIMIT, DEFAULT_SCAN_LIMIT, STATE_VALUES

_OBJECT_AND_DISK = STORAGE_FLAGS + RETENTION_FLAGS  # issue 20.2 and 20.1, modules of their own

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
        "--salvage-after",
        {
            "metavar": "DURATION",
            "help": "salvage the open uploads of another node gone this long (`tailup salvage "
            "--node`), e.g. 10m; 0 = never (default): a node only cut off from Redis, not dead, "
            "would go on sending to uploads completed under it. Set it above any partition.",
        },
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
    (
        "--hls",
        {
            "action": "store_const",
            "const": True,
            "help": "live HLS: playlists and segments keyed by their path below the folder, a "
            "playlist published in place once every segment it names is in S3. Every watched "
            "folder; for some only, hls = true in their [[watch]] tables in --config.",
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

# --rpo (issue 18): a block of its own.
_RPO_FLAGS: list[tuple[str, dict[str, Any]]] = [
    (
        "--rpo",
        {
            "metavar": "SECONDS",
            "help": "recovery point: S3 holds each live recording up to SECONDS ago, at any "
            "bitrate, not only up to its last full part (--part-size: 33 s of a 2 Mbit/s "
            "camera at 8MiB), so `tailup salvage` can complete it if the recorder is destroyed. "
            "The cost: a small PUT (and later a free DELETE) about every SECONDS per recording "
            "(at 2: ~1,800 an hour, ~$6.60 a camera-month on AWS S3 Standard; bench/RESULTS.md) "
            "and each byte sent twice on the uplink. At least 1; default off.",
        },
    ),
]


# What names a stream on the command line (tailup.streamref).
_STREAM_FORMS = (
    "its id, a unique prefix of it (at least 4 characters; the 12 `status` shows are enough) "
    "or its file's path, among this node's live and ended records and each --shared-watch "
    "folder's"
)


# tailup.statusview.Output's values (that module imports rich: not loaded for every command).
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
    adders = (_add_run, _add_status, _add_verify, _add_abort, _add_retry, _add_gc)
    for add_command in (*adders, _add_salvage, _add_url, _add_demo):
        add_command(commands)
    return parser


# What add_subparsers returns (generic to typeshed only, hence the string).
_Commands: TypeAlias = "argparse._SubParsersAction[_Parser]"


def _add_run(commands: _Commands) -> None:
    run = commands.add_parser(
        "run",
        help="watch folders and upload (the daemon)",
        description="Watch folders and stream every recording to S3.",
    )
    _add_flags(run, _CONNECTION_FLAGS + _RUN_FLAGS + _RPO_FLAGS + _OBJECT_AND_DISK)


def _add_status(commands: _Commands) -> None:
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
    _add_status_output(status)
    _add_status_selection(status)
    # dest differs from run's --watch DIR, which is a setting: this one is not.
    status.add_argument(
        "--watch", dest="refresh", action="store_true", help="refresh until interrupted"
    )
    status.add_argument(
        "--interval", type=float, default=2.0, metavar="SECONDS", help="refresh period (default 2)"
    )


def _add_status_output(status: argparse.ArgumentParser) -> None:
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


def _add_status_selection(status: argparse.ArgumentParser) -> None:
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


def _add_verify(commands: _Commands) -> None:
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


def _add_abort(commands: _Commands) -> None:
    abort = commands.add_parser(
        "abort",
        help="abort a stream's upload and record why",
        description=f"STREAM_ID: {_STREAM_FORMS}.",
    )
    _add_flags(abort, _CONNECTION_FLAGS + _STATUS_SETTINGS)
    abort.add_argument("stream_id", metavar="STREAM_ID")
    abort.add_argument("--reason", default="aborted by the operator", help="recorded reason")


def _add_retry(commands: _Commands) -> None:
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


def _add_gc(commands: _Commands) -> None:
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


def _add_salvage(commands: _Commands) -> None:
    salvage = add_salvage(commands, _STREAM_FORMS)
    _add_flags(salvage, _CONNECTION_FLAGS + _STATUS_SETTINGS)


# `tailup url` (issue 20.5): a block of its own.
def _add_url(commands: _Commands) -> None:
    url = add_url(commands, _STREAM_FORMS)
    _add_flags(url, _CONNECTION_FLAGS + _STATUS_SETTINGS)


def _add_demo(commands: _Commands) -> None:
    demo = commands.add_parser(
        "demo",
        help="run everything locally: S3 server, Redis, a live recording, verified result",
        description="Run everything locally. --config, TAILUP_* and .env are checked like for "
        "every command, but the demo's daemon runs on the demo's own settings.",
    )
    _add_flags(demo, [])
    demo.add_argument("--seconds", type=float, default=8.0, help="length of the demo recording")
    demo.add_argument("--workdir", type=Path, default=Path(".demo"), help="where to keep files")


def setting_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given as flags (for tailup.config.load_settings): the flags left unset are
    absent, so that they hide no other source."""
    flags = _CONNECTION_FLAGS + _STATUS_SETTINGS + _RUN_FLAGS + _RPO_FLAGS + _OBJECT_AND_DISK
    names = sorted({flag.lstrip("-").replace("-", "_") for flag, _ in flags})
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
