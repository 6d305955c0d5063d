"""`tailup salvage`, one upload at a time: S3's parts made into an object (the decisions are
tailup.rules.salvage; finding the uploads is tailup.salvagefind).

The order makes a second run change nothing, and a run cut short finish the first one's work:
the upload is completed (If-None-Match where the key was free), then metadata.json written
(saying ``salvaged``, with the upload id), then, where it names no whole-object checksum that
`tailup verify` can check the bytes against (a part's CRC unknown: Redis never checkpointed it,
SeaweedFS lists none), the object read back (one GET of it) and its SHA-256 written into
metadata.json, then the record set SALVAGED (with that SHA-256), then the upload card deleted.
A run that finds the upload gone and a salvaged metadata.json naming it at the key finishes
the SHA-256 if it is missing, then the record; one that finds the record SALVAGED, or no open
upload, changes nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tailup import permissions
from tailup.checkpoint import CheckpointStore
from tailup.checksums import (
    NO_CHECKSUM,
    Checksum,
    ChecksumAlgorithm,
    part_checksum,
    stored_checksum,
)
from tailup.errors import AccessRefused, KeyTaken, NoSuchUpload, StoragePermanentError, TailupError
from tailup.integrity import crc32_of
from tailup.keys import metadata_key
from tailup.model import SALVAGEABLE_STATES, PartRecord, StreamRecord, StreamState, iso
from tailup.plan import PartPlan
from tailup.rpo import StitchPlan, TailSegment, delete_tails, list_tails, read_pieces, stitch_plan
from tailup.rules.salvage import (
    MIN_PART_BYTES,
    AtKey,
    Listed,
    PartChoice,
    Place,
    Playability,
    choose_parts,
    choose_target,
    judge_playability,
    upload_age_s,
)
from tailup.s3 import MultipartStore, UploadedPart
from tailup.salvagedoc import reads_back, salvaged_document, sha256_wanted
from tailup.stream.sha256after import put_metadata, sha256_of_stored
from tailup.uploadcard import card_key

# What is read of a salvaged MP4/MOV to tell whether it is fragmented (its first boxes).
HEAD_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class Candidate:
    """An open upload to salvage: its record (from Redis, or from its upload card) and the
    parts Redis checkpointed ({} from S3 alone)."""

    record: StreamRecord
    parts: dict[int, PartRecord] = field(default_factory=dict)
    initiated: datetime | None = None
    from_card: bool = False


@dataclass
class Row:
    """One line of salvage's report."""

    stream_id: str
    key: str
    outcome: str  # salvaged, would salvage, skipped, failed
    parts: str = ""  # "3/4": used / held in S3
    size_bytes: int = 0
    age_s: float | None = None
    why: str = ""


@dataclass(frozen=True, slots=True)
class _Plan:
    choice: PartChoice
    listed: list[UploadedPart]
    conditional: bool  # If-None-Match: the key was free
    why: str  # what is left out, or where it goes, if anything
    # --rpo: the upload's staged tail segments, and how they extend the parts (None: they
    # do not, or there are none).
    tails: list[TailSegment] = dataclasses.field(default_factory=list)
    stitch: StitchPlan | None = None


async def _list_tails(store: MultipartStore, record: StreamRecord) -> list[TailSegment]:
    """--rpo's staged segments of the upload; none where s3:ListBucket (optional) is refused."""
    try:
        return await list_tails(store, record.key, record.upload_id)
    except AccessRefused as exc:
        permissions.refused("s3:ListBucket", str(exc))
        return []


def _stitch_plan(
    choice: PartChoice, tails: list[TailSegment], plan: PartPlan | None
) -> StitchPlan | None:
    """How the segments extend the parts chosen, if they do: only past a last part that is
    whole (one shorter than its plan is where the recording ended, as finalized)."""
    if not tails:
        return None
    if choice.parts:
        last = choice.parts[-1]
        whole = plan.part_size(last.number) if plan is not None else MIN_PART_BYTES
        if last.size < whole:
            return None
    stitch = stitch_plan([(p.number, p.size) for p in choice.parts], tails)
    return stitch if stitch.final_parts else None


async def _drop_tails(store: MultipartStore, record: StreamRecord, known: list[TailSegment]) -> str:
    """The upload's staged segments, deleted once it is completed (tailup.rpo); "" or what
    went wrong, for the report."""
    try:
        await delete_tails(store, record.key, record.upload_id, known)
    except AccessRefused as exc:
        permissions.refused(exc.action, str(exc))
    except TailupError as exc:
        return f"; its --rpo tail segments were not deleted: {exc}"
    return ""


def _part_plan(record: StreamRecord) -> PartPlan | None:
    """The stream's part plan; None if its record names none tailup makes (then only S3's
    5 MiB rule is checked)."""
    try:
        return PartPlan(record.base_part_size, record.part_sizing)
    except ValueError:
        return None


class Salvager:
    def __init__(
        self,
        store: MultipartStore,
        checkpoints: CheckpointStore | None,
        *,
        now: datetime,
        dry_run: bool,
        older_than_s: float = 0.0,
    ) -> None:
        self._store = store
        self._checkpoints = checkpoints
        self._now = now
        self._dry_run = dry_run
        self._older_than_s = older_than_s

    async def salvage(self, candidate: Candidate) -> Row:
        record = candidate.record
        store = self._store.for_bucket(record.bucket)
        row = Row(record.stream_id, record.key, "skipped")
        plan = await self._plan(store, candidate, row)
        if plan is None:
            return row  # row.why says why not
        if self._dry_run:
            row.outcome = "would salvage"
            row.why = plan.why or judge_playability(record.key, None).why
            if reads_back(candidate, plan.choice):
                row.why += f"; would read it back for its SHA-256 ({_read_cost(row.size_bytes)})"
            return row
        try:
            candidate, plan = await self._stitch(store, candidate, plan)
            etag = await self._complete(store, candidate, plan)
        except KeyTaken:
            row.outcome, row.why = "failed", "an object appeared at its key meanwhile: kept"
            return row
        playable = judge_playability(record.key, await _head(store, record.key))
        document = salvaged_document(candidate, plan.choice, etag, playable, plan.why, self._now)
        # Written before the object is read back: a run cut short meanwhile leaves a salvaged
        # metadata.json naming the upload, from which the next run finishes (_upload_gone).
        await put_metadata(store, record, document)
        try:
            read_back = await _read_back(store, record, document)
        except TailupError as exc:
            row.outcome = "failed"
            row.why = f"completed, but its SHA-256 was not read back ({exc}): the next run does it"
            return row
        sha256_hex = str(document["checksums"]["sha256"])
        row.why = await self._record(candidate, plan.choice, etag, plan.why, playable, sha256_hex)
        row.why += read_back
        row.outcome = "salvaged"
        await _drop_card(store, record.key)
        row.why += await _drop_tails(store, record, plan.tails)
        return row

    async def _plan(self, store: MultipartStore, candidate: Candidate, row: Row) -> _Plan | None:
        """What S3 holds of the upload, and what to make of it; None (``row.why`` says why)
        when nothing is to be made."""
        record = candidate.record
        try:
            listed = await store.list_parts(record.key, record.upload_id)
        except NoSuchUpload:
            row.why = await self._upload_gone(store, candidate)
            return None
        row.age_s = self._age_s(candidate, listed)
        if row.age_s is not None and row.age_s < self._older_than_s:
            row.why = f"a part arrived {row.age_s:.0f} s ago: younger than --older-than"
            return None
        hints = {n: p.etag for n, p in candidate.parts.items()}
        parts = [Listed(p.number, p.etag, p.size) for p in listed]
        choice = choose_parts(parts, _part_plan(record), hints)
        tails = await _list_tails(store, record)
        stitch = _stitch_plan(choice, tails, _part_plan(record))
        stitched = f"+{len(stitch.final_parts)}" if stitch else ""  # parts made of segments
        row.parts = f"{len(choice.parts)}{stitched}/{len({p.number for p in listed})}"
        row.size_bytes = stitch.end_bytes if stitch else choice.size_bytes
        if not choice.parts and stitch is None:
            row.why = choice.why
            return None
        at_key = await store.head_object(record.key)
        target = choose_target(
            AtKey(at_key.size, at_key.etag) if at_key else None, [record.etag], row.size_bytes
        )
        if not target.completes:
            row.why = target.why
            return None
        staged = (
            f"{stitch.end_bytes - stitch.parts_bytes} bytes past the parts from --rpo's staged "
            "tail segments"
            if stitch
            else ""
        )
        said = (choice.why, staged, "" if target.place is Place.FREE else target.why)
        why = "; ".join(w for w in said if w)
        return _Plan(choice, listed, target.conditional, why, tails, stitch)

    async def _stitch(
        self, store: MultipartStore, candidate: Candidate, plan: _Plan
    ) -> tuple[Candidate, _Plan]:
        """--rpo: the staged tail segments past the parts, uploaded as the last part(s)
        (tailup.rpo's contract); the candidate and plan then name those parts too."""
        if plan.stitch is None:
            return candidate, plan
        record, algorithm = candidate.record, candidate.record.checksum
        known, chosen, listed = dict(candidate.parts), list(plan.choice.parts), list(plan.listed)
        for pieces in plan.stitch.final_parts:
            number = chosen[-1].number + 1 if chosen else 1
            body = await read_pieces(store, pieces)
            crc, stored = crc32_of(body), stored_checksum(algorithm, body)
            checksum = part_checksum(algorithm, crc, stored)
            etag = await store.upload_part(
                record.key, record.upload_id, number, body, crc, checksum=checksum
            )
            known[number] = PartRecord(number, len(body), crc, etag, checksum=stored)
            chosen.append(Listed(number, etag, len(body)))
            sent = None if algorithm is ChecksumAlgorithm.NONE else checksum
            listed.append(UploadedPart(number, etag, len(body), None, sent))
        used = {p.number for p in chosen}
        left_out = tuple(n for n in plan.choice.left_out if n not in used)
        choice = PartChoice(tuple(chosen), left_out, plan.choice.why)
        return (
            dataclasses.replace(candidate, parts=known),
            dataclasses.replace(plan, choice=choice, listed=listed),
        )

    def _age_s(self, candidate: Candidate, listed: list[UploadedPart]) -> float | None:
        stamps = [p.last_modified.timestamp() for p in listed if p.last_modified is not None]
        if candidate.initiated is None and not stamps:
            return None
        initiated = candidate.initiated.timestamp() if candidate.initiated else min(stamps)
        return upload_age_s(initiated, stamps, self._now.timestamp())

    async def _complete(
        self,
        store: MultipartStore,
        candidate: Candidate,
        plan: _Plan,
    ) -> str:
        """Completed with the checkpoint's checksums where it has every part chosen (AWS wants
        them named for a COMPOSITE upload), else with those ListParts names (AWS, moto), else
        none (SeaweedFS names none; a FULL_OBJECT upload, the kind tailup creates, needs
        none)."""
        algorithm, choice = candidate.record.checksum, plan.choice
        known = [candidate.parts.get(p.number) for p in choice.parts]
        hinted = all(
            k is not None and _same(k.etag, p.etag)
            for k, p in zip(known, choice.parts, strict=True)
        )
        sums: list[Checksum] = []
        tuples: list[tuple[int, str, int]] = []
        for part, recorded in zip(choice.parts, known, strict=True):
            crc = recorded.crc32 if hinted and recorded is not None else 0
            tuples.append((part.number, part.etag, crc))
            checksum = recorded.checksum if recorded is not None else ""
            sums.append(part_checksum(algorithm, crc, checksum) if hinted else NO_CHECKSUM)
        if not hinted:
            sums = _listed_checksums(choice, plan.listed, algorithm) or sums
        record = candidate.record
        return await store.complete_upload(
            record.key, record.upload_id, tuples, if_none_match=plan.conditional, checksums=sums
        )

    async def _record(
        self,
        candidate: Candidate,
        choice: PartChoice,
        etag: str,
        why: str,
        playable: Playability,
        sha256_hex: str,
    ) -> str:
        """The record set SALVAGED (written anew when Redis had none but answers)."""
        salvaged, first = candidate.record, candidate.parts.get(1)
        fields: dict[str, Any] = {
            "final_size": choice.size_bytes,
            "etag": etag,
            "sha256": sha256_hex,
            "completed_at": iso(self._now),
            "head_size": choice.parts[0].size,
            "head_crc32": first.crc32 if first is not None else 0,
            "error": "",
            "note": f"salvaged: {choice.size_bytes} bytes in {len(choice.parts)} part(s)"
            + (f"; {why}" if why else "")
            + f"; plays truncated: {playable.plays.value}",
        }
        if self._checkpoints is None:
            return f"{fields['note']} (no Redis: no record written)"
        if candidate.from_card and await self._checkpoints.load(salvaged.stream_id) is None:
            ended = salvaged.with_changes(state=StreamState.SALVAGED, **fields)
            await self._checkpoints.create(ended)
            return f"{fields['note']} (record written anew)"
        refused = await self._checkpoints.set_state(
            salvaged.stream_id, StreamState.SALVAGED, allowed_from=SALVAGEABLE_STATES, **fields
        )
        if refused is not None:
            return f"{fields['note']} (its record is {refused.value} meanwhile: left so)"
        return str(fields["note"])

    async def _upload_gone(self, store: MultipartStore, candidate: Candidate) -> str:
        """The upload is no longer open: a run cut short after its Complete (the salvaged
        metadata.json at the key names it: the record is finished), or someone else's."""
        record = candidate.record
        try:
            document = json.loads(await store.get_object(metadata_key(record.key)))
        except (StoragePermanentError, ValueError):
            document = None
        salvage = document.get("salvage") if isinstance(document, dict) else None
        if not isinstance(salvage, dict) or salvage.get("upload_id") != record.upload_id:
            return "its upload is no longer open (completed or aborted)"
        assert isinstance(document, dict)
        if self._dry_run:
            unread = sha256_wanted(document)
            return "salvaged already (its record is not marked yet" + (
                ", its SHA-256 not read back yet)" if unread else ")"
            )
        # Cut short before its SHA-256 was read back: read now, the record to carry it too.
        read_back = await _read_back(store, record, document)
        if self._checkpoints is None:
            return "salvaged already (its record is not marked yet)" + read_back
        await self._checkpoints.set_state(
            record.stream_id,
            StreamState.SALVAGED,
            allowed_from=SALVAGEABLE_STATES,
            final_size=int(salvage.get("bytes") or 0),
            etag='"' + str(document["checksums"]["multipart_etag"]) + '"',
            sha256=str(document["checksums"].get("sha256") or ""),
            completed_at=str(salvage.get("salvaged_at") or iso(self._now)),
            note="salvaged (its record marked by a later run)",
        )
        await _drop_card(store, record.key)
        dropped = await _drop_tails(store, record, [])
        return "salvaged already: its record is marked now" + read_back + dropped


async def _read_back(store: MultipartStore, record: StreamRecord, document: dict[str, Any]) -> str:
    """metadata.json's SHA-256, of the object read back from S3, where it names nothing else
    that checks every byte (salvagedoc.sha256_wanted): one GET of the object, streamed. "" when
    nothing was read, else what the report says of it."""
    if not sha256_wanted(document):
        return ""
    expected_bytes = int(document.get("size_bytes") or 0)
    sha256_hex, got_bytes = await sha256_of_stored(store, record.key)
    if got_bytes != expected_bytes:
        # Not the object salvage made (replaced since): its hash would vouch for other bytes.
        return f"; no SHA-256: the object read back is {got_bytes} bytes, not {expected_bytes}"
    document["checksums"]["sha256"] = sha256_hex
    await put_metadata(store, record, document)
    return f"; its SHA-256 read back from S3 ({_read_cost(expected_bytes)})"


def _read_cost(size_bytes: int) -> str:
    return f"one GET of {size_bytes} bytes: no whole-object checksum to verify it by"


def _listed_checksums(
    choice: PartChoice, listed: list[UploadedPart], algorithm: ChecksumAlgorithm
) -> list[Checksum] | None:
    """The chosen parts' checksums as ListParts named them, if it named every one's."""
    named = {(p.number, p.etag): p.checksum for p in listed}
    sums = [named.get((p.number, p.etag)) for p in choice.parts]
    found = [s for s in sums if s is not None and s.algorithm is algorithm]
    return found if len(found) == len(sums) else None


def _same(a: str, b: str) -> bool:
    return a.strip('"') == b.strip('"')


async def _head(store: MultipartStore, key: str) -> bytes | None:
    """The object's first bytes (MP4/MOV only: whether it is fragmented), None if unread."""
    if judge_playability(key, None).container != "mp4":
        return None
    reader = getattr(store, "iter_object", None)
    if reader is None:
        return None
    chunks = reader(key, HEAD_BYTES)
    try:
        return bytes(await anext(chunks, b""))
    except TailupError:
        return None
    finally:
        await chunks.aclose()  # the rest of the object is not read


async def _drop_card(store: MultipartStore, key: str) -> None:
    # s3:DeleteObject is optional: the card of an upload no longer open is ignored.
    with contextlib.suppress(AccessRefused):
        await store.delete_object(card_key(key))
