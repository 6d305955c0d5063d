"""One exception family. Third-party errors are translated into it at the S3 and Redis boundaries.

Retryable errors are transient (the same call may succeed later): the stream backs off and tries
again. Permanent errors will not go away by themselves: the stream is marked failed, with why.
"""

from __future__ import annotations


class TailupError(Exception):
    """Root of every error tailup raises on purpose."""


class RetryableError(TailupError):
    """Transient: back off and try again."""


class PermanentError(TailupError):
    """Will not succeed by retrying: record it and stop this stream."""


class ConfigError(PermanentError):
    """A setting is missing or has a value outside what is accepted."""


class StorageUnavailable(RetryableError):
    """S3 answered with a server error, throttled, timed out or could not be reached."""


class CheckpointUnavailable(RetryableError):
    """Redis could not be reached; no part counts as done until its checkpoint is written."""


class CheckpointRefused(PermanentError):
    """Redis refused tailup for a reason retrying will not fix (credentials, ACL permissions)."""


class AbortedElsewhere(TailupError):
    """The stream was aborted from outside (`tailup abort`) while this daemon worked on it.

    Neither retryable nor a failure of the stream: its record must not be written over, and the
    daemon stops working on it."""


class StoragePermanentError(PermanentError):
    """S3 refused the request for a reason retrying will not fix (credentials, bucket, policy)."""

    def __init__(self, message: str, *, code: str = "") -> None:
        super().__init__(message)
        self.code = code


class AccessRefused(StoragePermanentError):
    """S3 refused a request for want of a permission (AccessDenied, or the bare 403 a HEAD gets):
    ``action`` is the IAM action the request needs (tailup.permissions)."""

    def __init__(self, message: str, *, code: str = "", action: str = "") -> None:
        super().__init__(message, code=code)
        self.action = action


class StorageOptionRefused(StoragePermanentError):
    """S3 refused to create an object as --storage-class, --sse or --tag ask (an unknown class,
    an encryption or a header the server lacks, a KMS key it cannot use): its text names them."""


class KeyTaken(StoragePermanentError):
    """A conditional write found the key holding an object already (PreconditionFailed)."""


class NoSuchUpload(StoragePermanentError):
    """The multipart upload no longer exists (aborted or expired)."""


class PartReplaceRefused(StoragePermanentError):
    """S3 refused a part (NotImplemented to UploadPart): a server that streams each part to its
    backend as it arrives (rclone serve s3) cannot take a part number again with other bytes, as
    when a muxer rewrote the file's head at close. What the stream does next is
    tailup.rules.refusals's to decide: a new upload, or a failure."""

    def __init__(self, message: str, *, code: str = "", part_number: int = 0) -> None:
        super().__init__(message, code=code)
        self.part_number = part_number


class AdoptedUploadRefused(StoragePermanentError):
    """An upload adopted from S3 refused a part or its Complete for its checksum: it was made
    with another algorithm or type than the stream sends (tailup.recovery). Started again."""


def refused_for_checksum(exc: TailupError, *, completing: bool) -> bool:
    """Whether S3's refusal says the upload's checksum is not the one sent: InvalidRequest
    (AWS: a type or algorithm mismatch) and, at Complete, BadDigest (SeaweedFS's answer to a
    FULL_OBJECT Complete of a COMPOSITE upload; a part's BadDigest is a damaged body)."""
    if isinstance(exc, StoragePermanentError) and exc.code == "InvalidRequest":
        return True
    return completing and isinstance(exc, StorageUnavailable) and "BadDigest" in str(exc)


class SourceStalled(RetryableError):
    """The source's file system did not answer, or answered with an error that passes (a network
    mount's EIO, ESTALE, ETIMEDOUT): the stream is stalled, not failed."""


class SourceError(PermanentError):
    """The source file cannot be used any more: gone, unreadable, replaced, or too large."""


class SourceGone(SourceError):
    pass


class SourceUnreadable(SourceError):
    pass


class PlanExceeded(SourceError):
    """The file grew past what S3 multipart allows (10,000 parts, 5 TiB)."""


class VerificationError(PermanentError):
    """The completed object does not match what was sent."""


class RecordLost(CheckpointUnavailable):
    """Redis no longer has the stream's record (FLUSHALL, a restart without persistence, an
    eviction): the stream writes it again from what it holds, rather than half rebuild it."""


class ClaimLost(TailupError):
    """Another node holds the stream's lease now (this one was presumed dead): this node stops
    the stream and touches nothing of it, neither Redis nor S3."""


class NodeIdTaken(PermanentError):
    """A live daemon holds this --node-id."""
