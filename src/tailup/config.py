"""Settings: flags override environment (TAILUP_...) override a .env file override a TOML config
file (--config) override defaults.

Every refusal names the setting (flag, environment variable and config file key) and the accepted
form. Keys of the config file are the settings' names (part_size, watch, ...); a key tailup does not
know is refused, not ignored: a typo must not silently fall back to a default. So is a value of the
wrong TOML type (a float for a size, an array for a name). A TAILUP_ variable that is no setting
cannot be refused (the environment is shared), but it is warned about, with the likely intended one.
"""

from __future__ import annotations

import datetime
import difflib
import enum
import re
import socket
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, get_origin
from urllib.parse import urlsplit

from dotenv import dotenv_values
from pydantic import Field, PrivateAttr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from tailup.bandwidth import BWLIMIT_FORM, parse_bwlimit
from tailup.checksums import ChecksumAlgorithm
from tailup.errors import ConfigError
from tailup.hashplan import Sha256Setting
from tailup.keys import DEFAULT_KEY_TEMPLATE, PLACEHOLDERS, template_problems
from tailup.plan import MAX_PART_SIZE_BYTES, MIN_PART_SIZE_BYTES, MiB, PartSizing
from tailup.redisconn import REDIS_URL_FORMS, RedisUrlError, parse_redis_url
from tailup.units import DURATION_FORM, SIZE_FORM, parse_duration, parse_size

DEFAULT_INCLUDE = ("*.mp4", "*.mov", "*.mkv", "*.ts", "*.m4v", "*.flv")


class LogFormat(enum.Enum):
    AUTO = "auto"
    JSON = "json"
    CONSOLE = "console"


class PayloadSigning(enum.Enum):
    """Whether S3 requests sign the body's SHA-256 (see tailup.s3)."""

    AUTO = "auto"  # over plain http to another host only
    ALWAYS = "always"
    NEVER = "never"


class KeyConflict(enum.Enum):
    SUFFIX = "suffix"  # a taken key gets a free one: cam1.ts, cam1-2.ts, ... (tailup.keyclaim)
    OVERWRITE = "overwrite"  # the last recording written to a key wins


class AfterUploadKind(enum.Enum):
    KEEP = "keep"
    DELETE = "delete"
    MOVE = "move"


AFTER_UPLOAD_FORM = "keep, delete or move:DIR, DIR an absolute folder outside every watched folder"

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
)
NODE_ID_FORM = "1 to 64 letters, digits, '.', '_' or '-' (default: the host name)"
_NODE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
SHARED_WATCH_FORM = (
    "an existing folder, or NAME=DIR to name it for nodes that mount it at other paths "
    "(repeat for more), none inside another watched folder"
)

# TAILUP_ variables that are not settings but are read by tailup or its tests: never warned about.
# The one list of them (tests/unit/test_config.py checks every TAILUP_ name in the tree is either a
# setting or here).
OTHER_VARIABLES: dict[str, str] = {
    "TAILUP_CONFIG": "the config file, like --config",
    "TAILUP_CRASH_TRIALS": "tests: how many kill -9 trials tests/e2e/test_crash.py runs",
    "TAILUP_CRASH_SEED": "tests: the seed of those trials, to replay one",
    "TAILUP_FAULT_SEED": "tests: the seed of tests/integration/test_faults.py, to replay one",
}


def _split_list(value: Any, separators: str) -> Any:
    # Env and .env values are plain strings: accept "a,b" rather than JSON only.
    if isinstance(value, str):
        return [item.strip() for item in re.split(separators, value) if item.strip()]
    return value


class Settings(BaseSettings):
    """Everything `tailup run` needs. Connection settings are shared by every subcommand."""

    model_config = SettingsConfigDict(
        env_prefix="TAILUP_",
        env_file=".env",
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
    keep_records: float = Field(
        default=30 * 86400.0,
        description="How long ended stream records stay in Redis (0 = forever); S3 answers "
        "for older ones.",
    )
    include: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_INCLUDE), description="File name globs to upload."
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
    key_template: str = Field(default=DEFAULT_KEY_TEMPLATE, description="S3 key of each file.")
    key_conflict: KeyConflict = Field(
        default=KeyConflict.SUFFIX,
        description="When a template names a key that holds another recording: suffix "
        "(cam1-2.ts) or overwrite.",
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
    metrics_port: int = Field(default=0, description="Port for /metrics and /healthz; 0 = off.")
    metrics_host: str = Field(
        default="127.0.0.1", description="Address /metrics and /healthz listen on."
    )
    health_interval: float = Field(
        default=5.0, description="Seconds between health probes of Redis and S3."
    )
    log_format: LogFormat = Field(default=LogFormat.AUTO, description="json, console or auto.")
    log_level: str = Field(default="info", description="debug, info, warning or error.")

    # Where the settings came from, for naming them in refusals after loading (check_*_settings).
    _config_file: Path | None = PrivateAttr(default=None)
    _file_keys: frozenset[str] = PrivateAttr(default=frozenset())

    @field_validator("watch", "shared_watch", mode="before")
    @classmethod
    def _folders(cls, value: Any) -> Any:
        return _split_list(value, r"[,\n]")  # folder names may contain spaces

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
        if not _NODE_ID.fullmatch(value):
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

    @field_validator("include", mode="before")
    @classmethod
    def _globs(cls, value: Any) -> Any:
        return _split_list(value, r"[,\s]+")

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

    @field_validator("close_grace", "shutdown_grace")
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

    @field_validator("key_template")
    @classmethod
    def _template(cls, value: str) -> str:
        problems = template_problems(value)
        if problems:
            raise ValueError("; ".join(problems))
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

    @field_validator("include")
    @classmethod
    def _include(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("no pattern given")
        return value

    @property
    def shares(self) -> list[tuple[str, Path]]:
        """The shared folders as (share name, folder)."""
        return [parse_shared_watch(item) for item in self.shared_watch]

    @property
    def after_upload_action(self) -> tuple[AfterUploadKind, Path | None]:
        return parse_after_upload(self.after_upload)

    def label(self, field: str) -> str:
        """``field`` as it can be given, naming the config file when it has that key."""
        return setting_label(field, self._config_file if field in self._file_keys else None)


def is_node_id(value: str) -> bool:
    """``value`` can name a node (--node-id; `tailup status --node`)."""
    return _NODE_ID.fullmatch(value) is not None


def parse_shared_watch(text: str) -> tuple[str, Path]:
    """``NAME=DIR`` or ``DIR`` (named by its absolute path) -> (name, folder)."""
    name, eq, folder = text.partition("=")
    if not eq or name.startswith("/"):
        name, folder = "", text
    if not folder:
        raise ValueError(f"{text!r} names no folder")
    path = Path(folder)
    if not path.is_absolute():
        raise ValueError(f"{folder!r} is a relative path; give the folder as an absolute path")
    name = name or str(path).rstrip("/") or "/"
    if name != str(path) and not _NODE_ID.fullmatch(name):
        raise ValueError(f"the share name {name!r} is not {NODE_ID_FORM.split(' (')[0]}")
    return name, path


def parse_after_upload(text: str) -> tuple[AfterUploadKind, Path | None]:
    kind, _, target = text.partition(":")
    if kind == "move" and target:
        if not Path(target).is_absolute():
            # Relative to what? The daemon's working directory is nobody's choice under systemd.
            raise ValueError(f"{target!r} in {text!r} is a relative path; DIR must be absolute")
        return AfterUploadKind.MOVE, Path(target)
    if kind in ("keep", "delete") and not target:
        return AfterUploadKind(kind), None
    raise ValueError(f"{text!r} is not one of {AFTER_UPLOAD_FORM}")


ACCEPTED_FORMS: dict[str, str] = {
    "bucket": "a bucket name",
    "prefix": "text put before every key, e.g. site-a",
    "endpoint_url": "a URL like http://127.0.0.1:8333, with no credentials in it",
    "region": "an S3 region name like us-east-1",
    "redis_url": REDIS_URL_FORMS,
    "redis_prefix": "text put before every Redis key",
    "part_size": f"{SIZE_FORM}, from 5MiB to 5GiB",
    "part_sizing": "growing or uniform",
    "max_inflight_bytes": f"{SIZE_FORM}, at least 5MiB",
    "idle_timeout": f"{DURATION_FORM}, above 0",
    "poll_interval": f"{DURATION_FORM}, above 0",
    "close_grace": f"{DURATION_FORM}, 0 or more",
    "shutdown_grace": f"{DURATION_FORM}, 0 or more",
    "key_template": "text with placeholders among " + " ".join("{" + p + "}" for p in PLACEHOLDERS),
    "after_upload": AFTER_UPLOAD_FORM,
    "key_conflict": "suffix or overwrite",
    "failed_retry": f"{DURATION_FORM}, above 0",
    "io_timeout": f"{DURATION_FORM}, above 0",
    "part_concurrency": "a whole number from 1 to 64",
    "payload_signing": "auto, always or never",
    "checksum": "crc32, crc32c, crc64nvme or none",
    "sha256": "auto or off",
    "bwlimit": BWLIMIT_FORM,
    "metrics_port": "a port number from 0 (off) to 65535",
    "metrics_host": "an address to listen on, e.g. 127.0.0.1 or 0.0.0.0",
    "health_interval": f"{DURATION_FORM}, above 0",
    "poll": "true or false (as a flag: --poll, or no --poll)",
    "log_format": "json, console or auto",
    "log_level": "debug, info, warning or error",
    "watch": "an existing folder (repeat --watch for more), none inside another",
    "shared_watch": SHARED_WATCH_FORM,
    "node_id": NODE_ID_FORM,
    "lease_ttl": f"{DURATION_FORM}, from 3s to 1h",
    "keep_records": f"{DURATION_FORM} like 30d, or 0 to keep records forever",
    "include": "one or more file name globs like *.mp4",
}


def setting_label(field: str, config_file: Path | None = None) -> str:
    where = f", {field} in {config_file}" if config_file is not None else ""
    return f"--{field.replace('_', '-')} (TAILUP_{field.upper()}{where})"


def read_config_file(path: Path) -> dict[str, Any]:
    """The settings in a TOML file, refusing what cannot be read, parsed or is unknown."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"--config: cannot read {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--config: {path} is not valid TOML: {exc}") from None
    known = set(Settings.model_fields)
    problems = [_unknown_key_problem(key, known) for key in data if key not in known]
    for key, value in data.items():
        problem = _file_value_problem(key, value, path) if key in known else None
        if problem:
            problems.append(problem)
    if problems:
        raise ConfigError(f"invalid config file {path}:\n  " + "\n  ".join(problems))
    return data


class FileKind(enum.Enum):
    """What a setting's value may be in a TOML file (TOML has types; the environment has not)."""

    TEXT = 'a string in quotes, e.g. "value"'
    SIZE = 'a string like "8MiB" or a whole number of bytes'
    DURATION = 'a number of seconds like 30 or 2.5, or a string like "90s"'
    WHOLE = "a whole number without quotes, e.g. 4"
    SWITCH = "true or false"
    LIST = 'an array of strings, e.g. ["a", "b"], or one string'


def file_kind(field: str) -> FileKind:
    if field in SIZE_FIELDS:
        return FileKind.SIZE
    if field in DURATION_FIELDS:
        return FileKind.DURATION
    annotation = Settings.model_fields[field].annotation
    if annotation is bool:
        return FileKind.SWITCH
    if annotation is int:
        return FileKind.WHOLE
    if get_origin(annotation) is list:
        return FileKind.LIST
    if annotation in (str, str | None) or (
        isinstance(annotation, type) and issubclass(annotation, enum.Enum)
    ):
        return FileKind.TEXT
    raise AssertionError(f"no TOML form for setting {field} ({annotation})")


def _file_value_ok(kind: FileKind, value: Any) -> bool:
    if isinstance(value, bool):  # a bool is an int to Python, and a size or a count to nobody
        return kind is FileKind.SWITCH
    match kind:
        case FileKind.TEXT:
            return isinstance(value, str)
        case FileKind.SIZE:
            return isinstance(value, str | int)
        case FileKind.DURATION:
            return isinstance(value, str | int | float)
        case FileKind.WHOLE:
            return isinstance(value, int)
        case FileKind.LIST:
            items = value if isinstance(value, list) else [value]
            return all(isinstance(item, str) for item in items)
        case FileKind.SWITCH:
            return False


def _toml_type(value: Any) -> str:
    kinds: list[tuple[type | tuple[type, ...], str]] = [
        (bool, "boolean"),
        (int, "integer"),
        (float, "float"),
        (str, "string"),
        (list, "array"),
        (dict, "table"),
        ((datetime.date, datetime.time), "date/time"),
    ]
    return next((name for kind, name in kinds if isinstance(value, kind)), type(value).__name__)


def _file_value_problem(key: str, value: Any, path: Path) -> str | None:
    kind = file_kind(key)
    if _file_value_ok(kind, value):
        return None
    shown = value
    if kind is FileKind.LIST and isinstance(value, list):  # name the offending element
        shown = next((item for item in value if not isinstance(item, str)), value)
    what = f"a TOML {_toml_type(shown)}" + (" in the array" if shown is not value else "")
    accepted = ACCEPTED_FORMS.get(key)
    form = f"{accepted}; in the file, {kind.value}" if accepted else kind.value
    return f"{setting_label(key, path)}: got {shown!r}, {what}. Accepted: {form}"


def _unknown_key_problem(key: str, known: set[str]) -> str:
    guess = difflib.get_close_matches(key.replace("-", "_"), sorted(known), n=1)
    hint = f"; did you mean {guess[0]!r}?" if guess else ""
    return f"unknown setting {key!r}{hint} Settings are: {', '.join(sorted(known))}"


def _settings_class(config_file: Path | None) -> type[Settings]:
    if config_file is None:
        return Settings
    toml_file = config_file

    class FileSettings(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            # Earlier sources win: flags, environment, .env, the config file, then defaults.
            toml = TomlConfigSettingsSource(settings_cls, toml_file=toml_file)
            return init_settings, env_settings, dotenv_settings, toml, file_secret_settings

    return FileSettings


def load_settings(overrides: dict[str, Any], config_file: Path | None = None) -> Settings:
    """Settings from flags (``overrides``), env, .env and ``config_file``; ConfigError names what
    is wrong."""
    in_file = read_config_file(config_file) if config_file is not None else {}
    try:
        settings = _settings_class(config_file)(
            **{k: v for k, v in overrides.items() if v is not None}
        )
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "?"
            reason = str(error["msg"]).removeprefix("Value error, ")
            accepted = ACCEPTED_FORMS.get(field, "")
            got = error.get("input")
            shown = "" if isinstance(got, dict) else f" got {got!r}:"
            label = setting_label(field, config_file if field in in_file else None)
            line = f"{label}:{shown} {reason}"
            lines.append(f"{line}. Accepted: {accepted}" if accepted else line)
        raise ConfigError("invalid settings:\n  " + "\n  ".join(lines)) from None
    settings._config_file = config_file
    settings._file_keys = frozenset(in_file)
    return settings


def unknown_variables(environ: Mapping[str, str], dotenv: Path | None = None) -> list[str]:
    """A warning for each TAILUP_ variable (in ``environ`` or the ``dotenv`` file) that is neither
    a setting nor in OTHER_VARIABLES: likely a typo, which would otherwise go unnoticed."""
    settings = {name.upper(): name for name in Settings.model_fields}
    known = {f"TAILUP_{upper}" for upper in settings} | set(OTHER_VARIABLES)
    sources: list[tuple[str, list[str]]] = [("in the environment", sorted(environ))]
    if dotenv is not None and dotenv.is_file():
        sources.append((f"in {dotenv}", list(dotenv_values(dotenv))))
    suffixes = sorted(name.removeprefix("TAILUP_") for name in known)
    warnings = []
    for where, names in sources:
        for name in names:
            upper = name.upper()
            if not upper.startswith("TAILUP_") or upper in known:
                continue
            # Match without the prefix every candidate shares, or everything looks alike.
            guess = difflib.get_close_matches(upper.removeprefix("TAILUP_"), suffixes, n=1)
            hint = f"; did you mean TAILUP_{guess[0]}?" if guess else ""
            warnings.append(f"{name} {where} is not a tailup setting and is ignored{hint}")
    return warnings


def dotenv_file() -> Path:
    """The .env file every load reads (in the working directory)."""
    return Path(str(Settings.model_config.get("env_file") or ".env"))


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a symlink loop, an unreadable parent
        return path.absolute()


def _watch_problems(settings: Settings) -> list[str]:
    label, accepted = settings.label("watch"), f"Accepted: {ACCEPTED_FORMS['watch']}"
    problems = []
    if not settings.watch and not settings.shared_watch:
        shared = settings.label("shared_watch")
        problems.append(f"{label}: no folder given (nor {shared}). {accepted}")
    given = list(settings.watch) + [folder for _, folder in settings.shares]
    for folder in given:
        if not folder.exists():
            problems.append(f"{label}: {str(folder)!r} does not exist. {accepted}")
        elif not folder.is_dir():
            problems.append(f"{label}: {str(folder)!r} is not a folder. {accepted}")
    folders = [(folder, _resolved(folder)) for folder in given]
    for index, (one, one_real) in enumerate(folders):
        for other, other_real in folders[index + 1 :]:
            if one_real == other_real:
                why = f"are the same folder ({one_real})"
            elif one_real.is_relative_to(other_real) or other_real.is_relative_to(one_real):
                inner, outer = (one, other) if one_real.is_relative_to(other_real) else (other, one)
                why = f"overlap: {str(inner)!r} is inside {str(outer)!r}"
            else:
                continue
            problems.append(
                f"{label}: {str(one)!r} and {str(other)!r} {why}, so files would be watched and "
                f"uploaded twice. {accepted}"
            )
    return problems


def _after_upload_problems(settings: Settings) -> list[str]:
    kind, target = settings.after_upload_action
    if kind is not AfterUploadKind.MOVE or target is None:
        return []
    real = _resolved(target)
    for folder in [*settings.watch, *(folder for _, folder in settings.shares)]:
        folder_real = _resolved(folder)
        if real == folder_real or real.is_relative_to(folder_real):
            where = "is" if real == folder_real else "is inside"
            return [
                f"{settings.label('after_upload')}: got {settings.after_upload!r}: "
                f"{str(target)!r} {where} the watched folder {str(folder)!r}, watched by "
                f"{settings.label('watch')}, so every moved file would be found there and "
                f"uploaded again. Accepted: {AFTER_UPLOAD_FORM}"
            ]
    return []


def check_daemon_settings(settings: Settings) -> None:
    """What `tailup run` needs beyond what every subcommand needs."""
    problems = _watch_problems(settings) + _after_upload_problems(settings)
    problems.extend(_bucket_problems(settings))
    if problems:
        raise ConfigError("invalid settings:\n  " + "\n  ".join(problems))


def check_storage_settings(settings: Settings) -> None:
    problems = _bucket_problems(settings)
    if problems:
        raise ConfigError("invalid settings:\n  " + "\n  ".join(problems))


def _bucket_problems(settings: Settings) -> list[str]:
    if not settings.bucket:
        return [f"{settings.label('bucket')}: no bucket given. Accepted: a bucket name"]
    return []
