"""OBS's write probe against a real daemon: before each recording OBS creates the file empty,
closes and deletes it (its muxer's check that the path is writable), then records into a new file
of the same name. The probe's stream ends with nothing in S3 and gives its key back
(tailup.rules.keyclaims), and a new file at its name waits for that end
(tailup.supervisor.opening): the recording gets the key its name gives, never ``NAME-2``, whether
the probe's stream was still live, aborted or skipped when the recording came. Real Redis,
SeaweedFS and files; the daemon in process."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import Any

import pytest

from harness import Daemon, content, object_bytes, running_daemon, wait_until
from tailup.model import StreamState
from tailup.s3 import S3MultipartStore

NAME = "2026-12-07 18-44-03.mkv"  # OBS's default file name: the key keeps the space
DEFAULT_TEMPLATE = "streams/{stream_id}/{name}"


async def probe(daemon: Daemon, path: Path, how: str) -> None:
    """OBS's probe of ``path``, its stream caught as ``how`` says when the file goes."""
    if how == "deleted 50 ms later":  # as OBS does it: the stream is live, or just aborted
        path.open("wb").close()
        await asyncio.sleep(0.05)  # the recorder's own pace, not a wait for tailup
    elif how == "skipped first":  # closed empty, and seen so before it went
        path.open("wb").close()
        await daemon.wait_for_state(path, {StreamState.SKIPPED})
    else:  # "aborted first": still open (never closed empty) when it went
        with path.open("wb"):
            await daemon.wait_for_state(path, {StreamState.UPLOADING})
            os.unlink(path)
            await daemon.wait_for_state(path, {StreamState.ABORTED})
        return
    os.unlink(path)


@pytest.mark.parametrize("how", ["deleted 50 ms later", "skipped first", "aborted first"])
@pytest.mark.parametrize("template", ["{relpath}", DEFAULT_TEMPLATE])
async def test_the_recording_after_obs_s_probe_gets_its_own_name(
    daemon_args: dict[str, Any],
    watch: Path,
    s3_client: Any,
    bucket: str,
    template: str,
    how: str,
) -> None:
    path = watch / NAME
    data = content(1 << 20, "the recording")
    async with running_daemon(**daemon_args, key_template=template) as daemon:
        await probe(daemon, path, how)
        path.write_bytes(data)  # the muxer's recording, at the probe's name
        done = await daemon.wait_for_state(path, {StreamState.COMPLETED})
    expected = NAME if template == "{relpath}" else f"streams/{done.stream_id}/{NAME}"
    assert done.key == expected
    listed = s3_client.list_objects_v2(Bucket=bucket).get("Contents", [])
    assert sorted(o["Key"] for o in listed) == [expected, f"{expected}.metadata.json"]
    assert object_bytes(s3_client, bucket, expected) == data


class SlowAbort:
    """The real store, whose AbortMultipartUpload waits for ``gate``: an end that takes its
    time (a slow S3)."""

    def __init__(self, inner: S3MultipartStore, gate: asyncio.Event) -> None:
        self._inner, self._gate = inner, gate

    async def abort_upload(self, key: str, upload_id: str) -> None:
        await self._gate.wait()
        await self._inner.abort_upload(key, upload_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


async def test_a_recording_at_the_name_of_a_stream_still_ending_waits_for_its_end(
    daemon_args: dict[str, Any], watch: Path, s3_client: Any, bucket: str
) -> None:
    """The probe's stream had sent a part (a write probe that wrote, or a recording deleted
    mid-way) and its end is slow: the new file at its name is opened once that end has given
    the key back, not while the stream still holds it (which made NAME-2)."""
    path = watch / NAME
    data = content(1 << 20, "the recording")
    gate = asyncio.Event()
    async with running_daemon(
        **daemon_args,
        key_template="{relpath}",
        wrap_store=lambda real: SlowAbort(real, gate),
    ) as daemon:
        with path.open("wb") as out:
            out.write(content(6 << 20, "the probe's bytes"))
            out.flush()
            first = await daemon.wait_for_state(path, {StreamState.UPLOADING})
            await wait_until(lambda: bool(daemon.checkpoints.committed), "the probe's part 1 sent")
            os.unlink(path)
        path.write_bytes(data)

        async def opened_before_the_end() -> bool:
            record = await daemon.record_for(path)
            return record is not None and record.stream_id != first.stream_id

        # Nothing tells of a look that does not happen: the new file is given a second to be
        # opened (it would be, at NAME-2, while the probe's stream holds the key).
        with contextlib.suppress(AssertionError):
            await wait_until(opened_before_the_end, "the recording opened", timeout_s=1.0)
        early = await opened_before_the_end()
        gate.set()
        done = await daemon.wait_for_state(path, {StreamState.COMPLETED})
    assert not early, "the recording was opened while the probe's stream still ended"
    assert done.key == NAME
    listed = s3_client.list_objects_v2(Bucket=bucket).get("Contents", [])
    assert sorted(o["Key"] for o in listed) == [NAME, f"{NAME}.metadata.json"]
