"""The real servers and recorders the other tests stand on."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis

import tailup
from tailup.dev import (
    RECORD_FORMATS,
    DevServerError,
    MotoS3,
    RcloneS3,
    RedisServer,
    S3Identity,
    SeaweedS3,
    ffmpeg_exe,
    free_port,
    record_cmd,
)


def _client_error_code(exc: BaseException) -> str:
    response: dict[str, Any] = getattr(exc, "response", {}) or {}
    return str(response.get("Error", {}).get("Code", ""))


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_ports_asked_before_any_is_bound_differ() -> None:
    # A Sentinel set-up picks three ports, a SeaweedFS five pairs, before starting anything.
    ports = [free_port() for _ in range(20)]
    assert len(set(ports)) == len(ports)


_ASK_PORTS = """
import json, sys
from tailup.dev.ports import _free_port_with_grpc, _my_slice, free_port
print(_my_slice().ports.start, flush=True)  # its slice is held from here on
sys.stdin.readline()  # go
taken = set()
pairs = [_free_port_with_grpc(taken) for _ in range(10)]
plain = [free_port() for _ in range(20)]
print(json.dumps({"pairs": pairs, "plain": plain}), flush=True)
sys.stdin.read()  # alive (its slice held) until the test has both answers
"""


@pytest.mark.parametrize(
    "workers",
    [("gw0", "gw1"), ("gw0", None), (None, None), ("gw3", "gw3")],
    ids=["xdist", "xdist-and-other", "two-others", "two-runs-same-worker"],
)
def test_two_processes_asking_at_once_get_disjoint_ports(
    workers: tuple[str | None, str | None],
) -> None:
    """Two processes start together and each asks for ports: neither is handed a port, or a
    port + 10000, that the other was handed: two pytest-xdist workers, a worker and a process
    outside xdist, two processes outside it (whose pids may share a preferred slice), and the
    workers of the same number of two runs at once. Before slices each process drew from the
    same 20000..30000 and could take the other's port between its bind check and its bind."""
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_XDIST_WORKER"}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(tailup.__file__).parent.parent), *sys.path])
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _ASK_PORTS],
            env=env if worker is None else {**env, "PYTEST_XDIST_WORKER": worker},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for worker in workers
    ]
    try:
        pipes = [(proc.stdin, proc.stdout) for proc in procs]
        slices = [int(out.readline()) for _, out in pipes if out is not None]
        assert len(set(slices)) == 2, f"both hold slice {slices[0]}"
        for stdin, _ in pipes:
            assert stdin is not None
            stdin.write("go\n")
            stdin.flush()
        answers = [json.loads(out.readline()) for _, out in pipes if out is not None]
    finally:
        for proc in procs:
            proc.communicate(timeout=30)
    assert [proc.returncode for proc in procs] == [0, 0]
    handed: list[set[int]] = []
    for answer in answers:
        ports = {*answer["plain"], *answer["pairs"], *(p + 10_000 for p in answer["pairs"])}
        assert len(ports) == 20 + 2 * 10, "one process handed a port twice"
        handed.append(ports)
    assert not handed[0] & handed[1]


# -- Redis ---------------------------------------------------------------------------------


def test_shared_redis_answers(redis_url: str, key_prefix: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.ping()
        client.set(f"{key_prefix}:k", b"v")
        assert client.get(f"{key_prefix}:k") == b"v"
    finally:
        client.close()


@pytest.mark.parametrize("hard", [False, True], ids=["stop", "kill"])
def test_redis_restart_same_port_keeps_aof_data(tmp_path: Path, hard: bool) -> None:
    with RedisServer(tmp_path, appendonly=True) as server:
        url, port = server.url, server.port
        client = redis.Redis.from_url(url)
        try:
            client.hset("stream:{a}:meta", mapping={"next_part_to_upload": 7})
            if hard:
                server.kill()
            else:
                server.stop()
            assert not server.running
            with pytest.raises(redis.ConnectionError):
                client.ping()
            server.start()
            assert server.port == port and server.url == url
            assert client.hget("stream:{a}:meta", "next_part_to_upload") == b"7"
        finally:
            client.close()
    assert not server.running
    assert (tmp_path / "redis.log").is_file()


def test_redis_start_failure_shows_log(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, extra_args=["--no-such-option", "1"])
    with pytest.raises(DevServerError, match="no-such-option"):
        server.start()
    assert not server.running


# -- SeaweedFS S3 --------------------------------------------------------------------------


def test_s3_put_and_get(s3_client: Any, bucket: str) -> None:
    s3_client.put_object(Bucket=bucket, Key="dir/hello.txt", Body=b"hello tailup")
    body = s3_client.get_object(Bucket=bucket, Key="dir/hello.txt")["Body"].read()
    assert body == b"hello tailup"


def test_s3_missing_bucket_is_not_created_on_write(s3_client: Any) -> None:
    with pytest.raises(Exception) as info:
        s3_client.put_object(Bucket="t-never-created", Key="k", Body=b"x")
    assert _client_error_code(info.value) == "NoSuchBucket"


@pytest.mark.parametrize(
    ("access_key", "secret_key"),
    [(None, "wrong-secret"), ("unknown-access-key", "wrong-secret")],
    ids=["wrong-secret", "unknown-key"],
)
def test_s3_refuses_wrong_credentials(
    s3_server: SeaweedS3, bucket: str, access_key: str | None, secret_key: str
) -> None:
    client = s3_server.boto3_client(
        access_key=access_key or s3_server.access_key, secret_key=secret_key, max_attempts=1
    )
    try:
        with pytest.raises(Exception) as info:
            client.put_object(Bucket=bucket, Key="k", Body=b"x")
        assert _client_error_code(info.value) in {"SignatureDoesNotMatch", "InvalidAccessKeyId"}
    finally:
        client.close()


def test_s3_rejects_small_non_last_part(s3_client: Any, bucket: str) -> None:
    upload_id = s3_client.create_multipart_upload(Bucket=bucket, Key="small")["UploadId"]
    parts = []
    for number in (1, 2):
        etag = s3_client.upload_part(
            Bucket=bucket, Key="small", UploadId=upload_id, PartNumber=number, Body=b"x" * 1024
        )["ETag"]
        parts.append({"PartNumber": number, "ETag": etag})
    try:
        with pytest.raises(Exception) as info:
            s3_client.complete_multipart_upload(
                Bucket=bucket, Key="small", UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        assert _client_error_code(info.value) == "EntityTooSmall"
    finally:
        s3_client.abort_multipart_upload(Bucket=bucket, Key="small", UploadId=upload_id)


def test_s3_env_points_at_the_server(s3_env: dict[str, str], s3_server: SeaweedS3) -> None:
    assert s3_env["AWS_ENDPOINT_URL"] == s3_server.endpoint_url
    assert s3_env["AWS_ACCESS_KEY_ID"] == s3_server.access_key
    assert s3_env["AWS_SECRET_ACCESS_KEY"] == s3_server.secret_key
    assert s3_env["AWS_DEFAULT_REGION"] == "us-east-1"
    assert s3_server.endpoint_url.startswith("http://127.0.0.1:")


def test_s3_restart_same_endpoint_keeps_objects(tmp_path: Path) -> None:
    with SeaweedS3(tmp_path / "s3", access_key="ak", secret_key="sk") as server:
        endpoint = server.endpoint_url
        server.create_bucket("restart-me")
        client = server.boto3_client(max_attempts=1)
        try:
            client.put_object(Bucket="restart-me", Key="before", Body=b"1")
            server.stop()
            assert not server.running
            with pytest.raises(Exception):  # noqa: B017 - connection refused, whatever its class
                client.list_buckets()
            server.start()
            assert server.endpoint_url == endpoint
            assert client.get_object(Bucket="restart-me", Key="before")["Body"].read() == b"1"
            server.kill()
            server.start()
            client.put_object(Bucket="restart-me", Key="after", Body=b"2")
            assert client.get_object(Bucket="restart-me", Key="before")["Body"].read() == b"1"
        finally:
            client.close()
    assert (tmp_path / "s3" / "weed.log").is_file()


def test_s3_without_credentials_accepts_any(tmp_path: Path) -> None:
    with SeaweedS3(tmp_path) as server:
        assert not server.auth_enforced
        client = server.boto3_client(access_key="anything", secret_key="goes", max_attempts=1)
        try:
            server.create_bucket("open-bucket")
            client.put_object(Bucket="open-bucket", Key="k", Body=b"x")
        finally:
            client.close()


def test_seaweed_credentials_must_come_in_pairs() -> None:
    with pytest.raises(ValueError, match="both"):
        SeaweedS3(access_key="only-half")


def test_seaweed_identities_need_enforced_credentials_and_one_kind_of_grant() -> None:
    reader = S3Identity("reader", "rk", "rs", actions=("Read",))
    with pytest.raises(ValueError, match="credentials enforced"):
        SeaweedS3(identities=[reader])
    both = S3Identity("both", "bk", "bs", actions=("Read",), policy={"Statement": []})
    with pytest.raises(ValueError, match="actions or a policy"):
        SeaweedS3(access_key="a", secret_key="s", identities=[both])
    with pytest.raises(ValueError, match="actions or a policy"):
        SeaweedS3(access_key="a", secret_key="s", identities=[S3Identity("none", "nk", "ns")])


def test_seaweed_identity_with_coarse_actions_is_limited_to_them(tmp_path: Path) -> None:
    # The IAM-policy kind: tailup's own policy, in tests/integration/test_iam_policy.py.
    reader = S3Identity("reader", "reader-key", "reader-secret", actions=("Read:readable",))
    with SeaweedS3(tmp_path, access_key="ak", secret_key="sk", identities=[reader]) as server:
        for name in ("readable", "other"):
            server.create_bucket(name)
        admin = server.boto3_client(max_attempts=1)
        client = server.boto3_client(
            access_key=reader.access_key, secret_key=reader.secret_key, max_attempts=1
        )
        try:
            admin.put_object(Bucket="readable", Key="k", Body=b"1")
            admin.put_object(Bucket="other", Key="k", Body=b"2")
            assert client.get_object(Bucket="readable", Key="k")["Body"].read() == b"1"
            for call in (
                lambda: client.put_object(Bucket="readable", Key="k2", Body=b"x"),
                lambda: client.get_object(Bucket="other", Key="k"),
            ):
                with pytest.raises(Exception) as info:  # botocore's ClientError
                    call()
                assert _client_error_code(info.value) == "AccessDenied"
        finally:
            admin.close()
            client.close()
        env = reader.env(server)
        assert (env["AWS_ACCESS_KEY_ID"], env["AWS_ENDPOINT_URL"]) == (
            "reader-key",
            server.endpoint_url,
        )


# -- moto ----------------------------------------------------------------------------------


def test_moto_serves_s3_on_loopback_and_starts_empty_after_a_restart(tmp_path: Path) -> None:
    with MotoS3(tmp_path / "moto") as server:
        assert server.endpoint_url.startswith("http://127.0.0.1:")
        server.create_bucket("moto-bucket")
        client = server.boto3_client(max_attempts=1)
        try:
            client.put_object(Bucket="moto-bucket", Key="k", Body=b"1")
            assert client.get_object(Bucket="moto-bucket", Key="k")["Body"].read() == b"1"
            server.restart()
            assert server.endpoint_url.startswith("http://127.0.0.1:")
            assert client.list_buckets()["Buckets"] == []  # moto keeps everything in memory
        finally:
            client.close()
    assert not server.running
    assert (tmp_path / "moto" / "moto.log").is_file()


# -- rclone serve s3 ------------------------------------------------------------------------


def test_rclone_serves_a_folder_over_s3_with_its_credentials_and_keeps_it_over_a_restart(
    tmp_path: Path,
) -> None:
    with RcloneS3(tmp_path / "rclone") as server:
        assert server.endpoint_url.startswith("http://127.0.0.1:")
        server.create_bucket("rclone-bucket")
        client = server.boto3_client(max_attempts=1)
        stranger = server.boto3_client(access_key="someone-else", max_attempts=1)
        try:
            client.put_object(Bucket="rclone-bucket", Key="a/k", Body=b"1")
            assert (server.data_dir / "rclone-bucket" / "a" / "k").read_bytes() == b"1"
            with pytest.raises(Exception, match="InvalidAccessKeyId"):
                stranger.get_object(Bucket="rclone-bucket", Key="a/k")
            server.restart()
            assert client.get_object(Bucket="rclone-bucket", Key="a/k")["Body"].read() == b"1"
        finally:
            client.close()
            stranger.close()
    assert not server.running
    assert (tmp_path / "rclone" / "rclone.log").is_file()


# -- ffmpeg recordings ---------------------------------------------------------------------


def test_record_cmd_rejects_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"accepted: mp4, faststart, fmp4, mkv, ts, mov"):
        record_cmd(tmp_path / "x.avi", "avi", 1)


def test_record_cmd_live_flag(tmp_path: Path) -> None:
    assert "-re" in record_cmd(tmp_path / "a.ts", "ts", 1)
    assert "-re" not in record_cmd(tmp_path / "a.ts", "ts", 1, live=False)


@pytest.mark.parametrize("fmt", ["mkv", "mp4"])
def test_record_produces_a_valid_file(record: Any, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"rec.{'mkv' if fmt == 'mkv' else 'mp4'}"
    proc = record(out, fmt, 2)
    assert proc.wait(timeout=60) == 0, proc.log_path.read_text()
    assert out.stat().st_size > 10_000
    check = subprocess.run(
        [ffmpeg_exe(), "-nostdin", "-v", "error", "-i", str(out), "-f", "null", "-"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stderr
    assert check.stderr.strip() == ""


@pytest.mark.parametrize("fmt", RECORD_FORMATS)
def test_every_format_records_fast(tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"rec-{fmt}.bin"
    cmd = record_cmd(out, fmt, 1, live=False, size="320x180", bitrate="2M")
    subprocess.run(cmd, check=True, timeout=60)
    check = subprocess.run(
        [ffmpeg_exe(), "-nostdin", "-v", "error", "-i", str(out), "-f", "null", "-"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stderr
    # constant bitrate: about 2 Mbit/s of video for 1 s, plus audio and container
    assert 150_000 < out.stat().st_size < 600_000
