"""End to end with least privilege: `tailup run` as an identity that may only do what
deploy/iam-policy.json allows (SeaweedFS evaluates the policy document), while a real ffmpeg
recording grows and a file written before the start waits in the watched folder.

The daemon writes, reads back its own objects, manages its own multipart uploads and deletes its
own upload cards (none is left behind), and nothing more: it cannot delete a recording. A missing
optional permission turns off only its feature, said once in the log: without s3:ListBucket (not
in the policy) the bucket check at start; without s3:GetObject the read-back after completion and
the lookup of a file Redis has no record of.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest

from conftest import POLICY_BUCKET, policy_identity
from daemonproc import DaemonProcess, poll, run_cli, start_daemon
from tailup.checkpoint import RedisCheckpointStore
from tailup.dev import RedisServer, SeaweedS3
from tailup.keys import metadata_key
from tailup.model import StreamRecord, StreamState
from tailup.plan import MiB
from tailup.uploadcard import card_key

BEFORE_START = bytes(range(256)) * (6 * MiB // 256 + 123)  # two parts, the second short


async def _completed(redis_url: str, prefix: str, paths: list[Path]) -> list[StreamRecord] | None:
    records = []
    async with RedisCheckpointStore.connect(redis_url, prefix) as cps:
        for path in paths:
            stream_id = await cps.stream_for_path(str(path))
            loaded = await cps.load(stream_id) if stream_id else None
            if loaded and loaded[0].state is StreamState.FAILED:
                raise AssertionError(f"{path.name} failed: {loaded[0].error}")
            if not loaded or loaded[0].state is not StreamState.COMPLETED:
                return None
            records.append(loaded[0])
    return records


def _cards_left(server: SeaweedS3, records: dict[Path, StreamRecord]) -> list[str]:
    """The upload cards of ``records`` still in the bucket (the main identity looks)."""
    client = server.boto3_client()
    try:
        listed = [
            client.list_objects_v2(Bucket=POLICY_BUCKET, Prefix=card_key(r.key))
            for r in records.values()
        ]
    finally:
        client.close()
    return [o["Key"] for found in listed for o in found.get("Contents", [])]


def _refusals(daemon: DaemonProcess) -> list[dict[str, Any]]:
    return [e for e in daemon.events() if e.get("logger") == "tailup.permissions"]


def _upload_as(
    identity: str,
    tmp_path: Path,
    server: SeaweedS3,
    redis_url: str,
    key_prefix: str,
    record: Any,
) -> tuple[DaemonProcess, dict[Path, StreamRecord], list[str]]:
    """A file written before the start and a live recording, uploaded by a daemon running as
    ``identity``; both must end up in S3 byte for byte. Returns the daemon (stopped) too."""
    watch = tmp_path / "recordings"
    watch.mkdir()
    early = watch / "before-start.ts"
    early.write_bytes(BEFORE_START)
    connection = [
        "--bucket", POLICY_BUCKET, "--endpoint-url", server.endpoint_url,
        "--redis-url", redis_url, "--redis-prefix", key_prefix,
    ]  # fmt: skip
    args = [
        "--watch", str(watch), *connection,
        "--part-size", "5MiB", "--close-grace", "0.2", "--idle-timeout", "2",
        "--log-format", "json",
    ]  # fmt: skip
    env = policy_identity(identity).env(server)
    daemon = start_daemon(args, env, tmp_path / "tailup.log", tmp_path)
    try:
        daemon.wait_for_event("watching")
        live = watch / "live.ts"
        proc = record(live, "ts", 3, bitrate="16M", gop=25)  # a 5 MiB part while recording
        assert proc.wait(timeout=120) == 0, Path(proc.log_path).read_text()
        paths = [early, live]
        found = poll(
            lambda: asyncio.run(_completed(redis_url, key_prefix, paths)),
            "both recordings completed",
            90,
            alive=daemon,
        )
    finally:
        code = daemon.stop()
    assert code == 0, daemon.tail()
    records = dict(zip(paths, found, strict=True))
    client = server.boto3_client()  # the main identity, to check what the daemon wrote
    try:
        for path, rec in records.items():
            body = client.get_object(Bucket=POLICY_BUCKET, Key=rec.key)["Body"].read()
            assert body == path.read_bytes(), f"{path.name}: the object differs from the file"
            sidecar = client.get_object(Bucket=POLICY_BUCKET, Key=rec.key + ".metadata.json")
            assert json.loads(sidecar["Body"].read())["size_bytes"] == len(body)
    finally:
        client.close()
    return daemon, records, connection


def test_the_daemon_runs_with_the_policy_and_only_skips_the_bucket_check(
    tmp_path: Path,
    least_privilege_s3: SeaweedS3,
    redis_server: RedisServer,
    key_prefix: str,
    record: Any,
) -> None:
    daemon, records, connection = _upload_as(
        "policy", tmp_path, least_privilege_s3, redis_server.url, key_prefix, record
    )
    refusals = _refusals(daemon)
    # The policy grants s3:DeleteObject on tailup's own helper objects: each upload's card
    # (tailup.uploadcard) is deleted once the upload is completed, and no refusal says it stays.
    assert [e["action"] for e in refusals] == ["s3:ListBucket"], refusals
    assert {e["level"] for e in refusals} == {"warning"}
    assert not [e for e in daemon.events() if e.get("level") == "error"]
    assert _cards_left(least_privilege_s3, records) == []
    # ...and on nothing else: the node's credentials cannot delete a recording nor its
    # metadata.json.
    identity = policy_identity("policy")
    client = least_privilege_s3.boto3_client(
        access_key=identity.access_key, secret_key=identity.secret_key
    )
    try:
        for rec in records.values():
            for key in (rec.key, metadata_key(rec.key)):
                with pytest.raises(botocore.exceptions.ClientError) as refused:
                    client.delete_object(Bucket=POLICY_BUCKET, Key=key)
                assert refused.value.response["Error"]["Code"] == "AccessDenied", key
                assert client.head_object(Bucket=POLICY_BUCKET, Key=key)["ContentLength"] > 0
    finally:
        client.close()

    # The operator's commands work with the same identity: verify reads back, gc lists uploads.
    env = policy_identity("policy").env(least_privilege_s3)
    for rec in records.values():
        verified = run_cli(["verify", rec.stream_id, *connection], env)
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert "MATCH" in verified.stdout
    gc = run_cli(["gc", "--dry-run", "--older-than", "1h", *connection], env)
    assert gc.returncode == 0, gc.stdout + gc.stderr


def test_without_deleting_helper_objects_the_cards_stay_said_once(
    tmp_path: Path,
    least_privilege_s3: SeaweedS3,
    redis_server: RedisServer,
    key_prefix: str,
    record: Any,
) -> None:
    # A policy without its third statement: each recording's card stays, said once per run.
    identity = "without s3:DeleteObject"
    daemon, records, _ = _upload_as(
        identity, tmp_path, least_privilege_s3, redis_server.url, key_prefix, record
    )
    refusals = _refusals(daemon)
    assert [e["action"] for e in refusals] == ["s3:ListBucket", "s3:DeleteObject"], refusals
    assert "the upload card beside each open upload" in refusals[1]["event"]
    assert sorted(_cards_left(least_privilege_s3, records)) == sorted(
        card_key(r.key) for r in records.values()
    )


def test_without_get_object_the_uploads_go_on_and_say_so_once(
    tmp_path: Path,
    least_privilege_s3: SeaweedS3,
    redis_server: RedisServer,
    key_prefix: str,
    record: Any,
) -> None:
    identity = "without s3:GetObject"
    daemon, records, connection = _upload_as(
        identity, tmp_path, least_privilege_s3, redis_server.url, key_prefix, record
    )
    refusals = _refusals(daemon)
    actions = sorted(e["action"] for e in refusals)
    assert actions == ["s3:GetObject", "s3:ListBucket"], refusals
    get_object = next(e for e in refusals if e["action"] == "s3:GetObject")
    assert "objects are not read back" in get_object["event"]
    assert "metadata.json is not looked up" in get_object["event"]
    assert not [e for e in daemon.events() if e.get("level") == "error"]

    # Redis loses the records (another prefix): the files are found again, S3 cannot be asked
    # whether they are there, and they are uploaded again, never over the objects they made.
    client = least_privilege_s3.boto3_client()
    before = {r.key: client.head_object(Bucket=POLICY_BUCKET, Key=r.key)["ETag"] for r in
              records.values()}  # fmt: skip
    lost = key_prefix + "-lost"
    args = ["--watch", str(tmp_path / "recordings"), *connection[:-1], lost,
            "--part-size", "5MiB", "--close-grace", "0.2", "--idle-timeout", "2",
            "--log-format", "json"]  # fmt: skip
    env = policy_identity(identity).env(least_privilege_s3)
    again = start_daemon(args, env, tmp_path / "tailup-again.log", tmp_path)
    try:
        found = poll(
            lambda: asyncio.run(_completed(redis_server.url, lost, list(records))),
            "both recordings completed again",
            90,
            alive=again,
        )
    finally:
        assert again.stop() == 0, again.tail()
    try:
        for path, rec in zip(records, found, strict=True):
            first = records[path].key
            assert rec.key == first.replace(path.suffix, f"-2{path.suffix}"), (first, rec.key)
            body = client.get_object(Bucket=POLICY_BUCKET, Key=rec.key)["Body"].read()
            assert body == path.read_bytes()
            assert client.head_object(Bucket=POLICY_BUCKET, Key=first)["ETag"] == before[first]
    finally:
        client.close()


def _start_without(
    missing: str, tmp_path: Path, server: SeaweedS3, redis_url: str, key_prefix: str
) -> DaemonProcess:
    """A daemon running as the policy less ``missing``, a file written before it started."""
    watch = tmp_path / "recordings"
    watch.mkdir()
    (watch / "before-start.ts").write_bytes(BEFORE_START)
    args = [
        "--watch", str(watch), "--bucket", POLICY_BUCKET, "--endpoint-url", server.endpoint_url,
        "--redis-url", redis_url, "--redis-prefix", key_prefix,
        "--part-size", "5MiB", "--close-grace", "0.2", "--idle-timeout", "2",
        "--log-format", "json",
    ]  # fmt: skip
    env = policy_identity(f"without {missing}").env(server)
    return start_daemon(args, env, tmp_path / "tailup.log", tmp_path)


def test_without_put_object_the_stream_fails_naming_it(
    tmp_path: Path, least_privilege_s3: SeaweedS3, redis_server: RedisServer, key_prefix: str
) -> None:
    daemon = _start_without(
        "s3:PutObject", tmp_path, least_privilege_s3, redis_server.url, key_prefix
    )
    try:
        failed = daemon.wait_for_event("stream failed; it will be retried", timeout_s=60)
    finally:
        assert daemon.stop() == 0, daemon.tail()
    assert "it needs s3:PutObject" in failed["reason"], failed


def test_without_listing_uploads_a_file_to_look_up_is_dropped_once_naming_it(
    tmp_path: Path, least_privilege_s3: SeaweedS3, redis_server: RedisServer, key_prefix: str
) -> None:
    # The file was there before the start: S3 is asked for its open uploads first, and refuses.
    # The supervisor's own read of it opens it (IN_OPEN): that must not start it again and again.
    missing = "s3:ListBucketMultipartUploads"
    daemon = _start_without(missing, tmp_path, least_privilege_s3, redis_server.url, key_prefix)
    try:
        dropped = daemon.wait_for_event("event dropped", timeout_s=60)
        # The drop's own read of the file was an open (an event) queued before this rename, which
        # is routed alone (tailup.lanes): once the renamed file's stream starts, that open was
        # routed. Without the guard it is dropped again (~200 times a second).
        staged = tmp_path / "recordings" / "fence.tmp"  # not a candidate: no event
        staged.write_bytes(b"fence")
        staged.rename(staged.with_suffix(".ts"))
        daemon.wait_for_event("stream started", path=str(staged.with_suffix(".ts")))
        drops = [e for e in daemon.events() if e.get("event") == "event dropped"]
        assert [e["path"] for e in drops] == [dropped["path"]], drops
    finally:
        assert daemon.stop() == 0, daemon.tail()
    assert f"it needs {missing}" in dropped["reason"], dropped
