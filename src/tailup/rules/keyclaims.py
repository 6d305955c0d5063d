"""When a recording's claim on its S3 key is given back, and when a recording must claim its key
again: pure.

A claim (tailup.keyclaim) keeps two recordings off one key where the template can name one key
for two (``{relpath}``, ``{name}``). It lives as long as the record. But a recording that ended
with nothing in S3 at its key (aborted when its file went, or skipped as empty, before any
object was made) has nothing there to protect: kept, its claim would push the next recording of
that name to ``NAME-2`` for ``--keep-records``. OBS does exactly this before every recording:
it creates the file empty, closes and deletes it (a check that the path is writable), then
records into a new file of the same name.

So such a recording gives its claim back as it ends (``gives_key_back``), and the two ways an
ended record is used again (a new generation of the same recording, a new recording taking
over its id: tailup.rules.admission) claim its key again first (``claims_key_again``), taking
the first free key when another recording holds it now: never two records on one key.
"""

from __future__ import annotations

from dataclasses import dataclass

from tailup.model import StreamRecord, StreamState

# The ends after which S3 may hold nothing of the recording at its key. Not COMPLETED nor
# SALVAGED (an object is there), and not FAILED: its upload and parts are kept for a retry.
ENDS_WITHOUT_OBJECT = frozenset({StreamState.ABORTED, StreamState.SKIPPED})


@dataclass(frozen=True, slots=True)
class KeyAtEnd:
    """What the stream knows of S3 at its key as it ends."""

    # Every multipart upload it made at its key is aborted (or it made none): nothing can
    # complete there any more. False when an abort failed (`tailup gc` aborts it later).
    uploads_ended: bool
    # A PutObject or a CompleteMultipartUpload was sent for the key, and its object (if it
    # landed, answered or not) was not taken back: an object of this recording may be there.
    object_sent: bool


def gives_key_back(record: StreamRecord, ended_as: StreamState, s3: KeyAtEnd) -> bool:
    """Whether a stream that ended as ``ended_as`` releases its key's claim: S3 holds nothing
    of it at the key. Only a first generation: a later one's key holds what the earlier
    generations left there (a completed object, a salvaged prefix). A pending key was never
    claimed."""
    return (
        ended_as in ENDS_WITHOUT_OBJECT
        and record.generation == 1
        and bool(record.key)
        and not record.key_pending
        and s3.uploads_ended
        and not s3.object_sent
    )


def claims_key_again(previous: StreamRecord, *, check_keys: bool) -> bool:
    """Whether a record made from the ended ``previous`` (its next generation, or a recording
    taking over its id) must claim ``previous.key`` again before it is written: its claim may
    be gone (given back at its end, gives_key_back) and another recording may hold the key
    now. Asked whatever its generation: one Redis round trip at a rare event, and an ended
    record's claim can go other ways too (evicted under an allkeys-* policy). Only where keys
    are claimed (``check_keys``: a template without
    ``{stream_id}``, not ``--key-conflict overwrite``); a pending key is claimed by the stream
    itself."""
    return (
        check_keys
        and previous.state in ENDS_WITHOUT_OBJECT
        and bool(previous.key)
        and not previous.key_pending
    )
