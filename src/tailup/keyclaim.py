"""Which S3 key a new recording gets: never one that holds another recording.

With the default template (``{stream_id}`` in it) every recording's key is its own by
construction. A template without it (``{relpath}``, ``{name}``) can name one key for two
recordings (a file rewritten from byte 0, a new file under an old name): the second gets the
first free key of ``cam1.ts``, ``cam1-2.ts``, ``cam1-3.ts``, ... (tailup.keys.suffixed_key; a
counter in Redis names the next number, so the 1,001st recording costs what the 2nd did),
free meaning that no stream in Redis holds it and S3 has no object there. Completion then writes
with ``If-None-Match: *``, so that even a key taken behind tailup's back is never overwritten.
``--key-conflict overwrite`` turns all of it off.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Final

from tailup import permissions
from tailup.checkpoint import CheckpointStore
from tailup.errors import AccessRefused, PermanentError
from tailup.keys import suffixed_key
from tailup.s3 import MultipartStore

# Counter values tried before a key of the stream's own: taken ones are objects no record of
# ours names (written by another tool, or before Redis lost its data and its counters).
COUNTED_TRIES: Final = 3


async def claim_key(
    checkpoints: CheckpointStore,
    store: MultipartStore,
    key: str,
    stream_id: str,
    *,
    check: bool,
    taken: Collection[str] = (),
    exact: bool = False,
) -> str:
    """A free key for ``stream_id``, reserved for it: ``key`` itself, else the next number of
    the key's counter (``cam1-2.ts``, ``cam1-3.ts``, ...: one INCR, however many recordings
    had the name before), else ``cam1-<stream id>.ts``, no other recording's by construction.
    At most COUNTED_TRIES + 2 guesses. ``check`` False: the key is unique by construction or the
    user asked for overwrites. ``taken``: keys known to hold an object (a conditional write was
    refused there). ``exact`` (an HLS folder's): the key itself or a PermanentError, never a
    suffixed one: a playlist names its segments by path, and a renamed one would be missing."""
    if not check:
        return key
    if key not in taken and await _free(checkpoints, store, key, stream_id):
        return key
    if exact:
        raise PermanentError(
            f"S3 key {key!r} holds another recording or object: with --hls (or hls = true in "
            "its folder's [[watch]] table) a file's key is its path below the watched folder (a "
            "playlist names its segments by it), so it is not uploaded under another; remove "
            "that object, or use another prefix"
        )
    for _ in range(COUNTED_TRIES):
        candidate = suffixed_key(key, await checkpoints.next_key_number(key) + 1)
        if candidate not in taken and await _free(checkpoints, store, candidate, stream_id):
            return candidate
    own = suffixed_key(key, stream_id)
    if own not in taken and await _free(checkpoints, store, own, stream_id):
        return own
    raise PermanentError(
        f"no free S3 key for {key!r}: {own!r} and {COUNTED_TRIES} numbered keys are taken; "
        "use {stream_id} in --key-template"
    )


async def _free(
    checkpoints: CheckpointStore, store: MultipartStore, candidate: str, stream_id: str
) -> bool:
    """Reserves ``candidate`` for the stream if no other stream holds it; free if S3 has no
    object there either (an object no stream of ours holds, written before tailup kept records
    or by another tool, is not ours to overwrite)."""
    if await checkpoints.reserve_key(candidate, stream_id) is not None:
        return False  # another recording's
    try:
        free = await store.head_object(candidate) is None
    except AccessRefused as exc:
        # No s3:GetObject: taken as free; completion's If-None-Match refuses an object there.
        permissions.refused("s3:GetObject", str(exc))
        return True
    if not free:
        # Not the stream's key after all: its reservation would otherwise outlive the record,
        # which never names it (N12).
        await checkpoints.release_key(candidate, stream_id)
    return free
