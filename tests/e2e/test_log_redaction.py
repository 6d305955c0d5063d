"""No secret in the logs of a real daemon at debug level: an upload, then the error paths.

The secrets are real: the S3 server refuses any other secret key, Redis refuses any other password.
Everything tailup prints (its logs, botocore's and aiohttp's debug records, error messages, the
status command) is collected and searched for them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import TEST_ACCESS_KEY, TEST_SECRET_KEY
from daemonproc import run_cli, start_daemon
from tailup.dev import RedisServer, SeaweedS3
from tailup.plan import MiB

REDIS_PASSWORD = "redis-Pa55word-for-redaction"
WRONG_SECRET = "wrong-secret-key-for-redaction"
WRONG_PASSWORD = "wrong-redis-password-for-redaction"
SECRETS = (TEST_SECRET_KEY, REDIS_PASSWORD, WRONG_SECRET, WRONG_PASSWORD, TEST_ACCESS_KEY)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path / "redis", extra_args=("--requirepass", REDIS_PASSWORD)) as server:
        yield server


def _redis_url(server: RedisServer, password: str) -> str:
    return f"redis://:{password}@127.0.0.1:{server.port}/0"


def _connection(s3: SeaweedS3, bucket: str, redis_url: str) -> list[str]:
    return ["--bucket", bucket, "--endpoint-url", s3.endpoint_url, "--redis-url", redis_url]


def test_debug_logs_of_an_upload_and_of_refusals_hold_no_secret(
    tmp_path: Path, s3_server: SeaweedS3, private_redis: RedisServer, bucket: str
) -> None:
    watch = tmp_path / "recordings"
    watch.mkdir()
    good = _connection(s3_server, bucket, _redis_url(private_redis, REDIS_PASSWORD))
    debug = ["--log-level", "debug", "--log-format", "json", "--part-size", "5MiB"]
    outputs: dict[str, str] = {}

    # 1. A whole upload at debug level: every S3 request is signed and logged by botocore.
    daemon = start_daemon(
        ["--watch", str(watch), *good, *debug, "--close-grace", "0.5"],
        s3_server.env(),
        tmp_path / "upload.log",
        tmp_path,
    )
    daemon.wait_for_event("watching")
    (watch / "cam.mp4").write_bytes(hashlib.shake_256(b"redaction").digest(6 * MiB))
    daemon.wait_for_event("stream completed", timeout_s=60)
    assert daemon.stop() == 0
    outputs["upload"] = daemon.text()

    # 2. S3 refuses the secret key: SignatureDoesNotMatch, the daemon says so and exits 1.
    # 3. Redis refuses the password: a clear error, exit 1 (after redis-py's retries, seconds of
    # waiting). These runs and the status commands are independent: started together, so the
    # test waits for the slowest, not for the sum.
    wrong_redis = _connection(s3_server, bucket, _redis_url(private_redis, WRONG_PASSWORD))
    wrong_secret = start_daemon(
        ["--watch", str(watch), *good, *debug],
        {**s3_server.env(), "AWS_SECRET_ACCESS_KEY": WRONG_SECRET},
        tmp_path / "wrong-secret.log",
        tmp_path,
    )
    wrong_password = start_daemon(
        ["--watch", str(watch), *wrong_redis, *debug],
        s3_server.env(),
        tmp_path / "wrong-password.log",
        tmp_path,
    )
    with ThreadPoolExecutor(max_workers=2) as pool:
        status_run = pool.submit(run_cli, ["status", *good], s3_server.env())
        refused_status_run = pool.submit(run_cli, ["status", *wrong_redis], s3_server.env())
        status, refused_status = status_run.result(), refused_status_run.result()
    assert status.returncode == 0 and "completed" in status.stdout, status.stderr
    outputs["status"] = status.stdout + status.stderr

    assert wrong_secret.proc.wait(timeout=60) == 1
    outputs["wrong secret"] = wrong_secret.text()
    assert "SignatureDoesNotMatch" in outputs["wrong secret"]

    assert wrong_password.proc.wait(timeout=60) == 1
    outputs["wrong password"] = wrong_password.text()
    assert "Redis refused the credentials in --redis-url" in outputs["wrong password"]
    assert refused_status.returncode == 1
    outputs["status, wrong password"] = refused_status.stdout + refused_status.stderr

    for name, text in outputs.items():
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} printed in {name}"

    # The logs did hold the material that had to be redacted, so the search above meant something.
    upload = outputs["upload"]
    assert upload.count('"logger": "botocore.') > 50
    assert "'Authorization': ***" in upload
    # botocore's own SigV4 signer logs its signature; with awscrt installed botocore signs with
    # the CRT instead, which logs nothing of it.
    if '"logger": "botocore.auth"' in upload:
        assert "Signature:\\n***" in upload
    settings = next(e for e in daemon.events() if e["event"] == "settings")
    assert settings["redis_url"] == f"redis://:***@127.0.0.1:{private_redis.port}/0"


def test_status_reads_a_password_protected_redis(
    s3_server: SeaweedS3, private_redis: RedisServer, bucket: str
) -> None:
    """The password in --redis-url is used (not only hidden): status gets in, shows nothing."""
    url = _redis_url(private_redis, REDIS_PASSWORD)
    # One run: the fixture's server answers already (it was probed before the test started).
    result = run_cli(
        ["status", "-o", "table", *_connection(s3_server, bucket, url)], s3_server.env()
    )
    assert result.returncode == 0, result.stderr
    assert "No streams yet." in result.stdout
