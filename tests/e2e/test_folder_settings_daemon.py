"""End to end, issue 20.3: per-folder settings. `tailup run --config` as a process, with three
[[watch]] tables and one plain --watch folder, against SeaweedFS and Redis, real ffmpeg recordings
growing in each folder: each recording goes to its folder's key, one folder's include does not
apply to another, after_upload delete acts only in the folder that asks for it, a folder's tags
(an inline table) are its objects', one folder's hls = true publishes its playlist beside its
segments while no other folder is HLS, and `status` shows each folder's settings."""

from __future__ import annotations

import asyncio
import hashlib
import re
from pathlib import Path, PurePosixPath
from typing import Any

from botocore.exceptions import ClientError

from daemonproc import poll, run_cli, start_daemon
from tailup.checkpoint import RedisCheckpointStore
from tailup.dev import RedisServer, SeaweedS3
from tailup.model import StreamRecord, StreamState
from tailup.rules.hls import named_files


def _get(s3_client: Any, bucket: str, key: str) -> bytes | None:
    try:
        return bytes(s3_client.get_object(Bucket=bucket, Key=key)["Body"].read())
    except ClientError:
        return None


async def _record_of(redis_url: str, prefix: str, path: Path) -> StreamRecord | None:
    async with RedisCheckpointStore.connect(redis_url, prefix) as cps:
        stream_id = await cps.stream_for_path(str(path))
        loaded = await cps.load(stream_id) if stream_id else None
    return loaded[0] if loaded else None


def _completed(redis_url: str, prefix: str, path: Path) -> StreamRecord | None:
    record = asyncio.run(_record_of(redis_url, prefix, path))
    if record is not None and record.state is StreamState.FAILED:
        raise AssertionError(f"{path.name} failed: {record.error}")
    return record if record is not None and record.state is StreamState.COMPLETED else None


def test_each_folder_uploads_under_its_own_settings(
    tmp_path: Path,
    s3_server: SeaweedS3,
    bucket: str,
    s3_client: Any,
    redis_server: RedisServer,
    key_prefix: str,
    record: Any,
) -> None:
    cams, guest, plain, live = (tmp_path / name for name in ("cams", "guest", "plain", "live"))
    for folder in (cams, guest, plain, live):
        folder.mkdir()
    config = tmp_path / "tailup.toml"
    config.write_text(
        f'prefix = "global"\ninclude = ["*.mkv"]\n'
        f'[[watch]]\npath = "{cams}"\nprefix = "site-a"\n'
        'key_template = "{watch}/{date}/{name}"\ninclude = ["*.ts"]\n'
        f'[[watch]]\npath = "{guest}"\nafter_upload = "delete"\ninclude = ["*.mp4"]\n'
        'tags = { visitor = "yes" }\n'
        f'[[watch]]\npath = "{live}"\nhls = true\n',
        encoding="utf-8",
    )
    # Files of the other folder's globs, there before the daemon: never uploaded.
    (cams / "not-here.mp4").write_bytes(b"m" * 4096)
    (guest / "not-here.ts").write_bytes(b"t" * 4096)
    (plain / "not-here.ts").write_bytes(b"t" * 4096)
    args = [
        "--config", str(config), "--watch", str(plain), "--bucket", bucket,
        "--endpoint-url", s3_server.endpoint_url,
        "--redis-url", redis_server.url, "--redis-prefix", key_prefix,
        "--part-size", "5MiB", "--close-grace", "1", "--log-format", "json",
    ]  # fmt: skip
    env = s3_server.env()
    daemon = start_daemon(args, env, tmp_path / "tailup.log", tmp_path)
    try:
        daemon.wait_for_event("watching")
        cam, visitor, plain_file = cams / "cam1.ts", guest / "visitor.mp4", plain / "desk.mkv"
        playlist = live / "door" / "live.m3u8"
        playlist.parent.mkdir()
        procs = [record(cam, "ts", 3), record(visitor, "mp4", 3), record(plain_file, "mkv", 3)]
        procs.append(record(playlist, "hls", 3, gop=25))
        for proc in procs:
            assert proc.wait(timeout=120) == 0, Path(proc.log_path).read_text()
        done: dict[Path, StreamRecord] = {}
        for path in (cam, visitor, plain_file):

            def completed(path: Path = path) -> StreamRecord | None:
                return _completed(redis_server.url, key_prefix, path)

            done[path] = poll(completed, f"{path.name} completed", 90, alive=daemon)
        # after_upload delete in guest only: its recording goes, the others stay.
        poll(lambda: not visitor.exists(), "visitor.mp4 deleted after its upload", 60, alive=daemon)
        # The HLS folder's final playlist, in place at global/{relpath}.
        final = playlist.read_bytes()

        def published() -> bool:
            return _get(s3_client, bucket, "global/door/live.m3u8") == final

        poll(published, "the final playlist in S3", 60, alive=daemon)
        status = run_cli(
            ["status", "--redis-url", redis_server.url, "--redis-prefix", key_prefix,
             "--bucket", bucket],
            env,
        )  # fmt: skip
    finally:
        assert daemon.stop() == 0, daemon.tail()

    assert re.fullmatch(r"site-a/cams/\d{4}-\d{2}-\d{2}/cam1\.ts", done[cam].key), done[cam].key
    assert done[visitor].key == f"global/streams/{done[visitor].stream_id}/visitor.mp4"
    assert done[plain_file].key == f"global/streams/{done[plain_file].stream_id}/desk.mkv"
    for path in (cam, plain_file):
        assert path.exists(), f"{path} was not to be deleted (its folder keeps files)"
        body = s3_client.get_object(Bucket=bucket, Key=done[path].key)["Body"].read()
        assert body == path.read_bytes()
    body = s3_client.get_object(Bucket=bucket, Key=done[visitor].key)["Body"].read()
    assert hashlib.sha256(body).hexdigest() == done[visitor].sha256
    assert len(body) == done[visitor].final_size
    tagging = s3_client.get_object_tagging(Bucket=bucket, Key=done[visitor].key)["TagSet"]
    assert tagging == [{"Key": "visitor", "Value": "yes"}]
    assert s3_client.get_object_tagging(Bucket=bucket, Key=done[cam].key)["TagSet"] == []
    listed = s3_client.list_objects_v2(Bucket=bucket).get("Contents", [])
    assert not [o["Key"] for o in listed if "not-here" in o["Key"]]
    segments = named_files(final.decode(), PurePosixPath("door/live.m3u8")).inside
    assert segments
    for rel in segments:  # beside the playlist, keyed by their paths
        assert _get(s3_client, bucket, f"global/{rel}") == (live / rel).read_bytes()
    assert asyncio.run(_record_of(redis_server.url, key_prefix, playlist)) is None
    for path in (cams / "not-here.mp4", guest / "not-here.ts", plain / "not-here.ts"):
        assert asyncio.run(_record_of(redis_server.url, key_prefix, path)) is None, path
    assert status.returncode == 0, status.stderr
    shown = status.stderr  # the summary, under the rows (tailup.statusview)
    assert f"folder {cams}: prefix 'site-a' *, key_template {{watch}}/{{date}}/{{name}} *" in shown
    assert f"folder {guest}: prefix 'global', " in shown
    assert "after_upload delete *" in shown
    assert "tags visitor=yes *" in shown
    assert f"folder {live}: prefix 'global', key_template {{relpath}}, " in shown
    assert "hls on *" in shown
