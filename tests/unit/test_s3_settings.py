"""How the S3 client is set up: payload signing policy, connection pool size, sessions."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import botocore.session
import pytest

from tailup.config import PayloadSigning, load_settings
from tailup.errors import ConfigError
from tailup.plan import MiB
from tailup.s3 import SPARE_CONNECTIONS, pool_size, signs_payload
from tailup.s3.presign import presigned_get_urls
from tailup.s3.session import new_session, with_shared_loader


@pytest.mark.parametrize(
    ("endpoint", "signed"),
    [
        (None, False),  # AWS, over https
        ("https://s3.example.com", False),
        ("HTTPS://minio.lan:9000", False),
        ("http://10.0.0.5:9000", True),  # plain http across a network: as the AWS SDKs do
        ("http://minio.lan:9000", True),
        ("http://127.0.0.1:8333", False),  # loopback: nobody in the middle but root
        ("http://127.9.9.9:8333", False),
        ("http://localhost:8333", False),
        ("http://[::1]:8333", False),
    ],
)
def test_auto_signs_the_payload_over_plain_http_to_another_host_only(
    endpoint: str | None, signed: bool
) -> None:
    assert signs_payload(PayloadSigning.AUTO, endpoint) is signed


@pytest.mark.parametrize("endpoint", [None, "https://s3.example.com", "http://127.0.0.1:1"])
def test_always_and_never_are_what_they_say(endpoint: str | None) -> None:
    assert signs_payload(PayloadSigning.ALWAYS, endpoint) is True
    assert signs_payload(PayloadSigning.NEVER, endpoint) is False


def test_payload_signing_setting_names_the_accepted_values() -> None:
    assert load_settings({"payload_signing": "never"}).payload_signing is PayloadSigning.NEVER
    with pytest.raises(ConfigError, match=r"--payload-signing .*auto, always or never"):
        load_settings({"payload_signing": "sometimes"})


def test_pool_has_a_connection_for_every_part_the_budget_admits_plus_spares() -> None:
    assert pool_size(256 * MiB, 8 * MiB) == 32 + SPARE_CONNECTIONS
    assert pool_size(256 * MiB, 5 * MiB) == 52 + SPARE_CONNECTIONS  # rounded up
    assert pool_size(8 * MiB, 64 * MiB) == 1 + SPARE_CONNECTIONS


async def test_clients_share_the_parsed_models_and_find_their_credentials_when_made(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """One loader of botocore's data files for every session (sync ones too), and a session per
    client: one shared session would keep signing with the first credentials it found."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    for access_key in ("AKFIRST", "AKSECOND"):
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", access_key)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", f"secret-of-{access_key}")
        [url] = await presigned_get_urls(
            "b", ["k"], expires_s=60, endpoint_url="http://127.0.0.1:1", region="us-east-1"
        )
        assert parse_qs(urlsplit(url).query)["X-Amz-Credential"][0].startswith(f"{access_key}/")
    shared = new_session().get_component("data_loader")
    assert new_session().get_component("data_loader") is shared
    assert with_shared_loader(botocore.session.Session()).get_component("data_loader") is shared
