"""A private moto S3 server (``moto_server``) on 127.0.0.1: a second S3 implementation, with
AWS's part semantics, optionally with its IAM enforced."""

from __future__ import annotations

import copy
import json
import sys
import urllib.request
from pathlib import Path
from typing import Any, Self

from tailup.dev.ports import LOOPBACK, free_port
from tailup.dev.process import DevServerError, _ManagedProcess
from tailup.dev.s3_common import S3Identity, _botocore, _S3Clients
from tailup.s3.session import with_shared_loader


def _moto_argv() -> list[str]:
    import importlib.util

    for module in ("moto.server", "flask", "werkzeug"):
        try:
            found = importlib.util.find_spec(module) is not None
        except ImportError:  # a missing parent package
            found = False
        if not found:
            raise DevServerError(
                f"moto's server mode is not installed ({module} is missing); install it with "
                "`pip install 'moto[server]'` (part of tailup[dev])"
            )
    return [sys.executable, "-m", "moto.server"]


def with_operation_names(policy: dict[str, Any]) -> dict[str, Any]:
    """``policy`` with, beside each S3 IAM action, the names of the operations it allows.

    moto 5.2.6 checks S3 requests against the operation's name (``s3:UploadPart``,
    ``s3:ListParts``, ``s3:ListMultipartUploads``) instead of the IAM action AWS checks
    (``s3:PutObject``, ``s3:ListMultipartUploadParts``, ``s3:ListBucketMultipartUploads``); earlier
    releases check the IAM action. Granting both forms, derived from the actions the policy names,
    keeps what the policy allows and refuses the same on either: an action left out of the policy
    takes its operations with it. ``tailup.permissions.IAM_ACTIONS`` is the operation -> action map.
    """
    from tailup.permissions import IAM_ACTIONS

    result = copy.deepcopy(policy)
    for statement in result.get("Statement", []):
        actions = statement.get("Action")
        if actions is None:
            continue
        named = [actions] if isinstance(actions, str) else list(actions)
        extra = [
            f"s3:{operation}"
            for operation, action in IAM_ACTIONS.items()
            if action in named and f"s3:{operation}" not in named
        ]
        statement["Action"] = named + extra
    return result


class MotoS3(_S3Clients, _ManagedProcess):
    """A private moto S3 server (``moto_server``, in its own process) on 127.0.0.1 and a free port.

    moto emulates AWS S3 itself: it keeps only the latest upload of a part number (SeaweedFS keeps
    every one), and enforces ``EntityTooSmall`` and ``InvalidPart`` at Complete. Everything it
    stores lives in the server's memory: a restart starts empty.

    Without ``iam_policies`` it accepts any credentials. With them, moto's IAM is enforced: the
    server's own credentials (``access_key``/``secret_key``) are those of a user that may do
    everything, and each named IAM policy document gets a user of its own, whose credentials
    (made by moto at each start) :meth:`identity` returns. moto evaluates the policies with AWS's
    action names, except that it asks ``s3:HeadBucket`` for HeadBucket (AWS: ``s3:ListBucket``).

    >>> with MotoS3() as s3:
    ...     s3.create_bucket("recordings")
    ...     client = s3.boto3_client()
    """

    name = "moto"
    ACCESS_KEY = "tailup-moto"
    SECRET_KEY = "tailup-moto-secret"

    def __init__(
        self,
        directory: Path | str | None = None,
        *,
        port: int | None = None,
        region: str = "us-east-1",
        startup_timeout: float = 60.0,
        iam_policies: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(directory, startup_timeout=startup_timeout)
        self.host = LOOPBACK
        self.port = port if port is not None else free_port()
        self.access_key = self.ACCESS_KEY
        self.secret_key = self.SECRET_KEY
        self.region = region
        self.iam_policies = dict(iam_policies or {})
        self.auth_enforced = bool(self.iam_policies)
        self._identities: dict[str, S3Identity] = {}

    def start(self) -> Self:
        super().start()
        if self.iam_policies:
            try:
                self._enforce_iam()
            except BaseException:
                self.kill()
                raise
        return self

    def identity(self, name: str) -> S3Identity:
        """The user made for ``iam_policies[name]`` at this start, with its credentials."""
        if not self.running or name not in self._identities:
            raise DevServerError(f"moto has no identity {name!r} (running: {self.running})")
        return self._identities[name]

    def _enforce_iam(self) -> None:
        # moto checks signatures and policies only once its count of free requests is reset to
        # 0: the users are made before, with unauthenticated IAM calls.
        session_mod, _, _ = _botocore()
        iam = with_shared_loader(session_mod.Session()).create_client(
            "iam",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id="setup",
            aws_secret_access_key="setup",
        )
        everything = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
        }

        def user(number: int, policy: dict[str, Any]) -> tuple[str, str]:
            name = f"tailup-{number}"
            iam.create_user(UserName=name)
            iam.put_user_policy(
                UserName=name,
                PolicyName=f"{name}-policy",
                PolicyDocument=json.dumps(with_operation_names(policy)),
            )
            key = iam.create_access_key(UserName=name)["AccessKey"]
            return str(key["AccessKeyId"]), str(key["SecretAccessKey"])

        try:
            self.access_key, self.secret_key = user(0, everything)
            self._identities = {
                name: S3Identity(name, *user(number, policy), policy=policy)
                for number, (name, policy) in enumerate(self.iam_policies.items(), start=1)
            }
        finally:
            iam.close()
        request = urllib.request.Request(
            self.endpoint_url + "/moto-api/reset-auth",
            data=b"0",
            method="POST",
            headers={"Content-Type": "application/octet-stream"},
        )
        with urllib.request.urlopen(request, timeout=10.0) as response:
            response.read()

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.dir / "moto.log"

    def _argv(self) -> list[str]:
        return [*_moto_argv(), "-H", self.host, "-p", str(self.port)]

    def _is_ready(self) -> bool:
        # An unsigned GET / is S3's ListBuckets: answered once the S3 backend is loaded, which
        # moto does on the first S3 request (a second or so), so it is warm for the tests.
        request = urllib.request.Request(self.endpoint_url + "/", method="GET")
        try:
            with urllib.request.urlopen(request, timeout=5.0) as response:
                return b"ListAllMyBucketsResult" in response.read()
        except (OSError, ValueError):
            return False
