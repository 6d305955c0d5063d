"""No recording overwrites another: conditional writes on the real S3 server and the in-memory
store (one contract), and key claims (tailup.keyclaim) against real Redis and SeaweedFS."""

from __future__ import annotations

import os
import uuid
from typing import Any

import pytest
from test_store_contracts import mp_store  # noqa: F401  (the fixture: memory and SeaweedFS)

from tailup.checkpoint import RedisCheckpointStore
from tailup.dev import MemoryMultipartStore, RedisServer
from tailup.errors import KeyTaken
from tailup.integrity import crc32_of
from tailup.keyclaim import claim_key
from tailup.keys import RedisKeys, suffixed_key
from tailup.plan import MiB
from tailup.s3 import MultipartStore


def _key() -> str:
    return f"conflicts/{uuid.uuid4().hex[:8]}/cam1.ts"


async def test_put_if_none_match_refuses_a_taken_key(mp_store: MultipartStore) -> None:  # noqa: F811
    key = _key()
    first, second = b"first recording", b"second recording"
    await mp_store.put_object(key, first, crc32_of(first), "video/mp2t", if_none_match=True)
    with pytest.raises(KeyTaken):
        await mp_store.put_object(key, second, crc32_of(second), "video/mp2t", if_none_match=True)
    assert await mp_store.get_object(key) == first
    # Without the condition the last write wins (--key-conflict overwrite, later generations).
    await mp_store.put_object(key, second, crc32_of(second), "video/mp2t")
    assert await mp_store.get_object(key) == second


async def test_complete_if_none_match_refuses_a_taken_key(mp_store: MultipartStore) -> None:  # noqa: F811
    key = _key()
    existing = b"an earlier recording"
    await mp_store.put_object(key, existing, crc32_of(existing), "video/mp2t")
    body = os.urandom(5 * MiB)
    upload_id = await mp_store.create_upload(key, "video/mp2t")
    etag = await mp_store.upload_part(key, upload_id, 1, body, crc32_of(body))
    with pytest.raises(KeyTaken):
        await mp_store.complete_upload(
            key, upload_id, [(1, etag, crc32_of(body))], if_none_match=True
        )
    assert await mp_store.get_object(key) == existing, "the earlier recording is untouched"
    await mp_store.abort_upload(key, upload_id)


async def test_complete_if_none_match_on_a_free_key(mp_store: MultipartStore) -> None:  # noqa: F811
    key = _key()
    body = os.urandom(5 * MiB)
    upload_id = await mp_store.create_upload(key, "video/mp2t")
    etag = await mp_store.upload_part(key, upload_id, 1, body, crc32_of(body))
    await mp_store.complete_upload(key, upload_id, [(1, etag, crc32_of(body))], if_none_match=True)
    assert await mp_store.get_object(key) == body


@pytest.mark.parametrize(
    ("key", "number", "expected"),
    [
        ("a/cam1.ts", 2, "a/cam1-2.ts"),
        ("a/b/cam1.tar.ts", 3, "a/b/cam1.tar-3.ts"),
        ("cam1", 2, "cam1-2"),
        ("a/.hidden", 2, "a/.hidden-2"),
    ],
)
def test_suffixed_key(key: str, number: int, expected: str) -> None:
    assert suffixed_key(key, number) == expected


async def test_claims_skip_keys_held_by_streams_or_objects(
    mp_store: MultipartStore,  # noqa: F811
    redis_server: RedisServer,
) -> None:
    key = _key()
    prefix = f"t-{uuid.uuid4().hex[:8]}"
    async with RedisCheckpointStore.connect(redis_server.url, prefix) as cps:
        assert await claim_key(cps, mp_store, key, "s1", check=True) == key
        # The same stream asking again keeps its key; another stream gets the next free one.
        assert await claim_key(cps, mp_store, key, "s1", check=True) == key
        assert await claim_key(cps, mp_store, key, "s2", check=True) == suffixed_key(key, 2)
        # An object no stream holds (written by another tool, or before Redis lost its data).
        taken = suffixed_key(key, 3)
        await mp_store.put_object(taken, b"x", crc32_of(b"x"), "video/mp2t")
        assert await claim_key(cps, mp_store, key, "s3", check=True) == suffixed_key(key, 4)
        assert await claim_key(cps, mp_store, key, "s9", check=False) == key
        keys = RedisKeys(prefix)
        claimed = [key, *(suffixed_key(key, n) for n in (2, 3, 4))]
        owners: Any = {k: await cps._redis.get(keys.object_claim(k)) for k in claimed}
    # The key found holding an object is not s3's: its reservation was let go at once, not
    # kept for ever (N12).
    assert owners == {
        key: "s1",
        suffixed_key(key, 2): "s2",
        taken: None,
        suffixed_key(key, 4): "s3",
    }


class Counting:
    """Counts a store's calls by name (round trips), passing every call through."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.calls: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        async def call(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] = self.calls.get(name, 0) + 1
            return await attr(*args, **kwargs)

        return call

    def total(self) -> int:
        return sum(self.calls.values())


@pytest.mark.timeout(60)  # the linear probe of before takes minutes to fail
async def test_the_1001st_recording_of_a_name_gets_a_key_in_a_few_round_trips(
    mp_store: MultipartStore,  # noqa: F811
    redis_server: RedisServer,
) -> None:
    """N4: keys never run out, and a name's n-th recording costs what its 2nd did."""
    key = _key()
    async with RedisCheckpointStore.connect(redis_server.url, f"t-{uuid.uuid4().hex[:8]}") as cps:
        # The first 1,000 against an empty memory S3 (their objects are not written: the real
        # one would answer every HEAD the same), the 1,001st against the store under test.
        empty = MemoryMultipartStore()
        got = [await claim_key(cps, empty, key, f"s{n}", check=True) for n in range(1, 1001)]
        assert got == [key, *(suffixed_key(key, n) for n in range(2, 1001))]
        redis, s3 = Counting(cps), Counting(mp_store)
        assert await claim_key(redis, s3, key, "s1001", check=True) == suffixed_key(key, 1001)  # type: ignore[arg-type]
        # The name itself (taken), the counter, the next number's claim and its HEAD.
        assert redis.total() + s3.total() <= 5, (redis.calls, s3.calls)


async def test_with_its_counter_lost_a_new_recording_takes_a_key_of_its_own(
    mp_store: MultipartStore,  # noqa: F811
    redis_server: RedisServer,
) -> None:
    """Redis lost its counters (and claims) while S3 holds the numbered objects: a few guesses,
    then a key with the stream id in it, never a walk past every object."""
    key = _key()
    for taken in (key, *(suffixed_key(key, n) for n in range(2, 30))):
        await mp_store.put_object(taken, b"x", crc32_of(b"x"), "video/mp2t")
    async with RedisCheckpointStore.connect(redis_server.url, f"t-{uuid.uuid4().hex[:8]}") as cps:
        s3 = Counting(mp_store)
        got = await claim_key(cps, s3, key, "abc123", check=True)  # type: ignore[arg-type]
        assert got == suffixed_key(key, "abc123")
        assert s3.calls == {"head_object": 5}
