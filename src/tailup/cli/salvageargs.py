"""`tailup salvage`'s own arguments (tailup.cli.parser adds the connection settings)."""

from __future__ import annotations

import argparse
from typing import Any

# `salvage --from-s3 --older-than`: without Redis's leases, a recent part means a live daemon.
DEFAULT_SALVAGE_AGE = "10m"


def add_salvage(commands: Any, stream_forms: str) -> argparse.ArgumentParser:
    salvage: argparse.ArgumentParser = commands.add_parser(
        "salvage",
        help="make objects of the open uploads of a node that died with its files",
        description="Complete what S3 holds of each recording (parts 1..n in a row: a byte "
        "prefix) at its key (never over another recording's object), with a metadata.json "
        "saying salvaged, how many bytes, why, and whether it plays cut short (TS, MKV, "
        "fragmented MP4 do; a plain MP4/MOV does not). The record ends SALVAGED; its file "
        "coming back is uploaded whole over it; a second run changes nothing. A node whose "
        "lease is held is refused. `run --salvage-after` does it by itself, off by default: a "
        "node only cut off from Redis would go on sending to an upload completed under it. "
        f"STREAM: {stream_forms}.",
    )
    salvage.add_argument("streams", metavar="STREAM", nargs="*", help="streams to salvage")
    salvage.add_argument(
        "--node",
        metavar="NODE",
        help="every live stream of this node (its --node-id) with an open upload; with "
        "STREAMs, where they are looked for",
    )
    salvage.add_argument(
        "--from-s3",
        action="store_true",
        help="when Redis died with the node: every open upload under --prefix (and each "
        "[[watch]] table's prefix) that tailup created (found by the <key>.upload.json card "
        "beside it), quiet for --older-than",
    )
    salvage.add_argument(
        "--older-than",
        metavar="DURATION",
        help=f"with --from-s3: only uploads whose last part is this old, e.g. 90s, 15m, 2h "
        f"(default {DEFAULT_SALVAGE_AGE}): a daemon still sending to one is left alone",
    )
    salvage.add_argument(
        "--dry-run", action="store_true", help="list what would be salvaged; change nothing"
    )
    return salvage
