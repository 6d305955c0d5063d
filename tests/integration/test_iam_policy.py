"""Least privilege against real servers: identities limited by deploy/iam-policy.json on SeaweedFS
and on moto with its IAM enforced (both evaluate IAM policy documents with AWS's action names).

- The policy lets tailup make every call it makes, and nothing outside its keys.
- Each action of the policy is what its calls need: without it, exactly those calls are refused,
  and the refusal names the action. SeaweedFS is more lenient than AWS in two places, moto is not.
- s3:ListBucket is optional: refused, the bucket check is skipped, said once.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import structlog.testing

from conftest import POLICY_BUCKET, TEST_REGION, policy_actions, policy_identity
from tailup import permissions
from tailup.dev import MotoS3, S3Identity, SeaweedS3
from tailup.errors import AccessRefused
from tailup.integrity import crc32_of
from tailup.keys import metadata_key, segment_key
from tailup.s3 import S3MultipartStore
from tailup.uploadcard import card_key

pytestmark = pytest.mark.asyncio

# Where SeaweedFS 4.48 grants more than AWS: s3:PutObject alone also allows ListParts and
# AbortMultipartUpload (it files both under writes); AWS needs s3:ListMultipartUploadParts and
# s3:AbortMultipartUpload for them. Each of the two, granted alone, allows exactly its call.
SEAWEEDFS_ALSO_GRANTED_BY_PUT_OBJECT = {"s3:ListMultipartUploadParts", "s3:AbortMultipartUpload"}
Server = SeaweedS3 | MotoS3


@pytest.fixture(autouse=True)
def _fresh_refusals() -> None:
    permissions.forget_refusals()


@pytest.fixture(params=["seaweedfs", "moto"])
def policy_server(request: pytest.FixtureRequest) -> Server:
    """A server whose identities are limited by variants of deploy/iam-policy.json."""
    name = "least_privilege_s3" if request.param == "seaweedfs" else "least_privilege_moto"
    server: Server = request.getfixturevalue(name)
    return server


def _identity(server: Server, name: str) -> S3Identity:
    return server.identity(name) if isinstance(server, MotoS3) else policy_identity(name)


@asynccontextmanager
async def _store_as(
    server: Server, identity_name: str | None, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[S3MultipartStore]:
    env = server.env() if identity_name is None else _identity(server, identity_name).env(server)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    async with S3MultipartStore.connect(
        POLICY_BUCKET, endpoint_url=server.endpoint_url, region=TEST_REGION
    ) as store:
        yield store


def _key(prefix: str = "streams") -> str:
    return f"{prefix}/{uuid.uuid4().hex[:12]}/cam.mp4"


async def _try_every_call(
    server: Server, identity_name: str, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """Each operation tailup makes (but the bucket check), as ``identity_name``, on keys under
    streams/ that the server's main identity set up: {operation: "ok" or the refused action}."""
    body = os.urandom(1000)
    async with _store_as(server, None, monkeypatch) as admin:
        existing = _key()
        await admin.put_object(existing, body, crc32_of(body), "video/mp4")
        card = card_key(_key())
        await admin.put_object(card, body, crc32_of(body), "application/json")
        uploads = {}
        for purpose in ("part", "list", "complete", "abort"):
            key = _key()
            upload_id = await admin.create_upload(key, "video/mp4")
            etag = await admin.upload_part(key, upload_id, 1, body, crc32_of(body))
            uploads[purpose] = (key, upload_id, etag)
    async with _store_as(server, identity_name, monkeypatch) as store:
        key, upload_id, etag = uploads["complete"]
        calls: dict[str, Callable[[], Awaitable[Any]]] = {
            "CreateMultipartUpload": lambda: store.create_upload(_key(), "video/mp4"),
            "UploadPart": lambda: store.upload_part(
                uploads["part"][0], uploads["part"][1], 2, body, crc32_of(body)
            ),
            "ListParts": lambda: store.list_parts(*uploads["list"][:2]),
            "CompleteMultipartUpload": lambda: store.complete_upload(
                key, upload_id, [(1, etag, crc32_of(body))]
            ),
            "AbortMultipartUpload": lambda: store.abort_upload(*uploads["abort"][:2]),
            "ListMultipartUploads": lambda: store.list_uploads("streams/"),
            "PutObject": lambda: store.put_object(_key(), body, crc32_of(body), "video/mp4"),
            "HeadObject": lambda: store.head_object(existing),
            "GetObject": lambda: store.get_object(existing),
            "DeleteObject": lambda: store.delete_object(card),
        }
        outcome = {}
        for operation, call in calls.items():
            try:
                await call()
                outcome[operation] = "ok"
            except AccessRefused as exc:
                outcome[operation] = exc.action
    return outcome


async def test_the_policy_lets_tailup_make_every_call_it_makes(
    policy_server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    outcome = await _try_every_call(policy_server, "policy", monkeypatch)
    assert outcome == dict.fromkeys(outcome, "ok")
    # Optional and not in the policy: the bucket check and --rpo's listing of its tail segments.
    outside = {"HeadBucket", "ListObjectsV2"}
    assert set(outcome) | outside == set(permissions.IAM_ACTIONS)


async def test_the_policy_lets_tailup_delete_its_helper_objects_only(
    policy_server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    # s3:DeleteObject is granted on the card beside an upload and --rpo's tail segments only:
    # the node's credentials cannot delete a recording, nor its metadata.json.
    body = b"a recording"
    key = _key()
    helpers = [card_key(key), segment_key(key, "upload-1", 0, len(body))]
    recording = [key, metadata_key(key)]
    async with _store_as(policy_server, None, monkeypatch) as admin:
        for name in recording + helpers:
            await admin.put_object(name, body, crc32_of(body), "application/octet-stream")
    async with _store_as(policy_server, "policy", monkeypatch) as store:
        for name in recording:
            with pytest.raises(AccessRefused) as refused:
                await store.delete_object(name)
            assert refused.value.action == "s3:DeleteObject", name
        for name in helpers:
            await store.delete_object(name)
        assert [await store.head_object(name) is not None for name in recording + helpers] == [
            True,
            True,
            False,
            False,
        ]


async def test_the_policy_covers_only_its_keys(
    policy_server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = b"not tailup's"
    async with _store_as(policy_server, "policy", monkeypatch) as store:
        with pytest.raises(AccessRefused) as refused:
            await store.put_object(_key("elsewhere"), body, crc32_of(body), "text/plain")
        assert refused.value.action == "s3:PutObject"
        assert "it needs s3:PutObject" in str(refused.value)
        with pytest.raises(AccessRefused):
            await store.create_upload(_key("elsewhere"), "video/mp4")
        assert await store.head_object(_key()) is None  # a missing key of its own: 404


@pytest.mark.parametrize("action", policy_actions())
async def test_each_action_of_the_policy_is_what_its_calls_need(
    policy_server: Server, monkeypatch: pytest.MonkeyPatch, action: str
) -> None:
    outcome = await _try_every_call(policy_server, f"without {action}", monkeypatch)
    refused = {operation for operation, result in outcome.items() if result != "ok"}
    needing = {op for op, needs in permissions.IAM_ACTIONS.items() if needs == action}
    if isinstance(policy_server, SeaweedS3) and action in SEAWEEDFS_ALSO_GRANTED_BY_PUT_OBJECT:
        assert refused == set(), outcome  # AWS refuses `needing`; SeaweedFS lets s3:PutObject do
    else:
        assert refused == needing, outcome
    assert {outcome[op] for op in refused} <= {action}  # each refusal names the action


async def test_a_refused_list_bucket_skips_the_bucket_check_said_once(
    policy_server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with _store_as(policy_server, "policy", monkeypatch) as store:
        with structlog.testing.capture_logs() as logs:
            for _ in range(3):  # at start, then /healthz's probes
                await store.check_bucket()
    refusals = [e for e in logs if e.get("action") == "s3:ListBucket"]
    assert len(refusals) == 1, logs
    assert refusals[0]["log_level"] == "warning"
    assert refusals[0]["event"].startswith("S3 refuses s3:ListBucket: the bucket check at start")


async def test_with_list_bucket_the_bucket_check_runs(
    least_privilege_s3: SeaweedS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SeaweedFS only: moto asks s3:HeadBucket for HeadBucket, an action AWS does not have.
    async with _store_as(least_privilege_s3, "policy+list", monkeypatch) as store:
        with structlog.testing.capture_logs() as logs:
            await store.check_bucket()
        assert logs == []


async def test_wrong_credentials_still_stop_the_bucket_check(
    policy_server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only a refused permission is optional: credentials S3 does not know are still an error.
    for name, value in policy_server.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret-0123456789")
    async with S3MultipartStore.connect(
        POLICY_BUCKET, endpoint_url=policy_server.endpoint_url, region=TEST_REGION
    ) as store:
        with pytest.raises(Exception, match="SignatureDoesNotMatch") as info:
            await store.check_bucket()
    assert not isinstance(info.value, AccessRefused)
