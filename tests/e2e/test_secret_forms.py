"""Every form a secret can take in tailup's settings, each against a real server that refuses any
other secret: the real daemon at debug level connects with it (an upload completes), and the
secret, as given and percent-encoded, appears nowhere in its output, nor in `tailup status`'s;
refused secrets give a clear error and are not printed either.

Redis: requirepass and ACL users on one redis-server (TCP, TLS, unix socket); passwords with
the characters a URL must encode, and one shorter than literal redaction takes (only the patterns
can hide it). S3: SeaweedFS with one identity; its secret key from the environment, from a shared
credentials file, a session token, and credentials written into --endpoint-url.
(tests/integration/test_redis_deployments.py runs the Cluster and Sentinel forms.)
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from conftest import TEST_ACCESS_KEY, TEST_SECRET_KEY, make_tls_files
from daemonproc import DaemonProcess, run_cli, start_daemon
from tailup.dev import RedisServer, SeaweedS3, free_port

REQUIREPASS = "requirepass-Secret-0199"
SPECIAL_USER, SPECIAL_PW = "special", "S3cr@t:p/a%s&w#rd+x y"  # every character a URL encodes
SHORT_USER, SHORT_PW = "short", "k@%7"  # below literal redaction's length: patterns only
WRONG_PW = "wr@ng:P%ss/0"
SESSION_TOKEN = "FwoGZXIvYXdzEXAMPLE-session-token-0123456789"
URL_SECRET = "endpoint-url-Secret-777"
SECRETS = (REQUIREPASS, SPECIAL_PW, SHORT_PW, WRONG_PW, SESSION_TOKEN, URL_SECRET, TEST_SECRET_KEY)


def _forms(secret: str) -> set[str]:
    """The secret as given and as a URL or a form would carry it."""
    return {secret, quote(secret, safe=""), quote(secret), quote_plus(secret, safe="")}


def _assert_no_secret(text: str, where: str) -> None:
    for secret in SECRETS:
        for form in _forms(secret):
            assert form not in text, f"{form!r} (a form of {secret!r}) is printed by {where}"


@dataclass
class PrivateRedis:
    server: RedisServer
    tls_port: int
    ca: Path
    socket: Path

    @property
    def plain(self) -> str:
        return f"127.0.0.1:{self.server.port}"


@pytest.fixture(scope="module")
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedis]:
    folder = tmp_path_factory.mktemp("secret-redis")
    tls = make_tls_files(folder / "tls")
    tls_port = free_port()
    sock = folder / "redis.sock"
    extra = ["--requirepass", REQUIREPASS, "--unixsocket", str(sock),
             "--tls-port", str(tls_port), "--tls-cert-file", str(tls["cert"]),
             "--tls-key-file", str(tls["key"]), "--tls-ca-cert-file", str(tls["ca"]),
             "--tls-auth-clients", "no"]  # fmt: skip
    with RedisServer(folder / "data", extra_args=extra) as server:
        import redis

        admin = redis.Redis(port=server.port, password=REQUIREPASS)
        try:
            for user, password in ((SPECIAL_USER, SPECIAL_PW), (SHORT_USER, SHORT_PW)):
                admin.execute_command(  # type: ignore[no-untyped-call]
                    "ACL", "SETUSER", user, "reset", "on", f">{password}", "~*", "+@all"
                )
        finally:
            admin.close()
        yield PrivateRedis(server, tls_port, tls["ca"], sock)


def _redis_urls(r: PrivateRedis) -> dict[str, str]:
    special, short = quote(SPECIAL_PW, safe=""), quote(SHORT_PW, safe="")
    return {
        "redis://:pw@": f"redis://:{REQUIREPASS}@{r.plain}/0",
        "redis://user:pw@, percent-encoded": f"redis://{SPECIAL_USER}:{special}@{r.plain}/0",
        "redis://user:pw@, short": f"redis://{SHORT_USER}:{short}@{r.plain}/0",
        "?password=, percent-encoded": f"redis://{SPECIAL_USER}@{r.plain}/0?password={special}",
        "&password=": f"redis://{r.plain}?db=0&password={REQUIREPASS}",
        "&password=, short": f"redis://{SHORT_USER}@{r.plain}?db=0&password={short}",
        "rediss://user:pw@": (
            f"rediss://{SPECIAL_USER}:{special}@127.0.0.1:{r.tls_port}/0?ssl_ca_certs={r.ca}"
        ),
        "unix://:pw@": f"unix://:{REQUIREPASS}@{r.socket}?db=0",
    }


def _upload_one_file(
    tmp_path: Path, name: str, args: list[str], env: dict[str, str]
) -> DaemonProcess:
    """`tailup run` at debug level until a small file is uploaded (Redis and S3 took the
    credentials), then SIGTERM; its whole output is in the returned process's log."""
    watch = tmp_path / f"watch-{secrets.token_hex(4)}"
    watch.mkdir()
    daemon = start_daemon(
        ["--watch", str(watch), *args, "--log-level", "debug", "--log-format", "json",
         "--close-grace", "0.3"],
        env, tmp_path / f"{name.replace('/', '_')}.log", tmp_path,
    )  # fmt: skip
    try:
        daemon.wait_for_event("tailup started", timeout_s=60)
        (watch / "cam.mp4").write_bytes(secrets.token_bytes(64 * 1024))
        daemon.wait_for_event("stream completed", timeout_s=60)
        assert daemon.stop() == 0, daemon.tail()
    finally:
        if daemon.proc.poll() is None:
            daemon.kill9()
    return daemon


def _s3_args(s3: SeaweedS3, bucket: str) -> list[str]:
    return ["--bucket", bucket, "--endpoint-url", s3.endpoint_url]


@pytest.mark.parametrize(
    "form",
    [
        "redis://:pw@",
        "redis://user:pw@, percent-encoded",
        "redis://user:pw@, short",
        "?password=, percent-encoded",
        "&password=",
        "&password=, short",
        "rediss://user:pw@",
        "unix://:pw@",
    ],
)
def test_a_redis_url_secret_is_used_and_never_printed(
    form: str,
    tmp_path: Path,
    s3_server: SeaweedS3,
    bucket: str,
    private_redis: PrivateRedis,
    key_prefix: str,
) -> None:
    url = _redis_urls(private_redis)[form]
    connection = [*_s3_args(s3_server, bucket), "--redis-url", url, "--redis-prefix", key_prefix]
    daemon = _upload_one_file(tmp_path, form, connection, s3_server.env())
    text = daemon.text()
    _assert_no_secret(text, f"tailup run with {form}")
    # The search meant something: the settings line at debug printed the URL, redacted; the
    # libraries logged at debug; the checkpoint of the upload went through this connection.
    settings = next(e for e in daemon.events() if e["event"] == "settings")
    assert "***" in settings["redis_url"], settings["redis_url"]
    assert text.count('"logger": "botocore.') > 20
    status = run_cli(["status", *connection], s3_server.env())
    assert status.returncode == 0 and "completed" in status.stdout, status.stderr
    _assert_no_secret(status.stdout + status.stderr, f"tailup status with {form}")


def test_redis_url_in_the_environment_and_in_a_config_file(
    tmp_path: Path,
    s3_server: SeaweedS3,
    bucket: str,
    private_redis: PrivateRedis,
    key_prefix: str,
) -> None:
    special = quote(SPECIAL_PW, safe="")
    from_env = f"redis://{SPECIAL_USER}:{special}@{private_redis.plain}/0"
    daemon = _upload_one_file(
        tmp_path,
        "env",
        [*_s3_args(s3_server, bucket), "--redis-prefix", key_prefix],
        {**s3_server.env(), "TAILUP_REDIS_URL": from_env},
    )
    _assert_no_secret(daemon.text(), "tailup run with TAILUP_REDIS_URL")

    config = tmp_path / "tailup.toml"
    config.write_text(
        f'redis_url = "redis://{private_redis.plain}/0?password={REQUIREPASS}"\n'
        f'redis_prefix = "{key_prefix}"\n'
    )
    daemon = _upload_one_file(
        tmp_path, "config", [*_s3_args(s3_server, bucket), "--config", str(config)], s3_server.env()
    )
    _assert_no_secret(daemon.text(), "tailup run with a config file")


@pytest.mark.parametrize(
    "url",
    [
        "redis://{user}:{pw}@{plain}/0",
        # The same refusal path with the secret elsewhere in the URL: `make test-all`.
        pytest.param("redis://{user}@{plain}/0?password={pw}", marks=pytest.mark.full),
        pytest.param("redis://{plain}?db=0&password={pw}", marks=pytest.mark.full),
    ],
)
def test_a_refused_redis_secret_is_named_not_printed(
    url: str, tmp_path: Path, s3_server: SeaweedS3, bucket: str, private_redis: PrivateRedis
) -> None:
    url = url.format(user=SPECIAL_USER, pw=quote(WRONG_PW, safe=""), plain=private_redis.plain)
    connection = [*_s3_args(s3_server, bucket), "--redis-url", url]
    daemon = start_daemon(
        ["--watch", str(tmp_path), *connection, "--log-level", "debug", "--log-format", "json"],
        s3_server.env(),
        tmp_path / "refused.log",
        tmp_path,
    )
    # Both wait out redis-py's retries of the refusal (seconds): the status runs meanwhile.
    status = run_cli(["status", *connection], s3_server.env())
    assert daemon.proc.wait(timeout=60) == 1, daemon.tail()
    assert "Redis refused the credentials in --redis-url" in daemon.text()
    _assert_no_secret(daemon.text(), "tailup run refused by Redis")
    assert status.returncode == 1 and "Redis refused" in status.stderr, status.stderr
    _assert_no_secret(status.stdout + status.stderr, "tailup status refused by Redis")


def test_aws_secret_key_from_a_shared_credentials_file(
    tmp_path: Path,
    s3_server: SeaweedS3,
    bucket: str,
    private_redis: PrivateRedis,
    key_prefix: str,
) -> None:
    """Not in the environment, so not known to literal redaction: nothing may print it at all."""
    credentials = tmp_path / "aws-credentials"
    credentials.write_text(
        f"[demo]\naws_access_key_id = {TEST_ACCESS_KEY}\n"
        f"aws_secret_access_key = {TEST_SECRET_KEY}\n"
    )
    env = {
        k: v
        for k, v in s3_server.env().items()
        if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    }
    env.update(
        AWS_SHARED_CREDENTIALS_FILE=str(credentials),
        AWS_CONFIG_FILE=str(tmp_path / "no-aws-config"),
        AWS_PROFILE="demo",
    )
    redis_url = f"redis://:{REQUIREPASS}@{private_redis.plain}/0"
    connection = [*_s3_args(s3_server, bucket), "--redis-url", redis_url, "--redis-prefix",
                  key_prefix]  # fmt: skip
    daemon = _upload_one_file(tmp_path, "profile", connection, env)
    text = daemon.text()
    _assert_no_secret(text, "tailup run with a profile")
    assert "'Authorization': ***" in text  # each request was signed with that key, and logged


def test_aws_session_token_from_the_environment(
    tmp_path: Path, s3_server: SeaweedS3, bucket: str, private_redis: PrivateRedis
) -> None:
    """SeaweedFS knows no session tokens and refuses the request: it was sent (botocore logged
    its headers at debug), and neither it nor the secret key is printed."""
    redis_url = f"redis://:{REQUIREPASS}@{private_redis.plain}/0"
    daemon = start_daemon(
        ["--watch", str(tmp_path), *_s3_args(s3_server, bucket), "--redis-url", redis_url,
         "--log-level", "debug", "--log-format", "json"],
        {**s3_server.env(), "AWS_SESSION_TOKEN": SESSION_TOKEN},
        tmp_path / "token.log",
        tmp_path,
    )  # fmt: skip
    assert daemon.proc.wait(timeout=60) == 1, daemon.tail()
    text = daemon.text()
    _assert_no_secret(text, "tailup run with AWS_SESSION_TOKEN")
    assert "'X-Amz-Security-Token': ***" in text  # the token went out in a request header
    assert "S3 refuses this bucket" in text


def test_credentials_in_the_endpoint_url_are_refused_unprinted(
    tmp_path: Path, s3_server: SeaweedS3, bucket: str
) -> None:
    url = f"http://{TEST_ACCESS_KEY}:{URL_SECRET}@127.0.0.1:{s3_server.s3_port}"
    for command in (["run", "--watch", str(tmp_path), "--log-level", "debug"], ["status"]):
        result = run_cli([*command, "--bucket", bucket, "--endpoint-url", url], s3_server.env())
        assert result.returncode == 2, result.stderr
        assert "--endpoint-url" in result.stderr and "holds credentials" in result.stderr
        _assert_no_secret(result.stdout + result.stderr, f"tailup {command[0]}")
