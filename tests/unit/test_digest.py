"""The whole-file SHA-256 kept up while parts are read, and completed at finalize."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import weakref

import pytest

from tailup.body import PartBody
from tailup.digest import FileChangedWhileHashing, FileDigest, FinalizeHasher
from tailup.errors import SourceStalled
from tailup.integrity import crc32_of

PART = 1000


def parts_of(data: bytes) -> list[bytes]:
    return [data[i : i + PART] for i in range(0, len(data), PART)]


def fed(data: bytes, numbers: list[int]) -> FileDigest:
    digest = FileDigest()
    parts = parts_of(data)
    for n in numbers:
        digest.offer(n, parts[n - 1], crc32_of(parts[n - 1]))
    return digest


async def finalize(digest: FileDigest, data: bytes) -> tuple[str, list[int]]:
    """Run the finalize pass over ``data``; returns the digest and the parts read again."""
    parts = parts_of(data)
    reread: list[int] = []

    def read_part(number: int) -> bytes:
        reread.append(number)
        return parts[number - 1]

    with FinalizeHasher(digest, read_part) as hasher:
        for n, body in enumerate(parts, 1):
            await hasher.submit(n, body, crc32_of(body))
        return await hasher.finish(len(parts)), reread


def test_offer_takes_parts_in_order_only() -> None:
    digest = fed(b"a" * 3000, [1, 3, 2, 3])
    assert digest.parts == 3  # part 3 out of order was left, then taken after part 2
    assert digest.hexdigest() == hashlib.sha256(b"a" * 3000).hexdigest()


async def test_finalize_hashes_only_the_tail_when_the_file_only_grew() -> None:
    data = bytes(range(256)) * 20  # 5120 bytes: 5 full parts and a tail
    digest = fed(data[:4000], [1, 2, 3, 4])
    sha, reread = await finalize(digest, data)
    assert sha == hashlib.sha256(data).hexdigest()
    assert reread == []


async def test_header_patched_at_close_rehashes_from_the_start() -> None:
    data = bytearray(b"x" * 4500)
    digest = fed(bytes(data), [1, 2, 3, 4])
    data[0x28:0x2C] = b"\0\1\2\3"  # the MP4 mdat size patch
    sha, reread = await finalize(digest, bytes(data))
    assert sha == hashlib.sha256(data).hexdigest()
    assert reread == []  # part 1 changed: nothing before it to read again


async def test_a_later_part_changed_rereads_the_parts_before_it() -> None:
    data = bytearray(b"y" * 5000)
    digest = fed(bytes(data), [1, 2, 3, 4, 5])
    data[3500] = 0
    sha, reread = await finalize(digest, bytes(data))
    assert sha == hashlib.sha256(data).hexdigest()
    assert reread == [1, 2, 3]


async def test_file_shrunk_to_a_part_boundary_drops_the_parts_past_it() -> None:
    data = b"z" * 5000
    digest = fed(data, [1, 2, 3, 4, 5])
    sha, reread = await finalize(digest, data[:3000])
    assert sha == hashlib.sha256(data[:3000]).hexdigest()
    assert reread == [1, 2, 3]


async def test_resumed_stream_with_nothing_hashed_hashes_everything() -> None:
    data = b"w" * 2500
    sha, reread = await finalize(FileDigest(), data)
    assert sha == hashlib.sha256(data).hexdigest()
    assert reread == []


def test_restart_refuses_a_part_that_changed_again() -> None:
    data = b"v" * 3000
    digest = fed(data, [1, 2, 3])
    with pytest.raises(FileChangedWhileHashing):
        digest.restart(2, lambda n: b"u" * PART)


async def test_submit_lets_go_of_each_body_once_hashed() -> None:
    # The stream gives a part's buffer (and its budget) back once its future is done: nothing in
    # the hasher may still hold it then.
    data = b"t" * 3000
    digest = FileDigest()
    with FinalizeHasher(digest, lambda n: b"") as hasher:
        bodies = [PartBody(part) for part in parts_of(data)]
        alive = [weakref.ref(body) for body in bodies]
        futures = [hasher.submit(n, body, crc32_of(body)) for n, body in enumerate(bodies, 1)]
        await asyncio.gather(*futures)
        del bodies
        assert [ref() for ref in alive] == [None, None, None], "a hashed body is still held"
        assert digest.parts == 3
        assert await hasher.finish(3) == hashlib.sha256(data).hexdigest()


async def test_a_part_read_again_on_a_hung_mount_gives_up_within_its_deadline() -> None:
    """N15: a restart reads parts from the file; on a hung mount that read never returns. It
    runs on the file-I/O pool within its deadline (SourceStalled), and the SHA-256 pool every
    stream's finalize shares stays free."""
    data = bytearray(b"y" * 5000)
    digest = fed(bytes(data), [1, 2, 3, 4, 5])
    data[3500] = 0  # part 4 changed: parts 1-3 are read again
    hung = threading.Event()

    def read_part(number: int) -> bytes:
        hung.wait(10)  # the kernel call a hung NFS mount never returns from
        return bytes(data[(number - 1) * PART : number * PART])

    parts = parts_of(bytes(data))
    try:
        with (
            FinalizeHasher(digest, read_part, read_timeout_s=0.2) as hasher,
            pytest.raises(SourceStalled),
        ):
            async with asyncio.timeout(5):
                for n, body in enumerate(parts, 1):
                    await hasher.submit(n, body, crc32_of(body))
        # Another stream's finalize hashes meanwhile: the shared pool is not held by the read.
        other = b"o" * 2500
        async with asyncio.timeout(5):
            sha, _ = await finalize(FileDigest(), other)
        assert sha == hashlib.sha256(other).hexdigest()
    finally:
        hung.set()
