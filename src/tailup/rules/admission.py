"""What now, for a file the supervisor opens: pure. No await, no clock, no uuid, no os.

``decide(facts, where)`` reads the facts gathered so far. When a rule needs a fact that costs
I/O, it returns that question (an ``Ask``), as h11 returns NEED_DATA; the shell answers it and
calls again with the answer added (each question is asked once: the answers are keyed by it).
Once the facts suffice it returns an ``Act``: the commands the shell carries out, in order, and
why. Conditional writes whose result changes the decision (a claim, a key reservation, the
record's creation) are questions too; the unconditional effects are the commands at the end, so
nothing is written for a file this node then declines.

The rules, top to bottom:
1. Another node's shared recording is looked at again later, not now.
2. The file is stat'ed; one that cannot be read is not uploaded (said why).
3. A file judged unchanged already (same inode, birth, size, mtime) costs nothing more.
4. The path's last recording is loaded; the file's identity is judged against it
   (tailup.identity), with its inode generation or first part's bytes where only they tell.
5. Judged the same recording: UNCHANGED finishes a pending after-upload action (only a
   COMPLETED record whose file is unchanged: tailup.rules.records) or is remembered; RESUME
   starts the live stream (a shared folder's after its claim); GREW/RESTART writes the next
   generation and starts it (after an end with nothing in S3, its key claimed again first:
   tailup.rules.keyclaims).
6. Else the recording is looked for by identity, life after life (tailup.identity.stream_id_for):
   a record under that id is this very recording (renamed while tailup was down): it follows to
   this path, then as in 5; unless its stream runs here: the path is a second name (a hard
   link), the stream's alias (N10, tailup.rules.names). A record of another recording that
   ended with nothing in S3 (aborted, skipped; S3 asked) gives its id to this one: a life is
   spent only once S3 holds something of it, since the walk after a Redis loss asks S3 life
   after life and stops at the first life S3 has nothing of.
7. No record: a new one, claimed in a shared folder; S3 is asked only when it may know
   (tailup.recovery.s3_may_know); a key S3 holds for another recording under a unique template
   means the next life; what S3 has whole is recorded, not uploaded; an open upload is adopted;
   else a key is claimed and the stream starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from tailup.identity import (
    FileIdentity,
    FileNow,
    Judgement,
    Seen,
    judge_file,
    needs_generation,
    record_identity,
    stream_id_for,
)
from tailup.model import PartRecord, StreamRecord, StreamState
from tailup.recovery import Finding, Found, s3_may_know
from tailup.rules.keyclaims import claims_key_again
from tailup.rules.records import (
    completed_from_sidecar,
    key_prefix,
    new_record,
    next_generation,
    pending_action_may_run,
)
from tailup.rules.vocabulary import (
    UNASKED,
    Act,
    Alias,
    Ask,
    AskClaim,
    AskCreate,
    AskGeneration,
    AskHead,
    AskHistory,
    AskKey,
    AskRecord,
    AskReserve,
    AskS3,
    AskSha256,
    AskStat,
    Command,
    Facts,
    FinishAfterUpload,
    Look,
    LookLater,
    MoveRecord,
    Note,
    Release,
    Remember,
    Start,
    Unasked,
    Unreadable,
    Where,
    Write,
)

if TYPE_CHECKING:
    from tailup.source import FileStat

T = TypeVar("T")

# Ids derived from one file identity that may belong to other recordings (tailup.identity): past
# this many, a random id (nothing can be found again by identity then, S3 keys still never clash).
MAX_LIVES = 64

__all__ = ["MAX_LIVES", "UNASKED", "decide"]


class _Need(Exception):
    def __init__(self, ask: Ask[Any]) -> None:
        self.ask = ask


def _need(f: Facts, ask: Ask[T]) -> T:
    got = f.get(ask)
    if isinstance(got, Unasked):
        raise _Need(ask)
    return got


# -- the rules ----------------------------------------------------------------------------------


def decide(f: Facts, w: Where) -> Ask[Any] | Act:
    """The next question, or what to do (see the module doc for the rules in order)."""
    try:
        act = _decide(f, w)
    except _Need as need:
        return need.ask
    return _released(f, w, act)


def _released(f: Facts, w: Where, act: Act) -> Act:
    """Every claim this look took for a recording it starts no stream for is given back (a
    recording S3 has whole, a record another event made, a life skipped, another node's):
    kept, it would be renewed forever and hold the recording from every other node (N7)."""
    started = {c.record.stream_id for c in act.commands if isinstance(c, Start)}
    claimed = sorted(
        ask.stream_id for ask, got in f.answers.items() if isinstance(ask, AskClaim) and got is True
    )
    releases = tuple(Release(sid) for sid in claimed if sid not in started and sid not in w.running)
    return Act((*act.commands, *releases), act.why) if releases else act


def _decide(f: Facts, w: Where) -> Act:
    if w.elsewhere_until > w.now_mono:
        return Act((), "another node's recording (a shared folder): looked at again later")
    st = _need(f, AskStat(f.path))
    if isinstance(st, Unreadable):
        note = Note("file cannot be uploaded", (("reason", st.reason),), warn=True)
        return Act((note,), st.reason)
    look = (st.inode, st.birth_ns, st.size, st.mtime_ns)
    if w.unchanged == look:
        # Readers' opens (ours included) arrive as events: without this, each look would load
        # the record again for every open of a finished file.
        return Act((Remember(f.path, look),), "judged unchanged already")
    previous, parts = _need(f, AskHistory(f.path))
    seen = _identity(f, st, previous)
    now = FileNow(seen, st.size, st.mtime_ns)
    judgement = _judge(f, previous, parts, st, now)
    if judgement.seen is Seen.NEW:
        return _open_new(f, w, st, _with_generation(f, st, now), look)
    assert previous is not None
    return _known(f, w, st, now.identity, look, previous, parts, judgement, ())


def _identity(f: Facts, st: FileStat, previous: StreamRecord | None) -> FileIdentity:
    """statx alone, unless only the inode generation can tell (no birth time), which costs an
    open."""
    seen = FileIdentity(st.device, st.inode, st.birth_ns)
    if previous is not None and needs_generation(record_identity(previous), seen):
        generation = _need(f, AskGeneration(f.path, st.inode))
        seen = FileIdentity(st.device, st.inode, st.birth_ns, generation)
    return seen


def _with_generation(f: Facts, st: FileStat, now: FileNow) -> FileNow:
    """A new life's record keeps its generation, for file systems without birth times."""
    if now.identity.generation >= 0:
        return now
    generation = _need(f, AskGeneration(f.path, st.inode))
    seen = FileIdentity(st.device, st.inode, st.birth_ns, generation)
    return FileNow(seen, now.size, now.mtime_ns)


def _judge(
    f: Facts,
    previous: StreamRecord | None,
    parts: dict[int, PartRecord],
    st: FileStat,
    now: FileNow,
) -> Judgement:
    judgement = judge_file(previous, now)
    if judgement.seen is Seen.CHECK_HEAD:
        assert previous is not None
        head = _head_unchanged(f, previous, parts, st)
        judgement = judge_file(previous, now, head_unchanged=head)
    return judgement


def _head_unchanged(
    f: Facts, previous: StreamRecord, parts: dict[int, PartRecord], st: FileStat
) -> bool:
    """Whether the file's first part holds the bytes uploaded as the recording's first part (an
    O_TRUNC rewrite changes them)."""
    size, crc = previous.head_size, previous.head_crc32
    if size <= 0 and 1 in parts:
        size, crc = parts[1].size, parts[1].crc32
    if size <= 0:
        return True  # nothing was uploaded to compare with
    return _need(f, AskHead(f.path, size, crc, st.device, st.inode))


def _claimed(f: Facts, w: Where, record: StreamRecord) -> bool:
    """A shared folder's recording is worked on by the node holding its lease only."""
    if not record.scope.startswith("share:"):
        return True
    return _need(f, AskClaim(record.stream_id))


def _elsewhere(f: Facts, w: Where) -> Act:
    # Its writer's events keep coming here too: not a claim attempt per write. A takeover is
    # the lease round's, not an event's.
    until = w.now_mono + w.lease_ttl_s / 3
    return Act((LookLater(f.path, until),), "another node uploads it")


def _known(
    f: Facts,
    w: Where,
    st: FileStat,
    seen: FileIdentity,
    look: Look,
    previous: StreamRecord,
    parts: dict[int, PartRecord],
    judgement: Judgement,
    before: tuple[Command, ...],
) -> Act:
    """A verdict on a file that has a record (UNCHANGED, RESUME, GREW, RESTART)."""
    verdict = judgement.seen
    if verdict is Seen.UNCHANGED:
        # A SHA-256 cut short comes first: the file must still be there to be hashed (N14).
        sha256_left = previous.sha256_pending and previous.state is StreamState.COMPLETED
        if sha256_left and not _need(f, AskSha256(previous.stream_id)):
            return Act(before, "its SHA-256 is still pending: finished at a later look")
        if pending_action_may_run(previous, st.size, st.mtime_ns):
            # In a shared folder every node sees the file: the one that claims the recording
            # acts (its claim given back after), the others look again later (N1).
            if not _claimed(f, w, previous):
                return _elsewhere(f, w)
            finish = FinishAfterUpload(previous, close_seen=f.writer_closed)
            return Act((*before, finish), "a pending after-upload action")
        return Act((*before, Remember(f.path, look)), judgement.reason)
    if verdict is Seen.RESUME:
        if previous.stream_id in w.running:
            return Act(before, "its stream runs here already")
        if not _claimed(f, w, previous):
            return _elsewhere(f, w)
        note = Note("resuming stream", (("stream_id", previous.stream_id),))
        return Act((*before, note, Start(previous, parts, resumed=True, why="")), judgement.reason)
    assert verdict in (Seen.GREW, Seen.RESTART), verdict
    if not _claimed(f, w, previous):
        return _elsewhere(f, w)
    if seen.generation < 0:
        seen = FileIdentity(
            st.device, st.inode, st.birth_ns, _need(f, AskGeneration(f.path, st.inode))
        )
    record = _key_claimed_again(f, w, previous, next_generation(previous, st, seen, w.now))
    return Act(
        (*before, Write(record), Start(record, {}, resumed=False, why=judgement.reason)),
        judgement.reason,
    )


def _open_new(f: Facts, w: Where, st: FileStat, now: FileNow, look: Look) -> Act:
    """A file its path's record does not describe. Its id comes from its identity: a record
    under that id is this very recording (renamed while tailup was down, or its path entry
    lost), else S3 is asked about it when it may know, else it is new."""
    for life in range(MAX_LIVES):
        stream_id = stream_id_for(w.placement.scope, now.identity, life=life)
        loaded = _need(f, AskRecord(stream_id))
        if loaded is not None:
            known, known_parts = loaded
            judgement = _judge(f, known, known_parts, st, now)
            if judgement.seen is Seen.NEW:
                taken = _take_over(f, w, st, now.identity, known, judgement)
                if taken is None:
                    continue  # another recording's id
                return taken
            before: tuple[Command, ...] = ()
            if known.path != str(f.path):
                if known.stream_id in w.running:
                    # Its stream runs here under its own name (a hard link): the record stays
                    # with the stream, never moved under it; the name is its alias, which
                    # carries it on if its own name goes (N10, tailup.rules.names).
                    alias = Alias(known.stream_id, f.path, closed=f.writer_closed)
                    return Act((alias,), "a second name of a recording whose stream runs here")
                before = (MoveRecord(known, f.path),)
                known = known.with_changes(path=str(f.path), path_ended=False)
            return _known(f, w, st, now.identity, look, known, known_parts, judgement, before)
        record = new_record(w.defaults, w.placement, f.path, st, now.identity, stream_id, w.now)
        if not _claimed(f, w, record):
            return _elsewhere(f, w)
        finding = _s3_finding(f, w, record, st)
        if finding.found is Found.OTHER and w.unique_template:
            continue  # the key holds another recording: the next id
        return _create_found(f, w, record, st, finding)
    record = new_record(w.defaults, w.placement, f.path, st, now.identity, w.fresh_id, w.now)
    return _create_found(f, w, record, st, Finding(Found.NOTHING, ""))


def _take_over(
    f: Facts, w: Where, st: FileStat, seen: FileIdentity, known: StreamRecord, judged: Judgement
) -> Act | None:
    """This recording takes over the id of an ended one S3 holds nothing of (its upload aborted
    when its file was rewritten, moved away, or aborted by an operator; an empty file): a new
    record written over that one; its key is the id's, claimed again where keys are claimed
    (the ended recording gave its claim back: another may hold the key now, and then it gets
    the first free one), or under a template unique by construction the one its name and time
    give now. None: the id is spent, the walk goes on.

    An id is spent only once S3 holds something at its key: after Redis lost its data, a
    recording is found by asking S3 about its identity's ids life after life, and that walk
    stops at the first life S3 has nothing of. A life passed over here would hide every later
    one: the recording would be uploaded again under this life's key. A completed recording's
    object is taken to be in S3 (one deleted behind tailup's back is not looked for: that would
    cost a lookup at every rewrite of a finished file)."""
    if known.state not in (StreamState.ABORTED, StreamState.SKIPPED):
        return None  # completed; or live or failed: its upload may be open still
    if known.stream_id in w.running:
        return None
    if not _claimed(f, w, known):
        return _elsewhere(f, w)  # another node is at this identity's recordings
    # The object is checked whatever the template: an earlier generation's may be there.
    held = _need(f, AskS3(known.key, known.stream_id, st.size, st.mtime_ns, True))
    if held.found is not Found.NOTHING:
        return None
    fresh = new_record(w.defaults, w.placement, f.path, st, seen, known.stream_id, w.now)
    if w.unique_template and fresh.key != known.key:
        # Its key is the id's own either way: the one its name and start time give now.
        got = _need(f, AskKey(fresh.key, fresh.stream_id, w.check_keys))
        key, key_pending = (fresh.key, True) if got is None else (got, False)
        fresh = fresh.with_changes(key=key, key_pending=key_pending)
    else:
        # The id's key, empty in S3; where keys are claimed, claimed again first: the ended
        # recording gave its claim back (tailup.rules.keyclaims).
        fresh = _key_claimed_again(
            f, w, known, fresh.with_changes(key=known.key, key_pending=known.key_pending)
        )
    # A first generation: its completion lands only on a free key (If-None-Match), as any new
    # recording's (a later one's would replace what it takes for its own earlier object).
    record = fresh.with_changes(note=_taken_from(known))
    why = f"{judged.reason}; it takes over the id of an ended recording S3 holds nothing of"
    fields = (*_named(record, why), ("was", known.state.value), ("was_path", known.path))
    note = Note("stream id taken over from a recording S3 holds nothing of", fields)
    return Act((note, Write(record), Start(record, {}, resumed=False, why=why)), why)


def _key_claimed_again(
    f: Facts, w: Where, previous: StreamRecord, record: StreamRecord
) -> StreamRecord:
    """``record``, made from the ended ``previous`` under its key, with that key claimed again
    where its claim may be gone (tailup.rules.keyclaims): kept when free or still its own, else
    the first free key, else pending (the stream claims one as its first step and fails
    visibly). Never two records on one key."""
    if not claims_key_again(previous, check_keys=w.check_keys):
        return record
    holder = _need(f, AskReserve(record.key, record.stream_id))
    if holder is None:
        return record
    got = _need(f, AskKey(record.key, record.stream_id, True))
    return record.with_changes(key_pending=True) if got is None else record.with_changes(key=got)


def _taken_from(known: StreamRecord) -> str:
    """What `status` keeps of the recording whose record the new one is written over."""
    said = f": {known.error}" if known.error else ""
    return (
        f"took over the id of an earlier recording ({known.path}, {known.state.value} with "
        f"nothing in S3{said})"
    )


def _s3_finding(f: Facts, w: Where, record: StreamRecord, st: FileStat) -> Finding:
    may_know = s3_may_know(
        born_ns=record.birth_ns or st.mtime_ns,
        started_ns=w.started_ns,
        now_ns=w.now_ns,
        keep_records_s=w.keep_records_s,
        redis_lost=w.redis_lost,
    )
    if not may_know:
        return Finding(Found.NOTHING, "a file born since tailup started")
    prefix = key_prefix(w.defaults, w.placement, f.path, record.stream_id, w.now)
    ask = AskS3(record.key, record.stream_id, st.size, st.mtime_ns, w.check_keys, prefix)
    return _need(f, ask)


def _create_found(f: Facts, w: Where, record: StreamRecord, st: FileStat, finding: Finding) -> Act:
    """Record (and start, unless S3 has it whole) a new recording after the S3 lookup. The key
    is claimed here, not before: a claim's HEAD would take the recording's own object for
    another one's."""
    sid = record.stream_id
    if finding.key:
        record = record.with_changes(key=finding.key)  # renamed since it was uploaded
    if finding.found in (Found.COMPLETED, Found.IN_FLIGHT):
        holder = _need(f, AskReserve(record.key, sid))
        if holder is not None:
            finding = Finding(Found.OTHER, f"stream {holder} holds its key")
    if finding.found is Found.COMPLETED:
        done = completed_from_sidecar(record, st, finding.sidecar or {}, w.now)
        if not _need(f, AskCreate(sid, done)):
            return Act((), "another event recorded it meanwhile")
        note = Note("recording already in S3: not uploaded again", _named(done, finding.reason))
        return Act((note,), finding.reason)
    if finding.found is Found.IN_FLIGHT:
        adopted = finding.adopt(record)
        if not _need(f, AskCreate(sid, adopted)):
            return Act((), "another event made it meanwhile")
        fields = (*_named(adopted, finding.reason), ("upload_id", finding.upload_id))
        note = Note("open upload adopted from S3", fields)
        return Act((note, Start(adopted, {}, resumed=True, why="")), finding.reason)
    # OTHER: the key is another recording's, and claim_key suffixes it even where the template
    # is otherwise unique; NOTHING: the usual claim.
    check = finding.found is Found.OTHER or w.check_keys
    key = _need(f, AskKey(record.key, sid, check))
    # No free key: the stream claims one as its first step, so that the failure is the stream's
    # (in `status`, reached by `retry`), not a dropped event (N4).
    fresh = record.with_changes(key_pending=True) if key is None else record.with_changes(key=key)
    if not _need(f, AskCreate(sid, fresh)):
        return Act((), "another event made it meanwhile")
    why = finding.reason or "a new recording"
    return Act((Start(fresh, {}, resumed=False, why=why),), why)


def _named(record: StreamRecord, why: str) -> tuple[tuple[str, str], ...]:
    return (
        ("stream_id", record.stream_id),
        ("path", record.path),
        ("key", record.key),
        ("why", why),
    )
