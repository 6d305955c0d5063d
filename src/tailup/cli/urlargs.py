"""`tailup url`'s own arguments (tailup.cli.parser adds the connection settings)."""

from __future__ import annotations

import argparse
from typing import Any

# How long a URL is valid unless --expires says otherwise.
DEFAULT_EXPIRES = "1h"


def add_url(commands: Any, stream_forms: str) -> argparse.ArgumentParser:
    url: argparse.ArgumentParser = commands.add_parser(
        "url",
        help="print a presigned GET URL of a completed recording, to play it from the bucket",
        description="Print a presigned GET URL of a recording in S3 on stdout (with --metadata, "
        "its metadata.json's on a second line), for a player or a download without "
        "credentials; the object, its size and when the URL expires go to stderr. The URL is "
        "signed here with your credentials (no request) after a HEAD checks that the object is "
        "there. Anyone holding the URL can read the object until it expires; tailup never logs "
        "it. The stream must be completed (or salvaged).",
    )
    url.add_argument(
        "target",
        metavar="KEY|STREAM",
        help=f"a stream ({stream_forms}), or an object key (`status -o wide` shows both)",
    )
    url.add_argument(
        "--expires",
        default=DEFAULT_EXPIRES,
        metavar="DURATION",
        help=f"how long the URL is valid, e.g. 15m, 12h, 7d (default {DEFAULT_EXPIRES}; at most "
        "7d, S3's limit for a presigned URL)",
    )
    url.add_argument(
        "--metadata",
        action="store_true",
        help="also print the URL of its metadata.json, on a second line",
    )
    return url
