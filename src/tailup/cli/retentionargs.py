"""`tailup run`'s flags of local retention (issue 20.1; tailup.rules.retention)."""

from __future__ import annotations

from typing import Any

RETENTION_FLAGS: list[tuple[str, dict[str, Any]]] = [
    (
        "--keep-local",
        {
            "metavar": "DURATION",
            "help": "delete a local recording once its upload is verified and it is this old "
            "(30d, 12h; default: off). Only recordings tailup completed, whose object S3 still "
            "holds unchanged and whose writer is known gone. A folder's [[watch]] table in "
            "--config may set its own keep_local.",
        },
    ),
    (
        "--min-free",
        {
            "metavar": "SIZE|PERCENT",
            "help": "delete the oldest verified local recordings while a watched folder's file "
            "system has less free space than this (10GiB, 15%%; default: off). One setting for "
            "every folder (free space is a file system's), never a [[watch]] table's.",
        },
    ),
]
