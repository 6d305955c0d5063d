"""S3 and botocore errors as tailup's family: retryable (server errors, throttling, timeouts,
connection resets, BadDigest) or permanent (credentials, bucket, policy), translated once, at
the boundary (tailup.s3.client)."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import botocore.exceptions

from tailup import permissions
from tailup.errors import (
    AccessRefused,
    KeyTaken,
    NoSuchUpload,
    PartReplaceRefused,
    StorageOptionRefused,
    StoragePermanentError,
    StorageUnavailable,
    TailupError,
)
from tailup.objectoptions import KMS_KINDS, ObjectOptions

# Codes that retrying cannot fix. Anything 5xx, throttling and unknown network trouble is retryable.
_PERMANENT_CODES = {
    "AccessDenied",
    "AllAccessDisabled",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "NoSuchBucket",
    "InvalidBucketName",
    "AccountProblem",
    "InvalidPart",
    "InvalidPartOrder",
    "EntityTooSmall",
    "EntityTooLarge",
    "InvalidRequest",
    "InvalidArgument",
    "KeyTooLongError",
    "MethodNotAllowed",
    # HTTP 501: the server lacks what the request needs (AWS: a header naming functionality it
    # has not implemented; rclone serve s3: replacing a part already streamed). Retrying sends
    # the same request to the same server: the stream would stall forever.
    "NotImplemented",
    "403",
    "404",
    "400",
}
# Codes that pass, although some come with a 4xx status (throttling, timeouts, a body damaged on
# the way, a clock that NTP is correcting): botocore's standard retry mode treats them the same way.
_RETRYABLE_CODES = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequests",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "RequestTimeout",
    "RequestTimeoutException",
    "RequestTimeTooSkewed",
    "PriorRequestNotComplete",
    "InternalError",
    "ServiceUnavailable",
    "OperationAborted",
    "BadDigest",
    "IncompleteBody",
    "XAmzContentSHA256Mismatch",
}
_HINTS = {
    "InvalidAccessKeyId": "check AWS_ACCESS_KEY_ID / the profile in use",
    "SignatureDoesNotMatch": "check AWS_SECRET_ACCESS_KEY / the profile in use",
    "ExpiredToken": "the session credentials expired: refresh them",
    "RequestTimeTooSkewed": "this machine's clock is off: synchronise it (NTP)",
    "NoSuchBucket": "create the bucket or fix --bucket",
}
# botocore errors raised before any request is sent, about this machine's configuration: no
# retry fixes them. Every other botocore error is about the network and passes.
_PERMANENT_BOTOCORE: tuple[type[BaseException], ...] = tuple(
    getattr(botocore.exceptions, name)
    for name in (
        "NoCredentialsError",
        "PartialCredentialsError",
        "ProfileNotFound",
        "ConfigNotFound",
        "ConfigParseError",
        "NoRegionError",
        "ValidationError",  # ParamValidationError, InvalidRegionError and the like
        "ParamValidationError",
        "UnknownSignatureVersionError",
        "UnsupportedSignatureVersionError",
        "InvalidConfigError",
        "InvalidS3AddressingStyleError",
        "InvalidEndpointConfigurationError",
        "UnauthorizedSSOTokenError",
        "SSOTokenLoadError",
    )
    if hasattr(botocore.exceptions, name)
)


def translate_error(exc: BaseException, action: str) -> TailupError:
    """Map a botocore/aiohttp error to tailup's family. Never includes signed URLs or secrets."""
    if isinstance(exc, botocore.exceptions.ClientError):
        return _translate_client_error(exc, action)
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return StoragePermanentError(f"S3 {action}: no AWS credentials found", code="NoCredentials")
    name = type(exc).__name__
    if isinstance(exc, _PERMANENT_BOTOCORE):
        return StoragePermanentError(f"S3 {action}: {name}: {exc}", code=name)
    return StorageUnavailable(f"S3 {action}: {name}: {exc}")


def _translate_client_error(exc: Any, action: str) -> TailupError:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", "Unknown"))
    message = str(error.get("Message", "")) or code
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    text = f"S3 {action}: {code}: {message}"
    if code in _HINTS:
        text += f" ({_HINTS[code]})"
    if code == "NoSuchUpload":
        return NoSuchUpload(text, code=code)
    if code in ("PreconditionFailed", "412") or status == 412:
        return KeyTaken(text, code="PreconditionFailed")
    if code in _RETRYABLE_CODES:
        return StorageUnavailable(text)
    if code in _PERMANENT_CODES or (400 <= status < 500 and status not in (408, 429)):
        return StoragePermanentError(text, code=code)
    return StorageUnavailable(text)


def _name_the_permission(error: TailupError, method: str) -> TailupError:
    """An AccessDenied (or a HEAD's bare 403) as AccessRefused, naming the IAM action it needs."""
    if not isinstance(error, StoragePermanentError) or error.code not in ("AccessDenied", "403"):
        return error
    needs = permissions.action_of(method)
    text = f"{error} (it needs {needs}: see docs/operations.md, S3 permissions)"
    return AccessRefused(text, code=error.code, action=needs)


def _name_the_refusal(error: TailupError, method: str, part_number: int) -> TailupError:
    """A refusal as what it means for the call made: a permission (_name_the_permission), or an
    UploadPart the server cannot take (PartReplaceRefused)."""
    if (
        method == "upload_part"
        and isinstance(error, StoragePermanentError)
        and error.code == "NotImplemented"
    ):
        return PartReplaceRefused(str(error), code=error.code, part_number=part_number)
    return _name_the_permission(error, method)


# What a server answers when it cannot store an object as --storage-class, --sse or --tag ask:
# an unknown class, an encryption or a header it lacks (SeaweedFS: NotImplemented for SSE-KMS),
# a KMS key it cannot use, a tag it refuses.
_OPTION_REFUSALS = frozenset(
    {
        "InvalidStorageClass",
        "NotImplemented",
        "InvalidArgument",
        "InvalidRequest",
        "InvalidTag",
        "InvalidEncryptionAlgorithmError",
        "KMS.NotFoundException",
        "KMS.DisabledException",
        "KMS.KMSInvalidStateException",
        "KMS.AccessDeniedException",
    }
)


def name_the_option_refusal(
    error: TailupError, options: ObjectOptions | None, code: str
) -> TailupError:
    """A refusal of a request for an object made with --storage-class, --sse or --tag, naming
    those flags, as permanent: the same request is refused again until they change. SeaweedFS
    without a KMS answers InternalError to the parts (and PUTs) of an SSE-KMS object, which
    would otherwise be retried for ever."""
    if options is None or not options.request_params():
        return error
    if isinstance(error, KeyTaken | PartReplaceRefused | NoSuchUpload):
        return error
    if isinstance(error, AccessRefused):
        text = (
            f"{error}; with {options.flags()} it may need s3:PutObjectTagging (--tag) or "
            "kms:GenerateDataKey and kms:Decrypt on the key (--sse aws:kms)"
        )
        return AccessRefused(text, code=error.code, action=error.action)
    kms = options.sse in KMS_KINDS
    if code in _OPTION_REFUSALS or code.startswith("KMS.") or (kms and code == "InternalError"):
        return StorageOptionRefused(
            f"{error} (the server refuses an object stored as {options.flags()} asks: "
            "change or drop those flags)",
            code=code,
        )
    return error


_NETWORK_ERRORS = (
    botocore.exceptions.BotoCoreError,
    aiohttp.ClientError,
    asyncio.TimeoutError,
    ConnectionError,
    OSError,
)
