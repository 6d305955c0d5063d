"""The after-upload action over a file's whole life: never under a writer, and a pending one
finished by the next start. Real Redis, SeaweedFS and files; the daemon in process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness import content, object_bytes, running_daemon, wait_until
from tailup.model import EndCause, StreamState


async def test_a_pending_delete_is_done_by_the_next_start_once_the_writer_is_gone(
    daemon_args: dict[str, Any], watch: Path, s3_client: Any, bucket: str
) -> None:
    path = watch / "cam1.ts"
    data = content(300_000, "stalled feed")
    options = {"idle_timeout": 1, "after_upload": "delete"}
    out = path.open("wb")
    try:
        out.write(data)
        out.flush()
        async with running_daemon(**daemon_args, **options) as daemon:
            record = await daemon.wait_for_state(path, {StreamState.COMPLETED})
            assert record.after_upload_pending, "its writer holds it: the delete waits"
            assert path.exists()
    finally:
        out.close()  # the writer goes while no daemon runs: no event will say so
    assert object_bytes(s3_client, bucket, record.key) == data
    async with running_daemon(**daemon_args, **options) as daemon:
        await wait_until(lambda: not path.exists(), "the pending delete done at start")

        async def recorded() -> bool:
            latest = await daemon.checkpoints.inner.load(record.stream_id)
            return latest is not None and not latest[0].after_upload_pending

        await wait_until(recorded, "the record says it is done")
    assert object_bytes(s3_client, bucket, record.key) == data


async def test_an_aborted_later_generation_never_runs_the_pending_action_of_an_earlier_one(
    daemon_args: dict[str, Any], watch: Path, s3_client: Any, bucket: str
) -> None:
    """N3: generation 1 completed on idle under its writer (the delete pending); the writer went
    on, so generation 2 started under the same record, and `tailup abort` ended it. The file
    now holds bytes S3 has not got whole: nothing may delete it, whatever the record's flag says
    (a record written before the fix still carries generation 1's)."""
    path = watch / "cam1.ts"
    first = content(300_000, "before the stall")
    options = {"idle_timeout": 1, "after_upload": "delete"}
    with path.open("wb") as out:
        out.write(first)
        out.flush()
        async with running_daemon(**daemon_args, **options) as daemon:
            record = await daemon.wait_for_state(path, {StreamState.COMPLETED})
            assert record.after_upload_pending
            await daemon.checkpoints.inner.update(
                record.stream_id,
                state=StreamState.ABORTED,
                end_cause=EndCause.OPERATOR,
                generation=2,
                error="aborted by the operator",
            )
        out.write(content(200_000, "after the stall"))
    async with running_daemon(**daemon_args, **options) as daemon:
        await wait_until(lambda: daemon.supervisor.events_routed >= 1, "the file looked at")
        latest = await daemon.record_for(path)
        assert latest is not None and latest.state is StreamState.ABORTED
    assert path.exists(), "deleted, though S3 never got its later bytes"
    assert object_bytes(s3_client, bucket, record.key) == first
