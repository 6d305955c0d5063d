"""Issue 17 (review #17): a resume that compares the parts S3 holds with the file reads each part
through a small buffer of its thread, not into a part-sized buffer outside the memory budget; the
digest is the one of the whole part's bytes."""

from __future__ import annotations

import hashlib
import zlib
from pathlib import Path

import pytest

from tailup import reconcile
from tailup.body import PART_BUFFERS, PartBody
from tailup.checksums import ChecksumAlgorithm, stored_checksum
from tailup.model import StreamRecord
from tailup.plan import MiB, PartRange
from tailup.resume import PartDigest
from tailup.source import SCRATCH_BYTES


@pytest.mark.parametrize("algorithm", list(ChecksumAlgorithm))
@pytest.mark.parametrize(
    ("size", "start", "length"),
    [
        (6 * MiB, 0, 5 * MiB),  # a whole part, five scratch buffers
        (6 * MiB, 5 * MiB, 5 * MiB),  # the file ends inside the part: what is there
        (SCRATCH_BYTES + 3, 0, SCRATCH_BYTES + 3),  # one byte past a scratch buffer and two
        (10, 10, 5 * MiB),  # nothing there
    ],
    ids=["whole", "short", "scratch-plus-3", "empty"],
)
async def test_a_part_digest_is_read_through_a_small_buffer(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    algorithm: ChecksumAlgorithm,
    size: int,
    start: int,
    length: int,
) -> None:
    path = tmp_path / "cam.ts"
    data = hashlib.shake_256(b"cam").digest(size)
    path.write_bytes(data)
    st = path.stat()
    taken: list[int] = []

    def take(size_bytes: int) -> PartBody:
        taken.append(size_bytes)
        return PartBody(size_bytes)

    monkeypatch.setattr(PART_BUFFERS, "take", take)
    record = StreamRecord(
        "s-1", str(path), str(tmp_path), "b", "k", 5 * MiB, checksum=algorithm
    ).with_changes(device=st.st_dev, inode=st.st_ino)
    digests = await reconcile._digests(record, [PartRange(2, start, start + length)])
    there = data[start : start + length]
    expected = PartDigest(
        len(there),
        hashlib.md5(there).hexdigest(),
        zlib.crc32(there),
        stored_checksum(algorithm, there),
    )
    assert digests == {2: expected}
    assert taken == [], "a part-sized buffer outside the memory budget"
