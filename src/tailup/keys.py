"""Names: S3 object keys rendered from the key template, and Redis key names (all in one place)."""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath

PLACEHOLDERS: dict[str, str] = {
    "stream_id": "the stream's id",
    "name": "the file name, e.g. cam1.mp4",
    "stem": "the file name without its extension, e.g. cam1",
    "ext": "the extension without the dot, e.g. mp4",
    "relpath": "the path below the watched folder, e.g. site-a/cam1.mp4",
    "watch": "the name of the watched folder the file is in",
    "date": "the UTC date the stream started, YYYY-MM-DD",
    "time": "the UTC time the stream started, HHMMSS",
    "hostname": "this machine's host name",
}
DEFAULT_KEY_TEMPLATE = "streams/{stream_id}/{name}"


def template_problems(template: str) -> list[str]:
    """What is wrong with a key template; empty when it can be used."""
    problems: list[str] = []
    try:
        fields = [f for _, f, spec, conv in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        return [f"it is not a valid template ({exc}); write a literal brace as {{{{ or }}}}"]
    for field in fields:
        if field not in PLACEHOLDERS:
            shown = "{" + field + "}" if field else "{}"
            problems.append(f"unknown placeholder {shown}")
    if "stream_id" not in fields and "relpath" not in fields and "name" not in fields:
        problems.append("it names no file: use {stream_id}, {name} or {relpath} so keys differ")
    return problems


@dataclass(frozen=True, slots=True)
class KeyContext:
    stream_id: str
    relpath: PurePosixPath  # path below the watched folder
    watch_name: str
    started_at: datetime
    hostname: str


def render_key(template: str, ctx: KeyContext, *, prefix: str = "") -> str:
    """The S3 key for a stream. Any UTF-8 file name is kept as is: S3 keys are UTF-8 strings."""
    key = _prefixed(template.format(**_values(ctx)), prefix)
    if is_helper_key(key):
        # An upload card's or a --rpo tail segment's shape, which the recommended policy lets the
        # node delete (deploy/iam-policy.json): never a recording's key.
        key = suffixed_key(key.replace(STAGING_INFIX, HELPER_FOLDER_RENAMED), ctx.stream_id)
    return key


# Placeholders a key may render otherwise for the same recording later: a rename changes the
# name and path, a start on another day or second the time.
_MOVABLE = frozenset({"name", "stem", "ext", "relpath", "date", "time"})


def stable_prefix(template: str, ctx: KeyContext, *, prefix: str = "") -> str:
    """The start of a stream's key that no rename of its file changes, when it holds the stream
    id: ``streams/<id>/`` of ``streams/{stream_id}/{name}``. Every key the stream may have had
    (under an earlier name, or suffixed) begins with it, and no other stream's does. "" when the
    template has no ``{stream_id}`` before the name, the path or the time."""
    values = _values(ctx)
    rendered, holds_id = "", False
    for literal, field, _, _ in string.Formatter().parse(template):
        rendered += literal
        if field is None:
            continue
        if field in _MOVABLE:
            break
        holds_id = holds_id or field == "stream_id"
        rendered += values[field]
    return _prefixed(rendered, prefix) if holds_id else ""


def _values(ctx: KeyContext) -> dict[str, str]:
    name = ctx.relpath.name
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:
        stem, ext = name, ""
    return {
        "stream_id": ctx.stream_id,
        "name": name,
        "stem": stem,
        "ext": ext,
        "relpath": str(ctx.relpath),
        "watch": ctx.watch_name,
        "date": ctx.started_at.strftime("%Y-%m-%d"),
        "time": ctx.started_at.strftime("%H%M%S"),
        "hostname": ctx.hostname,
    }


def _prefixed(key: str, prefix: str) -> str:
    key = key.lstrip("/")
    prefix = prefix.strip("/")
    return prefix + "/" + key if prefix else key


def suffixed_key(key: str, number: int | str) -> str:
    """The ``number``-th choice for a key already taken: ``a/cam1.ts`` -> ``a/cam1-2.ts`` (or a
    stream id in place of the number)."""
    folder, slash, name = key.rpartition("/")
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:
        stem, dot, ext = name, "", ""
    return f"{folder}{slash}{stem}-{number}{dot}{ext}"


def template_is_unique(template: str) -> bool:
    """True if every stream gets a key of its own from the template alone."""
    try:
        return any(f == "stream_id" for _, f, _, _ in string.Formatter().parse(template))
    except ValueError:
        return False


SIDECAR_SUFFIX = ".metadata.json"


def metadata_key(object_key: str) -> str:
    return object_key + SIDECAR_SUFFIX


# The upload card beside an open multipart upload (tailup.uploadcard): ``<key>.upload.json``.
CARD_SUFFIX = ".upload.json"


# --rpo's tail segments (tailup.rpo): ``<key>.tailup/<upload id>/tail.<start>-<end>``, the
# recording's bytes [start, end) with offsets of SEGMENT_OFFSET_DIGITS digits (a listing is in
# file order). No recording's key has that shape (render_key), nor any metadata.json.
STAGING_INFIX = ".tailup/"
SEGMENT_OFFSET_DIGITS = 15  # 5 TiB (S3's object limit) has 13
_D = SEGMENT_OFFSET_DIGITS
_STAGING_KEY = re.compile(rf"{re.escape(STAGING_INFIX)}.+/tail\.\d{{{_D}}}-\d{{{_D}}}$")


def tail_prefix(object_key: str, upload_id: str) -> str:
    """Where an upload's tail segments are staged: a LIST of this finds them all."""
    return f"{object_key}{STAGING_INFIX}{upload_id}/"


def segment_key(object_key: str, upload_id: str, start: int, end: int) -> str:
    digits = SEGMENT_OFFSET_DIGITS
    return f"{tail_prefix(object_key, upload_id)}tail.{start:0{digits}d}-{end:0{digits}d}"


def is_staging_key(key: str) -> bool:
    """True for any key a tail segment may have, whatever its recording and upload id."""
    return _STAGING_KEY.search(key) is not None


# What a folder ``x.tailup`` in a recording's key becomes (render_key).
HELPER_FOLDER_RENAMED = "-tailup/"


def is_helper_key(key: str) -> bool:
    """True for any key the recommended policy lets the node delete: the shapes of tailup's own
    helper objects, ``*.upload.json`` (a card) and ``*.tailup/*`` (a tail segment), as its
    ``DeleteItsOwnHelperObjectsOnly`` statement names them (an IAM ``*`` spans slashes). No
    recording's key has either shape (render_key), hence nor its metadata.json."""
    return key.endswith(CARD_SUFFIX) or STAGING_INFIX in key


def node_scope(node_id: str) -> str:
    """The scope of a node's own folders: its records and path index, which no other node reads."""
    return f"node:{node_id}"


def share_scope(share_name: str) -> str:
    """The scope of a shared folder: every node that watches it reads and claims its streams."""
    return f"share:{share_name}"


def index_path(scope: str, path: str, watch_root: str) -> str:
    """The name a file has in its scope's path index: its absolute path in a node's own folders;
    in a shared folder, its path below the folder, since nodes may mount it at other paths."""
    if scope.startswith("share:") and watch_root:
        root = watch_root.rstrip("/") + "/"
        if path.startswith(root):
            return path[len(root) :]
    return path


@dataclass(frozen=True, slots=True)
class ScopeKeys:
    """The index keys of one scope (a node's own folders, or one shared folder). Each is read
    and written on its own (no multi-key script spans them), so they may sit in any slot."""

    base: str

    @property
    def live(self) -> str:
        """Set of stream ids not yet completed, aborted or skipped: what a start resumes."""
        return f"{self.base}:live"

    @property
    def ended(self) -> str:
        """Sorted set of ended stream ids scored by end time (Unix s): what `status` lists after
        the live ones, newest first; trimmed to --keep-records, and expires --keep-records
        after its newest entry."""
        return f"{self.base}:ended"

    def path(self, path: str) -> str:
        """String: the id of the latest stream at this source path (expires with its record)."""
        return f"{self.base}:path:{path}"


@dataclass(frozen=True, slots=True)
class RedisKeys:
    """Every Redis key tailup uses. A stream's keys share a hash tag ``{id}`` so that one script
    can touch them all under Redis Cluster; index keys are per scope (tailup.keys.node_scope,
    share_scope), so nodes sharing one Redis never read each other's."""

    prefix: str = "tailup"

    def stream_meta(self, stream_id: str) -> str:
        return f"{self.prefix}:stream:{{{stream_id}}}:meta"

    def stream_parts(self, stream_id: str) -> str:
        return f"{self.prefix}:stream:{{{stream_id}}}:parts"

    def stream_lease(self, stream_id: str) -> str:
        """String ``node|fence`` with a TTL: which node uploads a shared folder's recording."""
        return f"{self.prefix}:stream:{{{stream_id}}}:lease"

    def stream_fence(self, stream_id: str) -> str:
        """Counter: incremented by every new holder of the stream's lease (the fencing token)."""
        return f"{self.prefix}:stream:{{{stream_id}}}:fence"

    def scope(self, scope: str) -> ScopeKeys:
        return ScopeKeys(f"{self.prefix}:{scope}")

    def node_lease(self, node_id: str) -> str:
        """String naming the live daemon that holds a node id (host, boot, pid), with a TTL."""
        return f"{self.prefix}:node:{node_id}:lease"

    def node_info(self, node_id: str) -> str:
        """Hash: what the node's live daemon says of itself for `tailup status` (its host, pid,
        --bwlimit in force); expires with the daemon (twice the lease TTL)."""
        return f"{self.prefix}:node:{node_id}:info"

    def object_claim(self, object_key: str) -> str:
        """String: id of the stream that owns an S3 key (two recordings never share one);
        expires with the stream's record, after which S3 itself answers (tailup.keyclaim). A
        reservation no record names expires after --keep-records."""
        return f"{self.prefix}:object:{object_key}"

    def key_counter(self, object_key: str) -> str:
        """Integer: how many suffixed keys were handed out for a taken S3 key (tailup.keyclaim);
        expires like ended records."""
        return f"{self.prefix}:keyseq:{object_key}"

    # Before nodes (tailup <= 0.1): one index for every daemon. Read once at start to take over
    # this node's entries (tailup.checkpoint.legacy).
    @property
    def legacy_live_streams(self) -> str:
        return f"{self.prefix}:streams:live"

    @property
    def legacy_all_streams(self) -> str:
        return f"{self.prefix}:streams:all"

    @property
    def legacy_paths(self) -> str:
        return f"{self.prefix}:paths"

    @property
    def legacy_object_keys(self) -> str:
        return f"{self.prefix}:objects"
