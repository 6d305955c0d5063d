"""Which S3 key a new recording gets: never one that holds another recording.

With the default template (``{stream_id}`` in it) every recording's key is its own by
construction. A template without it (``{relpath}``, ``{name}``) can name one key for two
recordings (a file rewritten from byte 0, a new file under an old name): the second gets the
first free key of ``cam1.ts``, ``cam1-2.ts``, ``cam1-3.ts``, ... (tailup.keys.suffixed_key),
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

MAX_SUFFIX: Final = 1000


async def claim_key(
    checkpoints: CheckpointStore,
    store: MultipartStore,
    key: str,
    stream_id: str,
    *,
    check: bool,
    taken: Collection[str] = (),
) -> str:
    """The first free key from ``key`` on, reserved for ``stream_id``. ``check`` False: the key
    is unique by construction or the user asked for overwrites. ``taken``: keys known to hold
    an object (a conditional write was refused there)."""
    if not check:
        return key
    for number in range(1, MAX_SUFFIX + 1):
        candidate = key if number == 1 else suffixed_key(key, number)
        if candidate in taken:
            continue
        if await checkpoints.reserve_key(candidate, stream_id) is not None:
            continue  # another recording's
        try:
            free = await store.head_object(candidate) is None
        except AccessRefused as exc:
            # No s3:GetObject: taken as free; completion's If-None-Match refuses an object there.
            permissions.refused("s3:GetObject", str(exc))
            free = True
        if free:
            return candidate
        # An object no stream of ours holds (written before tailup kept records, or by another
        # tool): not ours to overwrite.
    raise PermanentError(
        f"no free S3 key for {key!r}: {MAX_SUFFIX} keys with suffixes are taken; use "
        "{stream_id} in --key-template"
    )
