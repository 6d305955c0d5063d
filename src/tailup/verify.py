"""`tailup verify KEY|STREAM_ID`: re-check a completed object, long after it was uploaded.

The object is streamed from S3 once. Along the way its SHA-256, the MD5 of every part (the part
boundaries come from metadata.json) and the bytes themselves are compared with what they should be:
- metadata.json (or, without it, the stream's record in Redis): size, SHA-256, multipart ETag both
  as S3 reports it and as recomputed from the bytes, and each part's MD5 against its ETag;
- the local file, when it is still there: size and every byte (the first differing offset is
  reported).
Each comparison is one line of the report; the command exits 1 if any line differs. A server whose
ETags are not MD5s (of the part, of the parts' MD5s) has its ETags compared with metadata.json only;
the SHA-256 of every byte is what checks the object there.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tailup.checkpoint import RedisCheckpointStore
from tailup.checksums import Checksum, ChecksumAlgorithm, ChecksumType, crc_of, encode
from tailup.config import Settings, check_storage_settings
from tailup.errors import CheckpointUnavailable, StoragePermanentError
from tailup.integrity import EtagForm, etag_form, multipart_etag, normalize_etag
from tailup.keys import metadata_key
from tailup.model import StreamRecord, StreamState
from tailup.s3 import S3MultipartStore
from tailup.streamref import StreamNotFound, short_id


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class VerifyReport:
    bucket: str
    key: str
    against: list[str] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(check.ok for check in self.checks)

    def add(self, name: str, ok: bool, detail: str) -> None:
        self.checks.append(Check(name, ok, detail))

    def same(self, name: str, actual: object, expected: object, *, what: str = "object") -> None:
        """One comparison: shows the value once when it matches, both values when not."""
        if actual == expected:
            self.add(name, True, str(actual))
        else:
            self.add(name, False, f"{what} {actual}, expected {expected}")


@dataclass(frozen=True, slots=True)
class Expected:
    """What the object should be, from metadata.json or the Redis record."""

    source: str
    size: int
    sha256: str
    etag: str
    part_sizes: tuple[int, ...] = ()
    part_etags: tuple[str, ...] = ()
    local_path: str | None = None
    # metadata.json's full-object checksum (tailup.checksums), if it names one.
    whole: Checksum | None = None


def checkable_whole_checksum(described: Any) -> Checksum | None:
    """A metadata.json "object" checksum that the bytes can be compared with: a FULL_OBJECT one
    (a COMPOSITE one is of the parts' checksums, which the part ETags cover). Without one, only
    a SHA-256 checks every byte (tailup.salvage reads an object back for one)."""
    if not isinstance(described, dict) or described.get("type") != ChecksumType.FULL_OBJECT.value:
        return None
    try:
        algorithm = ChecksumAlgorithm(str(described.get("algorithm")))
    except ValueError:
        return None
    if algorithm is ChecksumAlgorithm.NONE:
        return None
    return Checksum(algorithm, str(described.get("value") or ""))


def expected_from_metadata(document: dict[str, Any]) -> Expected:
    parts = sorted(document.get("parts") or [], key=lambda p: int(p["number"]))
    checksums = document["checksums"]
    return Expected(
        source="metadata.json",
        size=int(document["size_bytes"]),
        sha256=str(checksums.get("sha256") or ""),
        etag=normalize_etag(str(checksums["multipart_etag"])),
        part_sizes=tuple(int(p["size_bytes"]) for p in parts),
        part_etags=tuple(normalize_etag(str(p["etag"])) for p in parts),
        local_path=(document.get("source") or {}).get("path"),
        whole=checkable_whole_checksum(checksums.get("object")),
    )


def expected_from_record(record: StreamRecord) -> Expected:
    return Expected(
        source="the stream's record in Redis",
        size=record.final_size,
        sha256=record.sha256,
        etag=normalize_etag(record.etag),
        local_path=record.path,
    )


class PartHasher:
    """MD5 of each part of a byte stream, given the part sizes (the S3 ETag of a plain part)."""

    def __init__(self, part_sizes: Sequence[int]) -> None:
        self._sizes = list(part_sizes)
        self._index = 0
        self._left = self._sizes[0] if self._sizes else 0
        self._md5 = hashlib.md5()
        self.digests: list[str] = []
        self.overflow = 0  # bytes past the last part

    def update(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self._index >= len(self._sizes):
                self.overflow += len(view)
                return
            take = min(self._left, len(view))
            self._md5.update(view[:take])
            view = view[take:]
            self._left -= take
            if self._left == 0:
                self._next_part()

    def _next_part(self) -> None:
        self.digests.append(self._md5.hexdigest())
        self._md5 = hashlib.md5()
        self._index += 1
        self._left = self._sizes[self._index] if self._index < len(self._sizes) else 0


class LocalComparer:
    """Compares the object's bytes with the local file as they stream by."""

    def __init__(self, handle: IO[bytes]) -> None:
        self._handle = handle
        self.first_difference: int | None = None

    def update(self, offset: int, data: bytes) -> None:
        if self.first_difference is not None:
            return
        local = self._handle.read(len(data))
        if local == data:
            return
        shorter = min(len(local), len(data))
        same = next((i for i in range(shorter) if local[i] != data[i]), shorter)
        self.first_difference = offset + same


@dataclass
class Digest:
    size: int = 0
    sha256: str = ""
    part_md5s: list[str] = field(default_factory=list)
    overflow: int = 0
    first_local_difference: int | None = None
    whole: Checksum | None = None  # of the algorithm asked for


async def _digest(
    store: S3MultipartStore,
    key: str,
    part_sizes: Sequence[int],
    local: Path | None,
    whole: ChecksumAlgorithm | None = None,
) -> Digest:
    sha = hashlib.sha256()
    crc = 0
    parts = PartHasher(part_sizes)
    offset = 0
    with local.open("rb") if local is not None else _NoFile() as handle:
        comparer = LocalComparer(handle) if local is not None else None
        async for chunk in store.iter_object(key):
            sha.update(chunk)
            if whole is not None:
                crc = crc_of(whole, chunk, crc)
            parts.update(chunk)
            if comparer is not None:
                comparer.update(offset, chunk)
            offset += len(chunk)
    return Digest(
        size=offset,
        sha256=sha.hexdigest(),
        part_md5s=parts.digests,
        overflow=parts.overflow,
        first_local_difference=comparer.first_difference if comparer else None,
        whole=Checksum(whole, encode(whole, crc)) if whole is not None else None,
    )


class _NoFile:
    def __enter__(self) -> IO[bytes]:
        return None  # type: ignore[return-value]  # only used when no comparer reads it

    def __exit__(self, *_exc: object) -> None:
        return None


def compare_with_expected(report: VerifyReport, digest: Digest, expected: Expected) -> None:
    src = expected.source
    report.same(f"size in bytes ({src})", digest.size, expected.size)
    if expected.sha256:
        report.same(f"sha256 ({src})", digest.sha256, expected.sha256)
    elif expected.whole is None:
        report.add(f"sha256 ({src})", False, "not recorded, and no whole-object checksum either")
    if expected.whole is not None and digest.whole is not None:
        name = f"{expected.whole.algorithm.value} of the whole object ({src})"
        report.same(name, digest.whole.value, expected.whole.value)
    if not expected.part_sizes:
        return
    md5_parts = all(etag_form(etag) is EtagForm.MD5 for etag in expected.part_etags)
    if md5_parts:
        differing = [
            f"part {n} (bytes {start}-{start + size - 1}): md5 {got or '(missing)'}, ETag {want}"
            for n, start, size, got, want in _parts_table(expected, digest.part_md5s)
            if got != want
        ]
        report.add(
            f"parts ({src})",
            not differing,
            "; ".join(differing) if differing else f"{len(expected.part_sizes)} parts match",
        )
    else:
        report.add(
            f"parts ({src})",
            True,
            f"{len(expected.part_sizes)} parts, not compared: the server's part ETags are not "
            "MD5s (the sha256 covers every byte)",
        )
    # rclone serve s3 names a multipart object by the MD5 of all its bytes, with no "-N".
    whole_md5 = "-" not in expected.etag and len(expected.part_sizes) > 1
    if not md5_parts or whole_md5 or etag_form(expected.etag) is EtagForm.OTHER:
        report.add(
            f"ETag computed from the bytes ({src})",
            True,
            f"not compared: the server's ETag {expected.etag} is not an MD5 of the part MD5s "
            "(the sha256 covers every byte)",
        )
        return
    computed = _etag_from_md5s(digest.part_md5s, expected)
    report.same(f"ETag computed from the bytes ({src})", computed, expected.etag, what="computed")


def _parts_table(
    expected: Expected, md5s: Sequence[str]
) -> list[tuple[int, int, int, str | None, str]]:
    rows = []
    start = 0
    pairs = zip(expected.part_sizes, expected.part_etags, strict=True)
    for index, (size, etag) in enumerate(pairs):
        got = md5s[index] if index < len(md5s) else None
        rows.append((index + 1, start, size, got, etag))
        start += size
    return rows


def _etag_from_md5s(md5s: Sequence[str], expected: Expected) -> str:
    # A single PUT's ETag is the plain MD5; a multipart one is md5-of-md5s "-N".
    if "-" not in expected.etag and len(md5s) == 1:
        return md5s[0]
    return normalize_etag(multipart_etag(list(md5s))) if md5s else "(none)"


def compare_with_local(report: VerifyReport, digest: Digest, path: Path, size: int) -> None:
    report.same("size in bytes (local file)", digest.size, size)
    first = digest.first_local_difference
    if first is None and digest.size == size:
        report.add("bytes (local file)", True, "every byte matches")
    elif first is None:
        report.add("bytes (local file)", False, f"equal up to byte {min(digest.size, size)}")
    else:
        report.add("bytes (local file)", False, f"first different byte at offset {first}")


async def resolve_target(settings: Settings, target: str) -> tuple[StreamRecord | None, str]:
    """(record, note): the stream ``target`` names (its id, a unique prefix of it or its file's
    path: tailup.streamref), if any; AmbiguousStream when it names several."""
    from tailup.status import resolve_stream

    try:
        async with RedisCheckpointStore.for_settings(settings) as cps:
            return await resolve_stream(cps, settings, target), ""
    except CheckpointUnavailable as exc:
        return None, f"Redis is not reachable ({exc}); {target!r} is taken as an object key"
    except StreamNotFound:
        return None, ""


async def _metadata(store: S3MultipartStore, key: str) -> dict[str, Any] | None:
    try:
        if await store.head_object(metadata_key(key)) is None:
            return None
        document: dict[str, Any] = json.loads(await store.get_object(metadata_key(key)))
        return document
    except (StoragePermanentError, ValueError):
        return None


async def verify_target(settings: Settings, target: str) -> VerifyReport:
    record, note = await resolve_target(settings, target)
    if record is None:
        check_storage_settings(settings)
    bucket, key = (record.bucket, record.key) if record else (settings.bucket, target)
    report = VerifyReport(bucket, key)
    if note:
        report.against.append(note)
    if record is not None and record.state is not StreamState.COMPLETED:
        state = record.state.value
        shown = f"{short_id(record.stream_id)} ({record.path})"
        report.add("state", False, f"stream {shown} is {state}, not completed")
        return report
    async with S3MultipartStore.connect(
        bucket, endpoint_url=settings.endpoint_url, region=settings.region
    ) as store:
        await _verify_object(store, report, record)
    return report


async def _verify_object(
    store: S3MultipartStore, report: VerifyReport, record: StreamRecord | None
) -> None:
    info = await store.head_object(report.key)
    if info is None:
        missing = f"no object at s3://{report.bucket}/{report.key}"
        if record is None:
            missing += (
                f", and no stream matches {report.key!r} (a stream id, a unique prefix of one "
                "of at least 4 characters, or a recording's path; see `tailup status`)"
            )
        report.add("object", False, missing)
        return
    document = await _metadata(store, report.key)
    expected = (
        expected_from_metadata(document)
        if document is not None
        else (expected_from_record(record) if record is not None else None)
    )
    local = _local_file(expected.local_path if expected else None)
    if expected is None and local is None:
        report.add("object", False, "no metadata.json, no stream record, no file to compare with")
        return
    report.against += [x for x in (expected and expected.source, local and str(local)) if x]
    whole = expected.whole.algorithm if expected and expected.whole else None
    digest = await _digest(store, report.key, expected.part_sizes if expected else (), local, whole)
    if expected is not None:
        report.same(
            f"ETag in S3 ({expected.source})",
            normalize_etag(info.etag),
            expected.etag,
            what="S3 reports",
        )
        compare_with_expected(report, digest, expected)
    if local is not None:
        compare_with_local(report, digest, local, local.stat().st_size)


def _local_file(name: str | None) -> Path | None:
    # A CLI run, one stat: blocking here holds up nothing else.
    return Path(name) if name and os.path.isfile(name) else None


def print_report(report: VerifyReport, out: IO[str] | None = None) -> None:
    import sys

    stream = out or sys.stdout
    against = ", ".join(report.against) or "nothing"
    print(f"s3://{report.bucket}/{report.key} against {against}", file=stream)
    for check in report.checks:
        mark = "ok     " if check.ok else "DIFFERS"
        print(f"  {mark}  {check.name}: {check.detail}", file=stream)
    failed = sum(not c.ok for c in report.checks)
    verdict = "MATCH" if report.ok else f"DIFFERS ({failed} of {len(report.checks)} checks)"
    print(verdict, file=stream)
