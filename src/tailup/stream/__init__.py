"""One stream: a file being uploaded while it grows, then finalized and verified.

The stream waits for a wake-up (a close, or its poll timer: it stats its file about when its
next part is due at the rate it grows, every ``growth_poll_s`` to ``core.MAX_LOOK_S``, since
per-write events cost far more than a stat, see tailup.watcher), looks at
the file, sends every part that is complete and not yet sent, and finalizes once the writer is
gone: it closed the file and ``close_grace_s`` passed with no change, or nothing changed for
``idle_timeout_s``. A change seen after the close means the writer came back: the close no longer
counts.

Finalizing re-reads every part of the final layout in order. A part whose bytes changed since it was
sent (muxers patch headers at close) is sent again; parts past a shrunk end are left out; the
whole-file SHA-256, kept up while the parts were read for upload, is completed in the same pass
(tailup.digest). Then CompleteMultipartUpload, and the object's size
and ETag are checked against what was sent before metadata.json is written and the stream is
recorded completed.

The package, by concern, around one shared per-stream state (context.StreamContext):

- core: Stream, the loop: supervisor signals, each look at the file, its errors, the timers;
- sending: PartSender, parts read and uploaded within the budget, the upload created, orphans swept;
- finalize: Finalizer, the verify pass, completion (multipart or one PutObject);
- objectcheck: ObjectCheck, the object at the key against what was sent, the key and lease ours;
- publish: Publisher, metadata.json, the COMPLETED record, the SHA-256 that follows
  (sha256after) and the after-upload action on the very file uploaded;
- resuming: Resumer, a stream found live at start reconciled, an upload started over;
- bookkeeping: Bookkeeper, the stream's state in Redis, stalls, aborts, failures;
- retrying: Retrier, the waits between attempts (back-off, a FAILED stream's long one that
  `tailup retry` cuts short) and the Redis probe owed after a checkpoint write failed.
"""

from tailup.stream.context import Outcome, StreamDeps
from tailup.stream.core import REOPENED_CLOSE_GRACE_S, Stream
from tailup.stream.finalize import FileChangedWhileFinalizing

__all__ = [
    "REOPENED_CLOSE_GRACE_S",
    "FileChangedWhileFinalizing",
    "Outcome",
    "Stream",
    "StreamDeps",
]
