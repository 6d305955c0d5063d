"""--rpo: a live recording's newest bytes staged in S3 beside its multipart upload, so that a
destroyed recorder's recording can be completed to within SECONDS of its end.

Contract (for the daemon and for ``tailup salvage``):

- Where: an upload's tail segments are the objects under ``tail_prefix(key, upload_id)``, i.e.
  ``<key>.tailup/<upload id>/tail.<start>-<end>``: the recording's bytes [start, end), offsets
  of 15 digits (tailup.rules.tails). No recording's key has that shape (is_staging_key;
  tailup.keyclaim suffixes one that would), nor does a metadata.json.
- What the daemon writes: while the file grows, a segment whenever its oldest byte S3 lacks
  (in parts or segments) would otherwise pass the RPO; each starts where S3's bytes end
  (checkpointed parts from part 1 without a gap, or the last segment), so the segments from the
  end of the parts on run without holes. A segment whose bytes a checkpointed part holds is
  deleted; at completion and at abort every segment of the upload is (delete_tails). Segments
  are never rewritten: a listed one is whole (a PUT is atomic) and its name says its range.
- Salvage: ``tails = await list_tails(store, key, upload_id)``; ``plan = stitch_plan([(n, size)
  for each part of ListParts, one per number], tails)``; for each of ``plan.final_parts``
  (numbered ``len(plan.keep_parts) + 1`` on) ``body = await read_pieces(store, pieces)`` and
  UploadPart it; complete with ``plan.keep_parts`` plus those; the object is ``plan.end_bytes``
  long; then ``await delete_tails(store, key, upload_id)`` (also when salvage finds nothing to
  stitch). Parts in ``plan.dropped_parts`` (past a gap) are left out of the Complete.
- The segments are the file's bytes as they were when staged: right for append-only containers
  (MPEG-TS, fragmented MP4, Matroska while recording); an MP4's moov is never in them.
"""

from __future__ import annotations

from collections.abc import Sequence

from tailup import permissions
from tailup.errors import AccessRefused, TailupError
from tailup.keys import is_staging_key, segment_key, tail_prefix
from tailup.rules.tails import Piece, StitchPlan, TailSegment, parse_segment, stitch_plan
from tailup.s3 import MultipartStore

__all__ = [
    "Piece",
    "StitchPlan",
    "TailSegment",
    "delete_tails",
    "delete_tails_after_abort",
    "is_staging_key",
    "list_tails",
    "read_pieces",
    "segment_key",
    "stitch_plan",
    "tail_prefix",
]


async def list_tails(store: MultipartStore, key: str, upload_id: str) -> list[TailSegment]:
    """The upload's staged segments, in file order (one LIST; objects under the prefix that are
    not segments are left out)."""
    prefix = tail_prefix(key, upload_id)
    found = (parse_segment(prefix, o.key, o.size) for o in await store.list_objects(prefix))
    return sorted(s for s in found if s is not None)


async def read_pieces(store: MultipartStore, pieces: Sequence[Piece]) -> bytearray:
    """One final part's bytes: its pieces read and joined (a segment is small: read whole)."""
    body = bytearray()
    for piece in pieces:
        data = await store.get_object(piece.key)
        if len(data) < piece.offset + piece.length:
            raise ValueError(
                f"the staged segment {piece.key} holds {len(data)} bytes, "
                f"not the {piece.offset + piece.length} its name says"
            )
        body += memoryview(data)[piece.offset : piece.offset + piece.length]
    return body


async def delete_tails(
    store: MultipartStore, key: str, upload_id: str, known: Sequence[TailSegment] = ()
) -> int:
    """Delete every segment of the upload: those ``known`` and those a LIST finds (a previous
    run's). Returns how many were deleted."""
    keys = {s.key for s in known} | {s.key for s in await list_tails(store, key, upload_id)}
    for staged in sorted(keys):
        await store.delete_object(staged)
    return len(keys)


async def delete_tails_after_abort(store: MultipartStore, key: str, upload_id: str) -> str:
    """delete_tails for `tailup abort` and `tailup gc`: "" when done, else what went wrong (the
    abort itself stands; a lifecycle rule on the staging prefix catches what is left)."""
    try:
        await delete_tails(store, key, upload_id)
    except AccessRefused as exc:  # optional permissions: said once in the log, not per abort
        permissions.refused(exc.action, str(exc))
    except TailupError as exc:
        return (
            f"its staged tail segments under {tail_prefix(key, upload_id)} were not deleted: {exc}"
        )
    return ""
