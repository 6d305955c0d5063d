"""--rpo: when a live recording's newest bytes go to S3 as a tail segment, and how the segments of
an upload make its last part. Pure: the stream's shell (tailup.stream.tails) and salvage
(tailup.rpo) do the I/O.

Why segments and not one tail object overwritten each time (numbers for an 8 MiB part, --rpo 2,
so a write every ~2 s): one object holding every byte since the last full part re-sends half a
part on average per write, ~4 MiB: 8.4x the recording's own bytes at 2 Mbit/s (a part every
33.6 s) and 2.1x at 8 Mbit/s. Segments send each byte once more (1x at any bitrate) for the same
number of PUTs; what they add is a DELETE per segment once a part holds its bytes (free on AWS)
and a LIST for salvage to find them. The uplink of a site with cameras is the scarce resource
(bench/RESULTS.md has the measured costs).

A segment is ``<key>.tailup/<upload id>/tail.<start>-<end>`` (tailup.keys.segment_key) and holds
the file's bytes [start, end).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tailup.keys import SEGMENT_OFFSET_DIGITS
from tailup.plan import MAX_PART_SIZE_BYTES, MIN_PART_SIZE_BYTES
from tailup.units import parse_duration

_DIGITS = SEGMENT_OFFSET_DIGITS
_SEGMENT_NAME = re.compile(rf"^tail\.(\d{{{_DIGITS}}})-(\d{{{_DIGITS}}})$")

# Fewest seconds --rpo accepts: a look at the file and a PUT's round trip take a good part of
# a second, and below it tails would be most of the requests a camera makes.
MIN_RPO_S = 1.0
# The longest look interval for tails: a byte is seen at most this late.
MAX_TAIL_LOOK_S = 1.0


@dataclass(frozen=True, slots=True, order=True)
class TailSegment:
    """The file's bytes [start, end), staged at ``key``."""

    start: int
    end: int
    key: str

    @property
    def size(self) -> int:
        return self.end - self.start


def parse_segment(prefix: str, key: str, size_bytes: int | None = None) -> TailSegment | None:
    """The segment an object listed under ``prefix`` is; None for anything else, or when its
    size (if known) is not what its name says (a PUT cut short never shows, but a foreign
    object might)."""
    if not key.startswith(prefix):
        return None
    match = _SEGMENT_NAME.match(key[len(prefix) :])
    if match is None:
        return None
    start, end = int(match.group(1)), int(match.group(2))
    if end <= start or (size_bytes is not None and size_bytes != end - start):
        return None
    return TailSegment(start, end, key)


def parse_rpo(value: object) -> float | None:
    """--rpo's seconds (None: off, or "off"); ValueError saying what is wrong."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "off")):
        return None
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError(
            f"{seconds:g} is not a positive number of seconds (use off to turn it off)"
        )
    if seconds < MIN_RPO_S:
        raise ValueError(
            f"{seconds:g} s is below {MIN_RPO_S:g} s (a look and a PUT take part of a second)"
        )
    return seconds


def tail_look_s(rpo_s: float) -> float:
    """How often the tail writer looks at the file: a tenth of the RPO, at most a second."""
    return min(rpo_s / 10, MAX_TAIL_LOOK_S)


@dataclass(frozen=True, slots=True)
class TailView:
    """What the tail writer knows at a look. ``acked_bytes``: the end of the parts S3 holds from
    part 1 on without a gap (checkpointed); ``tail_end_bytes``: the end of the last segment
    written (0: none); ``unsent_since_s``: the last look that saw the file no longer than that
    (every byte S3 lacks was written after it; None: no look did, e.g. the first, so their age
    is unknown); ``write_s``: how long the next write may take (tailup.stream.tails: the last
    one's, with headroom)."""

    size_bytes: int
    acked_bytes: int
    tail_end_bytes: int
    unsent_since_s: float | None
    now_s: float
    rpo_s: float
    write_s: float = 0.0
    max_segment_bytes: int = MAX_PART_SIZE_BYTES

    @property
    def covered_bytes(self) -> int:
        """Bytes S3 holds from 0 on, in parts or segments."""
        return max(self.acked_bytes, self.tail_end_bytes)


def tail_due(view: TailView) -> tuple[int, int] | None:
    """The file range to write as a segment now, or None. Due when the oldest byte S3 lacks
    would pass the RPO before a write started now ends (its age is at most the time since
    ``unsent_since_s``; unknown counts as old). Each segment starts where S3's bytes end and
    holds at most ``max_segment_bytes`` (a writer far ahead of the parts is caught up over
    several writes)."""
    due_in = _due_in_s(view)
    if due_in is None or due_in > 0:
        return None
    start = view.covered_bytes
    return start, min(view.size_bytes, start + view.max_segment_bytes)


def tail_wait_s(view: TailView) -> float:
    """Seconds until the writer's next look: the look interval, or less when a write falls due
    sooner (so that it starts on time rather than at the next look after it)."""
    look_s = tail_look_s(view.rpo_s)
    due_in = _due_in_s(view)
    return look_s if due_in is None else max(0.0, min(look_s, due_in))


def _due_in_s(view: TailView) -> float | None:
    """Seconds until a write is due (0 or less: now); None while S3 holds every byte seen."""
    if view.size_bytes <= view.covered_bytes:
        return None
    if view.unsent_since_s is None:
        return 0.0
    return view.rpo_s - (view.now_s - view.unsent_since_s) - view.write_s


# Looks remembered at most (see record_look).
MAX_LOOKS = 256


def record_look(
    looks: Sequence[tuple[float, int]], *, now_s: float, size_bytes: int, covered_bytes: int
) -> list[tuple[float, int]]:
    """The (time, size) looks to remember after one at ``now_s`` that saw ``size_bytes``: sizes
    rising, each with the last time a look saw it; of those no longer than ``covered_bytes``
    only the last. Past MAX_LOOKS (tails failing for long) every other one goes but the first
    and the last: unsent_since then answers earlier, never later, than it would."""
    kept = [(t, size) for t, size in looks if size < size_bytes]
    kept.append((now_s, size_bytes))
    within = [i for i, (_, size) in enumerate(kept) if size <= covered_bytes]
    if within:
        kept = kept[within[-1] :]
    if len(kept) > MAX_LOOKS:
        kept = [kept[0], *kept[2:-1:2], kept[-1]]
    return kept


def unsent_since(looks: Sequence[tuple[float, int]], offset_bytes: int) -> float | None:
    """The last time a look saw the file no longer than ``offset_bytes`` (None: no look did):
    every byte past the offset was written after it."""
    seen = [t for t, size in looks if size <= offset_bytes]
    return max(seen) if seen else None


def obsolete(segments: Iterable[TailSegment], acked_bytes: int) -> list[TailSegment]:
    """Segments whose every byte a checkpointed part holds: to delete."""
    return [s for s in segments if s.end <= acked_bytes]


def past_end(segments: Iterable[TailSegment], size_bytes: int) -> list[TailSegment]:
    """Segments reaching past the file's end (it shrank): no longer the file's bytes."""
    return [s for s in segments if s.end > size_bytes]


def acked_prefix_bytes(part_sizes: dict[int, int]) -> int:
    """Bytes held by parts 1, 2, ... up to the first missing one (``part_sizes``: number ->
    size)."""
    total, number = 0, 1
    while number in part_sizes:
        total += part_sizes[number]
        number += 1
    return total


# -- salvage: the segments of a dead node's upload stitched into its last part(s) --


@dataclass(frozen=True, slots=True)
class Piece:
    """Bytes [offset, offset + length) of the staged object ``key``."""

    key: str
    offset: int
    length: int


@dataclass(frozen=True, slots=True)
class StitchPlan:
    """``keep_parts``: the part numbers (1..n) to complete with, holding ``parts_bytes``;
    ``final_parts``: the parts n+1, n+2, ... to upload first, each the concatenation of its
    pieces (usually one part; more only past 5 GiB); ``end_bytes``: the object's size;
    ``dropped_parts``: parts S3 holds past a gap (or past a short part), left out."""

    keep_parts: tuple[int, ...]
    parts_bytes: int
    final_parts: tuple[tuple[Piece, ...], ...]
    end_bytes: int
    dropped_parts: tuple[int, ...]

    @property
    def tail_bytes(self) -> int:
        return self.end_bytes - self.parts_bytes


def stitch_plan(
    parts_in_s3: Sequence[tuple[int, int]],
    tails: Sequence[TailSegment],
    *,
    max_part_bytes: int = MAX_PART_SIZE_BYTES,
) -> StitchPlan:
    """What to complete a dead node's upload with. ``parts_in_s3``: (number, size) as ListParts
    says, one per number (the upload of it that salvage completes with); ``tails``: the
    segments listed beside the upload (tailup.rpo.list_tails). Parts 1, 2, ... are kept up to
    the first gap or the first part under 5 MiB (only the last part may be that short); from
    their end on, the segments give the longest run of bytes without a hole."""
    sizes = dict(parts_in_s3)
    keep: list[int] = []
    parts_bytes = 0
    number = 1
    short_end = False
    while number in sizes:
        keep.append(number)
        parts_bytes += sizes[number]
        if sizes[number] < MIN_PART_SIZE_BYTES:
            short_end = True
            break
        number += 1
    dropped = tuple(sorted(n for n in sizes if n not in keep))
    pieces = [] if short_end else _chain(parts_bytes, tails)
    end = parts_bytes + sum(p.length for p in pieces)
    return StitchPlan(tuple(keep), parts_bytes, _split(pieces, max_part_bytes), end, dropped)


def _chain(start: int, tails: Sequence[TailSegment]) -> list[Piece]:
    """From ``start`` on, each step the segment covering the position that reaches furthest."""
    pieces: list[Piece] = []
    position = start
    while True:
        covering = [s for s in tails if s.start <= position < s.end]
        if not covering:
            return pieces
        best = max(covering, key=lambda s: s.end)
        pieces.append(Piece(best.key, position - best.start, best.end - position))
        position = best.end


def _split(pieces: list[Piece], max_part_bytes: int) -> tuple[tuple[Piece, ...], ...]:
    """The pieces cut into parts of at most ``max_part_bytes`` (all but the last that size)."""
    parts: list[tuple[Piece, ...]] = []
    current: list[Piece] = []
    room = max_part_bytes
    for piece in pieces:
        offset, length = piece.offset, piece.length
        while length > 0:
            take = min(length, room)
            current.append(Piece(piece.key, offset, take))
            offset, length, room = offset + take, length - take, room - take
            if room == 0:
                parts.append(tuple(current))
                current, room = [], max_part_bytes
    if current:
        parts.append(tuple(current))
    return tuple(parts)
