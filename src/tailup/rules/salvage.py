"""`tailup salvage`, decided: which parts of an open multipart upload make an object, where it
goes, and whether it plays. Pure: the shell (tailup.salvage) lists the parts, HEADs the key,
reads the first bytes, and carries the decisions out.

The parts of an open upload cannot be read until CompleteMultipartUpload; when a recorder is
destroyed with its daemon (and its file), S3 holds parts but no object. Salvage completes the
upload with what S3 holds that is a *byte prefix* of the recording:

- parts 1, 2, 3, ... in a row: a missing part ends the object before it (the parts after it are
  left out: the object would have a hole);
- each one the size the stream's part plan gives it (tailup.plan: part n covers a fixed byte
  range). A shorter part is the recording's end (or a tail sent while finalizing) and ends the
  object; S3 would refuse anything after a part under 5 MiB anyway (EntityTooSmall). A longer
  one cannot be where the plan puts it: the object ends before it;
- never over another recording's object (S3 completes an upload only at its own key: such an
  upload is left open);
- where S3 holds a part number twice (SeaweedFS keeps every upload of a number), the one Redis's
  checkpoint names, else the last listed.

A recovery point finer than a part (issue 18.2, ``--rpo``) fits here: bytes staged beside the
upload past part n become part n+1 (UploadPartCopy of the staged object) before the Complete,
the short last part ``choose_parts`` already allows.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from tailup.plan import MiB, PartPlan

# S3's minimum for every part but the last (EntityTooSmall at Complete otherwise).
MIN_PART_BYTES = 5 * MiB


@dataclass(frozen=True, slots=True)
class Listed:
    """A part S3 holds (ListParts)."""

    number: int
    etag: str
    size: int


@dataclass(frozen=True, slots=True)
class PartChoice:
    """The parts an object is made of, and what is left out and why ("" when nothing is)."""

    parts: tuple[Listed, ...]
    left_out: tuple[int, ...]
    why: str

    @property
    def size_bytes(self) -> int:
        return sum(p.size for p in self.parts)


def choose_parts(
    listed: Sequence[Listed],
    plan: PartPlan | None,
    preferred_etags: Mapping[int, str] | None = None,
) -> PartChoice:
    """The parts 1..n that make a byte prefix of the recording (see the module doc). ``plan``:
    the stream's part plan, None when unknown (then only S3's 5 MiB rule is checked);
    ``preferred_etags``: part number -> the ETag the checkpoint recorded."""
    by_number = _one_per_number(listed, preferred_etags or {})
    chosen: list[Listed] = []
    why = ""
    number = 1
    while number in by_number:
        part = by_number[number]
        nominal = plan.part_size(number) if plan is not None else None
        if nominal is not None and part.size > nominal:
            why = f"part {number} is {part.size} bytes, more than the {nominal} its plan gives it"
            break
        chosen.append(part)
        short = part.size < nominal if nominal is not None else part.size < MIN_PART_BYTES
        if short:
            if any(n > number for n in by_number):
                why = (
                    f"part {number} is {part.size} bytes, short of its "
                    f"{nominal if nominal is not None else MIN_PART_BYTES} (the recording's end "
                    "as it was finalized): it ends the object"
                )
            break
        number += 1
    taken = {p.number for p in chosen}
    left_out = tuple(sorted(n for n in by_number if n not in taken))
    if not why and left_out:
        missing = len(chosen) + 1
        why = f"part {missing} is missing in S3: the object ends before it"
    if not chosen and not by_number:
        why = "S3 holds no part of it"
    return PartChoice(tuple(chosen), left_out, why)


def _one_per_number(listed: Sequence[Listed], preferred: Mapping[int, str]) -> dict[int, Listed]:
    found: dict[int, Listed] = {}
    for part in listed:
        kept = found.get(part.number)
        if kept is not None and _norm(kept.etag) == _norm(preferred.get(part.number, "")):
            continue  # the checkpoint's own version wins over a later one
        found[part.number] = part
    return found


def _norm(etag: str) -> str:
    return etag.strip('"')


# -- whether a prefix plays ----------------------------------------------------------------------


class Plays(enum.Enum):
    YES = "yes"
    NO = "no"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Playability:
    plays: Plays
    container: str
    why: str


_STREAMED = {
    ".ts": ("mpegts", "MPEG-TS is self-contained packets: a prefix plays up to its last one"),
    ".m2ts": ("mpegts", "MPEG-TS is self-contained packets: a prefix plays up to its last one"),
    ".mts": ("mpegts", "MPEG-TS is self-contained packets: a prefix plays up to its last one"),
    ".mkv": ("matroska", "Matroska clusters play without the cues and sizes written at close"),
    ".webm": ("matroska", "Matroska clusters play without the cues and sizes written at close"),
    ".flv": ("flv", "FLV is a stream of tags: a prefix plays up to its last one"),
}
_ISO_BMFF = frozenset({".mp4", ".m4v", ".mov", ".3gp"})


def judge_playability(name: str, head: bytes | None) -> Playability:
    """Whether a prefix of a recording named ``name`` plays, from its container and, for
    MP4/MOV, its first bytes (``head``: None when not read, e.g. before the object exists)."""
    suffix = PurePosixPath(name).suffix.lower()
    if suffix in _STREAMED:
        container, why = _STREAMED[suffix]
        return Playability(Plays.YES, container, why)
    if suffix not in _ISO_BMFF:
        return Playability(Plays.UNKNOWN, suffix.lstrip(".") or "unknown", "not a known container")
    if head is None:
        return Playability(
            Plays.UNKNOWN, "mp4", "an MP4/MOV prefix plays only when fragmented: not looked at yet"
        )
    return _judge_mp4(head)


def _judge_mp4(head: bytes) -> Playability:
    boxes = top_level_boxes(head)
    kinds = [kind for kind, _, _ in boxes]
    if "moof" in kinds or any(
        kind == "moov" and "mvex" in [k for k, _, _ in top_level_boxes(body)]
        for kind, body, _ in boxes
    ):
        return Playability(
            Plays.YES, "mp4", "fragmented MP4: each fragment carries its own index (moof)"
        )
    if "moov" in kinds:
        return Playability(
            Plays.UNKNOWN, "mp4", "its moov indexes more samples than the prefix holds"
        )
    if "mdat" in kinds:
        return Playability(
            Plays.NO,
            "mp4",
            "its moov (the index a player needs) is written at the end of the recording and "
            "never was: record fragmented MP4 (-movflags +frag_keyframe+empty_moov), TS or MKV",
        )
    return Playability(Plays.UNKNOWN, "mp4", "no MP4 box structure in its first bytes")


def top_level_boxes(data: bytes) -> list[tuple[str, bytes, int]]:
    """The ISO BMFF boxes that start in ``data``: (type, the body bytes present, declared
    size). Stops at the first box that does not parse."""
    boxes: list[tuple[str, bytes, int]] = []
    offset = 0
    while offset + 8 <= len(data):
        size, raw = struct.unpack_from(">I4s", data, offset)
        header = 8
        if size == 1 and offset + 16 <= len(data):
            (size,) = struct.unpack_from(">Q", data, offset + 8)
            header = 16
        elif size == 0:
            size = len(data) - offset
        try:
            kind = raw.decode("ascii")
        except UnicodeDecodeError:
            break
        if size < header or not kind.isprintable():
            break
        boxes.append((kind, data[offset + header : offset + size], size))
        offset += size
    return boxes


# -- where the object goes ----------------------------------------------------------------------


class Place(enum.Enum):
    FREE = "free"  # nothing at the key: completed there, If-None-Match
    REPLACE = "replace"  # the recording's own earlier, shorter object: completed over it
    KEEP = "keep"  # the recording's own earlier object is not shorter: not salvaged
    TAKEN = "taken"  # another recording's object: not salvaged (the upload is left open)


@dataclass(frozen=True, slots=True)
class Target:
    place: Place
    conditional: bool  # If-None-Match: * (never over an object that appeared meanwhile)
    why: str

    @property
    def completes(self) -> bool:
        return self.place in (Place.FREE, Place.REPLACE)


@dataclass(frozen=True, slots=True)
class AtKey:
    """The object already at the recording's key (HEAD)."""

    size: int
    etag: str


def choose_target(at_key: AtKey | None, own_etags: Sequence[str], size_bytes: int) -> Target:
    """Whether a salvaged object of ``size_bytes`` may go to the recording's key. An upload
    completes only at the key it was created for (S3 has no other way to read its parts), so
    another recording's object there means no salvage: it is never written over, and the upload
    is left open (its key claimed for the recording, this takes a writer outside tailup).
    ``own_etags``: ETags of objects this recording made before (its earlier generation)."""
    if at_key is None:
        return Target(Place.FREE, True, "its key is free")
    if _norm(at_key.etag) in {_norm(e) for e in own_etags if e}:
        if at_key.size >= size_bytes:
            return Target(
                Place.KEEP,
                False,
                f"its key holds its earlier generation of {at_key.size} bytes, not shorter than "
                f"the {size_bytes} salvageable: kept, the upload left open",
            )
        return Target(Place.REPLACE, False, "replaces its earlier, shorter generation")
    return Target(
        Place.TAKEN,
        True,
        "its key holds another recording's object, never written over; S3 completes an upload "
        "only at its own key, so the upload is left open (move that object away and salvage "
        "again, or abort it with `tailup gc`)",
    )


def upload_age_s(initiated_s: float, parts_modified_s: Sequence[float], now_s: float) -> float:
    """How long an upload has been quiet: since its last part, else since it was created."""
    return now_s - max([initiated_s, *parts_modified_s])


def nodes_due(
    alive: Mapping[str, bool], gone_since_s: Mapping[str, float], now_s: float, after_s: float
) -> tuple[list[str], dict[str, float]]:
    """--salvage-after: the nodes (among ``alive``: node -> whether a daemon of it runs) whose
    uploads a daemon salvages now, gone at least ``after_s``; and when each node still gone was
    first seen gone (the next call's ``gone_since_s``). A node seen alive starts over."""
    since = {node: gone_since_s.get(node, now_s) for node, up in alive.items() if not up}
    return sorted(n for n, t in since.items() if now_s - t >= after_s), since
