"""The settings: every field with its default and help, and the check of each field on its own
(checks across fields are in tailup.config.checks; what a refusal says, tailup.config.forms)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BeforeValidator, Field, PrivateAttr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from tailup.bandwidth import parse_bwlimit
from tailup.checksums import ChecksumAlgorithm
from tailup.config.forms import setting_label
from tailup.config.layout import LayoutSettings
from tailup.config.retention import RetentionSettings
from tailup.config.values import (
    AfterUploadKind,
    LogFormat,
    PayloadSigning,
    is_node_id,
    parse_after_upload,
    parse_shared_watch,
    split_list,
)
from tailup.hashplan import Sha256Setting
from tailup.plan import MAX_PART_SIZE_BYTES, MIN_PART_SIZE_BYTES, MiB, PartSizing
from tailup.redisconn import RedisUrlError, parse_redis_url
from tailup.rules.tails import parse_rpo
from tailup.units import parse_duration, parse_size

SIZE_FIELDS = ("part_size", "max_inflight_bytes")
DURATION_FIELDS = (
    "idle_timeout",
    "close_grace",
    "poll_interval",
    "shutdown_grace",
    "health_interval",
    "failed_retry",
    "io_timeout",
    "keep_records",
    "lease_ttl",
    "salvage_after",
    "keep_local",
)


class Origin(BaseSettings):
    """Where loaded settings came from (tailup.config.load sets it): to name a setting as it
    was given in refusals after loading (check_*_settings), and the config file's [[watch]]
    tables as read (tailup.config.folders resolves them)."""

    _config_file: Path | None = PrivateAttr(default=None)
    _file_keys: frozenset[str] = PrivateAttr(default=frozenset())
    _watch_tables: tuple[dict[str, Any], ...] = PrivateAttr(default=())

    def label(self, field: str) -> str:
        """``field`` as it can be given, naming the config file when it has that key."""
        return setting_label(field, self._config_file if field in self._file_keys else None)


class Settings(RetentionSettings, LayoutSettings, Origin):
    """Everything `tailup run` needs. Connection settings are shared by every subcommand; how
    objects are stored (--storage-class, --sse, --tag) is StorageSettings's."""

    model_config = SettingsConfigDict(
        env_prefix="TAILUP_",
        env_file=".env",  # load_settings reads the one dotenv_file names (TAILUP_ENV_FILE)
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
    )

    # Connection settings (every subcommand)
    bucket: str = Field(default="", description="S3 bucket to upload into (required).")
    prefix: str = Field(default="", description="S3 key prefix put before every key.")
    endpoint_url: str | None = Field(
        default=None, description="S3 endpoint for non-AWS servers, e.g. http://127.0.0.1:8333."
    )
    region: str = Field(default="us-east-1", description="S3 region.")
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        description="Redis for checkpoints: redis://, rediss:// (TLS), unix://, "
        "redis+cluster://HOST:PORT[,HOST:PORT...] or "
        "redis+sentinel://HOST:PORT[,HOST:PORT...]/MASTER[/DB].",
    )
    redis_prefix: str = Field(default="tailup", description="Prefix of every Redis key.")

    node_id: str = Field(
        default_factory=lambda: socket.gethostname(),
        description="This daemon's node: its records, folders and lease on the Redis prefix.",
    )

    # The daemon
    watch: Annotated[list[Path], NoDecode] = Field(
        default_factory=list, description="Folder to watch, recursively (repeatable)."
    )
    shared_watch: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="A folder several nodes watch (NAME=DIR or DIR; repeatable): each "
        "recording is uploaded once, by the node holding its lease.",
    )
    lease_ttl: float = Field(
        default=30.0,
        description="Seconds a dead node's leases last before another node takes its streams.",
    )
    salvage_after: float = Field(
        default=0.0, description="Seconds before a gone node's uploads are salvaged (0 = never)."
    )
    keep_records: float = Field(
        default=30 * 86400.0,
        description="How long ended stream records stay in Redis (0 = forever); S3 answers "
        "for older ones.",
    )
    part_size: int = Field(default=8 * MiB, description="Base S3 part size (5MiB..5GiB).")
    part_sizing: PartSizing = Field(
        default=PartSizing.GROWING,
        description="growing: parts double every 500 (up to 5 TiB); uniform: every part is "
        "part_size (Cloudflare R2, Backblaze B2 Live Read), at most 10,000 x part_size.",
    )
    idle_timeout: float = Field(
        default=30.0, description="Finalize after this many seconds without a size change."
    )
    # 0: a close with no other writer left is the end of the recording (ffmpeg, OBS, cameras
    # close once). Writers that close and reopen to append get 2 s once seen doing it
    # (tailup.stream.core).
    close_grace: float = Field(
        default=0.0,
        description="Finalize this many seconds after the last writer closed the file.",
    )
    io_timeout: float = Field(
        default=30.0,
        description="Seconds a stat or read of a watched file may take before its stream counts "
        "as stalled (a hung network mount).",
    )
    failed_retry: float = Field(
        default=60.0,
        description="Seconds before a failed stream is tried again (doubling up to 30 min).",
    )
    after_upload: str = Field(
        default="keep", description="What to do with the file after a verified upload."
    )
    poll: bool = Field(default=False, description="Poll instead of inotify (network folders).")
    poll_interval: float = Field(default=1.0, description="Seconds between polls with --poll.")
    part_concurrency: int = Field(default=4, description="Parts of one stream uploaded at once.")
    # The daemon's peak RSS is ~115 MiB plus this budget; 20 parts of 8 MiB in flight keep the
    # S3 server as busy as 32 did (bench c, 100 streams: 288 MiB peak RSS, no more lag than 256).
    max_inflight_bytes: int = Field(
        default=160 * MiB, description="Memory budget for parts being uploaded, all streams."
    )
    checksum: ChecksumAlgorithm = Field(
        default=ChecksumAlgorithm.CRC32,
        description="Checksum header S3 verifies on every part: crc32, crc32c, crc64nvme or none.",
    )
    sha256: Sha256Setting = Field(
        default=Sha256Setting.AUTO,
        description="Whole-file SHA-256 in metadata.json: auto (at close when cheap, else just "
        "after the object is published) or off (the whole-object CRC only).",
    )
    payload_signing: PayloadSigning = Field(
        default=PayloadSigning.AUTO,
        description="Sign each request body's SHA-256: auto (plain http off-host), always, never.",
    )
    bwlimit: str = Field(
        default="off",
        description="Upload bandwidth, all streams together: a rate per second (8MiB, 20Mbit, "
        "off) or a timetable of local times (08:00,2MiB 19:00,off).",
    )
    shutdown_grace: float = Field(
        default=20.0, description="Seconds in-flight parts may take to finish on SIGTERM."
    )
    # None: off. Not a DURATION_FIELD: it also takes "off".
    rpo: Annotated[float | None, BeforeValidator(parse_rpo)] = Field(
        default=None,
        description="Recovery point: S3 holds each live recording up to this many seconds ago "
        "(tail segments beside its upload: ~1,800 PUTs per camera-hour at 2 s); off by default.",
    )
    metrics_port: int = Field(default=0, description="Port for /metrics and /healthz; 0 = off.")
    metrics_host: str = Field(
        default="127.0.0.1", description="Address /metrics and /healthz listen on."
    )
    health_interval: float = Field(
        default=5.0, description="Seconds between health probes of Redis and S3."
    )
    log_format: LogFormat = Field(default=LogFormat.AUTO, description="json, console or auto.")
    log_level: str = Field(default="info", description="debug, info, warning or error.")

    @field_validator("watch", "shared_watch", mode="before")
    @classmethod
    def _folders(cls, value: Any) -> Any:
        return split_list(value, r"[,\n]")  # folder names may contain spaces

    @field_validator("shared_watch")
    @classmethod
    def _shared(cls, value: list[str]) -> list[str]:
        names = [parse_shared_watch(item)[0] for item in value]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"the share name {twice[0]!r} is given twice")
        return value

    @field_validator("node_id")
    @classmethod
    def _node_id(cls, value: str) -> str:
        if not is_node_id(value):
            raise ValueError(f"{value!r} is not a node id")
        return value

    @field_validator("lease_ttl")
    @classmethod
    def _lease_ttl(cls, value: float) -> float:
        if not 3 <= value <= 3600:
            raise ValueError(f"{value:g} s is outside 3 s..1 h")
        return value

    @field_validator("keep_records")
    @classmethod
    def _keep(cls, value: float) -> float:
        if value < 0:
            raise ValueError(f"{value:g} is negative (0 keeps records forever)")
        return value

    @field_validator(*SIZE_FIELDS, mode="before")
    @classmethod
    def _size(cls, value: Any) -> int:
        return parse_size(value)

    @field_validator(*DURATION_FIELDS, mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)

    @field_validator("part_size")
    @classmethod
    def _part_size_range(cls, value: int) -> int:
        if not MIN_PART_SIZE_BYTES <= value <= MAX_PART_SIZE_BYTES:
            raise ValueError(f"{value} bytes is outside 5MiB..5GiB (S3's part size limits)")
        return value

    @field_validator(
        "idle_timeout", "poll_interval", "health_interval", "failed_retry", "io_timeout"
    )
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError(f"{value:g} is not above 0")
        return value

    @field_validator("close_grace", "shutdown_grace", "salvage_after")
    @classmethod
    def _not_negative(cls, value: float) -> float:
        if value < 0:
            raise ValueError(f"{value:g} is negative")
        return value

    @field_validator("part_concurrency")
    @classmethod
    def _concurrency(cls, value: int) -> int:
        if not 1 <= value <= 64:
            raise ValueError(f"{value} is outside 1..64")
        return value

    @field_validator("max_inflight_bytes")
    @classmethod
    def _budget(cls, value: int) -> int:
        if value < MIN_PART_SIZE_BYTES:
            raise ValueError(f"{value} bytes is below one part (5MiB)")
        return value

    @field_validator("metrics_port")
    @classmethod
    def _port(cls, value: int) -> int:
        if not 0 <= value <= 65535:
            raise ValueError(f"{value} is outside 0..65535")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        try:
            parse_redis_url(value)
        except RedisUrlError as exc:
            raise ValueError(exc.reason) from None
        return value

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint_without_credentials(cls, value: str | None) -> str | None:
        # botocore never reads credentials from the URL, and aiohttp refuses a signed request to
        # one that has them: every request would fail, retried for ever as an outage.
        if value and "@" in urlsplit(value).netloc:
            raise ValueError(
                "it holds credentials (before @ in the host part); S3 credentials come from the "
                "AWS chain: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile or a role"
            )
        return value

    @field_validator("after_upload")
    @classmethod
    def _after_upload(cls, value: str) -> str:
        parse_after_upload(value)
        return value

    @field_validator("bwlimit")
    @classmethod
    def _bwlimit(cls, value: str) -> str:
        parse_bwlimit(value)
        return " ".join(value.split())

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        if value.lower() not in {"debug", "info", "warning", "error"}:
            raise ValueError(f"{value!r} is not a log level")
        return value.lower()

    @property
    def shares(self) -> list[tuple[str, Path]]:
        """The shared folders as (share name, folder)."""
        return [parse_shared_watch(item) for item in self.shared_watch]

    @property
    def after_upload_action(self) -> tuple[AfterUploadKind, Path | None]:
        return parse_after_upload(self.after_upload)
