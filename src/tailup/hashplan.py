"""When the whole-file SHA-256 of metadata.json is computed (--sha256). Pure: no I/O.

The digest (tailup.digest) hashes parts in order while they are read for upload, so at a close
it usually lacks only the tail. A part it hashed that changed since (muxers patch an MP4, MOV or
MKV header at close: part 1) makes everything it hashed stale: the whole file would have to be
hashed again, ~0.6 s per GiB on one core, between the close and the verified object. It then
follows instead: the object is completed, checked and published with its whole-object CRC
(tailup.checksums), and the SHA-256 is added to the record and to metadata.json once the file
has been hashed again. The same when the digest covers too little of the file (a stream resumed
after a restart starts with none of it).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from tailup.plan import MiB

# What finalize hashes itself, at most: ~0.15 s of SHA-256 on one core.
INLINE_MAX_BYTES = 256 * MiB


class Sha256Setting(enum.Enum):
    AUTO = "auto"  # computed; at finalize when cheap, else just after the object is published
    OFF = "off"  # never: metadata.json names the whole-object CRC only


class Sha256When(enum.Enum):
    INLINE = "inline"  # finalize completes the digest: the SHA-256 is in the first metadata.json
    AFTER = "after"  # hashed again after the object is published; metadata.json rewritten
    OFF = "off"


@dataclass(frozen=True, slots=True)
class PartView:
    """One part of the final layout at finalize: its size, whether its bytes are those sent
    (re-checked against the file), and whether the digest hashed exactly those bytes."""

    size: int
    unchanged: bool
    hashed: bool


@dataclass(frozen=True, slots=True)
class Sha256Plan:
    when: Sha256When
    # INLINE: the first part of the layout the digest is fed (every one after it too, in order).
    feed_from: int = 0


def sha256_plan(setting: Sha256Setting, hashed_parts: int, parts: Sequence[PartView]) -> Sha256Plan:
    """``hashed_parts``: how many leading parts the digest covers. Inline when finishing the
    digest costs at most INLINE_MAX_BYTES of hashing: the parts after those it covers, or, when
    one it covers changed (or the file shrank below them), the whole file from the start."""
    if setting is Sha256Setting.OFF:
        return Sha256Plan(Sha256When.OFF)
    covered = min(hashed_parts, len(parts))
    stale = next((i for i in range(covered) if not (parts[i].unchanged and parts[i].hashed)), None)
    if stale is None and hashed_parts <= len(parts):
        first, cost = covered + 1, sum(p.size for p in parts[covered:])
    else:
        first = (stale if stale is not None else covered) + 1
        cost = sum(p.size for p in parts)  # the digest starts again from part 1
    if cost > INLINE_MAX_BYTES:
        return Sha256Plan(Sha256When.AFTER)
    return Sha256Plan(Sha256When.INLINE, first)
