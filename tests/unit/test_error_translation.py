"""Errors at the S3 and Redis boundaries become tailup's family: retryable or permanent."""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp
import botocore.exceptions as bex
import pytest
import redis.exceptions as rex
from redis.asyncio.sentinel import MasterNotFoundError, SlaveNotFoundError

from tailup.checkpoint import translate_redis_error
from tailup.errors import (
    CheckpointRefused,
    CheckpointUnavailable,
    NoSuchUpload,
    PartReplaceRefused,
    RetryableError,
    StoragePermanentError,
    StorageUnavailable,
)
from tailup.s3 import translate_error
from tailup.s3.errors import _name_the_refusal


def client_error(code: str, status: int, message: str = "") -> bex.ClientError:
    response = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return bex.ClientError(response, "UploadPart")  # type: ignore[arg-type]


S3_CASES = [
    # (code, HTTP status, expected class)
    ("InternalError", 500, StorageUnavailable),
    ("ServiceUnavailable", 503, StorageUnavailable),
    ("SlowDown", 503, StorageUnavailable),
    ("503", 503, StorageUnavailable),  # a HEAD answer: no body, the status is the code
    ("Throttling", 400, StorageUnavailable),
    ("ThrottlingException", 400, StorageUnavailable),
    ("RequestTimeout", 400, StorageUnavailable),
    ("BadDigest", 400, StorageUnavailable),  # the body was damaged on the way: send it again
    ("IncompleteBody", 400, StorageUnavailable),
    ("TooManyRequestsException", 429, StorageUnavailable),
    ("Whatever", 429, StorageUnavailable),
    ("Whatever", 408, StorageUnavailable),
    ("Unknown", 0, StorageUnavailable),
    ("AccessDenied", 403, StoragePermanentError),
    ("InvalidAccessKeyId", 403, StoragePermanentError),
    ("SignatureDoesNotMatch", 403, StoragePermanentError),
    ("RequestTimeTooSkewed", 403, StorageUnavailable),  # a clock being corrected
    ("ExpiredToken", 400, StoragePermanentError),
    ("NoSuchBucket", 404, StoragePermanentError),
    ("EntityTooSmall", 400, StoragePermanentError),
    ("InvalidPart", 400, StoragePermanentError),
    ("403", 403, StoragePermanentError),
    ("NoSuchUpload", 404, NoSuchUpload),
    # The same request to the same server is refused again: retried, a stream stalled forever.
    ("NotImplemented", 501, StoragePermanentError),
]


@pytest.mark.parametrize(("code", "status", "expected"), S3_CASES)
def test_s3_client_errors(code: str, status: int, expected: type[Exception]) -> None:
    translated = translate_error(client_error(code, status, "said the server"), "upload part 3")
    assert type(translated) is expected
    assert f"S3 upload part 3: {code}" in str(translated)


REPLACE_REFUSAL = (
    "part 1 has already been streamed to the backend and cannot be replaced with different "
    "contents"
)  # rclone serve s3 1.75.2


def test_a_part_the_server_cannot_take_is_refused_for_that_part() -> None:
    error = translate_error(client_error("NotImplemented", 501, REPLACE_REFUSAL), "upload part 1")
    refused = _name_the_refusal(error, "upload_part", 1)
    assert isinstance(refused, PartReplaceRefused) and refused.part_number == 1
    assert REPLACE_REFUSAL in str(refused)
    # Any other call the server has not implemented is a plain permanent refusal.
    other = translate_error(client_error("NotImplemented", 501), "complete multipart upload")
    named = _name_the_refusal(other, "complete_multipart_upload", 0)
    assert type(named) is StoragePermanentError


@pytest.mark.parametrize(
    ("code", "hint"),
    [
        ("SignatureDoesNotMatch", "AWS_SECRET_ACCESS_KEY"),
        ("InvalidAccessKeyId", "AWS_ACCESS_KEY_ID"),
        ("NoSuchBucket", "create the bucket"),
        ("RequestTimeTooSkewed", "clock"),
    ],
)
def test_permanent_s3_errors_say_what_to_fix(code: str, hint: str) -> None:
    assert hint in str(translate_error(client_error(code, 403), "check bucket"))


NETWORK_CASES = [
    bex.EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
    bex.ConnectionClosedError(endpoint_url="http://127.0.0.1:1"),
    bex.ReadTimeoutError(endpoint_url="http://127.0.0.1:1"),
    bex.ConnectTimeoutError(endpoint_url="http://127.0.0.1:1"),
    bex.ResponseStreamingError(error="reset"),
    aiohttp.ServerDisconnectedError(),
    aiohttp.ClientPayloadError("cut"),
    TimeoutError(),
    ConnectionResetError(104, "Connection reset by peer"),
    OSError(113, "No route to host"),
]


@pytest.mark.parametrize("exc", NETWORK_CASES, ids=lambda e: type(e).__name__)
def test_network_trouble_is_retryable(exc: BaseException) -> None:
    assert isinstance(translate_error(exc, "upload part 1"), StorageUnavailable)


CONFIG_CASES = [
    bex.NoCredentialsError(),
    bex.PartialCredentialsError(provider="env", cred_var="AWS_SECRET_ACCESS_KEY"),
    bex.ProfileNotFound(profile="nope"),
    bex.NoRegionError(),
    bex.ParamValidationError(report="bad"),
]


@pytest.mark.parametrize("exc", CONFIG_CASES, ids=lambda e: type(e).__name__)
def test_local_configuration_errors_are_permanent(exc: BaseException) -> None:
    translated = translate_error(exc, "create multipart upload")
    assert isinstance(translated, StoragePermanentError)
    assert not isinstance(translated, RetryableError)


REDIS_CASES = [
    (rex.ConnectionError("Connection refused"), CheckpointUnavailable),
    (rex.TimeoutError("Timeout reading from socket"), CheckpointUnavailable),
    (rex.BusyLoadingError("Redis is loading the dataset in memory"), CheckpointUnavailable),
    (rex.ReadOnlyError("You can't write against a read only replica."), CheckpointUnavailable),
    (rex.TryAgainError("TRYAGAIN"), CheckpointUnavailable),
    (rex.ClusterDownError("CLUSTERDOWN"), CheckpointUnavailable),
    (rex.MasterDownError("MASTERDOWN Link with MASTER is down"), CheckpointUnavailable),
    (
        rex.RedisClusterException("Redis Cluster cannot be connected. Please provide at least"),
        CheckpointUnavailable,
    ),
    (rex.SlotNotCoveredError("Slot 42 is not covered by the cluster."), CheckpointUnavailable),
    (MasterNotFoundError("No master found for 'mymaster'"), CheckpointUnavailable),
    (SlaveNotFoundError("No slave found for 'mymaster'"), CheckpointUnavailable),
    (
        rex.OutOfMemoryError("command not allowed when used memory > 'maxmemory'"),
        CheckpointUnavailable,
    ),
    (ConnectionResetError(104, "reset"), CheckpointUnavailable),
    (rex.AuthenticationError("invalid username-password pair"), CheckpointRefused),
    (rex.ResponseError("NOAUTH Authentication required."), CheckpointRefused),
    (rex.ResponseError("WRONGPASS invalid username-password pair"), CheckpointRefused),
    (rex.NoPermissionError("NOPERM this user has no permissions"), CheckpointRefused),
    # Unknown replies are retried: an operator or time fixes them, and a stream given up on a
    # full Redis disk would lose its recording's upload.
    (rex.ResponseError("ERR unknown command"), CheckpointUnavailable),
    (
        rex.ResponseError(
            "MISCONF Redis is configured to save RDB snapshots, but it's currently unable to "
            "persist to disk."
        ),
        CheckpointUnavailable,
    ),
    (rex.ResponseError("BUSY Redis is busy running a script."), CheckpointUnavailable),
    (rex.ResponseError("NOPERM User tailup may not run 'evalsha'"), CheckpointRefused),
]


@pytest.mark.parametrize(("exc", "expected"), REDIS_CASES, ids=lambda e: str(e)[:30])
def test_redis_errors(exc: Exception, expected: type[Exception]) -> None:
    assert type(translate_redis_error(exc)) is expected


def _cluster_unreachable(because: Exception) -> rex.RedisClusterException:
    try:
        try:
            raise because
        except Exception as exc:
            raise rex.RedisClusterException(
                f"Redis Cluster cannot be connected. Please provide at least one reachable node: "
                f"{exc}"
            ) from exc
    except rex.RedisClusterException as outer:
        return outer


@pytest.mark.parametrize(
    ("because", "expected"),
    [
        (rex.AuthenticationError("invalid username-password pair"), CheckpointRefused),
        (rex.ConnectionError("Error 111 connecting to 127.0.0.1:7000"), CheckpointUnavailable),
    ],
)
def test_a_cluster_no_node_of_which_answers_is_told_by_what_they_answered(
    because: Exception, expected: type[Exception]
) -> None:
    # RedisCluster raises this when no startup node lets it in: a wrong password is no outage.
    assert type(translate_redis_error(_cluster_unreachable(because))) is expected


# -- docs/guarantees.md says which S3 codes are retryable and which permanent: it must agree --

GUARANTEES = Path(__file__).resolve().parents[2] / "docs" / "guarantees.md"


def _documented_codes(start: str, end: str) -> list[str]:
    text = " ".join(GUARANTEES.read_text(encoding="utf-8").split())
    begin = text.index(start)
    section = text[begin : text.index(end, begin)]
    # S3 error codes are single CamelCase words (`SlowDown`, InvalidPart).
    return re.findall(r"\b(?:[A-Z][a-z]+){2,}\b", section)


def test_the_codes_the_docs_call_retryable_are_retried() -> None:
    codes = _documented_codes("Connection errors, timeouts", "are retryable")
    assert {"SlowDown", "RequestTimeout", "BadDigest", "RequestTimeTooSkewed"} <= set(codes)
    for code in codes:
        assert isinstance(translate_error(client_error(code, 400), "x"), StorageUnavailable), code


def test_the_codes_the_docs_call_permanent_are_not_retried() -> None:
    codes = _documented_codes("Permanent errors (", ")")
    assert {"AccessDenied", "NoSuchBucket", "EntityTooSmall"} <= set(codes)
    for code in codes:
        error = translate_error(client_error(code, 400), "x")
        assert isinstance(error, StoragePermanentError), code
