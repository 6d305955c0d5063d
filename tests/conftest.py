"""Shared fixtures: real S3 servers (SeaweedFS, moto for AWS's semantics, and rclone serve s3,
which refuses to replace a part), a real Redis and real ffmpeg recordings.

Servers are session-scoped and started only when a test asks for them, so unit tests never pay
for them. Tests that need to stop, kill or restart a server start their own (see
``tailup.dev``) instead of touching the shared ones.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

import tailup
from tailup.dev import (
    MotoS3,
    RcloneS3,
    RedisCluster,
    RedisSentinel,
    RedisServer,
    S3Identity,
    SeaweedS3,
    record_cmd,
)

TEST_ACCESS_KEY = "tailup-test-access"
TEST_SECRET_KEY = "tailup-test-secret-0123456789"
TEST_REGION = "us-east-1"
# An ACL user on every data node of the redis_cluster and redis_sentinel fixtures. The password is
# short on purpose: below tailup.observe's length for literal redaction, so only the URL patterns
# can hide it (tests/integration/test_redis_deployments.py searches the logs for it).
DEPLOYMENT_USER = "tailup"
DEPLOYMENT_PASSWORD = "Qz7k"

Recorder = Callable[..., "subprocess.Popen[bytes]"]

pytest_plugins = ["pytester"]  # tests/unit/test_ci_skips.py runs pytest on this hook


# -- logging, per test -----------------------------------------------------------------------------
# In-process CLI runs and daemons configure logging for the whole process (structlog, the root
# logger's handlers and levels, the excepthooks). Each test starts from structlog's defaults, so a
# test that reads its log lines never depends on which test ran before it on the same worker.
# Caching a bound logger on first use would pin a module's logger to whatever configuration was in
# force then: in the test process it is turned off.
_structlog_configure = structlog.configure


def _configure_uncached(*args: Any, **kwargs: Any) -> None:
    kwargs["cache_logger_on_first_use"] = False
    _structlog_configure(*args, **kwargs)


structlog.configure = _configure_uncached  # type: ignore[assignment]


@pytest.fixture(autouse=True)
def _logging_restored() -> Iterator[None]:
    root = logging.getLogger()
    handlers, root_level = list(root.handlers), root.level
    named = {name: logging.getLogger(name).level for name in logging.root.manager.loggerDict}
    hooks = (sys.excepthook, threading.excepthook)
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(root_level)
    for name, level in named.items():
        logging.getLogger(name).setLevel(level)
    sys.excepthook, threading.excepthook = hooks


# -- skips under CI --------------------------------------------------------------------------------
# `make test` shows every skip (-rs). Under CI=true a skip is a failure, unless the test is listed
# here with why it may skip there: a skipped test must never turn CI green silently.
CI_ALLOWED_SKIPS: dict[str, str] = {
    # glibc's mallopt exists on Linux only; CI runs Linux, so this is for CI=true elsewhere.
    "tests/integration/test_fast_paths.py::test_part_memory_goes_back_to_the_system_on_linux": (
        "Linux only"
    ),
}


def running_in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if not report.skipped or hasattr(report, "wasxfail") or not running_in_ci():
        return
    if item.nodeid.split("[")[0] in CI_ALLOWED_SKIPS:
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    report.outcome = "failed"
    report.longrepr = (
        f"skipped under CI=true ({reason}); a skip there is an error unless the test is in "
        "CI_ALLOWED_SKIPS in tests/conftest.py"
    )


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """SeaweedFS S3 on 127.0.0.1 that refuses any credentials but the test ones."""
    server = SeaweedS3(
        tmp_path_factory.mktemp("seaweedfs"),
        access_key=TEST_ACCESS_KEY,
        secret_key=TEST_SECRET_KEY,
        region=TEST_REGION,
        # Every bucket (one per test) takes a volume of its own, and by default weed allows
        # free disk / volume size (1 GiB) of them: ~45 here, fewer on a fuller disk, after which
        # every write fails with InternalError ("no free volumes left"). Volumes are sparse files.
        extra_args=["-volume.max=1000"],
    )
    with server:
        yield server


# -- least privilege: SeaweedFS identities limited by deploy/iam-policy.json -----------------------

# Found from the package, not this file: tests/unit/test_ci_skips.py runs a copy of this conftest
# elsewhere.
IAM_POLICY_PATH = Path(tailup.__file__).resolve().parents[2] / "deploy" / "iam-policy.json"
POLICY_BUCKET = "recordings"  # the bucket deploy/iam-policy.json names
LIST_BUCKET_STATEMENT = {
    "Sid": "CheckTheBucketAtStart",
    "Effect": "Allow",
    "Action": "s3:ListBucket",
    "Resource": f"arn:aws:s3:::{POLICY_BUCKET}",
}


def iam_policy(*, without: str = "", with_list_bucket: bool = False) -> dict[str, Any]:
    """deploy/iam-policy.json as it is, or without one action, or with s3:ListBucket added."""
    policy: dict[str, Any] = json.loads(IAM_POLICY_PATH.read_text())
    for statement in policy["Statement"]:
        actions = statement["Action"]
        actions = [actions] if isinstance(actions, str) else actions
        statement["Action"] = [a for a in actions if a != without] or ["s3:GetBucketTagging"]
    if with_list_bucket:
        policy["Statement"].append(copy.deepcopy(LIST_BUCKET_STATEMENT))
    return policy


def policy_actions() -> list[str]:
    actions: list[str] = []
    for statement in json.loads(IAM_POLICY_PATH.read_text())["Statement"]:
        named = statement["Action"]
        actions += [named] if isinstance(named, str) else named
    return actions


POLICY_VARIANTS = ["policy", "policy+list", *(f"without {a}" for a in policy_actions())]


def policy_identity(name: str) -> S3Identity:
    """An identity of ``least_privilege_s3``: "policy" (deploy/iam-policy.json), "policy+list"
    (with s3:ListBucket) or "without s3:X" (the policy less one of its actions)."""
    if name == "policy":
        policy = iam_policy()
    elif name == "policy+list":
        policy = iam_policy(with_list_bucket=True)
    else:
        policy = iam_policy(without=name.removeprefix("without "))
    tag = uuid.uuid5(uuid.NAMESPACE_OID, name).hex[:12]
    return S3Identity(name, f"AK{tag}", f"secret-{tag}-0123456789", policy=policy)


@pytest.fixture(scope="session")
def least_privilege_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """SeaweedFS on 127.0.0.1 with the bucket deploy/iam-policy.json names and an identity per
    variant of the policy (``policy_identity``); its main identity (TEST_ACCESS_KEY) may do
    everything, to set up and inspect."""
    server = SeaweedS3(
        tmp_path_factory.mktemp("seaweedfs-iam"),
        access_key=TEST_ACCESS_KEY,
        secret_key=TEST_SECRET_KEY,
        region=TEST_REGION,
        identities=[policy_identity(name) for name in POLICY_VARIANTS],
    )
    with server:
        server.create_bucket(POLICY_BUCKET)
        yield server


@pytest.fixture(scope="session")
def least_privilege_moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3]:
    """moto with its IAM enforced, the bucket deploy/iam-policy.json names and a user per
    variant of the policy (``least_privilege_moto.identity(name)``, names as ``policy_identity``):
    AWS's action names and mapping, where SeaweedFS is lenient."""
    policies = {name: policy_identity(name).policy or {} for name in POLICY_VARIANTS}
    server = MotoS3(tmp_path_factory.mktemp("moto-iam"), region=TEST_REGION, iam_policies=policies)
    with server:
        server.create_bucket(POLICY_BUCKET)
        yield server


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3]:
    """moto's S3 server on 127.0.0.1: a second S3 implementation, with AWS's part semantics
    (only the latest upload of a part number is kept). It accepts any credentials."""
    with MotoS3(tmp_path_factory.mktemp("moto"), region=TEST_REGION) as server:
        yield server


@pytest.fixture
def moto_bucket(moto_server: MotoS3) -> str:
    """A fresh, empty bucket on ``moto_server``."""
    return moto_server.create_bucket(f"t-{uuid.uuid4().hex[:12]}")


@pytest.fixture(scope="session")
def rclone_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RcloneS3]:
    """rclone's ``serve s3`` on 127.0.0.1 over a local folder: a third S3 implementation, which
    refuses a part number sent again with other bytes (docs/s3-servers.md)."""
    with RcloneS3(tmp_path_factory.mktemp("rclone"), region=TEST_REGION) as server:
        yield server


@pytest.fixture
def rclone_bucket(rclone_server: RcloneS3) -> str:
    """A fresh, empty bucket on ``rclone_server``."""
    return rclone_server.create_bucket(f"t-{uuid.uuid4().hex[:12]}")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """redis-server on 127.0.0.1; tests share it and keep apart with ``key_prefix``."""
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


def add_acl_user(port: int, user: str, password: str, *rules: str) -> None:
    """``ACL SETUSER user on >password rules...`` on the server at 127.0.0.1:port."""
    import redis

    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)
    try:
        client.execute_command("ACL", "SETUSER", user, "reset", "on", f">{password}", *rules)
    finally:
        client.close()


def make_tls_files(folder: Path) -> dict[str, Path]:
    """A CA and a server certificate for 127.0.0.1, made with openssl."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {name: folder / f"{name}.pem" for name in ("ca", "ca-key", "cert", "key")}

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=folder)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=tailup test CA", "-keyout", str(files["ca-key"]),
            "-out", str(files["ca"]))  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", str(files["key"]), "-out", str(folder / "cert.csr"))  # fmt: skip
    (folder / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", str(folder / "cert.csr"), "-CA", str(files["ca"]),
            "-CAkey", str(files["ca-key"]), "-CAcreateserial", "-days", "2",
            "-extfile", str(folder / "ext.cnf"), "-out", str(files["cert"]))  # fmt: skip
    return files


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """A 3-master Redis Cluster on 127.0.0.1 with DEPLOYMENT_USER on every node; tests share it
    and keep apart with ``key_prefix`` (no test stops it)."""
    with RedisCluster(tmp_path_factory.mktemp("redis-cluster")) as cluster:
        for port in cluster.ports:
            add_acl_user(port, DEPLOYMENT_USER, DEPLOYMENT_PASSWORD, "~*", "+@all")
        yield cluster


@pytest.fixture(scope="session")
def redis_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisSentinel]:
    """A master, its replica and one Sentinel on 127.0.0.1, DEPLOYMENT_USER on both data nodes;
    tests share it and keep apart with ``key_prefix``. No test fails it over: one that does starts
    its own."""
    with RedisSentinel(tmp_path_factory.mktemp("redis-sentinel")) as deployment:
        for server in (deployment.master, deployment.replica):
            add_acl_user(server.port, DEPLOYMENT_USER, DEPLOYMENT_PASSWORD, "~*", "+@all")
        yield deployment


@pytest.fixture(scope="session")
def s3_client(s3_server: SeaweedS3) -> Iterator[Any]:
    """A synchronous (botocore) S3 client for ``s3_server``, to inspect what tailup wrote."""
    client = s3_server.boto3_client()
    yield client
    client.close()


@pytest.fixture
def bucket(s3_server: SeaweedS3) -> str:
    """A fresh, empty bucket on ``s3_server``."""
    return s3_server.create_bucket(f"t-{uuid.uuid4().hex[:12]}")


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
def key_prefix() -> str:
    """A Redis key prefix of this test's own (the shared Redis is not flushed between tests)."""
    return f"t-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def s3_env(s3_server: SeaweedS3) -> dict[str, str]:
    """Environment variables pointing AWS SDKs/CLIs at ``s3_server``.

    Keys: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION, AWS_REGION,
    AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_S3, AWS_EC2_METADATA_DISABLED. Use them as
    ``subprocess.run(..., env={**os.environ, **s3_env})`` or with ``monkeypatch.setenv``.
    """
    return s3_server.env()


@pytest.fixture
def record(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorder]:
    """Start a real ffmpeg recording: ``record(out, fmt, seconds, **record_cmd_kwargs) -> Popen``.

    The recording runs in the background (``-re``: the file grows in real time); wait for it
    with ``proc.wait()``. ffmpeg's stderr goes to ``proc.log_path``, outside the test's folders
    (so it never lands in a watched folder); ``proc.args`` holds the command. Recordings still
    running at teardown are stopped.
    """
    procs: list[subprocess.Popen[bytes]] = []
    log_dir: Path | None = None

    def start(out: Path | str, fmt: str, seconds: float, **kwargs: Any) -> subprocess.Popen[bytes]:
        nonlocal log_dir
        if log_dir is None:
            log_dir = tmp_path_factory.mktemp("ffmpeg-logs")
        out = Path(out)
        cmd = record_cmd(out, fmt, seconds, **kwargs)
        log_path = log_dir / f"{len(procs):03d}-{out.name}.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log
            )
        proc.log_path = log_path  # type: ignore[attr-defined]
        procs.append(proc)
        return proc

    yield start

    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture
def watch(tmp_path: Path) -> Path:
    folder = tmp_path / "watch"
    folder.mkdir()
    return folder


@pytest.fixture
def daemon_args(
    watch: Path,
    bucket: str,
    s3_server: SeaweedS3,
    redis_server: RedisServer,
    key_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, Any]:
    """Keyword arguments of harness.running_daemon for the session's servers."""
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    return {
        "watch": watch,
        "bucket": bucket,
        "endpoint_url": s3_server.endpoint_url,
        "redis_url": redis_server.url,
        "key_prefix": key_prefix,
    }


@pytest.fixture
def outside_settings_removed(monkeypatch: pytest.MonkeyPatch) -> None:
    """For tests that call ``tailup.cli.main`` in-process: it reads TAILUP_ variables and a .env
    file as `tailup` does, so none may come from the developer's shell or working directory."""
    for name in list(os.environ):
        if name.upper().startswith("TAILUP_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TAILUP_ENV_FILE", "")
