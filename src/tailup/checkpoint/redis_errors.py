"""Redis's errors in tailup's family: what passes (CheckpointUnavailable) and what an operator
must fix (CheckpointRefused)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.exceptions as rex

from tailup.errors import CheckpointRefused, CheckpointUnavailable

T = TypeVar("T")


# Faults that pass: the server is down, loading its data, failing over, or out of memory until
# someone frees some. Anything else Redis refuses (credentials, ACLs, a wrong command) will not.
# Sentinel's MasterNotFoundError and SlaveNotFoundError are ConnectionErrors. RedisCluster raises
# RedisClusterException, which is no RedisError, when no node of the Cluster can be reached or a
# slot has no node (SlotNotCoveredError).
_REDIS_TRANSIENT: tuple[type[Exception], ...] = (
    rex.BusyLoadingError,
    rex.ReadOnlyError,
    rex.TryAgainError,
    rex.ClusterDownError,
    rex.OutOfMemoryError,
    rex.TimeoutError,
    rex.RedisClusterException,
)
_REDIS_ERRORS: tuple[type[Exception], ...] = (rex.RedisError, rex.RedisClusterException, OSError)
_REDIS_REFUSED: tuple[type[Exception], ...] = (
    rex.AuthenticationError,
    rex.AuthorizationError,
    rex.NoPermissionError,
    rex.AuthenticationWrongNumberOfArgsError,
)
_AUTH_REPLIES = ("NOAUTH", "WRONGPASS", "NOPERM")


def _is_refusal(exc: BaseException) -> bool:
    return isinstance(exc, _REDIS_REFUSED) or str(exc).startswith(_AUTH_REPLIES)


def translate_redis_error(exc: Exception) -> Exception:
    """Map a redis-py error to tailup's family. Messages never carry the password (redis-py
    does not put it in them, and URLs are not included)."""
    # RedisCluster wraps what its startup nodes answered (a refused password too) in a
    # RedisClusterException "cannot be connected": the refusal is what it wraps.
    wrapped = None
    if isinstance(exc, rex.RedisClusterException):
        wrapped = exc.__cause__ or exc.__context__
    if _is_refusal(exc) or (wrapped is not None and _is_refusal(wrapped)):
        return CheckpointRefused(f"Redis refused the credentials in --redis-url: {exc}")
    if isinstance(exc, _REDIS_TRANSIENT):
        return CheckpointUnavailable(f"Redis cannot take checkpoints now: {exc}")
    if isinstance(exc, rex.ConnectionError | OSError):
        return CheckpointUnavailable(f"Redis is unreachable: {exc}")
    # Anything else (MISCONF when Redis cannot write its disk, BUSY with a script running, a reply
    # this redis-py does not know) is something an operator or time fixes: back off and retry.
    # Only refused credentials stop a stream.
    return CheckpointUnavailable(f"Redis cannot take checkpoints now: {exc}")


async def guarded(call: Callable[[], Awaitable[T]]) -> T:
    try:
        return await call()
    except _REDIS_ERRORS as exc:
        raise translate_redis_error(exc) from exc
