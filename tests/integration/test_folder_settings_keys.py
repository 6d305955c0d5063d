"""Issue 20.3: a recording keeps the key it was given when its folder's settings change (its
record holds the key); only new recordings take the new settings. Real Redis, SeaweedFS and
files; the daemon in process, started twice with two [[watch]] tables of the same folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness import content, object_bytes, running_daemon
from tailup.model import StreamState


async def test_a_recordings_key_stays_when_its_folders_prefix_changes(
    daemon_args: dict[str, Any], watch: Path, s3_client: Any, bucket: str
) -> None:
    path = watch / "cam1.ts"
    first, rest = content(300_000, "before the change"), content(200_000, "after it")
    out = path.open("wb")
    try:
        out.write(first)
        out.flush()
        old = [{"path": str(watch), "prefix": "old", "key_template": "{watch}/{name}"}]
        async with running_daemon(**daemon_args, watch_tables=old) as daemon:
            live = await daemon.wait_for_state(path, {StreamState.UPLOADING})
        out.write(rest)
    finally:
        out.close()  # the writer goes while no daemon runs
    assert live.key == "old/watch/cam1.ts"
    new = [{"path": str(watch), "prefix": "new", "key_template": "{watch}/{name}"}]
    async with running_daemon(**daemon_args, watch_tables=new) as daemon:
        done = await daemon.wait_for_state(path, {StreamState.COMPLETED})
        other = watch / "cam2.ts"
        other.write_bytes(content(100_000, "a new recording"))
        fresh = await daemon.wait_for_state(other, {StreamState.COMPLETED})
    assert (done.stream_id, done.key) == (live.stream_id, "old/watch/cam1.ts")
    assert object_bytes(s3_client, bucket, done.key) == first + rest
    assert fresh.key == "new/watch/cam2.ts"
