"""A stateful property test of tailup's pure core (tailup.rules): hypothesis drives a model of
one daemon's world (files, writers, Redis records, S3 objects) through random sequences of what
deployments do, and the core (admission.decide, the record factories, the writer rules, the
after-outcome rules) decides every step, as the supervisor's shell would ask it.

After every step it checks: nothing deleted under a writer that might be live; no recording
overwritten by another; none uploaded twice (one version of one recording under two keys); and,
at a settle (every writer closed, every event looked at), none lost: every file's final bytes
are in S3.

The model plays the shell and the streams, simply: a stream uploads its file's bytes when it
finalizes (on idle, or after its writer's close), and runs the after-upload action (delete) as
tailup.afterupload does. Examples: TAILUP_HYPOTHESIS_EXAMPLES (default 30; a longer run raises it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from tailup.checksums import ChecksumAlgorithm
from tailup.identity import FileIdentity, Life, record_identity, same_life
from tailup.model import EndCause, StreamRecord, StreamState
from tailup.plan import PartSizing
from tailup.recovery import Finding, Found
from tailup.rules.admission import decide
from tailup.rules.names import Search, name_gone, resume_at
from tailup.rules.outcomes import Settled, after_look
from tailup.rules.records import Placement, RecordDefaults
from tailup.rules.vocabulary import (
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
    AskStat,
    Facts,
    FinishAfterUpload,
    LookLater,
    MoveRecord,
    Note,
    Release,
    Remember,
    Start,
    Unreadable,
    Where,
    Write,
)
from tailup.rules.writers import Sight, may_act, seen_writer_open
from tailup.source import FileStat

EXAMPLES = int(os.environ.get("TAILUP_HYPOTHESIS_EXAMPLES", "30"))
ROOT = Path("/rec")
NAMES = [ROOT / n for n in ("a.ts", "b.ts", "c.ts")]
NOW = datetime(2026, 12, 7, tzinfo=UTC)
DEFAULTS = RecordDefaults(
    bucket="b",
    key_template="{stream_id}/{relpath}",
    prefix="",
    part_size=5 << 20,
    part_sizing=PartSizing.GROWING,
    checksum=ChecksumAlgorithm.CRC32,
    hostname="h",
    node_id="n1",
)
DEPLOYMENTS = {
    "host": Sight(proc_sees_all=True),
    "container": Sight(proc_sees_all=False),
    "share": Sight(proc_sees_all=True, shared=True),
    "poll": Sight(proc_sees_all=True, polling=True),
}


@dataclass
class Inode:
    number: int
    birth: int
    gen: int  # the inode generation: another for a reused inode number, kept by O_TRUNC
    life: int  # the recording this inode holds now (an O_TRUNC rewrite starts another)
    data: tuple[int, ...] = ()  # chunks written, each a unique token
    mtime: int = 0
    writer: bool = False

    def stat(self) -> FileStat:
        return FileStat(len(self.data), self.mtime, 1, self.number, self.birth)

    def identity(self) -> FileIdentity:
        return FileIdentity(1, self.number, self.birth, self.gen)


@dataclass
class Stream:
    sid: str
    path: Path
    close_seen: bool = False


@dataclass
class World:
    sight: Sight
    files: dict[Path, Inode] = field(default_factory=dict)
    records: dict[str, StreamRecord] = field(default_factory=dict)
    path_index: dict[Path, str] = field(default_factory=dict)
    objects: dict[str, tuple[int, tuple[int, ...], int]] = field(default_factory=dict)
    running: dict[str, Stream] = field(default_factory=dict)
    aliases: dict[str, set[Path]] = field(default_factory=dict)  # a running stream's other names
    foreign_claims: set[str] = field(default_factory=set)
    elsewhere: dict[Path, float] = field(default_factory=dict)
    clock: int = 1
    started: int = 0
    redis_lost: bool = False
    violations: list[str] = field(default_factory=list)

    def tick(self) -> int:
        self.clock += 1
        return self.clock


class CoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.w = World(DEPLOYMENTS["host"])
        self.next_inode = 100
        self.next_life = 1
        self.next_token = 1
        self.fs_keeps_birth = True

    @initialize(deployment=st.sampled_from(sorted(DEPLOYMENTS)), birth=st.booleans())
    def deploy(self, deployment: str, birth: bool) -> None:
        self.w.sight = DEPLOYMENTS[deployment]
        self.fs_keeps_birth = birth

    # -- the shell, played by the model ------------------------------------------------------

    @property
    def close_events(self) -> bool:
        """inotify's CLOSE_WRITE reaches this daemon (not under --poll; a shared folder's
        writers are on other hosts)."""
        return not (self.w.sight.polling or self.w.sight.shared)

    def proc_sees(self, inode: Inode) -> bool | None:
        """The raw /proc answer: only a host sees the writer (they are outside otherwise)."""
        if self.w.sight.sees_every_writer:
            return inode.writer
        return False  # a writer out of sight looks like none

    def where(self, path: Path) -> Where:
        scope = "share:nas" if self.w.sight.shared else "node:n1"
        until = self.w.elsewhere.get(path, 0.0)
        return Where(
            placement=Placement(ROOT, "rec", scope),
            shared=self.w.sight.shared,
            defaults=DEFAULTS,
            now=NOW,
            now_ns=self.w.clock,
            now_mono=float(self.w.clock),
            started_ns=self.w.started,
            fresh_id=f"fresh{self.w.tick()}",
            redis_lost=self.w.redis_lost,
            keep_records_s=0,
            lease_ttl_s=3.0,
            unique_template=True,
            check_keys=False,
            running=frozenset(self.w.running),
            elsewhere_until=until if until > self.w.clock else 0.0,
        )

    def answer(self, ask: Ask[Any]) -> object:
        w = self.w
        match ask:
            case AskStat(path):
                inode = w.files.get(path)
                return inode.stat() if inode else Unreadable("gone")
            case AskHistory(path):
                sid = w.path_index.get(path)
                record = w.records.get(sid) if sid else None
                if record is None or record.path != str(path):
                    return (None, {})
                return (record, {})
            case AskGeneration(path, _):
                inode = w.files.get(path)
                return inode.gen if inode else -1
            case AskHead(path, size, crc, _, _):
                inode = w.files.get(path)
                return inode is not None and (inode.life, size) == self.head_of(crc)
            case AskRecord(sid):
                record = w.records.get(sid)
                return (record, {}) if record else None
            case AskClaim(sid):
                return sid not in w.foreign_claims
            case AskS3(key, _, size, mtime, _, prefix):
                if key in w.objects:
                    return self.s3_has(key, size, mtime)
                # Under the name it was uploaded as: tailup.recovery.look_up's listing.
                moved = sorted(k for k in w.objects if prefix and k.startswith(prefix))
                found = [self.s3_has(k, size, mtime) for k in moved]
                whole = [f for f in found if f.found is Found.COMPLETED]
                if whole or found:
                    return whole[0] if whole else Finding(Found.OTHER, "another version")
                return Finding(Found.NOTHING, "nothing")
            case AskReserve(_, _):
                return None
            case AskKey(key, _, _):
                return key
            case AskCreate(sid, record):
                if sid in w.records:
                    return False
                w.records[sid] = record
                w.path_index[Path(record.path)] = sid
                return True
        raise AssertionError(ask)

    def s3_has(self, key: str, size: int, mtime: int) -> Finding:
        _, data, got_mtime = self.w.objects[key]
        if (len(data), got_mtime) == (size, mtime):
            sidecar = {"generation": 1, "parts": [{"size_bytes": len(data), "crc32": "0"}]}
            return Finding(Found.COMPLETED, "whole", sidecar=sidecar, key=key)
        return Finding(Found.OTHER, "another version")

    def head_of(self, crc: int) -> tuple[int, int]:
        return divmod(crc, 1 << 20)  # (life, size): the model's "CRC" of a first part

    def open(self, path: Path, *, writer_closed: bool) -> None:
        """What the supervisor's Opening does: ask the core, answer, carry out."""
        if path not in self.w.files:
            return
        facts = Facts(path, writer_closed)
        where = self.where(path)
        for _ in range(1000):
            step = decide(facts, where)
            if isinstance(step, Act):
                self.carry_out(step, path, writer_closed)
                return
            facts = facts.answered(step, self.answer(step))
        raise AssertionError("the core never acted")

    def carry_out(self, act: Act, path: Path, writer_closed: bool) -> None:
        w = self.w
        for command in act.commands:
            match command:
                case Start(record, _, _, _):
                    w.records[record.stream_id] = record
                    w.path_index[path] = record.stream_id
                    w.running[record.stream_id] = Stream(record.stream_id, path, writer_closed)
                case Write(record):
                    w.records[record.stream_id] = record
                case MoveRecord(record, new):
                    w.records[record.stream_id] = record.with_changes(path=str(new))
                    w.path_index[new] = record.stream_id
                case LookLater(at, until):
                    w.elsewhere[at] = until
                case Alias(sid, at, closed):
                    w.aliases.setdefault(sid, set()).add(at)
                    inode = w.files.get(at)
                    if closed and inode is not None and not inode.writer and sid in w.running:
                        w.running[sid].close_seen = True  # the close check found no writer
                        self.finalize(w.running[sid])
                case FinishAfterUpload(record, close_seen):
                    self.after_upload(record.stream_id, path, close_seen)
                case Remember() | Note() | Release():
                    pass

    def after_upload(self, sid: str, path: Path, close_seen: bool) -> bool:
        """tailup.afterupload.run_after_upload with --after-upload delete."""
        inode = self.w.files.get(path)
        if inode is None:
            return True
        raw = self.proc_sees(inode)
        if not may_act(
            close_seen=close_seen, writer_open=raw, proc_sees_all=self.w.sight.sees_every_writer
        ):
            return False
        if inode.writer:
            self.w.violations.append(f"{path} deleted under its live writer")
        record = self.w.records[sid]
        got = self.w.objects.get(record.key)
        if got is None or got[:2] != (inode.life, inode.data):
            self.w.violations.append(f"{path} deleted though S3 has not got it whole")
        del self.w.files[path]
        self.w.records[sid] = record.with_changes(after_upload_pending=False)
        return True

    def finalize(self, stream: Stream) -> None:
        """A stream's finalize: its file's bytes become the object at its key."""
        w = self.w
        del w.running[stream.sid]
        w.aliases.pop(stream.sid, None)
        record = w.records[stream.sid]
        inode = w.files.get(stream.path)
        if inode is None:
            w.records[stream.sid] = record.with_changes(
                state=StreamState.ABORTED, end_cause=EndCause.SOURCE_GONE
            )
            return
        if not inode.data:
            w.records[stream.sid] = record.with_changes(state=StreamState.SKIPPED)
            return
        self.put(record.key, inode, record.generation)
        head = inode.life * (1 << 20) + min(len(inode.data), 1)
        done = record.with_changes(
            state=StreamState.COMPLETED,
            final_size=len(inode.data),
            final_mtime_ns=inode.mtime,
            head_size=min(len(inode.data), 1),
            head_crc32=head,
            total_bytes_sent=len(inode.data),
            after_upload_pending=True,
        )
        w.records[stream.sid] = done
        if self.after_upload(stream.sid, stream.path, stream.close_seen):
            return
        # COMPLETED_WRITER_OPEN: the completion lingers (tailup.rules.outcomes).
        if stream.close_seen:
            self.open(stream.path, writer_closed=True)

    def put(self, key: str, inode: Inode, generation: int) -> None:
        got = self.w.objects.get(key)
        if got is not None and got[0] != inode.life:
            self.w.violations.append(f"{key}: recording {got[0]} overwritten by {inode.life}")
        elif got is not None and inode.data[: len(got[1])] != got[1]:
            self.w.violations.append(f"{key}: replaced by bytes that do not continue it")
        self.w.objects[key] = (inode.life, inode.data, inode.mtime)

    def linger(self, path: Path) -> None:
        """The look at a recording completed while its writer may hold it."""
        sid = self.w.path_index.get(path)
        inode = self.w.files.get(path)
        record = self.w.records.get(sid) if sid else None
        if inode is None or record is None or record.state is not StreamState.COMPLETED:
            return
        changed = (len(inode.data), inode.mtime) != (record.final_size, record.final_mtime_ns)
        writer_open = seen_writer_open(self.proc_sees(inode), self.w.sight)
        if after_look(changed=changed, linger=True, writer_open=writer_open) is Settled.LOOK:
            self.open(path, writer_closed=writer_open is False)

    def stream_of(self, path: Path) -> Stream | None:
        return next((s for s in self.w.running.values() if s.path == path), None)

    # -- what deployments do -----------------------------------------------------------------

    @rule(path=st.sampled_from(NAMES), reuse=st.booleans())
    def create(self, path: Path, reuse: bool) -> None:
        """A recorder creates a file (on a freed inode number, if ``reuse``)."""
        if path in self.w.files:
            return
        used = {i.number for i in self.w.files.values()}
        number = 100 if reuse and 100 not in used else self.next_inode
        self.next_inode += 1
        birth = self.w.tick() if self.fs_keeps_birth else 0
        gen = self.next_inode
        self.w.files[path] = Inode(number, birth, gen, self.new_life(), mtime=self.w.clock)
        self.w.files[path].writer = True
        if self.stream_of(path) is None:
            self.open(path, writer_closed=False)  # IN_CREATE

    def new_life(self) -> int:
        self.next_life += 1
        return self.next_life

    @rule(path=st.sampled_from(NAMES), chunks=st.integers(1, 3))
    def grow(self, path: Path, chunks: int) -> None:
        inode = self.w.files.get(path)
        if inode is None:
            return
        inode.writer = True
        tokens = tuple(range(self.next_token, self.next_token + chunks))
        self.next_token += chunks
        inode.data += tokens
        inode.mtime = self.w.tick()
        for stream in self.w.running.values():
            if self.w.files.get(stream.path) is inode:
                stream.close_seen = False  # written after its close: the writer came back
        if self.stream_of(path) is None and self.w.sight.polling:
            self.open(path, writer_closed=False)  # a poll sees the change

    @rule(path=st.sampled_from(NAMES))
    def pause(self, path: Path) -> None:
        """The writer stalls past --idle-timeout: the stream finalizes on idle."""
        stream = self.stream_of(path)
        if stream is not None:
            self.finalize(stream)
        else:
            self.linger(path)

    @rule(path=st.sampled_from(NAMES))
    def close(self, path: Path) -> None:
        inode = self.w.files.get(path)
        if inode is None or not inode.writer:
            return
        inode.writer = False
        if not self.close_events:
            return
        stream = self.stream_of(path)
        if stream is not None:
            stream.close_seen = True  # TELL_CLOSED, after the close check
            self.finalize(stream)
        else:
            self.open(path, writer_closed=True)

    @rule(src=st.sampled_from(NAMES), dst=st.sampled_from(NAMES))
    def rename(self, src: Path, dst: Path) -> None:
        if src == dst or src not in self.w.files or dst in self.w.files:
            return
        self.w.files[dst] = self.w.files.pop(src)
        stream = self.stream_of(src)
        if stream is not None:  # CARRY_STREAM
            stream.path = dst
            self.w.records[stream.sid] = self.w.records[stream.sid].with_changes(path=str(dst))
            self.w.path_index[dst] = stream.sid
            return
        sid = self.w.path_index.get(src)  # CARRY_RECORD, then OPEN_DEST
        record = self.w.records.get(sid) if sid else None
        if record is not None and record.path == str(src):
            inode = self.w.files[dst]
            seen = FileIdentity(1, inode.number, inode.birth, inode.gen)
            if same_life(record_identity(record), seen) is Life.SAME:
                self.w.records[record.stream_id] = record.with_changes(path=str(dst))
                self.w.path_index[dst] = record.stream_id
        self.open(
            dst,
            writer_closed=seen_writer_open(self.proc_sees(self.w.files[dst]), self.w.sight)
            is False,
        )

    @rule(path=st.sampled_from(NAMES))
    def delete(self, path: Path) -> None:
        inode = self.w.files.pop(path, None)
        if inode is None:
            return
        stream = self.stream_of(path)
        links = 1 + sum(1 for other in self.w.files.values() if other is inode)
        if stream is not None and self.carried_to_alias(stream, links):
            return
        if stream is not None:  # TELL_GONE: the upload is aborted
            if any(other is inode for other in self.w.files.values()):
                self.w.violations.append(f"{path}'s upload aborted though a hard link holds it")
            del self.w.running[stream.sid]
            self.w.records[stream.sid] = self.w.records[stream.sid].with_changes(
                state=StreamState.ABORTED, end_cause=EndCause.SOURCE_GONE, path_ended=True
            )
        elif (sid := self.w.path_index.get(path)) and sid in self.w.records:
            self.w.records[sid] = self.w.records[sid].with_changes(path_ended=True)

    def carried_to_alias(self, stream: Stream, links: int) -> bool:
        """TELL_GONE for a stream whose file another name holds: it goes on there (N10)."""
        w = self.w
        aliases = w.aliases.get(stream.sid, set())
        names = {p: w.files[p].identity() for p in aliases if p in w.files}
        taken = {s.path for s in w.running.values() if s is not stream}
        record = w.records[stream.sid]
        recorded = record_identity(record)
        new = name_gone(recorded, names, links=links, searched=False, taken=taken)
        if isinstance(new, Search):  # the walk of the watched folders
            names = {p: i.identity() for p, i in w.files.items() if i.number == record.inode}
            new = name_gone(recorded, names, links=links, searched=True, taken=taken)
        if not isinstance(new, Path):
            return False
        aliases.discard(new)
        stream.path = new
        w.records[stream.sid] = record.with_changes(path=str(new))
        w.path_index[new] = stream.sid
        return True

    @rule(path=st.sampled_from(NAMES))
    def rewrite(self, path: Path) -> None:
        """A recorder restarted with -y: O_TRUNC, same inode, a new recording from byte 0."""
        inode = self.w.files.get(path)
        if inode is None:
            return
        inode.life = self.new_life()
        inode.data = (self.next_token,)
        self.next_token += 1
        inode.mtime = self.w.tick()
        inode.writer = True
        for stream in list(self.w.running.values()):
            if self.w.files.get(stream.path) is inode:
                # The stream sees its file shrink, under whichever name: REPLACED, and its path
                # is looked at again.
                del self.w.running[stream.sid]
                self.w.records[stream.sid] = self.w.records[stream.sid].with_changes(
                    state=StreamState.ABORTED, end_cause=EndCause.REPLACED
                )
                self.open(stream.path, writer_closed=False)
        self.open(path, writer_closed=False)

    @rule(src=st.sampled_from(NAMES), dst=st.sampled_from(NAMES))
    def hard_link(self, src: Path, dst: Path) -> None:
        if src == dst or src not in self.w.files or dst in self.w.files:
            return
        self.w.files[dst] = self.w.files[src]
        self.open(dst, writer_closed=False)

    @rule(src=st.sampled_from(NAMES), dst=st.sampled_from(NAMES))
    def rename_while_down(self, src: Path, dst: Path) -> None:
        """kill -9, a rename nobody sees, then a start: a live record whose file moved is
        resumed under its new name (N6)."""
        if src == dst or src not in self.w.files or dst in self.w.files:
            return
        self.w.running.clear()
        self.w.files[dst] = self.w.files.pop(src)
        self.crash_and_restart()

    @rule()
    def crash_and_restart(self) -> None:
        """kill -9, then a start: live records resumed, every file discovered."""
        self.w.running.clear()
        self.w.aliases.clear()
        self.w.elsewhere.clear()
        self.w.started = self.w.tick()
        for record in list(self.w.records.values()):
            mine = record.stream_id not in self.w.foreign_claims
            if not (record.state.is_resumable and mine):
                continue
            path = self.resumed_at(record)
            if path in self.w.files:
                self.w.running[record.stream_id] = Stream(record.stream_id, path)
        for path, inode in list(self.w.files.items()):
            if path not in self.w.files:
                continue
            writer_open = seen_writer_open(self.proc_sees(inode), self.w.sight)
            stream = self.stream_of(path)
            if stream is not None:
                if writer_open is False:
                    stream.close_seen = True  # TELL_CLOSED
                continue
            self.open(path, writer_closed=writer_open is False)

    def resumed_at(self, record: StreamRecord) -> Path:
        """Where a live record is resumed: its file found by identity first (N6)."""
        w = self.w
        path = Path(record.path)
        at_path = w.files[path].identity() if path in w.files else None
        found = {p: i.identity() for p, i in w.files.items() if i.number == record.inode}
        taken = {s.path for s in w.running.values()}
        where = resume_at(path, record_identity(record), at_path, found, taken=taken)
        assert isinstance(where, Path)
        if where != path:
            w.records[record.stream_id] = record.with_changes(path=str(where), path_ended=False)
            w.path_index[where] = record.stream_id
        return where

    @rule()
    def redis_emptied(self) -> None:
        self.w.records.clear()
        self.w.path_index.clear()
        self.w.redis_lost = True
        self.crash_and_restart()

    @rule(data=st.data())
    def second_node_claims(self, data: st.DataObject) -> None:
        """In a shared folder another node takes a recording's lease (or gives it back)."""
        if not self.w.sight.shared or not self.w.records:
            return
        sid = data.draw(st.sampled_from(sorted(self.w.records)))
        if sid in self.w.foreign_claims:
            self.w.foreign_claims.discard(sid)
        elif sid not in self.w.running:
            self.w.foreign_claims.add(sid)

    # -- invariants ----------------------------------------------------------------------------

    @invariant()
    def nothing_deleted_under_a_writer_nor_overwritten(self) -> None:
        assert not self.w.violations, self.w.violations

    @invariant()
    def no_version_uploaded_twice(self) -> None:
        versions = [(life, data) for life, data, _ in self.w.objects.values()]
        assert len(versions) == len(set(versions)), self.w.objects

    def teardown(self) -> None:
        """Settle: every writer closes, the other node lets go, every file is looked at until
        nothing changes: then every file's bytes are in S3 whole (none lost)."""
        self.w.foreign_claims.clear()
        for path in list(self.w.files):
            self.close(path)
        for _ in range(6):
            for stream in list(self.w.running.values()):
                if stream.sid in self.w.running:
                    self.finalize(stream)
            self.crash_and_restart()
        for stream in list(self.w.running.values()):
            if stream.sid in self.w.running:
                self.finalize(stream)
        assert not self.w.violations, self.w.violations
        stored = {(life, data) for life, data, _ in self.w.objects.values()}
        for path, inode in self.w.files.items():
            if inode.data:
                assert (inode.life, inode.data) in stored, f"{path} lost: {inode}"


CoreMachine.TestCase.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestCoreMachine = CoreMachine.TestCase


def replay(
    deployment: str, steps: list[tuple[str, tuple[Any, ...]]], *, birth: bool = True
) -> World:
    machine = CoreMachine()
    machine.deploy(deployment, birth)
    for name, args in steps:
        getattr(machine, name)(*args)
    return machine.w


A = NAMES[0]


@pytest.mark.parametrize("deployment", ["container", "share", "poll"])
def test_a_paused_writer_out_of_sight_is_never_deleted_under_at_a_restart(deployment: str) -> None:
    """N1 replayed: completed on idle while its writer (out of /proc's sight) holds it, then a
    start that finds "no writer visible"."""
    world = replay(
        deployment,
        [("create", (A, False)), ("grow", (A, 2)), ("pause", (A,)), ("crash_and_restart", ())],
    )
    assert not world.violations
    assert A in world.files


@pytest.mark.parametrize("birth", [False, True], ids=["no-birth-time", "birth-time"])
def test_after_redis_loss_a_later_lifes_recording_is_not_uploaded_again(birth: bool) -> None:
    """An O_TRUNC rewrite ended the inode's first recording before S3 held anything of it (its
    upload aborted): the rewritten file is the next recording of the same identity (O_TRUNC
    keeps the birth time and the generation too). Redis loses its data: the walk asks S3 about
    life 0's key first and stops at the first life S3 has nothing of. The rewritten recording
    took over life 0's id, so that S3 answers there: recorded, not uploaded again (it was
    uploaded under life 1's key before, and again under life 0's after the loss)."""
    world = replay(
        "host",
        [
            ("create", (A, False)),
            ("rewrite", (A,)),
            ("pause", (A,)),
            ("redis_emptied", ()),
            ("pause", (A,)),
        ],
        birth=birth,
    )
    versions = [(life, data) for life, data, _ in world.objects.values()]
    assert len(versions) == len(set(versions)) == 1, world.objects


def test_after_redis_loss_a_renamed_recording_is_not_uploaded_again() -> None:
    """Uploaded as a.ts (its key names the file), then renamed to c.ts. Redis loses its data:
    the walk renders the key with the file's name now; S3 has nothing there, and the recording
    is found under the start of its keys that no rename changes (it was uploaded again under
    c.ts's key before)."""
    c = NAMES[2]
    world = replay(
        "host",
        [
            ("create", (A, False)),
            ("grow", (A, 2)),
            ("pause", (A,)),
            ("rename", (A, c)),
            ("redis_emptied", ()),
            ("pause", (c,)),
        ],
    )
    versions = [(life, data) for life, data, _ in world.objects.values()]
    assert len(versions) == len(set(versions)), world.objects


B = NAMES[1]


@pytest.mark.parametrize("deployment", sorted(DEPLOYMENTS))
@pytest.mark.parametrize(
    "steps",
    [
        # `ln a.ts b.ts; rm a.ts` while a.ts is written: b.ts is the stream's alias.
        [("create", (A, False)), ("hard_link", (A, B)), ("delete", (A,))],
        # b.ts was made before the stream of a.ts started (the record followed it, then a.ts
        # grew): no alias known, the file's two names tell a walk to look for the other.
        [
            ("create", (A, False)),
            ("pause", (A,)),
            ("hard_link", (A, B)),
            ("grow", (A, 1)),
            ("close", (A,)),
            ("grow", (A, 1)),
            ("delete", (A,)),
        ],
    ],
    ids=["alias", "walk"],
)
def test_a_hard_link_keeps_the_upload_when_the_first_name_goes(
    deployment: str, steps: list[tuple[str, tuple[Any, ...]]]
) -> None:
    """N10 replayed: the stream's name deleted while another name holds its file: the upload
    goes on under that name (never aborted), and at the settle the recording is in S3 once."""
    machine = CoreMachine()
    machine.deploy(deployment, True)
    for name, args in steps[:-1]:
        getattr(machine, name)(*args)
    running = [s.path for s in machine.w.running.values()]
    machine.delete(A)
    assert not machine.w.violations
    if running == [A]:  # a shared folder has no close event to start the second life's stream
        after = [s.path for s in machine.w.running.values()]
        assert after == [B], "the stream went on under b.ts"
    machine.teardown()
