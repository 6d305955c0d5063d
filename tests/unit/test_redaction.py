"""No secret reaches a log line: URL passwords, signed-URL parameters, secret-named fields."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
import structlog

from tailup.observe import REDACTED, redact_processor, redact_text, url_password


@pytest.mark.parametrize(
    ("text", "expected", "secret"),
    [
        ("redis://:pw@host", f"redis://:{REDACTED}@host", "pw"),
        ("redis://:pw@host:6379/0", f"redis://:{REDACTED}@host:6379/0", "pw"),
        ("redis://user:pw@host:6379/0", f"redis://user:{REDACTED}@host:6379/0", "pw"),
        (
            "rediss://default:s3cr3t@cache:6380/1",
            f"rediss://default:{REDACTED}@cache:6380/1",
            "s3cr3t",
        ),
        (
            "connecting to redis://:hunter2@10.0.0.5:6379/0 failed",
            f"connecting to redis://:{REDACTED}@10.0.0.5:6379/0 failed",
            "hunter2",
        ),
        ("https://u:p%40ss@h.example/x", f"https://u:{REDACTED}@h.example/x", "p%40ss"),
        # An unencoded @ in a password: URL parsers split at the last @, so must redaction.
        ("redis://:p@ssw0rd@host:6379/0", f"redis://:{REDACTED}@host:6379/0", "ssw0rd"),
        ("redis://:pa:ss@host", f"redis://:{REDACTED}@host", "pa:ss"),
        (
            "a redis://:one@h1/0 b redis://:two@h2/0",
            f"a redis://:{REDACTED}@h1/0 b redis://:{REDACTED}@h2/0",
            "one",
        ),
        # The forms of tailup.redisconn: a password in the query, several hosts.
        ("redis://h:6379/0?password=pw", f"redis://h:6379/0?password={REDACTED}", "pw"),
        ("redis://h/0?db=1&password=pw&x=1", f"redis://h/0?db=1&password={REDACTED}&x=1", "pw"),
        ("unix:///run/r.sock?password=pw", f"unix:///run/r.sock?password={REDACTED}", "pw"),
        ("unix://:pw@/run/r.sock", f"unix://:{REDACTED}@/run/r.sock", "pw"),
        (
            "redis+cluster://u:pw@h1:7000,h2:7001",
            f"redis+cluster://u:{REDACTED}@h1:7000,h2:7001",
            "pw",
        ),
        (
            "rediss+cluster://:pw@h1:7000,h2:7001/0",
            f"rediss+cluster://:{REDACTED}@h1:7000,h2:7001/0",
            "pw",
        ),
        (
            "redis+sentinel://u:pw@s1:26379,s2:26379/mymaster/2",
            f"redis+sentinel://u:{REDACTED}@s1:26379,s2:26379/mymaster/2",
            "pw",
        ),
        (
            "rediss+sentinel://s1:26379/mymaster?password=pw",
            f"rediss+sentinel://s1:26379/mymaster?password={REDACTED}",
            "pw",
        ),
    ],
)
def test_url_passwords(text: str, expected: str, secret: str) -> None:
    redacted = redact_text(text)
    assert redacted == expected
    assert secret not in redacted


@pytest.mark.parametrize(
    ("url", "password"),
    [
        ("redis://:pw@h:6379/0", "pw"),
        ("redis://u:p%40ss@h:6379/0", "p@ss"),
        ("redis://h:6379/0?password=p%26w", "p&w"),
        ("redis+cluster://u:pw@h1:7000,h2:7001", "pw"),
        ("redis+sentinel://:pw@s1:26379,s2:26379/mymaster/0", "pw"),
        ("redis+sentinel://s1:26379/mymaster?password=pw", "pw"),
        ("redis://h:6379/0", None),
        ("redis://u@h:6379/0", None),
    ],
)
def test_the_password_registered_for_literal_redaction(url: str, password: str | None) -> None:
    # The daemon registers it (tailup.cli.main._settings): hidden even where no pattern finds it.
    assert url_password(url) == password


SIGNED = (
    "https://bucket.s3.amazonaws.com/streams/x/cam.mp4?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20240506%2Fus-east-1%2Fs3%2Faws4_request"
    "&X-Amz-Date=20240506T070809Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host"
    "&X-Amz-Security-Token=FwoGZXIvYXdzEXAMPLETOKEN"
    "&X-Amz-Signature=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
)


def test_presigned_url() -> None:
    redacted = redact_text(SIGNED)
    for secret in ("AKIAIOSFODNN7EXAMPLE", "FwoGZXIvYXdzEXAMPLETOKEN", "0123456789abcdef"):
        assert secret not in redacted
    # The rest of the URL stays useful.
    assert "streams/x/cam.mp4" in redacted
    assert "X-Amz-Date=20240506T070809Z" in redacted
    assert "X-Amz-Expires=3600" in redacted
    assert f"X-Amz-Signature={REDACTED}" in redacted
    assert f"X-Amz-Credential={REDACTED}" in redacted


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("?X-Amz-Signature=abc123&X-Amz-Credential=AKIAXYZ", "abc123"),
        ("?X-Amz-Signature=abc123&X-Amz-Credential=AKIAXYZ", "AKIAXYZ"),
        ("?x-amz-signature=lowercase456", "lowercase456"),
        ("?AWSAccessKeyId=AKIAOLD&Signature=sigv2xyz&Expires=1", "sigv2xyz"),
        ("?AWSAccessKeyId=AKIAOLD&Signature=sigv2xyz&Expires=1", "AKIAOLD"),
        ("url='https://h/k?X-Amz-Signature=quoted789'", "quoted789"),
    ],
)
def test_signed_query_parameters(text: str, secret: str) -> None:
    assert secret not in redact_text(text)


@pytest.mark.parametrize(
    "text",
    [
        "redis://127.0.0.1:6379/0",
        "http://127.0.0.1:8333",
        "http://[::1]:8333/bucket/key",
        "uploaded part 3 of streams/x/cam1.mp4 (8.0 MiB)",
        "user@example.com wrote 10:30",
        "",
    ],
)
def test_text_without_secrets_is_unchanged(text: str) -> None:
    assert redact_text(text) == text


# -- the structlog processor --


@pytest.mark.parametrize(
    "key",
    [
        "aws_secret_access_key",
        "secret",
        "password",
        "redis_password",
        "PASSWORD",
        "passwd",
        "token",
        "session_token",
        "aws_session_token",
        "credentials",
        "Authorization",
        "signature",
    ],
)
def test_processor_redacts_secret_named_fields(key: str) -> None:
    event = {"event": "connecting", key: "value-that-must-not-appear"}
    out = redact_processor(None, "info", dict(event))
    assert out[key] == REDACTED
    assert out["event"] == "connecting"


@pytest.mark.parametrize("value", [12345, None, ["a", "b"], {"x": "y"}, b"bytes"])
def test_processor_redacts_secret_named_fields_of_any_type(value: Any) -> None:
    out = redact_processor(None, "info", {"event": "e", "password": value})
    assert out["password"] == REDACTED


def test_processor_redacts_secrets_inside_values() -> None:
    out = redact_processor(
        None,
        "info",
        {
            "event": "cannot reach redis://:pw1@h:6379/0",
            "redis_url": "redis://u:pw2@h:6379/0",
            "url": SIGNED,
            "nested": {"aws_secret_access_key": "sk3", "endpoint": "https://u:pw4@s3/"},
            "urls": ["redis://:pw5@a", "plain"],
            "part": 7,
            "bucket": "videos",
        },
    )
    text = json.dumps(out)
    for secret in ("pw1", "pw2", "sk3", "pw4", "pw5", "AKIAIOSFODNN7EXAMPLE"):
        assert secret not in text
    assert out["part"] == 7
    assert out["bucket"] == "videos"
    assert out["urls"][1] == "plain"


@pytest.mark.parametrize("key", ["bucket", "key", "part_number", "access_key_id_hint", "path"])
def test_processor_keeps_ordinary_fields(key: str) -> None:
    out = redact_processor(None, "info", {"event": "e", key: "visible"})
    assert out[key] == "visible"


def test_rendered_log_line_has_no_secret() -> None:
    # The processor in a real structlog chain, rendered to JSON the way the daemon does.
    stream = io.StringIO()
    logger = structlog.wrap_logger(
        structlog.PrintLogger(stream),
        processors=[redact_processor, structlog.processors.JSONRenderer()],
    )
    logger.error(
        "S3 refused redis://:pw@h",
        aws_secret_access_key="wJalrXUtnFEMI",
        token="tok",
        presigned=SIGNED,
    )
    line = stream.getvalue()
    for secret in ("wJalrXUtnFEMI", '"tok"', ":pw@", "AKIAIOSFODNN7EXAMPLE"):
        assert secret not in line
    assert json.loads(line)["aws_secret_access_key"] == REDACTED


# -- every other form a secret takes in text ---------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected", "secret"),
    [
        # password= in a repr (redis-py before 8 printed its connection kwargs) or a message.
        (
            "Connection(host=h,port=6379,password=Qz7k,db=0)",
            f"Connection(host=h,port=6379,password={REDACTED},db=0)",
            "Qz7k",
        ),
        ("AUTH failed: password=Qz7k db=0", f"AUTH failed: password={REDACTED} db=0", "Qz7k"),
        (
            "redis://h/0?db=0&password=Qz7k&ssl_cert_reqs=none",
            f"redis://h/0?db=0&password={REDACTED}&ssl_cert_reqs=none",
            "Qz7k",
        ),
        (
            "redis://h/0?sentinel_password=Qz7k",
            f"redis://h/0?sentinel_password={REDACTED}",
            "Qz7k",
        ),
        # Percent-encoded: the encoded form is what the URL holds, and what the patterns hide.
        (
            "redis://u:p%40s%3As%2Fw%25d@h:6379/0",
            f"redis://u:{REDACTED}@h:6379/0",
            "p%40s%3As%2Fw%25d",
        ),
        (
            "redis://u@h:6379/0?password=p%40s%26s%23w",
            f"redis://u@h:6379/0?password={REDACTED}",
            "p%40s%26s%23w",
        ),
        # A secret-named key's quoted value in a dict's repr, or in JSON text.
        ("{'password': 'Qz7k', 'db': 0}", f"{{'password': '{REDACTED}', 'db': 0}}", "Qz7k"),
        (
            '{"aws_secret_access_key": "wJal\\"rX", "region": "eu"}',
            f'{{"aws_secret_access_key": "{REDACTED}", "region": "eu"}}',
            "wJal",
        ),
        ("{'aws_session_token': b'FQoG'}", f"{{'aws_session_token': '{REDACTED}'}}", "FQoG"),
        # An S3 endpoint URL with credentials in it.
        (
            "endpoint http://AKIDEXAMPLE:wJalrXUtnFEMI@s3.local:9000/",
            f"endpoint http://AKIDEXAMPLE:{REDACTED}@s3.local:9000/",
            "wJalrXUtnFEMI",
        ),
    ],
)
def test_secrets_in_other_forms(text: str, expected: str, secret: str) -> None:
    redacted = redact_text(text)
    assert redacted == expected
    assert secret not in redacted


@pytest.mark.parametrize(
    "text",
    [
        "nopassword here",
        "the password: see the docs",
        "X-Amz-SignedHeaders=host;x-amz-date",
        "{'continuation_token': None, 'max_keys': 1000}",
        "passwords=2 tokens=3",
    ],
)
def test_words_near_secrets_are_left_alone(text: str) -> None:
    assert redact_text(text) == text


def test_literal_secrets_are_hidden_percent_encoded_too(monkeypatch: pytest.MonkeyPatch) -> None:
    from tailup import observe

    monkeypatch.setattr(observe, "_literal_secrets", [])
    observe.register_secrets(["p@ss w/rd&1", "short", None])
    for text in ("p@ss w/rd&1", "p%40ss%20w%2Frd%261", "p%40ss+w%2Frd%261"):
        assert redact_text(f"x {text} y") == f"x {REDACTED} y"
    assert redact_text("short") == "short"  # below the length literal redaction takes
