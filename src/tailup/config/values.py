"""What a setting's value means: the enums of the settings that take a word, and the pure parsers
of the settings that take more than a word (shares, after-upload, node ids). No I/O: every parser
is table-tested (tests/unit/test_config.py, test_fleet_logic.py)."""

from __future__ import annotations

import enum
import re
from pathlib import Path
from typing import Any, Final

from tailup.config.forms import AFTER_UPLOAD_FORM, NODE_ID_FORM

# The one list of the globs uploaded by default (--include; tailup.watcher's candidates).
DEFAULT_INCLUDE: Final = ("*.mp4", "*.mov", "*.mkv", "*.ts", "*.m4v", "*.flv")

_NODE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class LogFormat(enum.Enum):
    AUTO = "auto"
    JSON = "json"
    CONSOLE = "console"


class PayloadSigning(enum.Enum):
    """Whether S3 requests sign the body's SHA-256 (see tailup.s3)."""

    AUTO = "auto"  # over plain http to another host only
    ALWAYS = "always"
    NEVER = "never"


class KeyConflict(enum.Enum):
    SUFFIX = "suffix"  # a taken key gets a free one: cam1.ts, cam1-2.ts, ... (tailup.keyclaim)
    OVERWRITE = "overwrite"  # the last recording written to a key wins


class AfterUploadKind(enum.Enum):
    KEEP = "keep"
    DELETE = "delete"
    MOVE = "move"


def split_list(value: Any, separators: str) -> Any:
    """A list setting given as one string ("a,b"), split on the ``separators`` pattern."""
    # Env and .env values are plain strings: accept "a,b" rather than JSON only.
    if isinstance(value, str):
        return [item.strip() for item in re.split(separators, value) if item.strip()]
    return value


def is_node_id(value: str) -> bool:
    """``value`` can name a node (--node-id; `tailup status --node`)."""
    return _NODE_ID.fullmatch(value) is not None


def parse_shared_watch(text: str) -> tuple[str, Path]:
    """``NAME=DIR`` or ``DIR`` (named by its absolute path) -> (name, folder)."""
    name, eq, folder = text.partition("=")
    if not eq or name.startswith("/"):
        name, folder = "", text
    if not folder:
        raise ValueError(f"{text!r} names no folder")
    path = Path(folder)
    if not path.is_absolute():
        raise ValueError(f"{folder!r} is a relative path; give the folder as an absolute path")
    name = name or str(path).rstrip("/") or "/"
    if name != str(path) and not is_node_id(name):
        raise ValueError(f"the share name {name!r} is not {NODE_ID_FORM.split(' (')[0]}")
    return name, path


def parse_after_upload(text: str) -> tuple[AfterUploadKind, Path | None]:
    kind, _, target = text.partition(":")
    if kind == "move" and target:
        if not Path(target).is_absolute():
            # Relative to what? The daemon's working directory is nobody's choice under systemd.
            raise ValueError(f"{target!r} in {text!r} is a relative path; DIR must be absolute")
        return AfterUploadKind.MOVE, Path(target)
    if kind in ("keep", "delete") and not target:
        return AfterUploadKind(kind), None
    raise ValueError(f"{text!r} is not one of {AFTER_UPLOAD_FORM}")
