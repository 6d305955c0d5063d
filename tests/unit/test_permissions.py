"""The S3 permissions tailup needs are named in one place (tailup.permissions) and everything else
agrees with it: the calls tailup/s3/client.py makes, deploy/iam-policy.json and
docs/operations.md."""

from __future__ import annotations

import ast
import json
import re
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

import botocore.session
import pytest
import structlog.testing

from tailup import permissions
from tailup.keys import DEFAULT_KEY_TEMPLATE, KeyContext, metadata_key, render_key, segment_key
from tailup.permissions import IAM_ACTION_OF_METHOD, IAM_ACTIONS, OPTIONAL, REQUIRED
from tailup.uploadcard import card_key

ROOT = Path(__file__).resolve().parents[2]
S3_PY = ROOT / "src" / "tailup" / "s3" / "client.py"
POLICY = ROOT / "deploy" / "iam-policy.json"
OPERATIONS_MD = ROOT / "docs" / "operations.md"


def _methods_called_in_s3_py() -> set[str]:
    """The client methods tailup/s3/client.py calls: the second argument of every ``self._call``."""
    called = set()
    for node in ast.walk(ast.parse(S3_PY.read_text())):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "_call"
        ):
            method = node.args[1]
            assert isinstance(method, ast.Constant) and isinstance(method.value, str)
            called.add(method.value)
    return called


def _policy_actions() -> list[str]:
    actions: list[str] = []
    for statement in json.loads(POLICY.read_text())["Statement"]:
        named = statement["Action"]
        actions += [named] if isinstance(named, str) else named
    return actions


def test_every_call_tailup_makes_goes_through_one_method() -> None:
    # The client is used by name only in _call (getattr): no S3 call escapes the mapping.
    text = S3_PY.read_text()
    assert re.findall(r"self\._s3\.\w+", text) == []
    assert "getattr(self._s3, method)" in text


def test_the_mapping_names_exactly_the_calls_tailup_makes() -> None:
    assert _methods_called_in_s3_py() == set(IAM_ACTION_OF_METHOD)


def test_the_mapping_names_real_s3_operations() -> None:
    operations = set(botocore.session.get_session().get_service_model("s3").operation_names)
    assert set(IAM_ACTIONS) <= operations


def test_every_action_is_required_or_optional_and_said_what_for() -> None:
    actions = set(IAM_ACTIONS.values())
    assert set(REQUIRED) | set(OPTIONAL) == actions
    assert not set(REQUIRED) & set(OPTIONAL)


def test_every_action_in_the_policy_is_one_tailup_calls() -> None:
    named = _policy_actions()
    assert len(named) == len(set(named)), "an action is named twice"
    assert set(named) <= set(IAM_ACTIONS.values())
    # Least privilege: what the daemon needs to write, read back its objects and manage its
    # uploads, and to delete its own helper objects; s3:ListBucket (the bucket check at start)
    # is optional and left out.
    assert set(named) == set(REQUIRED) | {"s3:GetObject", "s3:DeleteObject"}


def test_the_policy_scopes_object_actions_to_keys_and_bucket_actions_to_the_bucket() -> None:
    policy = json.loads(POLICY.read_text())
    assert policy["Version"] == "2012-10-17"
    bucket_level = {"s3:ListBucketMultipartUploads", "s3:ListBucket"}
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        named = statement["Action"]
        actions = {named} if isinstance(named, str) else set(named)
        resources = statement["Resource"]
        resources = [resources] if isinstance(resources, str) else resources
        for resource in resources:
            assert resource.startswith("arn:aws:s3:::") and "*" not in resource.split("/")[0]
            if actions <= bucket_level:
                assert "/" not in resource, statement
            elif actions == {"s3:DeleteObject"}:  # tailup's own helper objects only
                assert resource in DELETABLE, statement
            else:
                assert not actions & bucket_level, statement
                assert resource.endswith("/*") and resource.count("/") >= 2, statement


DELETABLE = [
    "arn:aws:s3:::recordings/streams/*.upload.json",
    "arn:aws:s3:::recordings/streams/*.tailup/*",
]


def _deletable(key: str) -> bool:
    """Whether the policy grants s3:DeleteObject on ``key`` of the bucket ``recordings``, as IAM
    matches an ARN: ``*`` any run of characters (slashes too), ``?`` one, the rest literally."""
    arn = f"arn:aws:s3:::recordings/{key}"
    for statement in json.loads(POLICY.read_text())["Statement"]:
        named = statement["Action"]
        resources = statement["Resource"]
        if "s3:DeleteObject" not in ([named] if isinstance(named, str) else named):
            continue
        for resource in [resources] if isinstance(resources, str) else resources:
            pattern = "".join(
                ".*" if c == "*" else "." if c == "?" else re.escape(c) for c in resource
            )
            if re.fullmatch(pattern, arn, re.DOTALL):
                return True
    return False


def _context(relpath: str) -> KeyContext:
    started = datetime(2026, 12, 7, tzinfo=UTC)
    return KeyContext("s-0123abcd", PurePosixPath(relpath), "w", started, "h")


# Files whose key would have a helper object's shape: a folder or a file named like one.
HELPER_LOOKALIKES = [
    "cam1.mp4",
    "cam1.upload.json",
    "site.tailup/cam1.mp4",
    "cam1.ts.tailup/up-1/tail.000000000000000-000000000000005",
    "a.tailup/b.tailup/cam1.upload.json",
]


@pytest.mark.parametrize("relpath", HELPER_LOOKALIKES)
@pytest.mark.parametrize("template", [DEFAULT_KEY_TEMPLATE, "streams/{relpath}", "streams/{name}"])
def test_the_policy_lets_the_node_delete_its_helper_objects_but_no_recording(
    template: str, relpath: str
) -> None:
    # A recorder node's credentials must not delete recordings: s3:DeleteObject is granted on
    # the card beside an upload and --rpo's tail segments, and no recording's key (nor its
    # metadata.json) has either shape, whatever its file is named.
    key = render_key(template, _context(relpath))
    assert not _deletable(key), key
    assert not _deletable(metadata_key(key)), key
    assert _deletable(card_key(key))
    assert _deletable(segment_key(key, "upload-1", 0, 5 * 2**20))


def test_the_docs_show_the_policy_and_every_action() -> None:
    docs = OPERATIONS_MD.read_text()
    assert "```json\n" + POLICY.read_text() + "```" in docs, "docs/operations.md lost the policy"
    for operation, action in IAM_ACTIONS.items():
        assert f"`{action}`" in docs and f"`{operation}`" in docs, (operation, action)


def test_a_refusal_is_said_once_per_action() -> None:
    permissions.forget_refusals()
    with structlog.testing.capture_logs() as logs:
        for _ in range(3):
            permissions.refused("s3:GetObject", "HeadObject: 403")
            permissions.refused("s3:ListBucket", "AccessDenied")
    assert [e["action"] for e in logs] == ["s3:GetObject", "s3:ListBucket"]
    assert all(e["log_level"] == "warning" for e in logs)
    assert logs[0]["event"] == f"S3 refuses s3:GetObject: {OPTIONAL['s3:GetObject']}"
    permissions.forget_refusals()


def test_the_docs_name_what_each_storage_flag_needs() -> None:
    docs = OPERATIONS_MD.read_text()
    for flag, actions in permissions.FLAG_ACTIONS.items():
        row = next((line for line in docs.splitlines() if line.startswith(f"| `{flag}`")), "")
        assert row, f"docs/operations.md has no row for {flag}"
        for action in actions:
            assert f"`{action}`" in row, (flag, action)
    # Off by default: not in the least-privilege policy.
    flagged = {action for actions in permissions.FLAG_ACTIONS.values() for action in actions}
    assert not flagged & set(_policy_actions())
