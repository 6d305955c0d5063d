"""A lease round over a shared folder's live recordings (tailup.supervisor.shares): the claim
comes before the load (N11: a round costs one claim per recording another node holds, not a
load of it with all its parts), and a claim that starts no stream is given back (N7); a claim
lost to another node is forgotten once its stream has ended (N13)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness import IsolatedSettings
from tailup.checkpoint import Claim, RenewResult
from tailup.dev import MemoryCheckpointStore, MemoryMultipartStore
from tailup.keys import share_scope
from tailup.model import StreamRecord, StreamState
from tailup.stream import Outcome
from tailup.supervisor import Supervisor

SCOPE = share_scope("nas")


class CountingStore(MemoryCheckpointStore):
    def __init__(self) -> None:
        super().__init__()
        self.loads: list[str] = []

    async def load(self, stream_id: str) -> Any:
        self.loads.append(stream_id)
        return await super().load(stream_id)


def shared_record(root: Path, stream_id: str, **changes: Any) -> StreamRecord:
    return StreamRecord(
        stream_id=stream_id,
        path=str(root / "cam1.ts"),
        watch_root=str(root),
        bucket="b",
        key=f"{stream_id}/cam1.ts",
        base_part_size=5 << 20,
        scope=SCOPE,
        owner="n1",
        **changes,
    )


async def make(tmp_path: Path) -> tuple[Supervisor, CountingStore, Path]:
    root = tmp_path / "nas"
    root.mkdir()
    settings = IsolatedSettings(bucket="b", node_id="n2", shared_watch=[f"nas={root}"])
    checkpoints = CountingStore()
    return Supervisor(settings, MemoryMultipartStore(), checkpoints), checkpoints, root.resolve()


async def test_a_round_loads_nothing_another_node_holds(tmp_path: Path) -> None:
    supervisor, checkpoints, root = await make(tmp_path)
    await checkpoints.create(shared_record(root, "s1"))
    checkpoints.leases["s1"] = "n1|1"  # node n1 holds it, alive
    checkpoints.loads.clear()
    await supervisor._resume_scope(SCOPE)
    assert checkpoints.loads == [], "loaded before its claim"
    assert supervisor.streams == {}


async def test_a_claim_that_starts_nothing_is_given_back(tmp_path: Path) -> None:
    """A live recording whose path another stream of this node holds (a file replaced under
    it): the round starts nothing for it, and keeps no claim of it (kept, it would be renewed
    every round and hold the recording from every other node)."""
    supervisor, checkpoints, root = await make(tmp_path)
    await checkpoints.create(shared_record(root, "s2"))
    supervisor.streams[root / "cam1.ts"] = object()  # type: ignore[assignment]
    await supervisor._resume_scope(SCOPE)
    assert checkpoints.held_claims() == []
    assert "s2" not in checkpoints.leases


async def test_an_ended_record_left_live_is_moved_out_without_a_claim_kept(tmp_path: Path) -> None:
    """The process died between the state write and the index update."""
    supervisor, checkpoints, root = await make(tmp_path)
    await checkpoints.create(shared_record(root, "s3", state=StreamState.COMPLETED))
    checkpoints.lives.setdefault(SCOPE, set()).add("s3")
    await supervisor._resume_scope(SCOPE)
    assert checkpoints.held_claims() == []
    assert "s3" not in await checkpoints.live_stream_ids(SCOPE)


class TakenOverStream:
    """A stream another node took over: the lease round stopped it (renew said TAKEN)."""

    def __init__(self, record: StreamRecord) -> None:
        self.record = record
        self.stream_id = record.stream_id
        self.path = Path(record.path)
        self.close_seen = False

    async def run(self) -> Outcome:
        return Outcome.STOPPED


async def test_a_claim_lost_to_another_node_is_forgotten_when_its_stream_ends(
    tmp_path: Path,
) -> None:
    """N13: else the store keeps one id for every recording another node ever took over."""
    supervisor, checkpoints, root = await make(tmp_path)
    record = shared_record(root, "s4")
    await checkpoints.create(record)
    assert isinstance(await checkpoints.claim("s4", "n2", 30), Claim)
    checkpoints.leases["s4"] = "n1|9"  # node n1 took it over
    assert await checkpoints.renew_claim("s4", 30) is RenewResult.TAKEN
    assert checkpoints.lost_claims() == ["s4"]
    stream: Any = TakenOverStream(record)
    supervisor._running.add(stream)
    supervisor._by_id["s4"] = stream
    await supervisor._run_stream(stream)
    assert checkpoints.lost_claims() == []
    assert checkpoints.leases["s4"] == "n1|9", "n1's lease is untouched"
