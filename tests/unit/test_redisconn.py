"""--redis-url forms (tailup.redisconn.parse_redis_url): every accepted form, every refusal."""

from __future__ import annotations

import pytest

from tailup.config import load_settings
from tailup.errors import ConfigError
from tailup.observe import redact_text
from tailup.redisconn import (
    REDIS_URL_FORMS,
    RedisKind,
    RedisTarget,
    RedisUrlError,
    parse_redis_url,
)

S, C, SE = RedisKind.STANDALONE, RedisKind.CLUSTER, RedisKind.SENTINEL

ACCEPTED: list[tuple[str, RedisTarget]] = [
    ("redis://127.0.0.1:6379/0", RedisTarget(S, (("127.0.0.1", 6379),))),
    ("redis://localhost", RedisTarget(S, (("localhost", 6379),))),
    ("redis://h:7000/3", RedisTarget(S, (("h", 7000),), db=3)),
    ("redis://h:7000/", RedisTarget(S, (("h", 7000),))),
    ("REDIS://h:7000/1", RedisTarget(S, (("h", 7000),), db=1)),
    ("redis://:pw@h:6379/0", RedisTarget(S, (("h", 6379),), password="pw")),
    ("redis://u:pw@h:6379/0", RedisTarget(S, (("h", 6379),), username="u", password="pw")),
    ("redis://u@h:6379/0", RedisTarget(S, (("h", 6379),), username="u")),
    # Percent-encoded, and an unencoded @ or : in the password (the user info ends at the last @).
    ("redis://u:p%40ss%3Aw@h/0", RedisTarget(S, (("h", 6379),), username="u", password="p@ss:w")),
    ("redis://:p@ss@h/0", RedisTarget(S, (("h", 6379),), password="p@ss")),
    ("redis://:pa:ss@h/0", RedisTarget(S, (("h", 6379),), password="pa:ss")),
    ("redis://h/0?password=pw", RedisTarget(S, (("h", 6379),), password="pw")),
    ("redis://u@h/0?password=p%26w", RedisTarget(S, (("h", 6379),), username="u", password="p&w")),
    ("redis://h?db=2", RedisTarget(S, (("h", 6379),), db=2)),
    ("redis://[::1]:6380/1", RedisTarget(S, (("::1", 6380),), db=1)),
    ("redis://[::1]/1", RedisTarget(S, (("::1", 6379),), db=1)),
    ("rediss://:pw@cache:6380/1", RedisTarget(S, (("cache", 6380),), 1, None, "pw", tls=True)),
    (
        "rediss://h/0?ssl_ca_certs=/etc/ca.pem&ssl_cert_reqs=REQUIRED&ssl_check_hostname=no",
        RedisTarget(
            S,
            (("h", 6379),),
            tls=True,
            tls_options=(
                ("ssl_ca_certs", "/etc/ca.pem"),
                ("ssl_cert_reqs", "required"),
                ("ssl_check_hostname", False),
            ),
        ),
    ),
    ("unix:///run/redis/redis.sock", RedisTarget(S, path="/run/redis/redis.sock")),
    ("unix:///run/r.sock?db=4", RedisTarget(S, db=4, path="/run/r.sock")),
    ("unix://u:pw@/run/r.sock", RedisTarget(S, username="u", password="pw", path="/run/r.sock")),
    ("unix:///run/r.sock?password=pw", RedisTarget(S, password="pw", path="/run/r.sock")),
    ("redis+cluster://h1:7000", RedisTarget(C, (("h1", 7000),))),
    (
        "redis+cluster://u:pw@h1:7000,h2:7001, h3:7002",
        RedisTarget(C, (("h1", 7000), ("h2", 7001), ("h3", 7002)), username="u", password="pw"),
    ),
    ("redis+cluster://h1:7000/0", RedisTarget(C, (("h1", 7000),))),
    ("redis+cluster://h1", RedisTarget(C, (("h1", 6379),))),
    ("rediss+cluster://:pw@h1:7000", RedisTarget(C, (("h1", 7000),), password="pw", tls=True)),
    ("redis+cluster://h1:7000?password=pw", RedisTarget(C, (("h1", 7000),), password="pw")),
    ("redis+sentinel://s1:26379/mymaster", RedisTarget(SE, (("s1", 26379),), master="mymaster")),
    ("redis+sentinel://s1/mymaster", RedisTarget(SE, (("s1", 26379),), master="mymaster")),
    (
        "redis+sentinel://u:pw@s1:26379,s2:26380/mymaster/2",
        RedisTarget(SE, (("s1", 26379), ("s2", 26380)), 2, "u", "pw", master="mymaster"),
    ),
    (
        "rediss+sentinel://s1:26379/my%20master/0?password=pw",
        RedisTarget(SE, (("s1", 26379),), 0, None, "pw", tls=True, master="my master"),
    ),
]


@pytest.mark.parametrize(("url", "target"), ACCEPTED, ids=[u for u, _ in ACCEPTED])
def test_accepted_forms(url: str, target: RedisTarget) -> None:
    assert parse_redis_url(url) == target


REFUSED: list[tuple[str, str]] = [
    # (url, what the error must say)
    ("127.0.0.1:6379", "no scheme"),
    ("http://h:6379/0", "scheme 'http://' is not a Redis form"),
    ("redis+foo://h:6379", "scheme 'redis+foo://'"),
    ("redis://", "names no host"),
    ("redis://:pw@/0", "names no host"),
    ("redis://h:abc/0", "port 'abc' of host 'h:abc' is not a port number"),
    ("redis://h:0/0", "port '0'"),
    ("redis://h:70000/0", "port '70000'"),
    ("redis://h:/0", "port ''"),
    ("redis://::1:6379/0", "IPv6 address in brackets"),
    ("redis://[::1:6379/0", "opens a [ without closing it"),
    ("redis://[::1]x/0", "has 'x' after its address"),
    ("redis://h/x", "the database 'x' is not a database number"),
    ("redis://h/0/1", "the path '/0/1' is not /DB"),
    ("redis://h/1?db=2", "the database is given twice"),
    ("redis://h?db=x", "?db= 'x' is not a database number"),
    ("redis://h1:1,h2:2/0", "names 2 hosts; for a Redis Cluster write redis+cluster://"),
    ("rediss://h1:1,h2:2/0", "rediss+cluster://"),
    ("redis://:pw@h/0?password=pw2", "a password is given twice"),
    ("redis://h/0?password=a&password=b", "'password' is given twice"),
    ("redis://h/0?socket_timeout=3", "query parameter 'socket_timeout' is not one tailup takes"),
    ("redis://h/0?ssl_ca_certs=/ca.pem", "'ssl_ca_certs' needs TLS"),
    ("rediss://h/0?ssl_cert_reqs=maybe", "ssl_cert_reqs='maybe' is not one of"),
    ("rediss://h/0?ssl_check_hostname=perhaps", "is not true or false"),
    ("rediss://h/0?ssl_ca_certs=", "names no file"),
    ("redis://h/0?password", "NAME=VALUE"),
    ("redis://h/0#frag", "#fragment"),
    ("unix://", "names no socket path"),
    ("unix://host/run/r.sock", "takes a socket path, not a host ('host')"),
    ("redis+cluster://", "names no host"),
    ("redis+cluster://h1:7000/1", "database 0 only"),
    ("redis+cluster://h1:7000,,h2:7001", "a host is missing"),
    ("redis+cluster://h1:7000?db=1", "?db= is for redis:// and unix:// only"),
    ("redis+sentinel://s1:26379", "names no master"),
    ("redis+sentinel://s1:26379/", "names no master"),
    ("redis+sentinel://s1:26379//0", "names no master"),
    ("redis+sentinel://s1:26379/m/x", "the database 'x'"),
    ("redis+sentinel://s1:26379/m/0/1", "is not /MASTER or /MASTER/DB"),
]


@pytest.mark.parametrize(("url", "reason"), REFUSED, ids=[u for u, _ in REFUSED])
def test_refused_forms_say_why_and_list_the_accepted_ones(url: str, reason: str) -> None:
    with pytest.raises(RedisUrlError) as info:
        parse_redis_url(url)
    assert isinstance(info.value, ConfigError)
    assert reason in info.value.reason
    message = str(info.value)
    assert message.startswith("--redis-url: ")
    assert REDIS_URL_FORMS in message
    for form in ("redis://", "rediss://", "unix://", "redis+cluster://", "redis+sentinel://"):
        assert form in message
    # The forms come out whole after log redaction (no placeholder looks like a password).
    assert redact_text(message) == message


@pytest.mark.parametrize(
    "url",
    [
        "redis://u:SeCr3t@h:abc/0",
        "redis://h:abc/0?password=SeCr3t",
        "redis+sentinel://u:SeCr3t@s1:26379",
        "redis://:SeCr3t@h1:1,h2:2/0",
        "redis://:SeCr3t@h/0?password=SeCr3t2",
    ],
)
def test_refusals_never_show_the_password(url: str) -> None:
    with pytest.raises(RedisUrlError) as info:
        parse_redis_url(url)
    assert "SeCr3t" not in str(info.value)


def test_the_password_is_not_in_the_repr() -> None:
    assert "SeCr3t" not in repr(parse_redis_url("redis://u:SeCr3t@h:6379/0"))


def test_settings_refuse_a_bad_url_naming_the_setting_and_the_forms() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"redis_url": "redis+sentinel://s1:26379"})
    message = str(info.value)
    assert "--redis-url (TAILUP_REDIS_URL)" in message
    assert "names no master" in message
    assert f"Accepted: {REDIS_URL_FORMS}" in message


@pytest.mark.parametrize(
    "url",
    [
        "redis+cluster://h1:7000,h2:7001",
        "redis+sentinel://s1:26379,s2:26379/mymaster/0",
        "rediss://:pw@h:6380/0",
    ],
)
def test_settings_take_every_form(url: str) -> None:
    assert load_settings({"redis_url": url}).redis_url == url
