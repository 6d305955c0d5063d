"""Logging: one redacting path for structlog events, library (stdlib) records and tracebacks."""

from __future__ import annotations

import io
import json
import logging
import sys
import threading
from collections.abc import Callable, Iterator

import pytest
import structlog

from tailup.body import PartBody
from tailup.observe import (
    REDACTED,
    configure_logging,
    redact_text,
    register_secrets,
    url_password,
)

AWS_SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"
REDIS_PASSWORD = "r3dis-pa55word"
SIGNATURE = "a" * 64

Configure = Callable[..., io.StringIO]


@pytest.fixture
def configure(monkeypatch: pytest.MonkeyPatch) -> Iterator[Configure]:
    """configure_logging into a buffer; global logging state is put back afterwards."""
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
    root = logging.getLogger()
    saved = (list(root.handlers), root.level, logging.getLogger("tailup").level)
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    buffers: list[io.StringIO] = []

    def run(log_format: str = "json", level: str = "debug") -> io.StringIO:
        buffer = io.StringIO()
        configure_logging(log_format, level, stream=buffer, secrets=[REDIS_PASSWORD])
        buffers.append(buffer)
        return buffer

    yield run
    structlog.reset_defaults()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved[0]:
        root.addHandler(handler)
    root.setLevel(saved[1])
    logging.getLogger("tailup").setLevel(saved[2])


def _emit_everything() -> None:
    """Every way a secret could reach the log: fields, nested values, URLs, library records
    (botocore's request dump and signature), and tracebacks from both kinds of logger."""
    log = structlog.get_logger("tailup.test")
    url = f"redis://:{REDIS_PASSWORD}@127.0.0.1:6379/0"
    log.info("settings", redis_url=url, nested={"aws_secret_access_key": AWS_SECRET})
    log.warning("plain text", reason=f"the key {AWS_SECRET} was refused")
    log.info("object value", value=ValueError(f"connect to {url} failed"))
    try:
        raise RuntimeError(f"boom with {AWS_SECRET} and {url}")
    except RuntimeError:
        log.exception("stream crashed")
    library = logging.getLogger("botocore.endpoint")
    header = (
        f"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20250101/us-east-1/s3/aws4_request, "
        f"SignedHeaders=host;x-amz-date, Signature={SIGNATURE}"
    )
    library.debug(
        "Sending http request: %s",
        f"<AWSPreparedRequest headers={{'Authorization': b'{header}', 'X-Amz-Date': b'x'}}>",
    )
    logging.getLogger("botocore.auth").debug("Signature:\n%s", SIGNATURE)
    logging.getLogger("botocore.parsers").debug(
        "Response body:\n%s",
        "<Error><Code>SignatureDoesNotMatch</Code><AWSAccessKeyId>AKIDEXAMPLE</AWSAccessKeyId>"
        "<StringToSign>AWS4-HMAC-SHA256\n20250101</StringToSign></Error>",
    )
    try:
        raise ConnectionError(f"cannot reach {url} with {AWS_SECRET}")
    except ConnectionError:
        logging.getLogger("aiohttp.client").exception("request failed")


@pytest.mark.parametrize("log_format", ["json", "console"])
def test_no_secret_reaches_the_output_in_any_form(configure: Configure, log_format: str) -> None:
    out = configure(log_format)
    _emit_everything()
    text = out.getvalue()
    for secret in (AWS_SECRET, REDIS_PASSWORD, SIGNATURE, "AKIDEXAMPLE"):
        assert secret not in text, f"{secret!r} leaked:\n{text}"
    # What was redacted is still recognisable: the test saw the real material, not nothing.
    assert text.count(REDACTED) >= 8
    assert "Traceback (most recent call last)" in text
    assert "RuntimeError: boom with" in text and "ConnectionError: cannot reach" in text
    assert "SignatureDoesNotMatch" in text


def test_json_lines_have_the_same_leading_keys_and_carry_stdlib_records(
    configure: Configure,
) -> None:
    out = configure("json")
    structlog.get_logger("tailup.stream").info("part uploaded", stream_id="s1", path="/a", part=3)
    logging.getLogger("botocore.endpoint").debug("Making request")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [list(line)[:4] for line in lines] == [["timestamp", "level", "logger", "event"]] * 2
    assert lines[0]["part"] == 3 and lines[0]["stream_id"] == "s1"
    assert lines[1]["logger"] == "botocore.endpoint" and lines[1]["level"] == "debug"


def test_library_debug_only_at_debug_level(configure: Configure) -> None:
    out = configure("json", level="info")
    structlog.get_logger("tailup.test").debug("hidden")
    structlog.get_logger("tailup.test").info("shown")
    logging.getLogger("botocore.endpoint").info("library info hidden")
    logging.getLogger("botocore.endpoint").warning("library warning shown")
    events = [json.loads(line)["event"] for line in out.getvalue().splitlines()]
    assert events == ["shown", "library warning shown"]


def test_large_request_bodies_are_replaced_by_their_length(configure: Configure) -> None:
    out = configure("json")
    body = b"\x00" * (5 * 1024 * 1024)
    logging.getLogger("botocore.endpoint").debug(
        "Making request with params: %s", {"body": body, "method": "PUT"}
    )
    text = out.getvalue()
    assert "<5242880 bytes>" in text and "'method': 'PUT'" in text
    assert len(text) < 2000


def test_request_bodies_nested_as_botocore_nests_them_are_elided(configure: Configure) -> None:
    """botocore's "Making request" dict holds the body a second time four levels down
    (context -> s3_redirect -> params -> Body). Found by tests/e2e/test_chaos.py at debug
    level: every 5 MiB part was formatted whole (a 20 MB repr, then redacted and cut), which
    held the event loop for 4-5 s per part on a loaded machine."""
    out = configure("json")
    body = PartBody(b"\x00" * (5 * 1024 * 1024))
    params = {
        "body": body,
        "method": "PUT",
        "context": {"s3_redirect": {"params": {"Bucket": "b", "Body": body}}},
        "parts": [body],
    }
    logging.getLogger("botocore.endpoint").debug("Making request with params: %s", params)
    text = out.getvalue()
    assert text.count("<5242880 bytes>") == 3 and "'Bucket': 'b'" in text
    assert len(text) < 2000


def test_auto_format_is_json_when_not_a_terminal(configure: Configure) -> None:
    out = configure("auto")  # a StringIO is not a terminal
    structlog.get_logger("tailup.test").info("hello", n=1)
    assert json.loads(out.getvalue())["event"] == "hello"


def test_console_format_is_readable_lines(configure: Configure) -> None:
    out = configure("console")
    structlog.get_logger("tailup.test").info("hello", stream_id="abc")
    line = out.getvalue()
    assert "hello" in line and "stream_id=abc" in line
    assert "\x1b[" not in line  # no colour codes when the stream is not a terminal
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("redis://:hunter2@host:6379/0", "hunter2"),
        ("rediss://user:hunter2@host/0", "hunter2"),
        ("https://b.s3.amazonaws.com/k?X-Amz-Signature=deadbeef&X-Amz-Expires=60", "deadbeef"),
        ("https://b/k?X-Amz-Credential=AKID%2F2025&X-Amz-Security-Token=tok123", "tok123"),
        ("https://b/k?AWSAccessKeyId=AKID123&Signature=sig%2B%3D&Expires=1", "sig%2B%3D"),
        ("'X-Amz-Security-Token': b'FwoGZXIvYXdzE'", "FwoGZXIvYXdzE"),
        ("Authorization: AWS4-HMAC-SHA256 Credential=AKID/x", "AKID"),
        ("<SignatureProvided>abc123</SignatureProvided>", "abc123"),
        ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA"),
        ("redis://:p@ss@host:6379/0", "p@ss"),
    ],
)
def test_redact_text_patterns(text: str, secret: str) -> None:
    redacted = redact_text(text)
    assert secret not in redacted and REDACTED in redacted


def test_literal_secrets_are_redacted_longest_first() -> None:
    register_secrets(["short-secret-1", "short-secret-1-and-more", None, "tiny"])
    assert redact_text("a short-secret-1-and-more b") == f"a {REDACTED} b"
    assert redact_text("tiny stays") == "tiny stays"  # too short to redact everywhere


def test_url_password_decodes_percent_escapes() -> None:
    assert url_password("redis://:p%40ss%3Aword@h:6379/0") == "p@ss:word"
    assert url_password("redis://h:6379/0") is None


def test_an_uncaught_exception_is_logged_redacted(configure: Configure) -> None:
    out = configure("json")
    try:
        raise ExceptionGroup("crash", [RuntimeError(f"redis://:{REDIS_PASSWORD}@h/0 refused")])
    except ExceptionGroup as exc:
        sys.excepthook(type(exc), exc, exc.__traceback__)
    event = json.loads(out.getvalue())
    assert event["event"] == "uncaught exception" and event["level"] == "critical"
    assert "RuntimeError: redis://:***@h/0 refused" in event["exception"]
    assert REDIS_PASSWORD not in out.getvalue()


def test_a_signed_url_keeps_its_shape() -> None:
    url = "https://b/k?X-Amz-Security-Token=tok123&X-Amz-Expires=60&X-Amz-Signature=abcdef12"
    assert redact_text(url) == (
        f"https://b/k?X-Amz-Security-Token={REDACTED}&X-Amz-Expires=60&X-Amz-Signature={REDACTED}"
    )
