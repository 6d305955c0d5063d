"""Which closes ended the writing (pure), and the batching of closes over /proc passes."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path

import pytest

from tailup.closes import CloseChecks, last_closes
from tailup.errors import RetryableError, SourceStalled

A, B, C = Path("/w/a.ts"), Path("/w/b.ts"), Path("/w/c.ts")


@pytest.mark.parametrize(
    ("writers", "expected"),
    [
        ({A: False, B: False}, [A, B]),  # nobody writes any more
        ({A: True, B: False}, [B]),  # another descriptor still writes a
        ({A: None, B: True}, [A]),  # /proc cannot tell: the close event is what we know
        ({B: False}, [A, B]),  # no answer for a: as if it could not be told
        ({A: True, B: True}, []),
    ],
)
def test_last_closes(writers: Mapping[Path, bool | None], expected: list[Path]) -> None:
    assert last_closes({A: "sa", B: "sb"}, writers) == expected


class _Scans:
    """A /proc pass that holds until released, to see which closes wait for which pass."""

    def __init__(self, writing: frozenset[Path] = frozenset(), fail: int = 0) -> None:
        self.batches: list[list[Path]] = []
        self.release = asyncio.Event()
        self.writing = writing
        self.fail = fail

    async def __call__(self, paths: list[Path]) -> dict[Path, bool | None]:
        self.batches.append(sorted(paths))
        await self.release.wait()
        if self.fail:
            self.fail -= 1
            raise SourceStalled("/proc did not answer")
        return {p: p in self.writing for p in paths}


async def test_closes_noted_during_a_pass_share_the_next_one() -> None:
    scans = _Scans(writing=frozenset({C}))
    told: list[tuple[Path, str]] = []
    checks: CloseChecks[str] = CloseChecks(
        scans, lambda p, s: told.append((p, s)), lambda p, e: None
    )
    checks.note(A, "sa")
    await asyncio.sleep(0)  # the first pass starts, with a alone
    checks.note(B, "sb")
    checks.note(C, "sc")
    checks.note(B, "sb2")  # a later close of b: the newest stream is told
    scans.release.set()
    await checks.settled()
    assert scans.batches == [[A], [B, C]]
    assert told == [(A, "sa"), (B, "sb2")]
    assert checks.passes == 2


async def test_a_failed_pass_hands_its_closes_back_and_the_next_close_still_runs() -> None:
    scans = _Scans(fail=1)
    retried: list[tuple[list[Path], RetryableError]] = []
    told: list[Path] = []
    checks: CloseChecks[str] = CloseChecks(
        scans, lambda p, s: told.append(p), lambda p, e: retried.append((p, e))
    )
    checks.note(A, "sa")
    scans.release.set()
    await checks.settled()
    assert [paths for paths, _ in retried] == [[A]] and told == []
    checks.note(B, "sb")
    await checks.settled()
    assert told == [B]
