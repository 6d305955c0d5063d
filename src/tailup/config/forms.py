"""What each refusal says: the accepted form of every setting, and how a setting is named (its
flag, its environment variable and, when it came from there, its key in the config file)."""

from __future__ import annotations

from pathlib import Path

from tailup.bandwidth import BWLIMIT_FORM
from tailup.keys import PLACEHOLDERS
from tailup.objectoptions import (
    SSE_FORM,
    SSE_KMS_KEY_ID_FORM,
    STORAGE_CLASS_FORM,
    TAG_FORM,
    TAGS_FORM,
)
from tailup.redisconn import REDIS_URL_FORMS
from tailup.rules.retention import MIN_FREE_FORM
from tailup.units import DURATION_FORM, SIZE_FORM

AFTER_UPLOAD_FORM = "keep, delete or move:DIR, DIR an absolute folder outside every watched folder"
NODE_ID_FORM = "1 to 64 letters, digits, '.', '_' or '-' (default: the host name)"
SHARED_WATCH_FORM = (
    "an existing folder, or NAME=DIR to name it for nodes that mount it at other paths "
    "(repeat for more), none inside another watched folder"
)

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
    "rpo": f"off, or {DURATION_FORM}, at least 1",
    "metrics_port": "a port number from 0 (off) to 65535",
    "metrics_host": "an address to listen on, e.g. 127.0.0.1 or 0.0.0.0",
    "health_interval": f"{DURATION_FORM}, above 0",
    "poll": "true or false (as a flag: --poll, or no --poll)",
    "hls": "true or false (as a flag: --hls, or no --hls)",
    "log_format": "json, console or auto",
    "log_level": "debug, info, warning or error",
    "watch": "an existing folder (repeat --watch for more), none inside another",
    "shared_watch": SHARED_WATCH_FORM,
    "node_id": NODE_ID_FORM,
    "lease_ttl": f"{DURATION_FORM}, from 3s to 1h",
    "keep_records": f"{DURATION_FORM} like 30d, or 0 to keep records forever",
    "salvage_after": f"{DURATION_FORM} like 10m, or 0 (never, the default)",
    "include": "one or more file name globs like *.mp4",
    "storage_class": STORAGE_CLASS_FORM,
    "keep_local": f"{DURATION_FORM} like 7d, or 0 (off, the default)",
    "min_free": f"{MIN_FREE_FORM}, or 0 (off, the default)",
    "sse": SSE_FORM,
    "sse_kms_key_id": SSE_KMS_KEY_ID_FORM,
    "tag": TAG_FORM,
    "tags": TAGS_FORM,  # a [[watch]] table's (tailup.config.folders); no flag of that name
}


def setting_label(field: str, config_file: Path | None = None) -> str:
    where = f", {field} in {config_file}" if config_file is not None else ""
    return f"--{field.replace('_', '-')} (TAILUP_{field.upper()}{where})"
