"""tailup.checksums where mutation testing found it unchecked (`make mutants`, docs/testing.md):
each CRC carried on from the CRC of what came before, and the words of the refusal for NONE."""

from __future__ import annotations

import pytest

from tailup.checksums import ChecksumAlgorithm, crc_of

CRCS = [ChecksumAlgorithm.CRC32, ChecksumAlgorithm.CRC32C, ChecksumAlgorithm.CRC64NVME]


@pytest.mark.parametrize("algorithm", CRCS)
def test_crc_of_carries_on_from_the_previous_crc(algorithm: ChecksumAlgorithm) -> None:
    head, tail = b"hello ", b"world"
    whole = crc_of(algorithm, head + tail)
    assert crc_of(algorithm, tail, crc_of(algorithm, head)) == whole
    assert crc_of(algorithm, tail) != whole


def test_crc_of_none_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"^none is no CRC$"):
        crc_of(ChecksumAlgorithm.NONE, b"x")
