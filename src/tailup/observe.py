"""Logging: structlog, JSON lines or console, with a redaction step that no event can bypass.

There is one output path. structlog events and stdlib records (botocore, aiobotocore, aiohttp,
redis, watchdog) all end in the same ``logging`` handler, whose ``ProcessorFormatter`` renders
tracebacks to text, redacts, and only then renders the line. Redaction therefore sees every field,
every library message and every traceback exactly as it will be printed.

Two kinds of redaction:
- patterns: ``user:password@`` in URLs (any scheme, one host or several), ``?password=`` and
  ``&password=`` in a URL's query (and ``password=`` in a repr), a secret-named key's quoted value
  in a dict's repr or JSON text, signed-URL query parameters, SigV4 ``Authorization`` headers and
  botocore's debug dump of the signature, and any field whose name says secret;
- literal values: the secrets this process actually holds (AWS secret key and session token from
  the environment, the Redis password from ``--redis-url``), as given and percent-encoded,
  wherever they appear.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
from collections.abc import Iterable, Mapping, MutableMapping
from types import TracebackType
from typing import IO, Any
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlsplit

import structlog

REDACTED = "***"

_SECRET_KEYS = re.compile(
    r"secret|password|passwd|token|credential|authorization|signature", re.IGNORECASE
)
# user:password@ in URLs (redis://:pw@host, https://u:pw@host) and signed-URL query parameters.
# The password runs to the *last* @ of the authority, as URL parsers read it (redis://:p@ss@host).
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):[^\s/]+@")
# A password as a URL query parameter (redis://host/0?password=pw, &sentinel_password=...), or as
# NAME=VALUE in a repr or a message (Connection(host=h,password=pw), "password=pw db=0").
_QUERY_PASSWORD = re.compile(
    r"(?P<name>(?:^|(?<=[?&,;(\s]))[A-Za-z_-]*pass(?:word|wd))=(?!\*\*\*)[^&#,;)\s\"']+",
    re.IGNORECASE,
)
# A secret-named key with a quoted value in a dict's repr or JSON text embedded in a message:
# {'password': 'pw'}, "aws_secret_access_key": "...", 'session_token': b'...'.
_QUOTED_SECRET = re.compile(
    r"(?P<name>(?P<q>['\"])[A-Za-z_-]*(?:pass(?:word|wd)|secret|token|credentials?)"
    r"[A-Za-z_-]*(?P=q)\s*:\s*)(?P<value>b?'(?:[^'\\]|\\.)*'|b?\"(?:[^\"\\]|\\.)*\")",
    re.IGNORECASE,
)
_SIGNED_QUERY = re.compile(
    r"(?P<name>X-Amz-(?:Signature|Credential|Security-Token)|Signature|AWSAccessKeyId)=[^&\s\"']+",
    re.IGNORECASE,
)
# The Credential= of a SigV4 Authorization header (its Signature= is caught by _SIGNED_QUERY).
_SIGV4_CREDENTIAL = re.compile(r"(?P<name>Credential)=[^&\s\"',]+", re.IGNORECASE)
# botocore at debug: "Signature:\n<64 hex>"; S3 error bodies echo what was signed.
_SIGNATURE_DUMP = re.compile(r"(?P<name>Signature:\s*)[0-9a-f]{64}", re.IGNORECASE)
_XML_SECRET = re.compile(
    r"<(?P<tag>AWSAccessKeyId|SignatureProvided|StringToSign(?:Bytes)?|CanonicalRequest(?:Bytes)?)>"
    r".*?</(?P=tag)>",
    re.DOTALL,
)
# Header values that carry credentials, in botocore's repr of a request (``'X-Amz-Security-Token':
# b'...'``) and in plain "Name: [scheme] value" form. (As query parameters: _SIGNED_QUERY.)
_HEADER_SECRET = re.compile(
    r"(?P<name>['\"]?(?:Authorization|X-Amz-Security-Token)['\"]?\s*:\s*)"
    r"(?P<value>b?'[^']*'|b?\"[^\"]*\"|(?:[A-Za-z0-9-]+ )?[^\s,}&]+)",
    re.IGNORECASE,
)

# Environment variables whose value is a secret even if it never matches a pattern.
_SECRET_ENV = re.compile(r"SECRET|PASSWORD|PASSWD|TOKEN", re.IGNORECASE)
# Shorter values are left alone: redacting "1" or "true" everywhere would garble every line.
_MIN_LITERAL_LEN = 6

_literal_secrets: list[str] = []


def register_secrets(values: Iterable[str | None]) -> None:
    """Values to redact wherever they appear, as given and percent-encoded as a URL carries them
    (``p@ss/w`` also as ``p%40ss%2Fw``), longest first, so no secret is half-replaced."""
    known = set(_literal_secrets)
    for value in values:
        if value and len(value) >= _MIN_LITERAL_LEN:
            known.update({value, quote(value, safe=""), quote_plus(value, safe="")})
    _literal_secrets[:] = sorted(known, key=len, reverse=True)


def secrets_from_environment(environ: Mapping[str, str]) -> list[str]:
    return [value for name, value in environ.items() if _SECRET_ENV.search(name)]


def url_password(url: str) -> str | None:
    """The password in a URL such as redis://:pw@host:6379/0 (or given as ?password=pw, and in
    the redis+cluster:// and redis+sentinel:// forms with several hosts), decoded as the client
    will use it."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return None
    if password:
        return unquote(password)
    for name, value in parse_qsl(parts.query):
        if name == "password" and value:
            return value
    return None


def _quoted_redacted(match: re.Match[str]) -> str:
    quote_char = match["value"].lstrip("b")[0]  # as it was quoted: JSON stays JSON
    return f"{match['name']}{quote_char}{REDACTED}{quote_char}"


def redact_text(text: str) -> str:
    for secret in _literal_secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    text = _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:{REDACTED}@", text)
    text = _QUERY_PASSWORD.sub(lambda m: f"{m['name']}={REDACTED}", text)
    text = _QUOTED_SECRET.sub(_quoted_redacted, text)
    text = _HEADER_SECRET.sub(lambda m: f"{m['name']}{REDACTED}", text)
    text = _SIGNED_QUERY.sub(lambda m: f"{m['name']}={REDACTED}", text)
    text = _SIGV4_CREDENTIAL.sub(lambda m: f"{m['name']}={REDACTED}", text)
    text = _SIGNATURE_DUMP.sub(lambda m: f"{m['name']}{REDACTED}", text)
    return _XML_SECRET.sub(lambda m: f"<{m['tag']}>{REDACTED}</{m['tag']}>", text)


def _redact_value(key: str, value: Any) -> Any:
    if _SECRET_KEYS.search(key):
        return REDACTED
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, dict):
        return {k: _redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact_value(key, v) for v in value]
    # Anything else is printed as text by the renderer: redact that text (exceptions, paths,
    # bytes, URLs objects...), so no type can carry a secret past this step.
    return redact_text(value if isinstance(value, str) else str(value))


def redact_processor(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        event_dict[key] = _redact_value(key, event_dict[key])
    return event_dict


MAX_FIELD_CHARS = 16_384


def truncate_processor(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Cap very long fields (library debug dumps). Runs after redaction, so a cut can never leave
    the first half of a secret that redaction would have recognised whole."""
    for key, value in event_dict.items():
        if isinstance(value, str) and len(value) > MAX_FIELD_CHARS:
            event_dict[key] = f"{value[:MAX_FIELD_CHARS]}... ({len(value)} chars)"
    return event_dict


_BODY_PREVIEW = 256


# botocore's request dict holds the body again at context.s3_redirect.params.Body (depth 4).
_ELIDE_DEPTH = 8


def _elide(value: Any, depth: int = 0) -> Any:
    if isinstance(value, bytes | bytearray | memoryview) and len(value) > _BODY_PREVIEW:
        return f"<{len(value)} bytes>"
    if depth >= _ELIDE_DEPTH:
        return value
    if isinstance(value, dict):
        return {k: _elide(v, depth + 1) for k, v in value.items()}
    if type(value) in (list, tuple):  # not a namedtuple: its constructor takes fields
        return type(value)(_elide(v, depth + 1) for v in value)
    return value


class ElideBodies(logging.Filter):
    """botocore at debug logs request parameters including the part body ("Making request ...
    with params: {'body': b'...'}"): 5 MiB and more per part. Replace large byte strings in a
    record's arguments with their length before the message is ever formatted."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_elide(arg) for arg in record.args)
        elif isinstance(record.args, Mapping):
            record.args = _elide(dict(record.args))
        return True


_LEADING_KEYS = ("timestamp", "level", "logger", "event")


def _leading_keys_first(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """JSON lines read better (and grep alike) when every line starts the same way."""
    ordered = {k: event_dict[k] for k in _LEADING_KEYS if k in event_dict}
    ordered.update((k, v) for k, v in event_dict.items() if k not in ordered)
    return ordered


def _use_console(log_format: str, stream: IO[str]) -> bool:
    if log_format == "auto":
        return stream.isatty()
    return log_format == "console"


def _renderer(console: bool, stream: IO[str]) -> Any:
    if console:
        colors = stream.isatty() and "NO_COLOR" not in os.environ
        # Tracebacks are already plain text here (format_exc_info ran before redaction); the
        # default rich formatter would print local variables, which may hold credentials.
        return structlog.dev.ConsoleRenderer(
            colors=colors, exception_formatter=structlog.dev.plain_traceback
        )
    return structlog.processors.JSONRenderer(ensure_ascii=False)


def _log_uncaught(
    exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
) -> None:
    """sys.excepthook: a crash's traceback goes through the same redaction as every event
    (Python's default hook would print it raw to stderr)."""
    if issubclass(exc_type, KeyboardInterrupt):
        sys.__excepthook__(exc_type, exc, tb)
        return
    structlog.get_logger("tailup").critical("uncaught exception", exc_info=(exc_type, exc, tb))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is not None:
        _log_uncaught(args.exc_type, args.exc_value, args.exc_traceback)


# Libraries that at debug level only describe their own machinery, in volume.
_QUIET_LIBRARIES = ("botocore.hooks", "botocore.loaders", "botocore.utils", "asyncio")


def configure_logging(
    log_format: str,
    level: str,
    *,
    stream: IO[str] | None = None,
    secrets: Iterable[str | None] = (),
) -> None:
    """``log_format``: json, console, or auto (console on a terminal, JSON otherwise).

    ``level`` applies to tailup's own events; libraries log warnings and errors, and everything
    at ``debug``. ``secrets`` are redacted wherever they appear, in addition to those found in the
    environment."""
    out = stream if stream is not None else sys.stderr
    register_secrets([*secrets, *secrets_from_environment(os.environ)])
    numeric = getattr(logging, level.upper(), logging.INFO)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,  # traceback -> text, so redaction sees it
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(out)
    handler.addFilter(ElideBodies())
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                redact_processor,  # after tracebacks are text, before anything is rendered
                truncate_processor,
                _leading_keys_first,
                _renderer(_use_console(log_format, out), out),
            ],
        )
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if numeric <= logging.DEBUG else logging.WARNING)
    logging.getLogger("tailup").setLevel(numeric)
    for name in _QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.INFO)
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread
