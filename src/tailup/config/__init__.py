"""Settings: flags override environment (TAILUP_...) override a .env file override a TOML config
file (--config) override defaults.

Every refusal names the setting (flag, environment variable and config file key) and the accepted
form. Keys of the config file are the settings' names (part_size, watch, ...); a key tailup does not
know is refused, not ignored: a typo must not silently fall back to a default. So is a value of the
wrong TOML type (a float for a size, an array for a name). A TAILUP_ variable that is no setting
cannot be refused (the environment is shared), but it is warned about, with the likely intended one.

The layers, each importing only those above it:
  forms     what a refusal says: accepted forms, setting labels
  values    what a value means: the enums, pure parsers (shares, after-upload, node ids)
  settings  the Settings fields and the check of each on its own
  folders   the config file's [[watch]] tables -> each watched folder's settings (pure)
  toml      the config file's TOML types and its refusals
  load      the sources in order (flags, env, .env, file), loading, warnings of unknown variables
  checks    checks across settings, for the commands that need them
"""

from tailup.config.checks import check_daemon_settings, check_storage_settings
from tailup.config.forms import (
    ACCEPTED_FORMS,
    AFTER_UPLOAD_FORM,
    NODE_ID_FORM,
    SHARED_WATCH_FORM,
    setting_label,
)
from tailup.config.load import (
    ENV_FILE_VARIABLE,
    OTHER_VARIABLES,
    dotenv_file,
    load_settings,
    unknown_variables,
)
from tailup.config.settings import DURATION_FIELDS, SIZE_FIELDS, Settings
from tailup.config.toml import FileKind, file_kind, read_config_file
from tailup.config.values import (
    DEFAULT_INCLUDE,
    AfterUploadKind,
    KeyConflict,
    LogFormat,
    PayloadSigning,
    is_node_id,
    parse_after_upload,
    parse_shared_watch,
)

__all__ = [
    "ACCEPTED_FORMS",
    "AFTER_UPLOAD_FORM",
    "DEFAULT_INCLUDE",
    "DURATION_FIELDS",
    "ENV_FILE_VARIABLE",
    "NODE_ID_FORM",
    "OTHER_VARIABLES",
    "SHARED_WATCH_FORM",
    "SIZE_FIELDS",
    "AfterUploadKind",
    "FileKind",
    "KeyConflict",
    "LogFormat",
    "PayloadSigning",
    "Settings",
    "check_daemon_settings",
    "check_storage_settings",
    "dotenv_file",
    "file_kind",
    "is_node_id",
    "load_settings",
    "parse_after_upload",
    "parse_shared_watch",
    "read_config_file",
    "setting_label",
    "unknown_variables",
]
