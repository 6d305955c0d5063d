"""What every local S3 server offers its users (environment, clients, buckets), and the extra
identities a server may enforce."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from tailup.dev.process import DevServerError
from tailup.s3.session import with_shared_loader


def _botocore() -> tuple[Any, Any, Any]:
    """botocore's session module, Config and ClientError (botocore ships no type hints)."""
    import botocore.config  # type: ignore[import-untyped, unused-ignore]
    import botocore.exceptions  # type: ignore[import-untyped, unused-ignore]
    import botocore.session  # type: ignore[import-untyped, unused-ignore]

    return botocore.session, botocore.config.Config, botocore.exceptions.ClientError


class _S3Clients:
    """What every local S3 server offers its users: environment variables, clients, buckets."""

    access_key: str
    secret_key: str
    region: str

    @property
    def endpoint_url(self) -> str:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        """Environment variables that point AWS SDKs and CLIs at this server."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ENDPOINT_URL_S3": self.endpoint_url,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def boto3_client(
        self,
        *,
        access_key: str | None = None,
        secret_key: str | None = None,
        max_attempts: int = 3,
        **config: Any,
    ) -> Any:
        """A synchronous S3 client for this server (path-style addressing).

        It is built with botocore directly, which is what ``boto3.client("s3")`` returns, so
        boto3 itself need not be installed. ``access_key``/``secret_key`` override the server's
        credentials (to test refused requests); extra keyword arguments go to
        ``botocore.config.Config``.
        """
        session_mod, config_cls, _ = _botocore()
        options: dict[str, Any] = {
            "s3": {"addressing_style": "path"},
            "retries": {"max_attempts": max_attempts, "mode": "standard"},
            "connect_timeout": 5,
            "read_timeout": 60,
        }
        options.update(config)
        # Its own session (these credentials), the process's parsed models: tailup.s3.session.
        return with_shared_loader(session_mod.Session()).create_client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=access_key if access_key is not None else self.access_key,
            aws_secret_access_key=secret_key if secret_key is not None else self.secret_key,
            config=config_cls(**options),
        )

    def create_bucket(self, name: str, *, timeout: float = 10.0) -> str:
        """Create ``name`` (an existing bucket is fine), retrying while the server warms up."""
        _, _, client_error = _botocore()
        client = self.boto3_client(max_attempts=1)
        fatal = {"InvalidBucketName", "InvalidAccessKeyId", "SignatureDoesNotMatch",
                 "AccessDenied"}  # fmt: skip
        deadline = time.monotonic() + timeout
        last: BaseException | None = None
        try:
            while time.monotonic() < deadline:
                try:
                    client.create_bucket(Bucket=name)
                    return name
                except client_error as exc:
                    code = exc.response.get("Error", {}).get("Code", "")
                    if code in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                        return name
                    if code in fatal:
                        raise DevServerError(f"cannot create bucket {name!r}: {exc}") from exc
                    last = exc
                except Exception as exc:  # connection refused/reset while (re)starting
                    last = exc
                time.sleep(0.1)
        finally:
            client.close()
        raise DevServerError(f"cannot create bucket {name!r} within {timeout:.0f} s: {last}")


@dataclass(frozen=True)
class S3Identity:
    """One more identity of a :class:`SeaweedS3` server: its credentials and what it may do.

    ``actions`` are SeaweedFS's coarse actions (``Read``, ``Write``, ``List``, ``Tagging``,
    ``Admin``), each optionally limited to a bucket or a key pattern (``Write:bucket/prefix/*``).
    ``policy`` is an IAM policy document (``{"Version": ..., "Statement": [...]}``) that SeaweedFS
    evaluates with AWS's action names (``s3:PutObject``, ``s3:ListBucketMultipartUploads``...).
    Give one or the other.
    """

    name: str
    access_key: str
    secret_key: str
    actions: tuple[str, ...] = ()
    policy: dict[str, Any] | None = None

    def env(self, server: _S3Clients) -> dict[str, str]:
        """``server.env()`` with this identity's credentials."""
        return {
            **server.env(),
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
        }
